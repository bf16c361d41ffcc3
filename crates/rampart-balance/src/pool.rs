//! Runtime state of a pool and the balancing algorithms.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::ring::Ring;
use crate::spec::{AdminState, Algorithm, BackendView, HealthTransition, OutlierParams, PoolSpec};

/// Sentinel for "no timestamp" in the atomic time fields.
const NONE: i64 = i64::MIN;
/// Internal weight resolution: effective weights are kept in 1/1000 units.
const MILLI: u64 = 1000;
/// Slow start begins at this share of the weight (per mille).
const SLOW_START_FLOOR_MILLI: u64 = 100;
/// Latency assumed for a backend without samples.
pub const DEFAULT_LATENCY: Duration = Duration::from_millis(1);
/// Minimum latency sample recorded for a failed request, so that fast failures
/// do not make a broken backend look attractive to `PowerOfTwoEwma`.
pub const FAILURE_LATENCY_PENALTY: Duration = Duration::from_secs(1);
/// Half-life of the latency EWMA.
pub const EWMA_HALF_LIFE: Duration = Duration::from_secs(10);
/// Durations are clamped to this to keep `Instant` arithmetic in range.
const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // State stays consistent even if a holder panicked: every critical section
    // only performs plain field updates.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn dur_nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX - 1)
}

/// Mutable per-backend state that needs more than one field updated together.
#[derive(Debug, Clone, Default)]
struct Runtime {
    check_successes: u32,
    check_failures: u32,
    outcome_failures: u32,
    times_ejected: u32,
    /// First success after the last failure/ejection (offset), `None` if none yet.
    clean_since: Option<i64>,
    /// Latency EWMA in nanoseconds and the offset it was last updated at.
    ewma_ns: Option<f64>,
    ewma_stamp: i64,
}

#[derive(Debug)]
struct Backend {
    healthy: AtomicBool,
    admin: AtomicU8,
    /// Offset (ns from the pool epoch) until which the backend is ejected, or [`NONE`].
    ejected_until: AtomicI64,
    /// Offset at which the current slow-start ramp began, or [`NONE`].
    slow_start_from: AtomicI64,
    outstanding: AtomicU32,
    total_requests: AtomicU64,
    total_failures: AtomicU64,
    rt: Mutex<Runtime>,
}

impl Backend {
    fn new() -> Self {
        Backend {
            healthy: AtomicBool::new(true),
            admin: AtomicU8::new(AdminState::Enabled.to_u8()),
            ejected_until: AtomicI64::new(NONE),
            slow_start_from: AtomicI64::new(NONE),
            outstanding: AtomicU32::new(0),
            total_requests: AtomicU64::new(0),
            total_failures: AtomicU64::new(0),
            rt: Mutex::new(Runtime::default()),
        }
    }
}

#[derive(Debug)]
struct Inner {
    spec: PoolSpec,
    epoch: Instant,
    backends: Vec<Backend>,
    primary_ring: Ring,
    backup_ring: Ring,
    /// Round-robin position (also rotates least-connections ties).
    rr: AtomicUsize,
    /// Smooth weighted round robin `current` values, indexed by backend.
    wrr: Mutex<Vec<i64>>,
    /// Serialises ejection decisions so the max-percent limit holds under races.
    eject_lock: Mutex<()>,
    rng: AtomicU64,
    /// Latest `now` offset seen by any method (used by [`Pool::backend`]).
    last_now: AtomicI64,
}

/// Runtime state of one pool. `Send + Sync`; all methods take `&self`.
///
/// `Pool` is a cheap handle around an `Arc`: cloning it shares the same state,
/// and [`InFlight`] guards keep that state alive on their own, so they are
/// `Send + 'static`.
///
/// Backend indices are positions in `spec.backends`. Methods given an index
/// out of range return `false`/`None` or do nothing, except [`Pool::backend`]
/// which panics.
#[derive(Debug, Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

/// RAII guard for one in-flight request: counts towards the backend's
/// `outstanding` until dropped.
#[derive(Debug)]
#[must_use = "the request is only counted while the guard is alive"]
pub struct InFlight {
    inner: Option<Arc<Inner>>,
    index: usize,
}

impl InFlight {
    /// Backend index this guard counts for.
    pub fn index(&self) -> usize {
        self.index
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(inner) = &self.inner {
            let b = &inner.backends[self.index];
            let _ = b
                .outstanding
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
        }
    }
}

impl Inner {
    /// Offset of `now`, remembering it as the latest time seen.
    fn touch(&self, now: Instant) -> i64 {
        let off = self.off(now);
        // At most about one write per millisecond: every request reads this, and a write per
        // request would move the cache line between cores each time.
        if off > self.last_now.load(Ordering::Relaxed) + 1_000_000 {
            self.last_now.fetch_max(off, Ordering::AcqRel);
        }
        off
    }

    fn off(&self, t: Instant) -> i64 {
        if t >= self.epoch {
            dur_nanos(t - self.epoch)
        } else {
            -dur_nanos(self.epoch - t)
        }
    }

    fn instant(&self, off: i64) -> Instant {
        if off >= 0 {
            self.epoch
                .checked_add(Duration::from_nanos(off.unsigned_abs()))
                .unwrap_or(self.epoch)
        } else {
            self.epoch
                .checked_sub(Duration::from_nanos(off.unsigned_abs()))
                .unwrap_or(self.epoch)
        }
    }

    /// Converts an offset of `other`'s epoch into one of ours (keeping `NONE`).
    fn rebase(&self, other: &Inner, off: i64) -> i64 {
        if off == NONE {
            NONE
        } else {
            self.off(other.instant(off))
        }
    }

    fn is_ejected(&self, b: &Backend, now_off: i64) -> bool {
        let until = b.ejected_until.load(Ordering::Acquire);
        until != NONE && now_off < until
    }

    fn admin(&self, b: &Backend) -> AdminState {
        AdminState::from_u8(b.admin.load(Ordering::Acquire))
    }

    fn available(&self, i: usize, now_off: i64) -> bool {
        let Some(b) = self.backends.get(i) else {
            return false;
        };
        b.healthy.load(Ordering::Acquire)
            && self.admin(b) == AdminState::Enabled
            && !self.is_ejected(b, now_off)
    }

    /// Slow-start factor in per mille (100..=1000).
    fn ramp_milli(&self, b: &Backend, now_off: i64) -> u64 {
        let Some(ss) = self.spec.slow_start.filter(|d| !d.is_zero()) else {
            return MILLI;
        };
        let from = b.slow_start_from.load(Ordering::Acquire);
        if from == NONE {
            return MILLI;
        }
        let elapsed = now_off.saturating_sub(from).max(0) as u128;
        let total = dur_nanos(ss.min(MAX_DURATION)).max(1) as u128;
        if elapsed >= total {
            return MILLI;
        }
        let span = u128::from(MILLI - SLOW_START_FLOOR_MILLI);
        SLOW_START_FLOOR_MILLI + (span * elapsed / total) as u64
    }

    /// Effective weight in 1/1000 units; `0` only if the configured weight is 0.
    fn eff_weight(&self, i: usize, now_off: i64) -> u64 {
        let w = u64::from(self.spec.backends[i].weight);
        if w == 0 {
            return 0;
        }
        (w * self.ramp_milli(&self.backends[i], now_off)).max(1)
    }

    fn next_random(&self) -> u64 {
        // splitmix64 over a shared atomic counter
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn random_below(&self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_random()) * u128::from(n)) >> 64) as u64
    }

    /// Latency estimate in ns at `now_off` (decayed towards zero since the last sample).
    fn ewma_ns(&self, rt: &Runtime, now_off: i64) -> f64 {
        match rt.ewma_ns {
            None => DEFAULT_LATENCY.as_nanos() as f64,
            Some(v) => v * decay(now_off.saturating_sub(rt.ewma_stamp)),
        }
    }
}

/// Weight of the old value after `dt_ns` for the configured half-life.
fn decay(dt_ns: i64) -> f64 {
    if dt_ns <= 0 {
        return 1.0;
    }
    let half = EWMA_HALF_LIFE.as_nanos() as f64;
    (-(dt_ns as f64) / half * std::f64::consts::LN_2).exp()
}

impl Pool {
    /// Creates the runtime state for `spec`. All backends start healthy,
    /// enabled, not ejected and without slow start.
    pub fn new(spec: PoolSpec, now: Instant) -> Pool {
        let backends = spec.backends.iter().map(|_| Backend::new()).collect();
        let primary_ring = Ring::build(
            spec.backends
                .iter()
                .enumerate()
                .filter(|(_, b)| !b.backup)
                .map(|(i, b)| (i, b.id.as_str(), b.weight)),
        );
        let backup_ring = Ring::build(
            spec.backends
                .iter()
                .enumerate()
                .filter(|(_, b)| b.backup)
                .map(|(i, b)| (i, b.id.as_str(), b.weight)),
        );
        let seed = RandomState::new().hash_one(spec.backends.len());
        let n = spec.backends.len();
        Pool {
            inner: Arc::new(Inner {
                epoch: now,
                backends,
                primary_ring,
                backup_ring,
                rr: AtomicUsize::new(0),
                wrr: Mutex::new(vec![0; n]),
                eject_lock: Mutex::new(()),
                rng: AtomicU64::new(seed),
                last_now: AtomicI64::new(0),
                spec,
            }),
        }
    }

    /// Number of backends (primaries and backups).
    pub fn len(&self) -> usize {
        self.inner.backends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.backends.is_empty()
    }

    pub fn spec(&self) -> &PoolSpec {
        &self.inner.spec
    }

    /// Index of the first backend with this id.
    pub fn find(&self, id: &str) -> Option<usize> {
        self.inner.spec.backends.iter().position(|b| b.id == id)
    }

    /// Healthy, [`AdminState::Enabled`] and not ejected.
    pub fn is_available(&self, index: usize, now: Instant) -> bool {
        self.inner.available(index, self.inner.touch(now))
    }

    /// Whether an existing sticky session may keep using this backend.
    ///
    /// Same as [`is_available`](Self::is_available) (weight 0 is fine here).
    /// In particular a backend in [`AdminState::Drain`] returns `false`: drained
    /// backends lose their sticky sessions, and the proxy is expected to pick a
    /// new backend with [`pick`](Self::pick) and re-issue the cookie.
    pub fn accepts_sticky(&self, index: usize, now: Instant) -> bool {
        self.is_available(index, now)
    }

    /// Chooses a backend for a new request.
    ///
    /// Eligible backends are available (see [`is_available`](Self::is_available)),
    /// have a configured weight > 0 and are not in `exclude` (indices already
    /// tried by this request). Backups are only considered when no primary is
    /// eligible — so a retry whose primaries are all excluded may go to a backup.
    /// `hash_key` is used by [`Algorithm::ConsistentHash`] only (without it,
    /// that algorithm falls back to round robin). Returns `None` when nothing is
    /// eligible.
    pub fn pick(&self, hash_key: Option<u64>, exclude: &[usize], now: Instant) -> Option<usize> {
        let inner = &*self.inner;
        let now_off = inner.touch(now);
        let eligible = |i: usize| {
            inner.spec.backends[i].weight > 0
                && !exclude.contains(&i)
                && inner.available(i, now_off)
        };
        // Candidates on the stack for pools of ordinary size; no allocation per request.
        let mut stack = [0usize; 32];
        let mut heap = Vec::new();
        let primaries = (0..inner.backends.len())
            .filter(|&i| !inner.spec.backends[i].backup && eligible(i))
            .count();
        let backup = primaries == 0;
        let cands = candidates(
            (0..inner.backends.len())
                .filter(|&i| inner.spec.backends[i].backup == backup && eligible(i)),
            &mut stack,
            &mut heap,
        );
        if cands.is_empty() {
            return None;
        }
        if cands.len() == 1 {
            return Some(cands[0]);
        }
        match inner.spec.algorithm {
            Algorithm::RoundRobin => Some(self.pick_rr(cands)),
            Algorithm::WeightedRoundRobin => Some(self.pick_wrr(cands, now_off)),
            Algorithm::LeastConnections => Some(self.pick_least(cands, now_off)),
            Algorithm::PowerOfTwoEwma => Some(self.pick_p2c(cands, now_off)),
            Algorithm::Random => Some(self.pick_random(cands, now_off)),
            Algorithm::ConsistentHash => match hash_key {
                None => Some(self.pick_rr(cands)),
                Some(key) => {
                    let ring = if backup {
                        &inner.backup_ring
                    } else {
                        &inner.primary_ring
                    };
                    if ring.is_empty() {
                        return Some(self.pick_rr(cands));
                    }
                    ring.lookup(key, |i| cands.contains(&i))
                }
            },
        }
    }

    fn pick_rr(&self, cands: &[usize]) -> usize {
        let n = self.inner.rr.fetch_add(1, Ordering::Relaxed);
        cands[n % cands.len()]
    }

    fn pick_wrr(&self, cands: &[usize], now_off: i64) -> usize {
        let inner = &*self.inner;
        let mut cur = lock(&inner.wrr);
        let mut total: i64 = 0;
        let mut best = cands[0];
        let mut best_val = i64::MIN;
        for &i in cands {
            let w = i64::try_from(inner.eff_weight(i, now_off)).unwrap_or(i64::MAX / 1024);
            cur[i] = cur[i].saturating_add(w);
            total = total.saturating_add(w);
            if cur[i] > best_val {
                best_val = cur[i];
                best = i;
            }
        }
        cur[best] = cur[best].saturating_sub(total);
        best
    }

    fn pick_least(&self, cands: &[usize], now_off: i64) -> usize {
        let inner = &*self.inner;
        let start = inner.rr.fetch_add(1, Ordering::Relaxed);
        let n = cands.len();
        let mut best = cands[start % n];
        let mut best_out = u128::from(inner.backends[best].outstanding.load(Ordering::Acquire));
        let mut best_w = u128::from(inner.eff_weight(best, now_off));
        for k in 1..n {
            let i = cands[(start + k) % n];
            let out = u128::from(inner.backends[i].outstanding.load(Ordering::Acquire));
            let w = u128::from(inner.eff_weight(i, now_off));
            // out / w < best_out / best_w
            if out * best_w < best_out * w {
                best = i;
                best_out = out;
                best_w = w;
            }
        }
        best
    }

    fn score_p2c(&self, i: usize, now_off: i64) -> f64 {
        let inner = &*self.inner;
        let b = &inner.backends[i];
        let lat = inner.ewma_ns(&lock(&b.rt), now_off).max(1.0);
        let out = f64::from(b.outstanding.load(Ordering::Acquire)) + 1.0;
        let w = inner.eff_weight(i, now_off).max(1) as f64;
        lat * out / w
    }

    fn pick_p2c(&self, cands: &[usize], now_off: i64) -> usize {
        let inner = &*self.inner;
        let n = cands.len() as u64;
        let a = inner.random_below(n);
        let mut b = inner.random_below(n - 1);
        if b >= a {
            b += 1;
        }
        let (a, b) = (cands[a as usize], cands[b as usize]);
        let (sa, sb) = (self.score_p2c(a, now_off), self.score_p2c(b, now_off));
        if sb < sa { b } else { a }
    }

    fn pick_random(&self, cands: &[usize], now_off: i64) -> usize {
        let inner = &*self.inner;
        let weights: Vec<u64> = cands
            .iter()
            .map(|&i| inner.eff_weight(i, now_off))
            .collect();
        let total: u64 = weights.iter().fold(0u64, |a, &w| a.saturating_add(w));
        let mut r = inner.random_below(total.max(1));
        for (k, &w) in weights.iter().enumerate() {
            if r < w {
                return cands[k];
            }
            r -= w;
        }
        cands[cands.len() - 1]
    }

    /// Snapshot of one backend. Panics if `index >= self.len()`.
    ///
    /// Time-dependent fields are evaluated at the latest `now` passed to any
    /// method of this pool (or its creation time); use
    /// [`backend_at_time`](Self::backend_at_time) to choose the time.
    pub fn backend(&self, index: usize) -> BackendView {
        self.backend_at(index, None)
    }

    /// Like [`backend`](Self::backend), with time-dependent fields
    /// (`effective_weight`, `ejected_until`, `ewma_latency`) evaluated at `now`.
    pub fn backend_at_time(&self, index: usize, now: Instant) -> BackendView {
        self.backend_at(index, Some(now))
    }

    fn backend_at(&self, index: usize, now: Option<Instant>) -> BackendView {
        let inner = &*self.inner;
        let spec = &inner.spec.backends[index];
        let b = &inner.backends[index];
        let rt = lock(&b.rt).clone();
        let now_off = match now {
            Some(t) => inner.touch(t),
            None => inner.last_now.load(Ordering::Acquire),
        };
        let ejected_until = b.ejected_until.load(Ordering::Acquire);
        let ramp = inner.ramp_milli(b, now_off);
        let eff = inner.eff_weight(index, now_off);
        BackendView {
            id: spec.id.clone(),
            weight: spec.weight,
            backup: spec.backup,
            healthy: b.healthy.load(Ordering::Acquire),
            admin: inner.admin(b),
            ejected_until: (ejected_until != NONE && now_off < ejected_until)
                .then(|| inner.instant(ejected_until)),
            outstanding: b.outstanding.load(Ordering::Acquire),
            ewma_latency: Duration::from_nanos(inner.ewma_ns(&rt, now_off).max(0.0) as u64),
            total_requests: b.total_requests.load(Ordering::Relaxed),
            total_failures: b.total_failures.load(Ordering::Relaxed),
            effective_weight: u32::try_from(eff.div_ceil(MILLI)).unwrap_or(u32::MAX),
            slow_start_factor: ramp as f64 / MILLI as f64,
        }
    }

    /// Counts a request in flight on `index` until the returned guard is dropped.
    /// An out-of-range index yields an inert guard.
    pub fn start_request(&self, index: usize) -> InFlight {
        match self.inner.backends.get(index) {
            Some(b) => {
                b.outstanding.fetch_add(1, Ordering::AcqRel);
                InFlight {
                    inner: Some(Arc::clone(&self.inner)),
                    index,
                }
            }
            None => InFlight { inner: None, index },
        }
    }

    /// Passive observation of a finished request.
    ///
    /// `latency` feeds the EWMA used by `PowerOfTwoEwma` (failures are recorded
    /// as at least [`FAILURE_LATENCY_PENALTY`]); `success == false` (connect
    /// failure, upstream 5xx, timeout) feeds outlier detection.
    pub fn record_outcome(&self, index: usize, latency: Duration, success: bool, now: Instant) {
        let inner = &*self.inner;
        let Some(b) = inner.backends.get(index) else {
            return;
        };
        let now_off = inner.touch(now);
        b.total_requests.fetch_add(1, Ordering::Relaxed);
        if !success {
            b.total_failures.fetch_add(1, Ordering::Relaxed);
        }
        let sample = if success {
            latency
        } else {
            latency.max(FAILURE_LATENCY_PENALTY)
        };
        let sample_ns = sample.min(MAX_DURATION).as_nanos() as f64;

        let mut rt = lock(&b.rt);
        // peak EWMA: jump up to a slower sample, decay towards faster ones
        let w = decay(now_off.saturating_sub(rt.ewma_stamp));
        rt.ewma_ns = Some(match rt.ewma_ns {
            None => sample_ns,
            Some(prev) => {
                let decayed = prev * w;
                if sample_ns > decayed {
                    sample_ns
                } else {
                    decayed + sample_ns * (1.0 - w)
                }
            }
        });
        rt.ewma_stamp = rt.ewma_stamp.max(now_off);

        let Some(op) = inner.spec.outlier else {
            return;
        };
        let ejected = inner.is_ejected(b, now_off);
        if success {
            rt.outcome_failures = 0;
            if !ejected && rt.times_ejected > 0 {
                let since = *rt.clean_since.get_or_insert(now_off);
                if now_off.saturating_sub(since) >= dur_nanos(op.max_ejection.min(MAX_DURATION)) {
                    rt.times_ejected = 0;
                    rt.clean_since = None;
                }
            }
            return;
        }
        rt.clean_since = None;
        rt.outcome_failures = rt.outcome_failures.saturating_add(1);
        if ejected || rt.outcome_failures < op.consecutive_failures.max(1) {
            return;
        }
        drop(rt);
        self.try_eject(index, &op, now_off);
    }

    fn try_eject(&self, index: usize, op: &OutlierParams, now_off: i64) {
        let inner = &*self.inner;
        let _guard = lock(&inner.eject_lock);
        let b = &inner.backends[index];
        if inner.is_ejected(b, now_off) {
            return;
        }
        let tier = inner.spec.backends[index].backup;
        let members = inner
            .spec
            .backends
            .iter()
            .filter(|s| s.backup == tier)
            .count();
        let ejected = inner
            .spec
            .backends
            .iter()
            .zip(&inner.backends)
            .filter(|(s, bb)| s.backup == tier && inner.is_ejected(bb, now_off))
            .count();
        let pct = usize::from(op.max_ejected_percent.min(100));
        let allowed =
            pct > 0 && ((ejected + 1) * 100 <= pct * members || (ejected == 0 && members >= 2));
        if !allowed {
            // keep the failure streak: the next failure retries once capacity frees up
            return;
        }
        let mut rt = lock(&b.rt);
        rt.times_ejected = rt.times_ejected.saturating_add(1);
        rt.outcome_failures = 0;
        rt.clean_since = None;
        let max = op.max_ejection.min(MAX_DURATION);
        let dur = 1u32
            .checked_shl(rt.times_ejected - 1)
            .and_then(|factor| op.base_ejection.min(MAX_DURATION).checked_mul(factor))
            .unwrap_or(max)
            .min(max);
        let until = now_off.saturating_add(dur_nanos(dur));
        b.ejected_until.store(until, Ordering::Release);
        // the slow-start ramp begins when the ejection ends
        b.slow_start_from.store(until, Ordering::Release);
    }

    /// Active health-check result; returns the transition when the rise/fall
    /// state machine flips. Coming back up starts slow start at `now`.
    pub fn record_health_check(
        &self,
        index: usize,
        success: bool,
        now: Instant,
    ) -> Option<HealthTransition> {
        let inner = &*self.inner;
        let b = inner.backends.get(index)?;
        let mut rt = lock(&b.rt);
        let healthy = b.healthy.load(Ordering::Acquire);
        if success {
            rt.check_failures = 0;
            rt.check_successes = rt.check_successes.saturating_add(1);
            if !healthy && rt.check_successes >= inner.spec.health.rise.max(1) {
                b.slow_start_from.store(inner.touch(now), Ordering::Release);
                b.healthy.store(true, Ordering::Release);
                return Some(HealthTransition::WentUp);
            }
        } else {
            rt.check_successes = 0;
            rt.check_failures = rt.check_failures.saturating_add(1);
            if healthy && rt.check_failures >= inner.spec.health.fall.max(1) {
                b.healthy.store(false, Ordering::Release);
                return Some(HealthTransition::WentDown);
            }
        }
        None
    }

    /// Sets the operator state of a backend (takes effect for the next pick).
    pub fn set_admin_state(&self, index: usize, state: AdminState) {
        if let Some(b) = self.inner.backends.get(index) {
            b.admin.store(state.to_u8(), Ordering::Release);
        }
    }

    /// Reload support: for every backend whose `id` also exists in `old`, copies
    /// health (and check streaks), admin state, ejection (and its doubling
    /// state), latency EWMA, request/failure counters and the slow-start clock.
    ///
    /// The outstanding count is *not* copied: [`InFlight`] guards issued by
    /// `old` keep decrementing `old`'s counters, so the new pool only counts
    /// requests it started itself.
    pub fn inherit_state(&self, old: &Pool) {
        let new = &*self.inner;
        let prev = &*old.inner;
        if Arc::ptr_eq(&old.inner, &self.inner) {
            return;
        }
        for (i, spec) in new.spec.backends.iter().enumerate() {
            let Some(j) = prev.spec.backends.iter().position(|b| b.id == spec.id) else {
                continue;
            };
            let (nb, ob) = (&new.backends[i], &prev.backends[j]);
            let ort = lock(&ob.rt).clone();
            nb.healthy
                .store(ob.healthy.load(Ordering::Acquire), Ordering::Release);
            nb.admin
                .store(ob.admin.load(Ordering::Acquire), Ordering::Release);
            nb.ejected_until.store(
                new.rebase(prev, ob.ejected_until.load(Ordering::Acquire)),
                Ordering::Release,
            );
            nb.slow_start_from.store(
                new.rebase(prev, ob.slow_start_from.load(Ordering::Acquire)),
                Ordering::Release,
            );
            nb.total_requests
                .store(ob.total_requests.load(Ordering::Relaxed), Ordering::Relaxed);
            nb.total_failures
                .store(ob.total_failures.load(Ordering::Relaxed), Ordering::Relaxed);
            let mut nrt = lock(&nb.rt);
            *nrt = Runtime {
                clean_since: ort.clean_since.map(|c| new.rebase(prev, c)),
                ewma_stamp: new.rebase(prev, ort.ewma_stamp),
                ..ort
            };
        }
    }
}

/// Collects backend indexes into `stack` when they fit, else into `heap`.
fn candidates<'a>(
    indexes: impl Iterator<Item = usize>,
    stack: &'a mut [usize; 32],
    heap: &'a mut Vec<usize>,
) -> &'a [usize] {
    let mut len = 0;
    for i in indexes {
        if len < stack.len() {
            stack[len] = i;
            len += 1;
        } else {
            if heap.is_empty() {
                heap.extend_from_slice(&stack[..]);
            }
            heap.push(i);
        }
    }
    if heap.is_empty() {
        &stack[..len]
    } else {
        &heap[..]
    }
}

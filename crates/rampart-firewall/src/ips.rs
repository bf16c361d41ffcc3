//! Intrusion prevention: security events feed scenarios, a scenario that overflows bans the
//! source.
//!
//! A scenario is a leaky bucket per source address (CrowdSec's model): it holds `capacity`
//! events and leaks one per `leak` interval; the event that finds it full triggers it. That is
//! exactly a GCRA with `burst = capacity` and one cell per `leak`, so the scenario's buckets are
//! a [`KeyedLimiter`] whose refusals are the triggers.
//!
//! A triggered scenario bans the source for the scenario's `ban` time, multiplied by
//! `factor^(n−1)` for its n-th offence (fail2ban's `bantime.increment`), capped at `max_ban`;
//! offences are forgotten `forget_after` after the last one. Addresses in the allow-list are
//! never banned, whether by a scenario or by hand.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::canonical_ip;
use crate::ipset::IpSet;
use crate::ratelimit::{Gcra, KeyedLimiter};

/// What happened. The names are those of the config and the security log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Refused by an ACL or the zone policy.
    AclBlock,
    /// Refused by the WAF.
    WafBlock,
    /// Refused by a content filter.
    ContentBlock,
    /// Refused by a rate limit.
    RateLimited,
    /// Any 4xx answer.
    ClientError,
    /// A 404 answer.
    NotFound,
    /// A 401 or 403 answer from the upstream.
    AuthFailure,
    /// A User-Agent of a known scanning tool.
    ScannerUserAgent,
    /// A request head or body that did not arrive in time.
    SlowClient,
    /// A malformed request (400, bad framing, oversized head).
    ProtocolViolation,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::AclBlock,
        EventKind::WafBlock,
        EventKind::ContentBlock,
        EventKind::RateLimited,
        EventKind::ClientError,
        EventKind::NotFound,
        EventKind::AuthFailure,
        EventKind::ScannerUserAgent,
        EventKind::SlowClient,
        EventKind::ProtocolViolation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventKind::AclBlock => "acl_block",
            EventKind::WafBlock => "waf_block",
            EventKind::ContentBlock => "content_block",
            EventKind::RateLimited => "rate_limited",
            EventKind::ClientError => "client_error",
            EventKind::NotFound => "not_found",
            EventKind::AuthFailure => "auth_failure",
            EventKind::ScannerUserAgent => "scanner_user_agent",
            EventKind::SlowClient => "slow_client",
            EventKind::ProtocolViolation => "protocol_violation",
        }
    }

    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// User-Agent fragments of common scanning tools (lower case).
pub const SCANNER_AGENTS: [&str; 18] = [
    "sqlmap",
    "nikto",
    "nmap",
    "masscan",
    "zgrab",
    "nuclei",
    "wpscan",
    "dirbuster",
    "gobuster",
    "ffuf",
    "feroxbuster",
    "acunetix",
    "nessus",
    "openvas",
    "w3af",
    "arachni",
    "skipfish",
    "whatweb",
];

/// Whether a User-Agent value names a known scanner.
pub fn is_scanner_agent(value: &[u8]) -> bool {
    let lower = value.to_ascii_lowercase();
    SCANNER_AGENTS
        .iter()
        .any(|s| lower.windows(s.len()).any(|w| w == s.as_bytes()))
}

/// One scenario's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioSpec {
    pub name: String,
    pub events: Vec<EventKind>,
    /// Events the bucket holds; the next one while it is full triggers the scenario.
    pub capacity: u32,
    /// One event leaks out per this interval.
    pub leak: Duration,
    /// Ban time of a first offence.
    pub ban: Duration,
}

/// Escalation of repeat offences. An offence is forgotten `forget_after` after its ban ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanPolicy {
    pub factor: u32,
    pub max_ban: Duration,
    pub forget_after: Duration,
}

impl Default for BanPolicy {
    fn default() -> Self {
        BanPolicy {
            factor: 2,
            max_ban: Duration::from_secs(7 * 86_400),
            forget_after: Duration::from_secs(86_400),
        }
    }
}

/// A ban in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub ip: IpAddr,
    pub since: Instant,
    pub until: Instant,
    /// The scenario that triggered it, or `manual`.
    pub reason: String,
    /// 1 for a first offence.
    pub offence: u32,
}

impl Ban {
    pub fn ttl(&self) -> Duration {
        self.until.saturating_duration_since(self.since)
    }
    pub fn remaining(&self, now: Instant) -> Duration {
        self.until.saturating_duration_since(now)
    }
}

/// Why a ban was not placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BanRefused {
    #[error("{0} is on the allow-list and is never banned")]
    AllowListed(IpAddr),
}

/// Bans in force, and the offence history that escalates them. Outlives reloads.
///
/// Bounded: beyond `capacity` bans the one closest to its end makes room, and the offence
/// history is capped the same way.
#[derive(Debug)]
pub struct BanTable {
    bans: RwLock<HashMap<IpAddr, Ban>>,
    /// Per source: offences so far and when the last ban ended (or ends).
    offences: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    count: AtomicUsize,
    capacity: AtomicUsize,
}

impl Default for BanTable {
    fn default() -> Self {
        BanTable::new(DEFAULT_MAX_BANS)
    }
}

/// Bans remembered at most unless configured otherwise.
pub const DEFAULT_MAX_BANS: usize = 100_000;

/// The longest ban there is (366 days): beyond it time arithmetic and nft timeouts break.
pub const MAX_BAN: Duration = Duration::from_secs(366 * 86_400);

impl BanTable {
    pub fn new(capacity: usize) -> Self {
        BanTable {
            bans: RwLock::new(HashMap::new()),
            offences: Mutex::new(HashMap::new()),
            count: AtomicUsize::new(0),
            capacity: AtomicUsize::new(capacity.max(1)),
        }
    }

    pub fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity.max(1), Ordering::Relaxed);
    }

    /// The ban on `ip` in force at `now`. Costs one atomic load while nothing is banned.
    pub fn banned(&self, ip: IpAddr, now: Instant) -> Option<Ban> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let ip = canonical_ip(ip);
        let bans = self.bans.read().unwrap_or_else(|p| p.into_inner());
        bans.get(&ip).filter(|b| b.until > now).cloned()
    }

    /// Bans held (including any that ended but were not expired yet).
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert_locked(&self, bans: &mut HashMap<IpAddr, Ban>, ban: Ban) {
        if !bans.contains_key(&ban.ip)
            && bans.len() >= self.capacity.load(Ordering::Relaxed)
            && let Some(soonest) = bans.values().min_by_key(|b| b.until).map(|b| b.ip)
        {
            bans.remove(&soonest);
        }
        bans.insert(ban.ip, ban);
        self.count.store(bans.len(), Ordering::Relaxed);
    }

    /// Bans `ip` for `base` escalated by its offence history, unless a ban is already in force
    /// (then `Err` with that ban). Check and ban are one step.
    pub fn ban(
        &self,
        ip: IpAddr,
        base: Duration,
        reason: &str,
        policy: &BanPolicy,
        now: Instant,
    ) -> Result<Ban, Ban> {
        let ip = canonical_ip(ip);
        let mut bans = self.bans.write().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = bans.get(&ip).filter(|b| b.until > now) {
            return Err(existing.clone());
        }
        let max_ban = policy.max_ban.min(MAX_BAN);
        let base = base.min(max_ban);
        let mut offences = self.offences.lock().unwrap_or_else(|p| p.into_inner());
        let previous = offences
            .get(&ip)
            .filter(|(_, ended)| now.saturating_duration_since(*ended) <= policy.forget_after)
            .map_or(0, |(n, _)| *n);
        let offence = previous.saturating_add(1);
        let factor = f64::from(policy.factor.max(1)).powi(offence.saturating_sub(1).min(64) as i32);
        let secs = (base.as_secs_f64() * factor).min(max_ban.as_secs_f64());
        let ttl = Duration::from_secs_f64(secs).max(base);
        let ban = Ban {
            ip,
            since: now,
            until: now + ttl,
            reason: reason.to_string(),
            offence,
        };
        if !offences.contains_key(&ip)
            && offences.len() >= self.capacity.load(Ordering::Relaxed)
            && let Some(oldest) = offences
                .iter()
                .min_by_key(|(_, (_, ended))| *ended)
                .map(|(k, _)| *k)
        {
            offences.remove(&oldest);
        }
        offences.insert(ip, (offence, ban.until));
        drop(offences);
        self.insert_locked(&mut bans, ban.clone());
        Ok(ban)
    }

    /// A ban of exactly `ttl` from now (at most [`MAX_BAN`]), replacing any ban of `ip`; not
    /// an offence.
    pub fn set(&self, ip: IpAddr, ttl: Duration, reason: &str, now: Instant) -> Ban {
        let ip = canonical_ip(ip);
        let ban = Ban {
            ip,
            since: now,
            until: now + ttl.min(MAX_BAN),
            reason: reason.to_string(),
            offence: 0,
        };
        let mut bans = self.bans.write().unwrap_or_else(|p| p.into_inner());
        self.insert_locked(&mut bans, ban.clone());
        ban
    }

    /// Lifts a ban; the offence history stays.
    pub fn unban(&self, ip: IpAddr) -> Option<Ban> {
        let ip = canonical_ip(ip);
        let mut bans = self.bans.write().unwrap_or_else(|p| p.into_inner());
        let removed = bans.remove(&ip);
        self.count.store(bans.len(), Ordering::Relaxed);
        removed
    }

    /// Bans in force, longest remaining first.
    pub fn list(&self, now: Instant) -> Vec<Ban> {
        let mut out: Vec<Ban> = self
            .bans
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|b| b.until > now)
            .cloned()
            .collect();
        out.sort_by(|a, b| b.until.cmp(&a.until).then(a.ip.cmp(&b.ip)));
        out
    }

    /// Drops ended bans and forgotten offences; returns the bans that ended.
    pub fn expire(&self, now: Instant, policy: &BanPolicy) -> Vec<Ban> {
        let mut expired = Vec::new();
        if self.count.load(Ordering::Relaxed) > 0 {
            let mut bans = self.bans.write().unwrap_or_else(|p| p.into_inner());
            bans.retain(|_, b| {
                let keep = b.until > now;
                if !keep {
                    expired.push(b.clone());
                }
                keep
            });
            self.count.store(bans.len(), Ordering::Relaxed);
        }
        let mut offences = self.offences.lock().unwrap_or_else(|p| p.into_inner());
        if !offences.is_empty() {
            offences.retain(|_, (_, ended)| {
                now.saturating_duration_since(*ended) <= policy.forget_after
            });
        }
        expired
    }
}

/// A scenario and its buckets.
#[derive(Debug)]
pub struct Scenario {
    pub spec: ScenarioSpec,
    buckets: Arc<KeyedLimiter>,
}

impl Scenario {
    /// Buckets are kept from `previous` when its parameters are the same.
    pub fn new(
        spec: ScenarioSpec,
        max_sources: usize,
        previous: Option<&Scenario>,
        now: Instant,
    ) -> Self {
        let buckets = match previous {
            Some(p) if p.spec == spec => Arc::clone(&p.buckets),
            _ => Arc::new(KeyedLimiter::new(
                Gcra::new(1, spec.leak, spec.capacity),
                max_sources,
                now,
            )),
        };
        Scenario { spec, buckets }
    }
}

/// What recording an event decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Counted; no scenario triggered.
    Counted,
    /// The source is on the allow-list: not counted.
    AllowListed,
    /// A scenario triggered and the source is now banned.
    Banned(Ban),
    /// A scenario triggered for a source already banned (events still in flight).
    AlreadyBanned(Ban),
}

/// The detector of one config generation.
#[derive(Debug)]
pub struct Detector {
    pub scenarios: Vec<Scenario>,
    pub policy: BanPolicy,
    allow: Vec<Arc<IpSet>>,
}

impl Detector {
    pub fn new(scenarios: Vec<Scenario>, policy: BanPolicy, allow: Vec<Arc<IpSet>>) -> Self {
        Detector {
            scenarios,
            policy,
            allow,
        }
    }

    pub fn allow_listed(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|s| s.contains(ip))
    }

    /// Whether any scenario counts `kind` (so callers can skip work for it).
    pub fn watches(&self, kind: EventKind) -> bool {
        self.scenarios.iter().any(|s| s.spec.events.contains(&kind))
    }

    /// Records one event of `kind` from `ip`; bans through `bans` when a scenario triggers.
    pub fn record(&self, bans: &BanTable, ip: IpAddr, kind: EventKind, now: Instant) -> Verdict {
        let ip = canonical_ip(ip);
        if self.allow_listed(ip) {
            return Verdict::AllowListed;
        }
        for scenario in &self.scenarios {
            if !scenario.spec.events.contains(&kind) {
                continue;
            }
            if !scenario.buckets.check(&ip, now).allowed() {
                return match bans.ban(
                    ip,
                    scenario.spec.ban,
                    &scenario.spec.name,
                    &self.policy,
                    now,
                ) {
                    Ok(ban) => Verdict::Banned(ban),
                    Err(existing) => Verdict::AlreadyBanned(existing),
                };
            }
        }
        Verdict::Counted
    }

    /// A ban by hand (admin API, CLI); refused for allow-listed addresses.
    pub fn manual_ban(
        &self,
        bans: &BanTable,
        ip: IpAddr,
        ttl: Duration,
        now: Instant,
    ) -> Result<Ban, BanRefused> {
        let ip = canonical_ip(ip);
        if self.allow_listed(ip) {
            return Err(BanRefused::AllowListed(ip));
        }
        Ok(bans.set(ip, ttl, "manual", now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_scenario() -> ScenarioSpec {
        ScenarioSpec {
            name: "http-404-scan".into(),
            events: vec![EventKind::NotFound],
            capacity: 5,
            leak: Duration::from_secs(1),
            ban: Duration::from_secs(60),
        }
    }

    fn detector(allow: &str) -> Detector {
        let now = Instant::now();
        Detector::new(
            vec![Scenario::new(scan_scenario(), 1000, None, now)],
            BanPolicy::default(),
            vec![Arc::new(IpSet::parse(allow).unwrap())],
        )
    }

    #[test]
    fn overflow_bans_and_repeat_offences_double() {
        let d = detector("10.0.0.0/8");
        let bans = BanTable::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(
                d.record(&bans, ip, EventKind::NotFound, t0),
                Verdict::Counted
            );
        }
        // Other kinds do not fill this scenario.
        assert_eq!(
            d.record(&bans, ip, EventKind::ClientError, t0),
            Verdict::Counted
        );
        let Verdict::Banned(ban) = d.record(&bans, ip, EventKind::NotFound, t0) else {
            panic!("expected a ban")
        };
        assert_eq!((ban.ttl(), ban.offence), (Duration::from_secs(60), 1));
        assert!(bans.banned(ip, t0 + Duration::from_secs(59)).is_some());
        assert!(bans.banned(ip, t0 + Duration::from_secs(60)).is_none());
        assert_eq!(
            bans.expire(t0 + Duration::from_secs(61), &d.policy).len(),
            1
        );

        // Second offence, after the bucket has leaked: twice as long.
        let t1 = t0 + Duration::from_secs(120);
        for _ in 0..5 {
            assert_eq!(
                d.record(&bans, ip, EventKind::NotFound, t1),
                Verdict::Counted
            );
        }
        let Verdict::Banned(ban) = d.record(&bans, ip, EventKind::NotFound, t1) else {
            panic!("expected a second ban")
        };
        assert_eq!((ban.ttl(), ban.offence), (Duration::from_secs(120), 2));
    }

    #[test]
    fn leaking_keeps_slow_events_below_the_threshold() {
        let d = detector("10.0.0.0/8");
        let bans = BanTable::default();
        let ip: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..100 {
            let v = d.record(
                &bans,
                ip,
                EventKind::NotFound,
                t0 + Duration::from_millis(1000 * i),
            );
            assert_eq!(v, Verdict::Counted);
        }
    }

    #[test]
    fn allow_listed_sources_are_never_banned() {
        let d = detector("10.0.0.0/8\n::1");
        let bans = BanTable::default();
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(
                d.record(&bans, "10.1.2.3".parse().unwrap(), EventKind::NotFound, t0),
                Verdict::AllowListed
            );
        }
        assert!(bans.is_empty());
        assert_eq!(
            d.manual_ban(
                &bans,
                "::ffff:10.9.9.9".parse().unwrap(),
                Duration::from_secs(5),
                t0
            ),
            Err(BanRefused::AllowListed("10.9.9.9".parse().unwrap()))
        );
        let ban = d
            .manual_ban(
                &bans,
                "192.0.2.9".parse().unwrap(),
                Duration::from_secs(5),
                t0,
            )
            .unwrap();
        assert_eq!(ban.ttl(), Duration::from_secs(5));
        assert_eq!(bans.list(t0).len(), 1);
        // By hand, a shorter ban replaces a longer one exactly.
        let ban = d
            .manual_ban(
                &bans,
                "192.0.2.9".parse().unwrap(),
                Duration::from_secs(2),
                t0,
            )
            .unwrap();
        assert_eq!((ban.ttl(), bans.len()), (Duration::from_secs(2), 1));
        assert!(bans.unban("192.0.2.9".parse().unwrap()).is_some());
        assert!(bans.list(t0).is_empty());
    }

    #[test]
    fn escalation_is_capped_and_forgotten() {
        let bans = BanTable::default();
        let policy = BanPolicy {
            factor: 2,
            max_ban: Duration::from_secs(300),
            forget_after: Duration::from_secs(3600),
        };
        let ip: IpAddr = "192.0.2.3".parse().unwrap();
        let mut t = Instant::now();
        let mut ttls = Vec::new();
        for _ in 0..5 {
            ttls.push(
                bans.ban(ip, Duration::from_secs(60), "s", &policy, t)
                    .unwrap()
                    .ttl()
                    .as_secs(),
            );
            t += Duration::from_secs(1000);
        }
        assert_eq!(ttls, vec![60, 120, 240, 300, 300]);
        // History counts from the end of the last ban, so long bans keep escalating.
        let long = BanPolicy {
            factor: 2,
            max_ban: Duration::from_secs(100_000),
            forget_after: Duration::from_secs(3600),
        };
        let other: IpAddr = "192.0.2.4".parse().unwrap();
        let mut u = Instant::now();
        let mut last = Duration::ZERO;
        for n in 1..=4u32 {
            let ban = bans
                .ban(other, Duration::from_secs(7200), "s", &long, u)
                .unwrap();
            assert_eq!(ban.offence, n);
            last = ban.ttl();
            u = ban.until + Duration::from_secs(60);
        }
        assert_eq!(last, Duration::from_secs(57_600));
        // A ban in force is not replaced by another.
        let during = u - Duration::from_secs(120);
        assert!(
            bans.ban(other, Duration::from_secs(1), "s", &long, during)
                .is_err()
        );
        t += Duration::from_secs(3601);
        assert_eq!(
            bans.ban(ip, Duration::from_secs(60), "s", &policy, t)
                .unwrap()
                .offence,
            1
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let bans = BanTable::new(100);
        let t = Instant::now();
        for i in 0..1000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let ttl = Duration::from_secs(u64::from(i) + 10);
            bans.ban(ip, ttl, "s", &BanPolicy::default(), t).unwrap();
        }
        assert_eq!(bans.len(), 100);
        // The longest bans stayed.
        assert!(bans.banned("10.0.3.231".parse().unwrap(), t).is_some());
        assert!(bans.banned("10.0.0.1".parse().unwrap(), t).is_none());
    }

    #[test]
    fn scanner_agents_are_recognised() {
        assert!(is_scanner_agent(
            b"sqlmap/1.7.2#stable (https://sqlmap.org)"
        ));
        assert!(is_scanner_agent(b"Mozilla/5.00 (Nikto/2.1.6)"));
        assert!(!is_scanner_agent(
            b"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
        ));
        assert!(!is_scanner_agent(b""));
    }

    #[test]
    fn event_names_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.name()), Some(k));
        }
        assert_eq!(EventKind::parse("nope"), None);
    }
}

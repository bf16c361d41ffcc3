//! Static description of a pool: algorithm, backends and tuning parameters.

use std::time::{Duration, Instant};

/// Load-balancing algorithm of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// Cycle over the available backends, ignoring weights.
    #[default]
    RoundRobin,
    /// Smooth weighted round robin (nginx style) on effective weights.
    WeightedRoundRobin,
    /// Fewest outstanding requests relative to effective weight; ties rotate.
    LeastConnections,
    /// Power of two choices on `ewma_latency * (outstanding + 1) / weight`.
    PowerOfTwoEwma,
    /// Ketama ring keyed by the request's hash key (round robin without key).
    ConsistentHash,
    /// Weighted random on effective weights.
    Random,
}

/// One backend of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendSpec {
    /// Stable id, used in sticky cookies, metrics and for [`crate::Pool::inherit_state`].
    pub id: String,
    /// Relative weight. `0` is allowed: such a backend is never picked for new
    /// requests, but existing sticky sessions may keep using it.
    pub weight: u32,
    /// Backup backends only receive traffic when no primary is eligible.
    pub backup: bool,
}

impl BackendSpec {
    /// A primary backend with the given id and weight.
    pub fn new(id: impl Into<String>, weight: u32) -> Self {
        BackendSpec {
            id: id.into(),
            weight,
            backup: false,
        }
    }

    /// A backup backend with the given id and weight.
    pub fn backup(id: impl Into<String>, weight: u32) -> Self {
        BackendSpec {
            id: id.into(),
            weight,
            backup: true,
        }
    }
}

/// Active health-check state machine parameters. Values of `0` are treated as `1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HealthParams {
    /// Consecutive successful checks needed to bring a down backend back up.
    pub rise: u32,
    /// Consecutive failed checks needed to take a healthy backend down.
    pub fall: u32,
}

impl Default for HealthParams {
    fn default() -> Self {
        HealthParams { rise: 2, fall: 3 }
    }
}

/// Passive outlier detection (ejection) parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutlierParams {
    /// Failed outcomes in a row that trigger an ejection (`0` is treated as `1`).
    pub consecutive_failures: u32,
    /// Duration of the first ejection; doubles with each further ejection.
    pub base_ejection: Duration,
    /// Upper bound of an ejection; also the clean period after which the
    /// doubling resets.
    pub max_ejection: Duration,
    /// Maximum share (0..=100) of a tier (primaries or backups) that may be
    /// ejected at once. `0` disables ejection.
    pub max_ejected_percent: u8,
}

/// Full static description of one pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolSpec {
    pub algorithm: Algorithm,
    pub backends: Vec<BackendSpec>,
    pub health: HealthParams,
    pub outlier: Option<OutlierParams>,
    /// Ramp-up period after a backend comes back (health `WentUp` or end of an
    /// ejection). `None` or zero disables slow start.
    pub slow_start: Option<Duration>,
}

impl PoolSpec {
    /// A spec with default health parameters, no outlier detection and no slow start.
    pub fn new(algorithm: Algorithm, backends: Vec<BackendSpec>) -> Self {
        PoolSpec {
            algorithm,
            backends,
            health: HealthParams::default(),
            outlier: None,
            slow_start: None,
        }
    }
}

/// Operator-controlled state of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AdminState {
    /// Normal operation.
    #[default]
    Enabled,
    /// Not picked for new requests and no longer accepted for existing sticky
    /// sessions (those re-stick to another backend); requests already in flight
    /// finish normally.
    Drain,
    /// Never picked.
    Disabled,
}

impl AdminState {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            AdminState::Enabled => 0,
            AdminState::Drain => 1,
            AdminState::Disabled => 2,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            0 => AdminState::Enabled,
            1 => AdminState::Drain,
            _ => AdminState::Disabled,
        }
    }
}

/// A flip of the active health-check state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthTransition {
    /// `fall` consecutive failures took the backend down.
    WentDown,
    /// `rise` consecutive successes brought the backend back up.
    WentUp,
}

/// Point-in-time snapshot of one backend's runtime state.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendView {
    pub id: String,
    /// Configured weight.
    pub weight: u32,
    pub backup: bool,
    /// Result of the active health-check state machine.
    pub healthy: bool,
    pub admin: AdminState,
    /// `Some` while the backend is ejected by outlier detection (only if still in the future).
    pub ejected_until: Option<Instant>,
    /// Requests currently in flight (live [`crate::InFlight`] guards).
    pub outstanding: u32,
    /// Latency estimate used by `PowerOfTwoEwma` (1 ms default without samples).
    pub ewma_latency: Duration,
    pub total_requests: u64,
    pub total_failures: u64,
    /// Weight after slow start, rounded up: equals `weight` outside slow start,
    /// never `0` unless `weight` is `0`.
    pub effective_weight: u32,
    /// Slow-start ramp factor in `0.1..=1.0` (`1.0` when not ramping).
    pub slow_start_factor: f64,
}

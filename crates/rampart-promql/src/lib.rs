//! Rampart's PromQL engine: parses queries with the `promql-parser` crate and evaluates them
//! over any [`Storage`] (the embedded TSDB's head, or a test store), with Prometheus 3's
//! semantics for float samples: left-open lookback and range windows, `offset` and `@`,
//! subqueries aligned to absolute steps, vector matching, aggregations and functions.
//!
//! - [`value`]: labels, samples, series and query results.
//! - [`eval`]: the [`Engine`] (instant and range queries).
//! - [`functions`]: functions over instant vectors and scalars.
//! - [`range_fns`]: functions over range vectors (`rate`, `*_over_time`, …).
//!
//! No IO: the engine reads through the [`Storage`] trait only.

pub mod eval;
pub mod functions;
pub mod range_fns;
pub mod value;

pub use eval::{Engine, QueryError};
pub use value::{Labels, Sample, Series, Value};

/// The bit pattern Prometheus writes as a staleness marker: a series ended.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Whether `value` is the staleness marker.
pub fn is_stale(value: f64) -> bool {
    value.to_bits() == STALE_NAN
}

/// One label matcher of a selector, as the store applies it.
pub use promql_parser::label::Matcher;

/// Where the engine reads series from.
pub trait Storage {
    /// The series whose labels satisfy every matcher, with their samples in `[start, end]`
    /// (milliseconds, both inclusive), oldest first. Series without samples in the range may
    /// be left out. Staleness markers are included (the engine interprets them).
    fn select(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<Series>;
}

//! Rampart's time-series store and its Prometheus HTTP API.
//!
//! - [`head`]: every series' recent samples in memory with a label index; queries read it
//!   through [`rampart_promql::Storage`]. Out-of-order samples are put in their place.
//! - [`remote_write`]: Prometheus remote write 1.0 bodies (snappy + protobuf), decoded with
//!   limits on everything the network sends.
//! - [`api`]: `/api/v1/write`, `/query`, `/query_range`, `/series`, `/labels`,
//!   `/label/<name>/values`, `/status/tsdb` and the admin deletion endpoints.
//!
//! Not built yet: the write-ahead log, compressed blocks on disk, retention and rollups.

pub mod api;
pub mod head;
pub mod remote_write;

pub use head::{AppendError, Head, HeadStats};

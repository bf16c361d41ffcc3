//! The access log: one JSON line per request, written by a background thread so the request
//! path never blocks on disk. When the writer falls behind, lines are dropped and counted.

use std::io::Write;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use serde::Serialize;

/// One access-log record.
#[derive(Debug, Serialize)]
pub struct AccessRecord {
    pub ts: String,
    pub request_id: String,
    pub client: String,
    pub listener: String,
    pub zone: String,
    pub protocol: &'static str,
    pub method: String,
    pub host: String,
    pub path: String,
    pub status: u16,
    pub route: Option<String>,
    pub pool: Option<String>,
    pub backend: Option<String>,
    pub attempts: u32,
    pub bytes_sent: u64,
    pub complete: bool,
    /// Milliseconds from request head to response head.
    pub duration_ms: f64,
    /// Milliseconds until the response body was finished.
    pub total_ms: f64,
    pub upstream_ms: Option<f64>,
    pub error: Option<&'static str>,
}

const QUEUE: usize = 16 * 1024;

/// A log of one JSON object per line, written by a thread of its own so that the request path
/// never waits on IO: records go through a bounded queue and are dropped (and counted in
/// `dropped`) when it is full. Each line is written with one call, so two logs may share
/// stdout without mixing their lines.
pub struct JsonLines<T> {
    tx: Option<SyncSender<T>>,
    dropped: prometheus_client::metrics::counter::Counter,
}

impl<T> Clone for JsonLines<T> {
    fn clone(&self) -> Self {
        JsonLines {
            tx: self.tx.clone(),
            dropped: self.dropped.clone(),
        }
    }
}

/// The access log: one line per request.
pub type AccessLogger = JsonLines<AccessRecord>;

impl<T: Serialize + Send + 'static> JsonLines<T> {
    pub fn off(dropped: prometheus_client::metrics::counter::Counter) -> Self {
        JsonLines { tx: None, dropped }
    }

    pub fn start(
        name: &str,
        sink: Box<dyn Write + Send>,
        dropped: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        let (tx, rx) = sync_channel::<T>(QUEUE);
        std::thread::Builder::new()
            .name(format!("rampart-{name}"))
            .spawn(move || {
                let mut out = std::io::BufWriter::with_capacity(64 * 1024, sink);
                let mut line = Vec::with_capacity(1024);
                while let Ok(first) = rx.recv() {
                    let mut next = Some(first);
                    while let Some(rec) = next {
                        line.clear();
                        if serde_json::to_writer(&mut line, &rec).is_ok() {
                            line.push(b'\n');
                            let _ = out.write_all(&line);
                        }
                        next = rx.try_recv().ok();
                    }
                    let _ = out.flush();
                }
            })
            .expect("spawn log thread");
        JsonLines {
            tx: Some(tx),
            dropped,
        }
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn log(&self, record: T) {
        if let Some(tx) = &self.tx {
            match tx.try_send(record) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.dropped.inc();
                }
            }
        }
    }
}

pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let millis = now.subsec_millis();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (proleptic Gregorian), valid for all dates after 1970.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamp_shape() {
        let t = super::now_rfc3339();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}

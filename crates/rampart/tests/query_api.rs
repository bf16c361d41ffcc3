//! The embedded TSDB's Prometheus API through the binary: remote write in, PromQL out,
//! deletion, and what broken requests get.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use rampart_tsdb::remote_write::{WriteRequest, WrittenSeries, encode};
use support::Proc;

/// One request with `Connection: close`: (status, body).
fn http(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: q\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn query(port: u16, path: &str, params: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let q: String = params
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.bytes()
                    .map(|b| if b.is_ascii_alphanumeric() {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    })
                    .collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let (status, body) = http(port, "GET", &format!("{path}?{q}"), &[], b"");
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")),
    )
}

fn write(port: u16, body: &[u8]) -> (u16, String) {
    http(
        port,
        "POST",
        "/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        body,
    )
}

fn start(dir: &std::path::Path) -> (Proc, u16) {
    let port = support::free_port();
    let listen = support::free_port();
    let cfg = dir.join("rampart.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[[listeners]]
name = "web"
address = "127.0.0.1:{listen}"

[[pools]]
name = "p"
backends = [{{ address = "127.0.0.1:9" }}]

[[routes]]
name = "all"
pool = "p"

[observability]
access_log = "off"
query_address = "127.0.0.1:{port}"
remote_write_receiver = true
tsdb_admin_api = true
"#
        ),
    )
    .unwrap();
    let proc = Proc::spawn({
        let mut c = Command::new(env!("CARGO_BIN_EXE_rampart"));
        c.args(["run", "--config"]).arg(&cfg);
        c
    });
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "query API did not start:\n{}",
            proc.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (proc, port)
}

#[test]
fn remote_write_then_promql_queries() {
    let dir = tempfile::tempdir().unwrap();
    let (_proc, port) = start(dir.path());
    // Two counters scraped every 15 s for 10 minutes, from t = 1,000,000 s.
    let base = 1_000_000_000i64;
    let series = ["a", "b"]
        .iter()
        .enumerate()
        .map(|(i, job)| WrittenSeries {
            labels: vec![
                ("__name__".into(), "requests_total".into()),
                ("job".into(), job.to_string()),
            ],
            samples: (0..=40)
                .map(|k| (base + k * 15_000, (k * (i as i64 + 1) * 30) as f64))
                .collect(),
        })
        .collect();
    let (status, body) = write(
        port,
        &encode(&WriteRequest {
            series,
            histograms: 0,
        }),
    );
    assert_eq!(status, 204, "{body}");

    let end = format!("{}", (base + 600_000) / 1000);
    let (status, v) = query(
        port,
        "/api/v1/query",
        &[
            ("query", "sum by (job) (rate(requests_total[5m]))"),
            ("time", &end),
        ],
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "vector");
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 2);
    // 30 per 15 s = 2/s for job a, 4/s for job b.
    assert_eq!(result[0]["metric"]["job"], "a");
    let value = |i: usize| -> f64 { result[i]["value"][1].as_str().unwrap().parse().unwrap() };
    assert!((value(0) - 2.0).abs() < 1e-9, "{v}");
    assert!((value(1) - 4.0).abs() < 1e-9, "{v}");

    let start_t = format!("{}", (base + 300_000) / 1000);
    let (status, v) = query(
        port,
        "/api/v1/query_range",
        &[
            ("query", "requests_total{job=\"a\"} * 2"),
            ("start", &start_t),
            ("end", &end),
            ("step", "60"),
        ],
    );
    assert_eq!(status, 200, "{v}");
    let values = v["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 6);
    assert_eq!(values[0][1], "1200");

    let (status, v) = query(port, "/api/v1/series", &[("match[]", "requests_total")]);
    assert_eq!(status, 200);
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let (_, v) = query(port, "/api/v1/label/job/values", &[]);
    assert_eq!(v["data"], serde_json::json!(["a", "b"]));

    // Deletion: nothing of the series is visible afterwards.
    let (status, _) = http(
        port,
        "POST",
        "/api/v1/admin/tsdb/delete_series?match[]=%7Bjob%3D%22a%22%7D",
        &[],
        b"",
    );
    assert_eq!(status, 204);
    let (_, v) = query(
        port,
        "/api/v1/query",
        &[("query", "count(requests_total)"), ("time", &end)],
    );
    assert_eq!(v["data"]["result"][0]["value"][1], "1");
}

#[test]
fn broken_requests_get_clear_errors_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_proc, port) = start(dir.path());
    let good = WriteRequest {
        series: vec![WrittenSeries {
            labels: vec![("__name__".into(), "up".into())],
            samples: vec![(1_000, 1.0)],
        }],
        histograms: 0,
    };
    assert_eq!(write(port, &encode(&good)).0, 204);

    let (status, body) = write(port, b"this is not snappy");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("snappy"), "{body}");
    let mut truncated = encode(&good);
    truncated.truncate(truncated.len() - 3);
    let (status, body) = write(port, &truncated);
    assert_eq!(status, 400, "{body}");
    let nameless = WriteRequest {
        series: vec![WrittenSeries {
            labels: vec![("job".into(), "x".into())],
            samples: vec![(1_000, 1.0)],
        }],
        histograms: 0,
    };
    let (status, body) = write(port, &encode(&nameless));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("metric name"), "{body}");

    let (status, v) = query(port, "/api/v1/query", &[("query", "sum(("), ("time", "1")]);
    assert_eq!(status, 400);
    assert_eq!(v["errorType"], "bad_data");
    assert!(v["error"].as_str().unwrap().contains("parse error"), "{v}");
    let (status, v) = query(
        port,
        "/api/v1/query_range",
        &[
            ("query", "up"),
            ("start", "0"),
            ("end", "100000000"),
            ("step", "1"),
        ],
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("11,000 points"),
        "{v}"
    );
    let (status, v) = query(
        port,
        "/api/v1/query_range",
        &[
            ("query", "up"),
            ("start", "0"),
            ("end", "10"),
            ("step", "-1"),
        ],
    );
    assert_eq!(status, 400, "{v}");
    let (status, v) = query(
        port,
        "/api/v1/query",
        &[("query", "up"), ("time", "yesterday")],
    );
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("time"), "{v}");
    let (status, _) = http(port, "POST", "/api/v1/admin/tsdb/delete_series", &[], b"");
    assert_eq!(status, 400);

    // The good sample is still there.
    let (_, v) = query(port, "/api/v1/query", &[("query", "up"), ("time", "1")]);
    assert_eq!(v["data"]["result"][0]["value"][1], "1", "{v}");
}

//! The firewall in the request path, against real sockets on 127.0.0.0/8 (the source address
//! of each client is chosen): zones and the zone policy, ACLs with IP set files reloaded
//! without a restart, GCRA rate limits checked against the algorithm, content filtering and
//! response header scrubbing.
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// One request on a new connection from `source`: `Err` when the proxy closed it unanswered.
async fn request_from(
    source: &str,
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<RawResponse, String> {
    let mut stream = connect_from(source, to).await;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: fw.test\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut data = head.into_bytes();
    data.extend_from_slice(body);
    stream.write_all(&data).await.map_err(|e| e.to_string())?;
    read_raw_response(&mut stream, Duration::from_secs(5)).await
}

async fn status_from(source: &str, to: SocketAddr, path: &str) -> Result<u16, String> {
    request_from(source, to, "GET", path, &[], b"")
        .await
        .map(|r| r.status)
}

fn rejected(proxy: &rampart_proxy::Proxy, reason: &str) -> f64 {
    metric_value(
        proxy,
        &format!("rampart_connections_rejected_total{{listener=\"web\",reason=\"{reason}\"}}"),
    )
}

#[tokio::test]
async fn zones_reach_only_what_the_policy_lists() {
    let backend = TestBackend::start("b").await;
    let config = format!(
        r#"
[[listeners]]
name = "web"
address = "127.0.0.1:0"

[[pools]]
name = "app"
backends = [{{ address = "{b}" }}]
[[pools]]
name = "admin"
backends = [{{ address = "{b}" }}]

[[routes]]
name = "internal"
pool = "admin"
match = {{ path_prefix = "/internal" }}
[[routes]]
name = "public"
pool = "app"

[[firewall.zones]]
name = "mgmt"
sources = ["127.0.0.2/32", "127.0.9.0/24"]

[[firewall.policy]]
zones = ["public"]
routes = ["public"]
[[firewall.policy]]
zones = ["mgmt"]
routes = ["*"]

[observability]
access_log = "off"
"#,
        b = backend.addr
    );
    let (_proxy, addr) = start_proxy(&config).await;
    // Public clients: the public route only.
    assert_eq!(status_from("127.0.0.1", addr, "/hello").await, Ok(200));
    assert_eq!(status_from("127.0.0.1", addr, "/internal/x").await, Ok(403));
    assert_eq!(status_from("127.0.0.3", addr, "/internal").await, Ok(403));
    // Spelling the path differently does not reach the internal route by another one.
    for path in [
        "/x/../internal/a",
        "/%69nternal/a",
        "//internal",
        "/public/..;/internal",
    ] {
        assert_eq!(
            status_from("127.0.0.1", addr, path).await,
            Ok(403),
            "{path}"
        );
    }
    // Clients in the mgmt networks reach both.
    assert_eq!(status_from("127.0.0.2", addr, "/hello").await, Ok(200));
    assert_eq!(status_from("127.0.0.2", addr, "/internal/x").await, Ok(200));
    assert_eq!(
        status_from("127.0.9.77", addr, "/internal/x").await,
        Ok(200)
    );
}

#[tokio::test]
async fn acls_refuse_at_accept_and_set_files_reload_without_restart() {
    let backend = TestBackend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let set_file = dir.path().join("blocked.txt");
    std::fs::write(&set_file, "# blocked clients\n127.0.0.4\n127.0.5.0/24\n").unwrap();
    let config = format!(
        r#"
[[listeners]]
name = "web"
address = "127.0.0.1:0"
acl = "edge"

[[pools]]
name = "p"
backends = [{{ address = "{b}" }}]

[[routes]]
name = "reports"
pool = "p"
acl = "office"
match = {{ path_prefix = "/reports" }}
[[routes]]
name = "all"
pool = "p"

[[firewall.ip_sets]]
name = "blocked"
file = "{file}"

[[firewall.acls]]
name = "edge"
deny = ["@blocked"]
allow = ["127.0.5.7"]

[[firewall.acls]]
name = "office"
allow = ["127.0.0.0/30"]
default = "deny"

[observability]
access_log = "off"
"#,
        b = backend.addr,
        file = set_file.display()
    );
    let (proxy, addr) = start_proxy(&config).await;
    assert_eq!(status_from("127.0.0.1", addr, "/").await, Ok(200));
    // Denied sources are closed at accept, unanswered.
    assert!(status_from("127.0.0.4", addr, "/").await.is_err());
    assert!(status_from("127.0.5.9", addr, "/").await.is_err());
    // A longer allow prefix inside a denied network wins.
    assert_eq!(status_from("127.0.5.7", addr, "/").await, Ok(200));
    assert_eq!(rejected(&proxy, "acl"), 2.0);
    // The route's ACL answers 403 per request.
    assert_eq!(status_from("127.0.0.2", addr, "/reports/q3").await, Ok(200));
    assert_eq!(status_from("127.0.0.9", addr, "/reports/q3").await, Ok(403));

    // The set file changes: 127.0.0.4 is let in, 127.0.0.6 is kept out, without a restart.
    std::fs::write(&set_file, "127.0.5.0/24\n127.0.0.6\n").unwrap();
    let mut reloaded = false;
    for _ in 0..100 {
        if status_from("127.0.0.4", addr, "/").await == Ok(200) {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "set file change not applied");
    assert!(status_from("127.0.0.6", addr, "/").await.is_err());

    // A broken set file is refused whole; the sets in use stay.
    let failures_before = metric_value(&proxy, "rampart_config_reloads_total{outcome=\"failure\"}");
    std::fs::write(&set_file, "127.0.0.4\n10.0.0.1/8\nnonsense\n").unwrap();
    let failed = wait_for(Duration::from_secs(5), || {
        metric_value(&proxy, "rampart_config_reloads_total{outcome=\"failure\"}") > failures_before
    })
    .await;
    assert!(failed, "a broken set file should count a failed reload");
    assert_eq!(status_from("127.0.0.4", addr, "/").await, Ok(200));
    assert!(status_from("127.0.0.6", addr, "/").await.is_err());
}

/// The RateLimit field of a response: (remaining, reset seconds).
fn rate_state(r: &RawResponse) -> (u32, u64) {
    let v = r.header("ratelimit").expect("RateLimit field");
    let field = |k: &str| {
        v.split(';')
            .find_map(|p| p.trim().strip_prefix(k))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {k} in {v:?}"))
    };
    (field("r=") as u32, field("t="))
}

#[tokio::test]
async fn rate_limits_admit_exactly_what_the_gcra_admits() {
    let backend = TestBackend::start("b").await;
    let config = format!(
        r#"
[[listeners]]
name = "web"
address = "127.0.0.1:0"

[[pools]]
name = "p"
backends = [{{ address = "{b}" }}]

[[routes]]
name = "keyed"
pool = "p"
rate_limits = ["per-key"]
match = {{ path_prefix = "/keyed" }}
[[routes]]
name = "api"
pool = "p"
rate_limits = ["api"]

[[firewall.rate_limits]]
name = "api"
rate = "10/s"
burst = 5
key = ["client_ip"]

[[firewall.rate_limits]]
name = "per-key"
rate = "1/min"
burst = 2
key = ["header:x-api-key"]

[observability]
access_log = "off"
"#,
        b = backend.addr
    );
    let (_proxy, addr) = start_proxy(&config).await;

    // A burst from a fresh client: five pass, counting down, then 429s.
    let started = Instant::now();
    let mut answers = Vec::new();
    for _ in 0..8 {
        answers.push(
            request_from("127.0.0.1", addr, "GET", "/", &[], b"")
                .await
                .unwrap(),
        );
    }
    let elapsed = started.elapsed();
    let admitted = answers.iter().filter(|a| a.status == 200).count();
    // GCRA: 5 at once, then one per 100 ms of elapsed time.
    let most = 5 + (elapsed.as_millis() / 100) as usize;
    assert!(
        (5..=most.min(8)).contains(&admitted),
        "{admitted} admitted in {elapsed:?}"
    );
    if elapsed < Duration::from_millis(100) {
        for (i, a) in answers.iter().take(5).enumerate() {
            assert_eq!(a.status, 200);
            assert_eq!(rate_state(a).0, 4 - i as u32, "remaining after request {i}");
        }
        for a in &answers[5..] {
            assert_eq!(a.status, 429);
        }
    }
    let refused = answers.iter().find(|a| a.status == 429).expect("a 429");
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
    assert_eq!(
        refused.header("ratelimit-policy").as_deref(),
        Some("\"api\";q=10;w=1")
    );
    assert_eq!(rate_state(refused).0, 0);
    // Another client address has its own bucket.
    assert_eq!(status_from("127.0.0.2", addr, "/").await, Ok(200));

    // Steady arrivals at twice the rate: every answer is checked against a GCRA run on the
    // client's send times, except within a few milliseconds of a decision boundary, where
    // the two clocks may disagree.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let interval = Duration::from_millis(100);
    let tolerance = interval * 4;
    let jitter = Duration::from_millis(25);
    let mut tat: Option<Instant> = None;
    let mut checked = 0;
    let mut passed = 0;
    for _ in 0..30 {
        let sent = Instant::now();
        let status = status_from("127.0.0.1", addr, "/").await.unwrap();
        let t = tat.unwrap_or(sent).max(sent);
        let ahead = t - sent;
        let clear = if ahead > tolerance {
            ahead - tolerance > jitter
        } else {
            tolerance - ahead > jitter
        };
        if clear {
            checked += 1;
            assert_eq!(
                status == 200,
                ahead <= tolerance,
                "request at {ahead:?} ahead"
            );
        }
        if status == 200 {
            passed += 1;
            tat = Some(t + interval);
        }
        tokio::time::sleep(Duration::from_millis(50).saturating_sub(sent.elapsed())).await;
    }
    assert!(checked >= 15, "only {checked} requests clear of a boundary");
    // About 5 + 1.5 s × 10/s; bounded either way.
    assert!((17..=22).contains(&passed), "{passed} of 30 passed");

    // Keyed by API key: each key has its own burst of 2; no key is a key of its own.
    let with_key = |k: &'static str| async move {
        request_from("127.0.0.1", addr, "GET", "/keyed", &[("x-api-key", k)], b"")
            .await
            .unwrap()
            .status
    };
    assert_eq!(with_key("alpha").await, 200);
    assert_eq!(with_key("alpha").await, 200);
    assert_eq!(with_key("alpha").await, 429);
    assert_eq!(with_key("beta").await, 200);
    assert_eq!(with_key("beta").await, 200);
    assert_eq!(with_key("beta").await, 429);
    assert_eq!(status_from("127.0.0.1", addr, "/keyed").await, Ok(200));
}

#[tokio::test]
async fn content_filter_refuses_with_the_right_status_and_scrubs_headers() {
    let backend = TestBackend::start("b").await;
    let config = format!(
        r#"
[[listeners]]
name = "web"
address = "127.0.0.1:0"

[[pools]]
name = "p"
backends = [{{ address = "{b}" }}]

[[routes]]
name = "api"
pool = "p"

[routes.filter]
methods = ["GET", "POST"]
content_types = ["application/json"]
max_query_bytes = "64B"
blocked_extensions = [".php", "env", "tar.gz"]
scrub_response_headers = ["Server", "X-Powered-By"]
deny = [
  {{ target = "path", regex = '^/\.git(/|$)' }},
  {{ target = "query", contains = "union select" }},
  {{ target = "header", name = "User-Agent", contains = "sqlmap" }},
]

[observability]
access_log = "off"
"#,
        b = backend.addr
    );
    let (_proxy, addr) = start_proxy(&config).await;
    let go = |method: &'static str,
              path: &'static str,
              headers: &'static [(&'static str, &'static str)],
              body: &'static [u8]| async move {
        request_from("127.0.0.1", addr, method, path, headers, body)
            .await
            .unwrap()
    };
    assert_eq!(go("GET", "/items", &[], b"").await.status, 200);
    let r = go("DELETE", "/items/1", &[], b"").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow").as_deref(), Some("GET, POST"));
    assert_eq!(
        go(
            "POST",
            "/items",
            &[("content-type", "application/json")],
            b"{}"
        )
        .await
        .status,
        200
    );
    assert_eq!(
        go("POST", "/items", &[("content-type", "text/xml")], b"<a/>")
            .await
            .status,
        415
    );
    assert_eq!(go("POST", "/items", &[], b"{}").await.status, 415);
    assert_eq!(go("GET", "/index.php", &[], b"").await.status, 403);
    assert_eq!(go("GET", "/static/.ENV", &[], b"").await.status, 403);
    assert_eq!(go("GET", "/dump.tar.gz", &[], b"").await.status, 403);
    assert_eq!(go("GET", "/.git/config", &[], b"").await.status, 403);
    // Traversal and encoding do not hide the path from the filter.
    assert_eq!(go("GET", "/a/%2e%2e/.git/HEAD", &[], b"").await.status, 403);
    assert_eq!(go("GET", "/a/..%2F.git", &[], b"").await.status, 403);
    assert_eq!(go("GET", "/.github/x", &[], b"").await.status, 200);
    assert_eq!(
        go("GET", "/q?id=1%20UNION+SELECT%202", &[], b"")
            .await
            .status,
        403
    );
    assert_eq!(
        go(
            "GET",
            "/q?aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            &[],
            b""
        )
        .await
        .status,
        414
    );
    assert_eq!(
        go("GET", "/x", &[("user-agent", "sqlmap/1.7.2#stable")], b"")
            .await
            .status,
        403
    );
    let r = go("GET", "/powered", &[], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("server"), None);
    assert_eq!(r.header("x-powered-by"), None);
    assert_eq!(r.header("x-backend").as_deref(), Some("b"));
}

#[tokio::test]
async fn a_404_scan_bans_the_source_and_repeat_offences_ban_longer() {
    let backend = TestBackend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("security.log");
    let config = format!(
        r#"
[[listeners]]
name = "web"
address = "127.0.0.1:0"

[[pools]]
name = "p"
backends = [{{ address = "{b}" }}]

[[routes]]
name = "all"
pool = "p"

[firewall.ips]
allow = ["127.0.0.9"]

[[firewall.ips.scenarios]]
name = "http-404-scan"
events = ["not_found"]
capacity = 5
leak = "10s"
ban = "1s"

[observability]
access_log = "off"
security_log = "{log}"
"#,
        b = backend.addr,
        log = log_path.display()
    );
    let (proxy, addr) = start_proxy(&config).await;
    let scan = |source: &'static str| async move { status_from(source, addr, "/status/404").await };
    // A keep-alive connection opened before the ban.
    let mut kept = connect_from("127.0.0.1", addr).await;
    kept.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let first = read_raw_response(&mut kept, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(first.status, 200);

    // Five 404s fill the bucket; the sixth overflows it and bans the source.
    for _ in 0..5 {
        assert_eq!(scan("127.0.0.1").await, Ok(404));
    }
    assert_eq!(scan("127.0.0.1").await, Ok(404));
    let banned_at = Instant::now();
    // Banned at once: the next connection is closed unanswered, other sources are served.
    assert!(status_from("127.0.0.1", addr, "/").await.is_err());
    assert!(banned_at.elapsed() < Duration::from_secs(1));
    assert_eq!(status_from("127.0.0.2", addr, "/").await, Ok(200));
    // The connection opened before the ban gets no more answers.
    kept.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let refused = read_raw_response(&mut kept, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("connection").as_deref(), Some("close"));
    let bans = proxy.bans();
    assert_eq!(bans.len(), 1);
    assert_eq!(
        (bans[0].ip.as_str(), bans[0].ttl_seconds, bans[0].offence),
        ("127.0.0.1", 1, 1)
    );

    // The ban ends after its TTL.
    tokio::time::sleep(Duration::from_millis(1100).saturating_sub(banned_at.elapsed())).await;
    let mut served = false;
    for _ in 0..20 {
        if status_from("127.0.0.1", addr, "/").await == Ok(200) {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "still refused after the ban's TTL");
    assert!(banned_at.elapsed() < Duration::from_millis(1600));

    // The bucket has barely leaked: the next 404 is a second offence, banned twice as long.
    assert_eq!(scan("127.0.0.1").await, Ok(404));
    let bans = proxy.bans();
    assert_eq!(
        (bans.len(), bans[0].ttl_seconds, bans[0].offence),
        (1, 2, 2)
    );
    assert!(status_from("127.0.0.1", addr, "/").await.is_err());

    // The allow-list is never banned. Its events are logged 20 at once, then 5 per second.
    for _ in 0..40 {
        assert_eq!(scan("127.0.0.9").await, Ok(404));
    }
    assert_eq!(status_from("127.0.0.9", addr, "/").await, Ok(200));
    assert_eq!(proxy.bans().len(), 1);

    assert_eq!(
        metric_value(
            &proxy,
            "rampart_ips_scenario_triggers_total{name=\"http-404-scan\"}"
        ),
        2.0
    );
    assert_eq!(metric_value(&proxy, "rampart_ips_bans_active"), 1.0);
    assert!(metric_value(&proxy, "rampart_security_log_suppressed_total") >= 10.0);
    assert!(metric_value(&proxy, "rampart_security_events_total{kind=\"not_found\"}") >= 27.0);
    assert!(
        metric_value(
            &proxy,
            "rampart_connections_rejected_total{listener=\"web\",reason=\"banned\"}"
        ) >= 2.0
    );

    // One JSON line per event and decision.
    let mut lines = Vec::new();
    let complete = wait_for(Duration::from_secs(5), || {
        lines = std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
            .collect();
        lines.len() >= 28
    })
    .await;
    assert!(complete, "{} security log lines", lines.len());
    let bans: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["decision"] == "banned").collect();
    assert_eq!(bans.len(), 2, "{lines:#?}");
    assert_eq!(bans[0]["scenario"], "http-404-scan");
    assert_eq!(
        (bans[0]["ban_seconds"].as_u64(), bans[0]["offence"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        (bans[1]["ban_seconds"].as_u64(), bans[1]["offence"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(bans[0]["event"], "not_found");
    assert_eq!(bans[0]["client"], "127.0.0.1");
    assert_eq!(bans[0]["type"], "security");
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "ban_expired" && l["client"] == "127.0.0.1")
    );
    assert!(
        lines
            .iter()
            .any(|l| l["decision"] == "allow_listed" && l["client"] == "127.0.0.9")
    );
}

#[tokio::test]
async fn stalled_request_bodies_are_answered_408_and_ban_slow_clients() {
    let backend = TestBackend::start("b").await;
    let config = format!(
        r#"
[[listeners]]
name = "web"
address = "127.0.0.1:0"
limits = {{ body_read_timeout = "300ms", header_read_timeout = "300ms" }}

[[pools]]
name = "p"
backends = [{{ address = "{b}" }}]

[[routes]]
name = "all"
pool = "p"

[firewall.ips]

[[firewall.ips.scenarios]]
name = "slow-clients"
events = ["slow_client"]
capacity = 1
leak = "1m"
ban = "1m"

[observability]
access_log = "off"
security_log = "off"
"#,
        b = backend.addr
    );
    let (proxy, addr) = start_proxy(&config).await;
    // A body that stops after 10 of 100 bytes: 408 once it has been quiet for 300 ms.
    let mut s = connect_from("127.0.0.1", addr).await;
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let started = Instant::now();
    let r = read_raw_response(&mut s, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r.status, 408);
    assert!(
        started.elapsed() >= Duration::from_millis(280),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    // A body that trickles faster than the timeout is never cut.
    let mut s = connect_from("127.0.0.2", addr).await;
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n")
        .await
        .unwrap();
    for byte in b"hello" {
        tokio::time::sleep(Duration::from_millis(150)).await;
        s.write_all(&[*byte]).await.unwrap();
    }
    let r = read_raw_response(&mut s, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
    // A head that stalls is a slow client too: the second slow event bans 127.0.0.1.
    let mut s = connect_from("127.0.0.1", addr).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap();
    let r = read_raw_response(&mut s, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r.status, 408);
    let bans = proxy.bans();
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(
        (bans[0].ip.as_str(), bans[0].reason.as_str()),
        ("127.0.0.1", "slow-clients")
    );
    assert!(status_from("127.0.0.1", addr, "/").await.is_err());
    assert_eq!(status_from("127.0.0.2", addr, "/").await, Ok(200));
    assert_eq!(
        metric_value(
            &proxy,
            "rampart_security_events_total{kind=\"slow_client\"}"
        ),
        2.0
    );
}

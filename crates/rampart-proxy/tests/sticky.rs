//! Session persistence against real backends on 127.0.0.1: signed cookies (failover, tampering,
//! drain), source IP and header affinity.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rampart_balance::AdminState;
use tokio::task::JoinSet;

fn values(backends: &[(&'static str, &Arc<TestBackend>)]) -> HashMap<&'static str, String> {
    backends
        .iter()
        .map(|(k, b)| (*k, b.addr.to_string()))
        .collect()
}

/// Three backends a, b, c in pool "s" (round robin, 200 ms health checks) with the given sticky
/// setting.
async fn setup(sticky: &str) -> (Vec<Arc<TestBackend>>, Arc<rampart_proxy::Proxy>, SocketAddr) {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let c = TestBackend::start("c").await;
    let config = fill(
        &r#"
[[listeners]]
name = "web"
address = "127.0.0.1:0"
[[pools]]
name = "s"
algorithm = "round_robin"
backends = [{ id = "a", address = "{a}" }, { id = "b", address = "{b}" }, { id = "c", address = "{c}" }]
health_check = { path = "/healthz", interval = "200ms", timeout = "150ms", fall = 2, rise = 2 }
sticky = STICKY
[[routes]]
name = "all"
pool = "s"
[observability]
access_log = "off"
"#
        .replace("STICKY", sticky),
        &values(&[("a", &a), ("b", &b), ("c", &c)]),
    );
    let (proxy, addr) = start_proxy(&config).await;
    (vec![a, b, c], proxy, addr)
}

fn backend_named<'a>(backends: &'a [Arc<TestBackend>], name: &str) -> &'a Arc<TestBackend> {
    backends.iter().find(|b| b.state.name == name).unwrap()
}

/// The value of the `srv` cookie set by this answer, if any.
fn set_cookie(a: &Answer) -> Option<String> {
    let header = a
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("srv="))?
        .to_string();
    assert!(
        header.contains("Path=/") && header.contains("HttpOnly") && header.contains("SameSite=Lax"),
        "{header}"
    );
    Some(
        header["srv=".len()..]
            .split(';')
            .next()
            .unwrap()
            .to_string(),
    )
}

/// Sends `n` GETs carrying `cookie` (as `srv=<cookie>`) from 4 tasks; returns counts per
/// backend and how many answers set a new cookie.
async fn with_cookie(addr: SocketAddr, cookie: &str, n: usize) -> (HashMap<String, u64>, usize) {
    let c = client();
    let mut tasks = JoinSet::new();
    for _ in 0..4 {
        let c = c.clone();
        let header = format!("srv={cookie}");
        tasks.spawn(async move {
            let mut counts: HashMap<String, u64> = HashMap::new();
            let mut new_cookies = 0;
            for _ in 0..n / 4 {
                let r = send(&c, addr, "GET", "/", &[("cookie", &header)], b"")
                    .await
                    .unwrap();
                assert_eq!(r.status, 200);
                if set_cookie(&r).is_some() {
                    new_cookies += 1;
                }
                *counts.entry(r.backend().unwrap()).or_default() += 1;
            }
            (counts, new_cookies)
        });
    }
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut new_cookies = 0;
    while let Some(r) = tasks.join_next().await {
        let (cn, nc) = r.unwrap();
        for (k, v) in cn {
            *counts.entry(k).or_default() += v;
        }
        new_cookies += nc;
    }
    (counts, new_cookies)
}

const COOKIE: &str = r#"{ mode = "cookie", cookie = "srv", ttl = "1h" }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sticks_and_re_sticks_after_failover() {
    let (backends, proxy, addr) = setup(COOKIE).await;
    let c = client();
    let first = get(&c, addr, "/").await.unwrap();
    let cookie = set_cookie(&first).expect("first answer sets the sticky cookie");
    let home = first.backend().unwrap();
    assert!(
        cookie.starts_with(&format!("{home}.")),
        "cookie {cookie} names the backend id"
    );
    assert!(
        first
            .headers
            .get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Max-Age=3600")
    );

    let (counts, new_cookies) = with_cookie(addr, &cookie, 1_000).await;
    assert_eq!(counts.get(&home), Some(&1_000), "{counts:?}");
    assert_eq!(new_cookies, 0, "a valid cookie is not re-issued");

    // The sticky backend dies: the session moves and a new cookie pins it to its new home.
    backend_named(&backends, &home).kill().await;
    let moved = send(
        &c,
        addr,
        "GET",
        "/",
        &[("cookie", &format!("srv={cookie}"))],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(moved.status, 200);
    let new_home = moved.backend().unwrap();
    assert_ne!(new_home, home);
    let new_cookie = set_cookie(&moved).expect("failover re-issues the cookie");
    assert!(
        new_cookie.starts_with(&format!("{new_home}.")),
        "{new_cookie}"
    );
    let (counts, new_cookies) = with_cookie(addr, &new_cookie, 200).await;
    assert_eq!(counts.get(&new_home), Some(&200), "{counts:?}");
    assert_eq!(new_cookies, 0);

    // Once the checks take the dead backend out, old cookies are re-issued on every request
    // (they point to an unavailable backend) and never fail.
    assert!(
        wait_for(Duration::from_secs(4), || !backend_status(
            &proxy, "s", &home
        )
        .healthy)
        .await
    );
    let (counts, new_cookies) = with_cookie(addr, &cookie, 40).await;
    assert!(!counts.contains_key(&home), "{counts:?}");
    assert_eq!(new_cookies, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_cookie_is_ignored() {
    let (_backends, _proxy, addr) = setup(COOKIE).await;
    let c = client();
    let first = get(&c, addr, "/").await.unwrap();
    let cookie = set_cookie(&first).unwrap();
    let home = first.backend().unwrap();
    let (_, mac) = cookie.rsplit_once('.').unwrap();
    let other = ["a", "b", "c"].into_iter().find(|id| *id != home).unwrap();
    let mut flipped = cookie.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let forgeries = [
        format!("{other}.{mac}"),            // another backend's id with this MAC
        String::from_utf8(flipped).unwrap(), // a changed MAC
        other.to_string(),                   // an id without a MAC
        "garbage".to_string(),
    ];
    for forged in &forgeries {
        let (counts, new_cookies) = with_cookie(addr, forged, 60).await;
        // Normal round robin: every backend gets its share, and every answer sets a valid cookie.
        assert_eq!(
            counts.len(),
            3,
            "forged cookie {forged:?} steered traffic: {counts:?}"
        );
        for (id, n) in &counts {
            assert!(
                *n >= 10,
                "forged cookie {forged:?}: {id} got {n} ({counts:?})"
            );
        }
        assert_eq!(new_cookies, 60, "forged cookie {forged:?} was not replaced");
    }
    // Each re-issued cookie names the backend that answered.
    let r = send(
        &c,
        addr,
        "GET",
        "/",
        &[("cookie", &format!("srv={}", forgeries[0]))],
        b"",
    )
    .await
    .unwrap();
    let fresh = set_cookie(&r).unwrap();
    assert!(
        fresh.starts_with(&format!("{}.", r.backend().unwrap())),
        "{fresh}"
    );
    assert_ne!(fresh, forgeries[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_moves_sticky_sessions() {
    let (backends, proxy, addr) = setup(COOKIE).await;
    let c = client();
    let first = get(&c, addr, "/").await.unwrap();
    let cookie = set_cookie(&first).unwrap();
    let home = first.backend().unwrap();
    let (counts, _) = with_cookie(addr, &cookie, 100).await;
    assert_eq!(counts.get(&home), Some(&100));

    proxy
        .set_backend_state("s", &home, AdminState::Drain)
        .unwrap();
    let home_before = backend_named(&backends, &home).requests();
    let moved = send(
        &c,
        addr,
        "GET",
        "/",
        &[("cookie", &format!("srv={cookie}"))],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(moved.status, 200);
    let new_home = moved.backend().unwrap();
    assert_ne!(new_home, home, "a drained backend keeps no sticky sessions");
    let new_cookie = set_cookie(&moved).expect("drain re-issues the cookie");
    let (counts, new_cookies) = with_cookie(addr, &new_cookie, 100).await;
    assert_eq!(counts.get(&new_home), Some(&100), "{counts:?}");
    assert_eq!(new_cookies, 0);
    // New sessions avoid the drained backend too.
    let counts = spread(addr, "/", 60, 2).await;
    assert!(!counts.contains_key(&home), "{counts:?}");
    assert_eq!(
        backend_named(&backends, &home).requests(),
        home_before,
        "the drained backend got new requests"
    );

    // Enabled again: the old cookie is honoured again.
    proxy
        .set_backend_state("s", &home, AdminState::Enabled)
        .unwrap();
    let (counts, new_cookies) = with_cookie(addr, &cookie, 40).await;
    assert_eq!(counts.get(&home), Some(&40), "{counts:?}");
    assert_eq!(new_cookies, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ip_sticks_to_one_backend() {
    let (backends, proxy, addr) = setup(r#"{ mode = "source_ip" }"#).await;
    let counts = spread(addr, "/", 300, 4).await;
    assert_eq!(
        counts.len(),
        1,
        "all requests from 127.0.0.1 go to one backend: {counts:?}"
    );
    let home = counts.keys().next().unwrap().clone();
    assert_eq!(counts[&home], 300);
    let c = client();
    let r = get(&c, addr, "/").await.unwrap();
    assert!(
        r.headers.get("set-cookie").is_none(),
        "source_ip mode sets no cookie"
    );

    // The backend fails: everyone moves, and to one single other backend.
    backend_named(&backends, &home).kill().await;
    let counts = spread(addr, "/", 100, 4).await;
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert!(!counts.contains_key(&home));
    assert!(
        wait_for(Duration::from_secs(4), || !backend_status(
            &proxy, "s", &home
        )
        .healthy)
        .await
    );
    let counts2 = spread(addr, "/", 100, 4).await;
    assert_eq!(
        counts2.keys().collect::<Vec<_>>(),
        counts.keys().collect::<Vec<_>>(),
        "{counts2:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_affinity_keeps_each_value_on_one_backend() {
    let (_backends, _proxy, addr) = setup(r#"{ mode = "header", header = "x-session" }"#).await;
    let c = client();
    let mut homes: HashMap<String, String> = HashMap::new();
    for round in 0..5 {
        for i in 0..60 {
            let key = format!("session-{i}");
            let r = send(&c, addr, "GET", "/", &[("x-session", &key)], b"")
                .await
                .unwrap();
            assert_eq!(r.status, 200);
            let backend = r.backend().unwrap();
            let home = homes.entry(key.clone()).or_insert_with(|| backend.clone());
            assert_eq!(*home, backend, "round {round}: {key} moved");
        }
    }
    let used: HashSet<&String> = homes.values().collect();
    assert_eq!(
        used.len(),
        3,
        "different values spread over all backends: {homes:?}"
    );
    // Without the header, plain round robin.
    let counts = spread(addr, "/", 30, 1).await;
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![10, 10, 10],
        "{counts:?}"
    );
}

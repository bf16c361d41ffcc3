mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_to_backends_round_robin() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let config = one_pool_config(
        &format!(
            "backends = [{{ address = \"{}\" }}, {{ address = \"{}\" }}]",
            a.addr, b.addr
        ),
        "",
    );
    let (_proxy, addr) = start_proxy(&config).await;
    let c = client();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = get(&c, addr, "/x").await.unwrap();
        assert_eq!(r.status, 200);
        seen.push(r.text());
    }
    assert_eq!(seen.iter().filter(|s| *s == "a").count(), 2, "{seen:?}");
    assert_eq!(seen.iter().filter(|s| *s == "b").count(), 2, "{seen:?}");
    let h = a.state.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert!(h.contains_key("x-request-id"));
}

//! The WAF on a route: SecLang rules from files, interventions in blocking mode, nothing
//! stopped in detection mode, request bodies inspected (and refused over the limit), one
//! audit-log line per transaction in ModSecurity's JSON shape.
mod common;

use std::time::Duration;

use common::*;

fn config(dir: &std::path::Path, backend: std::net::SocketAddr, mode: &str) -> String {
    std::fs::write(
        dir.join("rules.conf"),
        "SecRequestBodyAccess On\nSecRequestBodyLimit 1000\nSecRequestBodyLimitAction Reject\n\
         SecDefaultAction \"phase:2,log,auditlog,pass\"\n\
         SecRule ARGS \"@contains attack\" \"id:1001,phase:2,deny,status:403,msg:'attack in %{MATCHED_VAR_NAME}'\"\n\
         SecResponseBodyAccess On\nSecResponseBodyMimeType text/plain\nSecResponseBodyLimit 64\n\
         SecRule RESPONSE_BODY \"@contains secret-key\" \"id:1003,phase:4,deny,status:502,msg:'leak'\"\n\
         Include extra/*.conf\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("extra")).unwrap();
    std::fs::write(
        dir.join("extra/headers.conf"),
        "SecRule REQUEST_HEADERS:User-Agent \"@pm nikto sqlmap\" \"id:1002,phase:1,deny,status:406,msg:'scanner'\"\n",
    )
    .unwrap();
    format!(
        r#"
[[listeners]]
name = "web"
address = "127.0.0.1:0"

[[pools]]
name = "p"
backends = [{{ address = "{backend}" }}]

[[routes]]
name = "all"
pool = "p"
waf = "main"

[waf]
audit_log = "{audit}"

[[waf.rulesets]]
name = "main"
files = ["{rules}"]
mode = "{mode}"

[observability]
access_log = "off"
security_log = "off"
"#,
        audit = dir.join("audit.log").display(),
        rules = dir.join("rules.conf").display(),
    )
}

fn audit_lines(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test]
async fn blocking_mode_stops_attacks_and_logs_every_transaction() {
    let backend = TestBackend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, addr) = start_proxy(&config(dir.path(), backend.addr, "block")).await;
    let c = client();
    assert_eq!(get(&c, addr, "/?q=hello").await.unwrap().status, 200);
    assert_eq!(get(&c, addr, "/?q=an+attack").await.unwrap().status, 403);
    let r = send(&c, addr, "GET", "/", &[("user-agent", "sqlmap/1.7")], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 406);
    let form = [("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(
        send(&c, addr, "POST", "/echo", &form, b"a=1&b=attack")
            .await
            .unwrap()
            .status,
        403
    );
    // A clean body reaches the backend whole.
    let r = send(&c, addr, "POST", "/echo", &form, b"a=1&b=fine")
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.body.as_ref()),
        (200, &b"a=1&b=fine"[..])
    );
    // Over SecRequestBodyLimit with Reject: 413.
    let big = vec![b'x'; 2000];
    assert_eq!(
        send(&c, addr, "POST", "/echo", &form, &big)
            .await
            .unwrap()
            .status,
        413
    );
    assert_eq!(
        backend.requests(),
        2,
        "refused requests never reach the backend"
    );
    // Phase 4: a text/plain answer leaking a secret within the inspected prefix is replaced;
    // other media types, and anything past SecResponseBodyLimit, pass whole.
    let leak = |ct: &'static str, body: Vec<u8>| {
        let c = c.clone();
        async move {
            send(&c, addr, "POST", "/echo", &[("x-reply-type", ct)], &body)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        leak("text/plain", b"x secret-key y".to_vec()).await.status,
        502
    );
    let r = leak("application/octet-stream", b"x secret-key y".to_vec()).await;
    assert_eq!((r.status.as_u16(), r.body.len()), (200, 14));
    let mut long = vec![b'a'; 100];
    long.extend_from_slice(b"secret-key");
    let r = leak("text/plain", long.clone()).await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_ref()),
        (200, long.as_slice()),
        "the whole body passes"
    );
    let mut lines = Vec::new();
    assert!(
        wait_for(Duration::from_secs(5), || {
            lines = audit_lines(dir.path());
            lines.len() >= 9
        })
        .await
    );
    let ids: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            l["transaction"]["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["details"]["ruleId"].as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    assert_eq!(ids[0], Vec::<String>::new());
    assert_eq!(ids[1], vec!["1001"]);
    assert_eq!(ids[2], vec!["1002"]);
    assert_eq!(
        lines[1]["transaction"]["messages"][0]["message"],
        "attack in ARGS:q"
    );
    assert_eq!(lines[1]["transaction"]["response"]["http_code"], 403);
    assert_eq!(lines[1]["transaction"]["request"]["uri"], "/?q=an+attack");
    assert_eq!(
        metric_value(&proxy, "rampart_security_events_total{kind=\"waf_block\"}"),
        4.0
    );
}

#[tokio::test]
async fn detection_mode_logs_without_stopping() {
    let backend = TestBackend::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let (_proxy, addr) = start_proxy(&config(dir.path(), backend.addr, "detect")).await;
    let c = client();
    assert_eq!(get(&c, addr, "/?q=an+attack").await.unwrap().status, 200);
    let mut lines = Vec::new();
    assert!(
        wait_for(Duration::from_secs(5), || {
            lines = audit_lines(dir.path());
            !lines.is_empty()
        })
        .await
    );
    assert_eq!(
        lines[0]["transaction"]["messages"][0]["details"]["ruleId"],
        "1001"
    );
    assert_eq!(lines[0]["transaction"]["response"]["http_code"], 200);
}

#[tokio::test]
async fn a_broken_rule_file_is_refused_with_file_line_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.conf"),
        "\n\nSecRule ARGS \"@rx (\" \"id:77,phase:2,deny\"\n",
    )
    .unwrap();
    let text = format!(
        "[[listeners]]\nname = \"web\"\naddress = \"127.0.0.1:0\"\n[[pools]]\nname = \"p\"\nbackends = [{{ address = \"127.0.0.1:9\" }}]\n\
         [[routes]]\nname = \"all\"\npool = \"p\"\nwaf = \"w\"\n[[waf.rulesets]]\nname = \"w\"\nfiles = [\"{}\"]\n",
        dir.path().join("bad.conf").display()
    );
    let snapshot = rampart_config::load_str(&text, "t.toml", dir.path()).unwrap();
    let err =
        match rampart_proxy::Proxy::start(snapshot, None, rampart_proxy::Phases::default()).await {
            Ok(_) => panic!("a broken rule file must not load"),
            Err(e) => e.to_string(),
        };
    assert!(
        err.contains("bad.conf:3: rule 77: invalid regular expression"),
        "{err}"
    );
}

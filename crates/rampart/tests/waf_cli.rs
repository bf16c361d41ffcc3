//! `rampart waf test`: one request through a rule set, every matching rule explained
//! (variable, value, transformations, operator, matched data), the verdict in the exit status.

use std::path::{Path, PathBuf};
use std::process::Command;

fn crs_v4() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs")
}

fn waf_test(rules: &Path, request: &[u8], extra: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("request.http");
    std::fs::write(&file, request).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["waf", "test", "--rules"])
        .arg(rules)
        .arg("--request")
        .arg(&file)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_attack_is_explained_rule_by_rule() {
    let (code, out, err) = waf_test(
        &crs_v4(),
        b"POST /login HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 35\r\n\r\n\
          user=admin%27%20OR%201%3D1--&pass=x",
        &["--json"],
    );
    assert_eq!(code, 1, "blocked is exit 1: {out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["verdict"]["blocked"], true);
    assert_eq!(report["verdict"]["rule"], 949110);
    let rules = report["rules"].as_array().unwrap();
    let sqli = rules
        .iter()
        .find(|r| r["id"] == 942100)
        .unwrap_or_else(|| panic!("942100 not explained: {out}"));
    let m = &sqli["matches"][0];
    assert_eq!(m["variable"], "ARGS:user");
    assert_eq!(m["value"], "admin' OR 1=1--");
    assert_eq!(m["operator"], "@detectSQLi");
    assert!(
        !m["matched"].as_str().unwrap().is_empty(),
        "the fingerprint"
    );
    assert!(
        report["inbound_anomaly_score"]
            .as_str()
            .unwrap()
            .parse::<u32>()
            .unwrap()
            >= 5
    );

    // The text form says the same for people.
    let (code, text, _) = waf_test(
        &crs_v4(),
        b"GET /?q=%3Cscript%3Ealert(1)%3C/script%3E HTTP/1.1\r\nHost: a\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n\r\n",
        &[],
    );
    assert_eq!(code, 1);
    for expected in [
        "rule 941100 (phase 2, ",
        "ARGS:q = \"<script>alert(1)</script>\"",
        "@detectXSS matched",
        "verdict: blocked by rule 949110 with status 403",
    ] {
        assert!(text.contains(expected), "{expected:?} missing in:\n{text}");
    }
    // Rules with transformations show the chain and what it made of the value.
    assert!(
        text.lines()
            .any(|l| l.starts_with("    t:") && l.contains(" → \"<script>alert(1)</script>\"")),
        "no transformation chain shown:\n{text}"
    );
}

#[test]
fn a_clean_request_passes_and_detect_mode_never_blocks() {
    let clean = b"GET /v1/orders?page=2&sort=-created_at HTTP/1.1\r\nHost: api.example\r\n\
                  User-Agent: okhttp/4.12.0\r\nAccept: application/json\r\n\r\n";
    let (code, out, err) = waf_test(&crs_v4(), clean, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("verdict: passed"), "{out}");
    let attack = b"GET /?id=1%20UNION%20SELECT%20password%20FROM%20users HTTP/1.1\r\nHost: a\r\n\
                   User-Agent: Mozilla/5.0\r\nAccept: */*\r\n\r\n";
    let (code, out, _) = waf_test(&crs_v4(), attack, &["--mode", "detect"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("rule 942100") && out.contains("verdict: passed"),
        "{out}"
    );
}

#[test]
fn broken_rules_and_requests_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("bad.conf");
    std::fs::write(
        &rules,
        "SecRule ARGS \"@rx a\" \"id:1,phase:2,deny\"\nSecRule ARGS \"@rx (\" \"id:77,phase:2,deny\"\n",
    )
    .unwrap();
    let (code, _, err) = waf_test(&rules, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("bad.conf:2") && err.contains("77") && err.contains("regular expression"),
        "{err}"
    );

    let good = dir.path().join("good.conf");
    std::fs::write(
        &good,
        "SecRule ARGS \"@contains evil\" \"id:5,phase:2,deny,msg:'evil'\"\n",
    )
    .unwrap();
    let (code, _, err) = waf_test(&good, b"GET / HTTP/1.1\r\nHost: a\r\n", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("no blank line after the headers"), "{err}");
    let (code, _, err) = waf_test(&good, b"POST / HTTP/1.1\nContent-Length: 10\n\nabc", &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("Content-Length is 10 but only 3 bytes follow"),
        "{err}"
    );
    let (code, out, _) = waf_test(&good, b"GET /?a=evil HTTP/1.1\nHost: a\n\n", &[]);
    assert_eq!(code, 1);
    assert!(
        out.contains("rule 5 (phase 2, ") && out.contains("@contains evil matched \"evil\""),
        "{out}"
    );
    let (code, _, err) = waf_test(&dir.path().join("missing"), b"GET / HTTP/1.1\n\n", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("missing"), "{err}");
}

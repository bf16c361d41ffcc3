//! False positives: the benign API corpus (`tests/data/benign-api-requests.jsonl`, made by
//! `tests/data/gen_benign.py`: JSON bodies, uploads, unicode, long tokens, SaaS query strings)
//! goes through the CRS v4 at paranoia level 1 in blocking mode, set up as ModSecurity's
//! recommended configuration does (bodies inspected, JSON and XML processors) with the methods
//! a REST API allows (`tx.allowed_methods` with PUT, PATCH and DELETE), and not one request
//! may be blocked.

mod support;

use std::sync::Arc;

use base64::Engine;
use rampart_waf::{RequestHead, RuleSet, Transaction};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/benign-api-requests.jsonl"
);

fn crs_pl1() -> Arc<RuleSet> {
    let main = "SecRuleEngine On\nSecRequestBodyAccess On\nSecRequestBodyLimit 13107200\n\
        SecRequestBodyNoFilesLimit 131072\n\
        SecRule REQUEST_HEADERS:Content-Type \"@rx ^(?:application(?:/soap\\+|/)|text/)xml\" \"id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML\"\n\
        SecRule REQUEST_HEADERS:Content-Type \"@rx ^application/json\" \"id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON\"\n\
        SecRule REQBODY_ERROR \"!@eq 0\" \"id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.'\"\n\
        SecAction \"id:900200,phase:1,pass,nolog,setvar:'tx.allowed_methods=GET HEAD POST OPTIONS PUT PATCH DELETE'\"\n\
        Include crs-setup.conf.example\nInclude rules/*.conf\n";
    Arc::new(
        rampart_waf::compile(main, "main.conf", &support::Dir(support::crs_v4()))
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

struct Request {
    name: String,
    head: RequestHead,
    body: Vec<u8>,
}

fn corpus() -> Vec<Request> {
    let text = std::fs::read_to_string(CORPUS).unwrap_or_else(|e| panic!("{CORPUS}: {e}"));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
            let field = |k: &str| v[k].as_str().map(str::to_string);
            let name = field("name").unwrap_or_else(|| panic!("line {}: no name", i + 1));
            let headers = v["headers"]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: no headers"))
                .iter()
                .map(|h| {
                    let pair = h.as_array().expect("header pair");
                    let (k, v) = (
                        pair[0].as_str().expect("name"),
                        pair[1].as_str().expect("value"),
                    );
                    (k.to_string(), v.as_bytes().to_vec())
                })
                .collect();
            let body = match (field("body"), field("body_base64")) {
                (Some(text), _) => text.into_bytes(),
                (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap_or_else(|e| panic!("{name}: body_base64: {e}")),
                (None, None) => Vec::new(),
            };
            let head = RequestHead {
                method: field("method").unwrap_or_else(|| panic!("{name}: no method")),
                uri: field("uri").unwrap_or_else(|| panic!("{name}: no uri")),
                protocol: "HTTP/1.1".into(),
                headers,
                remote_addr: "198.51.100.23".parse().expect("address"),
                remote_port: 50000 + (i % 10000) as u16,
                unique_id: format!("benign-{i}"),
            };
            Request { name, head, body }
        })
        .collect()
}

#[test]
fn benign_api_traffic_is_never_blocked_at_paranoia_level_1() {
    let rules = crs_pl1();
    let requests = corpus();
    assert!(
        requests.len() >= 1000,
        "{} requests in the corpus",
        requests.len()
    );
    let mut blocked = Vec::new();
    for r in &requests {
        let mut tx = Transaction::new(Arc::clone(&rules), r.head.clone());
        tx.process_request_headers();
        tx.process_request_body(&r.body);
        if let Some(i) = tx.intervention() {
            let why: Vec<String> = tx
                .messages()
                .iter()
                .map(|m| format!("{} {} [{}]", m.rule_id, m.msg, m.matched))
                .collect();
            blocked.push(format!(
                "{} ({} {}): status {} by rule {}\n    {}",
                r.name,
                r.head.method,
                r.head.uri,
                i.status,
                i.rule_id,
                why.join("\n    ")
            ));
        }
    }
    assert!(
        blocked.is_empty(),
        "{} of {} benign requests blocked:\n{}",
        blocked.len(),
        requests.len(),
        blocked.join("\n")
    );
}

/// The test above proves something only if the same setup does block: one attack of each
/// kind, sent the way the corpus's requests are, is stopped.
#[test]
fn the_same_setup_blocks_attacks() {
    let rules = crs_pl1();
    let template = corpus()
        .into_iter()
        .find(|r| r.head.method == "GET")
        .expect("a GET in the corpus");
    for uri in [
        "/v1/search?q=1%27%20OR%20%271%27%3D%271",
        "/v1/search?q=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E",
        "/v1/files?path=..%2F..%2F..%2Fetc%2Fpasswd",
        "/v1/run?cmd=%3Bcat%20%2Fetc%2Fshadow",
    ] {
        let mut head = template.head.clone();
        head.uri = uri.into();
        let mut tx = Transaction::new(Arc::clone(&rules), head);
        tx.process_request_headers();
        tx.process_request_body(b"");
        assert!(tx.intervention().is_some(), "{uri} passed");
    }
}

//! Whole transactions through the OWASP CRS v4 (from `$RAMPART_CRS`, by default
//! `../../shared/crs` next to the checkout) at paranoia level 4: arbitrary request targets,
//! header values and bodies of each content type, every phase run, operators (regexes,
//! libinjection, phrase lists) and transformations included.
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use rampart_waf::{RequestHead, RuleSet, Transaction};

// Rule files from a directory, as the crate's tests read them.
#[path = "../../crates/rampart-waf/tests/support/mod.rs"]
#[allow(dead_code)]
mod support;
use support::Dir;

static RULES: LazyLock<Arc<RuleSet>> = LazyLock::new(|| {
    let root = std::env::var_os("RAMPART_CRS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/crs")));
    let main = "SecRuleEngine On\nSecRequestBodyAccess On\nSecResponseBodyAccess On\n\
        SecResponseBodyMimeType text/html application/json\n\
        SecRule REQUEST_HEADERS:Content-Type \"@rx ^(?:application(?:/soap\\+|/)|text/)xml\" \"id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML\"\n\
        SecRule REQUEST_HEADERS:Content-Type \"@rx ^application/json\" \"id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON\"\n\
        Include crs-setup.conf.example\n\
        SecAction \"id:900005,phase:1,pass,nolog,setvar:tx.blocking_paranoia_level=4\"\n\
        Include rules/*.conf\n";
    Arc::new(rampart_waf::compile(main, "main.conf", &Dir(root)).expect("CRS loads"))
});

const CONTENT_TYPES: &[&str] = &[
    "application/x-www-form-urlencoded",
    "application/json",
    "application/xml",
    "multipart/form-data; boundary=XyZ",
    "text/plain",
];

fuzz_target!(|data: &[u8]| {
    // target \n header value \n body; the first byte picks the content type.
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |&b| b == b'\n');
    let target = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let header = parts.next().unwrap_or_default().to_vec();
    let body = parts.next().unwrap_or_default();
    let head = RequestHead {
        method: if body.is_empty() { "GET" } else { "POST" }.into(),
        uri: format!("/{target}"),
        protocol: "HTTP/1.1".into(),
        headers: vec![
            ("Host".into(), b"fuzz.example".to_vec()),
            ("User-Agent".into(), b"Mozilla/5.0".to_vec()),
            ("Accept".into(), b"*/*".to_vec()),
            ("Cookie".into(), header.clone()),
            ("Referer".into(), header),
            (
                "Content-Type".into(),
                CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()]
                    .as_bytes()
                    .to_vec(),
            ),
        ],
        remote_addr: "192.0.2.1".parse().expect("address"),
        remote_port: 1234,
        unique_id: "fuzz".into(),
    };
    let mut tx = Transaction::new(Arc::clone(&RULES), head);
    tx.process_request_headers();
    tx.process_request_body(body);
    tx.process_response_headers(200, &[("Content-Type".into(), b"text/html".to_vec())]);
    tx.process_response_body(body);
    tx.process_logging();
});

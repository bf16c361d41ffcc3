//! What the WAF costs per request with the OWASP CRS v4 at paranoia level 1 (blocking mode,
//! the CRS's own default setup), on one core:
//!
//! - `form_post_1k`: a benign 1 KiB `application/x-www-form-urlencoded` POST through phases
//!   1–5, from `Transaction::new` to the logging phase;
//! - `get_query`: a benign GET with a typical API query string;
//! - after criterion's estimates, the distribution (p50/p90/p99/max) of 20,000 single runs of
//!   the form POST, timed one by one, because criterion reports means and medians only.
//!
//! Run: `cargo bench -p rampart-waf --bench crs` (needs `../shared/crs` beside the checkout).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use rampart_waf::{RequestHead, RuleSet, Transaction};

#[path = "../tests/support/mod.rs"]
mod support;

fn crs_pl1() -> Arc<RuleSet> {
    let main = "SecRuleEngine On\nSecRequestBodyAccess On\nSecRequestBodyLimit 13107200\n\
                SecRequestBodyNoFilesLimit 131072\nSecResponseBodyAccess Off\n\
                Include crs-setup.conf.example\nInclude rules/*.conf\n";
    Arc::new(
        rampart_waf::compile(main, "main.conf", &support::Dir(support::crs_v4()))
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

fn head(method: &str, uri: &str, extra: &[(&str, &str)]) -> RequestHead {
    let mut headers: Vec<(String, Vec<u8>)> = [
        ("Host", "api.example.com"),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("Accept-Language", "en-GB,en;q=0.7,de;q=0.3"),
        ("Accept-Encoding", "gzip, deflate, br"),
        (
            "Cookie",
            "session=4f1c2a9e8b7d6c5e4f3a2b1c0d9e8f7a; theme=dark",
        ),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect();
    headers.shrink_to_fit();
    RequestHead {
        method: method.into(),
        uri: uri.into(),
        protocol: "HTTP/1.1".into(),
        headers,
        remote_addr: "192.0.2.44".parse().expect("address"),
        remote_port: 51234,
        unique_id: "bench".into(),
    }
}

/// A contact/sign-up form of about 1 KiB (13 fields), URL-encoded as a browser sends it.
fn form_body() -> Vec<u8> {
    let fields = [
        ("first_name", "Anna-Lena"),
        ("last_name", "O'Connor"),
        ("email", "anna.oconnor@example.org"),
        ("phone", "+44 20 7946 0958"),
        ("company", "Blue Harbour Trading Ltd."),
        ("country", "GB"),
        ("plan", "business-annual"),
        ("seats", "25"),
        ("newsletter", "on"),
        (
            "referrer",
            "https://www.example.com/pricing?utm_source=newsletter&utm_medium=email",
        ),
        (
            "message",
            "Hello, we are evaluating your API gateway for our payments team. Could you tell \
             us how rate limits are applied per API key, and whether the audit log can be \
             exported to our SIEM? We'd also like to know about on-premise pricing for two \
             regions, and the support hours in the EU. Thanks a lot, and have a nice day!",
        ),
        ("consent", "true"),
    ];
    let mut body = Vec::new();
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            body.push(b'&');
        }
        body.extend(urlencode(k));
        body.push(b'=');
        body.extend(urlencode(v));
    }
    // Up to 1 KiB with the form's last field, free text as people write it.
    body.extend_from_slice(b"&comments=");
    let prose = urlencode(
        "We currently run two regions behind a pair of load balancers and would like to \
         consolidate. Our peak is around 4,000 requests per second, mostly JSON. ",
    );
    while body.len() < 1024 {
        let room = 1024 - body.len();
        body.extend_from_slice(&prose[..room.min(prose.len())]);
    }
    // Never end inside a %XX escape.
    while body.len() > 1 && body[body.len() - 2..].contains(&b'%') {
        body.pop();
    }
    body
}

fn urlencode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in text.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b),
            b' ' => out.push(b'+'),
            _ => out.extend(format!("%{b:02X}").bytes()),
        }
    }
    out
}

fn run_form(rules: &Arc<RuleSet>, body: &[u8]) -> bool {
    form_transaction(rules, body).intervention().is_some()
}

// Never inlined: instruction counts under callgrind are taken inside this function.
#[inline(never)]
fn form_transaction(rules: &Arc<RuleSet>, body: &[u8]) -> Transaction {
    let length = body.len().to_string();
    let mut t = Transaction::new(
        Arc::clone(rules),
        head(
            "POST",
            "/contact",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Content-Length", &length),
                ("Origin", "https://www.example.com"),
                ("Referer", "https://www.example.com/contact"),
            ],
        ),
    );
    t.process_request_headers();
    t.process_request_body(body);
    t.process_response_headers(
        200,
        &[("Content-Type".into(), b"text/html; charset=utf-8".to_vec())],
    );
    t.process_response_body(b"");
    t.process_logging();
    t
}

fn run_get(rules: &Arc<RuleSet>) -> bool {
    let mut t = Transaction::new(
        Arc::clone(rules),
        head(
            "GET",
            "/v1/orders?status=open&sort=-created_at&page=3&per_page=50&expand[]=customer\
             &created[gte]=2024-01-01T00:00:00Z&q=blue+widget",
            &[(
                "Authorization",
                "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl",
            )],
        ),
    );
    t.process_request_headers();
    t.process_request_body(b"");
    t.process_response_headers(
        200,
        &[("Content-Type".into(), b"application/json".to_vec())],
    );
    t.process_response_body(b"");
    t.process_logging();
    t.intervention().is_some()
}

fn estimates(c: &mut Criterion) {
    let rules = crs_pl1();
    let body = form_body();
    let form = form_transaction(&rules, &body);
    assert!(
        form.intervention().is_none(),
        "the benign form must pass: {:#?}",
        form.messages()
    );
    assert!(!run_get(&rules), "the benign GET must pass");
    c.bench_function("form_post_1k", |b| {
        b.iter(|| run_form(&rules, black_box(&body)))
    });
    c.bench_function("get_query", |b| b.iter(|| run_get(&rules)));
}

fn distribution() {
    let rules = crs_pl1();
    let body = form_body();
    for _ in 0..500 {
        run_form(&rules, &body);
    }
    let mut times: Vec<Duration> = (0..20_000)
        .map(|_| {
            let start = Instant::now();
            black_box(run_form(&rules, black_box(&body)));
            start.elapsed()
        })
        .collect();
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "form_post_1k single runs (n = {}): p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        times.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        times[times.len() - 1]
    );
}

criterion_group!(benches, estimates);

fn main() {
    // `RAMPART_BENCH_RUNS=N`: only N form transactions (for instruction counts under
    // callgrind, which do not depend on what else the machine is doing).
    if let Some(runs) = std::env::var("RAMPART_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        let rules = crs_pl1();
        let body = form_body();
        for _ in 0..runs {
            black_box(run_form(&rules, black_box(&body)));
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    distribution();
}

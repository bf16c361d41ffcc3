//! `rampart waf test`: runs one HTTP request (a file holding it as sent on the wire) through
//! a SecLang rule set and explains every rule that matched: which variable, its value, the
//! transformation chain and what it made of the value, the operator, and what matched.
//!
//! Exit status: 0 when the request passes, 1 when the rule set stops it, 2 when the rules or
//! the request cannot be read.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use rampart_config::waf::WafMode;
use rampart_waf::{RequestHead, Transaction};

/// Request files larger than this are refused.
const MAX_REQUEST_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Args)]
pub struct TestArgs {
    /// A SecLang file, a directory of `*.conf` files, or a CRS checkout (a directory with
    /// `crs-setup.conf` or `crs-setup.conf.example` and `rules/`).
    #[arg(long)]
    rules: PathBuf,
    /// The request as sent on the wire: request line, headers, blank line, body.
    #[arg(long)]
    request: PathBuf,
    /// Blocking or detection-only evaluation.
    #[arg(long, value_enum, default_value_t = Mode::Block)]
    mode: Mode,
    /// CRS paranoia level (sets `tx.blocking_paranoia_level` before the rules).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=4))]
    paranoia: Option<u8>,
    /// Also list rules that matched without logging (flow control, bookkeeping).
    #[arg(long)]
    all: bool,
    /// Print the explanation as one JSON document.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Block,
    Detect,
}

pub fn test(args: &TestArgs) -> ExitCode {
    match explain(args) {
        Ok(blocked) if blocked => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart waf test: {e}");
            ExitCode::from(2)
        }
    }
}

/// The files to load and the SecLang read before them for a `--rules` path.
fn rule_files(path: &Path) -> Result<(Vec<PathBuf>, String), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_file() {
        return Ok((vec![path.to_path_buf()], String::new()));
    }
    let setup = ["crs-setup.conf", "crs-setup.conf.example"]
        .iter()
        .map(|n| path.join(n))
        .find(|p| p.is_file());
    if let Some(setup) = setup
        && path.join("rules").is_dir()
    {
        // A CRS checkout on its own: the engine settings of ModSecurity's recommended
        // configuration that the CRS relies on (bodies inspected, JSON and XML processors).
        let base = "SecRequestBodyAccess On\n\
            SecRule REQUEST_HEADERS:Content-Type \"@rx ^(?:application(?:/soap\\+|/)|text/)xml\" \"id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML\"\n\
            SecRule REQUEST_HEADERS:Content-Type \"@rx ^application/json\" \"id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON\"\n\
            SecRule REQBODY_ERROR \"!@eq 0\" \"id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.'\"\n";
        return Ok((vec![setup, path.join("rules/*.conf")], base.into()));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "conf"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{}: no *.conf files", path.display()));
    }
    Ok((files, String::new()))
}

fn explain(args: &TestArgs) -> Result<bool, String> {
    let (files, base) = rule_files(&args.rules)?;
    let mode = match args.mode {
        Mode::Block => WafMode::Block,
        Mode::Detect => WafMode::Detect,
    };
    let rules =
        rampart_proxy::waf::compile_files("test", Some(mode), args.paranoia, &base, &files, "")?;
    let meta =
        std::fs::metadata(&args.request).map_err(|e| format!("{}: {e}", args.request.display()))?;
    if meta.len() > MAX_REQUEST_BYTES {
        return Err(format!(
            "{}: larger than {MAX_REQUEST_BYTES} bytes",
            args.request.display()
        ));
    }
    let raw =
        std::fs::read(&args.request).map_err(|e| format!("{}: {e}", args.request.display()))?;
    let (head, body) =
        parse_request(&raw).map_err(|e| format!("{}: {e}", args.request.display()))?;
    let mut tx = Transaction::new(Arc::new(rules), head);
    tx.enable_trace();
    tx.process_request_headers();
    tx.process_request_body(&body);
    tx.process_logging();
    let blocked = tx.intervention().is_some();
    if args.json {
        println!("{}", json(&tx, args.all));
    } else {
        print!("{}", text(&tx, args.all, body.len()));
    }
    Ok(blocked)
}

/// Splits a raw HTTP/1.x request into its head and body. The body is what follows the blank
/// line: `Content-Length` bytes of it when the header is there, chunked bodies decoded.
pub fn parse_request(raw: &[u8]) -> Result<(RequestHead, Vec<u8>), String> {
    let (head_len, sep) = find_head_end(raw).ok_or("no blank line after the headers")?;
    let head_text = std::str::from_utf8(&raw[..head_len])
        .map_err(|_| "the request head is not UTF-8 text".to_string())?;
    let mut lines = head_text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(uri), protocol, None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "line 1: \"{}\" is not a request line (METHOD TARGET HTTP/1.1)",
            request_line.escape_debug()
        ));
    };
    if !method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-') {
        return Err(format!(
            "line 1: \"{}\" is not a method",
            method.escape_debug()
        ));
    }
    let protocol = protocol.unwrap_or("HTTP/1.1");
    if !protocol.starts_with("HTTP/") {
        return Err(format!(
            "line 1: \"{}\" is not a protocol",
            protocol.escape_debug()
        ));
    }
    let mut headers = Vec::new();
    for (i, line) in lines.enumerate() {
        let (name, value) = line.split_once(':').ok_or_else(|| {
            format!(
                "line {}: \"{}\" is not a header (Name: value)",
                i + 2,
                line.escape_debug()
            )
        })?;
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!(
                "line {}: bad header name \"{}\"",
                i + 2,
                name.escape_debug()
            ));
        }
        headers.push((name.to_string(), value.trim().as_bytes().to_vec()));
    }
    let rest = &raw[head_len + sep..];
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| String::from_utf8_lossy(v).to_ascii_lowercase())
    };
    let body = if header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        dechunk(rest)?
    } else if let Some(length) = header("content-length") {
        let length: usize = length
            .trim()
            .parse()
            .map_err(|_| format!("Content-Length \"{length}\" is not a number"))?;
        if length > rest.len() {
            return Err(format!(
                "Content-Length is {length} but only {} bytes follow the head",
                rest.len()
            ));
        }
        rest[..length].to_vec()
    } else {
        rest.to_vec()
    };
    let head = RequestHead {
        method: method.to_string(),
        uri: uri.to_string(),
        protocol: protocol.to_string(),
        headers,
        remote_addr: std::net::Ipv4Addr::LOCALHOST.into(),
        remote_port: 0,
        unique_id: "waf-test".into(),
    };
    Ok((head, body))
}

/// Where the head ends, and the length of the blank line's line breaks.
fn find_head_end(raw: &[u8]) -> Option<(usize, usize)> {
    let crlf = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| (at, 4));
    let lf = raw.windows(2).position(|w| w == b"\n\n").map(|at| (at, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = data
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("chunked body: a chunk size line without its end")?;
        let line = String::from_utf8_lossy(&data[..line_end]);
        let size_text = line
            .trim()
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let size = usize::from_str_radix(&size_text, 16).map_err(|_| {
            format!(
                "chunked body: \"{}\" is not a chunk size",
                size_text.escape_debug()
            )
        })?;
        data = &data[line_end + 1..];
        if size == 0 {
            return Ok(body);
        }
        if size > data.len() {
            return Err(format!(
                "chunked body: a chunk of {size} bytes, only {} left",
                data.len()
            ));
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size..];
        data = data
            .strip_prefix(b"\r\n")
            .or_else(|| data.strip_prefix(b"\n"))
            .unwrap_or(data);
    }
}

fn shown(rule: &rampart_waf::TraceRule, all: bool) -> bool {
    all || rule.logged
}

fn quoted(bytes: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    let more = if bytes.len() > MAX { "…" } else { "" };
    let mut shown = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                shown.push('\\');
                shown.push(c);
            }
            c if c.is_control() => shown.extend(c.escape_default()),
            c => shown.push(c),
        }
    }
    format!("\"{shown}{more}\"")
}

fn tx_number(tx: &Transaction, name: &str) -> Option<String> {
    tx.tx(name).map(|v| String::from_utf8_lossy(v).into_owned())
}

fn text(tx: &Transaction, all: bool, body_len: usize) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let head = tx.head();
    let _ = writeln!(
        out,
        "request: {} {} ({} header(s), {body_len} byte(s) of body)\n",
        head.method,
        head.uri,
        head.headers.len()
    );
    let mut any = false;
    for rule in tx.trace().iter().filter(|r| shown(r, all)) {
        any = true;
        let _ = writeln!(
            out,
            "rule {} (phase {}, {}:{}){}",
            rule.rule_id,
            rule.phase,
            rule.file,
            rule.line,
            if rule.msg.is_empty() {
                String::new()
            } else {
                format!(": {}", rule.msg)
            }
        );
        for step in &rule.steps {
            let link = if step.link > 0 {
                format!(" [chain link {}]", step.link)
            } else {
                String::new()
            };
            let _ = writeln!(out, "  {}{link} = {}", step.variable, quoted(&step.value));
            if !step.transforms.is_empty() {
                let _ = writeln!(
                    out,
                    "    t:{} → {}",
                    step.transforms.join(",t:"),
                    quoted(&step.transformed)
                );
            }
            let _ = writeln!(
                out,
                "    {} matched {}",
                step.operator,
                quoted(&step.matched)
            );
        }
    }
    if !any {
        let _ = writeln!(out, "no rule matched");
    }
    out.push('\n');
    let inbound =
        tx_number(tx, "blocking_inbound_anomaly_score").or_else(|| tx_number(tx, "anomaly_score"));
    if let Some(score) = inbound {
        let threshold =
            tx_number(tx, "inbound_anomaly_score_threshold").unwrap_or_else(|| "?".into());
        let _ = writeln!(
            out,
            "inbound anomaly score: {score} (threshold {threshold})"
        );
    }
    match tx.intervention() {
        Some(i) => {
            let _ = writeln!(
                out,
                "verdict: blocked by rule {} with status {}",
                i.rule_id, i.status
            );
        }
        None => {
            let _ = writeln!(out, "verdict: passed");
        }
    }
    out
}

fn json(tx: &Transaction, all: bool) -> serde_json::Value {
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let rules: Vec<serde_json::Value> = tx
        .trace()
        .iter()
        .filter(|r| shown(r, all))
        .map(|r| {
            serde_json::json!({
                "id": r.rule_id,
                "phase": r.phase,
                "file": r.file,
                "line": r.line,
                "msg": r.msg,
                "logged": r.logged,
                "logdata": tx.messages().iter().find(|m| m.rule_id == r.rule_id).map(|m| m.data.clone()),
                "matches": r.steps.iter().map(|s| serde_json::json!({
                    "link": s.link,
                    "variable": s.variable,
                    "value": lossy(&s.value),
                    "transforms": s.transforms,
                    "transformed": lossy(&s.transformed),
                    "operator": s.operator,
                    "matched": lossy(&s.matched),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "rules": rules,
        "inbound_anomaly_score": tx_number(tx, "blocking_inbound_anomaly_score")
            .or_else(|| tx_number(tx, "anomaly_score")),
        "verdict": match tx.intervention() {
            Some(i) => serde_json::json!({"blocked": true, "rule": i.rule_id, "status": i.status}),
            None => serde_json::json!({"blocked": false}),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_as_sent() {
        let (head, body) = parse_request(
            b"POST /login?next=%2F HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nu=abcEXTRA",
        )
        .unwrap();
        assert_eq!(
            (head.method.as_str(), head.uri.as_str()),
            ("POST", "/login?next=%2F")
        );
        assert_eq!(body, b"u=abc");
        let (_, body) = parse_request(
            b"POST / HTTP/1.1\nTransfer-Encoding: chunked\n\n3\nabc\n2;x=y\nde\n0\n\n",
        )
        .unwrap();
        assert_eq!(body, b"abcde");
        let (head, body) = parse_request(b"GET /x\n\n").unwrap();
        assert_eq!((head.protocol.as_str(), body.len()), ("HTTP/1.1", 0));
    }

    #[test]
    fn broken_requests_are_named() {
        for (raw, expected) in [
            (&b"GET / HTTP/1.1\r\nHost: a\r\n"[..], "no blank line"),
            (b"\r\n\r\n", "is not a request line"),
            (b"GET / HTTP/1.1 extra\n\n", "is not a request line"),
            (b"G<T / HTTP/1.1\n\n", "is not a method"),
            (b"GET / FTP/1\n\n", "is not a protocol"),
            (
                b"GET / HTTP/1.1\nno colon\n\n",
                "line 2: \"no colon\" is not a header",
            ),
            (b"GET / HTTP/1.1\nA B: c\n\n", "bad header name"),
            (b"GET / HTTP/1.1\nContent-Length: x\n\n", "is not a number"),
            (
                b"GET / HTTP/1.1\nContent-Length: 9\n\nabc",
                "only 3 bytes follow",
            ),
            (
                b"GET / HTTP/1.1\nTransfer-Encoding: chunked\n\nzz\n",
                "not a chunk size",
            ),
            (
                b"GET / HTTP/1.1\nTransfer-Encoding: chunked\n\nff\nab",
                "only 2 left",
            ),
            (b"GET / HTTP/1.1\xff\n\n", "not UTF-8"),
        ] {
            let e = parse_request(raw).unwrap_err();
            assert!(e.contains(expected), "{e:?} lacks {expected:?}");
        }
    }
}

//! Request body processors: JSON and XML (URL-encoded bodies are parsed by the engine).
//!
//! JSON leaves become arguments named by their path, as ModSecurity v3 names them:
//! `{"a": {"b": 1}, "c": [true, "x"]}` gives `json.a.b = 1`, `json.c.array_0 = true`,
//! `json.c.array_1 = x`. XML gives the document's text content (what `XML:/*` reads) and every
//! attribute value (`XML://@*`).

/// Deepest nesting accepted (JSON beyond serde_json's own limit of 128 is an error too, before
/// any stack could run out).
pub const MAX_JSON_DEPTH: usize = 128;

/// JSON body → (name, value) arguments; `Err` describes why the body is not JSON.
pub fn json_arguments(body: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: serde_json::Value =
        serde::Deserialize::deserialize(&mut de).map_err(|e| format!("JSON parsing error: {e}"))?;
    de.end().map_err(|e| format!("JSON parsing error: {e}"))?;
    let mut out = Vec::new();
    walk(&value, "json".to_string(), 0, &mut out)?;
    Ok(out)
}

fn walk(
    value: &serde_json::Value,
    path: String,
    depth: usize,
    out: &mut Vec<(String, Vec<u8>)>,
) -> Result<(), String> {
    if depth > MAX_JSON_DEPTH {
        return Err(format!("JSON nested deeper than {MAX_JSON_DEPTH} levels"));
    }
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                walk(v, format!("{path}.{k}"), depth + 1, out)?;
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(v, format!("{path}.array_{i}"), depth + 1, out)?;
            }
        }
        serde_json::Value::String(s) => out.push((path, s.as_bytes().to_vec())),
        serde_json::Value::Number(n) => out.push((path, n.to_string().into_bytes())),
        serde_json::Value::Bool(b) => out.push((path, b.to_string().into_bytes())),
        serde_json::Value::Null => out.push((path, Vec::new())),
    }
    Ok(())
}

/// What an XML body offers the rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XmlDocument {
    /// The text content of the whole document (CDATA included), in order.
    pub text: Vec<u8>,
    /// Every attribute value, in order.
    pub attributes: Vec<(String, Vec<u8>)>,
}

/// Parses an XML body; `Err` describes why it is not well-formed.
pub fn xml_document(body: &[u8]) -> Result<XmlDocument, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let config = reader.config_mut();
    config.check_end_names = true;
    let mut doc = XmlDocument::default();
    let mut depth = 0usize;
    let mut seen_root = false;
    let mut buf = Vec::new();
    loop {
        let event = reader.read_event_into(&mut buf).map_err(|e| {
            format!(
                "XML parsing error at byte {}: {e}",
                reader.buffer_position()
            )
        })?;
        match event {
            Event::Start(e) | Event::Empty(e) => {
                seen_root = true;
                for attr in e.attributes() {
                    let attr = attr.map_err(|err| format!("XML attribute error: {err}"))?;
                    let name = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
                    let value = attr
                        .unescape_value()
                        .map(|v| v.into_owned().into_bytes())
                        .unwrap_or_else(|_| attr.value.to_vec());
                    doc.attributes.push((name, value));
                }
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(format!("XML nested deeper than {MAX_JSON_DEPTH} levels"));
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(t) => {
                let text = t
                    .unescape()
                    .map(|c| c.into_owned())
                    .unwrap_or_else(|_| String::from_utf8_lossy(&t).into_owned());
                doc.text.extend_from_slice(text.as_bytes());
            }
            Event::CData(c) => doc.text.extend_from_slice(&c),
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !seen_root {
        return Err("XML parsing error: no root element".into());
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths() {
        let args = json_arguments(br#"{"a": {"b": 1}, "c": [true, "x", null], "d": "${jndi:x}"}"#)
            .unwrap();
        let pairs: Vec<(String, String)> = args
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("json.a.b".into(), "1".into()),
                ("json.c.array_0".into(), "true".into()),
                ("json.c.array_1".into(), "x".into()),
                ("json.c.array_2".into(), "".into()),
                ("json.d".into(), "${jndi:x}".into()),
            ]
        );
        assert_eq!(json_arguments(br#"["\u0024{x}"]"#).unwrap()[0].1, b"${x}");
        assert!(json_arguments(b"{\"a\": ").is_err());
        assert!(json_arguments(b"{} x").is_err());
        let deep = "[".repeat(600) + &"]".repeat(600);
        assert!(
            json_arguments(deep.as_bytes())
                .unwrap_err()
                .contains("recursion limit")
        );
    }

    #[test]
    fn xml_text_and_attributes() {
        let doc = xml_document(
            br#"<?xml version="1.0"?><a x="1&amp;2"><b>hello</b><![CDATA[<raw>]]><c y="z"/></a>"#,
        )
        .unwrap();
        assert_eq!(doc.text, b"hello<raw>");
        assert_eq!(
            doc.attributes,
            vec![("x".into(), b"1&2".to_vec()), ("y".into(), b"z".to_vec())]
        );
        assert!(xml_document(b"<a><b></a>").is_err());
        assert!(xml_document(b"just text").is_err());
    }
}

/// A multipart/form-data body, split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Multipart {
    /// Parts without a file name: (field, value).
    pub args: Vec<(String, Vec<u8>)>,
    /// Parts with a file name: (field, file name, size).
    pub files: Vec<(String, String, usize)>,
    /// Every header line of every part: (field, `Name: value`).
    pub part_headers: Vec<(String, Vec<u8>)>,
    /// Deviations ModSecurity flags (`MULTIPART_*` variables).
    pub data_before: bool,
    pub data_after: bool,
    pub header_folding: bool,
    pub lf_line: bool,
    pub invalid_quoting: bool,
    pub invalid_part: bool,
    pub unmatched_boundary: bool,
    pub boundary_quoted: bool,
    pub boundary_whitespace: bool,
}

impl Multipart {
    /// `MULTIPART_STRICT_ERROR`: any of the deviations.
    pub fn strict_error(&self) -> bool {
        self.data_before
            || self.data_after
            || self.header_folding
            || self.lf_line
            || self.invalid_quoting
            || self.invalid_part
            || self.unmatched_boundary
            || self.boundary_whitespace
    }
}

/// Most parts read from one body.
pub const MAX_PARTS: usize = 1000;

/// The boundary of a `multipart/form-data; boundary=…` Content-Type, and whether it was quoted
/// or had whitespace around it.
fn boundary_of(content_type: &str) -> Option<(String, bool, bool)> {
    let lower = content_type.to_ascii_lowercase();
    let at = lower.find("boundary")?;
    let rest = content_type[at + "boundary".len()..].trim_start();
    let rest = rest.strip_prefix('=')?;
    let whitespace = rest.starts_with(char::is_whitespace);
    let rest = rest.trim_start();
    let (value, quoted) = match rest.strip_prefix('"') {
        Some(q) => (q.split('"').next().unwrap_or(""), true),
        None => (
            rest.split([';', ',']).next().unwrap_or("").trim_end(),
            false,
        ),
    };
    (!value.is_empty()).then(|| (value.to_string(), quoted, whitespace))
}

/// A `name="value"` (or unquoted) parameter of a Content-Disposition header, and whether its
/// quoting was invalid. Separators inside quotes belong to the value (`name="a;b"`); a
/// backslash escapes a quote or a backslash, as ModSecurity reads it.
fn disposition_param(header: &str, param: &str) -> (Option<String>, bool) {
    let mut invalid_quoting = false;
    let mut rest = match header.split_once(';') {
        Some((_, after)) => after,
        None => return (None, false),
    };
    loop {
        let trimmed = rest.trim_start_matches([' ', '\t', ';']);
        if trimmed.is_empty() {
            return (None, invalid_quoting);
        }
        let Some(eq) = trimmed.find(['=', ';']) else {
            return (None, invalid_quoting);
        };
        if trimmed.as_bytes()[eq] == b';' {
            // A parameter without a value.
            rest = &trimmed[eq..];
            continue;
        }
        let key = trimmed[..eq].trim();
        let after = trimmed[eq + 1..].trim_start();
        let (value, next, bad) = if let Some(inner) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = inner.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.clone().next() {
                        Some((_, q @ ('"' | '\\'))) => {
                            value.push(q);
                            chars.next();
                        }
                        _ => value.push(c),
                    },
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    _ => value.push(c),
                }
            }
            match end {
                Some(i) => (value, &inner[i + 1..], false),
                None => (value, "", true),
            }
        } else {
            let stop = after.find(';').unwrap_or(after.len());
            let value = after[..stop].trim_end();
            let bad = value.starts_with('\'') || value.contains('"');
            (value.to_string(), &after[stop..], bad)
        };
        if key.eq_ignore_ascii_case(param) {
            return (Some(value), invalid_quoting || bad);
        }
        invalid_quoting |= bad;
        rest = next;
    }
}

/// Splits a multipart/form-data body.
pub fn multipart(body: &[u8], content_type: &str) -> Result<Multipart, String> {
    let (boundary, quoted, whitespace) =
        boundary_of(content_type).ok_or("multipart Content-Type without a boundary")?;
    let mut out = Multipart {
        boundary_quoted: quoted,
        boundary_whitespace: whitespace,
        ..Multipart::default()
    };
    let delimiter = format!("--{boundary}").into_bytes();
    let find = |hay: &[u8], from: usize| -> Option<usize> {
        hay.get(from..)?
            .windows(delimiter.len())
            .position(|w| w == delimiter.as_slice())
            .map(|p| p + from)
    };
    let Some(first) = find(body, 0) else {
        out.unmatched_boundary = true;
        return Ok(out);
    };
    if body[..first].iter().any(|b| !b.is_ascii_whitespace()) {
        out.data_before = true;
    }
    let mut at = first;
    let mut closed = false;
    while out.args.len() + out.files.len() < MAX_PARTS {
        let after = at + delimiter.len();
        if body[after..].starts_with(b"--") {
            closed = true;
            if body[after + 2..].iter().any(|b| !b.is_ascii_whitespace()) {
                out.data_after = true;
            }
            break;
        }
        // The rest of the boundary line.
        let line_end = match body[after..].iter().position(|&b| b == b'\n') {
            Some(p) => after + p + 1,
            None => break,
        };
        let next = find(body, line_end);
        let part_end = next.unwrap_or(body.len());
        let part = &body[line_end..part_end];
        // The part's data ends before the CRLF (or LF) that precedes the next delimiter.
        let part = part
            .strip_suffix(b"\r\n")
            .or_else(|| part.strip_suffix(b"\n"))
            .unwrap_or(part);
        read_part(part, &mut out);
        match next {
            Some(n) => at = n,
            None => break,
        }
    }
    if !closed {
        out.unmatched_boundary = true;
    }
    Ok(out)
}

fn read_part(part: &[u8], out: &mut Multipart) {
    // Headers end at the first empty line.
    let (head, data) = match part.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => (&part[..p], &part[p + 4..]),
        None => match part.windows(2).position(|w| w == b"\n\n") {
            Some(p) => {
                out.lf_line = true;
                (&part[..p], &part[p + 2..])
            }
            None => {
                out.invalid_part = true;
                return;
            }
        },
    };
    let head = String::from_utf8_lossy(head);
    let mut lines: Vec<String> = Vec::new();
    let count = head.split('\n').count();
    for (k, raw) in head.split('\n').enumerate() {
        // The last line lost its CRLF with the blank line that ends the head.
        let line = match raw.strip_suffix('\r') {
            Some(l) => l,
            None => {
                if k + 1 < count {
                    out.lf_line = true;
                }
                raw
            }
        };
        if line.starts_with([' ', '\t']) {
            out.header_folding = true;
            if let Some(last) = lines.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
                continue;
            }
        }
        lines.push(line.to_string());
    }
    let disposition = lines
        .iter()
        .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
        .cloned();
    let Some(disposition) = disposition else {
        out.invalid_part = true;
        return;
    };
    let (name, bad_name) = disposition_param(&disposition, "name");
    let (filename, bad_file) = disposition_param(&disposition, "filename");
    out.invalid_quoting |= bad_name || bad_file;
    let name = name.unwrap_or_default();
    for line in &lines {
        out.part_headers
            .push((name.clone(), line.as_bytes().to_vec()));
    }
    match filename {
        Some(file) => out.files.push((name, file, data.len())),
        None => out.args.push((name, data.to_vec())),
    }
}

#[cfg(test)]
mod multipart_tests {
    use super::*;

    #[test]
    fn parts_files_and_headers() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello\r\n\
            --XyZ\r\nContent-Disposition: form-data; name=\"up\"; filename=\"x.php\"\r\nContent-Type: text/plain\r\n\r\n<?php ?>\r\n\
            --XyZ--\r\n";
        let m = multipart(body, "multipart/form-data; boundary=XyZ").unwrap();
        assert_eq!(m.args, vec![("a".to_string(), b"hello".to_vec())]);
        assert_eq!(m.files, vec![("up".to_string(), "x.php".to_string(), 8)]);
        assert_eq!(m.part_headers.len(), 3);
        assert_eq!(
            m.part_headers[2],
            ("up".to_string(), b"Content-Type: text/plain".to_vec())
        );
        assert!(!m.strict_error(), "{m:?}");
    }

    #[test]
    fn deviations_are_flagged() {
        let m = multipart(
            b"junk--B\nContent-Disposition: form-data; name=\"a\"\n\nv\n--B--\nafter",
            "multipart/form-data; boundary=\"B\"",
        )
        .unwrap();
        assert!(m.data_before && m.data_after && m.lf_line && m.boundary_quoted);
        let m = multipart(
            b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n",
            "multipart/form-data; boundary=B",
        )
        .unwrap();
        assert!(m.unmatched_boundary);
        let m = multipart(
            b"--B\r\nContent-Disposition: form-data;\r\n name=\"a\"\r\n\r\nv\r\n--B--",
            "multipart/form-data; boundary=B",
        )
        .unwrap();
        assert!(m.header_folding);
        assert_eq!(m.args[0].0, "a");
        assert!(multipart(b"x", "multipart/form-data").is_err());
    }

    #[test]
    fn disposition_parameters_keep_quoted_separators() {
        let d = "form-data; name=\"fi;le\"; filename=\"a\\\"b.txt\"";
        assert_eq!(disposition_param(d, "name"), (Some("fi;le".into()), false));
        assert_eq!(
            disposition_param(d, "filename"),
            (Some("a\"b.txt".into()), false)
        );
        assert_eq!(
            disposition_param("form-data; name=plain ; x", "name"),
            (Some("plain".into()), false)
        );
        assert_eq!(
            disposition_param("form-data; name=\"open", "name"),
            (Some("open".into()), true)
        );
        assert_eq!(
            disposition_param("form-data; name='q'", "name"),
            (Some("'q'".into()), true)
        );
        assert_eq!(
            disposition_param("form-data; flag; name=a", "name").0,
            Some("a".into())
        );
        assert_eq!(disposition_param("form-data", "name"), (None, false));
    }
}

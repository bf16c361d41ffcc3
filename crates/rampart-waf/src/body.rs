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

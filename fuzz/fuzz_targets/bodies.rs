//! The request body processors on arbitrary bodies: JSON, XML, multipart (with a boundary
//! taken from the input) — parsed or refused with an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => {
            let _ = rampart_waf::body::json_arguments(body);
        }
        1 => {
            let _ = rampart_waf::body::xml_document(body);
        }
        _ => {
            // The content type is the first line, the body the rest.
            let split = body.iter().position(|&b| b == b'\n').unwrap_or(body.len());
            let content_type = String::from_utf8_lossy(&body[..split]);
            let rest = body.get(split + 1..).unwrap_or_default();
            let _ = rampart_waf::body::multipart(rest, &content_type);
            let _ = rampart_waf::body::multipart(rest, "multipart/form-data; boundary=XyZ");
        }
    }
});

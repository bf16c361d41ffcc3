//! Chains of transformations on arbitrary bytes: the first bytes pick up to four
//! transformations, the rest is the value. Output stays bounded by the input's size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_waf::Transform;

const NAMES: &[&str] = &[
    "base64Decode", "base64DecodeExt", "cmdLine", "compressWhitespace", "cssDecode",
    "escapeSeqDecode", "hexDecode", "hexEncode", "htmlEntityDecode", "jsDecode", "length",
    "lowercase", "md5", "normalizePath", "normalizePathWin", "removeComments",
    "removeCommentsChar", "removeNulls", "removeWhitespace", "replaceComments", "replaceNulls",
    "sha1", "sqlHexDecode", "trim", "trimLeft", "trimRight", "uppercase", "urlDecode",
    "urlDecodeUni", "urlEncode", "utf8toUnicode",
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let chain: Vec<Transform> = data[..4]
        .iter()
        .map(|b| Transform::parse(NAMES[usize::from(*b) % NAMES.len()]).expect("known name"))
        .collect();
    let value = &data[4..];
    let out = rampart_waf::apply_all(value, &chain);
    // hexEncode doubles, urlEncode and utf8toUnicode grow at most six-fold per step.
    assert!(out.len() <= value.len().max(64) * 6 * 6 * 6 * 6);
    for t in &chain {
        let _ = t.apply(value);
    }
});

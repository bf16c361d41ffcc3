//! Transformations (`t:name`): pure functions over bytes, as ModSecurity v3 defines them.
//!
//! Each returns `None` when its input is left unchanged, so a chain of transformations copies
//! only when one of them changes something.

use std::borrow::Cow;

/// A transformation the engine knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transform {
    Base64Decode,
    Base64DecodeExt,
    CmdLine,
    CompressWhitespace,
    CssDecode,
    EscapeSeqDecode,
    HexDecode,
    HexEncode,
    HtmlEntityDecode,
    JsDecode,
    Length,
    Lowercase,
    Md5,
    NormalizePath,
    NormalizePathWin,
    RemoveComments,
    RemoveCommentsChar,
    RemoveNulls,
    RemoveWhitespace,
    ReplaceComments,
    ReplaceNulls,
    Sha1,
    SqlHexDecode,
    Trim,
    TrimLeft,
    TrimRight,
    Uppercase,
    UrlDecode,
    UrlDecodeUni,
    UrlEncode,
    Utf8ToUnicode,
}

impl Transform {
    /// The transformation named `name` (case-insensitive, as ModSecurity reads them); `None`
    /// for `none`, which resets the chain, and for unknown names.
    pub fn parse(name: &str) -> Option<Transform> {
        use Transform::*;
        Some(match name.to_ascii_lowercase().as_str() {
            "base64decode" => Base64Decode,
            "base64decodeext" => Base64DecodeExt,
            "cmdline" => CmdLine,
            "compresswhitespace" => CompressWhitespace,
            "cssdecode" => CssDecode,
            "escapeseqdecode" => EscapeSeqDecode,
            "hexdecode" => HexDecode,
            "hexencode" => HexEncode,
            "htmlentitydecode" => HtmlEntityDecode,
            "jsdecode" => JsDecode,
            "length" => Length,
            "lowercase" => Lowercase,
            "md5" => Md5,
            "normalizepath" | "normalisepath" => NormalizePath,
            "normalizepathwin" | "normalisepathwin" => NormalizePathWin,
            "removecomments" => RemoveComments,
            "removecommentschar" => RemoveCommentsChar,
            "removenulls" => RemoveNulls,
            "removewhitespace" => RemoveWhitespace,
            "replacecomments" => ReplaceComments,
            "replacenulls" => ReplaceNulls,
            "sha1" => Sha1,
            "sqlhexdecode" => SqlHexDecode,
            "trim" => Trim,
            "trimleft" => TrimLeft,
            "trimright" => TrimRight,
            "uppercase" => Uppercase,
            "urldecode" => UrlDecode,
            "urldecodeuni" => UrlDecodeUni,
            "urlencode" => UrlEncode,
            "utf8tounicode" => Utf8ToUnicode,
            _ => return None,
        })
    }

    /// A small number per transformation (below 32), for cache keys.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name the audit log shows.
    pub fn name(self) -> &'static str {
        use Transform::*;
        match self {
            Base64Decode => "base64Decode",
            Base64DecodeExt => "base64DecodeExt",
            CmdLine => "cmdLine",
            CompressWhitespace => "compressWhitespace",
            CssDecode => "cssDecode",
            EscapeSeqDecode => "escapeSeqDecode",
            HexDecode => "hexDecode",
            HexEncode => "hexEncode",
            HtmlEntityDecode => "htmlEntityDecode",
            JsDecode => "jsDecode",
            Length => "length",
            Lowercase => "lowercase",
            Md5 => "md5",
            NormalizePath => "normalizePath",
            NormalizePathWin => "normalizePathWin",
            RemoveComments => "removeComments",
            RemoveCommentsChar => "removeCommentsChar",
            RemoveNulls => "removeNulls",
            RemoveWhitespace => "removeWhitespace",
            ReplaceComments => "replaceComments",
            ReplaceNulls => "replaceNulls",
            Sha1 => "sha1",
            SqlHexDecode => "sqlHexDecode",
            Trim => "trim",
            TrimLeft => "trimLeft",
            TrimRight => "trimRight",
            Uppercase => "uppercase",
            UrlDecode => "urlDecode",
            UrlDecodeUni => "urlDecodeUni",
            UrlEncode => "urlEncode",
            Utf8ToUnicode => "utf8toUnicode",
        }
    }

    /// Whether the input surely comes out unchanged, known from a quick scan for the bytes the
    /// transformation acts on (most values of benign requests hold none). `false` means
    /// "perhaps changed": the transformation then runs in full.
    fn leaves_unchanged(self, input: &[u8]) -> bool {
        use Transform::*;
        match self {
            UrlDecode | UrlDecodeUni => memchr::memchr2(b'%', b'+', input).is_none(),
            HtmlEntityDecode => memchr::memchr(b'&', input).is_none(),
            JsDecode | CssDecode | EscapeSeqDecode => memchr::memchr(b'\\', input).is_none(),
            Lowercase => !input.iter().any(u8::is_ascii_uppercase),
            Uppercase => !input.iter().any(u8::is_ascii_lowercase),
            RemoveNulls | ReplaceNulls => memchr::memchr(0, input).is_none(),
            RemoveWhitespace => !input.iter().any(|&b| is_space(b) || b == 0xa0),
            CompressWhitespace => {
                let mut previous_space = false;
                input.iter().all(|&b| {
                    let space = is_space(b) || b == 0xa0;
                    let kept = !space || (b == b' ' && !previous_space);
                    previous_space = space;
                    kept
                })
            }
            ReplaceComments => memchr::memchr(b'/', input).is_none(),
            RemoveComments => memchr::memchr3(b'/', b'-', b'#', input).is_none(),
            RemoveCommentsChar => {
                memchr::memchr3(b'/', b'-', b'#', input).is_none()
                    && memchr::memchr(b'*', input).is_none()
            }
            Utf8ToUnicode => input.is_ascii(),
            Trim | TrimLeft | TrimRight => {
                !input.first().is_some_and(|&b| is_space(b))
                    && !input.last().is_some_and(|&b| is_space(b))
            }
            _ => false,
        }
    }

    /// Applies the transformation; `None` when the input comes out unchanged.
    pub fn apply(self, input: &[u8]) -> Option<Vec<u8>> {
        if self.leaves_unchanged(input) {
            return None;
        }
        self.apply_in_full(input)
    }

    /// Applies the transformation without the quick scan.
    fn apply_in_full(self, input: &[u8]) -> Option<Vec<u8>> {
        use Transform::*;
        let out = match self {
            Base64Decode => base64_decode(input, false),
            Base64DecodeExt => base64_decode(input, true),
            CmdLine => cmd_line(input),
            CompressWhitespace => compress_whitespace(input),
            CssDecode => css_decode(input),
            EscapeSeqDecode => escape_seq_decode(input),
            HexDecode => hex_decode(input),
            HexEncode => hex_encode(input),
            HtmlEntityDecode => html_entity_decode(input),
            JsDecode => js_decode(input),
            Length => input.len().to_string().into_bytes(),
            Lowercase => input.to_ascii_lowercase(),
            Md5 => md5_digest(input),
            NormalizePath => normalize_path(input, false),
            NormalizePathWin => normalize_path(input, true),
            RemoveComments => remove_comments(input),
            RemoveCommentsChar => remove_comments_char(input),
            RemoveNulls => input.iter().copied().filter(|&b| b != 0).collect(),
            RemoveWhitespace => input
                .iter()
                .copied()
                .filter(|&b| !is_space(b) && b != 0xa0)
                .collect(),
            ReplaceComments => replace_comments(input),
            ReplaceNulls => input
                .iter()
                .map(|&b| if b == 0 { b' ' } else { b })
                .collect(),
            Sha1 => sha1_digest(input),
            SqlHexDecode => sql_hex_decode(input),
            Trim => trim(input, true, true).to_vec(),
            TrimLeft => trim(input, true, false).to_vec(),
            TrimRight => trim(input, false, true).to_vec(),
            Uppercase => input.to_ascii_uppercase(),
            UrlDecode => url_decode(input, false),
            UrlDecodeUni => url_decode(input, true),
            UrlEncode => url_encode(input),
            Utf8ToUnicode => utf8_to_unicode(input),
        };
        (out != input).then_some(out)
    }
}

/// A transformation chain as a cache key: five bits per step, chains of up to 25 steps.
pub fn chain_key(chain: &[Transform]) -> Option<u128> {
    if chain.len() > 25 {
        return None;
    }
    Some(
        chain
            .iter()
            .fold(1u128, |key, t| key << 5 | u128::from(t.index() as u8)),
    )
}

/// Applies a chain of transformations in order.
pub fn apply_all<'a>(input: &'a [u8], chain: &[Transform]) -> Cow<'a, [u8]> {
    let mut value = Cow::Borrowed(input);
    for t in chain {
        if let Some(next) = t.apply(&value) {
            value = Cow::Owned(next);
        }
    }
    value
}

/// C's `isspace` in the "C" locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex2(a: u8, b: u8) -> Option<u8> {
    Some(hex_value(a)? << 4 | hex_value(b)?)
}

/// A `%uHHHH` or `\uHHHH` code point as ModSecurity maps it to one byte: full-width ASCII
/// (U+FF01–U+FF5E) becomes the ASCII character, anything else its low byte.
fn unicode_to_byte(code: u16) -> u8 {
    if (0xff01..=0xff5e).contains(&code) {
        (code - 0xfee0) as u8
    } else {
        (code & 0xff) as u8
    }
}

fn url_decode(input: &[u8], unicode: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'%' if unicode
                && i + 5 < input.len()
                && (input[i + 1] == b'u' || input[i + 1] == b'U') =>
            {
                let hex = &input[i + 2..i + 6];
                match (hex2(hex[0], hex[1]), hex2(hex[2], hex[3])) {
                    (Some(hi), Some(lo)) => {
                        out.push(unicode_to_byte(u16::from(hi) << 8 | u16::from(lo)));
                        i += 6;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'%' if i + 2 < input.len() => match hex2(input[i + 1], input[i + 2]) {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn url_encode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 3);
    for &b in input {
        match b {
            b' ' => out.push(b'+'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b),
            _ => out.extend_from_slice(format!("%{b:02x}").as_bytes()),
        }
    }
    out
}

fn hex_encode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 2);
    for &b in input {
        out.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    out
}

fn hex_decode(input: &[u8]) -> Vec<u8> {
    input
        .chunks(2)
        .filter_map(|pair| match pair {
            [a, b] => hex2(*a, *b),
            _ => None,
        })
        .collect()
}

/// `0x414243` sequences (as SQL writes strings in hex) become their bytes.
fn sql_hex_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'0'
            && i + 3 < input.len()
            && (input[i + 1] == b'x' || input[i + 1] == b'X')
            && hex2(input[i + 2], input[i + 3]).is_some()
        {
            i += 2;
            while i + 1 < input.len() {
                match hex2(input[i], input[i + 1]) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => break,
                }
            }
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

fn base64_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// Base64 (standard or URL-safe alphabet). Plain decoding stops at the first character outside
/// the alphabet (or `=`); the `Ext` form skips such characters and goes on.
fn base64_decode(input: &[u8], skip_invalid: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in input {
        let Some(v) = base64_value(b) else {
            if skip_invalid && b != b'=' {
                continue;
            }
            break;
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn html_entity_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'&' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let rest = &input[i + 1..];
        // &#xHH;  &#DDD;  &name;  — the semicolon is optional, as in ModSecurity.
        if let Some(num) = rest.strip_prefix(b"#") {
            let (hex, digits) = match num.first() {
                Some(b'x' | b'X') => (true, &num[1..]),
                _ => (false, num),
            };
            let len = digits
                .iter()
                .take_while(|&&d| {
                    if hex {
                        d.is_ascii_hexdigit()
                    } else {
                        d.is_ascii_digit()
                    }
                })
                .count();
            if len > 0 {
                let text = std::str::from_utf8(&digits[..len]).unwrap_or("0");
                let value = if hex {
                    u32::from_str_radix(text, 16)
                } else {
                    text.parse::<u32>()
                }
                .unwrap_or(0);
                out.push((value & 0xff) as u8);
                let consumed = 1 + usize::from(hex) + len;
                i += 1 + consumed + usize::from(digits.get(len) == Some(&b';'));
                continue;
            }
        } else {
            let name_len = rest.iter().take_while(|b| b.is_ascii_alphabetic()).count();
            let name = rest[..name_len].to_ascii_lowercase();
            let replacement = match name.as_slice() {
                b"quot" => Some(b'"'),
                b"amp" => Some(b'&'),
                b"lt" => Some(b'<'),
                b"gt" => Some(b'>'),
                b"nbsp" => Some(0xa0),
                _ => None,
            };
            if let Some(r) = replacement {
                out.push(r);
                i += 1 + name_len + usize::from(rest.get(name_len) == Some(&b';'));
                continue;
            }
        }
        out.push(b'&');
        i += 1;
    }
    out
}

/// An octal escape's byte (up to three digits at the start of `digits`) and the digits used.
fn octal(digits: &[u8]) -> (u8, usize) {
    let n = digits
        .iter()
        .take(3)
        .take_while(|d| (b'0'..=b'7').contains(*d))
        .count();
    let value = digits[..n]
        .iter()
        .fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
    ((value & 0xff) as u8, n)
}

fn js_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'\\' || i + 1 >= input.len() {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let next = input[i + 1];
        match next {
            b'u' if i + 5 < input.len() => {
                match (
                    hex2(input[i + 2], input[i + 3]),
                    hex2(input[i + 4], input[i + 5]),
                ) {
                    (Some(hi), Some(lo)) => {
                        out.push(unicode_to_byte(u16::from(hi) << 8 | u16::from(lo)));
                        i += 6;
                    }
                    _ => {
                        out.push(b'u');
                        i += 2;
                    }
                }
            }
            b'x' if i + 3 < input.len() && hex2(input[i + 2], input[i + 3]).is_some() => {
                out.push(hex2(input[i + 2], input[i + 3]).unwrap_or(0));
                i += 4;
            }
            b'0'..=b'7' => {
                let (byte, n) = octal(&input[i + 1..]);
                out.push(byte);
                i += 1 + n;
            }
            _ => {
                out.push(match next {
                    b'a' => 0x07,
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'v' => 0x0b,
                    other => other,
                });
                i += 2;
            }
        }
    }
    out
}

fn escape_seq_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'\\' || i + 1 >= input.len() {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let next = input[i + 1];
        let simple = match next {
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'\\' => Some(b'\\'),
            b'?' => Some(b'?'),
            b'\'' => Some(b'\''),
            b'"' => Some(b'"'),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            i += 2;
        } else if next == b'x' && i + 3 < input.len() && hex2(input[i + 2], input[i + 3]).is_some()
        {
            out.push(hex2(input[i + 2], input[i + 3]).unwrap_or(0));
            i += 4;
        } else if (b'0'..=b'7').contains(&next) {
            let (byte, n) = octal(&input[i + 1..]);
            out.push(byte);
            i += 1 + n;
        } else {
            // Unknown escape: kept as written.
            out.push(b'\\');
            out.push(next);
            i += 2;
        }
    }
    out
}

/// CSS 2 escapes: `\` and 1–6 hex digits (one following whitespace swallowed) is that
/// character's low byte (full-width ASCII mapped as in URL decoding); `\` before a newline is
/// dropped; `\` before anything else is that character.
fn css_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'\\' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        if i + 1 >= input.len() {
            // A lone trailing backslash is dropped.
            i += 1;
            continue;
        }
        let digits = input[i + 1..]
            .iter()
            .take(6)
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if digits > 0 {
            let text = std::str::from_utf8(&input[i + 1..i + 1 + digits]).unwrap_or("0");
            let value = u32::from_str_radix(text, 16).unwrap_or(0);
            let byte = if (0xff01..=0xff5e).contains(&value) {
                (value - 0xfee0) as u8
            } else {
                (value & 0xff) as u8
            };
            out.push(byte);
            i += 1 + digits;
            if i < input.len() && is_space(input[i]) {
                i += 1;
            }
        } else if input[i + 1] == b'\n' {
            i += 2;
        } else {
            out.push(input[i + 1]);
            i += 2;
        }
    }
    out
}

/// Windows and Unix command-line evasions, as ModSecurity does it: `\ " ' ^` deleted; a run
/// of space, tab, CR, LF, `,` and `;` becomes one space, which `/` or `(` right after removes;
/// everything else lower case.
fn cmd_line(input: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(input.len());
    let mut space = false;
    for &b in input {
        match b {
            b'\\' | b'"' | b'\'' | b'^' => {}
            b' ' | b',' | b';' | b'\t' | b'\r' | b'\n' => {
                if !space {
                    out.push(b' ');
                    space = true;
                }
            }
            b'/' | b'(' => {
                if space {
                    out.pop();
                }
                space = false;
                out.push(b);
            }
            _ => {
                out.push(b.to_ascii_lowercase());
                space = false;
            }
        }
    }
    out
}

fn compress_whitespace(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut in_space = false;
    for &b in input {
        if is_space(b) || b == 0xa0 {
            if !in_space {
                out.push(b' ');
            }
            in_space = true;
        } else {
            out.push(b);
            in_space = false;
        }
    }
    out
}

fn trim(input: &[u8], left: bool, right: bool) -> &[u8] {
    let mut s = input;
    if left {
        while let [first, rest @ ..] = s {
            if is_space(*first) {
                s = rest;
            } else {
                break;
            }
        }
    }
    if right {
        while let [rest @ .., last] = s {
            if is_space(*last) {
                s = rest;
            } else {
                break;
            }
        }
    }
    s
}

/// The index after the `/* … */` comment starting at `start` (the end for an unclosed one).
fn after_block_comment(input: &[u8], start: usize) -> usize {
    match input[start + 2..].windows(2).position(|w| w == b"*/") {
        Some(end) => start + 2 + end + 2,
        None => input.len(),
    }
}

/// `/* … */` becomes one space (an unterminated comment runs to the end).
fn replace_comments(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i..].starts_with(b"/*") {
            i = after_block_comment(input, i);
            out.push(b' ');
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    out
}

/// Comments removed: `/* … */` entirely; `--` or `#` outside one becomes a space and ends the
/// value (ModSecurity's behaviour).
fn remove_comments(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i..].starts_with(b"/*") {
            i = after_block_comment(input, i);
        } else if input[i..].starts_with(b"--") || input[i] == b'#' {
            out.push(b' ');
            break;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    out
}

/// The comment characters themselves removed: `/*`, `*/`, `--`, `#`.
fn remove_comments_char(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i..].starts_with(b"/*")
            || input[i..].starts_with(b"*/")
            || input[i..].starts_with(b"--")
        {
            i += 2;
        } else if input[i] == b'#' {
            i += 1;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    out
}

/// `.` and `..` segments resolved and repeated slashes collapsed (with `win`, backslashes
/// first become slashes). A relative path stays relative; `..` above the start is dropped.
fn normalize_path(input: &[u8], win: bool) -> Vec<u8> {
    let path: Cow<'_, [u8]> = if win {
        Cow::Owned(
            input
                .iter()
                .map(|&b| if b == b'\\' { b'/' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(input)
    };
    let absolute = path.first() == Some(&b'/');
    let trailing = path.last() == Some(&b'/')
        || path.ends_with(b"/.")
        || path.ends_with(b"/..")
        || path.as_ref() == b"."
        || path.as_ref() == b"..";
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in path.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            // A `..` with nothing left to climb stays in a relative path (as ModSecurity
            // keeps `../.history`) and disappears at the root of an absolute one.
            b".." => match segments.last() {
                Some(&last) if last != b".." => {
                    segments.pop();
                }
                _ if absolute => {}
                _ => segments.push(b".."),
            },
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    if absolute {
        out.push(b'/');
    }
    for (k, s) in segments.iter().enumerate() {
        if k > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(s);
    }
    if trailing && !segments.is_empty() {
        out.push(b'/');
    }
    out
}

/// Non-ASCII UTF-8 characters written as `%uHHHH` (as ModSecurity does; invalid sequences
/// are kept byte for byte).
fn utf8_to_unicode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    for chunk in input.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_ascii() {
                out.push(c as u8);
            } else {
                out.extend_from_slice(format!("%u{:04x}", u32::from(c) & 0xffff).as_bytes());
            }
        }
        out.extend_from_slice(chunk.invalid());
    }
    out
}

fn sha1_digest(input: &[u8]) -> Vec<u8> {
    use sha1::Digest;
    sha1::Sha1::digest(input).to_vec()
}

fn md5_digest(input: &[u8]) -> Vec<u8> {
    use md5::Digest;
    md5::Md5::digest(input).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Transform; 31] = {
        use Transform::*;
        [
            Base64Decode,
            Base64DecodeExt,
            CmdLine,
            CompressWhitespace,
            CssDecode,
            EscapeSeqDecode,
            HexDecode,
            HexEncode,
            HtmlEntityDecode,
            JsDecode,
            Length,
            Lowercase,
            Md5,
            NormalizePath,
            NormalizePathWin,
            RemoveComments,
            RemoveCommentsChar,
            RemoveNulls,
            RemoveWhitespace,
            ReplaceComments,
            ReplaceNulls,
            Sha1,
            SqlHexDecode,
            Trim,
            TrimLeft,
            TrimRight,
            Uppercase,
            UrlDecode,
            UrlDecodeUni,
            UrlEncode,
            Utf8ToUnicode,
        ]
    };

    #[test]
    fn every_transformation_is_listed_in_index_order() {
        for (i, t) in ALL.iter().enumerate() {
            assert_eq!(t.index(), i, "{}", t.name());
        }
    }

    fn t(name: &str, input: &[u8]) -> Vec<u8> {
        let transform = Transform::parse(name).unwrap_or_else(|| panic!("{name}"));
        transform.apply(input).unwrap_or_else(|| input.to_vec())
    }

    #[test]
    fn url_decoding() {
        assert_eq!(t("urlDecode", b"a%20b+c%2"), b"a b c%2");
        assert_eq!(t("urlDecode", b"%zz%41"), b"%zzA");
        assert_eq!(t("urlDecodeUni", b"%u0041%uff1c%u2215x"), b"A<\x15x");
        assert_eq!(t("urlDecodeUni", b"%u00zz"), b"%u00zz");
        assert_eq!(t("urlEncode", b"a b/c"), b"a+b%2fc");
    }

    #[test]
    fn js_and_escape_sequences() {
        assert_eq!(
            t("jsDecode", b"\\x41\\u0042\\uff1c\\101\\n\\q\\"),
            b"AB<A\nq\\"
        );
        assert_eq!(t("escapeSeqDecode", b"\\x41\\n\\101\\q\\\\"), b"A\nA\\q\\");
        assert_eq!(
            t("cssDecode", b"\\3c script\\\n\\z\\ff1c"),
            b"<script\nz<"
                .iter()
                .copied()
                .filter(|&c| c != b'\n')
                .collect::<Vec<u8>>()
        );
    }

    #[test]
    fn html_entities() {
        assert_eq!(
            t("htmlEntityDecode", b"&lt;a&#x3e;&#62&quot&amp;&bogus;&#;"),
            b"<a>>\"&&bogus;&#;"
        );
        assert_eq!(t("htmlEntityDecode", b"&nbsp;"), b"\xa0");
    }

    #[test]
    fn whitespace_and_comments() {
        assert_eq!(t("compressWhitespace", b"a \t\n\xa0b"), b"a b");
        assert_eq!(t("removeWhitespace", b" a\tb\xa0c "), b"abc");
        assert_eq!(t("replaceComments", b"a/*x*/b/*open"), b"a b ");
        assert_eq!(t("removeComments", b"a/*x*/b -- c\nd#e"), b"ab  ");
        assert_eq!(t("removeComments", b"x#y"), b"x ");
        assert_eq!(t("removeCommentsChar", b"a/*b*/c--d#e"), b"abcde");
        assert_eq!(t("trim", b"  a b \n"), b"a b");
        assert_eq!(t("trimLeft", b"  a "), b"a ");
        assert_eq!(t("trimRight", b"  a "), b"  a");
        assert_eq!(t("removeNulls", b"a\0b"), b"ab");
        assert_eq!(t("replaceNulls", b"a\0b"), b"a b");
    }

    #[test]
    fn command_lines() {
        assert_eq!(t("cmdLine", b" a ;b "), b" a b ");
        assert_eq!(
            t(
                "cmdLine",
                b"C^:\\Windows\\\"sys\"tem32 ,cmd.EXE /c  (dir;ls)"
            ),
            b"c:windowssystem32 cmd.exe/c(dir ls)"
        );
    }

    #[test]
    fn paths() {
        assert_eq!(t("normalizePath", b"/a/./b/../c//d/"), b"/a/c/d/");
        assert_eq!(t("normalizePath", b"a/../../etc/passwd"), b"../etc/passwd");
        assert_eq!(t("normalizePath", b"../.history"), b"../.history");
        assert_eq!(t("normalizePath", b"/../../etc/passwd"), b"/etc/passwd");
        assert_eq!(t("normalizePathWin", b"c:\\a\\..\\b"), b"c:/b");
    }

    #[test]
    fn encodings_and_digests() {
        assert_eq!(t("base64Decode", b"SGVsbG8=junk"), b"Hello");
        assert_eq!(t("base64Decode", b"SGV*sbG8"), b"He");
        assert_eq!(t("base64DecodeExt", b"SGV*sbG8"), b"Hello");
        assert_eq!(t("hexEncode", b"A\x01"), b"4101");
        assert_eq!(t("hexDecode", b"41420"), b"AB");
        assert_eq!(t("sqlHexDecode", b"x=0x414243 y"), b"x=ABC y");
        assert_eq!(t("length", b"abcd"), b"4");
        assert_eq!(t("lowercase", b"AbC"), b"abc");
        assert_eq!(t("uppercase", b"aBc"), b"ABC");
        assert_eq!(t("utf8toUnicode", "aé€".as_bytes()), b"a%u00e9%u20ac");
        assert_eq!(
            hex_encode(&t("sha1", b"abc")),
            b"a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex_encode(&t("md5", b"abc")),
            b"900150983cd24fb0d6963f7d28e17f72"
        );
    }

    #[test]
    fn names_parse_case_insensitively() {
        assert_eq!(
            Transform::parse("URLDECODEUNI"),
            Some(Transform::UrlDecodeUni)
        );
        assert_eq!(
            Transform::parse("base64decode"),
            Some(Transform::Base64Decode)
        );
        assert_eq!(Transform::parse("none"), None);
        assert_eq!(Transform::parse("bogus"), None);
        for name in ["urlDecodeUni", "cmdLine", "sha1", "utf8toUnicode"] {
            assert_eq!(Transform::parse(name).unwrap().name(), name);
        }
    }

    #[test]
    fn unchanged_input_is_not_copied() {
        assert_eq!(Transform::Lowercase.apply(b"abc"), None);
        let chain = [Transform::Lowercase, Transform::RemoveNulls];
        assert!(matches!(apply_all(b"abc", &chain), Cow::Borrowed(_)));
        assert_eq!(apply_all(b"A\0B", &chain).as_ref(), b"ab");
    }

    proptest! {
        #[test]
        fn transformations_never_panic(input in prop::collection::vec(any::<u8>(), 0..200)) {
            for name in ["base64Decode", "base64DecodeExt", "cmdLine", "compressWhitespace",
                "cssDecode", "escapeSeqDecode", "hexDecode", "hexEncode", "htmlEntityDecode",
                "jsDecode", "length", "lowercase", "md5", "normalizePath", "normalizePathWin",
                "removeComments", "removeCommentsChar", "removeNulls", "removeWhitespace",
                "replaceComments", "replaceNulls", "sha1", "sqlHexDecode", "trim", "trimLeft",
                "trimRight", "uppercase", "urlDecode", "urlDecodeUni", "urlEncode",
                "utf8toUnicode"] {
                let _ = t(name, &input);
            }
        }

        /// The quick scan never claims "unchanged" for an input the transformation changes.
        #[test]
        fn quick_scan_agrees_with_the_transformation(
            input in prop::collection::vec(prop::sample::select(
                b"aZ09 \t\n\r\x0b\x0c\xa0\x00%+&#;\\/*-'\"^,.()xXuU\xc3\xa9\xff".to_vec()), 0..24)
        ) {
            for transform in ALL {
                if transform.leaves_unchanged(&input) {
                    prop_assert_eq!(transform.apply_in_full(&input), None, "{}", transform.name());
                }
            }
        }

        #[test]
        fn decoding_never_grows(input in prop::collection::vec(any::<u8>(), 0..200)) {
            for name in ["urlDecode", "urlDecodeUni", "jsDecode", "cssDecode", "htmlEntityDecode",
                "escapeSeqDecode", "removeNulls", "removeWhitespace", "compressWhitespace",
                "replaceComments", "removeComments", "cmdLine", "normalizePath"] {
                prop_assert!(t(name, &input).len() <= input.len(), "{}", name);
            }
        }
    }
}

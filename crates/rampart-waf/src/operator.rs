//! Operators (`@rx`, `@pm`, `@eq`, …), compiled once per rule set and evaluated per value.
//!
//! Regular expressions are Rust's `regex` over bytes (linear time) with PCRE's byte semantics
//! as ModSecurity v3 sets them up: `.` matches any byte including newline, `^`/`$` match at
//! line boundaries, `\w`/`\d`/`\s` are ASCII classes. `@pm` phrase lists are Aho-Corasick
//! automata, case-insensitive as in ModSecurity. Operators whose argument holds a macro
//! (`@eq %{tx.limit}`) expand it at evaluation through the caller's expander.

use std::borrow::Cow;
use std::net::IpAddr;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::{Regex, RegexBuilder};

use crate::parser::Operator;

/// Compiled size allowed for one rule's regular expression.
const REGEX_SIZE_LIMIT: usize = 64 << 20;

/// Expands `%{…}` macros in operator arguments at evaluation time.
pub trait Expand {
    fn expand<'a>(&self, text: &'a str) -> Cow<'a, str>;
}

/// No macros: arguments are used as written.
pub struct NoMacros;

impl Expand for NoMacros {
    fn expand<'a>(&self, text: &'a str) -> Cow<'a, str> {
        Cow::Borrowed(text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compare {
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Text {
    StrEq,
    BeginsWith,
    EndsWith,
    Contains,
    ContainsWord,
    Within,
    StrMatch,
}

#[derive(Debug)]
enum Kind {
    /// A regex and its literal prefilter, if it has one.
    Rx(Regex, Option<Box<crate::prefilter::Prefilter>>),
    /// A pattern holding macros, compiled per evaluation.
    RxMacro(String, MacroRegexes),
    /// A pattern with look-around, which `regex` does not have: backtracking with a step
    /// limit, over the value read as UTF-8 (invalid bytes replaced). Only older rule sets
    /// need it (three patterns of CRS v3.3; none of v4).
    Backtracking(Box<fancy_regex::Regex>),
    Pm(AhoCorasick),
    Compare(Compare, String),
    Text(Text, String),
    ValidateByteRange(Box<[bool; 256]>),
    IpMatch(Box<rampart_firewall::IpSet>),
    ValidateUrlEncoding,
    ValidateUtf8Encoding,
    DetectSqli,
    DetectXss,
    Unconditional,
    NoMatch,
}

/// A compiled operator.
#[derive(Debug)]
pub struct CompiledOperator {
    kind: Kind,
    pub negated: bool,
    /// As written, for logs.
    pub name: String,
    pub argument: String,
}

/// What an operator found in one value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpMatch {
    /// The part of the value that matched (for `MATCHED_VAR` and logs).
    pub matched: Vec<u8>,
    /// Capture groups 0..=9 of `@rx` (for the `capture` action).
    pub captures: Vec<Vec<u8>>,
}

/// Reads a data file named by `@pmFromFile` / `@ipMatchFromFile`.
pub type DataResolver<'a> = dyn Fn(&str) -> Result<String, String> + 'a;

impl CompiledOperator {
    /// Compiles `op`; `data` reads the files that `…FromFile` operators name.
    pub fn compile(op: &Operator, data: &DataResolver<'_>) -> Result<CompiledOperator, String> {
        let arg = op.argument.as_str();
        let kind = match op.name.to_ascii_lowercase().as_str() {
            // A pattern with macros is built per transaction: the expanded text is regex syntax
            // (CRS v3.3 writes `^%{tx.allowed_request_content_type_charset}$` with `a|b|c`).
            "rx" if arg.contains("%{") => {
                compile_regex(&without_macros(arg))?;
                Kind::RxMacro(arg.to_string(), MacroRegexes::default())
            }
            "rx" => match compile_regex(arg) {
                Ok(re) => Kind::Rx(
                    re,
                    crate::prefilter::for_pattern(&pcre_bytes(arg)).map(Box::new),
                ),
                Err(e) if e.contains("look-around") => {
                    Kind::Backtracking(Box::new(compile_backtracking(arg)?))
                }
                Err(e) => return Err(e),
            },
            "pm" => Kind::Pm(phrases(
                arg.split_whitespace().map(str::to_string).collect(),
            )?),
            "pmf" | "pmfromfile" => {
                let mut list = Vec::new();
                for file in arg.split_whitespace() {
                    let text = data(file)?;
                    list.extend(
                        text.lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty() && !l.starts_with('#'))
                            .map(str::to_string),
                    );
                }
                Kind::Pm(phrases(list)?)
            }
            "eq" => Kind::Compare(Compare::Eq, arg.to_string()),
            "ge" => Kind::Compare(Compare::Ge, arg.to_string()),
            "gt" => Kind::Compare(Compare::Gt, arg.to_string()),
            "le" => Kind::Compare(Compare::Le, arg.to_string()),
            "lt" => Kind::Compare(Compare::Lt, arg.to_string()),
            "streq" => Kind::Text(Text::StrEq, arg.to_string()),
            "beginswith" => Kind::Text(Text::BeginsWith, arg.to_string()),
            "endswith" => Kind::Text(Text::EndsWith, arg.to_string()),
            "contains" => Kind::Text(Text::Contains, arg.to_string()),
            "containsword" => Kind::Text(Text::ContainsWord, arg.to_string()),
            "within" => Kind::Text(Text::Within, arg.to_string()),
            "strmatch" => Kind::Text(Text::StrMatch, arg.to_string()),
            "validatebyterange" => Kind::ValidateByteRange(byte_ranges(arg)?),
            "ipmatch" => Kind::IpMatch(Box::new(ip_list(arg.split(',').map(str::trim))?)),
            "ipmatchf" | "ipmatchfromfile" => {
                let text = data(arg.trim())?;
                Kind::IpMatch(Box::new(ip_list(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#')),
                )?))
            }
            "validateurlencoding" => Kind::ValidateUrlEncoding,
            "validateutf8encoding" => Kind::ValidateUtf8Encoding,
            "detectsqli" => Kind::DetectSqli,
            "detectxss" => Kind::DetectXss,
            "unconditionalmatch" => Kind::Unconditional,
            "nomatch" => Kind::NoMatch,
            // Lookups that need the network or a database are never true here.
            "geolookup" | "rbl" => Kind::NoMatch,
            other => return Err(format!("unknown operator \"@{other}\"")),
        };
        Ok(CompiledOperator {
            kind,
            negated: op.negated,
            name: op.name.clone(),
            argument: op.argument.clone(),
        })
    }

    /// Whether this operator needs the value at all (`@unconditionalMatch` does not).
    pub fn is_unconditional(&self) -> bool {
        matches!(self.kind, Kind::Unconditional)
    }

    /// Evaluates the operator on `value`, negation included. `Some` is a match.
    pub fn eval(&self, value: &[u8], macros: &dyn Expand) -> Option<OpMatch> {
        self.eval_with(value, macros, true)
    }

    /// As [`eval`](Self::eval); regex capture groups are collected only when `captures` is
    /// set (the rule has the `capture` action), which saves their allocation otherwise.
    pub fn eval_with(&self, value: &[u8], macros: &dyn Expand, captures: bool) -> Option<OpMatch> {
        self.eval_checked(value, macros, captures, false)
    }

    /// The required strings of a (not negated) `@rx` whose prefilter may be merged with other
    /// rules' (see [`crate::prefilter::MergedPrefilter`]).
    pub fn mergeable_prefilter(&self) -> Option<&[Vec<u8>]> {
        match &self.kind {
            Kind::Rx(_, Some(prefilter)) if !self.negated => Some(prefilter.literals()),
            _ => None,
        }
    }

    /// As [`eval_with`](Self::eval_with), for a value already known to pass the operator's
    /// own prefilter (through a merged one).
    pub fn eval_prefiltered(
        &self,
        value: &[u8],
        macros: &dyn Expand,
        captures: bool,
    ) -> Option<OpMatch> {
        self.eval_checked(value, macros, captures, true)
    }

    fn eval_checked(
        &self,
        value: &[u8],
        macros: &dyn Expand,
        captures: bool,
        prefiltered: bool,
    ) -> Option<OpMatch> {
        let found = self.eval_plain(value, macros, captures && !self.negated, prefiltered);
        match (found, self.negated) {
            (Some(m), false) => Some(m),
            (None, true) => Some(OpMatch {
                matched: value.to_vec(),
                captures: Vec::new(),
            }),
            _ => None,
        }
    }

    fn eval_plain(
        &self,
        value: &[u8],
        macros: &dyn Expand,
        captures: bool,
        prefiltered: bool,
    ) -> Option<OpMatch> {
        let whole = || OpMatch {
            matched: value.to_vec(),
            captures: Vec::new(),
        };
        match &self.kind {
            // None of the strings every match holds: the regex cannot match.
            Kind::Rx(_, Some(prefilter)) if !prefiltered && !prefilter.is_match(value) => None,
            Kind::Rx(re, _) if captures => regex_match(re, value),
            Kind::Rx(re, _) if self.negated => re.is_match(value).then(OpMatch::default),
            Kind::Rx(re, _) => re.find(value).map(|m| OpMatch {
                matched: m.as_bytes().to_vec(),
                captures: Vec::new(),
            }),
            Kind::RxMacro(pattern, compiled) => {
                regex_match(&*compiled.get(&macros.expand(pattern))?, value)
            }
            Kind::Backtracking(re) => {
                let text = String::from_utf8_lossy(value);
                // A pattern that runs out of steps does not match (and cannot stall).
                let caps = re.captures(&text).ok().flatten()?;
                let captures: Vec<Vec<u8>> = (0..caps.len().min(10))
                    .map(|k| {
                        caps.get(k)
                            .map(|m| m.as_str().as_bytes().to_vec())
                            .unwrap_or_default()
                    })
                    .collect();
                Some(OpMatch {
                    matched: captures.first().cloned().unwrap_or_default(),
                    captures,
                })
            }
            Kind::Pm(ac) => ac.find(value).map(|m| OpMatch {
                matched: value[m.start()..m.end()].to_vec(),
                captures: vec![value[m.start()..m.end()].to_vec()],
            }),
            Kind::Compare(cmp, arg) => {
                let expected = to_number(macros.expand(arg).as_bytes());
                let actual = to_number(value);
                let hit = match cmp {
                    Compare::Eq => actual == expected,
                    Compare::Ge => actual >= expected,
                    Compare::Gt => actual > expected,
                    Compare::Le => actual <= expected,
                    Compare::Lt => actual < expected,
                };
                hit.then(whole)
            }
            Kind::Text(kind, arg) => {
                let arg = macros.expand(arg);
                let needle = arg.as_bytes();
                let hit = match kind {
                    Text::StrEq => value == needle,
                    Text::BeginsWith => value.starts_with(needle),
                    Text::EndsWith => value.ends_with(needle),
                    Text::Contains => find(value, needle).is_some(),
                    Text::ContainsWord => contains_word(value, needle),
                    // The argument contains the value (a substring, as in ModSecurity).
                    Text::Within => !value.is_empty() && find(needle, value).is_some(),
                    Text::StrMatch => find(value, needle).is_some(),
                };
                hit.then(whole)
            }
            Kind::ValidateByteRange(allowed) => value
                .iter()
                .find(|&&b| !allowed[usize::from(b)])
                .map(|_| whole()),
            Kind::IpMatch(set) => std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.trim().parse::<IpAddr>().ok())
                .filter(|ip| set.contains(*ip))
                .map(|_| whole()),
            Kind::ValidateUrlEncoding => (!valid_url_encoding(value)).then(whole),
            Kind::ValidateUtf8Encoding => std::str::from_utf8(value).is_err().then(whole),
            // As ModSecurity: the SQL fingerprint is the matched data (and capture 0).
            Kind::DetectSqli => detect_sqli(value).map(|fingerprint| OpMatch {
                matched: fingerprint.clone(),
                captures: vec![fingerprint],
            }),
            Kind::DetectXss => detect_xss(value).then(whole),
            Kind::Unconditional => Some(whole()),
            Kind::NoMatch => None,
        }
    }
}

/// The regexes a pattern with macros expanded to, most recent last: the expansions are
/// nearly always the same few, and compiling a regex costs far more than matching it.
#[derive(Default)]
struct MacroRegexes(std::sync::Mutex<Vec<(String, std::sync::Arc<Regex>)>>);

impl std::fmt::Debug for MacroRegexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacroRegexes")
    }
}

impl MacroRegexes {
    const KEPT: usize = 8;

    fn get(&self, expanded: &str) -> Option<std::sync::Arc<Regex>> {
        if let Ok(kept) = self.0.lock()
            && let Some((_, re)) = kept.iter().find(|(p, _)| p == expanded)
        {
            return Some(std::sync::Arc::clone(re));
        }
        let re = std::sync::Arc::new(compile_regex(expanded).ok()?);
        if let Ok(mut kept) = self.0.lock() {
            if kept.len() >= Self::KEPT {
                kept.remove(0);
            }
            kept.push((expanded.to_string(), std::sync::Arc::clone(&re)));
        }
        Some(re)
    }
}

/// A regex match with up to ten capture groups (`TX:0`–`TX:9`).
fn regex_match(re: &Regex, value: &[u8]) -> Option<OpMatch> {
    // Most values do not match: the plain search is much cheaper than the capturing one.
    if !re.is_match(value) {
        return None;
    }
    let caps = re.captures(value)?;
    let captures: Vec<Vec<u8>> = caps
        .iter()
        .take(10)
        .map(|c| c.map(|m| m.as_bytes().to_vec()).unwrap_or_default())
        .collect();
    Some(OpMatch {
        matched: captures.first().cloned().unwrap_or_default(),
        captures,
    })
}

/// `text` with every `%{…}` macro replaced by a plain letter (to check a pattern's syntax).
fn without_macros(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("%{") {
        out.push_str(&rest[..at]);
        match rest[at..].find('}') {
            Some(end) => {
                out.push('x');
                rest = &rest[at + end + 1..];
            }
            None => {
                out.push_str(&rest[at..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// libinjection's SQL detector: the token fingerprint when the value reads as SQL injection.
/// The detector is a port of a C library; a fault in it must not take the request path down,
/// so a panic inside it counts as "no detection".
fn detect_sqli(value: &[u8]) -> Option<Vec<u8>> {
    std::panic::catch_unwind(|| {
        let result = libinjectionrs::detect_sqli(value);
        result
            .is_injection()
            .then(|| result.fingerprint.map(|f| f.as_str().as_bytes().to_vec()))
            .map(Option::unwrap_or_default)
    })
    .ok()
    .flatten()
}

/// libinjection's XSS detector (HTML5 tokenizer in the contexts a value may land in).
fn detect_xss(value: &[u8]) -> bool {
    std::panic::catch_unwind(|| libinjectionrs::detect_xss(value).is_injection()).unwrap_or(false)
}

/// A rule's regular expression as ModSecurity v3 compiles it for PCRE (see the module docs).
pub fn compile_regex(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(&pcre_bytes(pattern))
        .unicode(false)
        .dot_matches_new_line(true)
        .multi_line(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let text = e.to_string();
            let reason = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .trim_start_matches("error: ")
                .to_string();
            format!("invalid regular expression: {reason}")
        })
}

/// Writes a PCRE pattern (as PCRE reads it without UTF mode: the pattern is bytes) in the
/// `regex` crate's byte syntax:
/// - inside a character class a non-ASCII character stands for each of its UTF-8 bytes, a `[`
///   is literal (unless it opens `[:posix:]`), and escaped punctuation is written as a byte;
/// - `\x{HH}` is `\xHH`;
/// - a `{` that does not start a valid `{n}`, `{n,}` or `{n,m}` is literal, as in PCRE;
/// - escaped punctuation that `regex` reads differently (`\<`, `\>` are word boundaries there)
///   or does not accept is written as a byte.
pub fn pcre_bytes(pattern: &str) -> Cow<'_, str> {
    let needs = !pattern.is_ascii()
        || pattern.contains("\\x{")
        || pattern.contains('{')
        || pattern.contains('[')
        || pattern.contains("\\<")
        || pattern.contains("\\>");
    if !needs {
        return Cow::Borrowed(pattern);
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 16);
    let byte = |out: &mut String, b: u8| out.push_str(&format!("\\x{b:02X}"));
    let mut in_class = false;
    // Whether the last thing written can take a quantifier.
    let mut quantifiable = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() {
            let n = chars[i + 1];
            if n == 'x' && chars.get(i + 2) == Some(&'{') {
                let close = chars[i + 3..].iter().position(|&d| d == '}');
                if let Some(len) = close {
                    let hex: String = chars[i + 3..i + 3 + len].iter().collect();
                    if let Ok(v) = u32::from_str_radix(&hex, 16)
                        && v <= 0xff
                    {
                        byte(&mut out, v as u8);
                        i += 3 + len + 1;
                        quantifiable = true;
                        continue;
                    }
                }
            }
            let plain_meta = matches!(
                n,
                '\\' | '.'
                    | '+'
                    | '*'
                    | '?'
                    | '('
                    | ')'
                    | '|'
                    | '['
                    | ']'
                    | '{'
                    | '}'
                    | '^'
                    | '$'
                    | '#'
                    | '&'
                    | '-'
                    | '~'
            );
            if n.is_ascii_punctuation() && (in_class || !plain_meta) {
                byte(&mut out, n as u8);
            } else {
                out.push(c);
                out.push(n);
            }
            i += 2;
            quantifiable = true;
            continue;
        }
        if in_class {
            if c == '[' && chars.get(i + 1) == Some(&':') {
                let rest: String = chars[i..].iter().collect();
                if let Some(end) = rest.find(":]") {
                    let len = rest[..end + 2].chars().count();
                    out.extend(&chars[i..i + len]);
                    i += len;
                    continue;
                }
            }
            match c {
                ']' => {
                    in_class = false;
                    quantifiable = true;
                    out.push(c);
                }
                '[' => out.push_str("\\["),
                c if c.is_ascii() => out.push(c),
                c => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        byte(&mut out, b);
                    }
                }
            }
            i += 1;
            continue;
        }
        match c {
            '[' => {
                out.push(c);
                i += 1;
                in_class = true;
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
                continue;
            }
            '{' => {
                let rest: String = chars[i..].iter().take(24).collect();
                let valid = quantifiable && valid_repetition(&rest);
                if valid {
                    out.push('{');
                } else {
                    out.push_str("\\{");
                    quantifiable = true;
                }
            }
            '}' => {
                // A `}` closing a valid repetition was written with it; a lone one is literal.
                out.push_str("\\}");
                quantifiable = true;
            }
            '(' | '|' => {
                out.push(c);
                quantifiable = false;
            }
            _ => {
                out.push(c);
                quantifiable = !matches!(c, '^');
            }
        }
        // A valid repetition is copied whole, so its `}` is not escaped above.
        if c == '{' && out.ends_with('{') && !out.ends_with("\\{") {
            let rest: String = chars[i + 1..].iter().collect();
            let end = rest.find('}').unwrap_or(0);
            out.push_str(&rest[..=end]);
            i += 1 + rest[..=end].chars().count();
            continue;
        }
        i += 1;
    }
    Cow::Owned(out)
}

/// Whether `text` starts with a PCRE repetition: `{n}`, `{n,}` or `{n,m}`.
fn valid_repetition(text: &str) -> bool {
    let Some(body) = text.strip_prefix('{') else {
        return false;
    };
    let Some(end) = body.find('}') else {
        return false;
    };
    let inner = &body[..end];
    let (min, max) = match inner.split_once(',') {
        Some((a, b)) => (a, Some(b)),
        None => (inner, None),
    };
    !min.is_empty()
        && min.bytes().all(|b| b.is_ascii_digit())
        && max.is_none_or(|m| m.bytes().all(|b| b.is_ascii_digit()))
}

/// Backtracking steps allowed per evaluation of a look-around pattern.
const BACKTRACK_LIMIT: usize = 100_000;

fn compile_backtracking(pattern: &str) -> Result<fancy_regex::Regex, String> {
    fancy_regex::RegexBuilder::new(&format!("(?sm){pattern}"))
        .backtrack_limit(BACKTRACK_LIMIT)
        .build()
        .map_err(|e| format!("invalid regular expression: {e}"))
}

fn phrases(list: Vec<String>) -> Result<AhoCorasick, String> {
    if list.is_empty() {
        return Err("@pm needs at least one phrase".into());
    }
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(&list)
        .map_err(|e| format!("phrase list: {e}"))
}

/// `@validateByteRange 1-255` or `9,10,13,32-126`.
fn byte_ranges(arg: &str) -> Result<Box<[bool; 256]>, String> {
    let mut allowed = Box::new([false; 256]);
    for part in arg.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let parse = |s: &str| {
            s.parse::<u8>()
                .map_err(|_| format!("invalid byte \"{s}\" in @validateByteRange (0-255)"))
        };
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if lo > hi {
            return Err(format!("empty byte range \"{part}\""));
        }
        for b in lo..=hi {
            allowed[usize::from(b)] = true;
        }
    }
    Ok(allowed)
}

fn ip_list<'a>(items: impl Iterator<Item = &'a str>) -> Result<rampart_firewall::IpSet, String> {
    let mut set = rampart_firewall::IpSet::new();
    for item in items.filter(|i| !i.is_empty()) {
        // ModSecurity accepts networks with host bits set; so does the rule language here.
        let net = match item.parse::<ipnet::IpNet>() {
            Ok(net) => net.trunc(),
            Err(_) => rampart_firewall::parse_network(item)?,
        };
        set.insert(net);
    }
    if set.is_empty() {
        return Err("@ipMatch needs at least one address".into());
    }
    Ok(set)
}

/// ModSecurity's string-to-number: leading whitespace and sign, then digits; anything else
/// ends the number (no digits at all is 0).
pub(crate) fn to_number(value: &[u8]) -> i64 {
    let text = std::str::from_utf8(value).unwrap_or("").trim_start();
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let mut n: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        n = n.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if negative { -n } else { n }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn contains_word(hay: &[u8], word: &[u8]) -> bool {
    if word.is_empty() {
        return true;
    }
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut from = 0;
    while let Some(at) = find(&hay[from..], word) {
        let start = from + at;
        let end = start + word.len();
        let before = start == 0 || !is_word(hay[start - 1]);
        let after = end == hay.len() || !is_word(hay[end]);
        if before && after {
            return true;
        }
        from = start + 1;
    }
    false
}

/// `%` must be followed by two hex digits everywhere.
fn valid_url_encoding(value: &[u8]) -> bool {
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'%' {
            if i + 2 >= value.len()
                || !value[i + 1].is_ascii_hexdigit()
                || !value[i + 2].is_ascii_hexdigit()
            {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse_operator;

    fn op(text: &str) -> CompiledOperator {
        let files = |name: &str| match name {
            "words.data" => Ok("# comment\nunion select\n\n  sleep(\n".to_string()),
            "ips.data" => Ok("10.0.0.0/8\n192.0.2.7\n".to_string()),
            other => Err(format!("no data file {other}")),
        };
        CompiledOperator::compile(&parse_operator(text).unwrap(), &files).unwrap()
    }

    fn hit(text: &str, value: &[u8]) -> bool {
        op(text).eval(value, &NoMacros).is_some()
    }

    struct Tx;
    impl Expand for Tx {
        fn expand<'a>(&self, text: &'a str) -> Cow<'a, str> {
            Cow::Owned(
                text.replace("%{tx.limit}", "5")
                    .replace("%{tx.methods}", "GET HEAD POST")
                    .replace("%{tx.charsets}", "utf-8|iso-8859-1"),
            )
        }
    }

    #[test]
    fn regexes_have_pcre_byte_semantics() {
        assert!(hit("@rx ^a.b$", b"x\na\nb"));
        assert!(hit("@rx (?i)select\\s", b"SeLeCt\t1"));
        assert!(!hit("@rx ^\\w+$", "é".as_bytes()), "\\w is ASCII");
        assert!(hit("@rx \\xff", b"a\xffb"));
        let m = op("@rx (a+)(b)?").eval(b"xaab", &NoMacros).unwrap();
        assert_eq!(
            m.captures,
            vec![b"aab".to_vec(), b"aa".to_vec(), b"b".to_vec()]
        );
        assert!(hit("!@rx ^GET$", b"POST"));
        assert!(!hit("!@rx ^GET$", b"GET"));
    }

    #[test]
    fn pcre_patterns_become_byte_patterns() {
        assert_eq!(pcre_bytes(r"[\x7f-\x{ff}]"), r"[\x7f-\xFF]");
        assert_eq!(
            pcre_bytes(r"a{2,3}b{x}(?:{|c)\d{1,10}"),
            r"a{2,3}b\{x\}(?:\{|c)\d{1,10}"
        );
        assert_eq!(pcre_bytes(r"{{.*?}}"), r"\{\{.*?\}\}");
        assert_eq!(pcre_bytes(r"[([]*?x[^\<\>\~]"), r"[(\[]*?x[^\x3C\x3E\x7E]");
        assert_eq!(pcre_bytes(r"\<a\>\.\("), r"\x3Ca\x3E\.\(");
        assert!(hit(r"@rx ^\(\s*\)\s+{", b"() {"));
        assert!(hit(r"@rx [?![\x5c\]{}]+", b"a[b"));
        // Look-around (CRS v3.3 only) runs with a step limit.
        assert!(hit(r"@rx <\?(?!xml)", b"<?php"));
        assert!(!hit(r"@rx <\?(?!xml)", b"<?xml"));
        assert!(
            !hit(r"@rx (?=(a+)+b)", &[b'a'; 40]),
            "runs out of steps, no match"
        );
        assert_eq!(pcre_bytes("[a¢]"), r"[a\xC2\xA2]");
        assert_eq!(pcre_bytes("x¢[^]é]"), r"x¢[^\]\xC3\xA9]");
        assert_eq!(pcre_bytes("[[:alpha:]é]"), r"[[:alpha:]\xC3\xA9]");
        assert_eq!(pcre_bytes(r"\[é\]"), r"\[é\]");
        assert!(hit(r"@rx [\x7f-\x{ff}]", b"a\xe9"));
        assert!(
            hit("@rx ^[¢]$", b"\xa2"),
            "a class holds each byte of a non-ASCII character"
        );
    }

    #[test]
    fn injection_detectors() {
        let m = op("@detectSQLi").eval(b"1' OR '1'='1", &NoMacros).unwrap();
        assert!(!m.matched.is_empty(), "the fingerprint is the matched data");
        assert_eq!(m.captures, vec![m.matched.clone()]);
        assert!(hit("@detectSQLi", b"1 UNION SELECT password FROM users--"));
        assert!(!hit("@detectSQLi", b"hello world"));
        assert!(!hit("@detectSQLi", b"O'Reilly Media"));
        assert!(hit("@detectXSS", b"<script>alert(1)</script>"));
        assert!(hit("@detectXSS", b"<img src=x onerror=alert(1)>"));
        assert!(!hit("@detectXSS", b"5 < 6 and 7 > 2"));
        assert!(!hit("@detectXSS", "naïve café".as_bytes()));
    }

    #[test]
    fn phrase_lists() {
        assert!(hit("@pm foo bar", b"xxBARxx"));
        assert!(!hit("@pm foo bar", b"baz"));
        assert!(hit("@pmFromFile words.data", b"1 UNION SELECT 2"));
        assert!(hit("@pmf words.data", b"SLEEP(5)"));
        let files = |_: &str| -> Result<String, String> { Err("no such file".into()) };
        let e = CompiledOperator::compile(&parse_operator("@pmFromFile x.data").unwrap(), &files)
            .unwrap_err();
        assert_eq!(e, "no such file");
    }

    #[test]
    fn numbers_and_strings() {
        assert!(hit("@eq 0", b""));
        assert!(hit("@eq 3", b"3abc"));
        assert!(hit("@gt 2", b"  10"));
        assert!(hit("@lt 0", b"-1"));
        assert!(!hit("@ge 5", b"4"));
        assert!(op("@gt %{tx.limit}").eval(b"6", &Tx).is_some());
        assert!(op("@within %{tx.methods}").eval(b"HEAD", &Tx).is_some());
        assert!(op("@within %{tx.methods}").eval(b"PUT", &Tx).is_none());
        let charset = op("!@rx ^%{tx.charsets}$");
        assert!(
            charset.eval(b"iso-8859-1", &Tx).is_none(),
            "the expansion is regex syntax"
        );
        assert!(charset.eval(b"utf-7", &Tx).is_some());
        assert!(
            CompiledOperator::compile(&parse_operator("@rx ^%{tx.a}(").unwrap(), &|_: &str| Err(
                String::new()
            ))
            .is_err()
        );
        assert!(
            !hit("@within GET POST", b""),
            "an empty value is never within"
        );
        assert!(hit("@streq abc", b"abc"));
        assert!(hit("@beginsWith /adm", b"/admin"));
        assert!(hit("@endsWith .php", b"/x.php"));
        assert!(hit("@contains ../", b"/a/../b"));
        assert!(hit("@containsWord select", b"1 select 2"));
        assert!(!hit("@containsWord select", b"selection"));
    }

    #[test]
    fn validations_and_addresses() {
        assert!(hit("@validateByteRange 32-126", b"ok\x01"));
        assert!(!hit("@validateByteRange 9,10,13,32-126", b"a b\tc\n"));
        assert!(hit("@validateUrlEncoding", b"a%zz"));
        assert!(hit("@validateUrlEncoding", b"a%4"));
        assert!(!hit("@validateUrlEncoding", b"a%41b"));
        assert!(hit("@validateUtf8Encoding", b"a\xc3"));
        assert!(!hit("@validateUtf8Encoding", "é".as_bytes()));
        assert!(hit("@ipMatch 127.0.0.1,10.0.0.0/8", b"10.1.2.3"));
        assert!(!hit("@ipMatch 127.0.0.1", b"127.0.0.2"));
        assert!(hit("@ipMatchFromFile ips.data", b"192.0.2.7"));
        assert!(hit("@unconditionalMatch", b""));
        assert!(!hit("@noMatch", b"x"));
    }

    #[test]
    fn bad_operators_are_named() {
        let none = |_: &str| -> Result<String, String> { Err("none".into()) };
        let compile =
            |t: &str| CompiledOperator::compile(&parse_operator(t).unwrap(), &none).unwrap_err();
        assert_eq!(compile("@bogus x"), "unknown operator \"@bogus\"");
        assert!(compile("@rx (").starts_with("invalid regular expression"));
        assert!(compile("@validateByteRange 5-300").contains("invalid byte"));
        assert!(compile("@validateByteRange 9-1").contains("empty byte range"));
        assert!(compile("@ipMatch nope").contains("not an IPv4 or IPv6 address"));
        assert!(compile("@pm").contains("at least one phrase"));
    }
}

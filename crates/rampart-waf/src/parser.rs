//! SecLang text → directives, and the three parts of a rule (variables, operator, actions).
//!
//! A directive is a name and whitespace-separated arguments on one logical line: a line that
//! ends with `\` continues on the next one, and a line whose first non-blank character is `#`
//! is a comment. An argument may be double-quoted (`\"` inside stands for `"`; every other
//! backslash is kept, so regular expressions keep theirs) or single-quoted the same way.
//!
//! Rule parts follow ModSecurity v3's grammar as the Core Rule Set uses it:
//! - variables: `ARGS|!ARGS:foo|&TX:score|REQUEST_COOKIES:/^sess/|XML:/*`, separated by `|`
//!   outside a `/regex/` key;
//! - operator: `[!]@name argument`; text without `@` is a regular expression (`@rx`);
//! - actions: `name` or `name:value`, separated by `,` outside `'single quotes'`; a quoted value
//!   loses its quotes (`\'` inside stands for `'`).

use std::fmt;
use std::sync::Arc;

/// Where a directive starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: Arc<str>,
    /// 1-based line of the directive's first line.
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One directive with its arguments, quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub origin: Origin,
}

/// A rule file that cannot be read: where, which rule (when its id is known), and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub origin: Origin,
    pub rule_id: Option<String>,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule_id {
            Some(id) => write!(f, "{}: rule {id}: {}", self.origin, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

/// Longest logical line (a directive with its continuations) accepted.
pub const MAX_DIRECTIVE_BYTES: usize = 1 << 20;

/// Splits rule text into directives. Nothing is returned on error: a file is read whole or
/// not at all.
pub fn split_directives(text: &str, file: &str) -> Result<Vec<Directive>, ParseError> {
    let file: Arc<str> = Arc::from(file);
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut start_line = 0;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if logical.is_empty() {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            start_line = line_no;
        }
        let (content, continues) = match line.strip_suffix('\\') {
            Some(head) => (head, true),
            None => (line, false),
        };
        logical.push_str(content);
        if logical.len() > MAX_DIRECTIVE_BYTES {
            return Err(ParseError {
                origin: Origin {
                    file: file.clone(),
                    line: start_line,
                },
                rule_id: None,
                message: format!("directive longer than {MAX_DIRECTIVE_BYTES} bytes"),
            });
        }
        if continues {
            continue;
        }
        let origin = Origin {
            file: file.clone(),
            line: start_line,
        };
        let words = split_args(&logical).map_err(|message| ParseError {
            origin: origin.clone(),
            rule_id: rule_id_hint(&logical),
            message,
        })?;
        logical.clear();
        let mut words = words.into_iter();
        if let Some(name) = words.next() {
            out.push(Directive {
                name,
                args: words.collect(),
                origin,
            });
        }
    }
    if !logical.is_empty() {
        return Err(ParseError {
            origin: Origin {
                file,
                line: start_line,
            },
            rule_id: rule_id_hint(&logical),
            message: "the file ends inside a continued line (a trailing backslash)".into(),
        });
    }
    Ok(out)
}

/// The `id:` in a directive's text, for error messages about a directive that did not parse.
fn rule_id_hint(text: &str) -> Option<String> {
    let at = text.find("id:")?;
    let id: String = text[at + 3..]
        .trim_start_matches(['\'', ' '])
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    (!id.is_empty()).then_some(id)
}

/// Whitespace-separated words; quoted words lose their quotes, `\<quote>` inside stands for
/// the quote.
fn split_args(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '"' || c == '\'' {
            chars.next();
            let mut word = String::new();
            let mut closed = false;
            while let Some((_, d)) = chars.next() {
                if d == '\\' && chars.peek().is_some_and(|&(_, e)| e == c) {
                    word.push(c);
                    chars.next();
                } else if d == c {
                    closed = true;
                    break;
                } else {
                    word.push(d);
                }
            }
            if !closed {
                return Err(format!(
                    "unterminated {} quote starting at column {}",
                    if c == '"' { "double" } else { "single" },
                    at + 1
                ));
            }
            out.push(word);
        } else {
            let mut word = String::new();
            while let Some(&(_, d)) = chars.peek() {
                if d.is_whitespace() {
                    break;
                }
                word.push(d);
                chars.next();
            }
            out.push(word);
        }
    }
    Ok(out)
}

/// One action of a rule: `name` or `name:value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub name: String,
    pub value: Option<String>,
}

/// Parses an action list (`"id:1,phase:2,t:none,msg:'a, b'"` without the outer quotes).
pub fn parse_actions(text: &str) -> Result<Vec<Action>, String> {
    let mut out = Vec::new();
    let mut item = String::new();
    let mut in_quote = false;
    let mut chars = text.chars().peekable();
    let flush = |item: &mut String, out: &mut Vec<Action>| -> Result<(), String> {
        let raw = item.trim();
        if raw.is_empty() {
            item.clear();
            return Ok(());
        }
        let (name, value) = match raw.split_once(':') {
            Some((n, v)) => (n.trim(), Some(unquote_value(v.trim())?)),
            None => (raw, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid action name \"{name}\""));
        }
        out.push(Action {
            name: name.to_string(),
            value,
        });
        item.clear();
        Ok(())
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_quote && chars.peek() == Some(&'\'') => {
                item.push('\\');
                item.push('\'');
                chars.next();
            }
            '\'' => {
                in_quote = !in_quote;
                item.push(c);
            }
            ',' if !in_quote => flush(&mut item, &mut out)?,
            _ => item.push(c),
        }
    }
    if in_quote {
        return Err(format!("unterminated single quote in actions \"{text}\""));
    }
    flush(&mut item, &mut out)?;
    Ok(out)
}

/// An action value without its single quotes (`\'` inside stands for `'`).
fn unquote_value(value: &str) -> Result<String, String> {
    match value.strip_prefix('\'') {
        None => Ok(value.to_string()),
        Some(rest) => match rest.strip_suffix('\'') {
            Some(inner) => Ok(inner.replace("\\'", "'")),
            None => Err(format!(
                "action value {value} has text after its closing quote"
            )),
        },
    }
}

/// The key of a variable: a name, or a regular expression between slashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariableKey {
    Name(String),
    Regex(KeyPattern),
}

/// A `/regex/` key, compiled once (case-insensitive, as ModSecurity matches keys).
#[derive(Clone)]
pub struct KeyPattern {
    pub source: String,
    regex: regex::bytes::Regex,
}

impl KeyPattern {
    pub fn new(source: &str) -> Result<KeyPattern, String> {
        let regex = crate::operator::compile_regex(&format!("(?i){source}"))
            .map_err(|e| format!("key /{source}/: {e}"))?;
        Ok(KeyPattern {
            source: source.to_string(),
            regex,
        })
    }

    pub fn is_match(&self, key: &str) -> bool {
        self.regex.is_match(key.as_bytes())
    }
}

impl PartialEq for KeyPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for KeyPattern {}

impl std::fmt::Debug for KeyPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}/", self.source)
    }
}

/// One entry of a rule's variable list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableSpec {
    /// Upper-case collection or variable name (`ARGS`, `REQUEST_HEADERS`, `TX`, …).
    pub name: String,
    pub key: Option<VariableKey>,
    /// `&`: the number of matching values instead of the values.
    pub count: bool,
    /// `!`: removes the keyed value from the rule's targets.
    pub exclude: bool,
}

/// Parses a variable list (`ARGS|!ARGS:foo|&TX:x|REQUEST_COOKIES:/^s/`).
pub fn parse_variables(text: &str) -> Result<Vec<VariableSpec>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && (chars[i] == '|' || chars[i].is_whitespace()) {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let (mut exclude, mut count) = (false, false);
        match chars[i] {
            '!' => {
                exclude = true;
                i += 1;
            }
            '&' => {
                count = true;
                i += 1;
            }
            _ => {}
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        let name: String = chars[start..i]
            .iter()
            .collect::<String>()
            .to_ascii_uppercase();
        if name.is_empty() {
            return Err(format!(
                "expected a variable name at \"{}\"",
                tail(&chars, start)
            ));
        }
        let mut key = None;
        if i < chars.len() && chars[i] == ':' {
            i += 1;
            if i < chars.len() && chars[i] == '/' && name != "XML" {
                i += 1;
                let mut regex = String::new();
                let mut closed = false;
                while i < chars.len() {
                    if chars[i] == '\\' && i + 1 < chars.len() && chars[i + 1] == '/' {
                        regex.push('/');
                        i += 2;
                        continue;
                    }
                    if chars[i] == '/' {
                        closed = true;
                        i += 1;
                        break;
                    }
                    regex.push(chars[i]);
                    i += 1;
                }
                if !closed {
                    return Err(format!("unterminated /regex/ key of {name}"));
                }
                key = Some(VariableKey::Regex(KeyPattern::new(&regex)?));
            } else if i < chars.len() && chars[i] == '\'' {
                i += 1;
                let begin = i;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(format!("unterminated quoted key of {name}"));
                }
                key = Some(VariableKey::Name(chars[begin..i].iter().collect()));
                i += 1;
            } else {
                let begin = i;
                while i < chars.len() && chars[i] != '|' {
                    i += 1;
                }
                let k: String = chars[begin..i]
                    .iter()
                    .collect::<String>()
                    .trim()
                    .to_string();
                if k.is_empty() {
                    return Err(format!("empty key after {name}:"));
                }
                key = Some(VariableKey::Name(k));
            }
        }
        if i < chars.len() && chars[i] != '|' && !chars[i].is_whitespace() {
            return Err(format!(
                "unexpected \"{}\" after variable {name}",
                tail(&chars, i)
            ));
        }
        // TX keys are case-insensitive and the engine keeps them lower-cased.
        if name == "TX"
            && let Some(VariableKey::Name(k)) = &mut key
        {
            *k = k.to_ascii_lowercase();
        }
        out.push(VariableSpec {
            name,
            key,
            count,
            exclude,
        });
    }
    if out.is_empty() {
        return Err("no variables".into());
    }
    Ok(out)
}

fn tail(chars: &[char], from: usize) -> String {
    chars[from..].iter().take(24).collect()
}

/// A rule's operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// Without the `@` (`rx`, `pm`, `eq`, …).
    pub name: String,
    pub argument: String,
    pub negated: bool,
}

/// Parses an operator (`"!@rx ^a"`, `"@eq 0"`, `"^a"` for `@rx ^a`).
pub fn parse_operator(text: &str) -> Result<Operator, String> {
    let trimmed = text.trim_start();
    let (negated, rest) = match trimmed.strip_prefix('!') {
        Some(r) => (true, r.trim_start()),
        None => (false, trimmed),
    };
    match rest.strip_prefix('@') {
        None => Ok(Operator {
            name: "rx".into(),
            argument: rest.to_string(),
            negated,
        }),
        Some(body) => {
            let end = body.find(char::is_whitespace).unwrap_or(body.len());
            let name = &body[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!("invalid operator \"@{name}\""));
            }
            let argument = body[end..]
                .strip_prefix(|c: char| c.is_whitespace())
                .unwrap_or("");
            Ok(Operator {
                name: name.to_string(),
                argument: argument.to_string(),
                negated,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn directives_with_continuations_quotes_and_comments() {
        let text = "# comment\n\nSecRuleEngine DetectionOnly\r\n  # indented comment\n\
                    SecRule REQUEST_HEADERS:Content-Type \"!@rx ^[\\w/]+['\\\"\\w]*$\" \\\n    \"id:920470,\\\n    phase:1,\\\n    msg:'Illegal, \\'type\\''\"\n\
                    SecMarker 'END-X'\n";
        let d = split_directives(text, "t.conf").unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(
            (d[0].name.as_str(), d[0].args.as_slice(), d[0].origin.line),
            ("SecRuleEngine", &["DetectionOnly".to_string()][..], 3)
        );
        assert_eq!(d[1].origin.line, 5);
        assert_eq!(d[1].args[1], "!@rx ^[\\w/]+['\"\\w]*$");
        assert_eq!(
            d[1].args[2],
            "id:920470,    phase:1,    msg:'Illegal, \\'type\\''"
        );
        assert_eq!(d[2].args, vec!["END-X"]);
        let actions = parse_actions(&d[1].args[2]).unwrap();
        assert_eq!(actions.len(), 3);
        assert_eq!(
            actions[2],
            Action {
                name: "msg".into(),
                value: Some("Illegal, 'type'".into())
            }
        );
    }

    #[test]
    fn errors_name_the_line_and_rule() {
        let e = split_directives("SecAction \\\n \"id:900100,\\\n  pass\\", "a.conf").unwrap_err();
        assert_eq!(
            e.to_string(),
            "a.conf:1: rule 900100: the file ends inside a continued line (a trailing backslash)"
        );
        let e = split_directives("\n\nSecRule ARGS \"@rx a\" \"id:12,deny", "b.conf").unwrap_err();
        assert_eq!(e.origin.line, 3);
        assert_eq!(e.rule_id.as_deref(), Some("12"));
        assert!(e.message.contains("unterminated double quote"), "{e}");
    }

    #[test]
    fn actions() {
        let a = parse_actions("id:1, phase:2,t:none,t:lowercase,setvar:'tx.score=+%{tx.critical_anomaly_score}',nolog,ctl:ruleRemoveTargetById=942100;ARGS:pwd").unwrap();
        let names: Vec<&str> = a.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["id", "phase", "t", "t", "setvar", "nolog", "ctl"]);
        assert_eq!(
            a[4].value.as_deref(),
            Some("tx.score=+%{tx.critical_anomaly_score}")
        );
        assert_eq!(
            a[6].value.as_deref(),
            Some("ruleRemoveTargetById=942100;ARGS:pwd")
        );
        assert!(parse_actions("msg:'open").is_err());
        assert!(parse_actions("id:1,bad name").is_err());
        assert!(parse_actions("msg:'a'b").is_err());
        assert_eq!(parse_actions(" , ,").unwrap(), vec![]);
    }

    #[test]
    fn variables() {
        let v = parse_variables("REQUEST_COOKIES|!REQUEST_COOKIES:/__utm/|&TX:x|ARGS_NAMES|xml:/*|REQUEST_HEADERS:'User-Agent'").unwrap();
        assert_eq!(v.len(), 6);
        assert_eq!(
            v[1],
            VariableSpec {
                name: "REQUEST_COOKIES".into(),
                key: Some(VariableKey::Regex(KeyPattern::new("__utm").unwrap())),
                count: false,
                exclude: true
            }
        );
        assert!(v[2].count);
        // XML keys are XPath expressions, not regexes.
        assert_eq!(v[4].key, Some(VariableKey::Name("/*".into())));
        assert_eq!(v[5].key, Some(VariableKey::Name("User-Agent".into())));
        let v = parse_variables("ARGS:/^(a|b)$/|ARGS_GET:x/y").unwrap();
        assert_eq!(
            v[0].key,
            Some(VariableKey::Regex(KeyPattern::new("^(a|b)$").unwrap()))
        );
        assert!(
            v[0].key
                .as_ref()
                .is_some_and(|k| matches!(k, VariableKey::Regex(p) if p.is_match("B")))
        );
        assert!(parse_variables("ARGS:/(/").unwrap_err().contains("key /(/"));
        assert_eq!(v[1].key, Some(VariableKey::Name("x/y".into())));
        assert!(parse_variables("ARGS:/open").is_err());
        assert!(parse_variables("|").is_err());
        assert!(parse_variables("ARGS:").is_err());
        assert!(parse_variables("!").is_err());
    }

    #[test]
    fn operators() {
        assert_eq!(
            parse_operator("!@rx ^a b").unwrap(),
            Operator {
                name: "rx".into(),
                argument: "^a b".into(),
                negated: true
            }
        );
        assert_eq!(parse_operator("@eq 0").unwrap().argument, "0");
        assert_eq!(parse_operator("@unconditionalMatch").unwrap().argument, "");
        assert_eq!(
            parse_operator("^GET$").unwrap(),
            Operator {
                name: "rx".into(),
                argument: "^GET$".into(),
                negated: false
            }
        );
        assert!(parse_operator("@r-x a").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(text in "(?s).{0,300}") {
            let _ = split_directives(&text, "f");
            let _ = parse_actions(&text);
            let _ = parse_variables(&text);
            let _ = parse_operator(&text);
        }
    }
}

//! The `[waf]` section: rule sets (SecLang files) and the audit log.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::FieldPath;
use crate::raw::RawWaf;
use crate::snapshot::AccessLog;
use crate::validate::{Ctx, bad_choice};

/// How a rule set's disruptive actions apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WafMode {
    /// Interventions stop requests (`SecRuleEngine On`).
    Block,
    /// Everything is evaluated and logged, nothing stopped (`SecRuleEngine DetectionOnly`).
    Detect,
}

/// A named WAF rule set: SecLang files loaded in order (`Include` and globs work inside them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WafRuleset {
    pub name: String,
    /// Files or globs (`rules/*.conf`), relative to the config file.
    pub files: Vec<PathBuf>,
    /// Sets `SecRuleEngine` before the files; `None` leaves it to them.
    pub mode: Option<WafMode>,
    /// Sets the CRS paranoia level (`tx.blocking_paranoia_level`) before the files.
    pub paranoia: Option<u8>,
    /// Rules removed after the files (`SecRuleRemoveById`).
    pub exclude_rules: Vec<u64>,
    /// Rules removed by tag (`SecRuleRemoveByTag`).
    pub exclude_tags: Vec<String>,
    /// Variables that some rules no longer inspect (`SecRuleUpdateTargetById/ByTag "!…"`).
    pub exclude_targets: Vec<WafTargetExclusion>,
}

/// Targets taken out of the rules with these ids, or with this tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WafTargetExclusion {
    pub rules: Vec<u64>,
    pub tag: Option<String>,
    /// `ARGS:password`, `REQUEST_COOKIES:/^session_/`, …
    pub targets: Vec<String>,
}

impl WafRuleset {
    /// The exclusions as SecLang directives, to be read after the rule files.
    pub fn exclusion_directives(&self) -> String {
        let mut out = String::new();
        if !self.exclude_rules.is_empty() {
            let ids: Vec<String> = self.exclude_rules.iter().map(u64::to_string).collect();
            out.push_str(&format!("SecRuleRemoveById {}\n", ids.join(" ")));
        }
        for tag in &self.exclude_tags {
            out.push_str(&format!("SecRuleRemoveByTag \"{tag}\"\n"));
        }
        for e in &self.exclude_targets {
            let negated: Vec<String> = e.targets.iter().map(|t| format!("!{t}")).collect();
            let targets = negated.join("|");
            for id in &e.rules {
                out.push_str(&format!("SecRuleUpdateTargetById {id} \"{targets}\"\n"));
            }
            if let Some(tag) = &e.tag {
                out.push_str(&format!(
                    "SecRuleUpdateTargetByTag \"{tag}\" \"{targets}\"\n"
                ));
            }
        }
        out
    }
}

/// The validated `[waf]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Waf {
    pub rulesets: Vec<WafRuleset>,
    /// One JSON line (ModSecurity v3 shape) per transaction on a WAF route.
    pub audit_log: Option<AccessLog>,
}

impl Waf {
    pub fn ruleset(&self, name: &str) -> Option<&WafRuleset> {
        self.rulesets.iter().find(|r| r.name == name)
    }
}

pub(crate) fn build_waf(ctx: &mut Ctx<'_>, path: &FieldPath, raw: &RawWaf, base: &Path) -> Waf {
    let audit_log = match raw.audit_log.as_deref() {
        None | Some("off") => None,
        Some("stdout") => Some(AccessLog::Stdout),
        Some("") => {
            ctx.error(
                &path.key("audit_log"),
                "empty; use \"stdout\", \"off\" or a file path",
            );
            None
        }
        Some(file) => Some(AccessLog::File(base.join(file))),
    };
    let mut seen = HashSet::new();
    let mut rulesets = Vec::new();
    for (i, r) in raw.rulesets.iter().enumerate() {
        let p = path.key("rulesets").index(i);
        let name = ctx.name(&p.key("name"), &r.name, "WAF rule set");
        if !seen.insert(name.clone()) {
            ctx.error(
                &p.key("name"),
                format!("duplicate WAF rule set name \"{name}\""),
            );
        }
        if r.files.is_empty() {
            ctx.error(&p.key("files"), "a WAF rule set needs at least one file");
        }
        let mut files = Vec::new();
        for (j, f) in r.files.iter().enumerate() {
            let full = base.join(f);
            let is_glob = f.contains('*') || f.contains('?');
            if f.is_empty() {
                ctx.error(&p.key("files").index(j), "empty file name");
            } else if !is_glob && !full.is_file() {
                ctx.error(
                    &p.key("files").index(j),
                    format!(
                        "file \"{}\" does not exist or is not a file",
                        full.display()
                    ),
                );
            } else if is_glob && !full.parent().is_some_and(Path::is_dir) {
                ctx.error(
                    &p.key("files").index(j),
                    format!("directory of \"{}\" does not exist", full.display()),
                );
            }
            files.push(full);
        }
        let mode = match r.mode.as_deref() {
            None => None,
            Some("block") => Some(WafMode::Block),
            Some("detect") => Some(WafMode::Detect),
            other => {
                bad_choice(ctx, &p.key("mode"), other, &["block", "detect"]);
                None
            }
        };
        let paranoia = r
            .paranoia
            .map(|_| ctx.int(&p.key("paranoia"), r.paranoia, 1, 1, 4) as u8);
        let rule_id = |ctx: &mut Ctx<'_>, path: &FieldPath, id: i64| {
            if id < 1 {
                ctx.error(path, format!("{id} is not a rule id (1 or more)"));
            }
            id.max(0) as u64
        };
        let exclude_rules = r
            .exclude_rules
            .iter()
            .enumerate()
            .map(|(j, &id)| rule_id(ctx, &p.key("exclude_rules").index(j), id))
            .collect();
        let exclude_tags = r
            .exclude_tags
            .iter()
            .enumerate()
            .map(|(j, tag)| {
                seclang_word(ctx, &p.key("exclude_tags").index(j), tag, "tag");
                tag.clone()
            })
            .collect();
        let mut exclude_targets = Vec::new();
        for (j, e) in r.exclude_targets.iter().enumerate() {
            let q = p.key("exclude_targets").index(j);
            if e.rules.is_empty() && e.tag.is_none() {
                ctx.error(
                    &q,
                    "name the rules (rules = [id, …]) or a tag (tag = \"…\")",
                );
            }
            if e.targets.is_empty() {
                ctx.error(&q.key("targets"), "at least one target (\"ARGS:name\", …)");
            }
            let rules = e
                .rules
                .iter()
                .enumerate()
                .map(|(k, &id)| rule_id(ctx, &q.key("rules").index(k), id))
                .collect();
            if let Some(tag) = &e.tag {
                seclang_word(ctx, &q.key("tag"), tag, "tag");
            }
            for (k, t) in e.targets.iter().enumerate() {
                seclang_word(ctx, &q.key("targets").index(k), t, "target");
                if t.starts_with('!') || t.contains('|') {
                    ctx.error(
                        &q.key("targets").index(k),
                        format!("\"{t}\": one variable per entry, without '!' or '|'"),
                    );
                }
            }
            exclude_targets.push(WafTargetExclusion {
                rules,
                tag: e.tag.clone(),
                targets: e.targets.clone(),
            });
        }
        rulesets.push(WafRuleset {
            name,
            files,
            mode,
            paranoia,
            exclude_rules,
            exclude_tags,
            exclude_targets,
        });
    }
    Waf {
        rulesets,
        audit_log,
    }
}

/// A tag or target goes into a quoted SecLang argument: no quotes, backslashes, control bytes.
fn seclang_word(ctx: &mut Ctx<'_>, path: &FieldPath, value: &str, what: &str) {
    if value.is_empty() {
        ctx.error(path, format!("empty {what}"));
    } else if value
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_control() || c.is_whitespace())
    {
        ctx.error(
            path,
            format!(
                "{what} \"{}\" holds a quote, backslash, space or control character",
                value.escape_debug()
            ),
        );
    }
}

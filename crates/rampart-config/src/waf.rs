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
        rulesets.push(WafRuleset {
            name,
            files,
            mode,
            paranoia,
        });
    }
    Waf {
        rulesets,
        audit_log,
    }
}

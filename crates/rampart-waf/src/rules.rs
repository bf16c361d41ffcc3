//! Directives → a compiled rule set: rules per phase in order, chains, markers, default actions,
//! updates and removals, and the engine settings the directives carry.
//!
//! `Include` reads other files through the caller's [`Sources`] (globs expanded there), so this
//! stays free of IO. A rule set is built whole or not at all: the first error names the file,
//! line and rule id.

use std::collections::HashMap;
use std::sync::Arc;

use crate::operator::CompiledOperator;
use crate::parser::{
    Action, Directive, Operator, Origin, ParseError, VariableKey, VariableSpec, parse_actions,
    parse_operator, parse_variables, split_directives,
};
use crate::transform::Transform;

/// Where rule text comes from: the files an `Include` names and the data files of
/// `@pmFromFile`-style operators, relative to the including file.
pub trait Sources {
    /// The files a (possibly globbed) `Include` path names, in order, as (name, text).
    fn include(&self, pattern: &str, from: &str) -> Result<Vec<(String, String)>, String>;
    /// A data file, by the name an operator gives, relative to the rule file `from`.
    fn data(&self, name: &str, from: &str) -> Result<String, String>;
}

/// `SecRuleEngine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineMode {
    #[default]
    On,
    Off,
    DetectionOnly,
}

/// What happens to a body over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimitAction {
    #[default]
    Reject,
    ProcessPartial,
}

/// Settings the engine directives carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    pub mode: EngineMode,
    pub request_body_access: bool,
    pub request_body_limit: u64,
    pub request_body_no_files_limit: u64,
    pub request_body_limit_action: LimitAction,
    pub response_body_access: bool,
    pub response_body_limit: u64,
    pub response_body_limit_action: LimitAction,
    pub response_body_mime_types: Vec<String>,
    pub argument_separator: u8,
    pub component_signatures: Vec<String>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            mode: EngineMode::On,
            request_body_access: false,
            request_body_limit: 128 * 1024 * 1024,
            request_body_no_files_limit: 1024 * 1024,
            request_body_limit_action: LimitAction::Reject,
            response_body_access: false,
            response_body_limit: 512 * 1024,
            response_body_limit_action: LimitAction::ProcessPartial,
            response_body_mime_types: vec!["text/plain".into(), "text/html".into()],
            argument_separator: b'&',
            component_signatures: Vec::new(),
        }
    }
}

/// A rule's disruptive action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disruptive {
    Pass,
    /// Whatever the phase's default action says (the CRS way: detection or blocking decided
    /// centrally).
    Block,
    Deny,
    Drop,
    Allow(AllowScope),
    Redirect(String),
}

/// How far `allow` reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowScope {
    /// The rest of the transaction.
    All,
    /// The rest of the current phase.
    Phase,
    /// The rest of the request phases.
    Request,
}

/// A `setvar` action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetVar {
    /// `collection.name=value` (`=+n`/`=-n` add and subtract).
    Set {
        collection: String,
        name: String,
        value: String,
    },
    Add {
        collection: String,
        name: String,
        value: String,
    },
    Sub {
        collection: String,
        name: String,
        value: String,
    },
    /// `!collection.name`.
    Delete { collection: String, name: String },
}

/// A `ctl` action (runtime change for this transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ctl {
    RuleEngine(EngineMode),
    RuleRemoveById(Vec<IdRange>),
    RuleRemoveByTag(String),
    RuleRemoveTargetById(Vec<IdRange>, Vec<VariableSpec>),
    RuleRemoveTargetByTag(String, Vec<VariableSpec>),
    AuditEngine(String),
    AuditLogParts(String),
    RequestBodyProcessor(String),
    RequestBodyAccess(bool),
    ForceRequestBodyVariable(bool),
    ResponseBodyAccess(bool),
}

/// A rule id or an inclusive range of them (`942100`, `942100-942199`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub from: u64,
    pub to: u64,
}

impl IdRange {
    pub fn contains(&self, id: u64) -> bool {
        (self.from..=self.to).contains(&id)
    }
}

/// Everything a rule says besides its variables and operator.
#[derive(Debug, Clone, Default)]
pub struct RuleActions {
    pub id: Option<u64>,
    pub phase: Option<u8>,
    pub disruptive: Option<Disruptive>,
    pub status: Option<u16>,
    /// `t:` in order; `t:none` clears what came before it (including the defaults).
    pub transforms: Vec<Transform>,
    pub transforms_reset: bool,
    pub msg: Option<String>,
    pub logdata: Option<String>,
    pub tags: Vec<String>,
    pub severity: Option<u8>,
    pub ver: Option<String>,
    pub rev: Option<String>,
    pub maturity: Option<String>,
    pub accuracy: Option<String>,
    pub setvars: Vec<SetVar>,
    pub ctls: Vec<Ctl>,
    pub capture: bool,
    pub multi_match: bool,
    pub chain: bool,
    pub log: Option<bool>,
    pub auditlog: Option<bool>,
    pub skip: Option<u32>,
    pub skip_after: Option<String>,
    /// Actions accepted and carried but without effect here (`setenv`, `expirevar`, …).
    pub other: Vec<Action>,
}

/// One rule (a chain's later links hang off `chained`).
#[derive(Debug)]
pub struct Rule {
    pub origin: Origin,
    pub variables: Vec<VariableSpec>,
    /// `None` for `SecAction` (no variables, always matches).
    pub operator: Option<CompiledOperator>,
    pub actions: RuleActions,
    pub chained: Option<Box<Rule>>,
    /// Where this link's `@rx` prefilter sits in a merged one ([`RuleSet::prefilters`]).
    pub merged_prefilter: Option<PrefilterSlot>,
}

/// A member of a [`crate::prefilter::MergedPrefilter`]: which one, and which bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefilterSlot {
    pub group: u32,
    pub member: u32,
}

/// The transformations a link applies: the phase's default ones, then its own, unless it
/// resets them (`t:none`).
pub fn effective_transforms<'r>(
    defaults: &HashMap<u8, RuleActions>,
    phase: u8,
    link: &'r Rule,
) -> std::borrow::Cow<'r, [Transform]> {
    use std::borrow::Cow;
    if link.actions.transforms_reset {
        return Cow::Borrowed(&link.actions.transforms);
    }
    match defaults.get(&phase) {
        Some(d) if !d.transforms.is_empty() => {
            let mut chain = d.transforms.clone();
            chain.extend(link.actions.transforms.iter().copied());
            Cow::Owned(chain)
        }
        _ => Cow::Borrowed(&link.actions.transforms),
    }
}

impl Rule {
    pub fn id(&self) -> u64 {
        self.actions.id.unwrap_or(0)
    }
    pub fn phase(&self) -> u8 {
        self.actions.phase.unwrap_or(2)
    }
}

/// An entry of a phase's list: a rule, or a marker that `skipAfter` jumps to.
#[derive(Debug)]
pub enum Entry {
    Rule(Arc<Rule>),
    Marker(String),
}

/// The compiled rule set.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub settings: EngineSettings,
    /// Phases 1–5, each in order.
    pub phases: [Vec<Entry>; 5],
    /// The default actions per phase (`SecDefaultAction`).
    pub defaults: HashMap<u8, RuleActions>,
    /// Merged prefilters, one per transformation chain that `@rx` rules use (not for
    /// `multiMatch` links, which test every step's value).
    pub prefilters: Vec<crate::prefilter::MergedPrefilter>,
}

impl RuleSet {
    /// Every rule (first links of chains), in phase order.
    pub fn rules(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.phases.iter().flatten().filter_map(|e| match e {
            Entry::Rule(r) => Some(r),
            Entry::Marker(_) => None,
        })
    }

    pub fn rule(&self, id: u64) -> Option<&Arc<Rule>> {
        self.rules().find(|r| r.id() == id)
    }
}

/// Selects rules for an update or removal.
type RulePredicate = Box<dyn Fn(&Rule) -> bool>;

/// Most `Include` levels followed (a loop of includes ends here).
const MAX_INCLUDE_DEPTH: usize = 16;

struct Builder<'a> {
    sources: &'a dyn Sources,
    set: RuleSet,
    /// Rules not yet placed (chains are assembled here), in order.
    rules: Vec<Rule>,
    /// (phase, marker) entries interleaved with rules: index into `rules` at which a marker
    /// appears, per phase.
    order: Vec<Placed>,
    /// A chain being built: the index of its head in `rules` and the depth.
    open_chain: Option<usize>,
}

enum Placed {
    Rule(usize),
    Marker(String),
}

fn error(origin: &Origin, rule_id: Option<u64>, message: impl Into<String>) -> ParseError {
    ParseError {
        origin: origin.clone(),
        rule_id: rule_id.map(|id| id.to_string()),
        message: message.into(),
    }
}

/// Builds a rule set from the text of one file (its `Include`s through `sources`).
pub fn compile(text: &str, file: &str, sources: &dyn Sources) -> Result<RuleSet, ParseError> {
    let mut b = Builder {
        sources,
        set: RuleSet::default(),
        rules: Vec::new(),
        order: Vec::new(),
        open_chain: None,
    };
    b.file(text, file, 0)?;
    if let Some(head) = b.open_chain {
        let rule = &b.rules[head];
        return Err(error(
            &rule.origin,
            rule.actions.id,
            "the chain ends without a final rule",
        ));
    }
    b.finish()
}

impl Builder<'_> {
    fn file(&mut self, text: &str, file: &str, depth: usize) -> Result<(), ParseError> {
        for d in split_directives(text, file)? {
            self.directive(d, depth)?;
        }
        Ok(())
    }

    fn directive(&mut self, d: Directive, depth: usize) -> Result<(), ParseError> {
        let origin = d.origin.clone();
        let arg = |k: usize| d.args.get(k).map(String::as_str);
        let need = |count: usize| {
            if d.args.len() == count {
                Ok(())
            } else {
                Err(error(
                    &origin,
                    None,
                    format!("{} takes {count} argument(s), got {}", d.name, d.args.len()),
                ))
            }
        };
        let on_off = |value: Option<&str>| match value.map(str::to_ascii_lowercase).as_deref() {
            Some("on") => Ok(true),
            Some("off") => Ok(false),
            other => Err(error(
                &origin,
                None,
                format!(
                    "{} expects On or Off, got {:?}",
                    d.name,
                    other.unwrap_or("")
                ),
            )),
        };
        let size = |value: Option<&str>| {
            value
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| error(&origin, None, format!("{} expects a size in bytes", d.name)))
        };
        let s = &mut self.set.settings;
        match d.name.to_ascii_lowercase().as_str() {
            "secrule" => {
                if d.args.len() < 2 || d.args.len() > 3 {
                    return Err(error(
                        &origin,
                        None,
                        format!("SecRule takes 2 or 3 arguments, got {}", d.args.len()),
                    ));
                }
                let actions_text = arg(2).unwrap_or("");
                let actions = self.actions(actions_text, &origin)?;
                let id = actions.id;
                let variables = parse_variables(&d.args[0]).map_err(|m| error(&origin, id, m))?;
                let op = parse_operator(&d.args[1]).map_err(|m| error(&origin, id, m))?;
                self.rule(origin, variables, Some(op), actions)?;
            }
            "secaction" => {
                need(1)?;
                let actions = self.actions(&d.args[0], &origin)?;
                self.rule(origin, Vec::new(), None, actions)?;
            }
            "secmarker" => {
                need(1)?;
                self.order.push(Placed::Marker(d.args[0].clone()));
            }
            "secdefaultaction" => {
                need(1)?;
                let actions = self.actions(&d.args[0], &origin)?;
                let phase = actions
                    .phase
                    .ok_or_else(|| error(&origin, None, "SecDefaultAction needs a phase"))?;
                if actions.disruptive.is_none() {
                    return Err(error(
                        &origin,
                        None,
                        "SecDefaultAction needs a disruptive action",
                    ));
                }
                self.set.defaults.insert(phase, actions);
            }
            "include" => {
                need(1)?;
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err(error(&origin, None, "Include nested too deep (a loop?)"));
                }
                let files = self
                    .sources
                    .include(&d.args[0], &origin.file)
                    .map_err(|m| error(&origin, None, format!("Include {}: {m}", d.args[0])))?;
                for (name, text) in files {
                    self.file(&text, &name, depth + 1)?;
                }
            }
            "secruleengine" => {
                need(1)?;
                s.mode = match d.args[0].to_ascii_lowercase().as_str() {
                    "on" => EngineMode::On,
                    "off" => EngineMode::Off,
                    "detectiononly" => EngineMode::DetectionOnly,
                    other => {
                        return Err(error(
                            &origin,
                            None,
                            format!(
                                "SecRuleEngine expects On, Off or DetectionOnly, got \"{other}\""
                            ),
                        ));
                    }
                };
            }
            "secrequestbodyaccess" => s.request_body_access = on_off(arg(0))?,
            "secresponsebodyaccess" => s.response_body_access = on_off(arg(0))?,
            "secrequestbodylimit" => s.request_body_limit = size(arg(0))?,
            "secrequestbodynofileslimit" => s.request_body_no_files_limit = size(arg(0))?,
            "secresponsebodylimit" => s.response_body_limit = size(arg(0))?,
            "secrequestbodylimitaction" | "secresponsebodylimitaction" => {
                let action = match arg(0).map(str::to_ascii_lowercase).as_deref() {
                    Some("reject") => LimitAction::Reject,
                    Some("processpartial") => LimitAction::ProcessPartial,
                    _ => {
                        return Err(error(
                            &origin,
                            None,
                            format!("{} expects Reject or ProcessPartial", d.name),
                        ));
                    }
                };
                if d.name.eq_ignore_ascii_case("secrequestbodylimitaction") {
                    s.request_body_limit_action = action;
                } else {
                    s.response_body_limit_action = action;
                }
            }
            "secresponsebodymimetype" => {
                s.response_body_mime_types =
                    d.args.iter().map(|m| m.to_ascii_lowercase()).collect();
            }
            "secresponsebodymimetypesclear" => s.response_body_mime_types.clear(),
            "secargumentseparator" => {
                need(1)?;
                match d.args[0].as_bytes() {
                    [b] => s.argument_separator = *b,
                    _ => {
                        return Err(error(
                            &origin,
                            None,
                            "SecArgumentSeparator takes one character",
                        ));
                    }
                }
            }
            "seccomponentsignature" => {
                need(1)?;
                s.component_signatures.push(d.args[0].clone());
            }
            "secruleremovebyid" => {
                let ranges = d
                    .args
                    .iter()
                    .flat_map(|a| a.split([',', ' ']))
                    .filter(|a| !a.is_empty())
                    .map(|a| id_range(a).map_err(|m| error(&origin, None, m)))
                    .collect::<Result<Vec<_>, _>>()?;
                self.remove(|r| ranges.iter().any(|x| x.contains(r.id())));
            }
            "secruleremovebytag" => {
                need(1)?;
                let re = crate::operator::compile_regex(&d.args[0])
                    .map_err(|m| error(&origin, None, m))?;
                self.remove(|r| r.actions.tags.iter().any(|t| re.is_match(t.as_bytes())));
            }
            "secruleremovebymsg" => {
                need(1)?;
                let re = crate::operator::compile_regex(&d.args[0])
                    .map_err(|m| error(&origin, None, m))?;
                self.remove(|r| {
                    r.actions
                        .msg
                        .as_ref()
                        .is_some_and(|m| re.is_match(m.as_bytes()))
                });
            }
            "secruleupdatetargetbyid" | "secruleupdatetargetbytag" | "secruleupdatetargetbymsg" => {
                if d.args.len() < 2 {
                    return Err(error(
                        &origin,
                        None,
                        format!("{} takes a selector and targets", d.name),
                    ));
                }
                let targets = parse_variables(&d.args[1]).map_err(|m| error(&origin, None, m))?;
                let selector = d.args[0].clone();
                let by = d.name.to_ascii_lowercase();
                let matches = self.selector(&by, &selector, &origin)?;
                let mut found = false;
                for rule in self.rules.iter_mut().filter(|r| matches(r)) {
                    found = true;
                    update_targets(&mut rule.variables, &targets);
                }
                if !found && by.ends_with("byid") {
                    return Err(error(
                        &origin,
                        None,
                        format!("{}: no rule with id {selector}", d.name),
                    ));
                }
            }
            "secruleupdateactionbyid" => {
                need(2)?;
                let range = id_range(&d.args[0]).map_err(|m| error(&origin, None, m))?;
                let update = self.actions(&d.args[1], &origin)?;
                let mut found = false;
                for rule in self.rules.iter_mut().filter(|r| range.contains(r.id())) {
                    found = true;
                    merge_update(&mut rule.actions, &update);
                }
                if !found {
                    return Err(error(
                        &origin,
                        None,
                        format!("SecRuleUpdateActionById: no rule with id {}", d.args[0]),
                    ));
                }
            }
            // Directives about logging, storage and the host, carried by setup files: accepted.
            "secauditengine"
            | "secauditlog"
            | "secauditlog2"
            | "secauditlogparts"
            | "secauditlogrelevantstatus"
            | "secauditlogtype"
            | "secauditlogformat"
            | "secauditlogstoragedir"
            | "secauditlogdirmode"
            | "secauditlogfilemode"
            | "secdebuglog"
            | "secdebugloglevel"
            | "sectmpdir"
            | "secdatadir"
            | "secuploaddir"
            | "secuploadkeepfiles"
            | "secuploadfilemode"
            | "secuploadfilelimit"
            | "seccollectiontimeout"
            | "secunicodemapfile"
            | "secpcrematchlimit"
            | "secpcrematchlimitrecursion"
            | "secstatusengine"
            | "sectmpsaveuploadedfiles"
            | "seccookieformat"
            | "secrequestbodyinmemorylimit"
            | "secrequestbodyjsondepthlimit"
            | "secargumentslimit"
            | "secwebappid"
            | "secgeolookupdb"
            | "secserversignature"
            | "secconnengine"
            | "sechttpblkey"
            | "secremoterules"
            | "secremoterulesfailaction"
            | "secxmlexternalentity"
            | "secruleperftime"
            | "secsensorid" => {}
            _ => {
                return Err(error(
                    &origin,
                    None,
                    format!("unknown directive \"{}\"", d.name),
                ));
            }
        }
        Ok(())
    }

    /// The predicate a `…ById`, `…ByTag` or `…ByMsg` selector stands for.
    fn selector(
        &self,
        by: &str,
        selector: &str,
        origin: &Origin,
    ) -> Result<RulePredicate, ParseError> {
        if by.ends_with("byid") {
            let ranges = selector
                .split([',', ' '])
                .filter(|a| !a.is_empty())
                .map(|a| id_range(a).map_err(|m| error(origin, None, m)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Box::new(move |r: &Rule| {
                ranges.iter().any(|x| x.contains(r.id()))
            }))
        } else {
            let re =
                crate::operator::compile_regex(selector).map_err(|m| error(origin, None, m))?;
            let by_tag = by.ends_with("bytag");
            Ok(Box::new(move |r: &Rule| {
                if by_tag {
                    r.actions.tags.iter().any(|t| re.is_match(t.as_bytes()))
                } else {
                    r.actions
                        .msg
                        .as_ref()
                        .is_some_and(|m| re.is_match(m.as_bytes()))
                }
            }))
        }
    }

    fn remove(&mut self, matches: impl Fn(&Rule) -> bool) {
        let doomed: Vec<usize> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| matches(r))
            .map(|(i, _)| i)
            .collect();
        self.order
            .retain(|p| !matches!(p, Placed::Rule(i) if doomed.contains(i)));
    }

    fn actions(&self, text: &str, origin: &Origin) -> Result<RuleActions, ParseError> {
        let list = parse_actions(text).map_err(|m| error(origin, None, m))?;
        let id = list
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case("id"))
            .and_then(|a| a.value.as_deref())
            .and_then(|v| v.parse::<u64>().ok());
        rule_actions(&list).map_err(|m| error(origin, id, m))
    }

    fn rule(
        &mut self,
        origin: Origin,
        variables: Vec<VariableSpec>,
        op: Option<Operator>,
        actions: RuleActions,
    ) -> Result<(), ParseError> {
        let id = actions.id;
        let operator = match op {
            None => None,
            Some(op) => {
                let sources = self.sources;
                let from = origin.file.to_string();
                let data = move |name: &str| sources.data(name, &from);
                Some(CompiledOperator::compile(&op, &data).map_err(|m| error(&origin, id, m))?)
            }
        };
        let chains = actions.chain;
        let rule = Rule {
            origin: origin.clone(),
            variables,
            operator,
            actions,
            chained: None,
            merged_prefilter: None,
        };
        match self.open_chain {
            Some(head) => {
                // A chain link: no id, phase or disruptive action of its own.
                if rule.actions.id.is_some() {
                    return Err(error(&origin, id, "a chained rule cannot have an id"));
                }
                let mut last = &mut self.rules[head];
                while last.chained.is_some() {
                    last = last.chained.as_mut().expect("checked");
                }
                last.chained = Some(Box::new(rule));
                if !chains {
                    self.open_chain = None;
                }
            }
            None => {
                let Some(rule_id) = rule.actions.id else {
                    return Err(error(&origin, None, "a rule needs an id"));
                };
                if self.rules.iter().any(|r| r.id() == rule_id) {
                    return Err(error(&origin, id, format!("duplicate rule id {rule_id}")));
                }
                if let Some(p) = rule.actions.phase
                    && !(1..=5).contains(&p)
                {
                    return Err(error(
                        &origin,
                        id,
                        format!("phase {p} does not exist (1-5)"),
                    ));
                }
                self.rules.push(rule);
                let index = self.rules.len() - 1;
                self.order.push(Placed::Rule(index));
                if chains {
                    self.open_chain = Some(index);
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<RuleSet, ParseError> {
        let mut set = self.set;
        let mut slots: Vec<Option<Rule>> = self.rules.into_iter().map(Some).collect();
        let mut groups = PrefilterGroups::default();
        // A marker belongs to every phase (skipAfter looks for it in the current one).
        for placed in self.order {
            match placed {
                Placed::Rule(i) => {
                    if let Some(mut rule) = slots[i].take() {
                        groups.place(&set.defaults, &mut rule);
                        let phase = usize::from(rule.phase()) - 1;
                        set.phases[phase].push(Entry::Rule(Arc::new(rule)));
                    }
                }
                Placed::Marker(name) => {
                    for phase in set.phases.iter_mut() {
                        phase.push(Entry::Marker(name.clone()));
                    }
                }
            }
        }
        set.prefilters = groups.build();
        Ok(set)
    }
}

/// The `@rx` prefilters of all links, grouped by the transformation chain they see values
/// through.
#[derive(Default)]
struct PrefilterGroups {
    by_chain: HashMap<u128, usize>,
    members: Vec<Vec<Vec<Vec<u8>>>>,
}

impl PrefilterGroups {
    /// Gives every link of `rule`'s chain whose prefilter can be merged its slot.
    fn place(&mut self, defaults: &HashMap<u8, RuleActions>, rule: &mut Rule) {
        let phase = rule.phase();
        let mut link = Some(rule);
        while let Some(current) = link {
            if !current.actions.multi_match
                && let Some(literals) = current
                    .operator
                    .as_ref()
                    .and_then(|op| op.mergeable_prefilter())
                && let Some(key) =
                    crate::transform::chain_key(&effective_transforms(defaults, phase, current))
            {
                let group = *self.by_chain.entry(key).or_insert_with(|| {
                    self.members.push(Vec::new());
                    self.members.len() - 1
                });
                let members = &mut self.members[group];
                if let (Ok(group), Ok(member)) =
                    (u32::try_from(group), u32::try_from(members.len()))
                {
                    members.push(literals.to_vec());
                    current.merged_prefilter = Some(PrefilterSlot { group, member });
                }
            }
            link = current.chained.as_deref_mut();
        }
    }

    fn build(self) -> Vec<crate::prefilter::MergedPrefilter> {
        self.members
            .iter()
            .map(|members| {
                crate::prefilter::MergedPrefilter::build(members.iter().map(Vec::as_slice))
                    .expect("prefilter strings already built one automaton each")
            })
            .collect()
    }
}

/// `SecRuleUpdateTargetById`: `!VAR:key` adds an exclusion; other targets are appended.
fn update_targets(variables: &mut Vec<VariableSpec>, targets: &[VariableSpec]) {
    for t in targets {
        if !variables.contains(t) {
            variables.push(t.clone());
        }
    }
}

/// `SecRuleUpdateActionById`: the update's non-default fields replace the rule's.
fn merge_update(into: &mut RuleActions, update: &RuleActions) {
    if update.disruptive.is_some() {
        into.disruptive = update.disruptive.clone();
    }
    if update.status.is_some() {
        into.status = update.status;
    }
    if update.transforms_reset || !update.transforms.is_empty() {
        if update.transforms_reset {
            into.transforms.clear();
            into.transforms_reset = true;
        }
        into.transforms.extend(update.transforms.iter().copied());
    }
    if update.msg.is_some() {
        into.msg = update.msg.clone();
    }
    if update.logdata.is_some() {
        into.logdata = update.logdata.clone();
    }
    into.tags.extend(update.tags.iter().cloned());
    if update.severity.is_some() {
        into.severity = update.severity;
    }
    into.setvars.extend(update.setvars.iter().cloned());
    into.ctls.extend(update.ctls.iter().cloned());
    if update.log.is_some() {
        into.log = update.log;
    }
    if update.auditlog.is_some() {
        into.auditlog = update.auditlog;
    }
}

fn id_range(text: &str) -> Result<IdRange, String> {
    let text = text.trim().trim_matches('"').trim_matches('\'');
    let parse = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("\"{text}\" is not a rule id or id range"))
    };
    match text.split_once('-') {
        Some((a, b)) => {
            let (from, to) = (parse(a)?, parse(b)?);
            if from > to {
                return Err(format!("empty id range \"{text}\""));
            }
            Ok(IdRange { from, to })
        }
        None => {
            let id = parse(text)?;
            Ok(IdRange { from: id, to: id })
        }
    }
}

fn severity(value: &str) -> Result<u8, String> {
    let names = [
        "EMERGENCY",
        "ALERT",
        "CRITICAL",
        "ERROR",
        "WARNING",
        "NOTICE",
        "INFO",
        "DEBUG",
    ];
    if let Ok(n) = value.parse::<u8>()
        && n <= 7
    {
        return Ok(n);
    }
    names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(value))
        .map(|p| p as u8)
        .ok_or_else(|| format!("invalid severity \"{value}\""))
}

fn setvar(value: &str) -> Result<SetVar, String> {
    let bad = || format!("invalid setvar \"{value}\" (expected collection.name=value)");
    if let Some(rest) = value.strip_prefix('!') {
        let (collection, name) = rest.split_once('.').ok_or_else(bad)?;
        return Ok(SetVar::Delete {
            collection: collection.trim().to_ascii_lowercase(),
            name: name.trim().to_string(),
        });
    }
    let (target, v) = match value.split_once('=') {
        Some((t, v)) => (t, v),
        None => (value, "1"),
    };
    let (collection, name) = target.split_once('.').ok_or_else(bad)?;
    let (collection, name) = (
        collection.trim().to_ascii_lowercase(),
        name.trim().to_string(),
    );
    if collection.is_empty() || name.is_empty() {
        return Err(bad());
    }
    Ok(if let Some(n) = v.strip_prefix('+') {
        SetVar::Add {
            collection,
            name,
            value: n.to_string(),
        }
    } else if let Some(n) = v.strip_prefix('-') {
        SetVar::Sub {
            collection,
            name,
            value: n.to_string(),
        }
    } else {
        SetVar::Set {
            collection,
            name,
            value: v.to_string(),
        }
    })
}

fn ctl(value: &str) -> Result<Ctl, String> {
    let (name, arg) = value
        .split_once('=')
        .ok_or_else(|| format!("invalid ctl \"{value}\" (expected name=value)"))?;
    let on_off = |a: &str| match a.to_ascii_lowercase().as_str() {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("ctl:{name} expects On or Off")),
    };
    let ids = |a: &str| {
        a.split([',', ' '])
            .filter(|x| !x.is_empty())
            .map(id_range)
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match name.to_ascii_lowercase().as_str() {
        "ruleengine" => Ctl::RuleEngine(match arg.to_ascii_lowercase().as_str() {
            "on" => EngineMode::On,
            "off" => EngineMode::Off,
            "detectiononly" => EngineMode::DetectionOnly,
            _ => {
                return Err(format!(
                    "ctl:ruleEngine expects On, Off or DetectionOnly, got \"{arg}\""
                ));
            }
        }),
        "ruleremovebyid" => Ctl::RuleRemoveById(ids(arg)?),
        "ruleremovebytag" => Ctl::RuleRemoveByTag(arg.to_string()),
        "ruleremovetargetbyid" | "ruleremovetargetbytag" => {
            let (selector, targets) = arg
                .split_once(';')
                .ok_or_else(|| format!("ctl:{name} expects SELECTOR;TARGETS"))?;
            let targets = parse_variables(targets)?;
            if name.eq_ignore_ascii_case("ruleremovetargetbyid") {
                Ctl::RuleRemoveTargetById(ids(selector)?, targets)
            } else {
                Ctl::RuleRemoveTargetByTag(selector.to_string(), targets)
            }
        }
        "auditengine" => Ctl::AuditEngine(arg.to_string()),
        "auditlogparts" => Ctl::AuditLogParts(arg.to_string()),
        "requestbodyprocessor" => Ctl::RequestBodyProcessor(arg.to_ascii_uppercase()),
        "requestbodyaccess" => Ctl::RequestBodyAccess(on_off(arg)?),
        "forcerequestbodyvariable" => Ctl::ForceRequestBodyVariable(on_off(arg)?),
        "responsebodyaccess" => Ctl::ResponseBodyAccess(on_off(arg)?),
        other => return Err(format!("unknown ctl \"{other}\"")),
    })
}

/// Interprets a rule's action list.
pub fn rule_actions(list: &[Action]) -> Result<RuleActions, String> {
    let mut a = RuleActions::default();
    for action in list {
        let name = action.name.to_ascii_lowercase();
        let value = action.value.as_deref();
        let need = || value.ok_or_else(|| format!("action \"{}\" needs a value", action.name));
        match name.as_str() {
            "id" => {
                let v = need()?;
                a.id = Some(
                    v.parse::<u64>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| format!("invalid rule id \"{v}\""))?,
                );
            }
            "phase" => {
                let v = need()?;
                a.phase = Some(match v.to_ascii_lowercase().as_str() {
                    "request" => 2,
                    "response" => 4,
                    "logging" => 5,
                    n => n
                        .parse::<u8>()
                        .ok()
                        .filter(|p| (1..=5).contains(p))
                        .ok_or_else(|| format!("invalid phase \"{v}\""))?,
                });
            }
            "pass" => a.disruptive = Some(Disruptive::Pass),
            "block" => a.disruptive = Some(Disruptive::Block),
            "deny" => a.disruptive = Some(Disruptive::Deny),
            "drop" => a.disruptive = Some(Disruptive::Drop),
            "allow" => {
                a.disruptive = Some(Disruptive::Allow(
                    match value.map(str::to_ascii_lowercase).as_deref() {
                        None => AllowScope::All,
                        Some("phase") => AllowScope::Phase,
                        Some("request") => AllowScope::Request,
                        Some(other) => return Err(format!("invalid allow scope \"{other}\"")),
                    },
                ))
            }
            "redirect" => a.disruptive = Some(Disruptive::Redirect(need()?.to_string())),
            "status" => {
                let v = need()?;
                a.status = Some(
                    v.parse::<u16>()
                        .ok()
                        .filter(|s| (100..=599).contains(s))
                        .ok_or_else(|| format!("invalid status \"{v}\""))?,
                );
            }
            "t" => {
                let v = need()?;
                if v.eq_ignore_ascii_case("none") {
                    a.transforms.clear();
                    a.transforms_reset = true;
                } else {
                    a.transforms.push(
                        Transform::parse(v)
                            .ok_or_else(|| format!("unknown transformation \"{v}\""))?,
                    );
                }
            }
            "msg" => a.msg = Some(need()?.to_string()),
            "logdata" => a.logdata = Some(need()?.to_string()),
            "tag" => a.tags.push(need()?.to_string()),
            "severity" => a.severity = Some(severity(need()?)?),
            "ver" => a.ver = Some(need()?.to_string()),
            "rev" => a.rev = Some(need()?.to_string()),
            "maturity" => a.maturity = Some(need()?.to_string()),
            "accuracy" => a.accuracy = Some(need()?.to_string()),
            "setvar" => a.setvars.push(setvar(need()?)?),
            "ctl" => a.ctls.push(ctl(need()?)?),
            "capture" => a.capture = true,
            "multimatch" => a.multi_match = true,
            "chain" => a.chain = true,
            "log" => a.log = Some(true),
            "nolog" => a.log = Some(false),
            "auditlog" => a.auditlog = Some(true),
            "noauditlog" => a.auditlog = Some(false),
            "skip" => {
                let v = need()?;
                a.skip = Some(
                    v.parse()
                        .map_err(|_| format!("invalid skip count \"{v}\""))?,
                );
            }
            "skipafter" => a.skip_after = Some(need()?.to_string()),
            "setenv"
            | "expirevar"
            | "initcol"
            | "setuid"
            | "setsid"
            | "deprecatevar"
            | "sanitisearg"
            | "sanitisematched"
            | "sanitisematchedbytes"
            | "sanitiserequestheader"
            | "sanitiseresponseheader"
            | "exec"
            | "append"
            | "prepend"
            | "proxy"
            | "pause"
            | "xmlns" => a.other.push(action.clone()),
            other => return Err(format!("unknown action \"{other}\"")),
        }
    }
    Ok(a)
}

/// Key of a variable for exclusion comparisons (`!ARGS:foo` against `ARGS:foo`).
pub fn same_target(a: &VariableSpec, b: &VariableSpec) -> bool {
    a.name == b.name
        && match (&a.key, &b.key) {
            (Some(VariableKey::Name(x)), Some(VariableKey::Name(y))) => x.eq_ignore_ascii_case(y),
            (x, y) => x == y,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files(Vec<(&'static str, &'static str)>);

    impl Sources for Files {
        fn include(&self, pattern: &str, _from: &str) -> Result<Vec<(String, String)>, String> {
            let prefix = pattern.trim_end_matches('*');
            let found: Vec<(String, String)> = self
                .0
                .iter()
                .filter(|(n, _)| {
                    if pattern.ends_with('*') {
                        n.starts_with(prefix)
                    } else {
                        *n == pattern
                    }
                })
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect();
            if found.is_empty() {
                Err("no such file".into())
            } else {
                Ok(found)
            }
        }
        fn data(&self, name: &str, _from: &str) -> Result<String, String> {
            self.0
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.to_string())
                .ok_or_else(|| "no such data file".into())
        }
    }

    fn build(text: &str) -> Result<RuleSet, ParseError> {
        let files = Files(vec![
            (
                "rules/a.conf",
                "SecRule ARGS \"@rx a\" \"id:10,phase:2,pass,t:none,t:lowercase\"\nSecMarker END-A",
            ),
            (
                "rules/b.conf",
                "SecRule ARGS \"@pmFromFile words.data\" \"id:11,phase:1,deny,status:403,tag:'attack-x'\"",
            ),
            ("words.data", "evil\n"),
        ]);
        compile(text, "main.conf", &files)
    }

    #[test]
    fn a_small_rule_set() {
        let set = build(
            "SecRuleEngine DetectionOnly\nSecRequestBodyAccess On\n\
             SecDefaultAction \"phase:2,log,auditlog,pass\"\n\
             Include rules/*\n\
             SecRule REQUEST_METHOD \"@streq POST\" \"id:1,phase:1,chain,deny\"\n  \
             SecRule &ARGS \"@gt 3\" \"t:none,chain\"\n  SecRule ARGS:x \"@rx y\" \"setvar:tx.score=+5\"\n\
             SecAction \"id:2,phase:5,pass,nolog,setvar:'tx.a=1',setvar:!tx.b,ctl:ruleRemoveTargetById=942100;ARGS:pwd\"\n\
             SecRuleUpdateTargetById 10 \"!ARGS:pass\"\nSecRuleRemoveByTag attack-x\n",
        )
        .unwrap();
        assert_eq!(set.settings.mode, EngineMode::DetectionOnly);
        assert!(set.settings.request_body_access);
        assert_eq!(set.defaults[&2].disruptive, Some(Disruptive::Pass));
        assert!(set.rule(11).is_none(), "removed by tag");
        let r10 = set.rule(10).unwrap();
        assert_eq!(r10.actions.transforms, vec![Transform::Lowercase]);
        assert!(r10.actions.transforms_reset);
        assert!(
            r10.variables
                .iter()
                .any(|v| v.exclude && v.key == Some(VariableKey::Name("pass".into())))
        );
        let r1 = set.rule(1).unwrap();
        let second = r1.chained.as_ref().unwrap();
        let third = second.chained.as_ref().unwrap();
        assert!(third.chained.is_none());
        assert_eq!(third.actions.setvars.len(), 1);
        let r2 = set.rule(2).unwrap();
        assert!(r2.operator.is_none());
        assert_eq!(
            r2.actions.setvars[1],
            SetVar::Delete {
                collection: "tx".into(),
                name: "b".into()
            }
        );
        assert!(matches!(
            r2.actions.ctls[0],
            Ctl::RuleRemoveTargetById(_, _)
        ));
        // Phase lists hold rules in order, and the marker in every phase.
        assert!(matches!(&set.phases[1][0], Entry::Rule(r) if r.id() == 10));
        assert!(set.phases.iter().all(|p| {
            p.iter()
                .any(|e| matches!(e, Entry::Marker(m) if m == "END-A"))
        }));
    }

    #[test]
    fn errors_name_file_line_and_rule() {
        let e = |text: &str| build(text).unwrap_err().to_string();
        assert_eq!(
            e("SecRule ARGS \"@rx (\" \"id:5\""),
            "main.conf:1: rule 5: invalid regular expression: unclosed group"
        );
        assert_eq!(
            e("\nSecRule ARGS \"@rx a\" \"phase:2\""),
            "main.conf:2: a rule needs an id"
        );
        assert_eq!(
            e("SecRule ARGS \"@rx a\" \"id:7,t:bogus\""),
            "main.conf:1: rule 7: unknown transformation \"bogus\""
        );
        assert_eq!(
            e("SecRule ARGS \"@rx a\" \"id:7,frobnicate\""),
            "main.conf:1: rule 7: unknown action \"frobnicate\""
        );
        assert_eq!(
            e("SecRule ARGS \"@rx a\" \"id:7,phase:9\""),
            "main.conf:1: rule 7: invalid phase \"9\""
        );
        assert_eq!(
            e("SecRule ARGS \"@rx a\" \"id:7\"\nSecRule ARGS \"@rx b\" \"id:7\""),
            "main.conf:2: rule 7: duplicate rule id 7"
        );
        assert_eq!(
            e("SecRule ARGS \"@rx a\" \"id:8,chain\""),
            "main.conf:1: rule 8: the chain ends without a final rule"
        );
        assert_eq!(
            e("SecFrobnicate On"),
            "main.conf:1: unknown directive \"SecFrobnicate\""
        );
        assert_eq!(
            e("Include nowhere.conf"),
            "main.conf:1: Include nowhere.conf: no such file"
        );
        assert_eq!(
            e("SecRuleUpdateTargetById 999 ARGS"),
            "main.conf:1: SecRuleUpdateTargetById: no rule with id 999"
        );
        assert!(
            e("SecRule ARGS \"@pmFromFile missing.data\" \"id:9\"")
                .contains("rule 9: no such data file")
        );
        assert!(e("SecRuleEngine Maybe").contains("SecRuleEngine expects"));
        assert!(e("SecAction \"id:3,setvar:nodot\"").contains("invalid setvar"));
        assert!(e("SecAction \"id:3,ctl:ruleEngine=Sometimes\"").contains("ctl:ruleEngine"));
    }

    #[test]
    fn include_loops_end() {
        struct Loop;
        impl Sources for Loop {
            fn include(&self, _: &str, _: &str) -> Result<Vec<(String, String)>, String> {
                Ok(vec![("self.conf".into(), "Include self.conf".into())])
            }
            fn data(&self, _: &str, _: &str) -> Result<String, String> {
                Err("none".into())
            }
        }
        let e = compile("Include self.conf", "main.conf", &Loop).unwrap_err();
        assert!(e.message.contains("nested too deep"), "{e}");
    }

    #[test]
    fn ids_and_setvars() {
        assert_eq!(
            id_range("942100-942199").unwrap(),
            IdRange {
                from: 942100,
                to: 942199
            }
        );
        assert!(id_range("9-1").is_err());
        assert!(id_range("x").is_err());
        assert_eq!(
            setvar("tx.score=+%{tx.critical}").unwrap(),
            SetVar::Add {
                collection: "tx".into(),
                name: "score".into(),
                value: "%{tx.critical}".into()
            }
        );
        assert_eq!(
            setvar("TX.flag").unwrap(),
            SetVar::Set {
                collection: "tx".into(),
                name: "flag".into(),
                value: "1".into()
            }
        );
        assert_eq!(severity("CRITICAL").unwrap(), 2);
        assert_eq!(severity("5").unwrap(), 5);
        assert!(severity("BAD").is_err());
    }
}

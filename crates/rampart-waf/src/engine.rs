//! A transaction: one request (and its response) run through a [`RuleSet`] phase by phase,
//! with ModSecurity v3's evaluation semantics:
//!
//! - a rule's variables are resolved (keys, `/regex/` keys, `!` exclusions, `&` counts), each
//!   value transformed by the rule's chain (`multiMatch`: the operator also runs after every
//!   step), and the operator run on it;
//! - for every matching value, `MATCHED_VAR(S)` are updated, `capture` fills `TX:0`–`TX:9`, and
//!   the rule's non-disruptive actions run (`setvar`, `ctl`) — so a rule matching three
//!   arguments scores three times, as in ModSecurity;
//! - a chain goes on to its next link only when the link before matched; the disruptive action,
//!   `skip`/`skipAfter` and the log message belong to the full match of the whole chain;
//! - `block` takes the disruptive action of the phase's `SecDefaultAction`; in DetectionOnly
//!   mode nothing is disrupted, but everything is evaluated and logged.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::operator::{Expand, to_number};
use crate::parser::{VariableKey, VariableSpec};
use crate::rules::{
    AllowScope, Ctl, Disruptive, EngineMode, Entry, IdRange, PrefilterSlot, Rule, RuleActions,
    RuleSet, SetVar,
};
use crate::transform::Transform;
use smallvec::SmallVec;

/// The request line and head of a transaction.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: String,
    /// The request target as received (`/a/b?x=1`).
    pub uri: String,
    pub protocol: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub remote_addr: IpAddr,
    pub remote_port: u16,
    pub unique_id: String,
}

/// A message for the audit log: one per logged full match of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub rule_id: u64,
    pub msg: String,
    pub data: String,
    /// What matched, ModSecurity's way: `Matched "Operator `Rx' with parameter … against
    /// variable `ARGS:q' (Value: `…' )`.
    pub matched: String,
    pub file: String,
    pub line: usize,
    pub severity: Option<u8>,
    pub ver: String,
    pub rev: String,
    pub tags: Vec<String>,
    pub maturity: String,
    pub accuracy: String,
}

/// A decision to stop the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intervention {
    pub rule_id: u64,
    pub status: u16,
    /// Close the connection without an answer.
    pub drop: bool,
    pub redirect: Option<String>,
}

/// Why a rule matched (recorded only when [`Transaction::enable_trace`] was called): one step
/// per matching value of each link of its chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRule {
    pub rule_id: u64,
    pub phase: u8,
    pub file: String,
    pub line: usize,
    /// The rule's `msg`, macros expanded.
    pub msg: String,
    /// Whether the rule logs (a rule with `nolog` is flow control or bookkeeping).
    pub logged: bool,
    pub steps: Vec<TraceStep>,
}

/// One value that satisfied one link's operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceStep {
    /// 0 for the rule itself, 1 for its first chained rule, …
    pub link: usize,
    /// `ARGS:q`, `REQUEST_HEADERS:User-Agent`, `&ARGS`, …
    pub variable: String,
    pub value: Vec<u8>,
    /// The transformations applied, in order (for `multiMatch`, up to the matching step).
    pub transforms: Vec<&'static str>,
    pub transformed: Vec<u8>,
    /// `@rx …`, `!@eq 0`, …
    pub operator: String,
    pub matched: Vec<u8>,
}

/// Longest value a trace step keeps.
const MAX_TRACE_VALUE: usize = 4096;

/// One resolved value of a variable.
#[derive(Debug, Clone)]
struct Value {
    /// `ARGS:q`, `REQUEST_HEADERS:Host`, `TX:score`, …
    name: String,
    data: Vec<u8>,
}

/// A variable's value as resolved for one rule, borrowed from the transaction where it can be
/// (its name is written out only when it matches).
struct Val<'a> {
    name: Name<'a>,
    data: Cow<'a, [u8]>,
    /// Where the value comes from, when that source cannot change within a phase: the key of
    /// its transformed forms in the per-phase cache. `None` for TX, MATCHED_* and counts.
    origin: Option<u32>,
}

/// A value's name: `REQUEST_URI`, `ARGS` + `q`, or one built (`&ARGS`).
enum Name<'a> {
    Plain(&'a str),
    Keyed(&'a str, &'a str),
    Owned(String),
}

impl Name<'_> {
    fn render(&self) -> String {
        match self {
            Name::Plain(n) => n.to_string(),
            Name::Keyed(collection, key) => format!("{collection}:{key}"),
            Name::Owned(n) => n.clone(),
        }
    }
}

/// Sources of values that stay the same within a phase (see [`Value::origin`]); the low 20
/// bits of an origin are the index within the source.
mod source {
    pub const ARGS_GET: u32 = 1;
    pub const ARGS_POST: u32 = 2;
    pub const ARGS_GET_NAMES: u32 = 3;
    pub const ARGS_POST_NAMES: u32 = 4;
    pub const HEADERS: u32 = 5;
    pub const HEADER_NAMES: u32 = 6;
    pub const COOKIES: u32 = 7;
    pub const COOKIE_NAMES: u32 = 8;
    pub const RESPONSE_HEADERS: u32 = 9;
    pub const RESPONSE_HEADER_NAMES: u32 = 10;
    pub const METHOD: u32 = 11;
    pub const PROTOCOL: u32 = 12;
    pub const URI: u32 = 13;
    pub const LINE: u32 = 14;
    pub const FILENAME: u32 = 15;
    pub const BASENAME: u32 = 16;
    pub const QUERY: u32 = 17;
    pub const BODY: u32 = 18;
    pub const RESPONSE_BODY: u32 = 19;
    pub const XML_TEXT: u32 = 20;
    pub const XML_ATTRIBUTES: u32 = 21;

    /// Sources that are complete before phase 1 and never change.
    pub fn is_request_head(source: u32) -> bool {
        matches!(
            source,
            ARGS_GET
                | ARGS_GET_NAMES
                | HEADERS
                | HEADER_NAMES
                | COOKIES
                | COOKIE_NAMES
                | METHOD
                | PROTOCOL
                | URI
                | LINE
                | FILENAME
                | BASENAME
                | QUERY
        )
    }

    pub fn origin(source: u32, index: usize) -> Option<u32> {
        (index < 1 << 20).then_some(source << 20 | index as u32)
    }
}

use crate::transform::chain_key;

/// Merged prefilter results by (value origin, prefilter group).
type PassCache = rustc_hash::FxHashMap<(u32, u32), crate::prefilter::Passed>;

/// Transformed values by (value origin, chain key); `None`: unchanged.
type TransformCache = rustc_hash::FxHashMap<(u32, u128), Option<Arc<[u8]>>>;

/// A value that matched a link's operator, with what the operator found.
struct Hit {
    value: Value,
    found: crate::operator::OpMatch,
    step: Option<TraceStep>,
}

/// A value as the operator sees it: the variable's own bytes or a transformed copy.
enum Candidate<'v> {
    Borrowed(&'v [u8]),
    Shared(Arc<[u8]>),
}

impl Candidate<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Candidate::Borrowed(b) => b,
            Candidate::Shared(b) => b,
        }
    }
}

/// Collections of the transaction (keys kept as received, compared case-insensitively).
#[derive(Debug, Default, Clone)]
struct Collection(Vec<(String, Vec<u8>)>);

impl Collection {
    fn push(&mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.0.push((key.into(), value.into()));
    }
}

/// Longest value a `setvar` may build (anomaly scores and flags are short; this bounds
/// hostile macro growth).
const MAX_TX_VALUE: usize = 64 * 1024;

/// Matched values remembered for `MATCHED_VARS` per rule.
const MAX_MATCHED: usize = 1024;

pub struct Transaction {
    rules: Arc<RuleSet>,
    head: RequestHead,
    mode: EngineMode,
    tx: HashMap<String, Vec<u8>>,
    args_get: Collection,
    args_post: Collection,
    headers: Collection,
    cookies: Collection,
    request_body: Vec<u8>,
    reqbody_processor: Option<String>,
    reqbody_error: Option<String>,
    xml: Option<crate::body::XmlDocument>,
    multipart: Option<crate::body::Multipart>,
    response_status: Option<u16>,
    response_headers: Collection,
    response_body: Vec<u8>,
    matched_var: Option<Value>,
    matched_vars: Vec<Value>,
    removed: Vec<IdRange>,
    removed_tags: Vec<String>,
    removed_targets: Vec<(Removal, VariableSpec)>,
    allowed: Option<AllowScope>,
    messages: Vec<Message>,
    intervention: Option<Intervention>,
    /// Transformed values of the phase, by (value origin, transformation chain); `None` when
    /// the chain left the value as it was.
    transformed: std::cell::RefCell<TransformCache>,
    /// Merged prefilter results of the phase, by (value origin, prefilter group).
    prefilter_passes: std::cell::RefCell<PassCache>,
    /// `Some` once tracing is on: the rules that matched, in order.
    trace: Option<Vec<TraceRule>>,
    /// Steps of the chain being evaluated.
    pending_steps: Vec<TraceStep>,
}

#[derive(Debug, Clone)]
enum Removal {
    Ids(Vec<IdRange>),
    Tag(String),
}

impl Transaction {
    pub fn new(rules: Arc<RuleSet>, head: RequestHead) -> Self {
        let mode = rules.settings.mode;
        let mut t = Transaction {
            rules,
            mode,
            tx: HashMap::new(),
            args_get: Collection::default(),
            args_post: Collection::default(),
            headers: Collection::default(),
            cookies: Collection::default(),
            request_body: Vec::new(),
            reqbody_processor: None,
            reqbody_error: None,
            xml: None,
            multipart: None,
            response_status: None,
            response_headers: Collection::default(),
            response_body: Vec::new(),
            matched_var: None,
            matched_vars: Vec::new(),
            removed: Vec::new(),
            removed_tags: Vec::new(),
            removed_targets: Vec::new(),
            allowed: None,
            messages: Vec::new(),
            intervention: None,
            trace: None,
            pending_steps: Vec::new(),
            transformed: Default::default(),
            prefilter_passes: Default::default(),
            head,
        };
        let query = t.head.uri.split_once('?').map(|(_, q)| q.to_string());
        if let Some(q) = query {
            t.args_get = parse_urlencoded(q.as_bytes(), t.rules.settings.argument_separator);
        }
        for (name, value) in t.head.headers.clone() {
            if name.eq_ignore_ascii_case("cookie") {
                for part in value.split(|&b| b == b';') {
                    let part = trim_bytes(part);
                    if part.is_empty() {
                        continue;
                    }
                    let (k, v) = match part.iter().position(|&b| b == b'=') {
                        Some(at) => (&part[..at], &part[at + 1..]),
                        None => (part, &b""[..]),
                    };
                    t.cookies
                        .push(String::from_utf8_lossy(k).into_owned(), v.to_vec());
                }
            }
            t.headers.push(name, value);
        }
        // As ModSecurity: the processor for form bodies is known from the head, so phase-1
        // rules see REQBODY_PROCESSOR (a phase-1 `ctl:requestBodyProcessor` may change it).
        let content_type = t
            .header("content-type")
            .map(|v| String::from_utf8_lossy(v).to_ascii_lowercase());
        t.reqbody_processor = match content_type.as_deref() {
            Some(ct) if ct.starts_with("application/x-www-form-urlencoded") => {
                Some("URLENCODED".into())
            }
            Some(ct) if ct.starts_with("multipart/form-data") => Some("MULTIPART".into()),
            _ => None,
        };
        t
    }

    /// The request head the transaction was made from.
    pub fn head(&self) -> &RequestHead {
        &self.head
    }

    /// The rule set it runs.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Messages logged so far.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Records why each rule matches from now on (for explaining, not for the request path:
    /// it copies every matching value).
    pub fn enable_trace(&mut self) {
        self.trace.get_or_insert_with(Vec::new);
    }

    /// The rules that matched since tracing was enabled.
    pub fn trace(&self) -> &[TraceRule] {
        self.trace.as_deref().unwrap_or_default()
    }

    /// The decision to stop, once a rule made one (never in DetectionOnly mode).
    pub fn intervention(&self) -> Option<&Intervention> {
        self.intervention.as_ref()
    }

    /// A `TX` variable, for callers and tests.
    pub fn tx(&self, name: &str) -> Option<&[u8]> {
        self.tx.get(&name.to_ascii_lowercase()).map(Vec::as_slice)
    }

    /// Phase 1: request headers.
    pub fn process_request_headers(&mut self) {
        self.run_phase(1);
    }

    /// Phase 2 with the request body (read in full, up to the body limit, by the caller).
    pub fn process_request_body(&mut self, body: &[u8]) {
        self.request_body = body.to_vec();
        if self.rules.settings.request_body_access && !body.is_empty() {
            let processor = self.reqbody_processor.clone().unwrap_or_default();
            match processor.as_str() {
                "URLENCODED" => {
                    self.args_post = parse_urlencoded(body, self.rules.settings.argument_separator);
                }
                "JSON" => match crate::body::json_arguments(body) {
                    Ok(args) => {
                        for (k, v) in args {
                            self.args_post.push(k, v);
                        }
                    }
                    Err(e) => self.reqbody_error = Some(e),
                },
                "MULTIPART" => {
                    let raw_type = self
                        .header("content-type")
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default();
                    match crate::body::multipart(body, &raw_type) {
                        Ok(m) => {
                            for (k, v) in &m.args {
                                self.args_post.push(k.clone(), v.clone());
                            }
                            self.multipart = Some(m);
                        }
                        Err(e) => self.reqbody_error = Some(e),
                    }
                }
                "XML" => match crate::body::xml_document(body) {
                    Ok(doc) => self.xml = Some(doc),
                    Err(e) => self.reqbody_error = Some(e),
                },
                _ => {}
            }
            if !processor.is_empty() {
                self.reqbody_processor = Some(processor);
            }
        }
        self.run_phase(2);
    }

    /// Phase 3: response status and headers.
    pub fn process_response_headers(&mut self, status: u16, headers: &[(String, Vec<u8>)]) {
        self.response_status = Some(status);
        for (k, v) in headers {
            self.response_headers.push(k.clone(), v.clone());
        }
        self.run_phase(3);
    }

    /// Phase 4 with the response body (as far as it is inspected).
    pub fn process_response_body(&mut self, body: &[u8]) {
        self.response_body = body.to_vec();
        self.run_phase(4);
    }

    /// Phase 5: logging.
    pub fn process_logging(&mut self) {
        self.run_phase(5);
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    fn run_phase(&mut self, phase: u8) {
        if self.mode == EngineMode::Off || self.intervention.is_some() {
            return;
        }
        match self.allowed {
            Some(AllowScope::All) => return,
            Some(AllowScope::Request) if phase <= 2 => return,
            Some(AllowScope::Phase) => self.allowed = None,
            _ => {}
        }
        // Bodies arrive and responses begin between phases; the request head stays.
        self.transformed
            .get_mut()
            .retain(|(origin, _), _| source::is_request_head(*origin >> 20));
        self.prefilter_passes
            .get_mut()
            .retain(|(origin, _), _| source::is_request_head(*origin >> 20));
        let rules = Arc::clone(&self.rules);
        let entries = &rules.phases[usize::from(phase) - 1];
        let mut skip = 0u32;
        let mut skip_after: Option<String> = None;
        for entry in entries {
            let rule = match entry {
                Entry::Marker(name) => {
                    if skip_after.as_deref() == Some(name.as_str()) {
                        skip_after = None;
                    }
                    continue;
                }
                Entry::Rule(rule) => rule,
            };
            if skip_after.is_some() {
                continue;
            }
            if skip > 0 {
                skip -= 1;
                continue;
            }
            if self.is_removed(rule) {
                continue;
            }
            self.matched_vars.clear();
            self.pending_steps.clear();
            if self.evaluate_chain(rule, rule, 0) {
                let actions = &rule.actions;
                self.record_trace(rule, phase);
                self.log_match(rule);
                self.disrupt(rule, phase);
                if let Some(n) = actions.skip {
                    skip = n;
                }
                if let Some(marker) = &actions.skip_after {
                    skip_after = Some(marker.clone());
                }
            }
            if self.intervention.is_some()
                || matches!(self.allowed, Some(AllowScope::All | AllowScope::Phase))
            {
                break;
            }
            if matches!(self.allowed, Some(AllowScope::Request)) && phase <= 2 {
                break;
            }
        }
        if matches!(self.allowed, Some(AllowScope::Phase)) {
            self.allowed = None;
        }
    }

    fn is_removed(&self, rule: &Rule) -> bool {
        let id = rule.id();
        self.removed.iter().any(|r| r.contains(id))
            || self
                .removed_tags
                .iter()
                .any(|t| rule.actions.tags.iter().any(|rt| rt == t))
    }

    /// Evaluates `link` (a rule or a later link of `head`'s chain, `depth` links down) and the
    /// rest of the chain.
    fn evaluate_chain(&mut self, head: &Rule, link: &Rule, depth: usize) -> bool {
        if !self.evaluate_link(head, link, depth) {
            return false;
        }
        match &link.chained {
            None => true,
            Some(next) => self.evaluate_chain(head, next, depth + 1),
        }
    }

    fn record_trace(&mut self, rule: &Rule, phase: u8) {
        if self.trace.is_none() {
            return;
        }
        let msg = rule
            .actions
            .msg
            .as_deref()
            .map(|m| self.expand(m).into_owned())
            .unwrap_or_default();
        let logged = rule.actions.log.unwrap_or_else(|| {
            self.rules
                .defaults
                .get(&phase)
                .and_then(|d| d.log)
                .unwrap_or(true)
        });
        let steps = std::mem::take(&mut self.pending_steps);
        if let Some(trace) = &mut self.trace {
            trace.push(TraceRule {
                rule_id: rule.id(),
                phase,
                file: rule.origin.file.to_string(),
                line: rule.origin.line,
                msg,
                logged,
                steps,
            });
        }
    }

    /// The transformations of a link: the phase's default ones unless the link resets them.
    fn transforms<'r>(&self, head: &Rule, link: &'r Rule) -> Cow<'r, [Transform]> {
        crate::rules::effective_transforms(&self.rules.defaults, head.phase(), link)
    }

    fn evaluate_link(&mut self, head: &Rule, link: &Rule, depth: usize) -> bool {
        let Some(operator) = &link.operator else {
            // SecAction: always matches.
            self.run_actions(&link.actions);
            return true;
        };
        let transforms = self.transforms(head, link);
        // First every value is tested (nothing changes meanwhile, so values stay borrowed),
        // then each match has its effects, in order.
        let hits = self.test_values(head, link, operator, &transforms, depth);
        let matched = !hits.is_empty();
        for hit in hits {
            if let Some(step) = hit.step {
                self.pending_steps.push(step);
            }
            if link.actions.capture {
                for (i, c) in hit.found.captures.into_iter().enumerate() {
                    self.tx.insert(i.to_string(), c);
                }
            }
            if self.matched_vars.len() < MAX_MATCHED {
                self.matched_vars.push(hit.value.clone());
            }
            self.matched_var = Some(hit.value);
            self.run_actions(&link.actions);
        }
        matched
    }

    /// The values of a link that its operator matches (after transformation).
    fn test_values(
        &self,
        head: &Rule,
        link: &Rule,
        operator: &crate::operator::CompiledOperator,
        transforms: &[Transform],
        depth: usize,
    ) -> Vec<Hit> {
        let values = self.resolve(head, &link.variables);
        let chain = chain_key(transforms);
        let mut hits = Vec::new();
        for value in &values {
            // Each candidate with the number of transformations applied to reach it.
            let mut candidates: SmallVec<[(Candidate<'_>, usize); 4]> = SmallVec::new();
            // The value passed the operator's prefilter already (a merged one).
            let mut prefiltered = false;
            if link.actions.multi_match {
                // The value after each step that changed it (steps cached like whole chains).
                candidates.push((Candidate::Borrowed(&value.data), 0));
                let mut current: Option<Arc<[u8]>> = None;
                for (i, t) in transforms.iter().enumerate() {
                    // A key space of its own: `None` here means "this step changed nothing".
                    let key = value
                        .origin
                        .zip(chain_key(&transforms[..=i]).map(|k| k | 1 << 127));
                    let cached = key.and_then(|k| self.transformed.borrow().get(&k).cloned());
                    let step = match cached {
                        Some(step) => step,
                        None => {
                            let input = current.as_deref().unwrap_or(&value.data);
                            let step = t.apply(input).map(Arc::from);
                            if let Some(k) = key {
                                self.transformed.borrow_mut().insert(k, step.clone());
                            }
                            step
                        }
                    };
                    // `None`: this step left the value as the previous one had it.
                    if let Some(changed) = step {
                        candidates.push((Candidate::Shared(Arc::clone(&changed)), i + 1));
                        current = Some(changed);
                    }
                }
            } else {
                let key = value.origin.zip(chain);
                let cached = key.and_then(|k| self.transformed.borrow().get(&k).cloned());
                let shared = match cached {
                    Some(shared) => shared,
                    None => {
                        let shared = match crate::transform::apply_all(&value.data, transforms) {
                            Cow::Borrowed(_) => None,
                            Cow::Owned(changed) => Some(Arc::from(changed)),
                        };
                        if let Some(k) = key {
                            self.transformed.borrow_mut().insert(k, shared.clone());
                        }
                        shared
                    }
                };
                let candidate = match shared {
                    Some(bytes) => Candidate::Shared(bytes),
                    None => Candidate::Borrowed(&value.data),
                };
                if let (Some(slot), Some(origin)) = (link.merged_prefilter, value.origin) {
                    if !self.passes_prefilter(origin, slot, candidate.bytes()) {
                        continue;
                    }
                    prefiltered = true;
                }
                candidates.push((candidate, transforms.len()));
            }
            for (candidate, applied) in candidates {
                let candidate = candidate.bytes();
                let found = if prefiltered {
                    operator.eval_prefiltered(candidate, &Macros(self), link.actions.capture)
                } else {
                    operator.eval_with(candidate, &Macros(self), link.actions.capture)
                };
                let Some(found) = found else { continue };
                let name = value.name.render();
                let step = self.trace.is_some().then(|| {
                    let clip = |b: &[u8]| b[..b.len().min(MAX_TRACE_VALUE)].to_vec();
                    TraceStep {
                        link: depth,
                        variable: name.clone(),
                        value: clip(&value.data),
                        transforms: transforms[..applied].iter().map(|t| t.name()).collect(),
                        transformed: clip(candidate),
                        operator: format!(
                            "{}@{} {}",
                            if operator.negated { "!" } else { "" },
                            operator.name,
                            operator.argument
                        )
                        .trim_end()
                        .to_string(),
                        matched: clip(&found.matched),
                    }
                });
                hits.push(Hit {
                    value: Value {
                        name,
                        data: candidate.to_vec(),
                    },
                    found,
                    step,
                });
                if !link.actions.multi_match {
                    break;
                }
            }
        }
        hits
    }

    /// Whether a value (from `origin`, transformed) passes the prefilter of `slot`: one scan
    /// per value and group answers for every rule of the group.
    fn passes_prefilter(&self, origin: u32, slot: PrefilterSlot, value: &[u8]) -> bool {
        let key = (origin, slot.group);
        if let Some(passes) = self.prefilter_passes.borrow().get(&key) {
            return crate::prefilter::passed(passes, slot.member);
        }
        let Some(group) = self.rules.prefilters.get(slot.group as usize) else {
            return true;
        };
        let passes = group.scan(value);
        let passed = crate::prefilter::passed(&passes, slot.member);
        self.prefilter_passes.borrow_mut().insert(key, passes);
        passed
    }

    /// Non-disruptive actions of one match.
    fn run_actions(&mut self, actions: &RuleActions) {
        for setvar in &actions.setvars {
            self.setvar(setvar);
        }
        for ctl in &actions.ctls {
            match ctl {
                Ctl::RuleEngine(mode) => self.mode = *mode,
                Ctl::RuleRemoveById(ranges) => self.removed.extend(ranges.iter().copied()),
                Ctl::RuleRemoveByTag(tag) => self.removed_tags.push(tag.clone()),
                Ctl::RuleRemoveTargetById(ranges, targets) => {
                    for t in targets {
                        self.removed_targets
                            .push((Removal::Ids(ranges.clone()), t.clone()));
                    }
                }
                Ctl::RuleRemoveTargetByTag(tag, targets) => {
                    for t in targets {
                        self.removed_targets
                            .push((Removal::Tag(tag.clone()), t.clone()));
                    }
                }
                Ctl::RequestBodyProcessor(p) => self.reqbody_processor = Some(p.clone()),
                _ => {}
            }
        }
    }

    fn setvar(&mut self, setvar: &SetVar) {
        let (collection, name) = match setvar {
            SetVar::Set {
                collection, name, ..
            }
            | SetVar::Add {
                collection, name, ..
            }
            | SetVar::Sub {
                collection, name, ..
            }
            | SetVar::Delete { collection, name } => (collection, name),
        };
        if collection != "tx" {
            // Persistent collections (ip, session, …) are not kept.
            return;
        }
        let key = self.expand(name).to_ascii_lowercase();
        match setvar {
            SetVar::Delete { .. } => {
                self.tx.remove(&key);
            }
            SetVar::Set { value, .. } => {
                let mut v = self.expand(value).into_owned().into_bytes();
                v.truncate(MAX_TX_VALUE);
                self.tx.insert(key, v);
            }
            SetVar::Add { value, .. } | SetVar::Sub { value, .. } => {
                let delta = to_number(self.expand(value).as_bytes());
                let current = self.tx.get(&key).map_or(0, |v| to_number(v));
                let next = if matches!(setvar, SetVar::Add { .. }) {
                    current.saturating_add(delta)
                } else {
                    current.saturating_sub(delta)
                };
                self.tx.insert(key, next.to_string().into_bytes());
            }
        }
    }

    fn log_match(&mut self, rule: &Rule) {
        let a = &rule.actions;
        let logs = a.log.unwrap_or_else(|| {
            self.rules
                .defaults
                .get(&rule.phase())
                .and_then(|d| d.log)
                .unwrap_or(true)
        });
        if !logs {
            return;
        }
        // msg and logdata may sit on any link of a chain (CRS puts them on the first).
        let msg = a
            .msg
            .as_deref()
            .map(|m| self.expand(m).into_owned())
            .unwrap_or_default();
        let data = a
            .logdata
            .as_deref()
            .map(|d| self.expand(d).into_owned())
            .unwrap_or_default();
        let matched = match (&self.matched_var, &rule.operator) {
            (Some(v), Some(op)) => format!(
                "Matched \"Operator `{}' with parameter `{}' against variable `{}' (Value: `{}' )",
                capitalize(&op.name),
                truncate(&op.argument, 128),
                v.name,
                truncate(&String::from_utf8_lossy(&v.data), 128)
            ),
            _ => "Matched \"Operator `Unconditional' with parameter `' against variable `' (Value: `' )".into(),
        };
        self.messages.push(Message {
            rule_id: rule.id(),
            msg,
            data,
            matched,
            file: rule.origin.file.to_string(),
            line: rule.origin.line,
            severity: a.severity,
            ver: a.ver.clone().unwrap_or_default(),
            rev: a.rev.clone().unwrap_or_default(),
            tags: a.tags.clone(),
            maturity: a.maturity.clone().unwrap_or_default(),
            accuracy: a.accuracy.clone().unwrap_or_default(),
        });
    }

    fn disrupt(&mut self, rule: &Rule, phase: u8) {
        let mut action = rule.actions.disruptive.clone();
        let mut status = rule.actions.status;
        if matches!(action, Some(Disruptive::Block)) {
            let default = self.rules.defaults.get(&phase);
            action = default.and_then(|d| d.disruptive.clone());
            status = status.or_else(|| default.and_then(|d| d.status));
        }
        let Some(action) = action else { return };
        if let Disruptive::Allow(scope) = action {
            if self.mode == EngineMode::On {
                self.allowed = Some(scope);
            }
            return;
        }
        if self.mode != EngineMode::On {
            return;
        }
        self.intervention = match action {
            Disruptive::Deny => Some(Intervention {
                rule_id: rule.id(),
                status: status.unwrap_or(403),
                drop: false,
                redirect: None,
            }),
            Disruptive::Drop => Some(Intervention {
                rule_id: rule.id(),
                status: status.unwrap_or(403),
                drop: true,
                redirect: None,
            }),
            Disruptive::Redirect(to) => Some(Intervention {
                rule_id: rule.id(),
                status: status.filter(|s| (300..400).contains(s)).unwrap_or(302),
                drop: false,
                redirect: Some(self.expand(&to).into_owned()),
            }),
            Disruptive::Pass | Disruptive::Block | Disruptive::Allow(_) => None,
        };
    }

    /// Resolves a link's variable list into values, exclusions and removed targets applied.
    fn resolve<'a>(&'a self, head: &Rule, specs: &'a [VariableSpec]) -> Vec<Val<'a>> {
        let mut excluded: SmallVec<[&VariableSpec; 8]> =
            specs.iter().filter(|s| s.exclude).collect();
        for (removal, target) in &self.removed_targets {
            let applies = match removal {
                Removal::Ids(ranges) => ranges.iter().any(|r| r.contains(head.id())),
                Removal::Tag(tag) => head.actions.tags.iter().any(|t| t == tag),
            };
            if applies {
                excluded.push(target);
            }
        }
        let mut out = Vec::with_capacity(16);
        for spec in specs.iter().filter(|s| !s.exclude) {
            let before = out.len();
            self.values_of(spec, &excluded, &mut out);
            if spec.count {
                let count = out.len() - before;
                out.truncate(before);
                out.push(Val {
                    origin: None,
                    name: Name::Owned(format!("&{}", spec.name)),
                    data: Cow::Owned(count.to_string().into_bytes()),
                });
            }
        }
        out
    }

    /// Appends the values of one (non-excluding) variable spec to `out`.
    fn values_of<'a>(
        &'a self,
        spec: &'a VariableSpec,
        excluded: &[&VariableSpec],
        out: &mut Vec<Val<'a>>,
    ) {
        let keep = |collection: &str, key: &str| {
            !excluded.iter().any(|x| {
                x.name == collection
                    && match &x.key {
                        None => true,
                        Some(VariableKey::Name(k)) => k.eq_ignore_ascii_case(key),
                        Some(VariableKey::Regex(re)) => re.is_match(key),
                    }
            })
        };
        let key_matches = |key: &str| match &spec.key {
            None => true,
            Some(VariableKey::Name(k)) => k.eq_ignore_ascii_case(key),
            Some(VariableKey::Regex(re)) => re.is_match(key),
        };
        let name = spec.name.as_str();
        let from = |out: &mut Vec<Val<'a>>,
                    collection: &'a Collection,
                    names: bool,
                    label: &'static str,
                    src: u32| {
            out.extend(
                collection
                    .0
                    .iter()
                    .enumerate()
                    .filter(|(_, (k, _))| key_matches(k) && keep(label, k))
                    .map(|(i, (k, v))| Val {
                        origin: source::origin(src, i),
                        name: Name::Keyed(label, k),
                        data: Cow::Borrowed(if names { k.as_bytes() } else { v }),
                    }),
            )
        };
        let single = |data: Vec<u8>| Val {
            origin: None,
            name: Name::Plain(name),
            data: Cow::Owned(data),
        };
        let fixed = |src: u32, data: Cow<'a, [u8]>| Val {
            origin: source::origin(src, 0),
            name: Name::Plain(name),
            data,
        };
        match name {
            "ARGS" => {
                from(out, &self.args_get, false, "ARGS", source::ARGS_GET);
                from(out, &self.args_post, false, "ARGS", source::ARGS_POST);
            }
            "ARGS_NAMES" => {
                from(
                    out,
                    &self.args_get,
                    true,
                    "ARGS_NAMES",
                    source::ARGS_GET_NAMES,
                );
                from(
                    out,
                    &self.args_post,
                    true,
                    "ARGS_NAMES",
                    source::ARGS_POST_NAMES,
                );
            }
            "ARGS_GET" => from(out, &self.args_get, false, "ARGS_GET", source::ARGS_GET),
            "ARGS_GET_NAMES" => from(
                out,
                &self.args_get,
                true,
                "ARGS_GET_NAMES",
                source::ARGS_GET_NAMES,
            ),
            "ARGS_POST" => from(out, &self.args_post, false, "ARGS_POST", source::ARGS_POST),
            "ARGS_POST_NAMES" => from(
                out,
                &self.args_post,
                true,
                "ARGS_POST_NAMES",
                source::ARGS_POST_NAMES,
            ),
            "ARGS_COMBINED_SIZE" => {
                let size: usize = self
                    .args_get
                    .0
                    .iter()
                    .chain(&self.args_post.0)
                    .map(|(k, v)| k.len() + v.len())
                    .sum();
                out.push(single(size.to_string().into_bytes()));
            }
            "REQUEST_HEADERS" => from(
                out,
                &self.headers,
                false,
                "REQUEST_HEADERS",
                source::HEADERS,
            ),
            "REQUEST_HEADERS_NAMES" => from(
                out,
                &self.headers,
                true,
                "REQUEST_HEADERS_NAMES",
                source::HEADER_NAMES,
            ),
            "REQUEST_COOKIES" => from(
                out,
                &self.cookies,
                false,
                "REQUEST_COOKIES",
                source::COOKIES,
            ),
            "REQUEST_COOKIES_NAMES" => from(
                out,
                &self.cookies,
                true,
                "REQUEST_COOKIES_NAMES",
                source::COOKIE_NAMES,
            ),
            "RESPONSE_HEADERS" => from(
                out,
                &self.response_headers,
                false,
                "RESPONSE_HEADERS",
                source::RESPONSE_HEADERS,
            ),
            "RESPONSE_HEADERS_NAMES" => from(
                out,
                &self.response_headers,
                true,
                "RESPONSE_HEADERS_NAMES",
                source::RESPONSE_HEADER_NAMES,
            ),
            "TX" => {
                let tx_value = |(k, v): (&'a String, &'a Vec<u8>)| Val {
                    origin: None,
                    name: Name::Keyed("TX", k),
                    data: Cow::Borrowed(v.as_slice()),
                };
                if let Some(VariableKey::Name(key)) = &spec.key {
                    // One named variable: no need to walk (and sort) them all.
                    // TX keys are kept lower-cased; most rules write them so already.
                    let key: Cow<'_, str> = if key.bytes().any(|b| b.is_ascii_uppercase()) {
                        Cow::Owned(key.to_ascii_lowercase())
                    } else {
                        Cow::Borrowed(key)
                    };
                    out.extend(
                        self.tx
                            .get_key_value(key.as_ref())
                            .filter(|(k, _)| keep("TX", k))
                            .map(tx_value),
                    );
                    return;
                }
                let mut tx: Vec<(&String, &Vec<u8>)> = self.tx.iter().collect();
                tx.sort();
                out.extend(
                    tx.into_iter()
                        .filter(|(k, _)| key_matches(k) && keep("TX", k))
                        .map(tx_value),
                );
            }
            "REQUEST_METHOD" => out.push(fixed(
                source::METHOD,
                Cow::Borrowed(self.head.method.as_bytes()),
            )),
            "REQUEST_PROTOCOL" => out.push(fixed(
                source::PROTOCOL,
                Cow::Borrowed(self.head.protocol.as_bytes()),
            )),
            "REQUEST_URI" | "REQUEST_URI_RAW" => {
                out.push(fixed(source::URI, Cow::Borrowed(self.head.uri.as_bytes())))
            }
            "REQUEST_LINE" => out.push(fixed(
                source::LINE,
                Cow::Owned(
                    format!(
                        "{} {} {}",
                        self.head.method, self.head.uri, self.head.protocol
                    )
                    .into_bytes(),
                ),
            )),
            "REQUEST_FILENAME" => out.push(fixed(
                source::FILENAME,
                Cow::Owned(path_of(&self.head.uri).into_bytes()),
            )),
            "REQUEST_BASENAME" => {
                let path = path_of(&self.head.uri);
                out.push(fixed(
                    source::BASENAME,
                    Cow::Owned(path.rsplit('/').next().unwrap_or("").as_bytes().to_vec()),
                ))
            }
            "QUERY_STRING" => out.push(fixed(
                source::QUERY,
                Cow::Borrowed(
                    self.head
                        .uri
                        .split_once('?')
                        .map_or(&b""[..], |(_, q)| q.as_bytes()),
                ),
            )),
            // An XML body is seen through XML (as in ModSecurity v2 and Coraza), not as raw text.
            "REQUEST_BODY" if self.reqbody_processor.as_deref() == Some("XML") => {}
            "REQUEST_BODY" => out.push(fixed(source::BODY, Cow::Borrowed(&self.request_body))),
            "REQUEST_BODY_LENGTH" => {
                out.push(single(self.request_body.len().to_string().into_bytes()))
            }
            "REQBODY_PROCESSOR" => out.extend(
                self.reqbody_processor
                    .as_ref()
                    .map(|p| single(p.clone().into_bytes())),
            ),
            "REQBODY_ERROR" => out.push(single(if self.reqbody_error.is_some() {
                b"1".to_vec()
            } else {
                b"0".to_vec()
            })),
            "REQBODY_ERROR_MSG" => out.push(single(
                self.reqbody_error.clone().unwrap_or_default().into_bytes(),
            )),
            "REMOTE_ADDR" => out.push(single(self.head.remote_addr.to_string().into_bytes())),
            "REMOTE_PORT" => out.push(single(self.head.remote_port.to_string().into_bytes())),
            "UNIQUE_ID" => out.push(single(self.head.unique_id.clone().into_bytes())),
            "RESPONSE_STATUS" => out.extend(
                self.response_status
                    .map(|s| single(s.to_string().into_bytes())),
            ),
            "RESPONSE_BODY" => out.push(fixed(
                source::RESPONSE_BODY,
                Cow::Borrowed(&self.response_body),
            )),
            "MATCHED_VAR" => out.extend(self.matched_var.as_ref().map(|v| single(v.data.clone()))),
            "MATCHED_VAR_NAME" => out.extend(
                self.matched_var
                    .as_ref()
                    .map(|v| single(v.name.clone().into_bytes())),
            ),
            "MATCHED_VARS" => out.extend(
                self.matched_vars
                    .iter()
                    .filter(|v| key_matches(&v.name))
                    .map(|v| Val {
                        origin: None,
                        name: Name::Keyed("MATCHED_VARS", &v.name),
                        data: Cow::Borrowed(v.data.as_slice()),
                    }),
            ),
            "MATCHED_VARS_NAMES" => out.extend(self.matched_vars.iter().map(|v| Val {
                origin: None,
                name: Name::Keyed("MATCHED_VARS_NAMES", &v.name),
                data: Cow::Borrowed(v.name.as_bytes()),
            })),
            "XML" => {
                let Some(doc) = &self.xml else {
                    return;
                };
                match &spec.key {
                    Some(VariableKey::Name(path)) if path.contains('@') => {
                        out.extend(doc.attributes.iter().enumerate().map(|(i, (_, v))| Val {
                            origin: source::origin(source::XML_ATTRIBUTES, i),
                            name: Name::Keyed("XML", path),
                            data: Cow::Borrowed(v.as_slice()),
                        }))
                    }
                    Some(VariableKey::Name(path)) => out.push(Val {
                        origin: source::origin(source::XML_TEXT, 0),
                        name: Name::Keyed("XML", path),
                        data: Cow::Borrowed(doc.text.as_slice()),
                    }),
                    _ => out.push(single(doc.text.clone())),
                }
            }
            "FILES" | "FILES_NAMES" | "FILES_SIZES" => {
                let Some(m) = &self.multipart else {
                    return;
                };
                out.extend(
                    m.files
                        .iter()
                        .filter(|(field, _, _)| key_matches(field) && keep(name, field))
                        .map(|(field, file, size)| Val {
                            origin: None,
                            name: Name::Keyed(name, field),
                            data: match name {
                                "FILES" => Cow::Borrowed(file.as_bytes()),
                                "FILES_NAMES" => Cow::Borrowed(field.as_bytes()),
                                _ => Cow::Owned(size.to_string().into_bytes()),
                            },
                        }),
                )
            }
            "FILES_COMBINED_SIZE" => {
                let total: usize = self
                    .multipart
                    .as_ref()
                    .map_or(0, |m| m.files.iter().map(|f| f.2).sum());
                out.push(single(total.to_string().into_bytes()));
            }
            "MULTIPART_PART_HEADERS" => {
                let Some(m) = &self.multipart else {
                    return;
                };
                out.extend(
                    m.part_headers
                        .iter()
                        .filter(|(field, _)| key_matches(field) && keep(name, field))
                        .map(|(field, line)| Val {
                            origin: None,
                            name: Name::Keyed("MULTIPART_PART_HEADERS", field),
                            data: Cow::Borrowed(line.as_slice()),
                        }),
                )
            }
            flag if flag.starts_with("MULTIPART_") => {
                let Some(m) = &self.multipart else {
                    return;
                };
                let on = match flag {
                    "MULTIPART_STRICT_ERROR" => m.strict_error(),
                    "MULTIPART_UNMATCHED_BOUNDARY" => m.unmatched_boundary,
                    "MULTIPART_DATA_BEFORE" => m.data_before,
                    "MULTIPART_DATA_AFTER" => m.data_after,
                    "MULTIPART_HEADER_FOLDING" => m.header_folding,
                    "MULTIPART_LF_LINE" => m.lf_line,
                    "MULTIPART_INVALID_QUOTING" => m.invalid_quoting,
                    "MULTIPART_INVALID_PART" => m.invalid_part,
                    "MULTIPART_BOUNDARY_QUOTED" => m.boundary_quoted,
                    "MULTIPART_BOUNDARY_WHITESPACE" => m.boundary_whitespace,
                    _ => false,
                };
                out.push(single(if on { b"1".to_vec() } else { b"0".to_vec() }));
            }
            // Not collected (persistent collections and the like): no values.
            _ => {}
        }
    }

    /// Expands `%{…}` macros.
    fn expand<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !text.contains("%{") {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find("%{") {
            out.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[at..]);
                rest = "";
                break;
            };
            let name = &after[..end];
            out.push_str(&self.macro_value(name));
            rest = &after[end + 1..];
            if out.len() > MAX_TX_VALUE {
                break;
            }
        }
        out.push_str(rest);
        Cow::Owned(out)
    }

    fn macro_value(&self, name: &str) -> String {
        let (collection, key) = match name.split_once('.') {
            Some((c, k)) => (c.to_ascii_uppercase(), Some(k)),
            None => (name.to_ascii_uppercase(), None),
        };
        let spec = VariableSpec {
            name: collection,
            key: key.map(|k| VariableKey::Name(k.to_string())),
            count: false,
            exclude: false,
        };
        if spec.name == "TX" {
            return key
                .and_then(|k| self.tx.get(&k.to_ascii_lowercase()))
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
        }
        let mut values = Vec::new();
        self.values_of(&spec, &[], &mut values);
        values
            .first()
            .map(|v| String::from_utf8_lossy(&v.data).into_owned())
            .unwrap_or_default()
    }
}

/// Macro expansion for operator arguments during evaluation.
struct Macros<'a>(&'a Transaction);

impl Expand for Macros<'_> {
    fn expand<'t>(&self, text: &'t str) -> Cow<'t, str> {
        self.0.expand(text)
    }
}

fn capitalize(name: &str) -> String {
    let mut c = name.chars();
    match c.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

fn path_of(uri: &str) -> String {
    let path = uri.split(['?', '#']).next().unwrap_or("");
    // ModSecurity decodes the path for REQUEST_FILENAME.
    String::from_utf8_lossy(
        &Transform::UrlDecode
            .apply(path.as_bytes())
            .unwrap_or_else(|| path.as_bytes().to_vec()),
    )
    .into_owned()
}

/// `a=1&b=2` into (name, value) pairs, both URL-decoded.
fn parse_urlencoded(body: &[u8], separator: u8) -> Collection {
    let mut out = Collection::default();
    for pair in body.split(|&b| b == separator) {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        let decode = |x: &[u8]| Transform::UrlDecode.apply(x).unwrap_or_else(|| x.to_vec());
        out.push(String::from_utf8_lossy(&decode(k)).into_owned(), decode(v));
    }
    out
}

/// A rule set shared by many transactions.
pub type SharedRules = Arc<RuleSet>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Sources, compile};

    struct NoFiles;
    impl Sources for NoFiles {
        fn include(&self, _: &str, _: &str) -> Result<Vec<(String, String)>, String> {
            Err("no includes".into())
        }
        fn data(&self, _: &str, _: &str) -> Result<String, String> {
            Err("no data".into())
        }
    }

    fn rules(text: &str) -> Arc<RuleSet> {
        Arc::new(compile(text, "t.conf", &NoFiles).unwrap_or_else(|e| panic!("{e}")))
    }

    fn head(uri: &str, headers: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            method: "GET".into(),
            uri: uri.into(),
            protocol: "HTTP/1.1".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            remote_addr: "192.0.2.1".parse().unwrap(),
            remote_port: 5555,
            unique_id: "u1".into(),
        }
    }

    const SETUP: &str = "SecRuleEngine On\nSecRequestBodyAccess On\n\
        SecDefaultAction \"phase:1,log,auditlog,pass\"\nSecDefaultAction \"phase:2,log,auditlog,pass\"\n\
        SecAction \"id:900000,phase:1,pass,nolog,setvar:tx.critical_anomaly_score=5,setvar:tx.inbound_anomaly_score=0\"\n";

    #[test]
    fn anomaly_scoring_counts_every_matching_value() {
        let set = rules(&format!(
            "{SETUP}SecRule ARGS \"@rx (?i)union\\s+select\" \"id:1,phase:2,block,capture,t:none,t:urlDecodeUni,msg:'SQLi',logdata:'Matched %{{TX.0}} in %{{MATCHED_VAR_NAME}}',setvar:'tx.inbound_anomaly_score=+%{{tx.critical_anomaly_score}}'\"\n\
             SecRule TX:INBOUND_ANOMALY_SCORE \"@ge 10\" \"id:2,phase:2,deny,status:406,msg:'Too much: %{{TX.INBOUND_ANOMALY_SCORE}}'\"\n"
        ));
        let mut t = Transaction::new(
            set.clone(),
            head("/?a=1%20UNION%20SELECT%202&b=x&c=union+select", &[]),
        );
        t.process_request_headers();
        t.process_request_body(b"");
        assert_eq!(t.tx("inbound_anomaly_score"), Some(&b"10"[..]));
        let ids: Vec<u64> = t.messages().iter().map(|m| m.rule_id).collect();
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(t.messages()[0].data, "Matched union select in ARGS:c");
        assert_eq!(t.messages()[1].msg, "Too much: 10");
        assert_eq!(
            t.intervention().map(|i| (i.rule_id, i.status)),
            Some((2, 406))
        );
    }

    #[test]
    fn detection_only_logs_without_disrupting() {
        let set = rules(
            "SecRuleEngine DetectionOnly\nSecRule REQUEST_HEADERS:User-Agent \"@pm sqlmap\" \"id:5,phase:1,deny\"\n",
        );
        let mut t = Transaction::new(set.clone(), head("/", &[("User-Agent", "sqlmap/1.7")]));
        t.process_request_headers();
        assert_eq!(t.messages().len(), 1);
        assert!(t.intervention().is_none());
    }

    #[test]
    fn chains_exclusions_counts_and_skips() {
        let set = rules(&format!(
            "{SETUP}SecRule REQUEST_METHOD \"@streq GET\" \"id:10,phase:1,deny,chain\"\n  SecRule &ARGS \"@gt 2\" \"t:none\"\n\
             SecRule ARGS|!ARGS:safe \"@contains bad\" \"id:11,phase:1,pass,skipAfter:END\"\n\
             SecRule ARGS \"@rx .\" \"id:12,phase:1,deny\"\n\
             SecMarker END\n\
             SecRule REQUEST_COOKIES:sid \"@rx ^[0-9]+$\" \"id:13,phase:1,pass,setvar:tx.cookie_ok=1\"\n"
        ));
        // Three arguments: the chain completes and denies.
        let mut t = Transaction::new(set.clone(), head("/?a=1&b=2&c=3", &[]));
        t.process_request_headers();
        assert_eq!(t.intervention().map(|i| i.rule_id), Some(10));
        // Two arguments: no chain match; `bad` only in the excluded `safe` → rule 12 denies.
        let mut t = Transaction::new(
            set.clone(),
            head("/?safe=bad&x=1", &[("Cookie", "sid=123; other=x")]),
        );
        t.process_request_headers();
        assert_eq!(t.intervention().map(|i| i.rule_id), Some(12));
        // `bad` in another argument: skipAfter jumps over rule 12.
        let mut t = Transaction::new(set.clone(), head("/?q=bad", &[("Cookie", "sid=123")]));
        t.process_request_headers();
        assert!(t.intervention().is_none());
        assert_eq!(t.tx("cookie_ok"), Some(&b"1"[..]));
    }

    #[test]
    fn ctl_removes_rules_and_targets_at_runtime() {
        let set = rules(&format!(
            "{SETUP}SecRule REQUEST_FILENAME \"@beginsWith /admin\" \"id:20,phase:1,pass,nolog,ctl:ruleRemoveTargetById=22;ARGS:pwd,ctl:ruleRemoveById=23\"\n\
             SecRule ARGS \"@contains '\" \"id:22,phase:2,deny\"\n\
             SecRule ARGS \"@contains --\" \"id:23,phase:2,deny\"\n"
        ));
        let mut t = Transaction::new(set.clone(), head("/admin/login?pwd=a'b&note=x--y", &[]));
        t.process_request_headers();
        t.process_request_body(b"");
        assert!(t.intervention().is_none(), "{:?}", t.intervention());
        let mut t = Transaction::new(set.clone(), head("/other?pwd=a'b", &[]));
        t.process_request_headers();
        t.process_request_body(b"");
        assert_eq!(t.intervention().map(|i| i.rule_id), Some(22));
    }

    #[test]
    fn post_bodies_are_arguments() {
        let set = rules(&format!(
            "{SETUP}SecRule ARGS_POST:comment \"@contains <script\" \"id:30,phase:2,deny\"\n"
        ));
        let mut h = head(
            "/form",
            &[("Content-Type", "application/x-www-form-urlencoded")],
        );
        h.method = "POST".into();
        let mut t = Transaction::new(set.clone(), h);
        t.process_request_headers();
        t.process_request_body(b"name=x&comment=%3Cscript%3Ealert(1)");
        assert_eq!(t.intervention().map(|i| i.rule_id), Some(30));
    }

    #[test]
    fn json_and_xml_bodies_feed_the_rules() {
        let set = rules(&format!(
            "{SETUP}SecRule REQUEST_HEADERS:Content-Type \"@rx json\" \"id:50,phase:1,pass,nolog,ctl:requestBodyProcessor=JSON\"\n\
             SecRule REQUEST_HEADERS:Content-Type \"@rx xml\" \"id:51,phase:1,pass,nolog,ctl:requestBodyProcessor=XML\"\n\
             SecRule REQBODY_ERROR \"!@eq 0\" \"id:52,phase:2,deny,status:400\"\n\
             SecRule ARGS:json.user.name|XML:/*|XML://@* \"@contains jndi\" \"id:53,phase:2,deny\"\n"
        ));
        let post = |ct: &str, body: &[u8]| {
            let mut h = head("/api", &[("Content-Type", ct)]);
            h.method = "POST".into();
            let mut t = Transaction::new(set.clone(), h);
            t.process_request_headers();
            t.process_request_body(body);
            t.intervention().map(|i| i.rule_id)
        };
        assert_eq!(
            post("application/json", br#"{"user": {"name": "${jndi:x}"}}"#),
            Some(53)
        );
        assert_eq!(
            post("application/json", br#"{"user": {"other": "${jndi:x}"}}"#),
            None
        );
        assert_eq!(post("application/json", b"{broken"), Some(52));
        assert_eq!(post("application/xml", b"<a k=\"${jndi:x}\"/>"), Some(53));
        assert_eq!(post("text/xml", b"<a><b>${jndi:y}</b></a>"), Some(53));
        assert_eq!(post("text/xml", b"<a><b></a>"), Some(52));
    }

    #[test]
    fn multipart_bodies_give_files_and_part_headers() {
        let set = rules(&format!(
            "{SETUP}SecRule FILES \"@rx \\.php$\" \"id:60,phase:2,deny,status:403\"\n\
             SecRule MULTIPART_PART_HEADERS \"@rx (?i)^content-type\\s*:\\s*text/x-evil\" \"id:61,phase:2,deny,status:406\"\n\
             SecRule MULTIPART_STRICT_ERROR \"!@eq 0\" \"id:62,phase:2,deny,status:400\"\n\
             SecRule ARGS:comment \"@contains attack\" \"id:63,phase:2,deny\"\n"
        ));
        let post = |body: &[u8]| {
            let mut h = head(
                "/upload",
                &[("Content-Type", "multipart/form-data; boundary=b1")],
            );
            h.method = "POST".into();
            let mut t = Transaction::new(set.clone(), h);
            t.process_request_headers();
            t.process_request_body(body);
            t.intervention().map(|i| i.rule_id)
        };
        let part = |headers: &str, data: &str| format!("--b1\r\n{headers}\r\n\r\n{data}\r\n");
        let file = part(
            "Content-Disposition: form-data; name=\"f\"; filename=\"shell.php\"",
            "<?php",
        );
        assert_eq!(post(format!("{file}--b1--\r\n").as_bytes()), Some(60));
        let typed = part(
            "Content-Disposition: form-data; name=\"g\"; filename=\"a.txt\"\r\nContent-Type: text/x-evil",
            "x",
        );
        assert_eq!(post(format!("{typed}--b1--\r\n").as_bytes()), Some(61));
        let arg = part(
            "Content-Disposition: form-data; name=\"comment\"",
            "an attack",
        );
        assert_eq!(post(format!("{arg}--b1--\r\n").as_bytes()), Some(63));
        assert_eq!(post(arg.as_bytes()), Some(62), "no closing boundary");
        let fine = part("Content-Disposition: form-data; name=\"comment\"", "fine");
        assert_eq!(post(format!("{fine}--b1--\r\n").as_bytes()), None);
    }

    #[test]
    fn multi_match_checks_every_transformation_step() {
        let set = rules(&format!(
            "{SETUP}SecRule ARGS \"@streq abc\" \"id:40,phase:1,deny,multiMatch,t:none,t:uppercase\"\n\
             SecRule ARGS \"@streq xyz\" \"id:41,phase:1,deny,t:none,t:uppercase\"\n"
        ));
        // Without multiMatch only the last step counts (XYZ ≠ xyz); with it, the value as
        // it came.
        let mut t = Transaction::new(set.clone(), head("/?x=xyz", &[]));
        t.process_request_headers();
        assert!(t.intervention().is_none());
        let mut t = Transaction::new(set.clone(), head("/?x=abc", &[]));
        t.process_request_headers();
        assert_eq!(t.intervention().map(|i| i.rule_id), Some(40));
    }
}

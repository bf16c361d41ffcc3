//! Rampart's web application firewall.
//!
//! SecLang, the rule language of ModSecurity and Coraza, read and run natively so that the
//! OWASP Core Rule Set works unchanged. This crate does no IO and has no unsafe code: callers
//! hand it rule text (with a resolver for `Include` and data files) and request data.
//!
//! - [`parser`]: rule files → directives (quoting, line continuations, positions), and the
//!   parts of a rule: variables, operator, actions.
//! - [`transform`]: the transformations (`t:`) over bytes.
//! - [`body`]: JSON, XML and multipart request body processors.
//! - [`engine`]: a transaction run through a rule set phase by phase (variables, chains,
//!   actions, macros, anomaly scoring, runtime `ctl`, interventions, audit messages).
//! - [`rules`]: directives compiled into a rule set (phases, chains, markers, defaults,
//!   updates and removals, engine settings), `Include` through the caller's [`rules::Sources`].
//! - [`prefilter`]: literal prefilters that let most values skip most regexes.
//! - [`operator`]: operators compiled once (regexes, phrase automata, address sets) and
//!   evaluated per value.

#![forbid(unsafe_code)]

pub mod body;
pub mod engine;
pub mod operator;
pub mod parser;
pub mod prefilter;
pub mod rules;
pub mod transform;

pub use engine::{Intervention, Message, RequestHead, TraceRule, TraceStep, Transaction};
pub use operator::{CompiledOperator, Expand, NoMacros, OpMatch};
pub use parser::{
    Action, Directive, KeyPattern, Operator, Origin, ParseError, VariableKey, VariableSpec,
    parse_actions, parse_operator, parse_variables, split_directives,
};
pub use rules::{RuleSet, Sources, compile};
pub use transform::{Transform, apply_all};

//! The `[firewall]` section and the firewall fields of listeners and routes: validated types
//! and their validation.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use regex::Regex;

use crate::error::FieldPath;
use crate::raw::*;
use crate::units::{parse_duration, parse_size};
use crate::validate::{Ctx, bad_choice, header_name, parse_cidr, valid_name};

/// Zone names every config knows, whether or not `[[firewall.zones]]` defines them.
pub const BUILTIN_ZONES: [&str; 5] = ["public", "partner", "internal", "mgmt", "vpn"];

/// The validated `[firewall]` section.
#[derive(Debug, Clone, Default)]
pub struct Firewall {
    pub ip_sets: Vec<IpSetSpec>,
    pub zones: Vec<Zone>,
    /// `None`: no policy configured; every zone reaches every route and pool. `Some`: what the
    /// rules do not list is denied.
    pub policy: Option<Vec<PolicyRule>>,
    pub acls: Vec<AclSpec>,
    pub rate_limits: Vec<RateLimitSpec>,
    /// Intrusion prevention; `None` when `[firewall.ips]` is absent.
    pub ips: Option<Ips>,
    /// Kernel enforcement; `None` unless `[firewall.nftables] enabled = true`.
    pub nftables: Option<Nftables>,
    /// Routed traffic allowed between zones, as (from, to) zone names.
    pub forward: Vec<(String, String)>,
}

/// `[firewall.nftables]`: Rampart's own nftables table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nftables {
    /// Table name (family `inet`); Rampart never touches another.
    pub table: String,
    pub reconcile_interval: Duration,
    /// Drop banned sources' traffic to every port, not only Rampart's listeners.
    pub ban_all_traffic: bool,
    /// The `nft` program.
    pub nft: PathBuf,
}

/// `[firewall.ips]`: scenarios, ban escalation and the allow-list.
#[derive(Debug, Clone)]
pub struct Ips {
    /// Never banned.
    pub allow: Vec<SourceRef>,
    pub ban_factor: u32,
    pub max_ban: Duration,
    pub forget_after: Duration,
    /// Sources remembered per scenario.
    pub max_sources: usize,
    /// Bans held at most (the one closest to its end makes room).
    pub max_bans: usize,
    pub scenarios: Vec<rampart_firewall::ScenarioSpec>,
}

/// The scenarios used when `[firewall.ips]` lists none: (name, events, capacity, leak, ban).
pub const DEFAULT_SCENARIOS: [(&str, &[&str], u32, u64, u64); 7] = [
    ("http-404-scan", &["not_found"], 10, 10, 600),
    ("http-scanner", &["scanner_user_agent"], 1, 60, 3600),
    (
        "http-blocked-flood",
        &["acl_block", "content_block", "waf_block"],
        20,
        5,
        600,
    ),
    ("http-rate-abuse", &["rate_limited"], 100, 1, 300),
    ("slow-clients", &["slow_client"], 3, 60, 600),
    ("protocol-abuse", &["protocol_violation"], 10, 10, 600),
    ("auth-bruteforce", &["auth_failure"], 10, 30, 900),
];

impl Firewall {
    pub fn rate_limit(&self, name: &str) -> Option<&RateLimitSpec> {
        self.rate_limits.iter().find(|r| r.name == name)
    }
}

/// A named IP set: inline entries plus an optional file (read, and re-read when it changes,
/// by the proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpSetSpec {
    pub name: String,
    pub file: Option<PathBuf>,
    pub entries: Vec<IpNet>,
}

/// A network, or a named IP set written `@name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SourceRef {
    Net(IpNet),
    Set(String),
}

#[derive(Debug, Clone)]
pub struct Zone {
    pub name: String,
    pub sources: Vec<SourceRef>,
    /// The listeners on which `sources` classify clients; empty = all.
    pub listeners: Vec<String>,
    /// ACL checked at accept for clients of this zone.
    pub acl: Option<String>,
}

/// One policy rule: these zones may reach these routes and pools.
#[derive(Debug, Clone)]
pub struct PolicyRule {
    pub zones: Vec<String>,
    /// `routes = ["*"]`.
    pub all: bool,
    pub routes: Vec<String>,
    pub pools: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AclSpec {
    pub name: String,
    pub allow: Vec<SourceRef>,
    pub deny: Vec<SourceRef>,
    /// What an address no entry contains gets.
    pub default_allow: bool,
}

/// What a rate limit counts by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateKey {
    ClientIp,
    Header(http::HeaderName),
    Route,
    Zone,
    Listener,
}

impl RateKey {
    /// Known when a connection is accepted (before any request).
    pub fn at_accept(&self) -> bool {
        matches!(self, RateKey::ClientIp | RateKey::Zone | RateKey::Listener)
    }
}

#[derive(Debug, Clone)]
pub struct RateLimitSpec {
    pub name: String,
    /// `count` requests (or connections) per `period`.
    pub count: u32,
    pub period: Duration,
    /// Admitted back to back from a fresh key.
    pub burst: u32,
    pub key: Vec<RateKey>,
    /// Keys remembered at most; the table evicts beyond this.
    pub max_keys: usize,
}

/// Where a deny pattern looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyOn {
    Path,
    Query,
    Header(http::HeaderName),
}

#[derive(Debug, Clone)]
pub struct DenyRule {
    pub on: DenyOn,
    pub regex: Regex,
    /// The pattern as written, for logs.
    pub label: String,
}

/// A route's content filter.
#[derive(Debug, Clone, Default)]
pub struct RouteFilter {
    pub methods: Vec<http::Method>,
    /// Lower-case media types, `type/subtype` or `type/*`.
    pub content_types: Vec<String>,
    pub max_query_bytes: Option<usize>,
    /// Lower case, without the leading dot.
    pub blocked_extensions: Vec<String>,
    pub deny: Vec<DenyRule>,
    pub scrub_response_headers: Vec<http::HeaderName>,
}

const MAX_RATE_COUNT: i64 = 1_000_000_000;
const DEFAULT_MAX_KEYS: u64 = 100_000;

/// Parses `10/s`, `100/min`, `5/10s`: a count and the period it is spread over.
pub(crate) fn parse_rate(text: &str) -> Result<(u32, Duration), String> {
    let bad = || {
        format!(
            "invalid rate \"{text}\": expected COUNT/PERIOD such as \"10/s\", \"600/min\" or \"5/10s\""
        )
    };
    let (count, period) = text.split_once('/').ok_or_else(bad)?;
    let count: i64 = count.trim().parse().map_err(|_| bad())?;
    if !(1..=MAX_RATE_COUNT).contains(&count) {
        return Err(format!(
            "rate count {count} is out of range 1..={MAX_RATE_COUNT}"
        ));
    }
    let period = match period.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86_400),
        other => parse_duration(other).map_err(|_| bad())?,
    };
    if period.is_zero() || period > Duration::from_secs(86_400 * 366) {
        return Err(format!(
            "rate period in \"{text}\" must be between 1ns and a year"
        ));
    }
    Ok((count as u32, period))
}

fn source_refs(
    ctx: &mut Ctx<'_>,
    path: &FieldPath,
    raw: &[String],
    sets: &HashSet<String>,
) -> Vec<SourceRef> {
    let mut out = Vec::new();
    for (i, text) in raw.iter().enumerate() {
        let p = path.index(i);
        if let Some(name) = text.strip_prefix('@') {
            if sets.contains(name) {
                out.push(SourceRef::Set(name.to_string()));
            } else {
                ctx.error(&p, format!("no IP set named \"{name}\""));
            }
        } else if let Some(net) = parse_cidr(ctx, &p, text.trim()) {
            out.push(SourceRef::Net(net));
        }
    }
    out
}

/// Checks names for validity and uniqueness; returns the set of good names.
fn unique_names<'r, T>(
    ctx: &mut Ctx<'_>,
    path: &FieldPath,
    items: &'r [T],
    name_of: impl Fn(&'r T) -> &'r Option<String>,
    what: &str,
) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut names = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = path.index(i).key("name");
        let name = ctx.name(&p, name_of(item), what);
        if let Some(first) = seen.get(&name) {
            ctx.error(
                &p,
                format!("duplicate {what} name \"{name}\" (also at index {first})"),
            );
        } else {
            seen.insert(name.clone(), i);
        }
        names.push(name);
    }
    names
}

pub(crate) fn build_firewall(
    ctx: &mut Ctx<'_>,
    path: &FieldPath,
    raw: &RawFirewall,
    base: &Path,
) -> Firewall {
    // IP sets.
    let sets_path = path.key("ip_sets");
    let set_names = unique_names(ctx, &sets_path, &raw.ip_sets, |s| &s.name, "IP set");
    let mut ip_sets = Vec::new();
    for (i, (s, name)) in raw.ip_sets.iter().zip(&set_names).enumerate() {
        let p = sets_path.index(i);
        let file = s.file.as_ref().map(|f| ctx.file(&p.key("file"), base, f));
        let mut entries = Vec::new();
        for (j, e) in s.entries.iter().enumerate() {
            if let Some(net) = parse_cidr(ctx, &p.key("entries").index(j), e.trim()) {
                entries.push(net);
            }
        }
        if file.is_none() && s.entries.is_empty() {
            ctx.error(
                &p,
                format!("IP set \"{name}\" has neither a file nor entries"),
            );
        }
        ip_sets.push(IpSetSpec {
            name: name.clone(),
            file,
            entries,
        });
    }
    let known_sets: HashSet<String> = set_names.into_iter().collect();

    // ACLs.
    let acls_path = path.key("acls");
    let acl_names = unique_names(ctx, &acls_path, &raw.acls, |a| &a.name, "ACL");
    let mut acls = Vec::new();
    for (i, (a, name)) in raw.acls.iter().zip(&acl_names).enumerate() {
        let p = acls_path.index(i);
        let allow = source_refs(ctx, &p.key("allow"), &a.allow, &known_sets);
        let deny = source_refs(ctx, &p.key("deny"), &a.deny, &known_sets);
        for (j, d) in deny.iter().enumerate() {
            if allow.contains(d) {
                let what = match d {
                    SourceRef::Net(n) => n.to_string(),
                    SourceRef::Set(s) => format!("@{s}"),
                };
                ctx.error(
                    &p.key("deny").index(j),
                    format!("contradictory: {what} is both allowed and denied in ACL \"{name}\""),
                );
            }
        }
        let default_allow = match a.default.as_deref() {
            None | Some("allow") => true,
            Some("deny") => false,
            Some(other) => {
                bad_choice(ctx, &p.key("default"), Some(other), &["allow", "deny"]);
                true
            }
        };
        if allow.is_empty() && deny.is_empty() && a.allow.is_empty() && a.deny.is_empty() {
            ctx.error(&p, format!("ACL \"{name}\" has no allow or deny entries"));
        }
        acls.push(AclSpec {
            name: name.clone(),
            allow,
            deny,
            default_allow,
        });
    }
    let known_acls: HashSet<String> = acl_names.into_iter().collect();

    // Zones.
    let zones_path = path.key("zones");
    let zone_names = unique_names(ctx, &zones_path, &raw.zones, |z| &z.name, "zone");
    let mut zones: Vec<Zone> = Vec::new();
    for (i, (z, name)) in raw.zones.iter().zip(&zone_names).enumerate() {
        let p = zones_path.index(i);
        let sources = source_refs(ctx, &p.key("sources"), &z.sources, &known_sets);
        if let Some(acl) = &z.acl
            && !known_acls.contains(acl)
        {
            ctx.error(&p.key("acl"), format!("no ACL named \"{acl}\""));
        }
        // The same network in two zones that apply on a common listener is ambiguous.
        for (j, src) in sources.iter().enumerate() {
            let clash = zones.iter().find(|other| {
                other.sources.contains(src)
                    && (other.listeners.is_empty()
                        || z.listeners.is_empty()
                        || other.listeners.iter().any(|l| z.listeners.contains(l)))
            });
            if let Some(other) = clash {
                ctx.error(
                    &p.key("sources").index(j),
                    format!(
                        "contradictory: {} is also a source of zone \"{}\"",
                        z.sources[j], other.name
                    ),
                );
            }
        }
        zones.push(Zone {
            name: name.clone(),
            sources,
            listeners: z.listeners.clone(),
            acl: z.acl.clone(),
        });
    }

    // Rate limits.
    let rl_path = path.key("rate_limits");
    let rl_names = unique_names(ctx, &rl_path, &raw.rate_limits, |r| &r.name, "rate limit");
    let mut rate_limits = Vec::new();
    for (i, (r, name)) in raw.rate_limits.iter().zip(&rl_names).enumerate() {
        let p = rl_path.index(i);
        let (count, period) = match &r.rate {
            None => {
                ctx.error(&p.key("rate"), "missing rate (such as \"10/s\")");
                (1, Duration::from_secs(1))
            }
            Some(text) => parse_rate(text).unwrap_or_else(|e| {
                ctx.error(&p.key("rate"), e);
                (1, Duration::from_secs(1))
            }),
        };
        let burst = ctx.int(&p.key("burst"), r.burst, 1, 1, 1_000_000) as u32;
        let max_keys = ctx.int(
            &p.key("max_keys"),
            r.max_keys,
            DEFAULT_MAX_KEYS,
            1,
            10_000_000,
        ) as usize;
        let mut key = Vec::new();
        for (j, part) in r.key.iter().enumerate() {
            let kp = p.key("key").index(j);
            let parsed = match part.as_str() {
                "client_ip" => Some(RateKey::ClientIp),
                "route" => Some(RateKey::Route),
                "zone" => Some(RateKey::Zone),
                "listener" => Some(RateKey::Listener),
                other => match other.strip_prefix("header:") {
                    Some(h) => header_name(ctx, &kp, &Some(h.to_string())).map(RateKey::Header),
                    None => {
                        bad_choice(
                            ctx,
                            &kp,
                            Some(other),
                            &["client_ip", "header:NAME", "route", "zone", "listener"],
                        );
                        None
                    }
                },
            };
            if let Some(k) = parsed {
                if key.contains(&k) {
                    ctx.error(&kp, format!("key part \"{part}\" is listed twice"));
                } else {
                    key.push(k);
                }
            }
        }
        if r.key.is_empty() {
            key.push(RateKey::ClientIp);
        }
        rate_limits.push(RateLimitSpec {
            name: name.clone(),
            count,
            period,
            burst,
            key,
            max_keys,
        });
    }

    let ips = raw
        .ips
        .as_ref()
        .map(|i| build_ips(ctx, &path.key("ips"), i, &known_sets));
    let nftables = raw
        .nftables
        .as_ref()
        .and_then(|n| build_nftables(ctx, &path.key("nftables"), n));
    let forward = build_forward(ctx, &path.key("forward"), &raw.forward, &zones);
    Firewall {
        ip_sets,
        zones,
        policy: None,
        acls,
        rate_limits,
        ips,
        nftables,
        forward,
    }
}

/// `[[firewall.forward]]`: `to` zones must have source networks (that is how their traffic is
/// recognised); a `from` zone without any means every source.
fn build_forward(
    ctx: &mut Ctx<'_>,
    path: &FieldPath,
    raw: &[RawForwardRule],
    zones: &[Zone],
) -> Vec<(String, String)> {
    let mut known: HashSet<String> = BUILTIN_ZONES.iter().map(|z| z.to_string()).collect();
    known.extend(zones.iter().map(|z| z.name.clone()));
    let has_sources = |name: &str| {
        zones
            .iter()
            .any(|z| z.name == name && !z.sources.is_empty())
    };
    let mut out = Vec::new();
    for (i, rule) in raw.iter().enumerate() {
        let p = path.index(i);
        if rule.from.is_empty() {
            ctx.error(
                &p.key("from"),
                "a forward rule needs at least one zone to come from",
            );
        }
        if rule.to.is_empty() {
            ctx.error(
                &p.key("to"),
                "a forward rule needs at least one zone to go to",
            );
        }
        for (j, z) in rule.from.iter().enumerate() {
            if !known.contains(z) {
                ctx.error(&p.key("from").index(j), format!("unknown zone \"{z}\""));
            }
        }
        for (j, z) in rule.to.iter().enumerate() {
            if !known.contains(z) {
                ctx.error(&p.key("to").index(j), format!("unknown zone \"{z}\""));
            } else if !has_sources(z) {
                ctx.error(
                    &p.key("to").index(j),
                    format!(
                        "zone \"{z}\" has no source networks, so traffic to it cannot be recognised"
                    ),
                );
            }
        }
        for from in &rule.from {
            for to in &rule.to {
                if from != to && !out.contains(&(from.clone(), to.clone())) {
                    out.push((from.clone(), to.clone()));
                }
            }
        }
    }
    out
}

fn build_nftables(ctx: &mut Ctx<'_>, path: &FieldPath, raw: &RawNftables) -> Option<Nftables> {
    let table = raw.table.clone().unwrap_or_else(|| "rampart".into());
    let valid = table.len() <= 32
        && table.starts_with(|c: char| c.is_ascii_alphabetic())
        && table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        ctx.error(
            &path.key("table"),
            format!("invalid nftables table name \"{table}\": a letter, then up to 31 letters, digits or _"),
        );
    }
    let reconcile_interval = ctx.duration(
        &path.key("reconcile_interval"),
        &raw.reconcile_interval,
        Duration::from_secs(10),
    );
    let nft = PathBuf::from(raw.nft.clone().unwrap_or_else(|| "nft".into()));
    if raw.nft.as_deref() == Some("") {
        ctx.error(&path.key("nft"), "empty; the nft program's name or path");
    }
    raw.enabled.unwrap_or(false).then_some(Nftables {
        table,
        reconcile_interval,
        ban_all_traffic: raw.ban_all_traffic.unwrap_or(false),
        nft,
    })
}

fn build_ips(ctx: &mut Ctx<'_>, path: &FieldPath, raw: &RawIps, sets: &HashSet<String>) -> Ips {
    let allow = source_refs(ctx, &path.key("allow"), &raw.allow, sets);
    let ban_factor = ctx.int(&path.key("ban_factor"), raw.ban_factor, 2, 1, 1000) as u32;
    let max_ban = ctx.duration(
        &path.key("max_ban"),
        &raw.max_ban,
        Duration::from_secs(7 * 86_400),
    );
    let forget_after = ctx.duration(
        &path.key("forget_after"),
        &raw.forget_after,
        Duration::from_secs(86_400),
    );
    for (key, value) in [("max_ban", max_ban), ("forget_after", forget_after)] {
        if value > rampart_firewall::MAX_BAN {
            ctx.error(&path.key(key), "at most 366 days");
        }
    }
    let max_bans = ctx.int(
        &path.key("max_bans"),
        raw.max_bans,
        rampart_firewall::DEFAULT_MAX_BANS as u64,
        1,
        10_000_000,
    ) as usize;
    let max_sources = ctx.int(
        &path.key("max_sources"),
        raw.max_sources,
        100_000,
        1,
        10_000_000,
    ) as usize;
    let scenarios = match &raw.scenarios {
        None => DEFAULT_SCENARIOS
            .iter()
            .map(
                |(name, events, capacity, leak, ban)| rampart_firewall::ScenarioSpec {
                    name: name.to_string(),
                    events: events
                        .iter()
                        .filter_map(|e| rampart_firewall::EventKind::parse(e))
                        .collect(),
                    capacity: *capacity,
                    leak: Duration::from_secs(*leak),
                    ban: Duration::from_secs(*ban),
                },
            )
            .collect(),
        Some(list) => {
            let sp = path.key("scenarios");
            let names = unique_names(ctx, &sp, list, |s| &s.name, "scenario");
            let mut out = Vec::new();
            for (i, (s, name)) in list.iter().zip(names).enumerate() {
                let p = sp.index(i);
                let mut events = Vec::new();
                for (j, e) in s.events.iter().enumerate() {
                    match rampart_firewall::EventKind::parse(e) {
                        Some(kind) if events.contains(&kind) => ctx.error(
                            &p.key("events").index(j),
                            format!("event \"{e}\" is listed twice"),
                        ),
                        Some(kind) => events.push(kind),
                        None => {
                            let names: Vec<&str> = rampart_firewall::EventKind::ALL
                                .iter()
                                .map(|k| k.name())
                                .collect();
                            bad_choice(ctx, &p.key("events").index(j), Some(e), &names);
                        }
                    }
                }
                if s.events.is_empty() {
                    ctx.error(&p.key("events"), "a scenario needs at least one event");
                }
                let capacity = ctx.int(&p.key("capacity"), s.capacity, 10, 1, 1_000_000) as u32;
                let leak = ctx.duration(&p.key("leak"), &s.leak, Duration::from_secs(1));
                let ban = ctx.duration(&p.key("ban"), &s.ban, Duration::from_secs(600));
                if ban > max_ban {
                    ctx.error(
                        &p.key("ban"),
                        format!("contradictory: a first ban of {ban:?} is longer than max_ban ({max_ban:?})"),
                    );
                }
                out.push(rampart_firewall::ScenarioSpec {
                    name,
                    events,
                    capacity,
                    leak,
                    ban,
                });
            }
            out
        }
    };
    Ips {
        allow,
        ban_factor,
        max_ban,
        forget_after,
        max_sources,
        max_bans,
        scenarios,
    }
}

/// Zone names a config may use: the built-in ones and those `[[firewall.zones]]` defines.
pub(crate) fn known_zones(firewall: &Firewall) -> HashSet<String> {
    BUILTIN_ZONES
        .iter()
        .map(|z| z.to_string())
        .chain(firewall.zones.iter().map(|z| z.name.clone()))
        .collect()
}

/// The policy rules; needs the routes and pools to check the names.
pub(crate) fn build_policy(
    ctx: &mut Ctx<'_>,
    path: &FieldPath,
    raw: &[RawPolicyRule],
    zones: &HashSet<String>,
    routes: &[&str],
    pools: &[&str],
) -> Vec<PolicyRule> {
    let mut rules = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let p = path.index(i);
        if r.zones.is_empty() {
            ctx.error(&p.key("zones"), "a policy rule needs at least one zone");
        }
        for (j, z) in r.zones.iter().enumerate() {
            if !zones.contains(z) {
                ctx.error(&p.key("zones").index(j), format!("unknown zone \"{z}\""));
            }
        }
        let all = r.routes.iter().any(|x| x == "*");
        if all && r.routes.len() > 1 {
            ctx.error(
                &p.key("routes"),
                "\"*\" already means every route; list nothing else",
            );
        }
        for (j, x) in r.routes.iter().enumerate() {
            if x != "*" && !routes.contains(&x.as_str()) {
                ctx.error(&p.key("routes").index(j), format!("no route named \"{x}\""));
            }
        }
        for (j, x) in r.pools.iter().enumerate() {
            if !pools.contains(&x.as_str()) {
                ctx.error(&p.key("pools").index(j), format!("no pool named \"{x}\""));
            }
        }
        if r.routes.is_empty() && r.pools.is_empty() {
            ctx.error(&p, "a policy rule must list routes or pools");
        }
        rules.push(PolicyRule {
            zones: r.zones.clone(),
            all,
            routes: r.routes.iter().filter(|x| *x != "*").cloned().collect(),
            pools: r.pools.clone(),
        });
    }
    rules
}

pub(crate) fn build_route_filter(
    ctx: &mut Ctx<'_>,
    path: &FieldPath,
    raw: &RawRouteFilter,
) -> RouteFilter {
    let mut filter = RouteFilter::default();
    for (i, m) in raw.methods.iter().enumerate() {
        let upper = m.to_ascii_uppercase();
        match http::Method::from_bytes(upper.as_bytes()) {
            Ok(method) if !m.is_empty() => filter.methods.push(method),
            _ => ctx.error(
                &path.key("methods").index(i),
                format!("invalid method \"{m}\""),
            ),
        }
    }
    for (i, t) in raw.content_types.iter().enumerate() {
        let lower = t.trim().to_ascii_lowercase();
        let ok = lower.split_once('/').is_some_and(|(kind, sub)| {
            let token = |s: &str| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
            };
            (kind == "*" && sub == "*") || (token(kind) && (sub == "*" || token(sub)))
        });
        if ok {
            filter.content_types.push(lower);
        } else {
            ctx.error(
                &path.key("content_types").index(i),
                format!("invalid media type \"{t}\" (expected type/subtype or type/*)"),
            );
        }
    }
    if let Some(text) = &raw.max_query_bytes {
        match parse_size(text) {
            Ok(n) => filter.max_query_bytes = Some(usize::try_from(n).unwrap_or(usize::MAX)),
            Err(e) => ctx.error(&path.key("max_query_bytes"), e),
        }
    }
    for (i, e) in raw.blocked_extensions.iter().enumerate() {
        let ext = e.trim().trim_start_matches('.').to_ascii_lowercase();
        if ext.is_empty() || ext.contains('/') || ext.chars().any(char::is_whitespace) {
            ctx.error(
                &path.key("blocked_extensions").index(i),
                format!("invalid file extension \"{e}\""),
            );
        } else {
            filter.blocked_extensions.push(ext);
        }
    }
    for (i, d) in raw.deny.iter().enumerate() {
        let p = path.key("deny").index(i);
        let on = match d.target.as_deref() {
            Some("path") => Some(DenyOn::Path),
            Some("query") => Some(DenyOn::Query),
            Some("header") => header_name(ctx, &p.key("name"), &d.name).map(DenyOn::Header),
            other => {
                bad_choice(ctx, &p.key("target"), other, &["path", "query", "header"]);
                None
            }
        };
        if d.name.is_some() && !matches!(d.target.as_deref(), Some("header")) {
            ctx.error(&p.key("name"), "\"name\" is only for target = \"header\"");
        }
        let insensitive = !d.case_sensitive.unwrap_or(false);
        let flag = if insensitive { "(?i)" } else { "" };
        let (pattern, label) = match (&d.contains, &d.regex) {
            (Some(lit), None) if !lit.is_empty() => {
                (format!("{flag}{}", regex::escape(lit)), lit.clone())
            }
            (None, Some(re)) => (format!("{flag}{re}"), re.clone()),
            (Some(_), Some(_)) => {
                ctx.error(&p, "give either \"contains\" or \"regex\", not both");
                continue;
            }
            _ => {
                ctx.error(&p, "missing \"contains\" (a literal) or \"regex\"");
                continue;
            }
        };
        let field = if d.regex.is_some() {
            "regex"
        } else {
            "contains"
        };
        let regex = ctx.regex(&p.key(field), &pattern);
        if let (Some(on), Some(regex)) = (on, regex) {
            filter.deny.push(DenyRule { on, regex, label });
        }
    }
    for (i, h) in raw.scrub_response_headers.iter().enumerate() {
        if let Some(name) = header_name(
            ctx,
            &path.key("scrub_response_headers").index(i),
            &Some(h.clone()),
        ) {
            filter.scrub_response_headers.push(name);
        }
    }
    filter
}

/// Checks a zone name given on a listener.
pub(crate) fn check_zone_name(
    ctx: &mut Ctx<'_>,
    path: &FieldPath,
    zone: &str,
    known: &HashSet<String>,
) {
    if !valid_name(zone) {
        ctx.error(path, format!("invalid zone name \"{zone}\""));
    } else if !known.contains(zone) {
        let mut names: Vec<&String> = known.iter().collect();
        names.sort();
        let names: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        ctx.error(
            path,
            format!(
                "unknown zone \"{zone}\"; known zones are {}",
                names.join(", ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("10/s").unwrap(), (10, Duration::from_secs(1)));
        assert_eq!(
            parse_rate("600/min").unwrap(),
            (600, Duration::from_secs(60))
        );
        assert_eq!(parse_rate("5/10s").unwrap(), (5, Duration::from_secs(10)));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("10").is_err());
        assert!(parse_rate("x/s").is_err());
        assert!(parse_rate("10/fortnight").is_err());
    }
}

//! Phase two: raw structs → [`Snapshot`], collecting every error.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use regex::Regex;

use crate::error::{ConfigError, ConfigErrors, FieldPath, Segment, line_column};
use crate::raw::*;
use crate::snapshot::*;
use crate::units::{parse_duration, parse_size};

/// Regexes from config are user input: bound their compiled size.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

pub(crate) fn load(text: &str, origin: &str, base_dir: &Path) -> Result<Snapshot, ConfigErrors> {
    let single = |position: Option<(usize, usize)>, path: FieldPath, message: String| {
        ConfigErrors(vec![ConfigError {
            origin: origin.to_string(),
            position,
            path,
            message,
        }])
    };
    // Syntax first: nothing else can be checked in a file that does not parse.
    let doc = toml_edit::Document::parse(text.to_string()).map_err(|e| {
        let position = e.span().map(|s| line_column(text, s.start));
        single(
            position,
            FieldPath::root(),
            format!("TOML syntax error: {}", e.message()),
        )
    })?;

    let mut unknown: Vec<FieldPath> = Vec::new();
    let deserializer = toml::Deserializer::parse(text).map_err(|e| {
        let position = e.span().map(|s| line_column(text, s.start));
        single(
            position,
            FieldPath::root(),
            format!("TOML syntax error: {}", e.message()),
        )
    })?;
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(ignored_path(&path));
    let ignored = serde_ignored::Deserializer::new(deserializer, &mut on_unknown);
    let raw: Result<RawConfig, _> = serde_path_to_error::deserialize(ignored);

    let mut ctx = Ctx {
        origin,
        text,
        doc: &doc,
        errors: Vec::new(),
    };
    let raw = match raw {
        Ok(raw) => raw,
        Err(e) => {
            let path = error_path(e.path());
            let inner = e.into_inner();
            let message = inner.message().to_string();
            let position = inner.span().map(|s| line_column(text, s.start));
            let mut error = ctx.make(&path, message);
            if position.is_some() {
                error.position = position;
            }
            return Err(ConfigErrors(vec![error]));
        }
    };
    for path in unknown {
        let key = match path.0.last() {
            Some(Segment::Key(k)) => k.clone(),
            _ => String::new(),
        };
        ctx.error(&path, format!("unknown key \"{key}\""));
    }

    let snapshot = build(&mut ctx, raw, base_dir, origin, text);
    if ctx.errors.is_empty() {
        Ok(snapshot)
    } else {
        let mut errors = ctx.errors;
        errors.sort_by_key(|e| e.position.unwrap_or((usize::MAX, usize::MAX)));
        Err(ConfigErrors(errors))
    }
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> FieldPath {
    fn walk(path: &serde_ignored::Path<'_>, out: &mut Vec<Segment>) {
        use serde_ignored::Path as P;
        match path {
            P::Root => {}
            P::Seq { parent, index } => {
                walk(parent, out);
                out.push(Segment::Index(*index));
            }
            P::Map { parent, key } => {
                walk(parent, out);
                out.push(Segment::Key(key.clone()));
            }
            P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
                walk(parent, out)
            }
        }
    }
    let mut segments = Vec::new();
    walk(path, &mut segments);
    FieldPath(segments)
}

fn error_path(path: &serde_path_to_error::Path) -> FieldPath {
    let mut segments = Vec::new();
    for seg in path.iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => segments.push(Segment::Index(*index)),
            serde_path_to_error::Segment::Map { key } => segments.push(Segment::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => {
                segments.push(Segment::Key(variant.clone()))
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    FieldPath(segments)
}

pub(crate) struct Ctx<'a> {
    origin: &'a str,
    text: &'a str,
    doc: &'a toml_edit::Document<String>,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    pub(crate) fn make(&self, path: &FieldPath, message: String) -> ConfigError {
        let position = crate::locate::offset_of(self.doc, path).map(|o| line_column(self.text, o));
        ConfigError {
            origin: self.origin.to_string(),
            position,
            path: path.clone(),
            message,
        }
    }

    pub(crate) fn error(&mut self, path: &FieldPath, message: impl Into<String>) {
        let e = self.make(path, message.into());
        self.errors.push(e);
    }

    pub(crate) fn duration(
        &mut self,
        path: &FieldPath,
        value: &Option<String>,
        default: Duration,
    ) -> Duration {
        match value {
            None => default,
            Some(text) => match parse_duration(text) {
                Ok(d) if d.is_zero() => {
                    self.error(path, "must be greater than zero");
                    default
                }
                Ok(d) => d,
                Err(e) => {
                    self.error(path, e);
                    default
                }
            },
        }
    }

    pub(crate) fn opt_duration(
        &mut self,
        path: &FieldPath,
        value: &Option<String>,
    ) -> Option<Duration> {
        value
            .as_ref()
            .map(|_| self.duration(path, value, Duration::from_secs(1)))
    }

    pub(crate) fn size(&mut self, path: &FieldPath, value: &Option<String>, default: u64) -> u64 {
        match value {
            None => default,
            Some(text) => match parse_size(text) {
                Ok(0) => {
                    self.error(path, "must be greater than zero");
                    default
                }
                Ok(n) => n,
                Err(e) => {
                    self.error(path, e);
                    default
                }
            },
        }
    }

    /// A size with an upper bound; larger values are errors, not silently capped.
    pub(crate) fn size_at_most(
        &mut self,
        path: &FieldPath,
        value: &Option<String>,
        default: u64,
        max: u64,
    ) -> u64 {
        let n = self.size(path, value, default);
        if n > max {
            self.error(path, format!("{n} bytes is more than the maximum of {max}"));
            return default;
        }
        n
    }

    pub(crate) fn int(
        &mut self,
        path: &FieldPath,
        value: Option<i64>,
        default: u64,
        min: u64,
        max: u64,
    ) -> u64 {
        match value {
            None => default,
            Some(n) if n < min as i64 || n as u64 > max => {
                self.error(path, format!("{n} is out of range {min}..={max}"));
                default
            }
            Some(n) => n as u64,
        }
    }

    pub(crate) fn name(&mut self, path: &FieldPath, value: &Option<String>, what: &str) -> String {
        match value {
            None => {
                self.error(path, format!("missing {what} name"));
                String::new()
            }
            Some(n) if !valid_name(n) => {
                self.error(
                    path,
                    format!("invalid name \"{n}\": use 1-64 characters from a-z A-Z 0-9 _ - ."),
                );
                n.clone()
            }
            Some(n) => n.clone(),
        }
    }

    pub(crate) fn regex(&mut self, path: &FieldPath, pattern: &str) -> Option<Regex> {
        match regex::RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
        {
            Ok(r) => Some(r),
            Err(e) => {
                // The regex crate's message spans lines with a caret diagram; keep the last line.
                let text = e.to_string();
                let reason = text
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                self.error(
                    path,
                    format!(
                        "invalid regex \"{pattern}\": {}",
                        reason.trim().trim_start_matches("error: ")
                    ),
                );
                None
            }
        }
    }

    /// A Unix socket path: its directory must exist and the path fit `sun_path`.
    pub(crate) fn socket_path(&mut self, path: &FieldPath, base: &Path, value: &str) -> PathBuf {
        let p = base.join(value);
        // sun_path holds 108 bytes including the terminating NUL.
        const MAX_SOCKET_PATH: usize = 107;
        if value.is_empty() || value.ends_with('/') {
            self.error(path, "expected the path of a socket file".to_string());
        } else if p.as_os_str().len() > MAX_SOCKET_PATH {
            self.error(
                path,
                format!(
                    "socket path \"{}\" is {} bytes long; at most {MAX_SOCKET_PATH} fit a Unix socket address",
                    p.display(),
                    p.as_os_str().len()
                ),
            );
        } else if !p.parent().is_some_and(Path::is_dir) {
            self.error(
                path,
                format!("directory of \"{}\" does not exist", p.display()),
            );
        }
        p
    }

    pub(crate) fn file(&mut self, path: &FieldPath, base: &Path, value: &str) -> PathBuf {
        let p = base.join(value);
        if !p.is_file() {
            self.error(
                path,
                format!("file \"{}\" does not exist or is not a file", p.display()),
            );
        }
        p
    }
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// An IPv4 or IPv6 network in CIDR notation; a bare address is a single host.
pub(crate) fn parse_cidr(ctx: &mut Ctx<'_>, path: &FieldPath, text: &str) -> Option<ipnet::IpNet> {
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        if net.trunc() != net {
            ctx.error(
                path,
                format!(
                    "\"{text}\" has host bits set; the network is \"{}\"",
                    net.trunc()
                ),
            );
            return None;
        }
        return Some(net);
    }
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Some(ipnet::IpNet::from(ip));
    }
    ctx.error(
        path,
        format!(
            "\"{text}\" is not an IP network (expected CIDR such as \"10.0.0.0/8\" or an address)"
        ),
    );
    None
}

pub(crate) fn one_of<T: Copy>(
    ctx: &mut Ctx<'_>,
    path: &FieldPath,
    value: &Option<String>,
    default: T,
    choices: &[(&str, T)],
) -> T {
    let Some(text) = value else { return default };
    match choices.iter().find(|(name, _)| name == text) {
        Some((_, v)) => *v,
        None => {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            bad_choice(ctx, path, Some(text), &names);
            default
        }
    }
}

fn build(ctx: &mut Ctx<'_>, raw: RawConfig, base: &Path, origin: &str, text: &str) -> Snapshot {
    let root = FieldPath::root();
    let raw_listener_count = raw.listeners.len();
    let runtime = build_runtime(
        ctx,
        &root.key("runtime"),
        raw.runtime.unwrap_or_default(),
        base,
    );
    let firewall_path = root.key("firewall");
    let mut firewall = raw
        .firewall
        .as_ref()
        .map(|f| crate::firewall::build_firewall(ctx, &firewall_path, f, base))
        .unwrap_or_default();
    let certificates = build_certificates(ctx, &raw.certificates, base);
    let listeners = build_listeners(ctx, &raw.listeners, &certificates, base);
    let pools = build_pools(ctx, &raw.pools, base);
    let routes = build_routes(ctx, &raw.routes, &listeners, &pools);
    for (i, l) in listeners.iter().enumerate() {
        // Listeners that failed validation are left out, so find the raw index by name.
        let index = raw
            .listeners
            .iter()
            .position(|r| r.name.as_deref() == Some(l.name.as_str()))
            .unwrap_or(i);
        let lp = root.key("listeners").index(index);
        if let Some(p) = &l.pool
            && !pools.iter().any(|x| &x.name == p)
        {
            ctx.error(&lp.key("pool"), format!("no pool named \"{p}\""));
        }
        for (j, r) in l.sni.iter().enumerate() {
            if !pools.iter().any(|x| x.name == r.pool) {
                ctx.error(
                    &lp.key("sni").index(j).key("pool"),
                    format!("no pool named \"{}\"", r.pool),
                );
            }
        }
    }
    check_firewall_references(
        ctx,
        &raw.listeners,
        &raw.routes,
        raw.firewall.as_ref(),
        &mut firewall,
        (&listeners, &routes, &pools),
    );
    let waf = raw
        .waf
        .as_ref()
        .map(|w| crate::waf::build_waf(ctx, &root.key("waf"), w, base))
        .unwrap_or_default();
    for (i, r) in raw.routes.iter().enumerate() {
        if let Some(name) = &r.waf
            && waf.ruleset(name).is_none()
        {
            ctx.error(
                &root.key("routes").index(i).key("waf"),
                format!("no WAF rule set named \"{name}\""),
            );
        }
    }
    let observability = build_observability(ctx, raw.observability.unwrap_or_default());
    let admin = raw
        .admin
        .map(|a| build_admin(ctx, &root.key("admin"), a, base));

    let mut addresses: HashMap<SocketAddr, String> = HashMap::new();
    let mut claim = |ctx: &mut Ctx<'_>, path: FieldPath, addr: SocketAddr, owner: String| {
        if let Some(other) = addresses.get(&addr) {
            ctx.error(&path, format!("address {addr} is already used by {other}"));
        } else {
            addresses.insert(addr, owner);
        }
    };
    for (i, l) in listeners.iter().enumerate() {
        claim(
            ctx,
            root.key("listeners").index(i).key("address"),
            l.address,
            format!("listener \"{}\"", l.name),
        );
    }
    if let Some(addr) = observability.metrics_address {
        claim(
            ctx,
            root.key("observability").key("metrics_address"),
            addr,
            "the metrics listener".into(),
        );
    }
    if let Some(q) = &observability.query {
        claim(
            ctx,
            root.key("observability").key("query_address"),
            q.address,
            "the query API".into(),
        );
    }
    if let Some(a) = &admin {
        claim(
            ctx,
            root.key("admin").key("address"),
            a.address,
            "the admin listener".into(),
        );
    }
    if raw_listener_count == 0 {
        ctx.error(&root.key("listeners"), "at least one listener is required");
    }

    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    Snapshot {
        origin: origin.to_string(),
        source_hash: hasher.finish(),
        runtime,
        listeners,
        certificates,
        routes,
        pools,
        observability,
        admin,
        firewall,
        waf,
    }
}

/// Zones, ACLs and rate limits named by listeners and routes exist and fit where they are
/// used; the zone policy's names exist.
fn check_firewall_references(
    ctx: &mut Ctx<'_>,
    raw_listeners: &[RawListener],
    raw_routes: &[RawRoute],
    raw_firewall: Option<&RawFirewall>,
    firewall: &mut Firewall,
    (listeners, routes, pools): (&[Listener], &[Route], &[Pool]),
) {
    let root = FieldPath::root();
    let zones = crate::firewall::known_zones(firewall);
    let acl_known = |name: &str| firewall.acls.iter().any(|a| a.name == name);
    for (i, l) in raw_listeners.iter().enumerate() {
        let p = root.key("listeners").index(i);
        if let Some(zone) = &l.zone
            && valid_name(zone)
        {
            crate::firewall::check_zone_name(ctx, &p.key("zone"), zone, &zones);
        }
        if let Some(acl) = &l.acl
            && !acl_known(acl)
        {
            ctx.error(&p.key("acl"), format!("no ACL named \"{acl}\""));
        }
        if let Some(rate) = &l.connection_rate {
            match firewall.rate_limit(rate) {
                None => ctx.error(
                    &p.key("connection_rate"),
                    format!("no rate limit named \"{rate}\""),
                ),
                Some(spec) => {
                    if let Some(part) = spec.key.iter().find(|k| !k.at_accept()) {
                        ctx.error(
                            &p.key("connection_rate"),
                            format!(
                                "rate limit \"{rate}\" is keyed by {part:?}, which is not known when a connection is accepted (use client_ip, zone or listener)"
                            ),
                        );
                    }
                }
            }
        }
    }
    for (i, r) in raw_routes.iter().enumerate() {
        let p = root.key("routes").index(i);
        if let Some(acl) = &r.acl
            && !acl_known(acl)
        {
            ctx.error(&p.key("acl"), format!("no ACL named \"{acl}\""));
        }
        let mut seen = HashSet::new();
        for (j, name) in r.rate_limits.iter().enumerate() {
            if firewall.rate_limit(name).is_none() {
                ctx.error(
                    &p.key("rate_limits").index(j),
                    format!("no rate limit named \"{name}\""),
                );
            } else if !seen.insert(name) {
                ctx.error(
                    &p.key("rate_limits").index(j),
                    format!("rate limit \"{name}\" is listed twice"),
                );
            }
        }
    }
    for (i, z) in raw_firewall
        .map(|f| f.zones.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        for (j, l) in z.listeners.iter().enumerate() {
            if !listeners.iter().any(|x| &x.name == l) {
                ctx.error(
                    &root
                        .key("firewall")
                        .key("zones")
                        .index(i)
                        .key("listeners")
                        .index(j),
                    format!("no listener named \"{l}\""),
                );
            }
        }
    }
    if let Some(rules) = raw_firewall.and_then(|f| f.policy.as_ref()) {
        let route_names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
        let pool_names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        firewall.policy = Some(crate::firewall::build_policy(
            ctx,
            &root.key("firewall").key("policy"),
            rules,
            &zones,
            &route_names,
            &pool_names,
        ));
    }
}

fn build_runtime(ctx: &mut Ctx<'_>, path: &FieldPath, raw: RawRuntime, base: &Path) -> Runtime {
    Runtime {
        threads: ctx.int(&path.key("threads"), raw.threads, 0, 0, 1024) as usize,
        sticky_secret_file: raw
            .sticky_secret_file
            .as_ref()
            .map(|f| ctx.file(&path.key("sticky_secret_file"), base, f)),
        shutdown_grace: ctx.duration(
            &path.key("shutdown_grace"),
            &raw.shutdown_grace,
            Duration::from_secs(30),
        ),
        upgrade_socket: raw
            .upgrade_socket
            .as_ref()
            .map(|s| ctx.socket_path(&path.key("upgrade_socket"), base, s)),
    }
}

fn build_certificates(ctx: &mut Ctx<'_>, raw: &[RawCertificate], base: &Path) -> Vec<Certificate> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        let path = FieldPath::root().key("certificates").index(i);
        let name = ctx.name(&path.key("name"), &c.name, "certificate");
        if !seen.insert(name.clone()) {
            ctx.error(
                &path.key("name"),
                format!("duplicate certificate name \"{name}\""),
            );
        }
        let cert = match &c.cert {
            Some(f) => ctx.file(&path.key("cert"), base, f),
            None => {
                ctx.error(&path, "missing \"cert\" (PEM certificate chain file)");
                PathBuf::new()
            }
        };
        let key = match &c.key {
            Some(f) => ctx.file(&path.key("key"), base, f),
            None => {
                ctx.error(&path, "missing \"key\" (PEM private key file)");
                PathBuf::new()
            }
        };
        for (j, n) in c.server_names.iter().enumerate() {
            if !valid_host_pattern(n) {
                ctx.error(
                    &path.key("server_names").index(j),
                    format!("invalid server name \"{n}\""),
                );
            }
        }
        out.push(Certificate {
            name,
            cert,
            key,
            server_names: c
                .server_names
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect(),
        });
    }
    out
}

fn valid_host_pattern(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

fn parse_socket_addr(
    ctx: &mut Ctx<'_>,
    path: &FieldPath,
    value: &Option<String>,
    default: Option<&str>,
) -> Option<SocketAddr> {
    let text = match (value, default) {
        (Some(t), _) => t.as_str(),
        (None, Some(d)) => d,
        (None, None) => {
            ctx.error(path, "missing address (e.g. \"127.0.0.1:8080\")");
            return None;
        }
    };
    match SocketAddr::from_str(text) {
        Ok(a) => Some(a),
        Err(_) => {
            ctx.error(
                path,
                format!("invalid address \"{text}\": expected IP:PORT such as \"0.0.0.0:8080\" or \"[::1]:8443\""),
            );
            None
        }
    }
}

fn build_listeners(
    ctx: &mut Ctx<'_>,
    raw: &[RawListener],
    certs: &[Certificate],
    base: &Path,
) -> Vec<Listener> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let path = FieldPath::root().key("listeners").index(i);
        let name = ctx.name(&path.key("name"), &l.name, "listener");
        if !seen.insert(name.clone()) {
            ctx.error(
                &path.key("name"),
                format!("duplicate listener name \"{name}\""),
            );
        }
        let address = parse_socket_addr(ctx, &path.key("address"), &l.address, None);
        let protocol = one_of(
            ctx,
            &path.key("protocol"),
            &l.protocol,
            ListenerProtocol::Http,
            &[
                ("http", ListenerProtocol::Http),
                ("https", ListenerProtocol::Https),
                ("tcp", ListenerProtocol::Tcp),
            ],
        );
        let zone = l.zone.clone().unwrap_or_else(|| "public".into());
        if !valid_name(&zone) {
            ctx.error(&path.key("zone"), format!("invalid zone name \"{zone}\""));
        }
        let tls = match (&l.tls, protocol) {
            (Some(t), ListenerProtocol::Https) => {
                Some(build_listener_tls(ctx, &path.key("tls"), t, certs, base))
            }
            (None, ListenerProtocol::Https) => {
                ctx.error(
                    &path,
                    "protocol \"https\" needs a [listeners.tls] section naming certificates",
                );
                None
            }
            (Some(_), ListenerProtocol::Http) => {
                ctx.error(&path.key("tls"), "tls settings need protocol = \"https\"");
                None
            }
            (None, ListenerProtocol::Http) => None,
            (Some(_), ListenerProtocol::Tcp) => {
                ctx.error(
                    &path.key("tls"),
                    "tcp listeners relay bytes as they come (TLS passes through); use protocol = \"https\" to terminate TLS",
                );
                None
            }
            (None, ListenerProtocol::Tcp) => None,
        };
        match (protocol, &l.pool) {
            (ListenerProtocol::Tcp, None) if l.sni.is_empty() => ctx.error(
                &path,
                "protocol = \"tcp\" needs a \"pool\" whose backends take the connections (or \"sni\" routes)",
            ),
            (ListenerProtocol::Http | ListenerProtocol::Https, Some(_)) => ctx.error(
                &path.key("pool"),
                "only tcp listeners name a pool; HTTP listeners reach pools through routes",
            ),
            _ => {}
        }
        let limits = build_limits(ctx, &path.key("limits"), l.limits.as_ref());
        if !l.sni.is_empty() && protocol != ListenerProtocol::Tcp {
            ctx.error(
                &path.key("sni"),
                "sni routes pass TLS through on tcp listeners; https listeners choose certificates by SNI instead",
            );
        }
        let mut sni = Vec::new();
        for (j, r) in l.sni.iter().enumerate() {
            let rp = path.key("sni").index(j);
            if r.names.is_empty() {
                ctx.error(&rp.key("names"), "name at least one server name");
            }
            let mut names = Vec::new();
            for (k, n) in r.names.iter().enumerate() {
                let lower = n.to_ascii_lowercase();
                let host = lower.strip_prefix("*.").unwrap_or(&lower);
                let valid = !host.is_empty()
                    && host.split('.').all(|label| {
                        !label.is_empty()
                            && label.len() <= 63
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    });
                if valid {
                    names.push(lower);
                } else {
                    ctx.error(
                        &rp.key("names").index(k),
                        format!("\"{n}\" is not a host name (a leading \"*.\" is allowed)"),
                    );
                }
            }
            match &r.pool {
                Some(pool) => sni.push(SniRoute {
                    names,
                    pool: pool.clone(),
                }),
                None => ctx.error(&rp, "missing \"pool\""),
            }
        }
        let proxy_protocol = l.proxy_protocol.as_ref().map(|pp| {
            let pp_path = path.key("proxy_protocol");
            if pp.trusted.is_empty() {
                ctx.error(
                    &pp_path.key("trusted"),
                    "name the sources allowed to send a PROXY header (CIDRs, e.g. \"10.0.0.0/8\")",
                );
            }
            let trusted = pp
                .trusted
                .iter()
                .enumerate()
                .filter_map(|(i, text)| parse_cidr(ctx, &pp_path.key("trusted").index(i), text))
                .collect();
            ProxyProtocolAccept {
                trusted,
                required: pp.required.unwrap_or(true),
            }
        });
        if let Some(address) = address {
            out.push(Listener {
                name,
                address,
                protocol,
                zone,
                h2c: l.h2c.unwrap_or(true),
                tls,
                limits,
                proxy_protocol,
                pool: l.pool.clone(),
                sni,
                acl: l.acl.clone(),
                connection_rate: l.connection_rate.clone(),
            });
        }
    }
    out
}

fn build_listener_tls(
    ctx: &mut Ctx<'_>,
    path: &FieldPath,
    raw: &RawListenerTls,
    certs: &[Certificate],
    base: &Path,
) -> ListenerTls {
    if raw.certificates.is_empty() {
        ctx.error(&path.key("certificates"), "name at least one certificate");
    }
    for (i, c) in raw.certificates.iter().enumerate() {
        if !certs.iter().any(|x| &x.name == c) {
            ctx.error(
                &path.key("certificates").index(i),
                format!("no certificate named \"{c}\""),
            );
        }
    }
    if let Some(d) = &raw.default_certificate
        && !raw.certificates.contains(d)
    {
        ctx.error(
            &path.key("default_certificate"),
            format!("\"{d}\" is not among this listener's certificates"),
        );
    }
    let client_auth = one_of(
        ctx,
        &path.key("client_auth"),
        &raw.client_auth,
        if raw.client_ca.is_some() {
            ClientAuthMode::Required
        } else {
            ClientAuthMode::None
        },
        &[
            ("none", ClientAuthMode::None),
            ("optional", ClientAuthMode::Optional),
            ("required", ClientAuthMode::Required),
        ],
    );
    let client_ca = raw
        .client_ca
        .as_ref()
        .map(|f| ctx.file(&path.key("client_ca"), base, f));
    if client_auth != ClientAuthMode::None && client_ca.is_none() {
        ctx.error(
            &path.key("client_auth"),
            "client certificate verification needs \"client_ca\"",
        );
    }
    ListenerTls {
        certificates: raw.certificates.clone(),
        default_certificate: raw.default_certificate.clone(),
        client_auth,
        client_ca,
    }
}

fn build_limits(
    ctx: &mut Ctx<'_>,
    path: &FieldPath,
    raw: Option<&RawListenerLimits>,
) -> ListenerLimits {
    let d = ListenerLimits::default();
    let Some(raw) = raw else { return d };
    ListenerLimits {
        header_read_timeout: ctx.duration(
            &path.key("header_read_timeout"),
            &raw.header_read_timeout,
            d.header_read_timeout,
        ),
        idle_timeout: ctx.duration(&path.key("idle_timeout"), &raw.idle_timeout, d.idle_timeout),
        max_header_bytes: ctx.size_at_most(
            &path.key("max_header_bytes"),
            &raw.max_header_bytes,
            d.max_header_bytes as u64,
            1 << 20,
        ) as usize,
        max_headers: ctx.int(
            &path.key("max_headers"),
            raw.max_headers,
            d.max_headers as u64,
            1,
            1000,
        ) as usize,
        max_uri_bytes: ctx.size_at_most(
            &path.key("max_uri_bytes"),
            &raw.max_uri_bytes,
            d.max_uri_bytes as u64,
            1 << 20,
        ) as usize,
        max_connections: ctx.int(
            &path.key("max_connections"),
            raw.max_connections,
            d.max_connections as u64,
            1,
            10_000_000,
        ) as usize,
        max_connections_per_ip: ctx.int(
            &path.key("max_connections_per_ip"),
            raw.max_connections_per_ip,
            d.max_connections_per_ip as u64,
            0,
            10_000_000,
        ) as usize,
        max_body: ctx.size(&path.key("max_body"), &raw.max_body, d.max_body),
        request_timeout: ctx.duration(
            &path.key("request_timeout"),
            &raw.request_timeout,
            d.request_timeout,
        ),
        body_read_timeout: ctx.duration(
            &path.key("body_read_timeout"),
            &raw.body_read_timeout,
            d.body_read_timeout,
        ),
    }
}

fn build_pools(ctx: &mut Ctx<'_>, raw: &[RawPool], base: &Path) -> Vec<Pool> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let path = FieldPath::root().key("pools").index(i);
        let name = ctx.name(&path.key("name"), &p.name, "pool");
        if !seen.insert(name.clone()) {
            ctx.error(&path.key("name"), format!("duplicate pool name \"{name}\""));
        }
        let algorithm = one_of(
            ctx,
            &path.key("algorithm"),
            &p.algorithm,
            Algorithm::RoundRobin,
            &[
                ("round_robin", Algorithm::RoundRobin),
                ("weighted_round_robin", Algorithm::WeightedRoundRobin),
                ("least_connections", Algorithm::LeastConnections),
                ("p2c_ewma", Algorithm::PowerOfTwoEwma),
                ("consistent_hash", Algorithm::ConsistentHash),
                ("random", Algorithm::Random),
            ],
        );
        let hash_key = p
            .hash_key
            .as_ref()
            .and_then(|k| build_hash_key(ctx, &path.key("hash_key"), k));
        if algorithm == Algorithm::ConsistentHash && hash_key.is_none() && p.hash_key.is_none() {
            ctx.error(&path.key("algorithm"), "consistent_hash needs a [pools.hash_key] (source = client_ip | header | cookie | path)");
        }
        let protocol = one_of(
            ctx,
            &path.key("protocol"),
            &p.protocol,
            UpstreamProtocol::Http1,
            &[
                ("http1", UpstreamProtocol::Http1),
                ("http2", UpstreamProtocol::Http2),
            ],
        );
        if p.proxy_protocol.is_some() && protocol == UpstreamProtocol::Http2 {
            ctx.error(
                &path.key("proxy_protocol"),
                "the PROXY protocol needs protocol = \"http1\": an HTTP/2 connection is shared by many clients",
            );
        }
        let tls = p.tls.as_ref().map(|t| {
            let tp = path.key("tls");
            let client_cert = match (&t.client_cert, &t.client_key) {
                (Some(c), Some(k)) => Some((
                    ctx.file(&tp.key("client_cert"), base, c),
                    ctx.file(&tp.key("client_key"), base, k),
                )),
                (None, None) => None,
                _ => {
                    ctx.error(&tp, "client_cert and client_key go together");
                    None
                }
            };
            UpstreamTls {
                server_name: t.server_name.clone(),
                verify: t.verify.unwrap_or(true),
                ca: t.ca.as_ref().map(|f| ctx.file(&tp.key("ca"), base, f)),
                client_cert,
            }
        });
        let backends = build_backends(ctx, &path.key("backends"), &name, &p.backends);
        let health_check = p
            .health_check
            .as_ref()
            .map(|h| build_health(ctx, &path.key("health_check"), h));
        let outlier = p.outlier.as_ref().map(|o| {
            let op = path.key("outlier");
            let base_ejection = ctx.duration(
                &op.key("base_ejection"),
                &o.base_ejection,
                Duration::from_secs(10),
            );
            let max_ejection = ctx.duration(
                &op.key("max_ejection"),
                &o.max_ejection,
                Duration::from_secs(300),
            );
            if max_ejection < base_ejection {
                ctx.error(
                    &op.key("max_ejection"),
                    "must not be shorter than base_ejection",
                );
            }
            Outlier {
                consecutive_failures: ctx.int(
                    &op.key("consecutive_failures"),
                    o.consecutive_failures,
                    5,
                    1,
                    1000,
                ) as u32,
                base_ejection,
                max_ejection,
                max_ejected_percent: ctx.int(
                    &op.key("max_ejected_percent"),
                    o.max_ejected_percent,
                    50,
                    0,
                    100,
                ) as u8,
            }
        });
        let slow_start = ctx.opt_duration(&path.key("slow_start"), &p.slow_start);
        let sticky = p
            .sticky
            .as_ref()
            .and_then(|s| build_sticky(ctx, &path.key("sticky"), s));
        let t = p.timeouts.as_ref();
        let tp = path.key("timeouts");
        let timeouts = PoolTimeouts {
            connect: ctx.duration(
                &tp.key("connect"),
                &t.and_then(|t| t.connect.clone()),
                Duration::from_secs(3),
            ),
            response_header: ctx.duration(
                &tp.key("response_header"),
                &t.and_then(|t| t.response_header.clone()),
                Duration::from_secs(30),
            ),
            idle: ctx.duration(
                &tp.key("idle"),
                &t.and_then(|t| t.idle.clone()),
                Duration::from_secs(60),
            ),
            queue: ctx.duration(
                &tp.key("queue"),
                &t.and_then(|t| t.queue.clone()),
                Duration::from_secs(5),
            ),
        };
        let r = p.retries.as_ref();
        let rp = path.key("retries");
        let mut on_status = Vec::new();
        for (j, s) in r
            .map(|r| r.on_status.as_slice())
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            if (500..=599).contains(s) {
                on_status.push(*s as u16);
            } else {
                ctx.error(
                    &rp.key("on_status").index(j),
                    format!("{s} is not a 5xx status"),
                );
            }
        }
        let retries = Retries {
            attempts: ctx.int(&rp.key("attempts"), r.and_then(|r| r.attempts), 3, 1, 10) as u32,
            budget_percent: ctx.int(
                &rp.key("budget_percent"),
                r.and_then(|r| r.budget_percent),
                20,
                0,
                100,
            ) as u32,
            min_per_second: ctx.int(
                &rp.key("min_per_second"),
                r.and_then(|r| r.min_per_second),
                10,
                0,
                100_000,
            ) as u32,
            on_status,
        };
        out.push(Pool {
            name,
            algorithm,
            hash_key,
            protocol,
            tls,
            backends,
            health_check,
            outlier,
            slow_start,
            sticky,
            timeouts,
            retries,
            max_idle_per_backend: ctx.int(
                &path.key("max_idle_per_backend"),
                p.max_idle_per_backend,
                256,
                0,
                100_000,
            ) as usize,
            max_connections_per_backend: ctx.int(
                &path.key("max_connections_per_backend"),
                p.max_connections_per_backend,
                0,
                0,
                10_000_000,
            ) as usize,
            max_queue: ctx.int(&path.key("max_queue"), p.max_queue, 0, 0, 10_000_000) as usize,
            send_proxy_protocol: p.proxy_protocol.as_ref().map(|_| {
                one_of(
                    ctx,
                    &path.key("proxy_protocol"),
                    &p.proxy_protocol,
                    ProxyProtocolVersion::V2,
                    &[
                        ("v1", ProxyProtocolVersion::V1),
                        ("v2", ProxyProtocolVersion::V2),
                    ],
                )
            }),
        });
    }
    out
}

pub(crate) fn header_name(
    ctx: &mut Ctx<'_>,
    path: &FieldPath,
    value: &Option<String>,
) -> Option<http::HeaderName> {
    let Some(text) = value else {
        ctx.error(path, "missing header name");
        return None;
    };
    match http::HeaderName::from_bytes(text.as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            ctx.error(path, format!("invalid header name \"{text}\""));
            None
        }
    }
}

fn build_hash_key(ctx: &mut Ctx<'_>, path: &FieldPath, raw: &RawHashKey) -> Option<HashKey> {
    match raw.source.as_deref() {
        Some("client_ip") => Some(HashKey::ClientIp),
        Some("path") => Some(HashKey::Path),
        Some("header") => header_name(ctx, &path.key("name"), &raw.name).map(HashKey::Header),
        Some("cookie") => match &raw.name {
            Some(n) if !n.is_empty() => Some(HashKey::Cookie(n.clone())),
            _ => {
                ctx.error(&path.key("name"), "missing cookie name");
                None
            }
        },
        other => {
            bad_choice(
                ctx,
                &path.key("source"),
                other,
                &["client_ip", "header", "cookie", "path"],
            );
            None
        }
    }
}

/// Reports a missing or unknown value of a field that takes one of `choices`.
pub(crate) fn bad_choice(
    ctx: &mut Ctx<'_>,
    path: &FieldPath,
    value: Option<&str>,
    choices: &[&str],
) {
    let field = match path.0.last() {
        Some(Segment::Key(k)) => k.as_str(),
        _ => "value",
    };
    match value {
        Some(other) => {
            let names: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
            ctx.error(
                path,
                format!(
                    "unknown value \"{other}\"; expected one of {}",
                    names.join(", ")
                ),
            );
        }
        None => ctx.error(path, format!("missing {field} ({})", choices.join(" | "))),
    }
}

fn build_backends(
    ctx: &mut Ctx<'_>,
    path: &FieldPath,
    pool: &str,
    raw: &[RawBackend],
) -> Vec<Backend> {
    if raw.is_empty() {
        ctx.error(path, format!("pool \"{pool}\" has no backends"));
    }
    let mut ids = HashSet::new();
    let mut out = Vec::new();
    for (i, b) in raw.iter().enumerate() {
        let bp = path.index(i);
        let Some(address) = &b.address else {
            ctx.error(&bp, "missing \"address\" (host:port)");
            continue;
        };
        let Some((host, port)) = split_host_port(address) else {
            ctx.error(&bp.key("address"), format!("invalid address \"{address}\": expected HOST:PORT such as \"10.0.0.5:8080\" or \"api.internal:80\""));
            continue;
        };
        let id = match &b.id {
            Some(id) => {
                if !valid_name(id) {
                    ctx.error(
                        &bp.key("id"),
                        format!("invalid id \"{id}\": use 1-64 characters from a-z A-Z 0-9 _ - ."),
                    );
                }
                id.clone()
            }
            None => format!("{pool}-{}", i + 1),
        };
        if !ids.insert(id.clone()) {
            ctx.error(
                &bp.key("id"),
                format!("duplicate backend id \"{id}\" in pool \"{pool}\""),
            );
        }
        out.push(Backend {
            id,
            host,
            port,
            weight: ctx.int(&bp.key("weight"), b.weight, 1, 0, 1000) as u32,
            backup: b.backup.unwrap_or(false),
        });
    }
    if !out.is_empty() && out.iter().all(|b| b.backup) {
        ctx.error(
            path,
            "every backend is a backup; at least one must be primary",
        );
    }
    out
}

fn split_host_port(text: &str) -> Option<(String, u16)> {
    if let Ok(sa) = SocketAddr::from_str(text) {
        return (sa.port() != 0).then(|| (sa.ip().to_string(), sa.port()));
    }
    let (host, port) = text.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    if host.parse::<IpAddr>().is_ok() || valid_host_pattern(host) && !host.starts_with("*.") {
        Some((host.to_ascii_lowercase(), port))
    } else {
        None
    }
}

fn build_health(ctx: &mut Ctx<'_>, path: &FieldPath, raw: &RawHealthCheck) -> HealthCheck {
    let kind_name = raw.kind.clone().unwrap_or_else(|| "http".into());
    let kind = match kind_name.as_str() {
        "tcp" => HealthCheckKind::Tcp,
        "http" => {
            let method = match &raw.method {
                None => http::Method::GET,
                Some(m) => match http::Method::from_bytes(m.as_bytes()) {
                    Ok(m) => m,
                    Err(_) => {
                        ctx.error(&path.key("method"), format!("invalid method \"{m}\""));
                        http::Method::GET
                    }
                },
            };
            let path_value = raw.path.clone().unwrap_or_else(|| "/".into());
            if !path_value.starts_with('/')
                || http::uri::PathAndQuery::from_str(&path_value).is_err()
            {
                ctx.error(
                    &path.key("path"),
                    format!("invalid check path \"{path_value}\": must start with /"),
                );
            }
            let expect_status = match &raw.expect_status {
                None => (200, 399),
                Some(s) => match parse_status_range(s) {
                    Some(r) => r,
                    None => {
                        ctx.error(
                            &path.key("expect_status"),
                            format!("invalid status range \"{s}\": write \"200\" or \"200-399\""),
                        );
                        (200, 399)
                    }
                },
            };
            HealthCheckKind::Http {
                method,
                path: path_value,
                host: raw.host.clone(),
                expect_status,
                expect_body: raw.expect_body.clone(),
            }
        }
        other => {
            ctx.error(
                &path.key("kind"),
                format!("unknown value \"{other}\"; expected one of \"http\", \"tcp\""),
            );
            HealthCheckKind::Tcp
        }
    };
    if kind == HealthCheckKind::Tcp {
        for (field, set) in [
            ("method", raw.method.is_some()),
            ("path", raw.path.is_some()),
            ("host", raw.host.is_some()),
            ("expect_status", raw.expect_status.is_some()),
            ("expect_body", raw.expect_body.is_some()),
        ] {
            if set && kind_name == "tcp" {
                ctx.error(
                    &path.key(field),
                    format!("\"{field}\" applies only to kind = \"http\""),
                );
            }
        }
    }
    let interval = ctx.duration(&path.key("interval"), &raw.interval, Duration::from_secs(2));
    let timeout = ctx.duration(
        &path.key("timeout"),
        &raw.timeout,
        Duration::from_secs(1).min(interval),
    );
    if timeout > interval {
        ctx.error(&path.key("timeout"), "must not be longer than interval");
    }
    HealthCheck {
        kind,
        interval,
        timeout,
        rise: ctx.int(&path.key("rise"), raw.rise, 2, 1, 100) as u32,
        fall: ctx.int(&path.key("fall"), raw.fall, 3, 1, 100) as u32,
    }
}

fn parse_status_range(text: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match text.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let s: u16 = text.trim().parse().ok()?;
            (s, s)
        }
    };
    ((100..=599).contains(&lo) && (100..=599).contains(&hi) && lo <= hi).then_some((lo, hi))
}

fn build_sticky(ctx: &mut Ctx<'_>, path: &FieldPath, raw: &RawSticky) -> Option<Sticky> {
    match raw.mode.as_deref() {
        Some("cookie") => {
            let name = raw
                .cookie
                .clone()
                .unwrap_or_else(|| "rampart_sticky".into());
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
            {
                ctx.error(
                    &path.key("cookie"),
                    format!("invalid cookie name \"{name}\""),
                );
            }
            let same_site = one_of(
                ctx,
                &path.key("same_site"),
                &raw.same_site,
                SameSite::Lax,
                &[
                    ("strict", SameSite::Strict),
                    ("lax", SameSite::Lax),
                    ("none", SameSite::None),
                ],
            );
            let secure = raw.secure.unwrap_or(false);
            if same_site == SameSite::None && !secure {
                ctx.error(&path.key("same_site"), "same_site = \"none\" requires secure = true (browsers drop the cookie otherwise)");
            }
            let cookie_path = raw.path.clone().unwrap_or_else(|| "/".into());
            if !cookie_path.starts_with('/')
                || cookie_path.contains(';')
                || cookie_path.chars().any(|c| c.is_control())
            {
                ctx.error(
                    &path.key("path"),
                    format!("invalid cookie path \"{cookie_path}\""),
                );
            }
            Some(Sticky::Cookie {
                name,
                ttl: ctx.opt_duration(&path.key("ttl"), &raw.ttl),
                secure,
                http_only: raw.http_only.unwrap_or(true),
                same_site,
                path: cookie_path,
            })
        }
        Some("source_ip") => Some(Sticky::SourceIp),
        Some("header") => header_name(ctx, &path.key("header"), &raw.header).map(Sticky::Header),
        other => {
            bad_choice(
                ctx,
                &path.key("mode"),
                other,
                &["cookie", "source_ip", "header"],
            );
            None
        }
    }
}

fn build_routes(
    ctx: &mut Ctx<'_>,
    raw: &[RawRoute],
    listeners: &[Listener],
    pools: &[Pool],
) -> Vec<Route> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let path = FieldPath::root().key("routes").index(i);
        let name = ctx.name(&path.key("name"), &r.name, "route");
        if !seen.insert(name.clone()) {
            ctx.error(
                &path.key("name"),
                format!("duplicate route name \"{name}\""),
            );
        }
        for (j, l) in r.listeners.iter().enumerate() {
            if !listeners.iter().any(|x| &x.name == l) {
                ctx.error(
                    &path.key("listeners").index(j),
                    format!("no listener named \"{l}\""),
                );
            }
        }
        let pool = match &r.pool {
            None => {
                ctx.error(&path, "missing \"pool\"");
                None
            }
            Some(p) => match pools.iter().position(|x| &x.name == p) {
                Some(idx) => Some(idx),
                None => {
                    ctx.error(&path.key("pool"), format!("no pool named \"{p}\""));
                    None
                }
            },
        };
        let matcher = r
            .matcher
            .as_ref()
            .map(|m| build_match(ctx, &path.key("match"), m))
            .unwrap_or_default();
        let max_body = r
            .max_body
            .as_ref()
            .map(|_| ctx.size(&path.key("max_body"), &r.max_body, 1));
        let timeout = ctx.opt_duration(&path.key("timeout"), &r.timeout);
        let filter = r
            .filter
            .as_ref()
            .map(|f| crate::firewall::build_route_filter(ctx, &path.key("filter"), f));
        if let Some(pool) = pool {
            out.push(Route {
                name,
                listeners: r.listeners.clone(),
                matcher,
                pool,
                max_body,
                timeout,
                acl: r.acl.clone(),
                rate_limits: r.rate_limits.clone(),
                filter,
                waf: r.waf.clone(),
            });
        }
    }
    out
}

fn build_match(ctx: &mut Ctx<'_>, path: &FieldPath, raw: &RawRouteMatch) -> RouteMatch {
    let mut hosts = Vec::new();
    for (i, h) in raw.hosts.iter().enumerate() {
        let lower = h.to_ascii_lowercase();
        if !valid_host_pattern(&lower) {
            ctx.error(
                &path.key("hosts").index(i),
                format!(
                    "invalid host \"{h}\": a name such as \"api.example.com\" or \"*.example.com\""
                ),
            );
        } else if let Some(suffix) = lower.strip_prefix('*') {
            hosts.push(HostPattern::Wildcard(suffix.to_string()));
        } else {
            hosts.push(HostPattern::Exact(lower));
        }
    }
    let set: Vec<&str> = [
        raw.path.as_ref().map(|_| "path"),
        raw.path_prefix.as_ref().map(|_| "path_prefix"),
        raw.path_regex.as_ref().map(|_| "path_regex"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if set.len() > 1 {
        ctx.error(
            &path.key(set[1]),
            format!(
                "choose one of path, path_prefix, path_regex (found {})",
                set.join(", ")
            ),
        );
    }
    let check_path = |ctx: &mut Ctx<'_>, key: &str, p: &str| {
        if !p.starts_with('/') {
            ctx.error(&path.key(key), format!("\"{p}\" must start with /"));
        }
    };
    let path_match = if let Some(p) = &raw.path {
        check_path(ctx, "path", p);
        Some(PathMatch::Exact(p.clone()))
    } else if let Some(p) = &raw.path_prefix {
        check_path(ctx, "path_prefix", p);
        Some(PathMatch::Prefix(p.clone()))
    } else if let Some(p) = &raw.path_regex {
        ctx.regex(&path.key("path_regex"), p).map(PathMatch::Regex)
    } else {
        None
    };
    let mut methods = Vec::new();
    for (i, m) in raw.methods.iter().enumerate() {
        match http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(method) => methods.push(method),
            Err(_) => ctx.error(
                &path.key("methods").index(i),
                format!("invalid method \"{m}\""),
            ),
        }
    }
    let mut headers = Vec::new();
    for (i, h) in raw.headers.iter().enumerate() {
        let hp = path.key("headers").index(i);
        let name = header_name(ctx, &hp.key("name"), &h.name);
        let value = match (&h.value, &h.regex) {
            (Some(_), Some(_)) => {
                ctx.error(&hp.key("regex"), "set either value or regex, not both");
                None
            }
            (Some(v), None) => Some(HeaderValueMatch::Exact(v.clone())),
            (None, Some(r)) => ctx.regex(&hp.key("regex"), r).map(HeaderValueMatch::Regex),
            (None, None) => Some(HeaderValueMatch::Present),
        };
        if let (Some(name), Some(value)) = (name, value) {
            headers.push(HeaderMatch { name, value });
        }
    }
    RouteMatch {
        hosts,
        path: path_match,
        methods,
        headers,
    }
}

fn build_observability(ctx: &mut Ctx<'_>, raw: RawObservability) -> Observability {
    let path = FieldPath::root().key("observability");
    let metrics_address = raw.metrics_address.as_ref().and_then(|_| {
        parse_socket_addr(
            ctx,
            &path.key("metrics_address"),
            &raw.metrics_address,
            None,
        )
    });
    let mut log_sink = |key: &str, value: Option<&str>| match value {
        None | Some("stdout") => AccessLog::Stdout,
        Some("off") => AccessLog::Off,
        Some("") => {
            ctx.error(
                &path.key(key),
                "empty; use \"stdout\", \"off\" or a file path",
            );
            AccessLog::Off
        }
        Some(file) => AccessLog::File(PathBuf::from(file)),
    };
    let access_log = log_sink("access_log", raw.access_log.as_deref());
    let security_log = log_sink("security_log", raw.security_log.as_deref());
    let log_format = one_of(
        ctx,
        &path.key("log_format"),
        &raw.log_format,
        LogFormat::Json,
        &[("json", LogFormat::Json), ("text", LogFormat::Text)],
    );
    let query_address = raw
        .query_address
        .as_ref()
        .and_then(|_| parse_socket_addr(ctx, &path.key("query_address"), &raw.query_address, None));
    if let Some(addr) = query_address
        && !addr.ip().is_loopback()
    {
        ctx.error(
            &path.key("query_address"),
            format!(
                "{addr} is not a loopback address; the query API has no authentication of its own"
            ),
        );
    }
    if query_address.is_none() {
        for key in ["remote_write_receiver", "tsdb_admin_api", "tsdb_max_series"] {
            let set = match key {
                "remote_write_receiver" => raw.remote_write_receiver.is_some(),
                "tsdb_admin_api" => raw.tsdb_admin_api.is_some(),
                _ => raw.tsdb_max_series.is_some(),
            };
            if set {
                ctx.error(&path.key(key), "needs observability.query_address");
            }
        }
    }
    let max_series = match raw.tsdb_max_series {
        None => 1_000_000,
        Some(n) if (1..=100_000_000).contains(&n) => n as usize,
        Some(n) => {
            ctx.error(
                &path.key("tsdb_max_series"),
                format!("{n} is out of range (1 to 100000000)"),
            );
            1_000_000
        }
    };
    let query = query_address.map(|address| QueryApi {
        address,
        remote_write_receiver: raw.remote_write_receiver.unwrap_or(false),
        admin_api: raw.tsdb_admin_api.unwrap_or(false),
        max_series,
    });
    Observability {
        metrics_address,
        query,
        access_log,
        security_log,
        log_format,
    }
}

/// Shortest admin token accepted: a bearer token is the only credential for now.
const MIN_TOKEN_LEN: usize = 16;

fn build_admin(ctx: &mut Ctx<'_>, path: &FieldPath, raw: RawAdmin, base: &Path) -> Admin {
    let address = parse_socket_addr(
        ctx,
        &path.key("address"),
        &raw.address,
        Some("127.0.0.1:9091"),
    )
    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9091)));
    if !address.ip().is_loopback() && !raw.allow_remote.unwrap_or(false) {
        ctx.error(
            &path.key("address"),
            format!("admin address {address} is not loopback; set allow_remote = true to expose the admin API beyond this host"),
        );
    }
    let token = match (&raw.token_file, &raw.token_env) {
        (Some(_), Some(_)) => {
            ctx.error(path, "set either token_file or token_env, not both");
            String::new()
        }
        (Some(f), None) => {
            let p = base.join(f);
            match std::fs::read_to_string(&p) {
                Ok(t) => t.trim().to_string(),
                Err(e) => {
                    ctx.error(
                        &path.key("token_file"),
                        format!("cannot read \"{}\": {e}", p.display()),
                    );
                    String::new()
                }
            }
        }
        (None, Some(var)) => match std::env::var(var) {
            Ok(t) => t.trim().to_string(),
            Err(_) => {
                ctx.error(
                    &path.key("token_env"),
                    format!("environment variable {var} is not set"),
                );
                String::new()
            }
        },
        (None, None) => {
            ctx.error(
                path,
                "the admin API needs a bearer token: set token_file or token_env",
            );
            String::new()
        }
    };
    if !token.is_empty() && token.len() < MIN_TOKEN_LEN {
        ctx.error(
            &path.key(if raw.token_file.is_some() {
                "token_file"
            } else {
                "token_env"
            }),
            format!("admin token is shorter than {MIN_TOKEN_LEN} characters"),
        );
    }
    Admin {
        address,
        token: Secret::new(token),
    }
}

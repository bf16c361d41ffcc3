//! The `[firewall]` section: a good one validates into the snapshot; every kind of mistake
//! (invalid networks, unknown zones and names, duplicates, contradictions) is reported with
//! its position and field path.
use std::path::Path;
use std::time::Duration;

use rampart_config::{RateKey, SourceRef};

fn load(text: &str) -> Result<rampart_config::Snapshot, rampart_config::ConfigErrors> {
    rampart_config::load_str(text, "fw.toml", Path::new("."))
}

const BASE: &str = r#"
[[listeners]]
name = "web"
address = "127.0.0.1:8080"

[[pools]]
name = "app"
backends = [{ address = "127.0.0.1:9001" }]

[[routes]]
name = "api"
pool = "app"
"#;

#[test]
fn a_good_firewall_validates() {
    let text = format!(
        r#"{BASE}
rate_limits = ["per-ip", "per-key"]
acl = "office"
filter = {{ methods = ["get", "POST"], content_types = ["application/json", "text/*"], blocked_extensions = [".PHP"], deny = [{{ target = "header", name = "user-agent", contains = "sqlmap" }}] }}

[[firewall.ip_sets]]
name = "office"
entries = ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]

[[firewall.zones]]
name = "mgmt"
sources = ["10.2.0.0/24", "@office"]

[[firewall.policy]]
zones = ["public"]
routes = ["api"]
[[firewall.policy]]
zones = ["mgmt"]
routes = ["*"]

[[firewall.acls]]
name = "office"
allow = ["@office"]
deny = ["0.0.0.0/0"]

[[firewall.rate_limits]]
name = "per-ip"
rate = "10/s"
burst = 5

[[firewall.rate_limits]]
name = "per-key"
rate = "600/min"
key = ["header:X-Api-Key", "route"]
max_keys = 5000
"#
    );
    let s = load(&text).unwrap();
    let fw = &s.firewall;
    assert_eq!(fw.ip_sets[0].entries.len(), 3);
    assert_eq!(fw.zones[0].sources[1], SourceRef::Set("office".to_string()));
    let policy = fw.policy.as_ref().unwrap();
    assert!(policy[1].all);
    let per_ip = fw.rate_limit("per-ip").unwrap();
    assert_eq!(
        (per_ip.count, per_ip.period, per_ip.burst),
        (10, Duration::from_secs(1), 5)
    );
    assert_eq!(per_ip.key, vec![RateKey::ClientIp]);
    let per_key = fw.rate_limit("per-key").unwrap();
    assert_eq!(per_key.period, Duration::from_secs(60));
    assert_eq!(per_key.burst, 1);
    assert_eq!(per_key.max_keys, 5000);
    let filter = s.routes[0].filter.as_ref().unwrap();
    assert_eq!(filter.methods, vec![http::Method::GET, http::Method::POST]);
    assert_eq!(filter.blocked_extensions, vec!["php".to_string()]);
}

#[test]
fn no_firewall_section_means_an_open_policy() {
    let s = load(BASE).unwrap();
    assert!(s.firewall.policy.is_none());
    assert_eq!(s.listeners[0].zone, "public");
}

#[test]
fn every_firewall_mistake_is_named() {
    let text = r#"
[[listeners]]
name = "web"
address = "127.0.0.1:8080"
zone = "dmz"
acl = "nope"
connection_rate = "per-key"

[[pools]]
name = "app"
backends = [{ address = "127.0.0.1:9001" }]

[[routes]]
name = "api"
pool = "app"
rate_limits = ["missing", "per-ip", "per-ip"]
filter = { methods = ["GE T"], content_types = ["json"], deny = [{ target = "body", contains = "x" }, { target = "path", regex = "(" }, { target = "query" }] }

[[firewall.ip_sets]]
name = "office"
entries = ["10.0.0.1/8", "999.1.1.1"]

[[firewall.ip_sets]]
name = "office"
entries = ["192.0.2.1"]

[[firewall.ip_sets]]
name = "empty"

[[firewall.zones]]
name = "mgmt"
sources = ["10.2.0.0/24", "@nosuchset"]
listeners = ["ghost"]

[[firewall.zones]]
name = "ops"
sources = ["10.2.0.0/24"]

[[firewall.policy]]
zones = ["public", "nowhere"]
routes = ["api", "ghost-route"]
pools = ["ghost-pool"]

[[firewall.policy]]
zones = []

[[firewall.acls]]
name = "contradiction"
allow = ["192.0.2.0/24"]
deny = ["192.0.2.0/24"]
default = "maybe"

[[firewall.rate_limits]]
name = "per-ip"
rate = "ten per second"
burst = 0

[[firewall.rate_limits]]
name = "per-key"
rate = "5/s"
key = ["header:x-api-key", "cookie:x", "header:x-api-key"]

[[firewall.forward]]
from = ["mgmt", "mars"]
to = ["public", "ops"]

[[firewall.forward]]
to = ["mgmt"]

[firewall.nftables]
enabled = true
table = "9lives"
nft = ""
"#;
    let errors = load(text).unwrap_err();
    let all: String = errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let expect = [
        "listeners[0].zone: unknown zone \"dmz\"; known zones are",
        "listeners[0].acl: no ACL named \"nope\"",
        "listeners[0].connection_rate: rate limit \"per-key\" is keyed by",
        "routes[0].rate_limits[0]: no rate limit named \"missing\"",
        "routes[0].rate_limits[2]: rate limit \"per-ip\" is listed twice",
        "routes[0].filter.methods[0]: invalid method \"GE T\"",
        "routes[0].filter.content_types[0]: invalid media type \"json\"",
        "routes[0].filter.deny[0].target: unknown value \"body\"",
        "routes[0].filter.deny[1].regex: invalid regex",
        "routes[0].filter.deny[2]: missing \"contains\" (a literal) or \"regex\"",
        "firewall.ip_sets[0].entries[0]: \"10.0.0.1/8\" has host bits set",
        "firewall.ip_sets[0].entries[1]: \"999.1.1.1\" is not an IP network",
        "firewall.ip_sets[1].name: duplicate IP set name \"office\"",
        "firewall.ip_sets[2]: IP set \"empty\" has neither a file nor entries",
        "firewall.zones[0].sources[1]: no IP set named \"nosuchset\"",
        "firewall.zones[0].listeners[0]: no listener named \"ghost\"",
        "firewall.zones[1].sources[0]: contradictory: 10.2.0.0/24 is also a source of zone \"mgmt\"",
        "firewall.policy[0].zones[1]: unknown zone \"nowhere\"",
        "firewall.policy[0].routes[1]: no route named \"ghost-route\"",
        "firewall.policy[0].pools[0]: no pool named \"ghost-pool\"",
        "firewall.policy[1].zones: a policy rule needs at least one zone",
        "firewall.acls[0].deny[0]: contradictory: 192.0.2.0/24 is both allowed and denied",
        "firewall.acls[0].default: unknown value \"maybe\"",
        "firewall.rate_limits[0].rate: invalid rate \"ten per second\"",
        "firewall.rate_limits[0].burst: 0 is out of range",
        "firewall.rate_limits[1].key[1]: unknown value \"cookie:x\"",
        "firewall.rate_limits[1].key[2]: key part \"header:x-api-key\" is listed twice",
        "firewall.forward[0].from[1]: unknown zone \"mars\"",
        "firewall.forward[0].to[0]: zone \"public\" has no source networks",
        "firewall.forward[1].from: a forward rule needs at least one zone to come from",
        "firewall.nftables.table: invalid nftables table name \"9lives\"",
        "firewall.nftables.nft: empty",
    ];
    for e in expect {
        assert!(all.contains(e), "missing {e:?} in:\n{all}");
    }
    // Every error has a position.
    for e in errors.iter() {
        assert!(e.position.is_some(), "no position: {e}");
    }
}

#[test]
fn missing_set_file_is_an_error() {
    let text = format!(
        "{BASE}\n[[firewall.ip_sets]]\nname = \"s\"\nfile = \"/nonexistent/blocklist.txt\"\n"
    );
    let e = load(&text).unwrap_err().to_string();
    assert!(
        e.contains("firewall.ip_sets[0].file: file \"/nonexistent/blocklist.txt\" does not exist"),
        "{e}"
    );
}

#[test]
fn waf_mistakes_are_named() {
    let text = r#"
[[listeners]]
name = "web"
address = "127.0.0.1:8080"

[[pools]]
name = "app"
backends = [{ address = "127.0.0.1:9001" }]

[[routes]]
name = "api"
pool = "app"
waf = "nope"

[waf]
audit_log = ""

[[waf.rulesets]]
name = "a"
files = ["/nonexistent/rules.conf", "/nonexistent-dir/*.conf"]
mode = "panic"
paranoia = 7

[[waf.rulesets]]
name = "a"
exclude_rules = [942100, 0]
exclude_tags = ["attack sqli"]
exclude_targets = [{ targets = ["!ARGS:x|ARGS:y", "ARGS:\"q"] }, { tag = "attack-xss" }]
"#;
    let all = load(text).unwrap_err().to_string();
    for e in [
        "routes[0].waf: no WAF rule set named \"nope\"",
        "waf.audit_log: empty",
        "waf.rulesets[0].files[0]: file \"/nonexistent/rules.conf\" does not exist",
        "waf.rulesets[0].files[1]: directory of \"/nonexistent-dir/*.conf\" does not exist",
        "waf.rulesets[0].mode: unknown value \"panic\"",
        "waf.rulesets[0].paranoia: 7 is out of range 1..=4",
        "waf.rulesets[1].name: duplicate WAF rule set name \"a\"",
        "waf.rulesets[1].files: a WAF rule set needs at least one file",
        "waf.rulesets[1].exclude_rules[1]: 0 is not a rule id",
        "waf.rulesets[1].exclude_tags[0]: tag \"attack sqli\" holds a quote, backslash, space",
        "waf.rulesets[1].exclude_targets[0]: name the rules",
        "waf.rulesets[1].exclude_targets[0].targets[0]: \"!ARGS:x|ARGS:y\": one variable per entry",
        "waf.rulesets[1].exclude_targets[0].targets[1]: target \"ARGS:\\\"q\" holds a quote",
        "waf.rulesets[1].exclude_targets[1].targets: at least one target",
    ] {
        assert!(all.contains(e), "missing {e:?} in:\n{all}");
    }
}

#[test]
fn waf_exclusions_become_seclang_read_after_the_files() {
    let rules = std::env::temp_dir().join(format!("rampart-excl-{}.conf", std::process::id()));
    std::fs::write(&rules, "SecRuleEngine On\n").unwrap();
    let text = format!(
        r#"
[[listeners]]
name = "web"
address = "127.0.0.1:8080"

[[pools]]
name = "app"
backends = [{{ address = "127.0.0.1:9001" }}]

[[routes]]
name = "api"
pool = "app"
waf = "crs"

[[waf.rulesets]]
name = "crs"
files = ["{}"]
exclude_rules = [920350, 942100]
exclude_tags = ["attack-xss"]
exclude_targets = [
  {{ rules = [942100, 942190], targets = ["ARGS:password", "REQUEST_COOKIES:/^sess_/"] }},
  {{ tag = "attack-sqli", targets = ["ARGS:query"] }},
]
"#,
        rules.display()
    );
    let snapshot = load(&text).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_file(&rules);
    assert_eq!(
        snapshot.waf.rulesets[0].exclusion_directives(),
        "SecRuleRemoveById 920350 942100\n\
         SecRuleRemoveByTag \"attack-xss\"\n\
         SecRuleUpdateTargetById 942100 \"!ARGS:password|!REQUEST_COOKIES:/^sess_/\"\n\
         SecRuleUpdateTargetById 942190 \"!ARGS:password|!REQUEST_COOKIES:/^sess_/\"\n\
         SecRuleUpdateTargetByTag \"attack-sqli\" \"!ARGS:query\"\n"
    );
}

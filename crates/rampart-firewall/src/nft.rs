//! The kernel side: Rampart's nftables table, rendered as one script that replaces the whole
//! table in a single transaction (`nft -f -`).
//!
//! The table (family `inet`, Rampart's alone) holds
//! - `banned4` / `banned6`: ban sets with per-element timeouts, so the kernel expires bans on
//!   its own;
//! - one `allow_N_4` / `allow_N_6` interval set per segmented listener: the source networks of
//!   the listener's zone;
//! - chain `input` (hook input, priority `filter - 10`, policy accept): loopback passes, banned
//!   sources are dropped (on Rampart's ports, or everything with `ban_all_traffic`), and a
//!   segmented listener's port drops every source outside its zone;
//! - with zones that have source networks, `zone_N_4` / `zone_N_6` sets and chain `forward`
//!   (hook forward): traffic routed to a zone's networks is dropped unless it comes from the
//!   zone itself or from a zone a forward rule allows; replies of allowed flows pass.
//!
//! Rendering is pure; running `nft` is the proxy's job. The script starts with
//! `table inet NAME {}` + `delete table inet NAME`, so applying it never depends on what is
//! there and never touches another table.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::canonical_ip;

/// One listening socket the kernel rules protect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    /// Listener name (for the rule comment).
    pub name: String,
    pub zone: String,
    pub address: SocketAddr,
    /// Sources allowed to connect; `None` lets every source through (a zone without source
    /// networks, such as `public`).
    pub allowed: Option<Vec<IpNet>>,
}

/// The whole desired state of Rampart's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPlan {
    pub table: String,
    pub ports: Vec<PortRule>,
    /// Bans in force and the time each has left.
    pub bans: Vec<(IpAddr, Duration)>,
    /// Drop banned sources' traffic to every port, not only Rampart's.
    pub ban_all_traffic: bool,
    /// Zones with source networks, for forward segmentation.
    pub zones: Vec<(String, Vec<IpNet>)>,
    /// Routed traffic allowed from zone to zone; a `from` zone not in `zones` means any source.
    pub forward_allow: Vec<(String, String)>,
}

/// The chain Rampart's rules live in.
pub const INPUT_CHAIN: &str = "input";

/// nft's duration syntax, whole seconds, at least one.
pub fn nft_timeout(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    format!("{}s", secs.max(1))
}

/// The element list of an address set, or `None` when empty.
fn elements<'a>(items: impl Iterator<Item = String> + 'a) -> Option<String> {
    let list: Vec<String> = items.collect();
    (!list.is_empty()).then(|| list.join(", "))
}

fn port_set(ports: &[u16]) -> String {
    let mut ports = ports.to_vec();
    ports.sort_unstable();
    ports.dedup();
    match ports.as_slice() {
        [one] => one.to_string(),
        many => format!(
            "{{ {} }}",
            many.iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Text safe inside a double-quoted nft comment.
fn comment(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || " _-.:/".contains(*c))
        .take(120)
        .collect()
}

/// Renders the script that replaces Rampart's table with `plan`.
pub fn render(plan: &KernelPlan) -> String {
    let t = &plan.table;
    let mut out = String::new();
    let _ = writeln!(out, "table inet {t} {{}}");
    let _ = writeln!(out, "delete table inet {t}");
    let _ = writeln!(out, "table inet {t} {{");

    let (bans4, bans6): (Vec<_>, Vec<_>) = plan
        .bans
        .iter()
        .map(|(ip, left)| (canonical_ip(*ip), *left))
        .partition(|(ip, _)| ip.is_ipv4());
    for (name, kind, bans) in [
        ("banned4", "ipv4_addr", &bans4),
        ("banned6", "ipv6_addr", &bans6),
    ] {
        let _ = writeln!(out, "\tset {name} {{");
        let _ = writeln!(out, "\t\ttype {kind}");
        let _ = writeln!(out, "\t\tflags timeout");
        if let Some(list) = elements(
            bans.iter()
                .map(|(ip, left)| format!("{ip} timeout {}", nft_timeout(*left))),
        ) {
            let _ = writeln!(out, "\t\telements = {{ {list} }}");
        }
        let _ = writeln!(out, "\t}}");
    }
    for (i, port) in plan.ports.iter().enumerate() {
        let Some(allowed) = &port.allowed else {
            continue;
        };
        for (suffix, kind, v4) in [("4", "ipv4_addr", true), ("6", "ipv6_addr", false)] {
            let _ = writeln!(out, "\tset allow_{i}_{suffix} {{");
            let _ = writeln!(out, "\t\ttype {kind}");
            let _ = writeln!(out, "\t\tflags interval");
            let _ = writeln!(out, "\t\tauto-merge");
            let nets = allowed
                .iter()
                .filter(|n| matches!(n, IpNet::V4(_)) == v4)
                .map(|n| n.trunc().to_string());
            if let Some(list) = elements(nets) {
                let _ = writeln!(out, "\t\telements = {{ {list} }}");
            }
            let _ = writeln!(out, "\t}}");
        }
    }

    for (i, (_, nets)) in plan.zones.iter().enumerate() {
        for (suffix, kind, v4) in [("4", "ipv4_addr", true), ("6", "ipv6_addr", false)] {
            let _ = writeln!(out, "\tset zone_{i}_{suffix} {{");
            let _ = writeln!(out, "\t\ttype {kind}");
            let _ = writeln!(out, "\t\tflags interval");
            let _ = writeln!(out, "\t\tauto-merge");
            let list = nets
                .iter()
                .filter(|n| matches!(n, IpNet::V4(_)) == v4)
                .map(|n| n.trunc().to_string());
            if let Some(list) = elements(list) {
                let _ = writeln!(out, "\t\telements = {{ {list} }}");
            }
            let _ = writeln!(out, "\t}}");
        }
    }

    let _ = writeln!(out, "\tchain {INPUT_CHAIN} {{");
    let _ = writeln!(
        out,
        "\t\ttype filter hook input priority filter - 10; policy accept;"
    );
    let _ = writeln!(out, "\t\tiif \"lo\" accept comment \"local clients\"");
    let ports: Vec<u16> = plan.ports.iter().map(|p| p.address.port()).collect();
    if plan.ban_all_traffic {
        let _ = writeln!(out, "\t\tip saddr @banned4 drop comment \"bans\"");
        let _ = writeln!(out, "\t\tip6 saddr @banned6 drop comment \"bans\"");
    } else if !ports.is_empty() {
        let set = port_set(&ports);
        let _ = writeln!(
            out,
            "\t\tip saddr @banned4 tcp dport {set} drop comment \"bans\""
        );
        let _ = writeln!(
            out,
            "\t\tip6 saddr @banned6 tcp dport {set} drop comment \"bans\""
        );
    }
    for (i, port) in plan.ports.iter().enumerate() {
        if port.allowed.is_none() {
            continue;
        }
        let note = comment(&format!("listener {} zone {}", port.name, port.zone));
        let p = port.address.port();
        match canonical_ip(port.address.ip()) {
            IpAddr::V4(a) if a.is_unspecified() => {
                let _ = writeln!(
                    out,
                    "\t\ttcp dport {p} ip saddr != @allow_{i}_4 drop comment \"{note}\""
                );
            }
            IpAddr::V4(a) => {
                let _ = writeln!(
                    out,
                    "\t\tip daddr {a} tcp dport {p} ip saddr != @allow_{i}_4 drop comment \"{note}\""
                );
            }
            IpAddr::V6(a) if a.is_unspecified() => {
                // A dual-stack socket: both families reach it.
                let _ = writeln!(
                    out,
                    "\t\ttcp dport {p} ip saddr != @allow_{i}_4 drop comment \"{note}\""
                );
                let _ = writeln!(
                    out,
                    "\t\ttcp dport {p} ip6 saddr != @allow_{i}_6 drop comment \"{note}\""
                );
            }
            IpAddr::V6(a) => {
                let _ = writeln!(
                    out,
                    "\t\tip6 daddr {a} tcp dport {p} ip6 saddr != @allow_{i}_6 drop comment \"{note}\""
                );
            }
        }
    }
    let _ = writeln!(out, "\t}}");
    if !plan.zones.is_empty() {
        let index = |name: &str| plan.zones.iter().position(|(z, _)| z == name);
        let _ = writeln!(out, "\tchain forward {{");
        let _ = writeln!(
            out,
            "\t\ttype filter hook forward priority filter - 10; policy accept;"
        );
        let _ = writeln!(
            out,
            "\t\tct state established,related accept comment \"replies\""
        );
        for (from, to) in &plan.forward_allow {
            let Some(t) = index(to) else { continue };
            let note = comment(&format!("forward {from} to {to}"));
            match index(from) {
                Some(f) => {
                    let _ = writeln!(
                        out,
                        "\t\tip saddr @zone_{f}_4 ip daddr @zone_{t}_4 accept comment \"{note}\""
                    );
                    let _ = writeln!(
                        out,
                        "\t\tip6 saddr @zone_{f}_6 ip6 daddr @zone_{t}_6 accept comment \"{note}\""
                    );
                }
                None => {
                    let _ = writeln!(out, "\t\tip daddr @zone_{t}_4 accept comment \"{note}\"");
                    let _ = writeln!(out, "\t\tip6 daddr @zone_{t}_6 accept comment \"{note}\"");
                }
            }
        }
        for (i, (name, _)) in plan.zones.iter().enumerate() {
            let note = comment(&format!("zone {name} isolated"));
            let _ = writeln!(
                out,
                "\t\tip daddr @zone_{i}_4 ip saddr != @zone_{i}_4 drop comment \"{note}\""
            );
            let _ = writeln!(
                out,
                "\t\tip6 daddr @zone_{i}_6 ip6 saddr != @zone_{i}_6 drop comment \"{note}\""
            );
        }
        let _ = writeln!(out, "\t}}");
    }
    let _ = writeln!(out, "}}");
    out
}

fn ban_set(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "banned4" } else { "banned6" }
}

/// Commands that set one ban in a running table to `left`, whether or not the element is
/// there already (adding an existing element would keep its old timeout).
pub fn add_ban(table: &str, ip: IpAddr, left: Duration) -> String {
    let ip = canonical_ip(ip);
    let set = ban_set(ip);
    format!(
        "add element inet {table} {set} {{ {ip} timeout 1s }}\n\
         delete element inet {table} {set} {{ {ip} }}\n\
         add element inet {table} {set} {{ {ip} timeout {} }}\n",
        nft_timeout(left)
    )
}

/// Commands that remove one ban from a running table, whether or not the element is there.
pub fn remove_ban(table: &str, ip: IpAddr) -> String {
    let ip = canonical_ip(ip);
    let set = ban_set(ip);
    format!(
        "add element inet {table} {set} {{ {ip} timeout 1s }}\n\
         delete element inet {table} {set} {{ {ip} }}\n"
    )
}

/// The command that removes Rampart's table (clean exit).
pub fn remove_table(table: &str) -> String {
    format!("table inet {table} {{}}\ndelete table inet {table}\n")
}

/// Rules the rendered forward chain holds (0: no such chain).
pub fn expected_forward_rule_count(plan: &KernelPlan) -> usize {
    if plan.zones.is_empty() {
        return 0;
    }
    let known = |name: &str| plan.zones.iter().any(|(z, _)| z == name);
    let allowed = plan
        .forward_allow
        .iter()
        .filter(|(_, to)| known(to))
        .count();
    1 + 2 * allowed + 2 * plan.zones.len()
}

/// Rules the rendered input chain holds, to compare with what the kernel reports.
pub fn expected_rule_count(plan: &KernelPlan) -> usize {
    let bans = if plan.ban_all_traffic || !plan.ports.is_empty() {
        2
    } else {
        0
    };
    let segments: usize = plan
        .ports
        .iter()
        .filter(|p| p.allowed.is_some())
        .map(|p| match canonical_ip(p.address.ip()) {
            IpAddr::V6(a) if a.is_unspecified() => 2,
            _ => 1,
        })
        .sum();
    1 + bans + segments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> KernelPlan {
        KernelPlan {
            table: "rampart".into(),
            ports: vec![
                PortRule {
                    name: "web".into(),
                    zone: "public".into(),
                    address: "0.0.0.0:8080".parse().unwrap(),
                    allowed: None,
                },
                PortRule {
                    name: "admin".into(),
                    zone: "mgmt".into(),
                    address: "10.1.0.1:9090".parse().unwrap(),
                    allowed: Some(vec![
                        "10.2.0.0/24".parse().unwrap(),
                        "2001:db8::/32".parse().unwrap(),
                    ]),
                },
                PortRule {
                    name: "both".into(),
                    zone: "internal".into(),
                    address: "[::]:7070".parse().unwrap(),
                    allowed: Some(vec![]),
                },
            ],
            bans: vec![
                ("192.0.2.7".parse().unwrap(), Duration::from_millis(1500)),
                (
                    "::ffff:198.51.100.1".parse().unwrap(),
                    Duration::from_secs(60),
                ),
                ("2001:db8::66".parse().unwrap(), Duration::from_secs(5)),
            ],
            ban_all_traffic: false,
            zones: vec![
                ("mgmt".into(), vec!["10.2.0.0/24".parse().unwrap()]),
                (
                    "internal".into(),
                    vec!["10.3.0.0/16".parse().unwrap(), "fd00::/8".parse().unwrap()],
                ),
            ],
            forward_allow: vec![
                ("mgmt".into(), "internal".into()),
                ("public".into(), "mgmt".into()),
            ],
        }
    }

    #[test]
    fn forward_segmentation() {
        let text = render(&plan());
        assert!(text.contains("set zone_1_6 {\n\t\ttype ipv6_addr\n\t\tflags interval\n\t\tauto-merge\n\t\telements = { fd00::/8 }"), "{text}");
        assert!(
            text.contains("ct state established,related accept"),
            "{text}"
        );
        assert!(
            text.contains(
                "ip saddr @zone_0_4 ip daddr @zone_1_4 accept comment \"forward mgmt to internal\""
            ),
            "{text}"
        );
        assert!(
            text.contains("ip daddr @zone_0_4 accept comment \"forward public to mgmt\""),
            "{text}"
        );
        assert!(
            text.contains("ip daddr @zone_1_4 ip saddr != @zone_1_4 drop"),
            "{text}"
        );
        assert_eq!(expected_forward_rule_count(&plan()), 1 + 2 * 2 + 2 * 2);
        assert_eq!(
            text.split("chain forward")
                .nth(1)
                .unwrap()
                .matches(" comment ")
                .count(),
            expected_forward_rule_count(&plan())
        );
        let mut none = plan();
        none.zones.clear();
        assert!(!render(&none).contains("chain forward"));
    }

    #[test]
    fn renders_the_whole_table() {
        let text = render(&plan());
        assert!(text.starts_with(
            "table inet rampart {}\ndelete table inet rampart\ntable inet rampart {\n"
        ));
        assert!(
            text.contains("elements = { 192.0.2.7 timeout 2s, 198.51.100.1 timeout 60s }"),
            "{text}"
        );
        assert!(
            text.contains("elements = { 2001:db8::66 timeout 5s }"),
            "{text}"
        );
        assert!(
            text.contains("ip saddr @banned4 tcp dport { 7070, 8080, 9090 } drop"),
            "{text}"
        );
        assert!(
            text.contains("ip daddr 10.1.0.1 tcp dport 9090 ip saddr != @allow_1_4 drop comment \"listener admin zone mgmt\""),
            "{text}"
        );
        assert!(text.contains("set allow_1_6 {\n\t\ttype ipv6_addr\n\t\tflags interval\n\t\tauto-merge\n\t\telements = { 2001:db8::/32 }"), "{text}");
        assert!(
            text.contains("tcp dport 7070 ip6 saddr != @allow_2_6 drop"),
            "{text}"
        );
        assert!(
            !text.contains("allow_0_"),
            "public listeners are not segmented: {text}"
        );
        assert_eq!(expected_rule_count(&plan()), 1 + 2 + 1 + 2);
    }

    #[test]
    fn host_wide_bans() {
        let mut p = plan();
        p.ban_all_traffic = true;
        let text = render(&p);
        assert!(text.contains("ip saddr @banned4 drop"), "{text}");
        assert!(!text.contains("@banned4 tcp dport"), "{text}");
    }

    #[test]
    fn single_commands() {
        assert_eq!(
            add_ban(
                "rampart",
                "::ffff:192.0.2.1".parse().unwrap(),
                Duration::from_secs(90)
            ),
            "add element inet rampart banned4 { 192.0.2.1 timeout 1s }\n\
             delete element inet rampart banned4 { 192.0.2.1 }\n\
             add element inet rampart banned4 { 192.0.2.1 timeout 90s }\n"
        );
        assert_eq!(
            remove_ban("rampart", "2001:db8::1".parse().unwrap()),
            "add element inet rampart banned6 { 2001:db8::1 timeout 1s }\n\
             delete element inet rampart banned6 { 2001:db8::1 }\n"
        );
        assert_eq!(nft_timeout(Duration::ZERO), "1s");
    }

    #[test]
    fn comments_are_sanitized() {
        assert_eq!(comment("a\"b;c\n{d}"), "abcd");
    }
}

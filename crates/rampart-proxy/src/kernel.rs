//! Kernel enforcement through nftables: the reconciler of Rampart's own table.
//!
//! The desired state (segmented listener ports, bans in force) is rendered by
//! `rampart_firewall::nft` and applied whole with `nft -f -` (one transaction). New bans and
//! lifted ones are sent as single element commands as they happen; every
//! `reconcile_interval` the table is listed and applied again whole if it is missing or its
//! rules differ. Only Rampart's table is ever named. On a clean exit the table is deleted; after
//! handing over to a new process (binary upgrade) it is left for that process, which takes
//! the bans it finds in it over.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rampart_config::{Nftables, Snapshot};
use rampart_firewall::nft::{self, KernelPlan, PortRule};

use crate::firewall::FirewallRuntime;

/// A change to send to the kernel as it happens.
#[derive(Debug)]
pub enum KernelOp {
    Ban(IpAddr, Duration),
    Unban(IpAddr),
    /// The config changed: apply the whole table again.
    Reapply,
}

/// Runs `nft -f -` with `script` on stdin.
pub fn run_nft(nft: &Path, script: &str) -> Result<(), String> {
    run_nft_args(nft, &["-f", "-"], Some(script)).map(|_| ())
}

fn run_nft_args(nft: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(nft)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", nft.display()))?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input
            .write_all(text.as_bytes())
            .map_err(|e| format!("{}: writing the ruleset: {e}", nft.display()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{}: {e}", nft.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "{} {} failed ({}): {}",
            nft.display(),
            args.join(" "),
            out.status,
            err.trim()
        ))
    }
}

/// The desired table for a snapshot: every listening socket (listeners at their bound
/// addresses, the admin and metrics listeners in zone `mgmt`), segmented when its zone has
/// source networks; zones with source networks and the forward rules between them; bans from
/// `bans`.
pub fn plan(
    snapshot: &Snapshot,
    firewall: &FirewallRuntime,
    kernel: &Nftables,
    bound: &dyn Fn(&str) -> Option<SocketAddr>,
    bans: &[(IpAddr, Duration)],
) -> KernelPlan {
    let allowed = |zone: &str| {
        firewall.zone_sources(zone).map(|sources| {
            sources
                .sets
                .iter()
                .flat_map(|s| s.networks().collect::<Vec<_>>())
                .collect::<Vec<_>>()
        })
    };
    let mut ports = Vec::new();
    for l in &snapshot.listeners {
        ports.push(PortRule {
            name: l.name.clone(),
            zone: l.zone.clone(),
            address: bound(&l.name).unwrap_or(l.address),
            // Behind the PROXY protocol the kernel sees the load balancer, not the client:
            // such listeners are segmented in-process only.
            allowed: if l.proxy_protocol.is_some() {
                None
            } else {
                allowed(&l.zone)
            },
        });
    }
    let mgmt = |name: &str, address: SocketAddr| PortRule {
        name: name.to_string(),
        zone: "mgmt".to_string(),
        address,
        allowed: allowed("mgmt"),
    };
    if let Some(admin) = &snapshot.admin {
        ports.push(mgmt("admin", admin.address));
    }
    if let Some(metrics) = snapshot.observability.metrics_address {
        ports.push(mgmt("metrics", metrics));
    }
    let zones = snapshot
        .firewall
        .zones
        .iter()
        .filter_map(|z| allowed(&z.name).map(|nets| (z.name.clone(), nets)))
        .collect();
    KernelPlan {
        table: kernel.table.clone(),
        ports,
        bans: bans.to_vec(),
        ban_all_traffic: kernel.ban_all_traffic,
        zones,
        forward_allow: snapshot.firewall.forward.clone(),
    }
}

/// Whether the kernel's table still is what `plan` wants: both chains hold the rules they
/// should, and every ban with more than a couple of seconds left is in its set.
pub fn table_matches(nft_bin: &Path, plan: &KernelPlan) -> bool {
    let Ok(text) = run_nft_args(nft_bin, &["-j", "list", "table", "inet", &plan.table], None)
    else {
        return false;
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    let items = json["nftables"].as_array().cloned().unwrap_or_default();
    let rules_in = |chain: &str| {
        items
            .iter()
            .filter(|i| i["rule"]["chain"].as_str() == Some(chain))
            .count()
    };
    if rules_in(nft::INPUT_CHAIN) != nft::expected_rule_count(plan)
        || rules_in("forward") != nft::expected_forward_rule_count(plan)
    {
        return false;
    }
    let mut banned = std::collections::HashSet::new();
    for item in &items {
        let set = &item["set"];
        if !matches!(set["name"].as_str(), Some("banned4" | "banned6")) {
            continue;
        }
        for elem in set["elem"].as_array().into_iter().flatten() {
            let value = elem["elem"]["val"].as_str().or_else(|| elem.as_str());
            if let Some(ip) = value.and_then(|v| v.parse::<IpAddr>().ok()) {
                banned.insert(ip);
            }
        }
    }
    plan.bans
        .iter()
        .filter(|(_, left)| *left > Duration::from_secs(2))
        .all(|(ip, _)| banned.contains(&rampart_firewall::canonical_ip(*ip)))
}

/// Bans found in an existing table (left by the process this one replaced), with the time
/// each has left.
pub fn existing_bans(nft_bin: &Path, table: &str) -> Vec<(IpAddr, Duration)> {
    let mut out = Vec::new();
    for set in ["banned4", "banned6"] {
        let Ok(text) = run_nft_args(nft_bin, &["-j", "list", "set", "inet", table, set], None)
        else {
            continue;
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        for item in json["nftables"].as_array().into_iter().flatten() {
            for elem in item["set"]["elem"].as_array().into_iter().flatten() {
                let ip = elem["elem"]["val"]
                    .as_str()
                    .and_then(|v| v.parse::<IpAddr>().ok());
                let left = elem["elem"]["expires"].as_u64();
                if let (Some(ip), Some(left)) = (ip, left)
                    && left > 0
                {
                    out.push((ip, Duration::from_secs(left)));
                }
            }
        }
    }
    out
}

/// Checks that `nft` runs at all (before anything is applied), for a clear start-up error.
pub fn check_nft(kernel: &Nftables) -> Result<(), String> {
    run_nft_args(&kernel.nft, &["--version"], None)
        .map(|_| ())
        .map_err(|e| {
            format!(
                "firewall.nftables.enabled is true but nftables cannot be used: {e}. Install the nftables package, or set enabled = false to enforce in-process only"
            )
        })
}

/// The nft binary and table of a config, if kernel enforcement is on.
pub fn settings(snapshot: &Snapshot) -> Option<(PathBuf, String, Duration)> {
    snapshot
        .firewall
        .nftables
        .as_ref()
        .map(|k| (k.nft.clone(), k.table.clone(), k.reconcile_interval))
}

/// Remaining times of bans in force, for a plan.
pub fn ban_times(bans: &rampart_firewall::BanTable, now: Instant) -> Vec<(IpAddr, Duration)> {
    bans.list(now)
        .into_iter()
        .map(|b| (b.ip, b.remaining(now)))
        .collect()
}

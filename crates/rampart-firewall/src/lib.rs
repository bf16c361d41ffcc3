//! Rampart's firewall engines.
//!
//! Everything here is pure: decisions over addresses, request heads and time passed in as
//! arguments. The proxy loads files, keeps the state that outlives a reload and calls these
//! engines from its connection and request guards.
//!
//! - [`ipset`]: sets of IPv4/IPv6 networks on longest-prefix tries, parsed from set files.
//! - [`acl`]: allow/deny lists over networks and sets; the longest matching prefix decides.
//! - [`zones`]: which zone a connection belongs to (source networks beat the listener's zone)
//!   and the policy saying which zones may reach which routes and pools.
//! - [`ratelimit`]: GCRA rate limits keyed by client address, header, route or a combination,
//!   in key tables of bounded size, with the IETF `RateLimit` header fields.
//! - [`content`]: per-route content filtering (methods, content types, sizes, deny patterns,
//!   blocked extensions).
//! - [`nft`]: the kernel side, Rampart's nftables table (ban sets with timeouts, zone
//!   segmentation of listener ports) rendered as one script applied in one transaction.
//! - [`ips`]: intrusion prevention: security events feed leaky-bucket scenarios per source; an
//!   overflow bans the source, longer for repeat offenders; an allow-list is never banned.

pub mod acl;
pub mod content;
pub mod ips;
pub mod ipset;
pub mod nft;
pub mod ratelimit;
pub mod zones;

pub use acl::{Acl, AclAction};
pub use content::{ContentFilter, ContentFilterSpec, DenyPattern, DenyTarget, Violation};
pub use ips::{
    Ban, BanPolicy, BanRefused, BanTable, DEFAULT_MAX_BANS, Detector, EventKind, MAX_BAN, Scenario,
    ScenarioSpec, Verdict, is_scanner_agent,
};
pub use ipset::{IpSet, SetParseError, parse_network};
pub use ratelimit::{Gcra, KeyedLimiter, RateDecision};
pub use zones::{Reach, ZonePolicy, ZoneSources, Zones};

/// The address as IPv4 when it is an IPv4-mapped IPv6 address (a dual-stack socket's view of
/// an IPv4 client), unchanged otherwise.
pub fn canonical_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

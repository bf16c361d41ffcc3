//! Zones and the policy between zones and what they may reach.
//!
//! A connection's zone is decided once, at accept: among the zones whose source networks
//! contain the client's address (and that apply to the listener), the one with the longest
//! matching prefix; ties go to the zone defined first. A client no zone's sources contain
//! belongs to the listener's own zone. This is firewalld's rule: a source binding beats the
//! interface binding.
//!
//! The policy says which routes and pools each zone may reach. When a config has no policy at
//! all, every zone reaches everything; once there is one, anything not listed is denied.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use crate::ipset::IpSet;

/// Source networks of a zone: inline networks and named sets.
#[derive(Debug, Clone, Default)]
pub struct ZoneSources {
    pub sets: Vec<Arc<IpSet>>,
}

impl ZoneSources {
    pub fn longest_match(&self, ip: IpAddr) -> Option<u8> {
        self.sets.iter().filter_map(|s| s.longest_match(ip)).max()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.iter().all(|s| s.is_empty())
    }
}

#[derive(Debug, Clone)]
struct ZoneDef {
    name: Arc<str>,
    /// Empty: the zone's sources apply on every listener.
    listeners: Vec<String>,
    sources: ZoneSources,
}

/// Zone classification of connections.
#[derive(Debug, Clone, Default)]
pub struct Zones {
    zones: Vec<ZoneDef>,
}

impl Zones {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a zone; classification prefers earlier zones on equal prefixes.
    pub fn add(&mut self, name: impl Into<Arc<str>>, listeners: Vec<String>, sources: ZoneSources) {
        self.zones.push(ZoneDef {
            name: name.into(),
            listeners,
            sources,
        });
    }

    /// The zone of a connection from `ip` accepted on `listener`, whose own zone is
    /// `listener_zone`.
    pub fn classify(&self, listener: &str, listener_zone: &Arc<str>, ip: IpAddr) -> Arc<str> {
        let mut best: Option<(u8, &ZoneDef)> = None;
        for zone in &self.zones {
            if !zone.listeners.is_empty() && !zone.listeners.iter().any(|l| l == listener) {
                continue;
            }
            if let Some(len) = zone.sources.longest_match(ip)
                && best.is_none_or(|(b, _)| len > b)
            {
                best = Some((len, zone));
            }
        }
        match best {
            Some((_, zone)) => Arc::clone(&zone.name),
            None => Arc::clone(listener_zone),
        }
    }

    /// Source networks of a zone, if it is defined with any.
    pub fn sources(&self, zone: &str) -> Option<&ZoneSources> {
        self.zones
            .iter()
            .find(|z| &*z.name == zone)
            .map(|z| &z.sources)
    }
}

/// What one zone may reach.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    pub all: bool,
    pub routes: HashSet<String>,
    pub pools: HashSet<String>,
}

/// The zone → route/pool policy.
#[derive(Debug, Clone, Default)]
pub struct ZonePolicy {
    enforced: bool,
    reach: HashMap<String, Reach>,
}

impl ZonePolicy {
    /// A policy that lets every zone reach everything (no policy configured).
    pub fn open() -> Self {
        Self::default()
    }

    /// A policy that denies whatever `reach` does not list.
    pub fn enforced(reach: HashMap<String, Reach>) -> Self {
        ZonePolicy {
            enforced: true,
            reach,
        }
    }

    pub fn is_enforced(&self) -> bool {
        self.enforced
    }

    /// May a request from `zone` use route `route`, which forwards to `pool`?
    pub fn allows_route(&self, zone: &str, route: &str, pool: &str) -> bool {
        if !self.enforced {
            return true;
        }
        self.reach
            .get(zone)
            .is_some_and(|r| r.all || r.routes.contains(route) || r.pools.contains(pool))
    }

    /// May a connection from `zone` be relayed to `pool` (layer 4 listeners)?
    pub fn allows_pool(&self, zone: &str, pool: &str) -> bool {
        if !self.enforced {
            return true;
        }
        self.reach
            .get(zone)
            .is_some_and(|r| r.all || r.pools.contains(pool))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(text: &str) -> ZoneSources {
        ZoneSources {
            sets: vec![Arc::new(IpSet::parse(text).unwrap())],
        }
    }

    #[test]
    fn sources_beat_the_listener_zone() {
        let mut zones = Zones::new();
        zones.add("internal", vec![], sources("10.0.0.0/8"));
        zones.add("mgmt", vec![], sources("10.2.0.0/24"));
        zones.add("partner", vec!["edge".into()], sources("192.0.2.0/24"));
        let public: Arc<str> = "public".into();
        let zone = |l: &str, ip: &str| zones.classify(l, &public, ip.parse().unwrap());
        assert_eq!(&*zone("web", "10.2.0.5"), "mgmt");
        assert_eq!(&*zone("web", "10.3.0.5"), "internal");
        assert_eq!(&*zone("web", "203.0.113.1"), "public");
        assert_eq!(&*zone("web", "192.0.2.1"), "public", "partner only on edge");
        assert_eq!(&*zone("edge", "192.0.2.1"), "partner");
    }

    #[test]
    fn equal_prefixes_go_to_the_first_zone() {
        let mut zones = Zones::new();
        zones.add("a", vec![], sources("10.0.0.0/8"));
        zones.add("b", vec![], sources("10.0.0.0/8"));
        let public: Arc<str> = "public".into();
        assert_eq!(
            &*zones.classify("l", &public, "10.1.1.1".parse().unwrap()),
            "a"
        );
    }

    #[test]
    fn policy_denies_what_it_does_not_list() {
        let mut reach = HashMap::new();
        reach.insert(
            "public".to_string(),
            Reach {
                all: false,
                routes: ["api".to_string()].into(),
                pools: HashSet::new(),
            },
        );
        reach.insert(
            "mgmt".to_string(),
            Reach {
                all: true,
                ..Reach::default()
            },
        );
        reach.insert(
            "partner".to_string(),
            Reach {
                all: false,
                routes: HashSet::new(),
                pools: ["db".to_string()].into(),
            },
        );
        let policy = ZonePolicy::enforced(reach);
        assert!(policy.allows_route("public", "api", "app"));
        assert!(!policy.allows_route("public", "internal", "app"));
        assert!(policy.allows_route("mgmt", "internal", "app"));
        assert!(!policy.allows_route("vpn", "api", "app"));
        assert!(policy.allows_route("partner", "anything", "db"));
        assert!(policy.allows_pool("partner", "db"));
        assert!(!policy.allows_pool("public", "db"));
        assert!(ZonePolicy::open().allows_route("x", "y", "z"));
    }
}

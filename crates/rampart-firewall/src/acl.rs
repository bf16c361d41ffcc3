//! Allow/deny lists over networks and named IP sets.
//!
//! The most specific entry decides: the longest prefix containing the address, among the
//! inline networks and the sets, wins; when an allow and a deny entry are equally specific,
//! deny wins. An address no entry contains gets the list's default.

use std::net::IpAddr;
use std::sync::Arc;

use crate::ipset::IpSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclAction {
    Allow,
    Deny,
}

/// One ACL, compiled.
#[derive(Debug, Clone)]
pub struct Acl {
    pub name: Arc<str>,
    allow: Vec<Arc<IpSet>>,
    deny: Vec<Arc<IpSet>>,
    default: AclAction,
}

impl Acl {
    /// `allow` and `deny` are sets: each inline network list compiled into a set of its own,
    /// and each named set referenced.
    pub fn new(
        name: impl Into<Arc<str>>,
        allow: Vec<Arc<IpSet>>,
        deny: Vec<Arc<IpSet>>,
        default: AclAction,
    ) -> Self {
        Acl {
            name: name.into(),
            allow,
            deny,
            default,
        }
    }

    fn longest(sets: &[Arc<IpSet>], ip: IpAddr) -> Option<u8> {
        sets.iter().filter_map(|s| s.longest_match(ip)).max()
    }

    pub fn decide(&self, ip: IpAddr) -> AclAction {
        match (
            Self::longest(&self.allow, ip),
            Self::longest(&self.deny, ip),
        ) {
            (None, None) => self.default,
            (Some(_), None) => AclAction::Allow,
            (None, Some(_)) => AclAction::Deny,
            (Some(allow), Some(deny)) if allow > deny => AclAction::Allow,
            (Some(_), Some(_)) => AclAction::Deny,
        }
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        self.decide(ip) == AclAction::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> Arc<IpSet> {
        Arc::new(IpSet::parse(text).unwrap())
    }

    #[test]
    fn most_specific_entry_decides() {
        let acl = Acl::new(
            "a",
            vec![set("10.1.0.0/16")],
            vec![set("10.0.0.0/8"), set("10.1.2.0/24")],
            AclAction::Allow,
        );
        assert!(!acl.allows("10.9.9.9".parse().unwrap()));
        assert!(acl.allows("10.1.9.9".parse().unwrap()));
        assert!(!acl.allows("10.1.2.9".parse().unwrap()));
        assert!(acl.allows("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn equal_prefixes_deny() {
        let acl = Acl::new(
            "a",
            vec![set("192.0.2.0/24")],
            vec![set("192.0.2.0/24")],
            AclAction::Allow,
        );
        assert!(!acl.allows("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn default_applies_when_nothing_matches() {
        let acl = Acl::new("a", vec![set("192.0.2.0/24")], vec![], AclAction::Deny);
        assert!(acl.allows("192.0.2.1".parse().unwrap()));
        assert!(!acl.allows("198.51.100.1".parse().unwrap()));
        assert!(!acl.allows("2001:db8::1".parse().unwrap()));
    }
}

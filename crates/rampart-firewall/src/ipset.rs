//! Sets of IPv4/IPv6 networks with longest-prefix lookup.
//!
//! A set file holds one address or network per line (`192.0.2.7`, `198.51.100.0/24`,
//! `2001:db8::/32`); `#` starts a comment, blank lines are skipped. A network with host bits
//! set (`10.0.0.1/8`) is an error rather than silently widened or narrowed.

use std::fmt;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

use crate::canonical_ip;

/// At most this many line errors are reported for one file; the rest are counted.
const MAX_REPORTED_ERRORS: usize = 20;

/// Parses one address (taken as a host network) or network in CIDR notation.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty address".into());
    }
    if text.contains('/') {
        let net: IpNet = text
            .parse()
            .map_err(|_| format!("\"{text}\" is not an IPv4 or IPv6 network (address/prefix)"))?;
        if net.trunc() != net {
            return Err(format!(
                "\"{text}\" has host bits set; the network is {}",
                net.trunc()
            ));
        }
        Ok(canonical_net(net))
    } else {
        let ip: IpAddr = text
            .parse()
            .map_err(|_| format!("\"{text}\" is not an IPv4 or IPv6 address"))?;
        Ok(canonical_net(IpNet::from(ip)))
    }
}

/// `::ffff:a.b.c.d/n` (n ≥ 96) is the IPv4 network it maps.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        other => other,
    }
}

/// One bad line of a set file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetParseError {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for SetParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Every problem found in a set file (the first [`MAX_REPORTED_ERRORS`], plus a count).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SetParseErrors {
    pub errors: Vec<SetParseError>,
    pub more: usize,
}

impl fmt::Display for SetParseErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        if self.more > 0 {
            write!(f, "; and {} more bad lines", self.more)?;
        }
        Ok(())
    }
}

/// A set of networks. Lookups return the longest prefix containing an address.
#[derive(Clone, Default)]
pub struct IpSet {
    v4: PrefixMap<Ipv4Net, ()>,
    v6: PrefixMap<Ipv6Net, ()>,
    len: usize,
}

impl fmt::Debug for IpSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpSet").field("len", &self.len).finish()
    }
}

impl IpSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a set file's text; every bad line is reported with its number.
    pub fn parse(text: &str) -> Result<IpSet, SetParseErrors> {
        let mut set = IpSet::new();
        let mut errors = Vec::new();
        let mut more = 0;
        for (index, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            match parse_network(entry) {
                Ok(net) => set.insert(net),
                Err(message) if errors.len() < MAX_REPORTED_ERRORS => errors.push(SetParseError {
                    line: index + 1,
                    message,
                }),
                Err(_) => more += 1,
            }
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(SetParseErrors { errors, more })
        }
    }

    pub fn insert(&mut self, net: IpNet) {
        let fresh = match canonical_net(net.trunc()) {
            IpNet::V4(v4) => self.v4.insert(v4, ()).is_none(),
            IpNet::V6(v6) => self.v6.insert(v6, ()).is_none(),
        };
        if fresh {
            self.len += 1;
        }
    }

    /// The length of the longest prefix in the set that contains `ip`.
    pub fn longest_match(&self, ip: IpAddr) -> Option<u8> {
        match canonical_ip(ip) {
            IpAddr::V4(v4) => self
                .v4
                .get_lpm(&Ipv4Net::from(v4))
                .map(|(net, _)| net.prefix_len()),
            IpAddr::V6(v6) => self
                .v6
                .get_lpm(&Ipv6Net::from(v6))
                .map(|(net, _)| net.prefix_len()),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.longest_match(ip).is_some()
    }

    /// Number of distinct networks.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every network, IPv4 first, in address order.
    pub fn networks(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.v4
            .iter()
            .map(|(net, _)| IpNet::V4(net))
            .chain(self.v6.iter().map(|(net, _)| IpNet::V6(net)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let set =
            IpSet::parse("10.0.0.0/8\n10.1.0.0/16 # office\n\n# comment\n2001:db8::/32\n").unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(set.longest_match(ip("10.1.2.3")), Some(16));
        assert_eq!(set.longest_match(ip("10.2.2.3")), Some(8));
        assert_eq!(set.longest_match(ip("11.0.0.1")), None);
        assert_eq!(set.longest_match(ip("2001:db8::1")), Some(32));
        assert_eq!(set.longest_match(ip("2001:db9::1")), None);
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let set = IpSet::parse("192.0.2.0/24\n::ffff:198.51.100.0/120\n").unwrap();
        assert!(set.contains(ip("::ffff:192.0.2.9")));
        assert!(set.contains(ip("198.51.100.7")));
    }

    #[test]
    fn bad_lines_are_named() {
        let err =
            IpSet::parse("10.0.0.0/8\n10.0.0.1/8\nnot-an-ip\n300.1.1.1\n1.2.3.4/33\n").unwrap_err();
        let lines: Vec<usize> = err.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5]);
        assert!(err.errors[0].message.contains("host bits"), "{err}");
        assert!(err.to_string().contains("line 3: \"not-an-ip\""), "{err}");
    }

    #[test]
    fn error_count_is_bounded() {
        let text = "x\n".repeat(1000);
        let err = IpSet::parse(&text).unwrap_err();
        assert_eq!(err.errors.len(), MAX_REPORTED_ERRORS);
        assert_eq!(err.more, 1000 - MAX_REPORTED_ERRORS);
    }

    #[test]
    fn duplicates_count_once() {
        let set = IpSet::parse("1.2.3.4\n1.2.3.4/32\n").unwrap();
        assert_eq!(set.len(), 1);
    }

    proptest! {
        #[test]
        fn lookup_agrees_with_a_scan(
            nets in prop::collection::vec((any::<u32>(), 0u8..=32), 1..40),
            probes in prop::collection::vec(any::<u32>(), 1..40),
        ) {
            let nets: Vec<Ipv4Net> = nets
                .into_iter()
                .map(|(a, len)| Ipv4Net::new(a.into(), len).unwrap().trunc())
                .collect();
            let mut set = IpSet::new();
            for net in &nets {
                set.insert(IpNet::V4(*net));
            }
            for probe in probes {
                let addr = std::net::Ipv4Addr::from(probe);
                let expected = nets.iter().filter(|n| n.contains(&addr)).map(|n| n.prefix_len()).max();
                prop_assert_eq!(set.longest_match(IpAddr::V4(addr)), expected);
            }
        }

        #[test]
        fn parse_never_panics(text in ".{0,200}") {
            let _ = IpSet::parse(&text);
        }
    }
}

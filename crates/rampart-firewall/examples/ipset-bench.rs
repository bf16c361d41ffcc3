//! IP set load and lookup cost: parses a set file of N random networks (default 100,000;
//! IPv4 prefixes /16–/32, a tenth IPv6 /32–/128) and times lookups of random addresses.
//!
//!     cargo run --release -p rampart-firewall --example ipset-bench [-- ENTRIES LOOKUPS]

use std::fmt::Write;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use rampart_firewall::IpSet;

/// xorshift64*: deterministic, so runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let entries: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let lookups: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut text = String::with_capacity(entries * 20);
    for i in 0..entries {
        if i % 10 == 9 {
            let len = 32 + (rng.next() % 97) as u32;
            let addr = u128::from(rng.next()) << 64 | u128::from(rng.next());
            let masked = addr & (!0u128 << (128 - len));
            let _ = writeln!(text, "{}/{len}", Ipv6Addr::from(masked));
        } else {
            let len = 16 + (rng.next() % 17) as u32;
            let addr = rng.next() as u32;
            let masked = if len == 32 {
                addr
            } else {
                addr & (!0u32 << (32 - len))
            };
            let _ = writeln!(text, "{}/{len}", Ipv4Addr::from(masked));
        }
    }
    let started = Instant::now();
    let set = IpSet::parse(&text).expect("generated set parses");
    let load = started.elapsed();
    println!(
        "load: {} lines ({} distinct networks, {:.1} MiB of text) in {:.1} ms",
        entries,
        set.len(),
        text.len() as f64 / (1024.0 * 1024.0),
        load.as_secs_f64() * 1000.0
    );

    let probes: Vec<IpAddr> = (0..4096)
        .map(|i| {
            if i % 10 == 9 {
                IpAddr::V6(Ipv6Addr::from(
                    u128::from(rng.next()) << 64 | u128::from(rng.next()),
                ))
            } else {
                IpAddr::V4(Ipv4Addr::from(rng.next() as u32))
            }
        })
        .collect();
    let started = Instant::now();
    let mut hits = 0usize;
    for i in 0..lookups {
        if set.contains(black_box(probes[i % probes.len()])) {
            hits += 1;
        }
    }
    let elapsed = started.elapsed();
    println!(
        "lookup: {lookups} lookups in {:.1} ms, {:.0} ns each ({hits} hits)",
        elapsed.as_secs_f64() * 1000.0,
        elapsed.as_nanos() as f64 / lookups as f64
    );
}

//! Ketama-style consistent-hash ring.

use crate::hash_bytes;

/// Ring points per weight unit.
pub(crate) const POINTS_PER_UNIT: u64 = 160;
/// Upper bound on the points of a single backend (64 weight units).
pub(crate) const MAX_POINTS_PER_BACKEND: u64 = POINTS_PER_UNIT * 64;

/// Sorted `(point, backend index)` pairs.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    points: Vec<(u64, usize)>,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

impl Ring {
    /// Builds a ring from `(index, id, weight)` triples; weight-0 members are left out.
    ///
    /// Weights are reduced by their greatest common divisor so that e.g. all
    /// backends at weight 100 get the same number of points as at weight 1.
    /// Point positions depend only on the backend id, so adding a backend only
    /// moves keys to the new backend.
    pub(crate) fn build<'a>(members: impl Iterator<Item = (usize, &'a str, u32)> + Clone) -> Ring {
        let g = members
            .clone()
            .filter(|m| m.2 > 0)
            .fold(0u64, |g, m| gcd(g, u64::from(m.2)));
        let mut points = Vec::new();
        if g == 0 {
            return Ring { points };
        }
        for (index, id, weight) in members.filter(|m| m.2 > 0) {
            let units = u64::from(weight) / g;
            let n = units
                .saturating_mul(POINTS_PER_UNIT)
                .min(MAX_POINTS_PER_BACKEND);
            let mut buf = Vec::with_capacity(id.len() + 21);
            for i in 0..n {
                buf.clear();
                buf.extend_from_slice(id.as_bytes());
                buf.push(b'#');
                buf.extend_from_slice(i.to_string().as_bytes());
                points.push((hash_bytes(&buf), index));
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// First member clockwise from `key` for which `eligible` holds.
    pub(crate) fn lookup(&self, key: u64, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|p| p.0 < key);
        let len = self.points.len();
        (0..len)
            .map(|k| self.points[(start + k) % len].1)
            .find(|&idx| eligible(idx))
    }
}

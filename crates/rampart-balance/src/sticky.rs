//! Signed session-persistence cookie values.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the HMAC-SHA256 tag kept in the cookie.
const MAC_LEN: usize = 16;
/// Length of the base64url (unpadded) encoding of the tag.
const MAC_B64_LEN: usize = 22;
/// Longest cookie value [`StickySigner::verify`] looks at.
pub const MAX_STICKY_VALUE_LEN: usize = 256;

/// Signs and verifies sticky-session cookie values.
///
/// Format: `<pct-encoded backend id>.<base64url(mac)>` where
/// `mac = HMAC-SHA256(key, pool || 0x00 || backend_id)[..16]`. The id is
/// percent-encoded (everything except `A-Z a-z 0-9 - _ ~`), so the value only
/// contains cookie-safe characters and the last `.` always separates the MAC.
/// Binding the pool name means a cookie from one pool is rejected by another.
#[derive(Clone)]
pub struct StickySigner {
    mac: HmacSha256,
}

impl std::fmt::Debug for StickySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StickySigner").finish_non_exhaustive()
    }
}

impl StickySigner {
    /// Creates a signer; any key length is accepted (use >= 32 random bytes).
    pub fn new(key: &[u8]) -> Self {
        let mac =
            <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
        StickySigner { mac }
    }

    fn tag(&self, pool: &str, backend_id: &str) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(pool.as_bytes());
        mac.update(&[0u8]);
        mac.update(backend_id.as_bytes());
        mac
    }

    /// Cookie value binding `backend_id` to `pool`.
    pub fn sign(&self, pool: &str, backend_id: &str) -> String {
        let tag = self.tag(pool, backend_id).finalize().into_bytes();
        let mut out = percent_encode(backend_id);
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(&tag[..MAC_LEN]));
        out
    }

    /// Returns the backend id if `value` was produced by [`sign`](Self::sign)
    /// for `pool` with this key. The MAC is compared in constant time. Any
    /// malformed input (empty, longer than 256 bytes, bad encoding, wrong MAC)
    /// yields `None`.
    pub fn verify(&self, pool: &str, value: &str) -> Option<String> {
        if value.is_empty() || value.len() > MAX_STICKY_VALUE_LEN {
            return None;
        }
        let (enc_id, mac_b64) = value.rsplit_once('.')?;
        if mac_b64.len() != MAC_B64_LEN {
            return None;
        }
        let mut tag = [0u8; MAC_LEN + 2];
        let n = URL_SAFE_NO_PAD
            .decode_slice(mac_b64.as_bytes(), &mut tag)
            .ok()?;
        if n != MAC_LEN {
            return None;
        }
        let id = percent_decode(enc_id)?;
        self.tag(pool, &id)
            .verify_truncated_left(&tag[..MAC_LEN])
            .ok()?;
        Some(id)
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~')
}

fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'A'..=b'F' => Some(b - b'A' + 10),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b if is_unreserved(b) => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> StickySigner {
        StickySigner::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn round_trip() {
        let s = signer();
        for id in ["web-1", "10.0.0.1:8080", "ünïcode id", "a.b.c", ""] {
            let v = s.sign("pool-a", id);
            assert!(v.len() <= MAX_STICKY_VALUE_LEN);
            assert!(
                v.bytes()
                    .all(|b| is_unreserved(b) || b == b'.' || b == b'%'),
                "not cookie-safe: {v}"
            );
            assert_eq!(s.verify("pool-a", &v).as_deref(), Some(id), "value {v}");
        }
        assert_eq!(s.sign("p", "web-1").split_once('.').unwrap().0, "web-1");
    }

    #[test]
    fn rejects_other_pool_and_other_key() {
        let s = signer();
        let v = s.sign("pool-a", "web-1");
        assert_eq!(s.verify("pool-b", &v), None);
        assert_eq!(StickySigner::new(b"another key").verify("pool-a", &v), None);
        // pool/id boundary is unambiguous thanks to the 0x00 separator
        let v2 = s.sign("pool", "-aweb-1");
        assert_eq!(
            s.verify("pool-a", &v2.replacen("-aweb-1", "web-1", 1)),
            None
        );
    }

    #[test]
    fn rejects_tampering() {
        let s = signer();
        let v = s.sign("pool-a", "web-1");
        // different id, same mac
        let (_, mac) = v.split_once('.').unwrap();
        assert_eq!(s.verify("pool-a", &format!("web-2.{mac}")), None);
        // flip each character of the value
        for i in 0..v.len() {
            let mut b = v.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let t = String::from_utf8(b).unwrap();
            if t != v {
                assert_eq!(s.verify("pool-a", &t), None, "accepted {t}");
            }
        }
        // truncated
        for n in 0..v.len() {
            assert_eq!(s.verify("pool-a", &v[..n]), None);
        }
        // extended
        assert_eq!(s.verify("pool-a", &format!("{v}A")), None);
        assert_eq!(s.verify("pool-a", &format!("{v}=")), None);
        assert_eq!(s.verify("pool-a", &format!("x{v}")), None);
    }

    #[test]
    fn rejects_garbage() {
        let s = signer();
        let huge = "a".repeat(10_000) + "." + &"A".repeat(22);
        for g in [
            "",
            ".",
            "..",
            "web-1",
            "web-1.",
            ".AAAAAAAAAAAAAAAAAAAAAA",
            "web-1.!!!!!!!!!!!!!!!!!!!!!!",
            "web%ZZ.AAAAAAAAAAAAAAAAAAAAAA",
            "web%FF.AAAAAAAAAAAAAAAAAAAAAA",
            "web%.AAAAAAAAAAAAAAAAAAAAAA",
            "\u{0}\u{1}\u{7f}.\u{fffd}",
            "ÿÿÿÿ.ÿÿÿÿÿÿÿÿÿÿÿ",
            huge.as_str(),
        ] {
            assert_eq!(s.verify("pool-a", g), None, "accepted {g:?}");
        }
        // a valid value padded beyond the limit is rejected
        let long_id = "x".repeat(240);
        let v = s.sign("p", &long_id);
        assert!(v.len() > MAX_STICKY_VALUE_LEN);
        assert_eq!(s.verify("p", &v), None);
    }

    #[test]
    fn non_canonical_mac_encoding_rejected() {
        let s = signer();
        let v = s.sign("p", "a");
        let (id, mac) = v.split_once('.').unwrap();
        // the last base64 char of a 16-byte tag carries 4 unused bits; changing them must fail
        let last = mac.as_bytes()[21];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let pos = alphabet.iter().position(|&c| c == last).unwrap();
        let alt = alphabet[pos ^ 1];
        let forged = format!("{id}.{}{}", &mac[..21], char::from(alt));
        assert_eq!(s.verify("p", &forged), None);
    }
}

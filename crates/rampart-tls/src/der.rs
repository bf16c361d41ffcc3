//! Just enough DER/X.509 parsing to report a leaf certificate's expiry and DNS names.
//!
//! This is not a validator: chain and signature checks are left to rustls/webpki.

use std::time::{Duration, SystemTime};

const TAG_BOOLEAN: u8 = 0x01;
const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_VERSION: u8 = 0xa0;
const TAG_ISSUER_UID: u8 = 0x81;
const TAG_SUBJECT_UID: u8 = 0x82;
const TAG_EXTENSIONS: u8 = 0xa3;
const TAG_SAN_DNS_NAME: u8 = 0x82;
/// id-ce-subjectAltName (2.5.29.17).
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// What this crate needs to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertFacts {
    pub not_after: SystemTime,
    pub dns_names: Vec<String>,
}

type Result<T> = std::result::Result<T, String>;

/// Splits one TLV off the front of `input`: (tag, contents, rest).
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first().ok_or("unexpected end of data")?;
    if tag & 0x1f == 0x1f {
        return Err("multi-byte tags are not supported".into());
    }
    let (&first, mut rest) = rest.split_first().ok_or("missing length")?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err("unsupported length encoding".into());
        }
        if rest.len() < n {
            return Err("truncated length".into());
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err("truncated value".into());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// Reads a TLV that must carry `expected` as its tag.
fn expect<'a>(input: &'a [u8], expected: u8, what: &str) -> Result<(&'a [u8], &'a [u8])> {
    let (tag, value, rest) = tlv(input).map_err(|e| format!("{what}: {e}"))?;
    if tag != expected {
        return Err(format!(
            "{what}: expected tag 0x{expected:02x}, found 0x{tag:02x}"
        ));
    }
    Ok((value, rest))
}

/// Parses a DER X.509 certificate far enough to extract notAfter and the DNS SANs.
pub(crate) fn parse_certificate(der: &[u8]) -> Result<CertFacts> {
    let (cert, trailing) = expect(der, TAG_SEQUENCE, "certificate")?;
    if !trailing.is_empty() {
        return Err("trailing data after certificate".into());
    }
    let (tbs, rest) = expect(cert, TAG_SEQUENCE, "tbsCertificate")?;
    let (_, rest) = expect(rest, TAG_SEQUENCE, "signatureAlgorithm")?;
    let (_, _, rest) = tlv(rest).map_err(|e| format!("signatureValue: {e}"))?;
    if !rest.is_empty() {
        return Err("unexpected data after signature".into());
    }

    let mut rest = tbs;
    if rest.first() == Some(&TAG_VERSION) {
        rest = expect(rest, TAG_VERSION, "version")?.1;
    }
    let (_, rest) = expect(rest, TAG_INTEGER, "serialNumber")?;
    let (_, rest) = expect(rest, TAG_SEQUENCE, "signature")?;
    let (_, rest) = expect(rest, TAG_SEQUENCE, "issuer")?;
    let (validity, rest) = expect(rest, TAG_SEQUENCE, "validity")?;
    let (_, rest) = expect(rest, TAG_SEQUENCE, "subject")?;
    let (_, mut rest) = expect(rest, TAG_SEQUENCE, "subjectPublicKeyInfo")?;

    let (_, _, validity_rest) = tlv(validity).map_err(|e| format!("notBefore: {e}"))?;
    let (tag, not_after, _) = tlv(validity_rest).map_err(|e| format!("notAfter: {e}"))?;
    let not_after = parse_time(tag, not_after).map_err(|e| format!("notAfter: {e}"))?;

    let mut dns_names = Vec::new();
    while !rest.is_empty() {
        let (tag, value, next) = tlv(rest).map_err(|e| format!("tbsCertificate: {e}"))?;
        rest = next;
        match tag {
            TAG_ISSUER_UID | TAG_SUBJECT_UID => {}
            TAG_EXTENSIONS => {
                let (mut exts, _) = expect(value, TAG_SEQUENCE, "extensions")?;
                while !exts.is_empty() {
                    let (ext, next) = expect(exts, TAG_SEQUENCE, "extension")?;
                    exts = next;
                    let (oid, mut ext) = expect(ext, TAG_OID, "extension id")?;
                    if ext.first() == Some(&TAG_BOOLEAN) {
                        ext = expect(ext, TAG_BOOLEAN, "extension critical flag")?.1;
                    }
                    let (value, _) = expect(ext, TAG_OCTET_STRING, "extension value")?;
                    if oid == OID_SUBJECT_ALT_NAME {
                        dns_names.extend(parse_san(value)?);
                    }
                }
            }
            other => {
                return Err(format!(
                    "tbsCertificate: unexpected field tag 0x{other:02x}"
                ));
            }
        }
    }
    Ok(CertFacts {
        not_after,
        dns_names,
    })
}

fn parse_san(value: &[u8]) -> Result<Vec<String>> {
    let (mut names, _) = expect(value, TAG_SEQUENCE, "subjectAltName")?;
    let mut out = Vec::new();
    while !names.is_empty() {
        let (tag, name, next) = tlv(names).map_err(|e| format!("subjectAltName: {e}"))?;
        names = next;
        if tag == TAG_SAN_DNS_NAME {
            let name = std::str::from_utf8(name)
                .map_err(|_| "subjectAltName: DNS name is not ASCII".to_string())?;
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// Parses UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn parse_time(tag: u8, value: &[u8]) -> Result<SystemTime> {
    let text = std::str::from_utf8(value).map_err(|_| "time is not ASCII".to_string())?;
    let digits = text
        .strip_suffix('Z')
        .ok_or_else(|| format!("time '{text}' is not in UTC"))?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("malformed time '{text}'"));
    }
    let num = |s: &str| s.parse::<i64>().expect("ascii digits");
    let (year, rest) = match (tag, digits.len()) {
        (TAG_UTC_TIME, 12) => {
            let yy = num(&digits[..2]);
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (TAG_GENERALIZED_TIME, 14) => (num(&digits[..4]), &digits[4..]),
        _ => return Err(format!("malformed time '{text}'")),
    };
    let (month, day) = (num(&rest[0..2]), num(&rest[2..4]));
    let (hour, minute, second) = (num(&rest[4..6]), num(&rest[6..8]), num(&rest[8..10]));
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(format!("malformed time '{text}'"));
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Ok(if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    })
}

/// Days since 1970-01-01 for a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn times() {
        let t = parse_time(TAG_UTC_TIME, b"000101000000Z").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            946_684_800
        );
        let t = parse_time(TAG_GENERALIZED_TIME, b"40960101000000Z").unwrap();
        assert!(t > SystemTime::UNIX_EPOCH);
        let t = parse_time(TAG_UTC_TIME, b"750101000000Z").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            157_766_400
        );
        assert!(parse_time(TAG_UTC_TIME, b"0001010000Z").is_err());
        assert!(parse_time(TAG_UTC_TIME, b"001301000000Z").is_err());
        assert!(parse_time(TAG_GENERALIZED_TIME, b"20000101000000+0100").is_err());
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(parse_certificate(&[]).is_err());
        assert!(parse_certificate(&[0x30, 0x82, 0xff]).is_err());
        assert!(parse_certificate(&[0x30, 0x00]).is_err());
        assert!(parse_certificate(b"not a certificate at all").is_err());
    }
}

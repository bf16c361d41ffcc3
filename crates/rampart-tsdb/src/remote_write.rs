//! Prometheus remote write 1.0: snappy-compressed protobuf `WriteRequest` bodies.
//!
//! The protobuf is decoded by hand: only four small messages matter here, and a
//! hand-written reader lets every length, count and size be checked against
//! [`Limits`] before anything is allocated for it.

/// Limits on what one request may carry (everything from the network is bounded).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest compressed body accepted.
    pub max_body: usize,
    /// Largest uncompressed protobuf accepted (checked before allocating).
    pub max_decoded: usize,
    /// Most series in one request.
    pub max_series: usize,
    /// Most labels in one series.
    pub max_labels_per_series: usize,
    /// Longest label name or value, in bytes.
    pub max_label_bytes: usize,
    /// Most samples in one request, over all its series.
    pub max_samples: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: 16 << 20,
            max_decoded: 64 << 20,
            max_series: 1_000_000,
            max_labels_per_series: 64,
            max_label_bytes: 16 << 10,
            max_samples: 10_000_000,
        }
    }
}

/// One series of a request: labels as sent (the caller validates names) and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenSeries {
    /// `(name, value)` pairs in the order they were sent.
    pub labels: Vec<(String, String)>,
    /// `(timestamp in milliseconds, value)` pairs in the order they were sent.
    pub samples: Vec<(i64, f64)>,
}

/// A decoded remote write request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteRequest {
    /// The series with their float samples.
    pub series: Vec<WrittenSeries>,
    /// Native histogram samples, which are not stored.
    pub histograms: usize,
}

/// Why a request body could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("body of {size} bytes exceeds the limit of {limit}")]
    BodyTooLarge { size: usize, limit: usize },
    #[error("body is not snappy: {0}")]
    NotSnappy(String),
    #[error("decoded size {size} exceeds the limit of {limit}")]
    DecodedTooLarge { size: usize, limit: usize },
    #[error("protobuf: truncated {what} at byte {offset}")]
    Truncated { what: &'static str, offset: usize },
    #[error("protobuf: varint at byte {offset} overflows 64 bits")]
    VarintOverflow { offset: usize },
    #[error(
        "protobuf: length {len} at byte {offset} runs past the end of its message ({remaining} bytes left)"
    )]
    LengthOutOfBounds {
        len: u64,
        offset: usize,
        remaining: usize,
    },
    #[error("protobuf: invalid field number {field} at byte {offset}")]
    InvalidFieldNumber { field: u64, offset: usize },
    #[error(
        "protobuf: field {field} at byte {offset} is a group (wire type 3 or 4), which is not supported"
    )]
    Group { field: u32, offset: usize },
    #[error("protobuf: invalid wire type {wire_type} at byte {offset}")]
    InvalidWireType { wire_type: u8, offset: usize },
    #[error("protobuf: field {field} of {message} has wire type {wire_type}, expected {expected}")]
    UnexpectedWireType {
        message: &'static str,
        field: u32,
        wire_type: u8,
        expected: u8,
    },
    #[error("too many series: more than the limit of {limit}")]
    TooManySeries { limit: usize },
    #[error("series {series} has {count} labels, more than the limit of {limit}")]
    TooManyLabels {
        series: usize,
        count: usize,
        limit: usize,
    },
    #[error("series {series}: label {part} of {size} bytes exceeds the limit of {limit}")]
    LabelTooLong {
        series: usize,
        part: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("series {series}: label name is not UTF-8")]
    NameNotUtf8 { series: usize },
    #[error("series {series}: label value is not UTF-8")]
    ValueNotUtf8 { series: usize },
    #[error("too many samples: more than the limit of {limit}")]
    TooManySamples { limit: usize },
    #[error("series {series} without labels")]
    SeriesWithoutLabels { series: usize },
}

/// Decodes a request body (snappy raw block of a protobuf WriteRequest).
pub fn decode(body: &[u8], limits: &Limits) -> Result<WriteRequest, DecodeError> {
    if body.len() > limits.max_body {
        return Err(DecodeError::BodyTooLarge {
            size: body.len(),
            limit: limits.max_body,
        });
    }
    let not_snappy = |e: snap::Error| DecodeError::NotSnappy(e.to_string());
    // The declared length comes from the sender: check it before allocating.
    let size = snap::raw::decompress_len(body).map_err(not_snappy)?;
    if size > limits.max_decoded {
        return Err(DecodeError::DecodedTooLarge {
            size,
            limit: limits.max_decoded,
        });
    }
    let mut decoded = vec![0; size];
    let written = snap::raw::Decoder::new()
        .decompress(body, &mut decoded)
        .map_err(not_snappy)?;
    decoded.truncate(written);
    decode_protobuf(&decoded, limits)
}

/// Decodes an uncompressed protobuf WriteRequest (for tests and callers that decompressed already).
pub fn decode_protobuf(bytes: &[u8], limits: &Limits) -> Result<WriteRequest, DecodeError> {
    if bytes.len() > limits.max_decoded {
        return Err(DecodeError::DecodedTooLarge {
            size: bytes.len(),
            limit: limits.max_decoded,
        });
    }
    let mut reader = Reader::new(bytes, 0);
    let mut request = WriteRequest::default();
    let mut samples = 0;
    while !reader.is_empty() {
        let (field, wire) = reader.key()?;
        match field {
            1 => {
                expect_wire("WriteRequest", field, wire, WireType::Len)?;
                if request.series.len() >= limits.max_series {
                    return Err(DecodeError::TooManySeries {
                        limit: limits.max_series,
                    });
                }
                let message = reader.message()?;
                let series = decode_series(
                    message,
                    request.series.len(),
                    limits,
                    &mut samples,
                    &mut request.histograms,
                )?;
                request.series.push(series);
            }
            // Metadata (3) and anything newer senders add are not needed.
            _ => reader.skip(wire)?,
        }
    }
    Ok(request)
}

/// Encodes a WriteRequest as protobuf then snappy (the remote-write sender uses this; tests round-trip it).
///
/// `histograms` is only a count, so nothing is encoded for it.
///
/// # Panics
///
/// If the protobuf is 4 GiB or more, beyond what a snappy raw block can hold.
pub fn encode(request: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&encode_protobuf(request))
        .expect("a remote write request fits in one snappy block")
}

fn encode_protobuf(request: &WriteRequest) -> Vec<u8> {
    let mut out = Vec::new();
    // Nested messages need their length first: build each in a reused buffer.
    let mut series_buf = Vec::new();
    let mut item = Vec::new();
    for series in &request.series {
        series_buf.clear();
        for (name, value) in &series.labels {
            item.clear();
            put_bytes(&mut item, 1, name.as_bytes());
            put_bytes(&mut item, 2, value.as_bytes());
            put_bytes(&mut series_buf, 1, &item);
        }
        for &(timestamp, value) in &series.samples {
            item.clear();
            put_key(&mut item, 1, WireType::Fixed64);
            item.extend_from_slice(&value.to_bits().to_le_bytes());
            put_key(&mut item, 2, WireType::Varint);
            // int64 is sent as its two's complement: negatives take 10 bytes.
            put_varint(&mut item, timestamp as u64);
            put_bytes(&mut series_buf, 2, &item);
        }
        put_bytes(&mut out, 1, &series_buf);
    }
    out
}

fn decode_series(
    mut reader: Reader<'_>,
    index: usize,
    limits: &Limits,
    samples_total: &mut usize,
    histograms: &mut usize,
) -> Result<WrittenSeries, DecodeError> {
    let mut labels = Vec::new();
    let mut label_count = 0;
    let mut samples = Vec::new();
    while !reader.is_empty() {
        let (field, wire) = reader.key()?;
        match field {
            1 => {
                expect_wire("TimeSeries", field, wire, WireType::Len)?;
                let message = reader.message()?;
                label_count += 1;
                // Past the limit, labels are only counted so the error can say how many.
                if label_count <= limits.max_labels_per_series {
                    labels.push(decode_label(message, index, limits)?);
                }
            }
            2 => {
                expect_wire("TimeSeries", field, wire, WireType::Len)?;
                let message = reader.message()?;
                if *samples_total >= limits.max_samples {
                    return Err(DecodeError::TooManySamples {
                        limit: limits.max_samples,
                    });
                }
                samples.push(decode_sample(message)?);
                *samples_total += 1;
            }
            4 => {
                expect_wire("TimeSeries", field, wire, WireType::Len)?;
                reader.message()?;
                *histograms += 1;
            }
            // Exemplars (3) and unknown fields.
            _ => reader.skip(wire)?,
        }
    }
    if label_count > limits.max_labels_per_series {
        return Err(DecodeError::TooManyLabels {
            series: index,
            count: label_count,
            limit: limits.max_labels_per_series,
        });
    }
    if labels.is_empty() {
        return Err(DecodeError::SeriesWithoutLabels { series: index });
    }
    Ok(WrittenSeries { labels, samples })
}

fn decode_label(
    mut reader: Reader<'_>,
    series: usize,
    limits: &Limits,
) -> Result<(String, String), DecodeError> {
    let mut name: &[u8] = &[];
    let mut value: &[u8] = &[];
    while !reader.is_empty() {
        let (field, wire) = reader.key()?;
        match field {
            1 => {
                expect_wire("Label", field, wire, WireType::Len)?;
                name = reader.bytes()?.1;
            }
            2 => {
                expect_wire("Label", field, wire, WireType::Len)?;
                value = reader.bytes()?.1;
            }
            _ => reader.skip(wire)?,
        }
    }
    // Sizes first: no point validating UTF-8 of something too long anyway.
    for (part, bytes) in [("name", name), ("value", value)] {
        if bytes.len() > limits.max_label_bytes {
            return Err(DecodeError::LabelTooLong {
                series,
                part,
                size: bytes.len(),
                limit: limits.max_label_bytes,
            });
        }
    }
    let name = std::str::from_utf8(name).map_err(|_| DecodeError::NameNotUtf8 { series })?;
    let value = std::str::from_utf8(value).map_err(|_| DecodeError::ValueNotUtf8 { series })?;
    Ok((name.to_owned(), value.to_owned()))
}

fn decode_sample(mut reader: Reader<'_>) -> Result<(i64, f64), DecodeError> {
    // Proto3 leaves zero values out, so a missing field means 0.
    let mut value = 0.0;
    let mut timestamp = 0;
    while !reader.is_empty() {
        let (field, wire) = reader.key()?;
        match field {
            1 => {
                expect_wire("Sample", field, wire, WireType::Fixed64)?;
                // from_bits keeps NaN payloads such as Prometheus' stale marker.
                value = f64::from_bits(reader.fixed64()?);
            }
            2 => {
                expect_wire("Sample", field, wire, WireType::Varint)?;
                timestamp = reader.varint()? as i64;
            }
            _ => reader.skip(wire)?,
        }
    }
    Ok((timestamp, value))
}

fn expect_wire(
    message: &'static str,
    field: u32,
    wire: WireType,
    expected: WireType,
) -> Result<(), DecodeError> {
    if wire == expected {
        Ok(())
    } else {
        Err(DecodeError::UnexpectedWireType {
            message,
            field,
            wire_type: wire as u8,
            expected: expected as u8,
        })
    }
}

/// The protobuf wire types still in use (groups, 3 and 4, are rejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum WireType {
    Varint = 0,
    Fixed64 = 1,
    Len = 2,
    Fixed32 = 5,
}

/// Largest field number protobuf allows (2^29 - 1).
const MAX_FIELD: u64 = (1 << 29) - 1;

/// Reads one message; `base` is where it starts in the whole protobuf, so
/// errors in nested messages still name an absolute byte offset.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let offset = self.offset();
        let mut value = 0u64;
        for i in 0..10u32 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(DecodeError::Truncated {
                    what: "varint",
                    offset,
                });
            };
            self.pos += 1;
            // The tenth byte holds only the 64th bit: anything more overflows.
            if i == 9 && byte > 1 {
                return Err(DecodeError::VarintOverflow { offset });
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::VarintOverflow { offset })
    }

    fn key(&mut self) -> Result<(u32, WireType), DecodeError> {
        let offset = self.offset();
        let key = self.varint()?;
        let number = key >> 3;
        let field = match u32::try_from(number) {
            Ok(field) if number != 0 && number <= MAX_FIELD => field,
            _ => {
                return Err(DecodeError::InvalidFieldNumber {
                    field: number,
                    offset,
                });
            }
        };
        let wire = match key & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            5 => WireType::Fixed32,
            3 | 4 => return Err(DecodeError::Group { field, offset }),
            other => {
                return Err(DecodeError::InvalidWireType {
                    wire_type: other as u8,
                    offset,
                });
            }
        };
        Ok((field, wire))
    }

    /// A length-delimited field: its absolute offset and its bytes.
    fn bytes(&mut self) -> Result<(usize, &'a [u8]), DecodeError> {
        let offset = self.offset();
        let len = self.varint()?;
        let remaining = self.buf.len() - self.pos;
        let len = match usize::try_from(len) {
            Ok(n) if n <= remaining => n,
            _ => {
                return Err(DecodeError::LengthOutOfBounds {
                    len,
                    offset,
                    remaining,
                });
            }
        };
        let start = self.pos;
        self.pos += len;
        Ok((self.base + start, &self.buf[start..self.pos]))
    }

    fn message(&mut self) -> Result<Reader<'a>, DecodeError> {
        let (base, bytes) = self.bytes()?;
        Ok(Reader::new(bytes, base))
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let offset = self.offset();
        let bytes = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or(DecodeError::Truncated { what, offset })?;
        self.pos += n;
        Ok(bytes)
    }

    fn fixed64(&mut self) -> Result<u64, DecodeError> {
        let mut raw = [0; 8];
        raw.copy_from_slice(self.take(8, "fixed64")?);
        Ok(u64::from_le_bytes(raw))
    }

    fn skip(&mut self, wire: WireType) -> Result<(), DecodeError> {
        match wire {
            WireType::Varint => {
                self.varint()?;
            }
            WireType::Fixed64 => {
                self.take(8, "fixed64")?;
            }
            WireType::Len => {
                self.bytes()?;
            }
            WireType::Fixed32 => {
                self.take(4, "fixed32")?;
            }
        }
        Ok(())
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: WireType) {
    put_varint(out, (u64::from(field) << 3) | wire as u64);
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, WireType::Len);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|&(n, v)| (n.to_owned(), v.to_owned()))
            .collect()
    }

    fn example() -> WriteRequest {
        WriteRequest {
            series: vec![
                WrittenSeries {
                    labels: labels(&[("__name__", "up"), ("job", "node"), ("zone", "é")]),
                    samples: vec![(1_700_000_000_000, 1.0), (1_700_000_015_000, 0.0)],
                },
                WrittenSeries {
                    labels: labels(&[("__name__", "temp"), ("b", ""), ("a", "x")]),
                    samples: vec![(0, -2.5), (i64::MAX, f64::INFINITY), (i64::MIN, -0.0)],
                },
                WrittenSeries {
                    labels: labels(&[("__name__", "empty")]),
                    samples: vec![],
                },
            ],
            histograms: 0,
        }
    }

    fn one_series(labels: Vec<(String, String)>, samples: Vec<(i64, f64)>) -> Vec<u8> {
        encode_protobuf(&WriteRequest {
            series: vec![WrittenSeries { labels, samples }],
            histograms: 0,
        })
    }

    #[test]
    fn round_trip() {
        let request = example();
        let decoded = decode(&encode(&request), &Limits::default()).unwrap();
        assert_eq!(decoded, request);
        // Labels keep the order they were sent in, not sorted.
        assert_eq!(decoded.series[1].labels[1].0, "b");
        assert_eq!(
            decoded.series[1].samples[2].1.to_bits(),
            (-0.0f64).to_bits()
        );
        assert_eq!(
            decode(&encode(&WriteRequest::default()), &Limits::default()).unwrap(),
            WriteRequest::default()
        );
    }

    fn put_unknown(out: &mut Vec<u8>, first: u32) {
        put_key(out, first, WireType::Varint);
        put_varint(out, u64::MAX);
        put_key(out, first + 1, WireType::Fixed64);
        out.extend_from_slice(&[0xaa; 8]);
        put_bytes(out, first + 2, b"\x08\x01 not parsed");
        put_key(out, first + 3, WireType::Fixed32);
        out.extend_from_slice(&[0xbb; 4]);
    }

    #[test]
    fn unknown_fields_of_every_wire_type_are_skipped() {
        let mut label = Vec::new();
        put_unknown(&mut label, 3);
        put_bytes(&mut label, 1, b"__name__");
        put_unknown(&mut label, 100);
        put_bytes(&mut label, 2, b"up");

        let mut sample = Vec::new();
        put_unknown(&mut sample, 3);
        put_key(&mut sample, 2, WireType::Varint);
        put_varint(&mut sample, 42);
        put_unknown(&mut sample, 2000);
        put_key(&mut sample, 1, WireType::Fixed64);
        sample.extend_from_slice(&7.5f64.to_bits().to_le_bytes());

        let mut series = Vec::new();
        put_unknown(&mut series, 5);
        put_bytes(&mut series, 1, &label);
        put_bytes(&mut series, 3, b"exemplar bytes");
        put_bytes(&mut series, 4, b"histogram bytes");
        put_bytes(&mut series, 4, b"");
        put_bytes(&mut series, 2, &sample);
        put_unknown(&mut series, 1 << 20);

        let mut request = Vec::new();
        put_unknown(&mut request, 4);
        put_bytes(&mut request, 3, b"metadata bytes");
        put_bytes(&mut request, 1, &series);
        put_key(&mut request, 2, WireType::Varint);
        put_varint(&mut request, 1);
        put_unknown(&mut request, u32::try_from(MAX_FIELD).unwrap() - 3);

        let decoded = decode_protobuf(&request, &Limits::default()).unwrap();
        assert_eq!(
            decoded,
            WriteRequest {
                series: vec![WrittenSeries {
                    labels: labels(&[("__name__", "up")]),
                    samples: vec![(42, 7.5)],
                }],
                histograms: 2,
            }
        );
    }

    #[test]
    fn malformed_protobuf_is_named() {
        fn err(bytes: &[u8]) -> DecodeError {
            decode_protobuf(bytes, &Limits::default()).unwrap_err()
        }
        assert_eq!(
            err(&[0x80]).to_string(),
            "protobuf: truncated varint at byte 0"
        );
        assert_eq!(err(&[0xff; 11]), DecodeError::VarintOverflow { offset: 0 });
        let mut too_big: Vec<u8> = vec![0xff; 9];
        too_big.push(0x02);
        assert_eq!(err(&too_big), DecodeError::VarintOverflow { offset: 0 });
        // u64::MAX is a well-formed varint, but not a valid key.
        let mut max: Vec<u8> = vec![0xff; 9];
        max.push(0x01);
        assert!(matches!(err(&max), DecodeError::InvalidFieldNumber { .. }));
        assert_eq!(
            err(&[0x00]),
            DecodeError::InvalidFieldNumber {
                field: 0,
                offset: 0
            }
        );
        assert_eq!(
            err(&[(5 << 3) | 3]),
            DecodeError::Group {
                field: 5,
                offset: 0
            }
        );
        assert_eq!(
            err(&[(5 << 3) | 4]),
            DecodeError::Group {
                field: 5,
                offset: 0
            }
        );
        for wire in [6, 7] {
            assert_eq!(
                err(&[(5 << 3) | wire]),
                DecodeError::InvalidWireType {
                    wire_type: wire,
                    offset: 0
                }
            );
        }
        assert_eq!(
            err(&[0x0a, 0x05, 0x00]),
            DecodeError::LengthOutOfBounds {
                len: 5,
                offset: 1,
                remaining: 1
            }
        );
        // Offsets inside nested messages count from the start of the request.
        assert_eq!(
            err(&[0x0a, 0x01, 0x80]).to_string(),
            "protobuf: truncated varint at byte 2"
        );
        assert_eq!(
            err(&[0x0a, 0x02, 0x08, 0x01]).to_string(),
            "protobuf: field 1 of TimeSeries has wire type 0, expected 2"
        );
        assert_eq!(
            err(&[0x0a, 0x03, 0x0a, 0x02, 0x08]).to_string(),
            "protobuf: length 2 at byte 3 runs past the end of its message (1 bytes left)"
        );
        assert_eq!(
            err(&[0x10, 0x01, 0x15, 0x00]),
            DecodeError::Truncated {
                what: "fixed32",
                offset: 3
            }
        );
        // A sample whose value was sent as a varint.
        let mut sample = Vec::new();
        put_key(&mut sample, 1, WireType::Varint);
        put_varint(&mut sample, 1);
        let mut series = Vec::new();
        put_bytes(&mut series, 1, b"\x0a\x01a");
        put_bytes(&mut series, 2, &sample);
        let mut request = Vec::new();
        put_bytes(&mut request, 1, &series);
        assert_eq!(
            err(&request).to_string(),
            "protobuf: field 1 of Sample has wire type 0, expected 1"
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let limits = Limits::default();
        let request = WriteRequest {
            series: vec![example().series.swap_remove(1)],
            histograms: 0,
        };
        let protobuf = encode_protobuf(&request);
        // An empty protobuf is a valid, empty request; one series means any
        // other prefix cuts that series short.
        assert_eq!(
            decode_protobuf(&[], &limits).unwrap(),
            WriteRequest::default()
        );
        for len in 1..protobuf.len() {
            assert!(decode_protobuf(&protobuf[..len], &limits).is_err(), "{len}");
        }
        let body = encode(&example());
        for len in 0..body.len() {
            assert!(decode(&body[..len], &limits).is_err(), "{len}");
        }
        assert_eq!(decode(&body, &limits).unwrap(), example());
    }

    #[test]
    fn negative_timestamps() {
        let protobuf = one_series(labels(&[("a", "b")]), vec![(-1, 1.0)]);
        // -1 as int64 is ten bytes of varint: nine 0xff and a final 0x01.
        let mut varint: Vec<u8> = vec![0x10];
        varint.extend_from_slice(&[0xff; 9]);
        varint.push(0x01);
        assert!(protobuf.windows(varint.len()).any(|w| w == varint));
        let decoded = decode_protobuf(&protobuf, &Limits::default()).unwrap();
        assert_eq!(decoded.series[0].samples, vec![(-1, 1.0)]);

        let request = WriteRequest {
            series: vec![WrittenSeries {
                labels: labels(&[("a", "b")]),
                samples: vec![(-1_000, 1.0), (i64::MIN, 2.0), (-86_400_000, 3.0)],
            }],
            histograms: 0,
        };
        assert_eq!(
            decode(&encode(&request), &Limits::default()).unwrap(),
            request
        );
    }

    #[test]
    fn stale_nan_bits_survive() {
        let other_nan = f64::NAN.to_bits();
        let body = encode(&WriteRequest {
            series: vec![WrittenSeries {
                labels: labels(&[("__name__", "up")]),
                samples: vec![
                    (1, f64::from_bits(STALE_NAN)),
                    (2, f64::from_bits(other_nan)),
                ],
            }],
            histograms: 0,
        });
        let decoded = decode(&body, &Limits::default()).unwrap();
        let bits: Vec<u64> = decoded.series[0]
            .samples
            .iter()
            .map(|s| s.1.to_bits())
            .collect();
        assert_eq!(bits, vec![STALE_NAN, other_nan]);
    }

    fn raw_label(name: &[u8], value: &[u8]) -> Vec<u8> {
        let mut label = Vec::new();
        put_bytes(&mut label, 1, name);
        put_bytes(&mut label, 2, value);
        label
    }

    fn raw_message(field: u32, items: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for item in items {
            put_bytes(&mut out, field, item);
        }
        out
    }

    #[test]
    fn labels_must_be_utf8_and_present() {
        let limits = Limits::default();
        let good = raw_message(1, &[raw_label(b"a", b"b")]);
        let bad_value = raw_message(
            1,
            &[
                raw_label(b"__name__", b"up"),
                raw_label(b"job", b"\xff\xfe"),
            ],
        );
        let bad_name = raw_message(1, &[raw_label(b"\xc3\x28", b"x")]);
        let no_labels = raw_message(1, &[]);

        let request = raw_message(1, &[good.clone(), bad_value]);
        let err = decode_protobuf(&request, &limits).unwrap_err();
        assert_eq!(err, DecodeError::ValueNotUtf8 { series: 1 });
        assert_eq!(err.to_string(), "series 1: label value is not UTF-8");

        let err = decode_protobuf(&raw_message(1, &[bad_name]), &limits).unwrap_err();
        assert_eq!(err.to_string(), "series 0: label name is not UTF-8");

        let request = raw_message(1, &[good.clone(), good, no_labels]);
        let err = decode_protobuf(&request, &limits).unwrap_err();
        assert_eq!(err, DecodeError::SeriesWithoutLabels { series: 2 });
        assert_eq!(err.to_string(), "series 2 without labels");
    }

    #[test]
    fn limits_are_enforced() {
        let request = example();
        let body = encode(&request);
        let protobuf = encode_protobuf(&request);
        fn with(change: fn(&mut Limits)) -> Limits {
            let mut limits = Limits::default();
            change(&mut limits);
            limits
        }

        // Exactly at every limit is accepted.
        let exact = Limits {
            max_body: body.len(),
            max_decoded: protobuf.len(),
            max_series: 3,
            max_labels_per_series: 3,
            max_label_bytes: 8,
            max_samples: 5,
        };
        assert_eq!(decode(&body, &exact).unwrap(), request);

        let limits = Limits {
            max_body: body.len() - 1,
            ..exact
        };
        let err = decode(&body, &limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "body of {} bytes exceeds the limit of {}",
                body.len(),
                body.len() - 1
            )
        );

        let limits = Limits {
            max_decoded: protobuf.len() - 1,
            ..exact
        };
        let expected = DecodeError::DecodedTooLarge {
            size: protobuf.len(),
            limit: protobuf.len() - 1,
        };
        assert_eq!(decode(&body, &limits).unwrap_err(), expected);
        assert_eq!(decode_protobuf(&protobuf, &limits).unwrap_err(), expected);
        assert!(expected.to_string().starts_with("decoded size "));
        // A declared size far beyond the limit is refused before allocating.
        let mut huge = Vec::new();
        put_varint(&mut huge, u64::from(u32::MAX) - 1);
        huge.push(0);
        assert!(matches!(
            decode(&huge, &Limits::default()).unwrap_err(),
            DecodeError::DecodedTooLarge { .. }
        ));

        let err = decode(&body, &with(|l| l.max_series = 2)).unwrap_err();
        assert_eq!(err, DecodeError::TooManySeries { limit: 2 });
        assert_eq!(err.to_string(), "too many series: more than the limit of 2");

        let err = decode(&body, &with(|l| l.max_labels_per_series = 2)).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TooManyLabels {
                series: 0,
                count: 3,
                limit: 2
            }
        );
        assert_eq!(
            err.to_string(),
            "series 0 has 3 labels, more than the limit of 2"
        );

        let err = decode(&body, &with(|l| l.max_label_bytes = 7)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "series 0: label name of 8 bytes exceeds the limit of 7"
        );
        let long_value = one_series(labels(&[("a", "0123456789")]), vec![]);
        let err = decode_protobuf(&long_value, &with(|l| l.max_label_bytes = 9)).unwrap_err();
        assert_eq!(
            err,
            DecodeError::LabelTooLong {
                series: 0,
                part: "value",
                size: 10,
                limit: 9
            }
        );
        assert_eq!(
            err.to_string(),
            "series 0: label value of 10 bytes exceeds the limit of 9"
        );

        let err = decode(&body, &with(|l| l.max_samples = 4)).unwrap_err();
        assert_eq!(err, DecodeError::TooManySamples { limit: 4 });
        assert_eq!(
            err.to_string(),
            "too many samples: more than the limit of 4"
        );
    }

    #[test]
    fn garbage_is_not_snappy() {
        let limits = Limits::default();
        // An unterminated length header.
        let err = decode(&[0xff; 12], &limits).unwrap_err();
        assert!(matches!(err, DecodeError::NotSnappy(_)));
        assert!(err.to_string().starts_with("body is not snappy: "));
        // A plausible header followed by a copy from before the start.
        let err = decode(&[0x05, 0x01, 0x00, 0x00], &limits).unwrap_err();
        assert!(matches!(err, DecodeError::NotSnappy(_)), "{err}");
        // The framed format (what snap::write produces) is not a raw block.
        let err = decode(b"\xff\x06\x00\x00sNaPpY", &limits).unwrap_err();
        assert!(matches!(err, DecodeError::NotSnappy(_)), "{err}");
        assert!(matches!(
            decode(&[], &limits).unwrap_err(),
            DecodeError::NotSnappy(_)
        ));
        // Valid snappy of something that is not a WriteRequest.
        let text = snap::raw::Encoder::new()
            .compress_vec(b"hello, world")
            .unwrap();
        let err = decode(&text, &limits).unwrap_err();
        assert!(err.to_string().starts_with("protobuf: "), "{err}");
    }

    fn arb_request() -> impl Strategy<Value = WriteRequest> {
        let series = (
            prop::collection::vec(("[a-z_]{1,8}", ".{0,8}"), 1..4),
            prop::collection::vec((any::<i64>(), any::<u64>()), 0..4),
        )
            .prop_map(|(labels, samples)| WrittenSeries {
                labels,
                samples: samples
                    .into_iter()
                    .map(|(t, bits)| (t, f64::from_bits(bits)))
                    .collect(),
            });
        prop::collection::vec(series, 0..4).prop_map(|series| WriteRequest {
            series,
            histograms: 0,
        })
    }

    fn sample_bits(request: &WriteRequest) -> Vec<Vec<(i64, u64)>> {
        request
            .series
            .iter()
            .map(|s| s.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect())
            .collect()
    }

    proptest! {
        #[test]
        fn decode_of_arbitrary_bytes_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..512)
        ) {
            let _ = decode(&bytes, &Limits::default());
            let _ = decode_protobuf(&bytes, &Limits::default());
        }

        #[test]
        fn decode_of_a_damaged_request_never_panics(
            request in arb_request(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>()
        ) {
            let mut protobuf = encode_protobuf(&request);
            if !protobuf.is_empty() {
                let i = at.index(protobuf.len());
                protobuf[i] = byte;
            }
            let _ = decode_protobuf(&protobuf, &Limits::default());
        }

        #[test]
        fn arbitrary_requests_round_trip(request in arb_request()) {
            let decoded = decode(&encode(&request), &Limits::default()).unwrap();
            prop_assert_eq!(decoded.series.len(), request.series.len());
            for (got, sent) in decoded.series.iter().zip(&request.series) {
                prop_assert_eq!(&got.labels, &sent.labels);
            }
            // NaN != NaN, so samples are compared by their bits.
            prop_assert_eq!(sample_bits(&decoded), sample_bits(&request));
        }
    }
}

//! Aggregations and the functions over instant vectors and scalars.

use std::collections::HashMap;

use chrono::{Datelike, TimeZone, Timelike, Utc};
use promql_parser::parser::LabelModifier;

use crate::eval::QueryError;
use crate::value::{Labels, Sample, Value, format_float};

fn fail<T>(message: impl Into<String>) -> Result<T, QueryError> {
    Err(QueryError::Execution(message.into()))
}

/// Kahan-Babuška-Neumaier summation, as Prometheus sums floats.
#[derive(Default, Clone, Copy)]
struct KahanSum {
    sum: f64,
    compensation: f64,
}

impl KahanSum {
    fn add(&mut self, v: f64) {
        let t = self.sum + v;
        if t.is_infinite() {
            self.compensation = 0.0;
        } else if self.sum.abs() >= v.abs() {
            self.compensation += (self.sum - t) + v;
        } else {
            self.compensation += (v - t) + self.sum;
        }
        self.sum = t;
    }

    fn value(&self) -> f64 {
        if self.sum.is_infinite() {
            self.sum
        } else {
            self.sum + self.compensation
        }
    }
}

/// The φ-quantile of `values` with linear interpolation between the closest ranks.
pub fn quantile(phi: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || phi.is_nan() {
        return f64::NAN;
    }
    if phi < 0.0 {
        return f64::NEG_INFINITY;
    }
    if phi > 1.0 {
        return f64::INFINITY;
    }
    // NaN sorts below every number, as Prometheus orders them.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = phi * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// The group an aggregation puts a sample in.
fn group_labels(labels: &Labels, modifier: Option<&LabelModifier>) -> Labels {
    match modifier {
        None => Labels::default(),
        Some(LabelModifier::Include(names)) => labels.keep(&names.labels),
        Some(LabelModifier::Exclude(names)) => labels.drop(&names.labels).without_name(),
    }
}

/// Evaluates an aggregation over `input`.
pub fn aggregate(
    op: &str,
    input: Vec<Sample>,
    param: Option<Value>,
    modifier: Option<&LabelModifier>,
) -> Result<Vec<Sample>, QueryError> {
    let scalar_param = |what: &str| -> Result<f64, QueryError> {
        match &param {
            Some(Value::Scalar(v)) => Ok(*v),
            _ => fail(format!("{op}: expected a scalar {what}")),
        }
    };
    // Groups in first-seen order.
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: HashMap<Labels, Vec<Sample>> = HashMap::new();
    for s in input {
        let key = group_labels(&s.labels, modifier);
        groups
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(s);
    }
    let mut out = Vec::new();
    match op {
        "topk" | "bottomk" | "limitk" => {
            let k = scalar_param("k")?;
            if k.is_nan() {
                return fail(format!("Parameter value is NaN for {op}"));
            }
            let k = if k < 1.0 { 0 } else { k.min(1e9) as usize };
            for key in &order {
                let mut members = groups.remove(key).unwrap_or_default();
                match op {
                    "topk" => members.sort_by(|a, b| desc_nan_last(a.value, b.value)),
                    "bottomk" => members.sort_by(|a, b| asc_nan_last(a.value, b.value)),
                    _ => {}
                }
                out.extend(members.into_iter().take(k));
            }
            return Ok(out);
        }
        "limit_ratio" => {
            if scalar_param("ratio")?.is_nan() {
                return fail("Ratio value is NaN");
            }
            return fail("limit_ratio is not supported");
        }
        _ => {}
    }
    if op == "count_values" {
        let Some(Value::String(label)) = &param else {
            return fail("count_values: expected a string parameter");
        };
        if label.is_empty()
            || !label
                .chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
        {
            return fail(format!("invalid label name {label:?}"));
        }
        let mut counts: Vec<(Labels, f64)> = Vec::new();
        for key in &order {
            for s in &groups[key] {
                let mut labels = key.clone();
                labels.set(label, &format_float(s.value));
                match counts.iter_mut().find(|(l, _)| *l == labels) {
                    Some((_, c)) => *c += 1.0,
                    None => counts.push((labels, 1.0)),
                }
            }
        }
        return Ok(counts
            .into_iter()
            .map(|(labels, value)| Sample::new(labels, value))
            .collect());
    }
    let phi = if op == "quantile" {
        Some(scalar_param("quantile")?)
    } else {
        None
    };
    for key in order {
        let members = &groups[&key];
        let values: Vec<f64> = members.iter().map(|s| s.value).collect();
        let value = match op {
            "sum" => {
                let mut k = KahanSum::default();
                values.iter().for_each(|v| k.add(*v));
                k.value()
            }
            "avg" => avg(&values),
            "count" => values.len() as f64,
            "group" => 1.0,
            "min" => values
                .iter()
                .copied()
                .fold(f64::NAN, |m, v| if m.is_nan() || v < m { v } else { m }),
            "max" => values
                .iter()
                .copied()
                .fold(f64::NAN, |m, v| if m.is_nan() || v > m { v } else { m }),
            "stddev" => variance(&values).sqrt(),
            "stdvar" => variance(&values),
            "quantile" => quantile(phi.unwrap_or(f64::NAN), &mut values.clone()),
            other => return fail(format!("unknown aggregation {other}")),
        };
        // A name kept by `by (__name__)` still goes if any member's was to go.
        let drop_name =
            key.get(crate::value::METRIC_NAME).is_some() && members.iter().any(|s| s.drop_name);
        out.push(Sample {
            labels: key,
            value,
            drop_name,
        });
    }
    Ok(out)
}

fn desc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => b.total_cmp(&a),
    }
}

fn asc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => a.total_cmp(&b),
    }
}

/// Mean with an incremental form once a plain sum would overflow (as Prometheus does).
fn avg(values: &[f64]) -> f64 {
    let mut sum = KahanSum::default();
    for v in values {
        sum.add(*v);
    }
    let total = sum.value();
    if total.is_finite() || values.iter().any(|v| v.is_infinite()) {
        return total / values.len() as f64;
    }
    // The sum overflowed: add up each value's share instead (still compensated).
    let n = values.len() as f64;
    let mut mean = KahanSum::default();
    for v in values {
        mean.add(v / n);
    }
    mean.value()
}

/// Population variance (Welford).
fn variance(values: &[f64]) -> f64 {
    let mut mean = 0.0;
    let mut m2 = 0.0;
    for (i, v) in values.iter().enumerate() {
        let delta = v - mean;
        mean += delta / (i + 1) as f64;
        m2 += delta * (v - mean);
    }
    m2 / values.len() as f64
}

fn vector_arg(name: &str, values: &[Value], i: usize) -> Result<Vec<Sample>, QueryError> {
    match values.get(i) {
        Some(Value::Vector(v)) => Ok(v.clone()),
        _ => fail(format!(
            "{name}: argument {} must be an instant vector",
            i + 1
        )),
    }
}

fn scalar_arg(name: &str, values: &[Value], i: usize) -> Result<f64, QueryError> {
    match values.get(i) {
        Some(Value::Scalar(v)) => Ok(*v),
        _ => fail(format!("{name}: argument {} must be a scalar", i + 1)),
    }
}

fn string_arg<'v>(name: &str, values: &'v [Value], i: usize) -> Result<&'v str, QueryError> {
    match values.get(i) {
        Some(Value::String(s)) => Ok(s),
        _ => fail(format!("{name}: argument {} must be a string", i + 1)),
    }
}

/// Applies `f` to each sample's value, dropping the metric name.
fn map_values(v: Vec<Sample>, f: impl Fn(f64) -> f64) -> Value {
    Value::Vector(
        v.into_iter()
            .map(|s| Sample {
                labels: s.labels,
                value: f(s.value),
                drop_name: true,
            })
            .collect(),
    )
}

fn date_part(
    name: &str,
    values: &[Value],
    t: i64,
    f: impl Fn(chrono::DateTime<Utc>) -> f64,
) -> Result<Value, QueryError> {
    let at = |seconds: f64| -> f64 {
        let millis = (seconds * 1000.0).floor() as i64;
        match Utc.timestamp_millis_opt(millis).single() {
            Some(dt) => f(dt),
            None => f64::NAN,
        }
    };
    if values.is_empty() {
        return Ok(Value::Vector(vec![Sample::new(
            Labels::default(),
            at(t as f64 / 1000.0),
        )]));
    }
    let v = vector_arg(name, values, 0)?;
    Ok(map_values(
        v,
        |x| if x.is_finite() { at(x) } else { f64::NAN },
    ))
}

/// Evaluates a function over already evaluated arguments (range-vector functions are
/// handled by the engine).
pub fn call(name: &str, values: Vec<Value>, t: i64) -> Result<Value, QueryError> {
    let v0 = || vector_arg(name, &values, 0);
    let math = |f: fn(f64) -> f64| -> Result<Value, QueryError> { Ok(map_values(v0()?, f)) };
    match name {
        "abs" => math(f64::abs),
        "ceil" => math(f64::ceil),
        "floor" => math(f64::floor),
        "exp" => math(f64::exp),
        "ln" => math(f64::ln),
        "log2" => math(f64::log2),
        "log10" => math(f64::log10),
        "sqrt" => math(f64::sqrt),
        "sgn" => math(|x| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x
            }
        }),
        "sin" => math(f64::sin),
        "cos" => math(f64::cos),
        "tan" => math(f64::tan),
        "asin" => math(f64::asin),
        "acos" => math(f64::acos),
        "atan" => math(f64::atan),
        "sinh" => math(f64::sinh),
        "cosh" => math(f64::cosh),
        "tanh" => math(f64::tanh),
        "asinh" => math(f64::asinh),
        "acosh" => math(f64::acosh),
        "atanh" => math(f64::atanh),
        "deg" => math(f64::to_degrees),
        "rad" => math(f64::to_radians),
        "round" => {
            let to = if values.len() > 1 {
                scalar_arg(name, &values, 1)?
            } else {
                1.0
            };
            let inverse = 1.0 / to;
            Ok(map_values(v0()?, move |x| {
                (x * inverse + 0.5).floor() / inverse
            }))
        }
        "clamp" => {
            let (lo, hi) = (scalar_arg(name, &values, 1)?, scalar_arg(name, &values, 2)?);
            if lo > hi {
                return Ok(Value::Vector(Vec::new()));
            }
            Ok(map_values(v0()?, move |x| x.max(lo).min(hi)))
        }
        "clamp_min" => {
            let lo = scalar_arg(name, &values, 1)?;
            Ok(map_values(v0()?, move |x| x.max(lo)))
        }
        "clamp_max" => {
            let hi = scalar_arg(name, &values, 1)?;
            Ok(map_values(v0()?, move |x| x.min(hi)))
        }
        "scalar" => {
            let v = v0()?;
            Ok(Value::Scalar(if v.len() == 1 {
                v[0].value
            } else {
                f64::NAN
            }))
        }
        "min_of" | "max_of" => {
            let (a, b) = (scalar_arg(name, &values, 0)?, scalar_arg(name, &values, 1)?);
            // Go's math.Min/Max: a NaN argument gives NaN.
            Ok(Value::Scalar(if a.is_nan() || b.is_nan() {
                f64::NAN
            } else if name == "min_of" {
                a.min(b)
            } else {
                a.max(b)
            }))
        }
        "vector" => Ok(Value::Vector(vec![Sample::new(
            Labels::default(),
            scalar_arg(name, &values, 0)?,
        )])),
        "sort" | "sort_desc" => {
            let mut v = v0()?;
            if name == "sort" {
                v.sort_by(|a, b| asc_nan_last(a.value, b.value));
            } else {
                v.sort_by(|a, b| desc_nan_last(a.value, b.value));
            }
            Ok(Value::Vector(v))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = v0()?;
            let names: Vec<String> = values[1..]
                .iter()
                .filter_map(|x| match x {
                    Value::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            v.sort_by(|a, b| {
                let mut ord = std::cmp::Ordering::Equal;
                for n in &names {
                    ord = natural_cmp(a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""));
                    if ord.is_ne() {
                        break;
                    }
                }
                if ord.is_eq() {
                    ord = a.labels.cmp(&b.labels);
                }
                if name == "sort_by_label_desc" {
                    ord.reverse()
                } else {
                    ord
                }
            });
            Ok(Value::Vector(v))
        }
        "label_replace" => {
            let v = v0()?;
            let dst = string_arg(name, &values, 1)?;
            let replacement = string_arg(name, &values, 2)?;
            let src = string_arg(name, &values, 3)?;
            let pattern = string_arg(name, &values, 4)?;
            let re = regex::Regex::new(&format!("^(?s:{pattern})$")).map_err(|e| {
                QueryError::Execution(format!(
                    "invalid regular expression in label_replace(): {pattern}: {e}"
                ))
            })?;
            if !valid_label_name(dst) {
                return fail(format!(
                    "invalid destination label name in label_replace(): {dst}"
                ));
            }
            let mut out = Vec::with_capacity(v.len());
            for mut s in v {
                let source = s.labels.get(src).unwrap_or("").to_string();
                if let Some(caps) = re.captures(&source) {
                    let mut expanded = String::new();
                    // `$1` and `${name}` read as in Go (`$1x` names the group `1x` in both).
                    caps.expand(replacement, &mut expanded);
                    s.labels.set(dst, &expanded);
                    // Writing the name keeps it.
                    if dst == crate::value::METRIC_NAME {
                        s.drop_name = false;
                    }
                }
                out.push(s);
            }
            Ok(Value::Vector(out))
        }
        "label_join" => {
            let v = v0()?;
            let dst = string_arg(name, &values, 1)?;
            let separator = string_arg(name, &values, 2)?;
            let sources: Vec<&str> = (3..values.len())
                .map(|i| string_arg(name, &values, i))
                .collect::<Result<_, _>>()?;
            if !valid_label_name(dst) {
                return fail(format!(
                    "invalid destination label name in label_join(): {dst}"
                ));
            }
            Ok(Value::Vector(
                v.into_iter()
                    .map(|mut s| {
                        let joined = sources
                            .iter()
                            .map(|n| s.labels.get(n).unwrap_or(""))
                            .collect::<Vec<_>>()
                            .join(separator);
                        s.labels.set(dst, &joined);
                        if dst == crate::value::METRIC_NAME {
                            s.drop_name = false;
                        }
                        s
                    })
                    .collect(),
            ))
        }
        "histogram_quantile" => {
            let phi = scalar_arg(name, &values, 0)?;
            let v = vector_arg(name, &values, 1)?;
            Ok(Value::Vector(histogram_quantile(phi, v)))
        }
        "day_of_month" => date_part(name, &values, t, |d| f64::from(d.day())),
        "day_of_week" => date_part(name, &values, t, |d| {
            f64::from(d.weekday().num_days_from_sunday())
        }),
        "day_of_year" => date_part(name, &values, t, |d| f64::from(d.ordinal())),
        "days_in_month" => date_part(name, &values, t, |d| {
            let (y, m) = (d.year(), d.month());
            let next = if m == 12 {
                Utc.with_ymd_and_hms(y + 1, 1, 1, 0, 0, 0)
            } else {
                Utc.with_ymd_and_hms(y, m + 1, 1, 0, 0, 0)
            };
            let this = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0);
            match (this.single(), next.single()) {
                (Some(a), Some(b)) => (b - a).num_days() as f64,
                _ => f64::NAN,
            }
        }),
        "hour" => date_part(name, &values, t, |d| f64::from(d.hour())),
        "minute" => date_part(name, &values, t, |d| f64::from(d.minute())),
        "month" => date_part(name, &values, t, |d| f64::from(d.month())),
        "year" => date_part(name, &values, t, |d| f64::from(d.year())),
        other => fail(format!("function {other}() is not supported")),
    }
}

/// Natural order: runs of digits compare by number (`cpu9` before `cpu10`), the rest by
/// text, as `sort_by_label` orders values.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => {
                let (xt, yt) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                xt.len().cmp(&yt.len()).then_with(|| xt.cmp(yt))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord.is_ne() {
            return ord;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

fn valid_label_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
}

/// `histogram_quantile` over classic buckets (`le` labels).
fn histogram_quantile(phi: f64, v: Vec<Sample>) -> Vec<Sample> {
    let mut groups: HashMap<Labels, Vec<(f64, f64)>> = HashMap::new();
    let mut order = Vec::new();
    for s in v {
        let Some(le) = s.labels.get("le").and_then(parse_le) else {
            continue;
        };
        let mut key = s.labels.without_name();
        key.remove("le");
        groups
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push((le, s.value));
    }
    let mut out = Vec::new();
    for key in order {
        let mut buckets = groups.remove(&key).unwrap_or_default();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        out.push(Sample::new(key, bucket_quantile(phi, &mut buckets)));
    }
    out
}

fn parse_le(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// Prometheus' `bucketQuantile`: buckets sorted by upper bound, cumulative counts.
fn bucket_quantile(phi: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    if phi.is_nan() {
        return f64::NAN;
    }
    if phi < 0.0 {
        return f64::NEG_INFINITY;
    }
    if phi > 1.0 {
        return f64::INFINITY;
    }
    buckets.dedup_by(|b, a| {
        if a.0 == b.0 {
            a.1 += b.1;
            true
        } else {
            false
        }
    });
    if buckets.len() < 2 || buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Counts must not decrease: a smaller later count is taken as the earlier one.
    for i in 1..buckets.len() {
        if buckets[i].1 < buckets[i - 1].1 {
            buckets[i].1 = buckets[i - 1].1;
        }
    }
    let total = buckets[buckets.len() - 1].1;
    if total == 0.0 || total.is_nan() {
        return f64::NAN;
    }
    let rank = phi * total;
    let b = buckets
        .iter()
        .position(|(_, c)| *c >= rank)
        .unwrap_or(buckets.len() - 1);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (mut start, mut end, mut count) = (0.0, buckets[b].0, buckets[b].1);
    let mut rank = rank;
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    if count == 0.0 {
        end = start;
    }
    start + (end - start) * (rank / count.max(f64::MIN_POSITIVE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::METRIC_NAME;

    fn sample(pairs: &[(&str, &str)], value: f64) -> Sample {
        Sample::new(
            Labels::new(pairs.iter().map(|(a, b)| (a.to_string(), b.to_string()))),
            value,
        )
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(0.5, &mut [1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(quantile(0.0, &mut [3.0, 1.0]), 1.0);
        assert_eq!(quantile(2.0, &mut [1.0]), f64::INFINITY);
    }

    #[test]
    fn histogram_quantile_on_classic_buckets() {
        let v = vec![
            sample(&[("__name__", "h_bucket"), ("le", "1")], 10.0),
            sample(&[("__name__", "h_bucket"), ("le", "2")], 20.0),
            sample(&[("__name__", "h_bucket"), ("le", "+Inf")], 20.0),
        ];
        let out = histogram_quantile(0.75, v);
        assert_eq!(out.len(), 1);
        assert!((out[0].value - 1.5).abs() < 1e-9, "{}", out[0].value);
        assert!(out[0].labels.is_empty());
    }

    #[test]
    fn sums_compensate() {
        let mut k = KahanSum::default();
        for v in [1e16, 1.0, -1e16] {
            k.add(v);
        }
        assert_eq!(k.value(), 1.0);
    }

    #[test]
    fn metric_names_are_marked_to_go_by_math() {
        let Value::Vector(v) = call(
            "abs",
            vec![Value::Vector(vec![sample(
                &[(METRIC_NAME, "x"), ("a", "1")],
                -2.0,
            )])],
            0,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(v[0].value, 2.0);
        // Kept for label functions until the query ends (delayed name removal).
        assert_eq!(v[0].labels.get(METRIC_NAME), Some("x"));
        assert!(v[0].drop_name);
    }
}

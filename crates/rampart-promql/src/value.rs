//! Labels, samples, series and the values a query yields.

/// A label set, sorted by name, without empty values.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(pub Vec<(String, String)>);

/// The label holding a series' metric name.
pub const METRIC_NAME: &str = "__name__";

impl Labels {
    /// Builds a label set from pairs in any order; empty values are dropped (Prometheus
    /// treats a label with an empty value as absent).
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Labels {
        let mut v: Vec<(String, String)> =
            pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        v.sort();
        v.dedup_by(|a, b| a.0 == b.0);
        Labels(v)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// Sets (or, with an empty value, removes) a label.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].1 = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, (name.to_string(), value.to_string())),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
    }

    /// The same labels without the metric name.
    pub fn without_name(&self) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(n, _)| n != METRIC_NAME)
                .cloned()
                .collect(),
        )
    }

    /// Only the labels named in `names`.
    pub fn keep(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(n, _)| names.iter().any(|k| k == n))
                .cloned()
                .collect(),
        )
    }

    /// All labels except those named in `names`.
    pub fn drop(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(n, _)| !names.iter().any(|k| k == n))
                .cloned()
                .collect(),
        )
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("{")?;
        for (i, (n, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub value: f64,
    /// The metric name goes when the query ends (Prometheus 3's delayed name removal): label
    /// functions and `by (__name__)` can still see it until then.
    pub drop_name: bool,
}

impl Sample {
    pub fn new(labels: Labels, value: f64) -> Sample {
        Sample {
            labels,
            value,
            drop_name: false,
        }
    }
}

/// A series with points (timestamps in milliseconds, oldest first).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
    /// As [`Sample::drop_name`].
    pub drop_name: bool,
}

/// What an expression evaluates to.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    String(String),
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
}

impl Value {
    /// The type's name as the HTTP API writes it (`resultType`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// A float as Prometheus formats it in its API and in `count_values` labels: the shortest
/// text that reads back to the same value, `NaN`, `+Inf` and `-Inf`.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        let text = format!("{v}");
        // Go writes large and small magnitudes with an exponent (strconv 'g'-like for -1).
        let magnitude = v.abs();
        if magnitude != 0.0 && !(1e-4..1e21).contains(&magnitude) {
            let e = format!("{v:e}");
            match e.split_once('e') {
                Some((mantissa, exp)) => {
                    let exp: i32 = exp.parse().unwrap_or(0);
                    format!(
                        "{mantissa}e{}{:02}",
                        if exp < 0 { '-' } else { '+' },
                        exp.abs()
                    )
                }
                None => text,
            }
        } else {
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_format_as_prometheus_writes_them() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(0.5), "0.5");
        assert_eq!(format_float(-2.25), "-2.25");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(1e21), "1e+21");
        assert_eq!(format_float(1.5e-7), "1.5e-07");
        assert_eq!(format_float(123456.0), "123456");
    }

    #[test]
    fn labels_stay_sorted_and_drop_empty_values() {
        let mut l = Labels::new([
            ("b".into(), "2".into()),
            ("a".into(), "1".into()),
            ("c".into(), String::new()),
        ]);
        assert_eq!(l.to_string(), r#"{a="1", b="2"}"#);
        l.set("aa", "x");
        l.set("b", "");
        assert_eq!(l.to_string(), r#"{a="1", aa="x"}"#);
        assert_eq!(l.get("aa"), Some("x"));
    }
}

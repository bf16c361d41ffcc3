//! The head: recent samples of every series in memory, with an inverted index from label
//! pairs to series. Queries read it through [`rampart_promql::Storage`].

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

use promql_parser::label::MatchOp;
use rampart_promql::value::{Labels, Series};
use rampart_promql::{Matcher, Storage};

/// Why samples were not stored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AppendError {
    #[error("series {0}: label names must not be empty")]
    EmptyLabelName(String),
    #[error("series without a metric name ({0})")]
    NoMetricName(String),
    #[error("series {labels}: label {name:?} appears twice")]
    DuplicateLabel { labels: String, name: String },
    #[error("the head holds {limit} series; series {0} is not added", limit = .1)]
    TooManySeries(String, usize),
}

struct MemSeries {
    labels: Labels,
    /// Samples by timestamp, oldest first (an out-of-order sample is put in its place).
    samples: Vec<(i64, f64)>,
}

#[derive(Default)]
struct Inner {
    ids: HashMap<Labels, usize>,
    series: Vec<Option<MemSeries>>,
    /// Series ids by (label name, value).
    postings: HashMap<(String, String), BTreeSet<usize>>,
    free: Vec<usize>,
}

/// The in-memory head.
pub struct Head {
    inner: RwLock<Inner>,
    max_series: usize,
}

/// Figures for `/api/v1/status/tsdb`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeadStats {
    pub series: usize,
    pub samples: usize,
    /// Oldest and newest sample (ms); `None` when empty.
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
}

impl Head {
    pub fn new(max_series: usize) -> Head {
        Head {
            inner: RwLock::new(Inner::default()),
            max_series,
        }
    }

    /// Adds samples to a series (created on first use). A sample at a timestamp the series
    /// already has replaces the value there.
    pub fn append(
        &self,
        pairs: &[(String, String)],
        samples: &[(i64, f64)],
    ) -> Result<(), AppendError> {
        let mut seen = BTreeSet::new();
        for (n, _) in pairs {
            if n.is_empty() {
                return Err(AppendError::EmptyLabelName(describe(pairs)));
            }
            if !seen.insert(n.as_str()) {
                return Err(AppendError::DuplicateLabel {
                    labels: describe(pairs),
                    name: n.clone(),
                });
            }
        }
        let labels = Labels::new(pairs.iter().cloned());
        if labels.get(rampart_promql::value::METRIC_NAME).is_none() {
            return Err(AppendError::NoMetricName(describe(pairs)));
        }
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let id = match inner.ids.get(&labels) {
            Some(&id) => id,
            None => {
                if inner.ids.len() >= self.max_series {
                    return Err(AppendError::TooManySeries(
                        labels.to_string(),
                        self.max_series,
                    ));
                }
                let series = MemSeries {
                    labels: labels.clone(),
                    samples: Vec::new(),
                };
                let id = match inner.free.pop() {
                    Some(id) => {
                        inner.series[id] = Some(series);
                        id
                    }
                    None => {
                        inner.series.push(Some(series));
                        inner.series.len() - 1
                    }
                };
                for (n, v) in labels.iter() {
                    inner
                        .postings
                        .entry((n.to_string(), v.to_string()))
                        .or_default()
                        .insert(id);
                }
                inner.ids.insert(labels, id);
                id
            }
        };
        let Some(series) = inner.series[id].as_mut() else {
            return Ok(());
        };
        for &(t, v) in samples {
            match series.samples.last() {
                Some(&(last, _)) if t > last => series.samples.push((t, v)),
                None => series.samples.push((t, v)),
                _ => match series.samples.binary_search_by_key(&t, |s| s.0) {
                    Ok(i) => series.samples[i].1 = v,
                    Err(i) => series.samples.insert(i, (t, v)),
                },
            }
        }
        Ok(())
    }

    /// Removes the samples of matching series in `[start, end]` (a series left empty is
    /// removed). Returns the number of series touched.
    pub fn delete(&self, matchers: &[Matcher], start: i64, end: i64) -> usize {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let ids = matching_ids(&inner, matchers);
        for &id in &ids {
            let Some(series) = inner.series[id].as_mut() else {
                continue;
            };
            series.samples.retain(|(t, _)| *t < start || *t > end);
            if series.samples.is_empty()
                && let Some(series) = inner.series[id].take()
            {
                for (n, v) in series.labels.iter() {
                    let key = (n.to_string(), v.to_string());
                    if let Some(p) = inner.postings.get_mut(&key) {
                        p.remove(&id);
                        if p.is_empty() {
                            inner.postings.remove(&key);
                        }
                    }
                }
                inner.ids.remove(&series.labels);
                inner.free.push(id);
            }
        }
        ids.len()
    }

    pub fn stats(&self) -> HeadStats {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let mut stats = HeadStats::default();
        for s in inner.series.iter().flatten() {
            stats.series += 1;
            stats.samples += s.samples.len();
            if let (Some(&(first, _)), Some(&(last, _))) = (s.samples.first(), s.samples.last()) {
                stats.min_time = Some(stats.min_time.map_or(first, |m| m.min(first)));
                stats.max_time = Some(stats.max_time.map_or(last, |m| m.max(last)));
            }
        }
        stats
    }

    /// Label sets of the series matching every matcher set (any set, when several).
    pub fn series_labels(&self, matcher_sets: &[Vec<Matcher>]) -> Vec<Labels> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let mut ids = BTreeSet::new();
        for set in matcher_sets {
            ids.extend(matching_ids(&inner, set));
        }
        let mut out: Vec<Labels> = ids
            .into_iter()
            .filter_map(|id| inner.series[id].as_ref().map(|s| s.labels.clone()))
            .collect();
        out.sort();
        out
    }
}

fn describe(pairs: &[(String, String)]) -> String {
    Labels(pairs.to_vec()).to_string()
}

/// Ids of the series satisfying every matcher: equality matchers narrow through the
/// postings, the rest are checked per series.
fn matching_ids(inner: &Inner, matchers: &[Matcher]) -> Vec<usize> {
    let mut candidates: Option<BTreeSet<usize>> = None;
    for m in matchers {
        if let MatchOp::Equal = m.op
            && !m.value.is_empty()
        {
            let ids = inner
                .postings
                .get(&(m.name.clone(), m.value.clone()))
                .cloned()
                .unwrap_or_default();
            candidates = Some(match candidates {
                None => ids,
                Some(c) => c.intersection(&ids).copied().collect(),
            });
        }
    }
    let check = |id: usize| -> bool {
        let Some(series) = inner.series[id].as_ref() else {
            return false;
        };
        // A missing label matches as the empty string.
        matchers
            .iter()
            .all(|m| m.is_match(series.labels.get(&m.name).unwrap_or("")))
    };
    match candidates {
        Some(c) => c.into_iter().filter(|&id| check(id)).collect(),
        None => (0..inner.series.len()).filter(|&id| check(id)).collect(),
    }
}

impl Storage for Head {
    fn select(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<Series> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        matching_ids(&inner, matchers)
            .into_iter()
            .filter_map(|id| {
                let s = inner.series[id].as_ref()?;
                let from = s.samples.partition_point(|(t, _)| *t < start);
                let to = s.samples.partition_point(|(t, _)| *t <= end);
                (from < to).then(|| Series {
                    labels: s.labels.clone(),
                    points: s.samples[from..to].to_vec(),
                    drop_name: false,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn appends_out_of_order_and_selects_by_matchers() {
        let head = Head::new(100);
        head.append(
            &pairs(&[("__name__", "up"), ("job", "a")]),
            &[(2000, 1.0), (1000, 0.0)],
        )
        .unwrap();
        head.append(&pairs(&[("__name__", "up"), ("job", "b")]), &[(1000, 1.0)])
            .unwrap();
        let m = vec![
            Matcher::new(MatchOp::Equal, "__name__", "up"),
            Matcher::new(MatchOp::Equal, "job", "a"),
        ];
        let got = head.select(&m, 0, 5000);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].points, vec![(1000, 0.0), (2000, 1.0)]);
        let all = head.select(
            &[Matcher::new(MatchOp::Equal, "__name__", "up")],
            1500,
            5000,
        );
        assert_eq!(all.len(), 1, "job b has nothing after 1500");
    }

    #[test]
    fn deleted_series_are_gone() {
        let head = Head::new(100);
        head.append(&pairs(&[("__name__", "x")]), &[(1, 1.0)])
            .unwrap();
        assert_eq!(
            head.delete(
                &[Matcher::new(MatchOp::Equal, "__name__", "x")],
                i64::MIN,
                i64::MAX
            ),
            1
        );
        assert!(
            head.select(
                &[Matcher::new(MatchOp::Equal, "__name__", "x")],
                i64::MIN,
                i64::MAX
            )
            .is_empty()
        );
        assert_eq!(head.stats().series, 0);
    }

    #[test]
    fn bad_series_are_named() {
        let head = Head::new(1);
        assert!(matches!(
            head.append(&pairs(&[("job", "a")]), &[]),
            Err(AppendError::NoMetricName(_))
        ));
        assert!(matches!(
            head.append(&pairs(&[("__name__", "a"), ("a", "1"), ("a", "2")]), &[]),
            Err(AppendError::DuplicateLabel { .. })
        ));
        head.append(&pairs(&[("__name__", "a")]), &[(1, 1.0)])
            .unwrap();
        assert!(matches!(
            head.append(&pairs(&[("__name__", "b")]), &[(1, 1.0)]),
            Err(AppendError::TooManySeries(..))
        ));
    }
}

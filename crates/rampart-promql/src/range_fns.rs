//! Functions over range vectors (`rate`, `*_over_time`, …), Prometheus 3 semantics, float samples.

use crate::functions::quantile;

/// The samples one series has in a range selector's window, oldest first. The window is
/// left-open: it holds samples with `start < t <= end` (milliseconds since the epoch).
pub struct Window<'a> {
    pub samples: &'a [(i64, f64)],
    pub start: i64,
    pub end: i64,
}

/// Every function [`eval`] knows. `holt_winters` is the pre-3.0 name of
/// `double_exponential_smoothing`, kept as an alias.
const RANGE_FUNCTIONS: &[&str] = &[
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
    "deriv",
    "predict_linear",
    "changes",
    "resets",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "first_over_time",
    "present_over_time",
    "quantile_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "mad_over_time",
    "ts_of_min_over_time",
    "ts_of_max_over_time",
    "ts_of_last_over_time",
    "ts_of_first_over_time",
    "double_exponential_smoothing",
    "holt_winters",
];

/// Whether `name` is a function this module evaluates.
pub fn is_range_function(name: &str) -> bool {
    RANGE_FUNCTIONS.contains(&name)
}

/// Evaluates `name` on one series' window. `args` are the function's scalar arguments other
/// than the range vector, in call order (e.g. `quantile_over_time(0.9, x[5m])` gets `[0.9]`,
/// `predict_linear(x[5m], 3600)` gets `[3600.0]`, `double_exponential_smoothing(x[5m], sf, tf)` gets `[sf, tf]`).
/// `eval_time` is the evaluation timestamp in ms (predict_linear extrapolates from it). Returns `None` when the
/// function yields no sample for this series (e.g. fewer than 2 samples for rate).
pub fn eval(name: &str, w: &Window<'_>, args: &[f64], eval_time: i64) -> Option<f64> {
    let s = w.samples;
    // A series without samples in the window yields nothing, whatever the function.
    let (&(first_t, first_v), &(last_t, last_v)) = (s.first()?, s.last()?);
    match name {
        "rate" => extrapolated_rate(w, true, true),
        "increase" => extrapolated_rate(w, true, false),
        "delta" => extrapolated_rate(w, false, false),
        "irate" => instant_value(s, true),
        "idelta" => instant_value(s, false),
        // Regressing against the first timestamp keeps x small (see prometheus#2674).
        "deriv" => (s.len() >= 2).then(|| linear_regression(s, first_t).0),
        "predict_linear" => {
            let duration = *args.first()?;
            if s.len() < 2 {
                return None;
            }
            let (slope, intercept) = linear_regression(s, eval_time);
            Some(slope * duration + intercept)
        }
        "changes" => Some(changes(s)),
        "resets" => Some(resets(s)),
        "avg_over_time" => Some(avg_over_time(s)),
        "min_over_time" => Some(compare_over_time(s, |cur, best| cur < best).0),
        "max_over_time" => Some(compare_over_time(s, |cur, best| cur > best).0),
        "sum_over_time" => Some(sum_over_time(s)),
        "count_over_time" => Some(s.len() as f64),
        "last_over_time" => Some(last_v),
        "first_over_time" => Some(first_v),
        "present_over_time" => Some(1.0),
        "quantile_over_time" => {
            let q = *args.first()?;
            let mut values = values_of(s);
            Some(quantile(q, &mut values))
        }
        "stddev_over_time" => Some(variance_over_time(s).sqrt()),
        "stdvar_over_time" => Some(variance_over_time(s)),
        "mad_over_time" => Some(mad_over_time(s)),
        // `<=` / `>=` so that a repeated extreme reports its last occurrence.
        "ts_of_min_over_time" => Some(ms_to_secs(compare_over_time(s, |cur, best| cur <= best).1)),
        "ts_of_max_over_time" => Some(ms_to_secs(compare_over_time(s, |cur, best| cur >= best).1)),
        "ts_of_last_over_time" => Some(ms_to_secs(last_t)),
        "ts_of_first_over_time" => Some(ms_to_secs(first_t)),
        "double_exponential_smoothing" | "holt_winters" => {
            let &[sf, tf, ..] = args else {
                return None;
            };
            double_exponential_smoothing(s, sf, tf)
        }
        _ => None,
    }
}

fn ms_to_secs(t: i64) -> f64 {
    t as f64 / 1000.0
}

fn values_of(s: &[(i64, f64)]) -> Vec<f64> {
    s.iter().map(|&(_, v)| v).collect()
}

/// Neumaier's variant of Kahan summation: adds `inc` to `sum`, accumulating the rounding
/// error in `c`. Returns the new `(sum, c)`; the compensated total is `sum + c`.
fn kahan_sum_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        // The error term is meaningless once the sum has overflowed; keep it from becoming NaN.
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// `rate`, `increase` and `delta`: the change over the window, extrapolated towards the
/// window's boundaries (Prometheus' `extrapolatedRate`).
fn extrapolated_rate(w: &Window<'_>, is_counter: bool, is_rate: bool) -> Option<f64> {
    let s = w.samples;
    if s.len() < 2 {
        return None;
    }
    let (first_t, first_v) = s[0];
    let (last_t, last_v) = s[s.len() - 1];

    let mut result = last_v - first_v;
    if is_counter {
        // A drop means the counter restarted from zero: add back the value it had reached.
        for pair in s.windows(2) {
            if pair[1].1 < pair[0].1 {
                result += pair[0].1;
            }
        }
    }

    let mut duration_to_start = ms_to_secs(first_t - w.start);
    let mut duration_to_end = ms_to_secs(w.end - last_t);
    let sampled_interval = ms_to_secs(last_t - first_t);
    let average_between_samples = sampled_interval / (s.len() - 1) as f64;

    // A gap to a boundary that is clearly longer than the usual spacing suggests the series
    // starts or ends inside the window: extrapolate only half an interval in that case.
    let extrapolation_threshold = average_between_samples * 1.1;
    if duration_to_start >= extrapolation_threshold {
        duration_to_start = average_between_samples / 2.0;
    }
    if is_counter && result > 0.0 && first_v >= 0.0 {
        // Counters are never negative: don't extrapolate back past the point where this
        // slope would have reached zero.
        let duration_to_zero = sampled_interval * (first_v / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= extrapolation_threshold {
        duration_to_end = average_between_samples / 2.0;
    }

    let extrapolate_to_interval = sampled_interval + duration_to_start + duration_to_end;
    let mut factor = extrapolate_to_interval / sampled_interval;
    if is_rate {
        factor /= range_seconds(w.end - w.start);
    }
    Some(result * factor)
}

/// A range in ms as seconds, computed the way Go's `time.Duration.Seconds` does (whole
/// seconds plus the fraction) so results match Prometheus to the last bit.
fn range_seconds(range_ms: i64) -> f64 {
    (range_ms / 1000) as f64 + (range_ms % 1000) as f64 / 1000.0
}

/// `irate` and `idelta`: from the last two samples only.
fn instant_value(s: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    let &[.., (prev_t, prev_v), (last_t, last_v)] = s else {
        return None;
    };
    let mut value = if is_rate && last_v < prev_v {
        // Counter reset: the counter went from zero to `last_v`.
        last_v
    } else {
        last_v - prev_v
    };
    if is_rate {
        let interval = last_t - prev_t;
        if interval == 0 {
            return None;
        }
        value /= ms_to_secs(interval);
    }
    Some(value)
}

/// Least-squares fit of the samples (x in seconds relative to `intercept_time`).
/// Returns `(slope per second, value at intercept_time)`. Needs at least two samples.
fn linear_regression(s: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let init_y = s[0].1;
    // A constant series has an exact answer; the general formula could return NaN or noise.
    if s[1..].iter().all(|&(_, v)| v == init_y) {
        return if init_y.is_infinite() {
            (f64::NAN, f64::NAN)
        } else {
            (0.0, init_y)
        };
    }

    let (mut sum_x, mut c_x) = (0.0, 0.0);
    let (mut sum_y, mut c_y) = (0.0, 0.0);
    let (mut sum_xy, mut c_xy) = (0.0, 0.0);
    let (mut sum_x2, mut c_x2) = (0.0, 0.0);
    for &(t, v) in s {
        let x = ms_to_secs(t - intercept_time);
        (sum_x, c_x) = kahan_sum_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_sum_inc(v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_sum_inc(x * v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_sum_inc(x * x, sum_x2, c_x2);
    }
    let n = s.len() as f64;
    let sum_x = sum_x + c_x;
    let sum_y = sum_y + c_y;
    let sum_xy = sum_xy + c_xy;
    let sum_x2 = sum_x2 + c_x2;

    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

fn changes(s: &[(i64, f64)]) -> f64 {
    let count = s
        .windows(2)
        .filter(|pair| {
            let (prev, cur) = (pair[0].1, pair[1].1);
            // NaN != NaN, but a series staying NaN has not changed.
            cur != prev && !(cur.is_nan() && prev.is_nan())
        })
        .count();
    count as f64
}

fn resets(s: &[(i64, f64)]) -> f64 {
    s.windows(2).filter(|pair| pair[1].1 < pair[0].1).count() as f64
}

/// Mean of the samples: a plain compensated sum divided by the count while the sum stays
/// finite, switching to an incremental mean once it would overflow.
fn avg_over_time(s: &[(i64, f64)]) -> f64 {
    let mut sum = s[0].1;
    let mut count = 1.0;
    let mut c = 0.0;
    let mut mean = 0.0;
    let mut incremental = false;
    for (i, &(_, v)) in s.iter().enumerate().skip(1) {
        count = (i + 1) as f64;
        if !incremental {
            let (new_sum, new_c) = kahan_sum_inc(v, sum, c);
            if !new_sum.is_infinite() {
                (sum, c) = (new_sum, new_c);
                continue;
            }
            // The sum overflowed: continue from the mean of the samples seen so far.
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_sum_inc(v / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

fn sum_over_time(s: &[(i64, f64)]) -> f64 {
    let (sum, c) = s
        .iter()
        .fold((0.0, 0.0), |(sum, c), &(_, v)| kahan_sum_inc(v, sum, c));
    // The error term only refines a finite sum; an infinite one stands as is.
    if sum.is_infinite() { sum } else { sum + c }
}

/// Scans for the sample `replaces` prefers (`replaces(candidate, best)`), returning its value
/// and timestamp. A NaN best is replaced by whatever comes next, so NaN only wins when every
/// sample is NaN.
fn compare_over_time(s: &[(i64, f64)], replaces: impl Fn(f64, f64) -> bool) -> (f64, i64) {
    let (mut best_t, mut best) = s[0];
    for &(t, v) in &s[1..] {
        if best.is_nan() || replaces(v, best) {
            (best_t, best) = (t, v);
        }
    }
    (best, best_t)
}

/// Population variance, Welford's online algorithm with compensated sums.
fn variance_over_time(s: &[(i64, f64)]) -> f64 {
    let mut count = 0.0;
    let (mut mean, mut c_mean) = (0.0, 0.0);
    let (mut aux, mut c_aux) = (0.0, 0.0);
    for &(_, v) in s {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_sum_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_sum_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// Median absolute deviation from the median.
fn mad_over_time(s: &[(i64, f64)]) -> f64 {
    let mut values = values_of(s);
    // A NaN sample makes the deviation undefined rather than being dropped.
    if values.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let median = quantile(0.5, &mut values);
    for v in &mut values {
        *v = (*v - median).abs();
    }
    quantile(0.5, &mut values)
}

/// Holt's linear (double exponential) smoothing; `sf` and `tf` are validated by the caller.
fn double_exponential_smoothing(s: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let mut s0 = 0.0;
    let mut s1 = s[0].1;
    let mut trend = s[1].1 - s[0].1;
    for (i, &(_, v)) in s.iter().enumerate().skip(1) {
        // The trend is seeded from the first two samples, so it only updates from the third on.
        if i > 1 {
            trend = tf * (s1 - s0) + (1.0 - tf) * trend;
        }
        let smoothed = sf * v + (1.0 - sf) * (s1 + trend);
        (s0, s1) = (s1, smoothed);
    }
    Some(s1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples every `step_s` seconds from `first_s`, with the given values.
    fn series(first_s: i64, step_s: i64, values: &[f64]) -> Vec<(i64, f64)> {
        (0..)
            .zip(values)
            .map(|(i, &v)| ((first_s + i * step_s) * 1000, v))
            .collect()
    }

    fn run(
        name: &str,
        samples: &[(i64, f64)],
        start_s: i64,
        end_s: i64,
        args: &[f64],
    ) -> Option<f64> {
        let w = Window {
            samples,
            start: start_s * 1000,
            end: end_s * 1000,
        };
        eval(name, &w, args, end_s * 1000)
    }

    #[track_caller]
    fn assert_close(got: Option<f64>, want: f64) {
        let got = got.expect("expected a sample");
        let tolerance = 1e-9 * want.abs().max(1.0);
        assert!((got - want).abs() <= tolerance, "got {got}, want {want}");
    }

    #[test]
    fn knows_its_functions() {
        assert!(is_range_function("rate"));
        assert!(is_range_function("holt_winters"));
        assert!(is_range_function("ts_of_max_over_time"));
        assert!(!is_range_function("abs"));
        assert!(!is_range_function("absent_over_time"));
    }

    #[test]
    fn empty_window_yields_nothing() {
        for name in RANGE_FUNCTIONS {
            assert_eq!(run(name, &[], 0, 60, &[0.5, 0.5]), None, "{name}");
        }
    }

    #[test]
    fn rate_of_steady_counter_is_its_slope() {
        // 1/s, sampled every 10 s over (0, 60s]: the first sample is one interval from the
        // start, so the rate is extrapolated all the way to both boundaries.
        let s = series(10, 10, &[10.0, 20.0, 30.0, 40.0, 50.0, 60.0]);
        assert_close(run("rate", &s, 0, 60, &[]), 1.0);
        assert_close(run("increase", &s, 0, 60, &[]), 60.0);
        assert_close(run("delta", &s, 0, 60, &[]), 60.0);
    }

    #[test]
    fn rate_needs_two_samples() {
        let s = series(10, 10, &[5.0]);
        assert_eq!(run("rate", &s, 0, 60, &[]), None);
        assert_eq!(run("irate", &s, 0, 60, &[]), None);
        assert_eq!(run("deriv", &s, 0, 60, &[]), None);
    }

    #[test]
    fn counter_reset_is_handled() {
        // 10 → 30, reset, 5 → 25: the counter grew by 20 + 5 + 20 = 45 over 50 s of samples.
        let s = series(10, 10, &[10.0, 20.0, 30.0, 5.0, 15.0, 25.0]);
        assert_close(run("increase", &s, 0, 60, &[]), 45.0 * 60.0 / 50.0);
        assert_close(run("rate", &s, 0, 60, &[]), 45.0 / 50.0);
        // delta treats the series as a gauge.
        assert_close(run("delta", &s, 0, 60, &[]), 15.0 * 60.0 / 50.0);
        assert_eq!(run("resets", &s, 0, 60, &[]), Some(1.0));
    }

    #[test]
    fn extrapolation_limited_to_half_an_interval() {
        // Samples only at 40, 50, 60 s in a (0, 100s] window: both gaps exceed 1.1 intervals,
        // so 5 s is added on each side: 20 × (20 + 10) / 20.
        let s = series(40, 10, &[100.0, 110.0, 120.0]);
        assert_close(run("delta", &s, 0, 100, &[]), 30.0);
        assert_close(run("increase", &s, 0, 100, &[]), 30.0);
        assert_close(run("rate", &s, 0, 100, &[]), 0.3);
    }

    #[test]
    fn counter_not_extrapolated_below_zero() {
        // The slope reaches zero 1 s before the first sample, well within the 5 s otherwise added.
        let s = series(30, 10, &[1.0, 11.0, 21.0, 31.0]);
        assert_close(run("increase", &s, 0, 60, &[]), 31.0);
        // A gauge has no such floor.
        assert_close(run("delta", &s, 0, 60, &[]), 35.0);
    }

    #[test]
    fn irate_and_idelta_use_the_last_two_samples() {
        let s = series(10, 10, &[1.0, 100.0, 130.0]);
        assert_close(run("irate", &s, 0, 60, &[]), 3.0);
        assert_close(run("idelta", &s, 0, 60, &[]), 30.0);
        let reset = series(10, 10, &[1.0, 100.0, 20.0]);
        assert_close(run("irate", &reset, 0, 60, &[]), 2.0);
        assert_close(run("idelta", &reset, 0, 60, &[]), -80.0);
    }

    #[test]
    fn deriv_and_predict_linear_on_a_line() {
        // y = 2 × (t − t0) + 5 with realistic epoch timestamps.
        let t0 = 1_700_000_000;
        let s: Vec<_> = (0..=10)
            .map(|i| ((t0 + i * 10) * 1000, 2.0 * (i * 10) as f64 + 5.0))
            .collect();
        let w = Window {
            samples: &s,
            start: (t0 - 5) * 1000,
            end: (t0 + 100) * 1000,
        };
        assert_close(eval("deriv", &w, &[], w.end), 2.0);
        // At t0 + 100 s the line is at 205; 60 s later at 325.
        assert_close(eval("predict_linear", &w, &[60.0], w.end), 325.0);
        assert_close(eval("predict_linear", &w, &[0.0], w.end), 205.0);
    }

    #[test]
    fn regression_of_a_constant_series() {
        let s = series(10, 10, &[4.0, 4.0, 4.0]);
        assert_eq!(run("deriv", &s, 0, 60, &[]), Some(0.0));
        assert_eq!(run("predict_linear", &s, 0, 60, &[100.0]), Some(4.0));
        let inf = series(10, 10, &[f64::INFINITY, f64::INFINITY]);
        assert!(run("deriv", &inf, 0, 60, &[]).unwrap().is_nan());
    }

    #[test]
    fn quantile_interpolates() {
        let s = series(10, 10, &[4.0, 1.0, 3.0, 2.0]);
        assert_close(run("quantile_over_time", &s, 0, 60, &[0.5]), 2.5);
        assert_close(run("quantile_over_time", &s, 0, 60, &[0.9]), 3.7);
        assert_close(run("quantile_over_time", &s, 0, 60, &[0.0]), 1.0);
        assert_close(run("quantile_over_time", &s, 0, 60, &[1.0]), 4.0);
        assert_eq!(
            run("quantile_over_time", &s, 0, 60, &[-0.1]),
            Some(f64::NEG_INFINITY)
        );
        assert_eq!(
            run("quantile_over_time", &s, 0, 60, &[1.1]),
            Some(f64::INFINITY)
        );
        assert!(
            run("quantile_over_time", &s, 0, 60, &[f64::NAN])
                .unwrap()
                .is_nan()
        );
    }

    #[test]
    fn min_and_max_skip_nan() {
        let s = series(10, 10, &[f64::NAN, 3.0, 1.0, f64::NAN, 2.0]);
        assert_eq!(run("min_over_time", &s, 0, 60, &[]), Some(1.0));
        assert_eq!(run("max_over_time", &s, 0, 60, &[]), Some(3.0));
        let all_nan = series(10, 10, &[f64::NAN, f64::NAN]);
        assert!(run("min_over_time", &all_nan, 0, 60, &[]).unwrap().is_nan());
        assert!(run("max_over_time", &all_nan, 0, 60, &[]).unwrap().is_nan());
    }

    #[test]
    fn timestamps_of_extremes_are_the_last_occurrence() {
        let s = series(10, 10, &[2.0, 1.0, 3.0, 1.0, 3.0, 2.0]);
        assert_eq!(run("ts_of_min_over_time", &s, 0, 60, &[]), Some(40.0));
        assert_eq!(run("ts_of_max_over_time", &s, 0, 60, &[]), Some(50.0));
        assert_eq!(run("ts_of_first_over_time", &s, 0, 60, &[]), Some(10.0));
        assert_eq!(run("ts_of_last_over_time", &s, 0, 60, &[]), Some(60.0));
        let w = Window {
            samples: &[(1_500, 1.0)],
            start: 0,
            end: 2_000,
        };
        assert_eq!(eval("ts_of_last_over_time", &w, &[], 2_000), Some(1.5));
    }

    #[test]
    fn simple_aggregations() {
        let s = series(10, 10, &[1.0, 2.0, 3.0, 4.0]);
        assert_close(run("avg_over_time", &s, 0, 60, &[]), 2.5);
        assert_close(run("sum_over_time", &s, 0, 60, &[]), 10.0);
        assert_eq!(run("count_over_time", &s, 0, 60, &[]), Some(4.0));
        assert_eq!(run("first_over_time", &s, 0, 60, &[]), Some(1.0));
        assert_eq!(run("last_over_time", &s, 0, 60, &[]), Some(4.0));
        assert_eq!(run("present_over_time", &s, 0, 60, &[]), Some(1.0));
    }

    #[test]
    fn sums_are_compensated() {
        let s = series(10, 10, &[1e100, 1.0, -1e100]);
        assert_eq!(run("sum_over_time", &s, 0, 60, &[]), Some(1.0));
        assert_close(run("avg_over_time", &s, 0, 60, &[]), 1.0 / 3.0);
    }

    #[test]
    fn avg_survives_overflow() {
        let s = series(10, 10, &[f64::MAX, f64::MAX, f64::MAX]);
        assert_close(run("avg_over_time", &s, 0, 60, &[]), f64::MAX);
        assert_eq!(run("sum_over_time", &s, 0, 60, &[]), Some(f64::INFINITY));
        let inf = series(10, 10, &[1.0, f64::INFINITY, 2.0]);
        assert_eq!(run("avg_over_time", &inf, 0, 60, &[]), Some(f64::INFINITY));
    }

    #[test]
    fn variance_and_stddev_are_population_statistics() {
        let s = series(10, 10, &[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_close(run("stdvar_over_time", &s, 0, 90, &[]), 4.0);
        assert_close(run("stddev_over_time", &s, 0, 90, &[]), 2.0);
        let one = series(10, 10, &[42.0]);
        assert_eq!(run("stdvar_over_time", &one, 0, 60, &[]), Some(0.0));
    }

    #[test]
    fn mad_is_median_of_absolute_deviations() {
        // Median 2; deviations 1, 1, 0, 0, 2, 4, 7 have median 1.
        let s = series(10, 10, &[1.0, 1.0, 2.0, 2.0, 4.0, 6.0, 9.0]);
        assert_close(run("mad_over_time", &s, 0, 70, &[]), 1.0);
    }

    #[test]
    fn changes_and_resets() {
        let s = series(10, 10, &[1.0, 1.0, 2.0, f64::NAN, f64::NAN, 2.0]);
        assert_eq!(run("changes", &s, 0, 60, &[]), Some(3.0));
        let c = series(10, 10, &[5.0, 3.0, 4.0, 1.0]);
        assert_eq!(run("resets", &c, 0, 60, &[]), Some(2.0));
        assert_eq!(run("changes", &c[..1], 0, 60, &[]), Some(0.0));
    }

    #[test]
    fn double_exponential_smoothing_follows_holt() {
        let line = series(10, 10, &[1.0, 2.0, 3.0]);
        assert_close(
            run("double_exponential_smoothing", &line, 0, 60, &[0.5, 0.5]),
            3.0,
        );
        // s = 0.5 × 4 + 0.5 × (2 + 1), with the trend 0.5 × (2 − 1) + 0.5 × 1.
        let s = series(10, 10, &[1.0, 2.0, 4.0]);
        assert_close(run("holt_winters", &s, 0, 60, &[0.5, 0.5]), 3.5);
        assert_eq!(run("holt_winters", &s[..1], 0, 60, &[0.5, 0.5]), None);
    }
}

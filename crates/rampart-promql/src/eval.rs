//! The evaluator: instant and range queries over a [`Storage`].
//!
//! A range query is evaluated as one instant evaluation per step, its vectors gathered into
//! series by label set. Selectors read the store at each step; the store's own index keeps
//! that cheap.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{
    self, AggregateExpr, AtModifier, BinaryExpr, Call, Expr, LabelModifier, Offset,
    VectorMatchCardinality, VectorSelector,
};

use crate::value::{Labels, METRIC_NAME, Sample, Series, Value, format_float};
use crate::{Storage, is_stale};

/// A function's range-vector argument: the series and the window `(start, end]`.
type RangeArgument = (Vec<Series>, (i64, i64));

/// Why a query failed; the message is what the HTTP API shows.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum QueryError {
    #[error("parse error: {0}")]
    Parse(String),
    #[error("{0}")]
    Execution(String),
    /// The query's time range or step cannot be evaluated.
    #[error("{0}")]
    Parameter(String),
}

fn fail<T>(message: impl Into<String>) -> Result<T, QueryError> {
    Err(QueryError::Execution(message.into()))
}

/// Most points a range query may produce per series (as Prometheus limits it).
const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// The query engine. Cheap to build; holds no state between queries.
pub struct Engine<'s, S: Storage + ?Sized> {
    storage: &'s S,
    /// How far back an instant selector looks for a sample (Prometheus: 5 m).
    pub lookback_ms: i64,
    /// A subquery's step when it names none (Prometheus: the evaluation interval).
    pub default_subquery_step_ms: i64,
    /// The text of the query being evaluated (warnings point into it).
    text: std::cell::RefCell<String>,
    /// Warnings of the last query, in the order found, without repeats.
    warnings: std::cell::RefCell<Vec<String>>,
}

/// Where and when one evaluation happens.
#[derive(Clone, Copy)]
struct At {
    /// The evaluation time (ms).
    t: i64,
    /// The query's start and end, for `@ start()` / `@ end()`.
    start: i64,
    end: i64,
    /// The range query's step (0 for an instant query), for `step()`.
    step: i64,
}

impl<'s, S: Storage + ?Sized> Engine<'s, S> {
    pub fn new(storage: &'s S) -> Self {
        Engine {
            storage,
            lookback_ms: 5 * 60 * 1000,
            default_subquery_step_ms: 60 * 1000,
            text: Default::default(),
            warnings: Default::default(),
        }
    }

    /// The warnings of the last query (`PromQL warning: … (line:column)`).
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.borrow().clone()
    }

    /// Records a warning about the first `word(` of the query text.
    pub(crate) fn warn(&self, message: &str, word: &str) {
        let text = self.text.borrow();
        let position = find_call(&text, word)
            .map(|offset| {
                let before = &text[..offset];
                let line = before.matches('\n').count() + 1;
                let column = offset - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!(" ({line}:{column})")
            })
            .unwrap_or_default();
        let warning = format!("PromQL warning: {message}{position}");
        let mut warnings = self.warnings.borrow_mut();
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }

    fn begin(&self, query: &str) {
        *self.text.borrow_mut() = query.to_string();
        self.warnings.borrow_mut().clear();
    }

    /// Parses `query`.
    pub fn parse(query: &str) -> Result<Expr, QueryError> {
        parser::parse(query).map_err(QueryError::Parse)
    }

    /// Evaluates `query` at `t` (ms).
    pub fn instant(&self, query: &str, t: i64) -> Result<Value, QueryError> {
        self.begin(query);
        let expr = Self::parse(query)?;
        let at = At {
            t,
            start: t,
            end: t,
            step: 0,
        };
        let value = self.eval(&expr, at)?;
        Ok(match value {
            Value::Vector(v) => {
                let mut v = finish_vector(v)?;
                if !keeps_order(&expr) {
                    v.sort_by(|a, b| a.labels.cmp(&b.labels));
                }
                Value::Vector(v)
            }
            Value::Matrix(mut m) => {
                for s in &mut m {
                    if s.drop_name {
                        s.labels.remove(METRIC_NAME);
                        s.drop_name = false;
                    }
                }
                m.sort_by(|a, b| a.labels.cmp(&b.labels));
                Value::Matrix(m)
            }
            other => other,
        })
    }

    /// Evaluates `query` at every step from `start` to `end` (ms): a matrix, series sorted by
    /// labels. A scalar query gives one series without labels.
    pub fn range(&self, query: &str, start: i64, end: i64, step: i64) -> Result<Value, QueryError> {
        if step <= 0 {
            return Err(QueryError::Parameter(
                "zero or negative query resolution step widths are not accepted. Try a positive integer"
                    .into(),
            ));
        }
        if end < start {
            return Err(QueryError::Parameter(
                "end timestamp must not be before start time".into(),
            ));
        }
        if (end - start) / step > MAX_POINTS_PER_SERIES {
            return Err(QueryError::Parameter(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                    .into(),
            ));
        }
        self.begin(query);
        let expr = Self::parse(query)?;
        if let Some(name) = sort_call(&expr) {
            self.warn(
                "sort is ineffective for range queries since results are always ordered by labels",
                name,
            );
        }
        match expr.value_type() {
            parser::value::ValueType::Vector | parser::value::ValueType::Scalar => {}
            other => {
                return fail(format!(
                    "invalid expression type \"{other}\" for range query, must be Scalar or instant Vector"
                ));
            }
        }
        let mut series: PointsByLabels = HashMap::new();
        let mut t = start;
        while t <= end {
            let at = At {
                t,
                start,
                end,
                step,
            };
            match self.eval(&expr, at)? {
                Value::Scalar(v) => series.entry(Labels::default()).or_default().0.push((t, v)),
                Value::Vector(v) => {
                    for s in finish_vector(v)? {
                        series.entry(s.labels).or_default().0.push((t, s.value));
                    }
                }
                other => {
                    return fail(format!(
                        "range query gave a {} at a step",
                        other.type_name()
                    ));
                }
            }
            t += step;
        }
        Ok(matrix(series))
    }

    fn eval(&self, expr: &Expr, at: At) -> Result<Value, QueryError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, at),
            Expr::Unary(u) => match self.eval(&u.expr, at)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(v) => Ok(Value::Vector(
                    v.into_iter()
                        .map(|s| Sample {
                            labels: s.labels,
                            value: -s.value,
                            drop_name: true,
                        })
                        .collect(),
                )),
                other => fail(format!("unary minus on a {}", other.type_name())),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.instant_selector(vs, at)?)),
            Expr::MatrixSelector(ms) => {
                let range = millis(ms.range);
                Ok(Value::Matrix(self.range_selector(&ms.vs, range, at)?))
            }
            Expr::Subquery(sq) => {
                let reference = self.reference_time(sq.at.as_ref(), sq.offset.as_ref(), at);
                let step = sq
                    .step
                    .map(millis)
                    .filter(|s| *s > 0)
                    .unwrap_or(self.default_subquery_step_ms);
                let range = millis(sq.range);
                // Steps at absolute multiples of the step, in (reference - range, reference].
                let first = (reference - range).div_euclid(step) * step + step;
                let mut series: PointsByLabels = HashMap::new();
                let mut t = first;
                while t <= reference {
                    let inner = At { t, ..at };
                    match self.eval(&sq.expr, inner)? {
                        Value::Vector(v) => {
                            for s in v {
                                let entry = series.entry(s.labels).or_default();
                                entry.0.push((t, s.value));
                                entry.1 |= s.drop_name;
                            }
                        }
                        Value::Scalar(v) => {
                            series.entry(Labels::default()).or_default().0.push((t, v))
                        }
                        other => {
                            return fail(format!("subquery over a {}", other.type_name()));
                        }
                    }
                    t += step;
                }
                Ok(matrix(series))
            }
            Expr::Binary(b) => self.binary(b, at),
            Expr::Aggregate(a) => self.aggregate(a, at),
            Expr::Call(c) => self.call(c, at),
            Expr::Extension(_) => fail("extension expressions are not evaluated"),
        }
    }

    /// The time a selector reads at: `@` (or the evaluation time) minus `offset`.
    fn reference_time(&self, at_mod: Option<&AtModifier>, offset: Option<&Offset>, at: At) -> i64 {
        let base = match at_mod {
            None => at.t,
            Some(AtModifier::Start) => at.start,
            Some(AtModifier::End) => at.end,
            Some(AtModifier::At(time)) => system_time_millis(*time),
        };
        match offset {
            None => base,
            Some(Offset::Pos(d)) => base - millis(*d),
            Some(Offset::Neg(d)) => base + millis(*d),
        }
    }

    fn matchers(vs: &VectorSelector) -> Vec<Matcher> {
        let mut m = vs.matchers.matchers.clone();
        if let Some(name) = &vs.name
            && !m.iter().any(|x| x.name == METRIC_NAME)
        {
            m.push(Matcher::new(MatchOp::Equal, METRIC_NAME, name));
        }
        m
    }

    /// The series matched by a selector (with `or`-ed matcher sets, each set on its own).
    fn select(&self, vs: &VectorSelector, start: i64, end: i64) -> Vec<Series> {
        if vs.matchers.or_matchers.is_empty() {
            return self.storage.select(&Self::matchers(vs), start, end);
        }
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for set in &vs.matchers.or_matchers {
            let mut m = set.clone();
            if let Some(name) = &vs.name {
                m.push(Matcher::new(MatchOp::Equal, METRIC_NAME, name));
            }
            for s in self.storage.select(&m, start, end) {
                if seen.insert(s.labels.clone()) {
                    out.push(s);
                }
            }
        }
        out
    }

    fn instant_selector(&self, vs: &VectorSelector, at: At) -> Result<Vec<Sample>, QueryError> {
        let reference = self.reference_time(vs.at.as_ref(), vs.offset.as_ref(), at);
        // Left-open: a sample exactly `lookback` old is out.
        let series = self.select(vs, reference - self.lookback_ms + 1, reference);
        Ok(series
            .into_iter()
            .filter_map(|s| {
                let &(_, value) = s
                    .points
                    .iter()
                    .rev()
                    .find(|(t, _)| *t <= reference && *t > reference - self.lookback_ms)?;
                (!is_stale(value)).then_some(Sample::new(s.labels, value))
            })
            .collect())
    }

    fn range_selector(
        &self,
        vs: &VectorSelector,
        range: i64,
        at: At,
    ) -> Result<Vec<Series>, QueryError> {
        let reference = self.reference_time(vs.at.as_ref(), vs.offset.as_ref(), at);
        let series = self.select(vs, reference - range + 1, reference);
        Ok(series
            .into_iter()
            .filter_map(|s| {
                let points: Vec<(i64, f64)> = s
                    .points
                    .into_iter()
                    .filter(|(t, v)| *t > reference - range && *t <= reference && !is_stale(*v))
                    .collect();
                (!points.is_empty()).then_some(Series {
                    labels: s.labels,
                    points,
                    drop_name: false,
                })
            })
            .collect())
    }

    fn binary(&self, b: &BinaryExpr, at: At) -> Result<Value, QueryError> {
        let op = b.op.to_string();
        let modifier = b.modifier.as_ref();
        let return_bool = modifier.is_some_and(|m| m.return_bool);
        if let Some(m) = modifier
            && (m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
        {
            return fail("fill modifiers are not supported");
        }
        let lhs = self.eval(&b.lhs, at)?;
        let rhs = self.eval(&b.rhs, at)?;
        match (lhs, rhs) {
            (Value::Scalar(l), Value::Scalar(r)) => {
                let (v, keep) = apply(&op, l, r)?;
                Ok(Value::Scalar(if is_comparison(&op) {
                    f64::from(u8::from(keep))
                } else {
                    v
                }))
            }
            (Value::Vector(l), Value::Scalar(r)) => {
                Ok(Value::Vector(vector_scalar(&op, l, r, false, return_bool)?))
            }
            (Value::Scalar(l), Value::Vector(r)) => {
                Ok(Value::Vector(vector_scalar(&op, r, l, true, return_bool)?))
            }
            (Value::Vector(l), Value::Vector(r)) => {
                if is_set_operator(&op) {
                    Ok(Value::Vector(set_operation(&op, l, r, modifier)))
                } else {
                    Ok(Value::Vector(vector_vector(
                        &op,
                        l,
                        r,
                        modifier,
                        return_bool,
                    )?))
                }
            }
            (l, r) => fail(format!(
                "binary expression must contain only scalar and instant vector types, got {} and {}",
                l.type_name(),
                r.type_name()
            )),
        }
    }

    fn aggregate(&self, a: &AggregateExpr, at: At) -> Result<Value, QueryError> {
        let op = a.op.to_string();
        let param = match &a.param {
            Some(p) => Some(self.eval(p, at)?),
            None => None,
        };
        let Value::Vector(input) = self.eval(&a.expr, at)? else {
            return fail(format!("expected an instant vector in aggregation {op}"));
        };
        if op == "quantile"
            && let Some(Value::Scalar(phi)) = &param
            && !(0.0..=1.0).contains(phi)
        {
            self.warn(
                &format!(
                    "quantile value should be between 0 and 1, got {}",
                    format_float(*phi)
                ),
                "quantile",
            );
        }
        crate::functions::aggregate(&op, input, param, a.modifier.as_ref()).map(Value::Vector)
    }

    fn call(&self, c: &Call, at: At) -> Result<Value, QueryError> {
        let name = c.func.name;
        let args = &c.args.args;
        if crate::range_fns::is_range_function(name) || name == "absent_over_time" {
            return self.range_call(name, args, at);
        }
        match name {
            "time" => return Ok(Value::Scalar(at.t as f64 / 1000.0)),
            "pi" => return Ok(Value::Scalar(std::f64::consts::PI)),
            "start" => return Ok(Value::Scalar(at.start as f64 / 1000.0)),
            "end" => return Ok(Value::Scalar(at.end as f64 / 1000.0)),
            "step" => return Ok(Value::Scalar(at.step as f64 / 1000.0)),
            "range" => return Ok(Value::Scalar((at.end - at.start) as f64 / 1000.0)),
            "timestamp" => return self.timestamp(args, at),
            "absent" => return self.absent(args, at),
            _ => {}
        }
        let values = args
            .iter()
            .map(|e| self.eval(e, at))
            .collect::<Result<Vec<_>, _>>()?;
        crate::functions::call(name, values, at.t)
    }

    /// A function whose first (or only) range-vector argument is evaluated per series.
    fn range_call(&self, name: &str, args: &[Box<Expr>], at: At) -> Result<Value, QueryError> {
        let mut scalars = Vec::new();
        let mut matrix = None;
        let mut range = (at.t, at.t);
        for arg in args {
            if let Some((m, window)) = self.range_argument(arg, at)? {
                matrix = Some(m);
                range = window;
            } else {
                match self.eval(arg, at)? {
                    Value::Scalar(v) => scalars.push(v),
                    other => {
                        return fail(format!("{name}: unexpected {} argument", other.type_name()));
                    }
                }
            }
        }
        let Some(matrix) = matrix else {
            return fail(format!("{name}: expected a range vector argument"));
        };
        if name == "absent_over_time" {
            return Ok(Value::Vector(if matrix.is_empty() {
                vec![Sample::new(
                    absent_labels(args.first().map(|b| b.as_ref())),
                    1.0,
                )]
            } else {
                Vec::new()
            }));
        }
        if name == "double_exponential_smoothing" || name == "holt_winters" {
            for (what, v) in ["smoothing factor", "trend factor"].iter().zip(&scalars) {
                if !(*v > 0.0 && *v < 1.0) {
                    return fail(format!(
                        "invalid {what}. Expected: 0 < sf < 1, got: {}",
                        format_float(*v)
                    ));
                }
            }
        }
        if name == "quantile_over_time"
            && let Some(phi) = scalars.first()
            && !(0.0..=1.0).contains(phi)
        {
            self.warn(
                &format!(
                    "quantile value should be between 0 and 1, got {}",
                    format_float(*phi)
                ),
                name,
            );
        }
        let keeps_name = matches!(name, "last_over_time" | "first_over_time");
        let mut out = Vec::new();
        for s in matrix {
            let window = crate::range_fns::Window {
                samples: &s.points,
                start: range.0,
                end: range.1,
            };
            if let Some(value) = crate::range_fns::eval(name, &window, &scalars, at.t) {
                out.push(Sample {
                    labels: s.labels,
                    value,
                    drop_name: s.drop_name || !keeps_name,
                });
            }
        }
        Ok(Value::Vector(out))
    }

    /// A matrix argument and its window `(start, end]`, when `arg` is a range selector or a
    /// subquery (through parentheses).
    fn range_argument(&self, arg: &Expr, at: At) -> Result<Option<RangeArgument>, QueryError> {
        match arg {
            Expr::Paren(p) => self.range_argument(&p.expr, at),
            Expr::MatrixSelector(ms) => {
                let range = millis(ms.range);
                let reference = self.reference_time(ms.vs.at.as_ref(), ms.vs.offset.as_ref(), at);
                Ok(Some((
                    self.range_selector(&ms.vs, range, at)?,
                    (reference - range, reference),
                )))
            }
            Expr::Subquery(sq) => {
                let range = millis(sq.range);
                let reference = self.reference_time(sq.at.as_ref(), sq.offset.as_ref(), at);
                let Value::Matrix(m) = self.eval(arg, at)? else {
                    return fail("subquery did not give a range vector");
                };
                Ok(Some((m, (reference - range, reference))))
            }
            _ => Ok(None),
        }
    }

    fn timestamp(&self, args: &[Box<Expr>], at: At) -> Result<Value, QueryError> {
        let Some(arg) = args.first() else {
            return fail("timestamp: expected one argument");
        };
        // Of a plain selector, the sample's own timestamp (not the evaluation time).
        let mut inner: &Expr = arg;
        while let Expr::Paren(p) = inner {
            inner = &p.expr;
        }
        if let Expr::VectorSelector(vs) = inner {
            let reference = self.reference_time(vs.at.as_ref(), vs.offset.as_ref(), at);
            let series = self.select(vs, reference - self.lookback_ms + 1, reference);
            let out = series
                .into_iter()
                .filter_map(|s| {
                    let &(t, v) = s
                        .points
                        .iter()
                        .rev()
                        .find(|(t, _)| *t <= reference && *t > reference - self.lookback_ms)?;
                    (!is_stale(v)).then(|| Sample {
                        labels: s.labels,
                        value: t as f64 / 1000.0,
                        drop_name: true,
                    })
                })
                .collect();
            return Ok(Value::Vector(out));
        }
        match self.eval(arg, at)? {
            Value::Vector(v) => Ok(Value::Vector(
                v.into_iter()
                    .map(|s| Sample {
                        labels: s.labels,
                        value: at.t as f64 / 1000.0,
                        drop_name: true,
                    })
                    .collect(),
            )),
            other => fail(format!(
                "timestamp: expected an instant vector, got {}",
                other.type_name()
            )),
        }
    }

    fn absent(&self, args: &[Box<Expr>], at: At) -> Result<Value, QueryError> {
        let Some(arg) = args.first() else {
            return fail("absent: expected one argument");
        };
        match self.eval(arg, at)? {
            Value::Vector(v) if v.is_empty() => Ok(Value::Vector(vec![Sample::new(
                absent_labels(Some(arg)),
                1.0,
            )])),
            Value::Vector(_) => Ok(Value::Vector(Vec::new())),
            other => fail(format!(
                "absent: expected an instant vector, got {}",
                other.type_name()
            )),
        }
    }
}

/// The labels `absent` gives: the equality matchers of a plain selector (a label matched
/// twice with `=` gets none).
fn absent_labels(arg: Option<&Expr>) -> Labels {
    let mut inner = arg;
    while let Some(Expr::Paren(p)) = inner {
        inner = Some(&p.expr);
    }
    let vs = match inner {
        Some(Expr::VectorSelector(vs)) => vs,
        Some(Expr::MatrixSelector(ms)) => &ms.vs,
        _ => return Labels::default(),
    };
    // In order: an equality sets its label unless the label is set already; anything else
    // (a second equality, a regex, an inequality) removes it.
    // A removed label stays removed.
    let mut labels = Labels::default();
    let mut removed: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME || removed.contains(&m.name.as_str()) {
            continue;
        }
        match m.op {
            MatchOp::Equal if labels.get(&m.name).is_none() => labels.set(&m.name, &m.value),
            _ => {
                labels.remove(&m.name);
                removed.push(&m.name);
            }
        }
    }
    labels
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn system_time_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => millis(d),
        Err(e) => -millis(e.duration()),
    }
}

/// Points gathered per label set, with whether the name is to go.
type PointsByLabels = HashMap<Labels, (Vec<(i64, f64)>, bool)>;

/// Points gathered per label set, as a matrix sorted by labels.
fn matrix(series: PointsByLabels) -> Value {
    let mut out: Vec<Series> = series
        .into_iter()
        .map(|(labels, (points, drop_name))| Series {
            labels,
            points,
            drop_name,
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Value::Matrix(out)
}

/// The byte offset of the first call of `word` in `text` (`word` then `(`, as a whole word).
fn find_call(text: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = text[from..].find(word) {
        let at = from + found;
        let before_ok = text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let after = text[at + word.len()..].trim_start();
        if before_ok
            && (after.starts_with('(') || after.starts_with("by") || after.starts_with("without"))
        {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// The name of a sorting function called anywhere in `expr`.
fn sort_call(expr: &Expr) -> Option<&'static str> {
    match expr {
        Expr::Call(c) => {
            if matches!(
                c.func.name,
                "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc"
            ) {
                return Some(c.func.name);
            }
            c.args.args.iter().find_map(|a| sort_call(a))
        }
        Expr::Paren(p) => sort_call(&p.expr),
        Expr::Unary(u) => sort_call(&u.expr),
        Expr::Binary(b) => sort_call(&b.lhs).or_else(|| sort_call(&b.rhs)),
        Expr::Aggregate(a) => sort_call(&a.expr),
        Expr::Subquery(s) => sort_call(&s.expr),
        _ => None,
    }
}

/// Whether the query's top-level result order is meaningful (`sort`, `topk`, …).
fn keeps_order(expr: &Expr) -> bool {
    match expr {
        Expr::Paren(p) => keeps_order(&p.expr),
        Expr::Call(c) => matches!(
            c.func.name,
            "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc"
        ),
        Expr::Aggregate(a) => matches!(a.op.to_string().as_str(), "topk" | "bottomk"),
        _ => false,
    }
}

/// A vector as a query returns it: names marked to go are removed, and the label sets left
/// must be distinct.
fn finish_vector(v: Vec<Sample>) -> Result<Vec<Sample>, QueryError> {
    let v: Vec<Sample> = v
        .into_iter()
        .map(|mut s| {
            if s.drop_name {
                s.labels.remove(METRIC_NAME);
                s.drop_name = false;
            }
            s
        })
        .collect();
    check_unique(&v)?;
    Ok(v)
}

fn check_unique(v: &[Sample]) -> Result<(), QueryError> {
    let mut seen = std::collections::HashSet::with_capacity(v.len());
    for s in v {
        if !seen.insert(&s.labels) {
            return fail("vector cannot contain metrics with the same labelset");
        }
    }
    Ok(())
}

fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

fn is_set_operator(op: &str) -> bool {
    matches!(op, "and" | "or" | "unless")
}

/// `l op r`: the arithmetic result, or for comparisons whether it holds (the value is `l`).
fn apply(op: &str, l: f64, r: f64) -> Result<(f64, bool), QueryError> {
    Ok(match op {
        "+" => (l + r, true),
        "-" => (l - r, true),
        "*" => (l * r, true),
        "/" => (l / r, true),
        "%" => (l % r, true),
        "^" => (l.powf(r), true),
        "atan2" => (l.atan2(r), true),
        "==" => (l, l == r),
        "!=" => (l, l != r),
        ">" => (l, l > r),
        "<" => (l, l < r),
        ">=" => (l, l >= r),
        "<=" => (l, l <= r),
        other => return fail(format!("operator {other} is not defined on floats")),
    })
}

fn vector_scalar(
    op: &str,
    vector: Vec<Sample>,
    scalar: f64,
    scalar_left: bool,
    return_bool: bool,
) -> Result<Vec<Sample>, QueryError> {
    let comparison = is_comparison(op);
    let mut out = Vec::with_capacity(vector.len());
    for s in vector {
        let (l, r) = if scalar_left {
            (scalar, s.value)
        } else {
            (s.value, scalar)
        };
        let (v, keep) = apply(op, l, r)?;
        if comparison {
            if return_bool {
                out.push(Sample {
                    labels: s.labels,
                    value: f64::from(u8::from(keep)),
                    drop_name: true,
                });
            } else if keep {
                // A filter keeps the vector's own value and name.
                out.push(s);
            }
        } else {
            out.push(Sample {
                labels: s.labels,
                value: v,
                drop_name: true,
            });
        }
    }
    Ok(out)
}

/// The labels two samples are matched on.
fn signature(labels: &Labels, matching: Option<&LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(names)) => labels.keep(&names.labels),
        Some(LabelModifier::Exclude(names)) => labels.drop(&names.labels).without_name(),
        None => labels.without_name(),
    }
}

fn set_operation(
    op: &str,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    modifier: Option<&parser::BinModifier>,
) -> Vec<Sample> {
    let matching = modifier.and_then(|m| m.matching.as_ref());
    let right: std::collections::HashSet<Labels> =
        rhs.iter().map(|s| signature(&s.labels, matching)).collect();
    match op {
        "and" => lhs
            .into_iter()
            .filter(|s| right.contains(&signature(&s.labels, matching)))
            .collect(),
        "unless" => lhs
            .into_iter()
            .filter(|s| !right.contains(&signature(&s.labels, matching)))
            .collect(),
        _ => {
            let left: std::collections::HashSet<Labels> =
                lhs.iter().map(|s| signature(&s.labels, matching)).collect();
            let mut out = lhs;
            out.extend(
                rhs.into_iter()
                    .filter(|s| !left.contains(&signature(&s.labels, matching))),
            );
            out
        }
    }
}

fn vector_vector(
    op: &str,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    modifier: Option<&parser::BinModifier>,
    return_bool: bool,
) -> Result<Vec<Sample>, QueryError> {
    let matching = modifier.and_then(|m| m.matching.as_ref());
    let card = modifier.map_or(VectorMatchCardinality::OneToOne, |m| m.card.clone());
    let comparison = is_comparison(op);
    // The "one" side is indexed; with group_right the sides swap roles.
    let (many, one, swapped) = match card {
        VectorMatchCardinality::OneToMany(_) => (rhs, lhs, true),
        _ => (lhs, rhs, false),
    };
    let mut index: HashMap<Labels, usize> = HashMap::with_capacity(one.len());
    for (i, s) in one.iter().enumerate() {
        if let Some(first) = index.insert(signature(&s.labels, matching), i) {
            // Named in a stable order, whichever came first.
            let (a, b) = if one[first].labels <= s.labels {
                (&one[first].labels, &s.labels)
            } else {
                (&s.labels, &one[first].labels)
            };
            return fail(format!(
                "found duplicate series for the match group {} on the {} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                signature(&s.labels, matching),
                if swapped { "left" } else { "right" },
                a,
                b
            ));
        }
    }
    let include: Vec<String> = match &card {
        VectorMatchCardinality::ManyToOne(l) | VectorMatchCardinality::OneToMany(l) => {
            l.labels.clone()
        }
        _ => Vec::new(),
    };
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    let mut matched_once: HashMap<Labels, ()> = HashMap::new();
    let mut out = Vec::new();
    let mut seen_outputs = std::collections::HashSet::new();
    for s in many {
        let sig = signature(&s.labels, matching);
        let Some(&j) = index.get(&sig) else { continue };
        if one_to_one && matched_once.insert(sig.clone(), ()).is_some() {
            return fail(format!(
                "found duplicate series for the match group {sig} on the left hand-side of the operation: multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
            ));
        }
        let other = &one[j];
        let (l, r) = if swapped {
            (other.value, s.value)
        } else {
            (s.value, other.value)
        };
        let (v, keep) = apply(op, l, r)?;
        let value = if comparison {
            if return_bool {
                f64::from(u8::from(keep))
            } else if keep {
                l
            } else {
                continue;
            }
        } else {
            v
        };
        let mut labels = s.labels.clone();
        let drop_name = s.drop_name || !comparison || return_bool;
        if one_to_one {
            labels = match matching {
                Some(LabelModifier::Include(names)) => labels.keep(&names.labels),
                Some(LabelModifier::Exclude(names)) => labels.drop(&names.labels),
                None => labels,
            };
        }
        for name in &include {
            match other.labels.get(name) {
                Some(v) => labels.set(name, v),
                None => labels.remove(name),
            }
        }
        if !one_to_one && !seen_outputs.insert(labels.clone()) {
            return fail("multiple matches for labels: grouping labels must ensure unique matches");
        }
        out.push(Sample {
            labels,
            value,
            drop_name,
        });
    }
    Ok(out)
}

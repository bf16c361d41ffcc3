//! The Prometheus HTTP API over the head: remote write in, PromQL queries out, series and
//! label metadata, series deletion and head statistics (what Grafana's Prometheus data
//! source and promtool-style clients use).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value as Json, json};

use rampart_promql::value::{Value, format_float};
use rampart_promql::{Engine, QueryError};

use crate::head::Head;
use crate::remote_write;

/// Largest form body a query request may send.
const MAX_FORM_BODY: usize = 1 << 20;

/// What the API serves.
#[derive(Clone)]
pub struct Api {
    pub head: Arc<Head>,
    pub limits: remote_write::Limits,
    /// Whether `POST /api/v1/write` (remote write) is accepted.
    pub remote_write: bool,
    /// Whether `/api/v1/admin/*` (series deletion) is served.
    pub admin: bool,
}

/// The routes, under `/api/v1`.
pub fn router(api: Api) -> Router {
    let body_limit = api.limits.max_body.max(MAX_FORM_BODY);
    let mut router = Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/status/tsdb", get(status));
    if api.remote_write {
        router = router.route("/api/v1/write", post(write));
    }
    if api.admin {
        router = router
            .route(
                "/api/v1/admin/tsdb/delete_series",
                post(delete_series).put(delete_series),
            )
            .route(
                "/api/v1/admin/tsdb/clean_tombstones",
                post(clean_tombstones).put(clean_tombstones),
            );
    }
    router
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(api)
}

fn error(status: StatusCode, kind: &str, message: impl std::fmt::Display) -> Response {
    (
        status,
        axum::Json(json!({"status": "error", "errorType": kind, "error": message.to_string()})),
    )
        .into_response()
}

/// An error answer, small enough to travel in a `Result`.
struct ApiError(String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, "bad_data", self.0)
    }
}

fn bad(message: impl std::fmt::Display) -> ApiError {
    ApiError(message.to_string())
}

fn success(data: Json) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

fn success_with(data: Json, warnings: Vec<String>) -> Response {
    if warnings.is_empty() {
        return success(data);
    }
    axum::Json(json!({"status": "success", "data": data, "warnings": warnings})).into_response()
}

/// Parameters from the query string and, for form posts, the body (repeated keys kept).
fn params(raw: Option<String>, headers: &HeaderMap, body: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = raw
        .as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let form = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        out.extend(form_urlencoded::parse(body).into_owned());
    }
    out
}

fn param<'p>(params: &'p [(String, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A time parameter: Unix seconds (with a fraction) or RFC 3339.
fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        if !seconds.is_finite() || seconds.abs() > 9.2e15 {
            return Err(format!("cannot parse {text:?} to a valid timestamp"));
        }
        return Ok((seconds * 1000.0).round() as i64);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("cannot parse {text:?} to a valid timestamp"))
}

/// A step or duration parameter: seconds (with a fraction) or a duration (`15s`, `1m`).
fn parse_duration(text: &str) -> Result<i64, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        if !seconds.is_finite() || seconds.abs() > 9.2e15 {
            return Err(format!("cannot parse {text:?} to a valid duration"));
        }
        return Ok((seconds * 1000.0).round() as i64);
    }
    let mut total: i64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("cannot parse {text:?} to a valid duration"));
        }
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("cannot parse {text:?} to a valid duration"))?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(char::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return Err(format!("cannot parse {text:?} to a valid duration")),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration {text:?} is out of range"))?;
    }
    Ok(total)
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn point(t: i64, v: f64) -> Json {
    json!([t as f64 / 1000.0, format_float(v)])
}

fn labels_json(labels: &rampart_promql::Labels) -> Json {
    Json::Object(
        labels
            .iter()
            .map(|(n, v)| (n.to_string(), Json::String(v.to_string())))
            .collect(),
    )
}

fn result_json(value: &Value, t: i64) -> Json {
    let result = match value {
        Value::Scalar(v) => point(t, *v),
        Value::String(s) => json!([t as f64 / 1000.0, s]),
        Value::Vector(v) => Json::Array(
            v.iter()
                .map(|s| json!({"metric": labels_json(&s.labels), "value": point(t, s.value)}))
                .collect(),
        ),
        Value::Matrix(m) => Json::Array(
            m.iter()
                .map(|s| {
                    json!({
                        "metric": labels_json(&s.labels),
                        "values": s.points.iter().map(|&(t, v)| point(t, v)).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        ),
    };
    json!({"resultType": value.type_name(), "result": result})
}

fn query_error(e: QueryError) -> Response {
    match e {
        QueryError::Parse(m) => error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            format!("invalid parameter \"query\": parse error: {m}"),
        ),
        QueryError::Execution(m) => error(StatusCode::UNPROCESSABLE_ENTITY, "execution", m),
        QueryError::Parameter(m) => error(StatusCode::BAD_REQUEST, "bad_data", m),
    }
}

async fn query(
    State(api): State<Api>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(raw, &headers, &body);
    let Some(q) = param(&p, "query") else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "invalid parameter \"query\": missing",
        );
    };
    let t = match param(&p, "time").map(parse_time).transpose() {
        Ok(t) => t.unwrap_or_else(now_millis),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_data",
                format!("invalid parameter \"time\": {e}"),
            );
        }
    };
    let q = q.to_string();
    evaluate(&api, t, move |engine| engine.instant(&q, t)).await
}

/// Runs a query off the async threads and answers with its result and warnings; `t` is the
/// time a scalar or string result is reported at.
async fn evaluate(
    api: &Api,
    t: i64,
    run: impl FnOnce(&Engine<'_, Head>) -> Result<Value, QueryError> + Send + 'static,
) -> Response {
    let head = api.head.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let engine = Engine::new(head.as_ref());
        let result = run(&engine);
        (result, engine.warnings())
    })
    .await;
    match outcome {
        Ok((Ok(value), warnings)) => success_with(result_json(&value, t), warnings),
        Ok((Err(e), _)) => query_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
}

async fn query_range(
    State(api): State<Api>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(raw, &headers, &body);
    let Some(q) = param(&p, "query") else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "invalid parameter \"query\": missing",
        );
    };
    let get = |name: &str, parse: fn(&str) -> Result<i64, String>| -> Result<i64, ApiError> {
        let text =
            param(&p, name).ok_or_else(|| bad(format!("invalid parameter \"{name}\": missing")))?;
        parse(text).map_err(|e| bad(format!("invalid parameter \"{name}\": {e}")))
    };
    let (start, end, step) = match (
        get("start", parse_time),
        get("end", parse_time),
        get("step", parse_duration),
    ) {
        (Ok(s), Ok(e), Ok(st)) => (s, e, st),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r.into_response(),
    };
    let q = q.to_string();
    evaluate(&api, end, move |engine| engine.range(&q, start, end, step)).await
}

async fn write(State(api): State<Api>, body: Bytes) -> Response {
    let request = match remote_write::decode(&body, &api.limits) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_data", e),
    };
    for s in &request.series {
        if let Err(e) = api.head.append(&s.labels, &s.samples) {
            return error(StatusCode::BAD_REQUEST, "bad_data", e);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The `match[]` selectors of a request, each as a matcher set.
fn selectors(p: &[(String, String)]) -> Result<Vec<Vec<rampart_promql::Matcher>>, ApiError> {
    let mut sets = Vec::new();
    for (_, text) in p.iter().filter(|(k, _)| k == "match[]") {
        let expr = Engine::<Head>::parse(text)
            .map_err(|e| bad(format!("invalid parameter \"match[]\": {e}")))?;
        let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
            return Err(bad(format!(
                "invalid parameter \"match[]\": {text:?} is not a series selector"
            )));
        };
        let mut m = vs.matchers.matchers.clone();
        if let Some(name) = &vs.name {
            m.push(rampart_promql::Matcher::new(
                promql_parser::label::MatchOp::Equal,
                "__name__",
                name,
            ));
        }
        if m.iter().all(|x| x.is_match("")) {
            return Err(bad(format!(
                "invalid parameter \"match[]\": {text:?} must contain at least one non-empty matcher"
            )));
        }
        sets.push(m);
    }
    Ok(sets)
}

/// As [`selectors`], for endpoints that need at least one.
fn required_selectors(
    p: &[(String, String)],
) -> Result<Vec<Vec<rampart_promql::Matcher>>, ApiError> {
    let sets = selectors(p)?;
    if sets.is_empty() {
        return Err(bad("no match[] parameter provided"));
    }
    Ok(sets)
}

async fn delete_series(
    State(api): State<Api>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(raw, &headers, &body);
    let sets = match required_selectors(&p) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let start = match param(&p, "start").map(parse_time).transpose() {
        Ok(t) => t.unwrap_or(i64::MIN),
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_data", e),
    };
    let end = match param(&p, "end").map(parse_time).transpose() {
        Ok(t) => t.unwrap_or(i64::MAX),
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_data", e),
    };
    for set in &sets {
        api.head.delete(set, start, end);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn clean_tombstones() -> Response {
    // Deletion frees samples at once; there are no tombstones to clean.
    StatusCode::NO_CONTENT.into_response()
}

async fn series(
    State(api): State<Api>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(raw, &headers, &body);
    let sets = match required_selectors(&p) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    success(Json::Array(
        api.head
            .series_labels(&sets)
            .iter()
            .map(labels_json)
            .collect(),
    ))
}

fn all_or_matched(
    api: &Api,
    p: &[(String, String)],
) -> Result<Vec<rampart_promql::Labels>, ApiError> {
    let sets = selectors(p)?;
    let sets = if sets.is_empty() {
        vec![vec![rampart_promql::Matcher::new(
            promql_parser::label::MatchOp::Re(
                regex::Regex::new("^(?s:.+)$").expect("fixed pattern"),
            ),
            "__name__",
            ".+",
        )]]
    } else {
        sets
    };
    Ok(api.head.series_labels(&sets))
}

async fn labels(
    State(api): State<Api>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(raw, &headers, &body);
    let series = match all_or_matched(&api, &p) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let names: std::collections::BTreeSet<String> = series
        .iter()
        .flat_map(|l| l.iter().map(|(n, _)| n.to_string()))
        .collect();
    success(json!(names))
}

async fn label_values(
    State(api): State<Api>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let p = params(raw, &HeaderMap::new(), &[]);
    let series = match all_or_matched(&api, &p) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let values: std::collections::BTreeSet<String> = series
        .iter()
        .filter_map(|l| l.get(&name).map(str::to_string))
        .collect();
    success(json!(values))
}

async fn status(State(api): State<Api>) -> Response {
    let s = api.head.stats();
    success(json!({
        "headStats": {
            "numSeries": s.series,
            "numSamples": s.samples,
            "minTime": s.min_time.unwrap_or(0),
            "maxTime": s.max_time.unwrap_or(0),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_parse_as_prometheus_reads_them() {
        assert_eq!(parse_time("1577836800.123"), Ok(1_577_836_800_123));
        assert_eq!(parse_time("2020-01-01T00:00:00Z"), Ok(1_577_836_800_000));
        assert!(parse_time("soon").is_err());
        assert!(parse_time("1e300").is_err());
        assert_eq!(parse_duration("15"), Ok(15_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("99999999999999999y").is_err());
    }
}

//! Prometheus's HTTP API as the renderer uses it: `GET /api/v1/query_range` (PromQL over a time
//! range, a range vector of series back) on hyper's client, and its JSON answer read into series.

use super::{DashboardError, TimeRange};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One query's answer may take this long (Prometheus's own default query timeout is 2 minutes,
/// but a dashboard's queries over an hour of 1 s scrapes take well under a second).
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// One series of an answer: its labels, and its points as (Unix seconds, value). A value
/// Prometheus could not compute (`NaN`, a quantile of no samples) is kept as NaN, a gap.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Series {
    pub(super) labels: BTreeMap<String, String>,
    pub(super) points: Vec<(f64, f64)>,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(rename = "errorType", default)]
    error_type: String,
    #[serde(default)]
    error: String,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<RawSeries>,
}

#[derive(Deserialize)]
struct RawSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// The series in a `query_range` answer (`body`, with HTTP status `status`), or Prometheus's
/// own error message.
pub(super) fn parse_answer(status: u16, body: &[u8]) -> Result<Vec<Series>, String> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        format!("HTTP {status}, not a Prometheus API answer ({e}): {text}")
    })?;
    if answer.status != "success" {
        return Err(format!(
            "Prometheus answered {}: {}",
            answer.error_type, answer.error
        ));
    }
    let data = answer
        .data
        .ok_or_else(|| "Prometheus answered success without data".to_string())?;
    if data.result_type != "matrix" {
        return Err(format!(
            "Prometheus answered a {}, not the matrix a range query gives",
            data.result_type
        ));
    }
    data.result
        .into_iter()
        .map(|raw| {
            let points = raw
                .values
                .into_iter()
                .map(|(at, value)| {
                    // Prometheus writes values as strings, "NaN" and "+Inf" included.
                    let value: f64 = value
                        .parse()
                        .map_err(|_| format!("{value:?} at {at} is not a number"))?;
                    Ok((at, if value.is_finite() { value } else { f64::NAN }))
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(Series {
                labels: raw.metric,
                points,
            })
        })
        .collect()
}

/// A Prometheus server's HTTP API.
pub(super) struct Client {
    /// The address without a trailing slash, e.g. `http://127.0.0.1:9090`.
    base: String,
    http: HttpClient<HttpConnector, Empty<Bytes>>,
}

impl Client {
    /// A client of the Prometheus at `url` (`http://HOST:PORT`, maybe with a path prefix).
    pub(super) fn new(url: &str) -> Result<Client, DashboardError> {
        let invalid = |problem: &str| DashboardError::PrometheusUrl {
            url: url.to_string(),
            problem: problem.to_string(),
        };
        let base = url.trim_end_matches('/');
        if !base.starts_with("http://") {
            return Err(invalid(
                "give Prometheus's plain HTTP address, e.g. http://127.0.0.1:9090",
            ));
        }
        let uri: hyper::Uri = base
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| invalid(&e.to_string()))?;
        if uri.host().is_none() || uri.query().is_some() {
            return Err(invalid("an address is http://HOST:PORT, without a query"));
        }
        Ok(Client {
            base: base.to_string(),
            http: HttpClient::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// `expr` over `range`: its series, or what went wrong in words.
    pub(super) async fn query_range(
        &self,
        expr: &str,
        range: &TimeRange,
    ) -> Result<Vec<Series>, String> {
        let query = serde_urlencoded::to_string([
            ("query", expr.to_string()),
            ("start", range.start.to_string()),
            ("end", range.end.to_string()),
            ("step", range.step.to_string()),
        ])
        .map_err(|e| e.to_string())?;
        let uri: hyper::Uri = format!("{}/api/v1/query_range?{query}", self.base)
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| e.to_string())?;
        let exchange = async {
            let response = self
                .http
                .get(uri)
                .await
                .map_err(|e| crate::causes::with_causes(&e))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| crate::causes::with_causes(&e))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = tokio::time::timeout(QUERY_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                format!(
                    "{} gave no answer within {} s",
                    self.base,
                    QUERY_TIMEOUT.as_secs()
                )
            })?
            .map_err(|problem| format!("{}: {problem}", self.base))?;
        parse_answer(status, &body)
    }
}

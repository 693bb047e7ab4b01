//! What the service says about its requests: a request id on every request (the caller's
//! `X-Request-Id` when it sends a sane one, else a new one) with a `tracing` span carrying
//! it, the id echoed in the answer, and request counts and latencies per route and status
//! for `/metrics`.
//!
//! The counts are rendered by hand in the same Prometheus text format as the pipelines'
//! metrics they share the endpoint with, so a scraper reads one format.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::state::Service;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// What is known of one method and route.
struct RouteStats {
    method: String,
    route: String,
    /// Answers per status.
    statuses: Vec<(u16, u64)>,
    /// Observations at or below each bucket's bound (not cumulative; summed when rendered).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Request counts per method, route and status, and latencies per method and route.
#[derive(Default)]
pub struct HttpMetrics {
    /// By `"METHOD route"`, so a known route is found without allocating.
    routes: Mutex<BTreeMap<String, RouteStats>>,
    next_id: AtomicU64,
}

impl HttpMetrics {
    fn observe(&self, key: &str, method: &str, route: &str, status: u16, seconds: f64) {
        let mut all = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if !all.contains_key(key) {
            all.insert(
                key.to_string(),
                RouteStats {
                    method: method.to_string(),
                    route: route.to_string(),
                    statuses: Vec::new(),
                    buckets: [0; BUCKETS.len()],
                    count: 0,
                    sum: 0.0,
                },
            );
        }
        let Some(r) = all.get_mut(key) else { return };
        match r.statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => {
                r.statuses.push((status, 1));
                r.statuses.sort_unstable();
            }
        }
        r.count += 1;
        r.sum += seconds;
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            r.buckets[i] += 1;
        }
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let all = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::from(
            "# HELP fluxion_http_requests_total Requests answered, by method, route and status.\n\
             # TYPE fluxion_http_requests_total counter\n",
        );
        for r in all.values() {
            for (status, n) in &r.statuses {
                out.push_str(&format!(
                    "fluxion_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}\n",
                    r.method, r.route
                ));
            }
        }
        out.push_str(
            "# HELP fluxion_http_request_seconds Time to answer a request, by method and route.\n\
             # TYPE fluxion_http_request_seconds histogram\n",
        );
        for r in all.values() {
            let labels = format!("method=\"{}\",route=\"{}\"", r.method, r.route);
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(r.buckets) {
                cumulative += n;
                out.push_str(&format!(
                    "fluxion_http_request_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}\n"
                ));
            }
            out.push_str(&format!(
                "fluxion_http_request_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n\
                 fluxion_http_request_seconds_sum{{{labels}}} {}\n\
                 fluxion_http_request_seconds_count{{{labels}}} {}\n",
                r.count, r.sum, r.count
            ));
        }
        out
    }
}

/// The caller's request id when it is short and printable, else a new one.
fn request_id(req: &Request, metrics: &HttpMetrics) -> String {
    let given = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        });
    match given {
        Some(id) => id.to_string(),
        None => format!(
            "req-{:x}-{:08x}",
            std::process::id(),
            metrics.next_id.fetch_add(1, Ordering::Relaxed)
        ),
    }
}

/// The middleware around every route: span, request id, counts and latency.
pub async fn observe(State(s): State<Arc<Service>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&req, &s.http);
    let method = req.method().clone();
    // The route's pattern (`/v1/pipelines/{id}`), so ids do not each make a time series.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let span = tracing::info_span!("request", id = %id, method = %method, route = %route);
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    span.in_scope(|| tracing::debug!(status, ms = seconds * 1e3, "answered"));
    let mut key = String::with_capacity(method.as_str().len() + route.len() + 1);
    key.push_str(method.as_str());
    key.push(' ');
    key.push_str(route);
    s.http
        .observe(&key, method.as_str(), route, status, seconds);
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_buckets_render_as_prometheus_text() {
        let m = HttpMetrics::default();
        let key = "GET /v1/pipelines";
        m.observe(key, "GET", "/v1/pipelines", 200, 0.0007);
        m.observe(key, "GET", "/v1/pipelines", 200, 0.2);
        m.observe(key, "GET", "/v1/pipelines", 401, 0.0001);
        let text = m.render();
        assert!(text.contains(
            "fluxion_http_requests_total{method=\"GET\",route=\"/v1/pipelines\",status=\"200\"} 2\n"
        ));
        assert!(text.contains("status=\"401\"} 1\n"));
        assert!(text.contains("route=\"/v1/pipelines\",le=\"0.0005\"} 1\n"));
        assert!(text.contains("route=\"/v1/pipelines\",le=\"0.001\"} 2\n"));
        assert!(text.contains("route=\"/v1/pipelines\",le=\"+Inf\"} 3\n"));
        assert!(text.contains(
            "fluxion_http_request_seconds_count{method=\"GET\",route=\"/v1/pipelines\"} 3\n"
        ));
    }
}

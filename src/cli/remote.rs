//! `fluxion pipelines …` and `fluxion events` against a running service: the `/v1` API
//! through an HTTP client, answers printed as JSON lines on stdout like the local commands'
//! results, a refusal as the service's one-line error (exit 1).

use std::io::Write;
use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::PipelinesCommand;
use crate::{Error, Result};

/// A client of one service.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client of the service at `server` (`http://127.0.0.1:8700`).
    pub fn new(server: &str, token: Option<String>) -> Result<Client> {
        let base = server.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::config(
                "--server",
                format!("expected an http:// or https:// URL, not \"{base}\""),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|e| Error::external("making an HTTP client", e))?;
        Ok(Client { base, token, http })
    }

    /// Calls `method path` with `body`; the answer's JSON, or the service's error.
    pub async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let what = format!("{method} {url}");
        let r = req
            .send()
            .await
            .map_err(|e| Error::external(what.clone(), e))?;
        let status = r.status();
        let bytes = r
            .bytes()
            .await
            .map_err(|e| Error::external(what.clone(), e))?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let message = body
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
        let context = format!("{} ({status})", self.base);
        Err(match status {
            StatusCode::NOT_FOUND => Error::NotFound(format!("{context}: {message}")),
            StatusCode::CONFLICT => Error::Conflict { context, message },
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                Error::external(context, std::io::Error::other(message))
            }
            _ => Error::config(context, message),
        })
    }
}

fn print(v: &Value) {
    let _ = writeln!(std::io::stdout().lock(), "{v}");
}

/// The job file's JSON with its relative paths made absolute (the service runs elsewhere).
fn job_file(path: &Path) -> Result<Vec<u8>> {
    let what = path.display().to_string();
    let text = std::fs::read(path).map_err(|e| Error::config(&what, e.to_string()))?;
    let mut job: Value = serde_json::from_slice(&text)
        .map_err(|e| Error::config(&what, format!("not valid JSON: {e}")))?;
    let base = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    crate::job::resolve_json_paths(&mut job, &base);
    Ok(job.to_string().into_bytes())
}

fn segment(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Runs `fluxion pipelines …`.
pub(super) async fn pipelines(c: &Client, command: PipelinesCommand) -> Result<()> {
    let at = |id: &str| format!("/v1/pipelines/{}", segment(id));
    let answer = match command {
        PipelinesCommand::Submit { job } => {
            c.call(Method::POST, "/v1/pipelines", Some(job_file(&job)?))
                .await?
        }
        PipelinesCommand::List => {
            let all = c.call(Method::GET, "/v1/pipelines", None).await?;
            for p in all["pipelines"].as_array().into_iter().flatten() {
                print(p);
            }
            return Ok(());
        }
        PipelinesCommand::Get { id } => c.call(Method::GET, &at(&id), None).await?,
        PipelinesCommand::Start { id } => {
            c.call(Method::POST, &format!("{}/start", at(&id)), None)
                .await?
        }
        PipelinesCommand::Stop { id } => {
            c.call(Method::POST, &format!("{}/stop", at(&id)), None)
                .await?
        }
        PipelinesCommand::Restart { id } => {
            c.call(Method::POST, &format!("{}/restart", at(&id)), None)
                .await?
        }
        PipelinesCommand::Update {
            id,
            job,
            reset_checkpoint,
        } => {
            let path = format!("{}?resetCheckpoint={reset_checkpoint}", at(&id));
            c.call(Method::PUT, &path, Some(job_file(&job)?)).await?
        }
        PipelinesCommand::Delete { id } => c.call(Method::DELETE, &at(&id), None).await?,
    };
    print(&answer);
    Ok(())
}

/// Runs `fluxion events`: every event after `after`, page by page.
pub(super) async fn events(c: &Client, mut after: u64) -> Result<()> {
    loop {
        let page = c
            .call(
                Method::GET,
                &format!("/v1/events?after={after}&limit=10000"),
                None,
            )
            .await?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        for e in &events {
            print(e);
            after = after.max(e["seq"].as_u64().unwrap_or(after));
        }
        if events.len() < 10_000 {
            return Ok(());
        }
    }
}

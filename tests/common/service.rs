//! A `fluxion serve` process on a loopback port for tests, and a JSON client of its API.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The admin key every test service starts with.
pub const ADMIN: &str = "test-admin-key-0123456789";

/// A running service; dropping it kills the process (SIGKILL, as a crash would).
pub struct Server {
    child: Child,
    pub base: String,
    pub port: u16,
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts the service with its state in `data`.
    pub fn start(data: &Path) -> Server {
        Server::start_with(data, None, &[])
    }

    /// Starts the service with a settings file (TOML text written next to `data`) and extra
    /// environment variables.
    pub fn start_with(data: &Path, settings: Option<&str>, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fluxion"));
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data)
        .env("FLUXION_BOOTSTRAP_ADMIN_KEY", ADMIN)
        .stdout(Stdio::null());
        let mut scheme = "http";
        if let Some(text) = settings {
            let path = data.with_extension("toml");
            std::fs::write(&path, text).unwrap();
            cmd.arg("--config").arg(&path);
            if text.contains("[tls]") {
                scheme = "https";
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut server = Server {
            child,
            base: format!("{scheme}://127.0.0.1:{port}"),
            port,
        };
        for _ in 0..400 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("fluxion serve exited with {status}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("fluxion serve did not start");
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(self) {
        drop(self);
    }

    /// SIGTERM, and waits for the process to end; its exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls the API; the status and the body as JSON (a string when it is not JSON).
pub async fn call(
    method: &str,
    url: String,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, _, body) = call_raw(
        method,
        url,
        key,
        body.map(|b| b.to_string().into_bytes()),
        &[],
    )
    .await;
    (status, body)
}

/// Calls the API with raw body bytes and extra headers; status, headers, body.
pub async fn call_raw(
    method: &str,
    url: String,
    key: Option<&str>,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let mut req = client.request(method.parse().unwrap(), url);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Waits (up to 10 s) until `ok` holds.
pub async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..400 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The JSON lines of a file (none when it does not exist yet).
pub fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `schemathesis` command, installed from PyPI first if it is missing (`.ci/run` installs
/// it too).
pub fn schemathesis() -> &'static str {
    static READY: std::sync::Once = std::sync::Once::new();
    READY.call_once(|| {
        let found = Command::new("schemathesis")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            let ok = Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    "schemathesis==4.*",
                ])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "schemathesis is missing and pip could not install it");
        }
    });
    "schemathesis"
}

/// The directory of the browser test script, with playwright-core installed (`npm ci`) the
/// first time. Chromium itself comes from Debian's `chromium` package (`.ci/run` installs it).
pub fn browser_scripts() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    static READY: std::sync::Once = std::sync::Once::new();
    READY.call_once(|| {
        if !dir.join("node_modules/playwright-core").exists() {
            let ok = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--silent"])
                .current_dir(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "npm ci in tests/browser failed");
        }
    });
    assert!(
        Path::new("/usr/bin/chromium").exists() || std::env::var_os("CHROMIUM").is_some(),
        "the dashboard test needs Debian's chromium (apt-get install chromium; .ci/run does)"
    );
    dir
}

/// Submits `job` as an admin and starts it, checking both answers.
pub async fn submit_and_start(server: &Server, job: Value) {
    let id = job["name"].as_str().expect("a named job").to_string();
    let (status, body) = call("POST", server.url("/v1/pipelines"), Some(ADMIN), Some(job)).await;
    assert_eq!(status, 201, "{body}");
    let path = format!("/v1/pipelines/{id}/start");
    let (status, body) = call("POST", server.url(&path), Some(ADMIN), None).await;
    assert_eq!(status, 200, "{body}");
}

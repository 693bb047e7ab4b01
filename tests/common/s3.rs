//! An S3-compatible server on loopback for the object-store tests: moto's standalone server
//! (`moto_server`, from PyPI's `moto[server]`, which `.ci/run` installs; the harness installs
//! it with pip when it is missing), one per test, stopped when the [`S3`] handle drops.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

/// A running moto server.
pub struct S3 {
    child: Child,
    pub endpoint: String,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_command() -> Command {
    let mut c = Command::new("moto_server");
    c.stdout(Stdio::null()).stderr(Stdio::null());
    c
}

impl S3 {
    /// Starts a server on a free loopback port and waits until it answers.
    pub fn start() -> S3 {
        if Command::new("moto_server")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            let ok = Command::new("python3")
                .args(["-m", "pip", "install", "-q", "moto[server]"])
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "moto_server is missing and pip could not install moto[server]"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = moto_command()
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .spawn()
            .expect("start moto_server");
        let s3 = S3 {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s3
    }

    /// The environment a Fluxion process needs to reach this server (path-style requests,
    /// plain HTTP, dummy credentials).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false".into()),
        ]
    }

    /// Creates `bucket` (moto accepts an unsigned `PUT /bucket`).
    pub fn create_bucket(&self, bucket: &str) {
        let host = self.endpoint.trim_start_matches("http://");
        let mut conn = TcpStream::connect(host).unwrap();
        write!(
            conn,
            "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        let _ = conn.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "creating {bucket}: {answer}"
        );
    }

    /// A client of `bucket`, for putting inputs and reading outputs.
    pub fn bucket(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_bucket_name(bucket)
                .with_access_key_id("test")
                .with_secret_access_key("test")
                .with_region("us-east-1")
                .build()
                .unwrap(),
        )
    }
}

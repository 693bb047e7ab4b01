//! A PostgreSQL server on loopback for the PostgreSQL tests: Debian's PostgreSQL binaries
//! (`/usr/lib/postgresql/<version>/bin`, which `.ci/run` installs where missing), a fresh
//! cluster per [`Postgres`] in a temporary directory, password authentication over TCP,
//! stopped when the handle drops. `initdb` refuses to run as root, so as root the cluster
//! belongs to the `postgres` user.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The cluster's superuser and its password.
pub const USER: &str = "fluxion";
pub const PASSWORD: &str = "s3cret-pg-pass";

/// A running server.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
    pub port: u16,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]).status();
    }
}

/// The directory of the newest PostgreSQL's binaries.
fn bindir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .expect("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program args…`, as the `postgres` user when this process is root.
fn command(program: &Path, args: &[&str]) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

impl Postgres {
    /// Creates a cluster, starts it on a free loopback port and waits until it answers.
    pub fn start() -> Postgres {
        let bin = bindir();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if is_root() {
            let owner = Command::new("id")
                .args(["-u", "postgres"])
                .output()
                .unwrap();
            let uid: u32 = String::from_utf8_lossy(&owner.stdout)
                .trim()
                .parse()
                .unwrap();
            std::os::unix::fs::chown(dir.path(), Some(uid), None).unwrap();
            std::os::unix::fs::chown(&pwfile, Some(uid), None).unwrap();
        }
        let out = command(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                USER,
                "--pwfile",
                pwfile.to_str().unwrap(),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )
        .output()
        .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Postgres {
            bin,
            data,
            _dir: dir,
            port,
        };
        pg.run_ctl(&["start"]);
        pg
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.data.display()
        );
        let log = self.data.join("server.log");
        let mut all = vec![
            "-D",
            self.data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-o",
            &options,
        ];
        all.extend_from_slice(args);
        let mut c = command(&self.bin.join("pg_ctl"), &all);
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        c
    }

    fn run_ctl(&self, args: &[&str]) {
        let mut all = args.to_vec();
        all.extend_from_slice(&["-w", "-t", "60"]);
        let out = self.pg_ctl(&all).output().expect("run pg_ctl");
        let log = std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default();
        assert!(
            out.status.success(),
            "pg_ctl {args:?} failed: {}\n{log}",
            String::from_utf8_lossy(&out.stderr)
        );
        let started = Instant::now();
        while args[0] != "stop" && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "postgres did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Restarts the server (clients lose their connections).
    pub fn restart(&self) {
        self.run_ctl(&["restart", "-m", "fast"]);
    }

    /// Stops the server.
    pub fn stop(&self) {
        self.run_ctl(&["stop", "-m", "fast"]);
    }

    /// Starts a stopped server again.
    pub fn start_again(&self) {
        self.run_ctl(&["start"]);
    }

    /// The connection URL, with the password.
    pub fn url(&self) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// The connection URL with the password as `${var}`, for job files.
    pub fn url_with_env(&self, var: &str) -> String {
        format!(
            "postgres://{USER}:${{{var}}}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// A connected client (its connection driven on the current runtime).
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .expect("connect to postgres");
        tokio::spawn(connection);
        client
    }

    /// Runs `sql` (several statements allowed).
    pub async fn execute(&self, sql: &str) {
        self.client()
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The rows of `sql` as JSON documents (`row_to_json`), in the query's order.
    pub async fn documents(&self, sql: &str) -> Vec<serde_json::Value> {
        let wrapped = format!("SELECT row_to_json(t)::text FROM ({sql}) t");
        self.client()
            .await
            .query(&wrapped, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap())
            .collect()
    }
}

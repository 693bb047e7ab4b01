//! The service's settings: `fluxion serve --config fluxion.toml`, every key optional, the
//! command line's `--listen` and `--data-dir` winning over the file's. Secrets (a JWT
//! secret, the event store's password) are written as `${ENV}` and read from the
//! environment when the service starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::connect::http_sink::expand_env;
use crate::{Error, Result};

/// Requests a key may make: a token bucket refilled at `per_second`, holding `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 100,
            burst: 200,
        }
    }
}

/// A certificate and key to serve HTTPS with (PEM files).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How JWT bearer tokens are checked: HS256 with a shared secret and/or RS256 with a public
/// key. A token carries its role in the `role` claim and its caller in `sub`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Jwt {
    /// The HS256 secret (`${ENV}` recommended).
    pub hs256_secret: Option<String>,
    /// A PEM file with the RS256 public key.
    pub rs256_public_key: Option<PathBuf>,
    /// When set, the `iss` claim must be this.
    pub issuer: Option<String>,
    /// When set, the `aud` claim must be this.
    pub audience: Option<String>,
}

/// A table the query side can read: a file (or files) and its format.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TableSpec {
    pub path: String,
    #[serde(default)]
    pub format: Option<String>,
}

/// The service's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: String,
    pub data_dir: Option<PathBuf>,
    /// `postgres://…` keeps the event log in PostgreSQL; absent, in the data directory.
    pub event_store: Option<String>,
    /// Largest request body, in bytes (8 MB unless set).
    #[serde(default = "default_body_limit")]
    pub body_limit: usize,
    /// The rate limit of every key that has none of its own.
    #[serde(default)]
    pub rate_limit: RateLimit,
    pub tls: Option<Tls>,
    pub jwt: Option<Jwt>,
    /// A directory of rule sets that `id@version` references resolve in.
    pub rules: Option<PathBuf>,
    /// Tables the query side reads, by name.
    #[serde(default)]
    pub tables: BTreeMap<String, TableSpec>,
    /// A snapshot of the projection is written every this many events (1 000 unless set), so
    /// a restart folds at most that many.
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every: u64,
}

fn default_listen() -> String {
    "127.0.0.1:8700".into()
}

fn default_body_limit() -> usize {
    8 * 1024 * 1024
}

fn default_snapshot_every() -> u64 {
    1000
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            data_dir: None,
            event_store: None,
            body_limit: default_body_limit(),
            rate_limit: RateLimit::default(),
            tls: None,
            jwt: None,
            rules: None,
            tables: BTreeMap::new(),
            snapshot_every: default_snapshot_every(),
        }
    }
}

impl Config {
    /// Reads `path` (TOML), with `${ENV}` in secrets expanded.
    pub fn load(path: &Path) -> Result<Config> {
        let what = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::external(format!("reading {what}"), e))?;
        Config::parse(&text, &what)
    }

    /// Parses the settings in `text` (named `what` in errors).
    pub fn parse(text: &str, what: &str) -> Result<Config> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(":{line}")
                })
                .unwrap_or_default();
            Error::config(format!("{what}{at}"), message)
        })?;
        if let Some(jwt) = &mut config.jwt {
            if let Some(s) = &jwt.hs256_secret {
                jwt.hs256_secret = Some(expand_env(s, "jwt.hs256Secret", what)?);
            }
            if jwt.hs256_secret.is_none() && jwt.rs256_public_key.is_none() {
                return Err(Error::config(
                    format!("{what}: jwt"),
                    "give hs256Secret or rs256PublicKey",
                ));
            }
        }
        if let Some(s) = &config.event_store {
            config.event_store = Some(expand_env(s, "eventStore", what)?);
        }
        if config.rate_limit.per_second == 0 || config.rate_limit.burst == 0 {
            return Err(Error::config(
                format!("{what}: rateLimit"),
                "perSecond and burst must be at least 1",
            ));
        }
        if config.snapshot_every == 0 {
            return Err(Error::config(
                format!("{what}: snapshotEvery"),
                "must be at least 1",
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_read_with_defaults_and_env_secrets() {
        let c = Config::parse("", "f.toml").unwrap();
        assert_eq!(c.listen, "127.0.0.1:8700");
        assert_eq!(c.rate_limit, RateLimit::default());
        assert_eq!(c.body_limit, 8 << 20);
        // SAFETY: the test owns this variable's name.
        unsafe { std::env::set_var("FLUXION_TEST_JWT_SECRET", "s3cret") };
        let c = Config::parse(
            "listen = \"0.0.0.0:9000\"\nrateLimit = { perSecond = 5, burst = 10 }\n\
             [jwt]\nhs256Secret = \"${FLUXION_TEST_JWT_SECRET}\"\n\
             [tables.orders]\npath = \"o.jsonl\"\n",
            "f.toml",
        )
        .unwrap();
        assert_eq!(c.jwt.unwrap().hs256_secret.as_deref(), Some("s3cret"));
        assert_eq!(c.rate_limit.burst, 10);
        assert_eq!(c.tables["orders"].path, "o.jsonl");
        let e = Config::parse("listen = 1\n", "f.toml").unwrap_err();
        assert!(e.to_string().contains("f.toml:1"), "{e}");
        let e = Config::parse("\n\nbodyLimt = 1\n", "f.toml").unwrap_err();
        assert!(
            e.to_string().contains("f.toml:3") && e.to_string().contains("bodyLimt"),
            "{e}"
        );
        assert!(Config::parse("[jwt]\n", "f.toml").is_err());
    }
}

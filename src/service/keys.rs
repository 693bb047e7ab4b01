//! API keys of the service and the roles they carry. A key is shown once, when it is made;
//! the service keeps only its SHA-256 (in `keys.json` of the data directory), so a copy of
//! the data directory gives no one access. Keys are 32 random bytes, hex-encoded, with the
//! prefix `flx_` so they are easy to spot in a secret scanner.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::RateLimit;
use crate::{Error, Result};

/// What a key may do; each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read pipelines, statuses, events.
    Viewer,
    /// Also start and stop pipelines.
    Operator,
    /// Also submit, update and delete pipelines, and make keys.
    Admin,
}

impl Role {
    /// Parses `viewer`, `operator` or `admin`.
    pub fn parse(s: &str) -> Result<Role> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(Error::config(
                "role",
                format!("unknown role \"{other}\" (expected viewer, operator or admin)"),
            )),
        }
    }

    /// The role's name, as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// True when this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

/// A stored key: its id (shown in the event log as the actor), role and hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredKey {
    pub id: String,
    pub role: Role,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    /// The key's own rate limit (the service's default when absent).
    #[serde(default, rename = "rateLimit", skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateLimit>,
}

/// The service's keys, kept in a file.
#[derive(Debug)]
pub struct Keys {
    path: PathBuf,
    by_hash: BTreeMap<String, StoredKey>,
}

fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl Keys {
    /// Opens (or starts) `keys.json` in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Keys> {
        let path = dir.as_ref().join("keys.json");
        let by_hash = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let keys: Vec<StoredKey> = serde_json::from_str(&text).map_err(|e| {
                    Error::input(path.display().to_string(), format!("not a key list: {e}"))
                })?;
                keys.into_iter().map(|k| (k.sha256.clone(), k)).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(Error::external(format!("reading {}", path.display()), e)),
        };
        Ok(Keys { path, by_hash })
    }

    /// True when no key exists yet (the service then takes a bootstrap key).
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Makes a key for `role`: the key itself (shown once) and its stored form.
    pub fn create(&mut self, role: Role, rate: Option<RateLimit>) -> Result<(String, StoredKey)> {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let key = format!("flx_{}", hex::encode(bytes));
        let stored = self.add_with(&key, role, rate)?;
        Ok((key, stored))
    }

    /// Stores `key` (one given from outside, such as the bootstrap admin key) for `role`.
    pub fn add(&mut self, key: &str, role: Role) -> Result<StoredKey> {
        self.add_with(key, role, None)
    }

    fn add_with(&mut self, key: &str, role: Role, rate: Option<RateLimit>) -> Result<StoredKey> {
        if key.len() < 16 {
            return Err(Error::config(
                "API key",
                "a key must have at least 16 characters",
            ));
        }
        let sha256 = digest(key);
        let stored = StoredKey {
            id: format!("key-{}", &sha256[..12]),
            role,
            sha256: sha256.clone(),
            rate,
        };
        self.by_hash.insert(sha256, stored.clone());
        self.save()?;
        Ok(stored)
    }

    /// The stored key `key` is, if any.
    pub fn check(&self, key: &str) -> Option<&StoredKey> {
        self.by_hash.get(&digest(key))
    }

    /// Writes the list through a temporary file, so a crash leaves the old one or the new.
    fn save(&self) -> Result<()> {
        let keys: Vec<&StoredKey> = self.by_hash.values().collect();
        let text = serde_json::to_vec_pretty(&keys)
            .map_err(|e| Error::internal(format!("keys that are not JSON: {e}")))?;
        let tmp = self.path.with_extension("json.tmp");
        let io = |e: std::io::Error| Error::external(format!("writing {}", self.path.display()), e);
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_kept_hashed_and_carry_their_role() {
        let dir = tempfile::tempdir().unwrap();
        let mut keys = Keys::open(dir.path()).unwrap();
        assert!(keys.is_empty());
        let (key, stored) = keys.create(Role::Operator, None).unwrap();
        assert!(key.starts_with("flx_") && key.len() == 68, "{key}");
        assert_eq!(keys.check(&key), Some(&stored));
        assert_eq!(keys.check("flx_not-a-key-at-all"), None);
        let admin = keys.add("bootstrap-admin-key-123", Role::Admin).unwrap();
        // Reopened, the same keys work; the file holds no key itself.
        let reopened = Keys::open(dir.path()).unwrap();
        assert_eq!(reopened.check(&key).unwrap().role, Role::Operator);
        assert_eq!(reopened.check("bootstrap-admin-key-123"), Some(&admin));
        let text = std::fs::read_to_string(dir.path().join("keys.json")).unwrap();
        assert!(!text.contains(&key) && !text.contains("bootstrap-admin-key-123"));
        assert!(keys.add("short", Role::Viewer).is_err());
    }

    #[test]
    fn roles_include_the_ones_below() {
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Operator));
        assert!(!Role::Operator.allows(Role::Admin));
        assert_eq!(Role::parse("operator").unwrap(), Role::Operator);
        assert!(Role::parse("root").is_err());
    }
}

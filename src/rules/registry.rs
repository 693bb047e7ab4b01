//! A directory of rule sets, looked up by `id@version` (`orders@1.2.0`), by a semver range
//! (`orders@^1.2`: the highest version it allows) or by id alone (the highest version).
//!
//! Rule sets are read once, when the registry opens, and never change afterwards: two files
//! claiming the same `id@version` with different rules are refused, so a decision's
//! `ruleSet` always names exactly the rules that made it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::dsl::rule_set::RuleSet;
use crate::{Error, Result};

/// One published rule set: parsed, as written, and the file it came from.
type Published = (Arc<RuleSet>, Value, PathBuf);

/// The rule sets of one directory.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// By id, then version.
    sets: BTreeMap<String, BTreeMap<semver::Version, Published>>,
}

impl Registry {
    /// Reads every `*.json` file of `dir` (not below it) as a rule set.
    pub fn open(dir: impl AsRef<Path>) -> Result<Registry> {
        let dir = dir.as_ref();
        let context = format!("rule registry {}", dir.display());
        let entries = std::fs::read_dir(dir).map_err(|e| Error::external(context.clone(), e))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
            .collect();
        files.sort();
        let mut reg = Registry::default();
        for f in files {
            let text = std::fs::read_to_string(&f)
                .map_err(|e| Error::external(format!("reading {}", f.display()), e))?;
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                Error::config(f.display().to_string(), format!("not valid JSON: {e}"))
            })?;
            let rs = RuleSet::from_value(&v)
                .map_err(|e| Error::config(f.display().to_string(), e.to_string()))?;
            reg.insert(rs, v, f)?;
        }
        Ok(reg)
    }

    fn insert(&mut self, rs: RuleSet, v: Value, file: PathBuf) -> Result<()> {
        let versions = self.sets.entry(rs.id.clone()).or_default();
        if let Some((old, _, old_file)) = versions.get(&rs.version) {
            if **old != rs {
                return Err(Error::config(
                    file.display().to_string(),
                    format!(
                        "{} is also in {} with other rules: a published version never changes; give this one a new version",
                        rs.label(),
                        old_file.display()
                    ),
                ));
            }
            return Ok(());
        }
        versions.insert(rs.version.clone(), (Arc::new(rs), v, file));
        Ok(())
    }

    /// The rule set `reference` names (`id`, `id@1.2.0`, `id@^1.2`), and its JSON.
    pub fn get(&self, reference: &str) -> Result<(Arc<RuleSet>, &Value)> {
        let (id, req) = match reference.split_once('@') {
            Some((id, v)) => (id, Some(v)),
            None => (reference, None),
        };
        let not_found = |why: String| Error::config(format!("rule set {reference}"), why);
        let versions = self.sets.get(id).ok_or_else(|| {
            not_found(format!(
                "no rule set \"{id}\" in the registry (it has: {})",
                self.sets.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let found = match req {
            None => versions.iter().next_back(),
            Some(v) => {
                // An exact version is written `1.2.0`; anything else is a range.
                let req = match semver::Version::parse(v) {
                    Ok(exact) => semver::VersionReq::parse(&format!("={exact}")),
                    Err(_) => semver::VersionReq::parse(v),
                }
                .map_err(|e| not_found(format!("\"{v}\" is neither a version nor a range: {e}")))?;
                versions.iter().rev().find(|(ver, _)| req.matches(ver))
            }
        };
        let (_, (rs, v, _)) = found.ok_or_else(|| {
            not_found(format!(
                "no version matches (the registry has {})",
                versions
                    .keys()
                    .map(|v| format!("{id}@{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        Ok((rs.clone(), v))
    }

    /// Replaces each `$rules` stage's `ruleSet` reference in `pipeline` (as written) by the
    /// rule set it names. Paths of files are left for the stage to read.
    pub fn resolve_pipeline(&self, pipeline: &mut Value) -> Result<()> {
        match pipeline {
            Value::Array(items) => items.iter_mut().try_for_each(|v| self.resolve_pipeline(v)),
            Value::Object(map) => {
                if let Some(Value::Object(stage)) = map.get_mut("$rules")
                    && let Some(Value::String(r)) = stage.get("ruleSet")
                    && !Path::new(r).is_file()
                {
                    let (_, v) = self.get(r)?;
                    stage.insert("ruleSet".into(), v.clone());
                    return Ok(());
                }
                map.values_mut().try_for_each(|v| self.resolve_pipeline(v))
            }
            _ => Ok(()),
        }
    }

    /// Every rule set, as `id@version`.
    pub fn labels(&self) -> Vec<String> {
        self.sets
            .values()
            .flat_map(|vs| vs.values().map(|(rs, _, _)| rs.label()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(dir: &Path, name: &str, v: Value) {
        std::fs::write(dir.join(name), v.to_string()).unwrap();
    }

    fn set(version: &str, value: i64) -> Value {
        json!({"id": "orders", "version": version, "rules": [
            {"id": "r", "when": [{"$match": {"a": value}}]}
        ]})
    }

    #[test]
    fn versions_and_ranges() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.json", set("1.2.0", 1));
        write(dir.path(), "b.json", set("1.3.1", 2));
        write(dir.path(), "c.json", set("2.0.0", 3));
        let reg = Registry::open(dir.path()).unwrap();
        let v = |r: &str| reg.get(r).map(|(rs, _)| rs.version.to_string());
        assert_eq!(v("orders@1.2.0").unwrap(), "1.2.0");
        assert_eq!(v("orders@^1.2").unwrap(), "1.3.1");
        assert_eq!(v("orders@~1.2").unwrap(), "1.2.0");
        assert_eq!(v("orders").unwrap(), "2.0.0");
        assert!(v("orders@^3").unwrap_err().to_string().contains(
            "no version matches (the registry has orders@1.2.0, orders@1.3.1, orders@2.0.0)"
        ));
        assert!(v("billing").is_err());

        let mut p = json!([{"$rules": {"ruleSet": "orders@^1"}}]);
        reg.resolve_pipeline(&mut p).unwrap();
        assert_eq!(p[0]["$rules"]["ruleSet"]["version"], "1.3.1");
    }

    #[test]
    fn a_published_version_never_changes() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.json", set("1.0.0", 1));
        write(dir.path(), "b.json", set("1.0.0", 2));
        let e = Registry::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("orders@1.0.0 is also in"), "{e}");
        // The same rules twice are fine.
        write(dir.path(), "b.json", set("1.0.0", 1));
        assert_eq!(
            Registry::open(dir.path()).unwrap().labels(),
            vec!["orders@1.0.0"]
        );
    }
}

//! `fluxion rules lint` and `fluxion rules eval`: a rule set's lints, and its decisions for
//! the documents of a file, one JSON line per document in input order.

use std::io::Write;

use serde_json::Value;

use super::{RulesArgs, RulesCommand};
use crate::rules::{Options, Registry, RuleEngine, Severity, lint};
use crate::{Engine, Error, Result};

pub(super) async fn rules(args: RulesArgs) -> Result<()> {
    match args.command {
        RulesCommand::Lint { rule_set, registry } => {
            let (name, written) = load(&rule_set, registry.as_deref())?;
            let (_, lints) = lint::lint(&written, &[]);
            let mut out = std::io::stdout().lock();
            for l in &lints {
                let _ = writeln!(out, "{l}");
            }
            let errors = lints
                .iter()
                .filter(|l| l.severity == Severity::Error)
                .count();
            let warnings = lints.len() - errors;
            if errors > 0 {
                return Err(Error::config(
                    name,
                    format!("{errors} error(s), {warnings} warning(s)"),
                ));
            }
            let _ = writeln!(out, "{name}: ok ({warnings} warning(s))");
            Ok(())
        }
        RulesCommand::Eval {
            rule_set,
            registry,
            input,
            execute,
            trace,
        } => {
            let (name, written) = load(&rule_set, registry.as_deref())?;
            let (parsed, lints) = lint::lint(&written, &[]);
            for l in &lints {
                eprintln!("{l}");
            }
            let Some(parsed) = parsed.filter(|_| !lint::has_errors(&lints)) else {
                return Err(Error::config(
                    name,
                    "the rule set has errors (see above); nothing was evaluated",
                ));
            };
            let engine = Engine::new();
            engine.register_file("input", &input, None).await?;
            let rules = RuleEngine::new(parsed);
            let options = Options { execute, trace };
            let decisions = if execute {
                rules.execute(&engine, "input", trace).await?
            } else {
                rules.evaluate(&engine, "input", &options).await?
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for d in decisions {
                if writeln!(out, "{}", d.to_json()).is_err() {
                    // A closed pipe: the reader has what it wanted.
                    return Ok(());
                }
            }
            let _ = out.flush();
            Ok(())
        }
    }
}

/// The rule set `reference` names: a file, or `id@version` in `registry`; its name and JSON.
fn load(reference: &str, registry: Option<&str>) -> Result<(String, Value)> {
    if let Some(dir) = registry
        && !std::path::Path::new(reference).is_file()
    {
        let reg = Registry::open(dir)?;
        let (rs, v) = reg.get(reference)?;
        return Ok((rs.label(), v.clone()));
    }
    let text = std::fs::read_to_string(reference)
        .map_err(|e| Error::config(reference, format!("cannot read the rule set: {e}")))?;
    let v = serde_json::from_str(&text)
        .map_err(|e| Error::config(reference, format!("not valid JSON: {e}")))?;
    Ok((reference.to_string(), v))
}

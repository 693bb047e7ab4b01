//! `fluxion validate`: parse a pipeline or job file and report the first error.

use std::io::Write;
use std::path::Path;

use serde_json::Value;

use crate::dsl::Pipeline;
use crate::job::Job;
use crate::{Error, Result};

pub(super) fn validate(file: &Path) -> Result<()> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| Error::config(&name, e.to_string()))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::config(&name, format!("not valid JSON: {e}")))?;
    let stages = if Job::is_job(&v) {
        let job = Job::from_json_str(&text, &name)?;
        job.source_location()?;
        match job.query()? {
            crate::job::Query::Pipeline(p) => p.stages.len(),
            crate::job::Query::Sql(_) => 0,
        }
    } else {
        Pipeline::from_value(&v)?.stages.len()
    };
    // Ignore a closed pipe: the exit status is the answer.
    let _ = writeln!(std::io::stdout(), "{name}: ok ({stages} stages)");
    Ok(())
}

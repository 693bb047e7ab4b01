//! `fluxion replay JOB.json [--verify]`: the streaming job's pipeline run again in batch over
//! the input its last checkpoint covers (`runtime::replay`), printed as JSON lines, or
//! compared with the output the stream committed: one summary line, the differing rows, and
//! exit 1 when they differ. Long replays show a progress bar on a terminal.

use std::io::Write;

use serde_json::Value;

use crate::connect::config::SinkConfig;
use crate::connect::config::open_source;
use crate::connect::parquet_sink::ParquetDirSink;
use crate::document::encode::{to_documents, write_batch};
use crate::engine::Engine;
use crate::job::{Job, Query};
use crate::runtime::policy::error_policy::ErrorPolicy;
use crate::runtime::query::StreamQuery;
use crate::runtime::replay::{compare, replay as run_replay};
use crate::runtime::state::checkpoint::open_store;
use crate::{Error, Result};

use super::ReplayArgs;

pub(super) async fn replay(args: ReplayArgs) -> Result<()> {
    let job = Job::load(&args.job)?;
    let name = job
        .name
        .clone()
        .unwrap_or_else(|| args.job.display().to_string());
    let query = match job.query()? {
        Query::Pipeline(p) => StreamQuery::Pipeline(p),
        Query::Sql(sql) => StreamQuery::Sql {
            sql,
            table: job.table().to_string(),
        },
    };
    let Some(cp_config) = &job.checkpoint else {
        return Err(Error::config(
            &name,
            "replay needs the job's checkpoint store (\"checkpoint\": {\"store\": …})",
        ));
    };
    let Some(checkpoint) = open_store(&cp_config.store)?.load().await? else {
        return Err(Error::config(
            &name,
            format!(
                "no checkpoint in {} yet: run the stream first",
                cp_config.store
            ),
        ));
    };
    let mut source = open_source(&job.source, checkpoint.schema.clone(), &name)?;
    let policy = match &job.error_policy {
        Some(p) => ErrorPolicy::from_json(p, "errorPolicy")?,
        None => ErrorPolicy::default(),
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("replay {bar:40} {bytes}/{total_bytes} {eta}")
            .expect("a valid template"),
    );
    let engine = Engine::new();
    let replayed = run_replay(
        &engine,
        &query,
        source.as_mut(),
        &checkpoint,
        &policy,
        job.source.time_field(),
        &|done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    )
    .await?;
    bar.finish_and_clear();
    let answer = to_documents(&replayed.output)?;
    if !args.verify {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for b in &replayed.output {
            let mut buf = Vec::new();
            write_batch(&mut buf, b)?;
            out.write_all(&buf)
                .map_err(|e| Error::external("writing to stdout", e))?;
        }
        return out
            .flush()
            .map_err(|e| Error::external("writing to stdout", e));
    }
    // With routes, each sink holds the documents routed to it: the batch answer is split
    // the same way and each part compared with its sink.
    let state = checkpoint.sink.get("out").unwrap_or(&checkpoint.sink);
    let mut parts: Vec<(String, &SinkConfig, &Value)> = Vec::new();
    if job.routes.is_empty() {
        parts.push(("sink".to_string(), &job.sink, state));
    } else {
        parts.push(("sink".to_string(), &job.sink, &state["main"]));
        for (route, c) in &job.routes {
            parts.push((
                format!("routes.{route}"),
                c,
                &state["routes"][route.as_str()],
            ));
        }
    }
    let field: Vec<&str> = job
        .route_field
        .as_deref()
        .unwrap_or(crate::connect::routed::DEFAULT_FIELD)
        .split('.')
        .collect();
    let routes_of = |d: &Value| -> Vec<String> {
        let mut v = d;
        for f in &field {
            v = &v[*f];
        }
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut committed = Vec::new();
    let mut expected = Vec::new();
    for (what, config, state) in &parts {
        let SinkConfig::File { path, format } = config else {
            return Err(Error::config(
                &name,
                format!(
                    "--verify compares with file sinks' committed output ({what} is not a file)"
                ),
            ));
        };
        let mut docs = if *format == Some(crate::connect::Format::Parquet) {
            committed_parquet(path, state)?
        } else {
            committed_jsonl(path, state)?
        };
        committed.append(&mut docs);
        if job.routes.is_empty() {
            expected = answer.clone();
        } else {
            expected.extend(
                answer
                    .iter()
                    .filter(|d| {
                        let names = routes_of(d);
                        match what.strip_prefix("routes.") {
                            Some(route) => names.iter().any(|n| n == route),
                            None => !names.iter().any(|n| job.routes.contains_key(n)),
                        }
                    })
                    .cloned(),
            );
        }
    }
    let answer = expected;
    let upserts = matches!(&query, StreamQuery::Pipeline(p)
        if crate::runtime::state::group::split_at_group(p).is_some());
    let differences = compare(&committed, &answer, upserts);
    let what = if upserts { "groups" } else { "documents" };
    let mut out = std::io::stdout().lock();
    let mut say = |line: String| {
        let _ = writeln!(out, "{line}");
    };
    say(format!(
        "replayed {} documents up to {} ({} micro-batches committed; {} unreadable and {} failing left out): the stream committed {} {what}, the batch run gives {}",
        replayed.documents,
        checkpoint.source,
        checkpoint.batches,
        replayed.unreadable,
        replayed.failed,
        if upserts {
            let ids: std::collections::BTreeSet<String> =
                committed.iter().map(|d| d["_id"].to_string()).collect();
            ids.len()
        } else {
            committed.len()
        },
        answer.len()
    ));
    if differences.is_empty() {
        say("match".to_string());
        return Ok(());
    }
    for d in &differences {
        let show = |v: &Option<Value>| v.as_ref().map_or("(none)".to_string(), Value::to_string);
        say(format!(
            "{}: committed {} | batch {}",
            d.key,
            show(&d.committed),
            show(&d.replayed)
        ));
    }
    Err(Error::config(
        &name,
        format!(
            "replay: the stream's output differs from the batch run in {} {what}",
            differences.len()
        ),
    ))
}

/// The documents of a JSON-lines sink up to its checkpointed length.
fn committed_jsonl(path: &str, state: &Value) -> Result<Vec<Value>> {
    let bytes = state.get("bytes").and_then(Value::as_u64).unwrap_or(0) as usize;
    let text = std::fs::read(path).map_err(|e| Error::external(format!("reading {path}"), e))?;
    if text.len() < bytes {
        return Err(Error::input(
            path,
            format!(
                "shorter ({} bytes) than its checkpoint says was committed ({bytes})",
                text.len()
            ),
        ));
    }
    let mut committed = Vec::new();
    for (i, line) in text[..bytes].split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        committed.push(serde_json::from_slice::<Value>(line).map_err(|e| {
            Error::input(format!("{path}:{}", i + 1), format!("not valid JSON: {e}"))
        })?);
    }
    Ok(committed)
}

/// The documents of a Parquet-directory sink's committed parts, in order.
fn committed_parquet(dir: &str, state: &Value) -> Result<Vec<Value>> {
    let parts = ParquetDirSink::parts_of(state);
    let mut committed = Vec::new();
    for part in ParquetDirSink::committed_parts(std::path::Path::new(dir), parts)? {
        let file = std::fs::File::open(&part)
            .map_err(|e| Error::external(format!("reading {}", part.display()), e))?;
        let reader =
            datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                file,
            )?
            .build()?;
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
        committed.extend(to_documents(&batches)?);
    }
    Ok(committed)
}

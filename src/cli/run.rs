//! `fluxion run`: a job file, or `--pipeline` / `--sql` over `--input` files.

use crate::connect::config::{SinkConfig, SourceConfig};
use crate::connect::{file, stdout};
use crate::dsl::Pipeline;
use crate::engine::Engine;
use crate::job::{Job, Query};
use crate::{Error, Result};

use super::{InputArgs, RunArgs, split_input};

pub(super) async fn run(args: RunArgs) -> Result<()> {
    let engine = Engine::new();
    let (query, table, sink) = if let Some(path) = &args.job {
        if !args.inputs.inputs.is_empty() || args.output.is_some() {
            return Err(Error::config(
                "run",
                "a job file brings its own source and sink; drop --input/--output",
            ));
        }
        let job = Job::load(path)?;
        if args.reset_checkpoint {
            let Some(cp) = &job.checkpoint else {
                return Err(Error::config(
                    "run",
                    "--reset-checkpoint: the job has no checkpoint store",
                ));
            };
            crate::runtime::state::checkpoint::open_store(&cp.store)?
                .clear()
                .await?;
        }
        if job.is_streaming() {
            return super::stream::run_job(job, args.metrics_addr.as_deref()).await;
        }
        match job.source.memory_jsonl() {
            Some(text) => engine.register_jsonl(job.table(), &text)?,
            None if matches!(job.source, SourceConfig::Nexmark { .. }) => {
                let SourceConfig::Nexmark { events, .. } = &job.source else {
                    unreachable!()
                };
                if events.is_none() {
                    return Err(Error::config(
                        "run",
                        "a batch job reads a bounded Nexmark source: give \"events\"",
                    ));
                }
                let mut source = crate::connect::config::open_source(
                    &job.source,
                    None,
                    &path.display().to_string(),
                )?;
                let mut batches = Vec::new();
                while let Some(b) = source.next_batch(1 << 16).await? {
                    batches.push(b.batch);
                }
                crate::plan::order::register_ordered(
                    engine.context(),
                    job.table(),
                    source.schema(),
                    vec![batches],
                )?;
            }
            None => {
                let (location, options) = job.source_location()?;
                engine
                    .register_file_with(job.table(), &location, &options)
                    .await?;
            }
        }
        let sink = match &job.sink {
            SinkConfig::Stdout => None,
            SinkConfig::Null => Some((String::new(), None)),
            SinkConfig::File { path, format } => Some((path.clone(), *format)),
            SinkConfig::Kafka(_) | SinkConfig::Http(_) | SinkConfig::Postgres(_) => {
                return Err(Error::internal(
                    "a job writing Kafka, HTTP or PostgreSQL is a streaming job",
                ));
            }
        };
        (job.query()?, job.table().to_string(), sink)
    } else {
        let query = match (&args.pipeline, &args.sql) {
            (Some(p), None) => Query::Pipeline(read_pipeline(p)?),
            (None, Some(sql)) => Query::Sql(sql.clone()),
            _ => {
                return Err(Error::config(
                    "run",
                    "give a job file, or --pipeline P.json or --sql \"…\" with --input",
                ));
            }
        };
        let first = register_inputs(&engine, &args.inputs).await?;
        let sink = args.output.clone().map(|o| (o, args.output_format));
        (query, first, sink)
    };
    if args.metrics_addr.is_some() {
        return Err(Error::config(
            "run",
            "--metrics-addr is for streaming jobs (a job file with follow, checkpoint or runtime)",
        ));
    }
    let df = match &query {
        Query::Pipeline(p) => engine.pipeline(&table, p).await?,
        Query::Sql(sql) => engine.sql(sql).await?,
    };
    let rows = match sink {
        None => stdout::write_stdout(df).await?,
        // The null sink: run, count, keep nothing.
        Some((path, None)) if path.is_empty() => {
            use futures::TryStreamExt;
            let mut stream = df.execute_stream().await?;
            let mut rows = 0u64;
            while let Some(b) = stream.try_next().await? {
                rows += b.num_rows() as u64;
            }
            rows
        }
        Some((path, format)) => file::write_file(engine.context(), df, &path, format).await?,
    };
    tracing::info!(rows, "run finished");
    Ok(())
}

/// Reads a pipeline file (an array of stages or `{"pipeline": [...]}`).
pub(super) fn read_pipeline(path: &std::path::Path) -> Result<Pipeline> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(path.display().to_string(), e.to_string()))?;
    Pipeline::from_json_str(&text)
}

/// Registers every `--input`; returns the name of the first.
pub(super) async fn register_inputs(engine: &Engine, inputs: &InputArgs) -> Result<String> {
    if inputs.inputs.is_empty() {
        return Err(Error::config("run", "at least one --input is required"));
    }
    let format = inputs.input_format;
    let mut first = None;
    for spec in &inputs.inputs {
        let (name, path) = split_input(spec);
        engine.register_file(name, path, format).await?;
        first.get_or_insert_with(|| name.to_string());
    }
    Ok(first.expect("non-empty"))
}

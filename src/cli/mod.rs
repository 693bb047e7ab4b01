//! The `fluxion` command line: `run`, `validate`, `explain`, `replay`, `rules`, `serve`, and
//! `pipelines` / `events` against a running service. Keep the flags stable: external checks
//! call exactly these.

mod explain;
mod remote;
mod replay;
mod rules;
mod run;
mod stream;
mod validate;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::Result;
use crate::connect::Format;

/// Fluxion: MongoDB-style JSON pipelines and SQL over files, compiled to DataFusion plans.
#[derive(Debug, Parser)]
#[command(name = "fluxion", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// The service `pipelines` and `events` talk to.
    #[arg(
        long,
        global = true,
        env = "FLUXION_SERVER",
        value_name = "URL",
        default_value = "http://127.0.0.1:8700"
    )]
    pub server: String,
    /// The API key or JWT for the service.
    #[arg(
        long,
        global = true,
        env = "FLUXION_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a job file, or a pipeline / SQL query over --input files. Results go to stdout as
    /// JSON lines unless --output (or the job's sink) says otherwise.
    Run(RunArgs),
    /// Check a pipeline or job file; print its first error with its JSON path.
    Validate {
        /// A pipeline file (array of stages or {"pipeline": [...]}) or a job file.
        file: PathBuf,
    },
    /// Print the logical plan, the physical plan and the equivalent SQL of a pipeline.
    Explain(ExplainArgs),
    /// Re-run a streaming job's pipeline in batch over the input its last checkpoint covers:
    /// print the batch answer, or (--verify) compare it with what the stream committed and
    /// exit 1 when they differ.
    Replay(ReplayArgs),
    /// Rule sets: lint one, or print its decisions for the documents of a file.
    Rules(RulesArgs),
    /// Run the service: a REST API for many pipelines, its state in --data-dir.
    Serve {
        /// Where to listen (127.0.0.1:8700 unless told otherwise, or the settings say).
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
        /// The service's state: its event log, keys and the pipelines' checkpoints.
        #[arg(long = "data-dir", value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// A settings file (TOML): event store, TLS, JWT, rate limits, tables, rule registry.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Pipelines of a running service (--server, --token).
    Pipelines {
        #[command(subcommand)]
        command: PipelinesCommand,
    },
    /// Print a running service's event log, one JSON line per event.
    Events {
        /// Only the events after this position.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
}

/// The subcommands of `fluxion pipelines`.
#[derive(Debug, Subcommand)]
pub enum PipelinesCommand {
    /// Submit a job file; prints {"id", "version"}.
    Submit { job: PathBuf },
    /// One JSON line per pipeline.
    List,
    /// One pipeline with its job.
    Get { id: String },
    /// Start a pipeline.
    Start { id: String },
    /// Stop a pipeline (it finishes its batch and checkpoints).
    Stop { id: String },
    /// Stop and start a pipeline.
    Restart { id: String },
    /// Replace a pipeline's job (a running one stops, takes it and resumes).
    Update {
        id: String,
        job: PathBuf,
        /// Start the new version from an empty checkpoint.
        #[arg(long = "reset-checkpoint")]
        reset_checkpoint: bool,
    },
    /// Delete a pipeline.
    Delete { id: String },
}

/// Arguments of `fluxion rules`.
#[derive(Debug, clap::Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    pub command: RulesCommand,
}

/// The subcommands of `fluxion rules`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Print the rule set's lints, one per line; exit 1 when one is an error.
    Lint {
        /// A rule set file, or `id@version` / `id@^1.2` with --registry.
        rule_set: String,
        /// A directory of rule sets to look `id@version` up in.
        #[arg(long, value_name = "DIR")]
        registry: Option<String>,
    },
    /// Print one JSON line per input document, in input order: the rules that fired, their
    /// actions and the rule set's id@version.
    Eval {
        /// A rule set file, or `id@version` / `id@^1.2` with --registry.
        rule_set: String,
        /// A directory of rule sets to look `id@version` up in.
        #[arg(long, value_name = "DIR")]
        registry: Option<String>,
        /// The documents (JSON lines, CSV or Parquet).
        #[arg(long, value_name = "PATH")]
        input: String,
        /// Also run the actions: each line carries the changed document.
        #[arg(long)]
        execute: bool,
        /// Add every rule's condition values.
        #[arg(long)]
        trace: bool,
    },
}

/// Arguments of `fluxion replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The streaming job file (its checkpoint store says what was committed).
    pub job: PathBuf,
    /// Compare with the stream's committed output instead of printing the batch answer.
    #[arg(long)]
    pub verify: bool,
}

/// Inputs given on the command line.
#[derive(Debug, clap::Args)]
pub struct InputArgs {
    /// An input file or URL, optionally named: `--input orders=data/orders.jsonl`. Unnamed
    /// inputs are the table `input`. Repeatable.
    #[arg(long = "input", value_name = "[NAME=]PATH")]
    pub inputs: Vec<String>,
    /// Input format when the extension does not tell (jsonl, csv, parquet).
    #[arg(long = "input-format", value_name = "FORMAT", value_parser = Format::parse_flag)]
    pub input_format: Option<Format>,
}

/// Arguments of `fluxion run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A job file (source, pipeline or sql, sink).
    pub job: Option<PathBuf>,
    /// A pipeline file; it reads the first --input.
    #[arg(long, conflicts_with_all = ["job", "sql"])]
    pub pipeline: Option<PathBuf>,
    /// A SQL query over the --input tables.
    #[arg(long, conflicts_with = "job")]
    pub sql: Option<String>,
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Write results to this file or URL instead of stdout (format from the extension).
    #[arg(long, value_name = "PATH")]
    pub output: Option<String>,
    /// Output format when the extension does not tell (jsonl, csv, parquet).
    #[arg(long = "output-format", value_name = "FORMAT", value_parser = Format::parse_flag)]
    pub output_format: Option<Format>,
    /// Serve a streaming job's metrics in Prometheus' text format at http://HOST:PORT/metrics.
    #[arg(long = "metrics-addr", value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Remove the streaming job's checkpoints first: the stream starts over from the
    /// beginning of its source and its file sink starts empty.
    #[arg(long = "reset-checkpoint")]
    pub reset_checkpoint: bool,
}

/// Arguments of `fluxion explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// A pipeline file or a job file.
    pub file: PathBuf,
    #[command(flatten)]
    pub inputs: InputArgs,
}

impl Cli {
    /// The threads a job asks to run on (`runtime.workerThreads` of the job file given to
    /// `run`), so the process's runtime can be built with them before anything runs. A job
    /// that cannot be read is reported when it runs.
    pub fn worker_threads(&self) -> Option<usize> {
        let Command::Run(RunArgs {
            job: Some(path), ..
        }) = &self.command
        else {
            return None;
        };
        let job = crate::job::Job::load(path).ok()?;
        job.runtime?.worker_threads.map(|n| n.max(1))
    }
}

/// Runs the parsed command line.
pub async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Validate { file } => validate::validate(&file),
        Command::Explain(args) => explain::explain(args).await,
        Command::Replay(args) => replay::replay(args).await,
        Command::Rules(args) => rules::rules(args).await,
        Command::Serve {
            listen,
            data_dir,
            config,
        } => {
            crate::service::server::serve(crate::service::server::ServeArgs {
                listen,
                data_dir,
                config,
            })
            .await
        }
        Command::Pipelines { command } => {
            remote::pipelines(&remote::Client::new(&cli.server, cli.token)?, command).await
        }
        Command::Events { after } => {
            remote::events(&remote::Client::new(&cli.server, cli.token)?, after).await
        }
    }
}

/// Splits `NAME=PATH`; a bare path is named `input`.
pub(crate) fn split_input(s: &str) -> (&str, &str) {
    if let Some((name, path)) = s.split_once('=') {
        let is_ident = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if is_ident {
            return (name, path);
        }
    }
    ("input", s)
}

#[cfg(test)]
mod tests {
    use super::split_input;

    #[test]
    fn input_names() {
        assert_eq!(split_input("orders=a/b.jsonl"), ("orders", "a/b.jsonl"));
        assert_eq!(split_input("a/b.jsonl"), ("input", "a/b.jsonl"));
        assert_eq!(split_input("s3://b/k=v.csv"), ("input", "s3://b/k=v.csv"));
    }
}

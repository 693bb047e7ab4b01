//! The crate's one error type and its `Result` alias.
//!
//! Every variant says who has to act: the user (a malformed pipeline, a bad job file, an input
//! that cannot be read as declared), an external system (object store, file system), or us (an
//! engine bug surfaced by DataFusion). The CLI prints `Display` as a single line, so messages
//! never contain a backtrace and always name *where* the problem is.

use std::fmt;

/// Result alias used throughout Fluxion.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in Fluxion.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A pipeline that does not follow the DSL's grammar or cannot be compiled.
    /// `path` is the JSON path of the offending value, e.g. `pipeline[1].$group.total`.
    #[error("{path}: {message}")]
    Pipeline { path: String, message: String },

    /// A job file or command-line option that is malformed or inconsistent.
    #[error("{context}: {message}")]
    Config { context: String, message: String },

    /// Input data that cannot be read as declared (bad JSON line, unreadable file…).
    /// `position` names the source and where in it, e.g. `orders.jsonl:12`.
    #[error("{position}: {message}")]
    Input { position: String, message: String },

    /// One document the pipeline could not process (an enrich call with `onError:
    /// "deadLetter"` that failed for it): a streaming job with a dead-letter sink sends that
    /// document there and goes on.
    #[error("{context}: {message}")]
    Document { context: String, message: String },

    /// A change made against a stale version of what it changes (the service's optimistic
    /// concurrency): read the current version and try again.
    #[error("{context}: {message}")]
    Conflict { context: String, message: String },

    /// Something named that does not exist (a pipeline of the service, say).
    #[error("{0}")]
    NotFound(String),

    /// A failure of an external system: the file system or an object store.
    #[error("{context}: {source}")]
    External {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// An error raised by DataFusion while planning or executing a compiled plan.
    #[error("{0}")]
    DataFusion(Box<datafusion::error::DataFusionError>),

    /// A bug in Fluxion itself (a broken invariant), reported instead of a panic.
    #[error("internal error (a bug in Fluxion, please report it): {0}")]
    Internal(String),
}

impl Error {
    /// A pipeline error at `path`.
    pub fn pipeline(path: impl fmt::Display, message: impl Into<String>) -> Self {
        Error::Pipeline {
            path: path.to_string(),
            message: message.into(),
        }
    }

    /// A configuration (job file, CLI) error.
    pub fn config(context: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            context: context.into(),
            message: message.into(),
        }
    }

    /// A problem with input data at `position`.
    pub fn input(position: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Input {
            position: position.into(),
            message: message.into(),
        }
    }

    /// A failure of an external system while doing `context`.
    pub fn external(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::External {
            context: context.into(),
            source: Box::new(source),
        }
    }

    /// A failure of one document (see [`Error::Document`]).
    pub fn document(context: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Document {
            context: context.into(),
            message: message.into(),
        }
    }

    /// True for a failure of single documents, also when DataFusion carried it.
    pub fn is_document_failure(&self) -> bool {
        match self {
            Error::Document { .. } => true,
            Error::DataFusion(e) => match e.find_root() {
                datafusion::error::DataFusionError::External(inner) => inner
                    .downcast_ref::<Error>()
                    .is_some_and(Error::is_document_failure),
                _ => false,
            },
            _ => false,
        }
    }

    /// A broken invariant of Fluxion's own.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }

    /// True when trying again may succeed: a failure of an external system (the file system,
    /// an object store, the network), also when DataFusion met it. Errors in the pipeline, the
    /// job or the data — integer overflow included — and bugs fail the same way every time,
    /// so the `retry` policy does not retry them.
    pub fn is_transient(&self) -> bool {
        use datafusion::error::DataFusionError as D;
        match self {
            Error::External { .. } => true,
            Error::DataFusion(e) => match e.find_root() {
                D::IoError(_) | D::ObjectStore(_) => true,
                D::ArrowError(a, _) => {
                    matches!(
                        a.as_ref(),
                        datafusion::arrow::error::ArrowError::IoError(..)
                    )
                }
                D::External(inner) => inner
                    .downcast_ref::<Error>()
                    .is_some_and(Error::is_transient),
                _ => false,
            },
            Error::Pipeline { .. }
            | Error::Config { .. }
            | Error::Input { .. }
            | Error::Document { .. }
            | Error::Conflict { .. }
            | Error::NotFound(_)
            | Error::Internal(_) => false,
        }
    }

    /// True when the user can fix the error by changing the pipeline, job or input.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::Pipeline { .. }
                | Error::Config { .. }
                | Error::Input { .. }
                | Error::Document { .. }
                | Error::Conflict { .. }
                | Error::NotFound(_)
        )
    }
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        // Errors we raised inside DataFusion callbacks travel back wrapped; unwrap them so the
        // user sees our message, not DataFusion's "External error: …" prefix.
        match e {
            datafusion::error::DataFusionError::External(inner) => {
                match inner.downcast::<Error>() {
                    Ok(ours) => *ours,
                    Err(other) => Error::DataFusion(Box::new(
                        datafusion::error::DataFusionError::External(other),
                    )),
                }
            }
            other => Error::DataFusion(Box::new(other)),
        }
    }
}

impl From<datafusion::arrow::error::ArrowError> for Error {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        Error::DataFusion(Box::new(e.into()))
    }
}

impl From<datafusion::parquet::errors::ParquetError> for Error {
    fn from(e: datafusion::parquet::errors::ParquetError) -> Self {
        Error::DataFusion(Box::new(e.into()))
    }
}

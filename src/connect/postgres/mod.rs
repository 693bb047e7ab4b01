//! PostgreSQL: the connection every PostgreSQL part shares — a URL with `${VAR}` secrets
//! expanded only when a pool is made, a pool of async clients (`deadpool-postgres` over
//! `tokio-postgres`), errors that never show the password and say whether retrying can help,
//! quoted identifiers, and the mapping of PostgreSQL's types to Fluxion's declared types.
//!
//! The source ([`source`]) reads a table or query, the sink ([`sink`]) writes a table exactly
//! once, and `$sqlQuery` (`enrich::sql_query`) looks values up.

pub mod sink;
pub mod source;

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::Type;

use crate::connect::http_sink::expand_env;
use crate::{Error, Result};

/// Clients a pool keeps at most, unless the user says otherwise.
pub const DEFAULT_POOL_SIZE: usize = 8;

/// A PostgreSQL server to connect to.
#[derive(Debug, Clone)]
pub struct PgConnection {
    /// The URL as written (`${VAR}` not expanded): safe to keep, never shown with a password.
    url: String,
    /// The URL without its password, for messages.
    shown: String,
}

impl PgConnection {
    /// A connection to `url` (`postgres://user:${PGPASSWORD}@host:port/db`); `what` names
    /// the option in errors (`source.url`).
    pub fn new(url: &str, what: &str, context: &str) -> Result<PgConnection> {
        let shown = redact(url);
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Error::config(
                context,
                format!("{what}: expected a postgres:// URL, not {shown:?}"),
            ));
        }
        Ok(PgConnection {
            url: url.to_string(),
            shown,
        })
    }

    /// The URL as written, `${VAR}` not expanded.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// A pool of up to `size` clients. Connections are made when first needed, so a server
    /// that is down when a job starts fails its first query, not the start.
    pub fn pool(&self, size: usize, context: &str) -> Result<Pool> {
        let url = expand_env(&self.url, "url", context)?;
        let mut config = tokio_postgres::Config::from_str(&url).map_err(|e| {
            Error::config(context, format!("{}: not a valid URL ({e})", self.shown))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("fluxion");
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| Error::config(context, format!("{}: {e}", self.shown)))
    }
}

/// Runs `work` with a client of `connection` on a thread of its own (with a runtime of its
/// own), for the parts that must ask the server while a job is planned or opened, which is
/// not async: the columns of a query, a sample to infer a schema from.
pub fn blocking<T, F, Fut>(connection: &PgConnection, context: &str, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(tokio_postgres::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>>,
{
    let url = expand_env(&connection.url, "url", context)?;
    let shown = connection.shown.clone();
    let context = context.to_string();
    std::thread::spawn(move || -> Result<T> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::external("starting a runtime", e))?;
        runtime.block_on(async {
            let mut config = tokio_postgres::Config::from_str(&url)
                .map_err(|e| Error::config(&context, format!("{shown}: not a valid URL ({e})")))?;
            config.connect_timeout(Duration::from_secs(10));
            let (client, conn) = config.connect(tokio_postgres::NoTls).await.map_err(|e| {
                Error::external(
                    format!("{context}: connecting to {shown}"),
                    std::io::Error::other(describe(&e)),
                )
            })?;
            tokio::spawn(conn);
            work(client).await
        })
    })
    .join()
    .map_err(|_| Error::internal("a thread asking PostgreSQL panicked"))?
}

/// `url` with its password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &authority[..colon],
            &rest[at..]
        ),
        _ => url.to_string(),
    }
}

/// A PostgreSQL failure as Fluxion's error: `External` (worth retrying) when the
/// connection or the server's state is to blame, `Config` when the statement is.
pub fn pg_error(what: &str, e: tokio_postgres::Error) -> Error {
    if is_transient(&e) {
        Error::external(what.to_string(), std::io::Error::other(describe(&e)))
    } else {
        Error::config(what.to_string(), describe(&e))
    }
}

/// A pool's failure to hand out a client (the server is unreachable, say): worth retrying.
pub fn pool_error(what: &str, e: deadpool_postgres::PoolError) -> Error {
    let text = match e {
        deadpool_postgres::PoolError::Backend(e) => describe(&e),
        other => other.to_string(),
    };
    Error::external(what.to_string(), std::io::Error::other(text))
}

/// The server's message (with its detail) or the client's, on one line.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} ({})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(": ");
                s.push_str(d);
            }
            s
        }
        None => {
            let inner = std::error::Error::source(e).map(|s| s.to_string());
            match inner {
                Some(i) => format!("{e}: {i}"),
                None => e.to_string(),
            }
        }
    }
}

/// True when trying again may succeed: a lost or refused connection, a server shutting down
/// or starting, a serialization failure or deadlock, too many connections.
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08")
                || code.starts_with("57P")
                || matches!(code, "40001" | "40P01" | "53300" | "53400")
        }
        // No server answer: the connection is closed, timed out or was never made.
        None => true,
    }
}

/// `name` as a quoted SQL identifier (`orderCount` → `"orderCount"`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A qualified table name (`schema.table`) quoted part by part; a part already quoted by
/// the user is kept.
pub fn quote_table(name: &str) -> String {
    if name.contains('"') {
        return name.to_string();
    }
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// The declared type (`document::declared`) a PostgreSQL column's values read as; `json`
/// and `jsonb` values are documents, which no single declared type covers (`None`).
pub fn declared_type(ty: &Type) -> Option<&'static str> {
    Some(match *ty {
        Type::BOOL => "bool",
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => "long",
        Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => "double",
        Type::TIMESTAMP | Type::TIMESTAMPTZ | Type::DATE => "timestamp",
        Type::JSON | Type::JSONB => return None,
        _ => "string",
    })
}

/// True for the types whose `row_to_json` text is a date Fluxion should read as one.
pub fn is_time(ty: &Type) -> bool {
    matches!(*ty, Type::TIMESTAMP | Type::TIMESTAMPTZ | Type::DATE)
}

/// The column type a sink creates for an Arrow type.
pub fn column_type(ty: &datafusion::arrow::datatypes::DataType) -> &'static str {
    use datafusion::arrow::datatypes::DataType as D;
    match ty {
        D::Boolean => "boolean",
        D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 => "bigint",
        D::UInt64 => "numeric",
        D::Float16 | D::Float32 | D::Float64 => "double precision",
        D::Decimal128(..) | D::Decimal256(..) => "numeric",
        D::Utf8 | D::LargeUtf8 | D::Utf8View => "text",
        D::Timestamp(..) | D::Date32 | D::Date64 => "timestamptz",
        D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_) => "bytea",
        _ => "jsonb",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_never_shown() {
        assert_eq!(
            redact("postgres://u:${PGPASS}@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact("postgres://u:p@ss@h/db?x=1"),
            "postgres://u:***@h/db?x=1"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("orderCount"), "\"orderCount\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_table("public.orders"), "\"public\".\"orders\"");
    }
}

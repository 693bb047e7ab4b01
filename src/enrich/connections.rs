//! Named connections of a job file — `"connections": {"crm": {"type": "http", "baseUrl",
//! "headers"}, "pg": {"type": "postgres", "url"}}` — shared by the enrich operators, sources
//! and sinks that name them. Loading a job writes each connection's settings into the
//! operators that use it (`"connection": "crm"`), before the pipeline is parsed — in SQL,
//! into the options text of `http_call(…)` and `sql_query(…)`; `${VAR}` in them is only
//! expanded when an operator is planned, so the secrets never sit in the pipeline's text.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::{Error, Result};

/// One named connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Connection {
    /// An HTTP service: requests go to `baseUrl` + the operator's `url`, with `headers`.
    #[serde(rename_all = "camelCase")]
    Http {
        base_url: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// `{"perSecond", "burst"}`: one token bucket for every operator using the connection.
        rate_limit: Option<Value>,
    },
    /// A PostgreSQL server: `postgres://user:${PGPASSWORD}@host:port/db`.
    Postgres { url: String },
}

impl Connection {
    /// The URL of a PostgreSQL connection.
    pub fn postgres_url(&self) -> Option<&str> {
        match self {
            Connection::Postgres { url } => Some(url),
            Connection::Http { .. } => None,
        }
    }
}

/// The operators that call out, and the connection kind each takes.
const OPERATORS: [(&str, &str); 2] = [("$httpCall", "http"), ("$sqlQuery", "postgres")];

/// The URL of PostgreSQL connection `name`, for a source or sink (`what`: `sink.connection`).
pub fn postgres_url<'a>(
    connections: &'a BTreeMap<String, Connection>,
    name: &str,
    what: &str,
    context: &str,
) -> Result<&'a str> {
    match connections.get(name) {
        Some(c) => c.postgres_url().ok_or_else(|| {
            Error::config(
                context,
                format!("{what}: connection {name:?} is not of type \"postgres\""),
            )
        }),
        None => Err(Error::config(
            context,
            format!("{what}: unknown connection {name:?} (declare it under \"connections\")"),
        )),
    }
}

/// `sql` with each `http_call('<options>', …)` and `sql_query('<options>', …)` whose options
/// name a connection given that connection's settings. SQL without such calls is returned
/// as it is.
pub fn resolve_sql(
    sql: &str,
    connections: &BTreeMap<String, Connection>,
    context: &str,
) -> Result<String> {
    use datafusion::sql::sqlparser::ast::{
        Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value as SqlValue,
        visit_expressions_mut,
    };
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    use std::ops::ControlFlow;

    if !(sql.contains("http_call") || sql.contains("sql_query")) || !sql.contains("connection") {
        return Ok(sql.to_string());
    }
    let mut statements = Parser::parse_sql(&GenericDialect {}, sql)
        .map_err(|e| Error::config(context, format!("sql: {e}")))?;
    let flow = visit_expressions_mut(&mut statements, |expr| {
        let Expr::Function(f) = expr else {
            return ControlFlow::Continue(());
        };
        let name = f.name.to_string();
        let op = match name.as_str() {
            "http_call" => "$httpCall",
            "sql_query" => "$sqlQuery",
            _ => return ControlFlow::Continue(()),
        };
        let FunctionArguments::List(list) = &mut f.args else {
            return ControlFlow::Continue(());
        };
        let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) =
            list.args.first_mut()
        else {
            return ControlFlow::Continue(());
        };
        let SqlValue::SingleQuotedString(text) = &mut v.value else {
            return ControlFlow::Continue(());
        };
        let Ok(options) = serde_json::from_str::<Value>(text) else {
            // Not JSON: planning the call says so.
            return ControlFlow::Continue(());
        };
        let mut wrapped = serde_json::json!({ op: options });
        if let Err(e) = resolve(&mut wrapped, connections, context) {
            return ControlFlow::Break(e);
        }
        *text = wrapped[op].to_string();
        ControlFlow::Continue(())
    });
    if let ControlFlow::Break(e) = flow {
        return Err(e);
    }
    Ok(statements
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(";\n"))
}

/// Writes each named connection's settings into the operators of `pipeline` that use it:
/// an HTTP connection's `baseUrl`, and its `headers` under the operator's own.
pub fn resolve(
    pipeline: &mut Value,
    connections: &BTreeMap<String, Connection>,
    context: &str,
) -> Result<()> {
    match pipeline {
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|v| resolve(v, connections, context)),
        Value::Object(map) => {
            for (op, kind) in OPERATORS {
                let Some(Value::Object(options)) = map.get_mut(op) else {
                    continue;
                };
                let Some(name) = options.get("connection").and_then(Value::as_str) else {
                    continue;
                };
                let name = name.to_string();
                let Some(c) = connections.get(&name) else {
                    return Err(Error::config(
                        context,
                        format!(
                            "{op}: unknown connection {name:?} (declare it under \"connections\")"
                        ),
                    ));
                };
                match c {
                    Connection::Http {
                        base_url,
                        headers,
                        rate_limit,
                    } if kind == "http" => {
                        options.insert("baseUrl".into(), Value::String(base_url.clone()));
                        if let Some(r) = rate_limit {
                            options.entry("rateLimit").or_insert_with(|| r.clone());
                        }
                        let own = options
                            .entry("headers")
                            .or_insert_with(|| Value::Object(Default::default()));
                        if let Value::Object(own) = own {
                            for (k, v) in headers {
                                own.entry(k.clone())
                                    .or_insert_with(|| Value::String(v.clone()));
                            }
                        }
                    }
                    Connection::Postgres { url } if kind == "postgres" => {
                        options.insert("url".into(), Value::String(url.clone()));
                    }
                    _ => {
                        return Err(Error::config(
                            context,
                            format!("{op}: connection {name:?} is not of type {kind:?}"),
                        ));
                    }
                }
            }
            map.values_mut()
                .try_for_each(|v| resolve(v, connections, context))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_http_connection_is_written_into_the_operators_that_name_it() {
        let connections: BTreeMap<String, Connection> = serde_json::from_value(json!({
            "crm": {"type": "http", "baseUrl": "http://127.0.0.1:1", "headers": {"a": "1", "b": "${B}"}}
        }))
        .unwrap();
        let mut p = json!([{"$addFields": {"n": {"$httpCall": {"connection": "crm", "url": "/c/{{id}}",
                                                               "headers": {"a": "own"}}}}}]);
        resolve(&mut p, &connections, "job").unwrap();
        let o = &p[0]["$addFields"]["n"]["$httpCall"];
        assert_eq!(o["baseUrl"], "http://127.0.0.1:1");
        assert_eq!(o["headers"], json!({"a": "own", "b": "${B}"}));
        let mut bad = json!([{"$set": {"n": {"$httpCall": {"connection": "nope", "url": "/"}}}}]);
        let err = resolve(&mut bad, &connections, "job")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown connection \"nope\""), "{err}");
    }

    #[test]
    fn sql_calls_get_their_connections() {
        let connections: BTreeMap<String, Connection> = serde_json::from_value(json!({
            "pg": {"type": "postgres", "url": "postgres://u:${P}@h/db"},
            "crm": {"type": "http", "baseUrl": "http://127.0.0.1:1"}
        }))
        .unwrap();
        let sql = r#"SELECT sql_query('{"connection": "pg", "query": "SELECT 1 WHERE $1 > 0"}', x) AS a FROM input"#;
        let out = resolve_sql(sql, &connections, "job").unwrap();
        assert!(out.contains(r#""url":"postgres://u:${P}@h/db""#), "{out}");
        let bad = r#"SELECT sql_query('{"connection": "crm", "query": "SELECT 1"}') FROM input"#;
        let err = resolve_sql(bad, &connections, "job")
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not of type \"postgres\""), "{err}");
        let plain = "SELECT 1";
        assert_eq!(resolve_sql(plain, &connections, "job").unwrap(), plain);
    }
}

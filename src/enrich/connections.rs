//! Named connections of a job file — `"connections": {"crm": {"type": "http", "baseUrl",
//! "headers"}}` — shared by the enrich operators that name them. Loading a job writes each
//! connection's settings into the operators that use it (`"connection": "crm"`), before the
//! pipeline is parsed; `${VAR}` in them is only expanded when an operator is planned, so the
//! secrets never sit in the pipeline's text.

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
}

/// The operators that call out, and the connection kind each takes.
const OPERATORS: [(&str, &str); 1] = [("$httpCall", "http")];

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
}

//! Kafka: topics as a streaming source ([`source::KafkaSource`]) and sink
//! ([`sink::KafkaSink`]), through librdkafka (`rdkafka`, built from its bundled sources).
//!
//! This file holds what both share: their job-file configs and the librdkafka client config
//! made from them. Offsets are Fluxion's to keep (in the checkpoint); the consumer group only
//! mirrors them, after each checkpoint, so group lag tools tell the truth.

pub mod group;
pub mod sink;
pub mod source;

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use serde::Deserialize;
use serde_json::Value;

use crate::{Error, Result};

/// Where a Kafka source starts when neither the checkpoint nor the group has an offset for a
/// partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum StartFrom {
    /// The oldest record still in the partition.
    #[default]
    Earliest,
    /// Only records produced after the source starts.
    Latest,
    /// The first record whose timestamp is at or after these epoch milliseconds.
    #[serde(untagged)]
    Timestamp {
        /// Epoch milliseconds.
        timestamp: i64,
    },
}

/// How a record's value becomes a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ValueFormat {
    /// A JSON object per record (the schema declared, or inferred from the first records).
    #[default]
    Json,
    /// The value as text, in the field `value`.
    String,
    /// The value as it is (binary data), in the field `value`; written out as extended JSON
    /// (`{"$binary": {"base64": …, "subType": "00"}}`).
    Bytes,
}

/// Where a Kafka stream stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndAt {
    /// Once every partition has reached the end it had when the job started (a bounded
    /// back-fill).
    Latest,
}

/// The `source` object of a job reading Kafka: `{"type": "kafka", …}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KafkaSourceConfig {
    /// `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    /// One topic …
    pub topic: Option<String>,
    /// … or several …
    pub topics: Option<Vec<String>>,
    /// … or every topic matching a regular expression.
    pub topic_pattern: Option<String>,
    /// The consumer group: partitions are shared among the processes of one group, and the
    /// checkpointed offsets are committed to it. Without one, the source reads every
    /// partition itself.
    pub group_id: Option<String>,
    #[serde(default)]
    pub start_from: StartFrom,
    pub end_at: Option<EndAt>,
    #[serde(default)]
    pub format: ValueFormat,
    /// A declared document schema (see `document::declared`).
    pub schema: Option<Value>,
    /// Passed to librdkafka as they are (`"fetch.max.bytes"`, `"security.protocol"`, …).
    #[serde(default)]
    pub properties: BTreeMap<String, Value>,
    /// The table name SQL uses (default `input`).
    pub table: Option<String>,
    /// The event time of each document, for windows (default: the record's timestamp).
    pub time_field: Option<Value>,
}

impl KafkaSourceConfig {
    /// The topics to subscribe to, as librdkafka takes them (a pattern starts with `^`).
    pub fn subscription(&self, context: &str) -> Result<Vec<String>> {
        let topics = match (&self.topic, &self.topics, &self.topic_pattern) {
            (Some(t), None, None) => vec![t.clone()],
            (None, Some(ts), None) if !ts.is_empty() => ts.clone(),
            (None, None, Some(p)) => {
                regex::Regex::new(p)
                    .map_err(|e| Error::config(context, format!("source.topicPattern: {e}")))?;
                vec![if p.starts_with('^') {
                    p.clone()
                } else {
                    format!("^{p}")
                }]
            }
            _ => {
                return Err(Error::config(
                    context,
                    "source: a kafka source names exactly one of \"topic\", \"topics\" (a non-empty list) or \"topicPattern\"",
                ));
            }
        };
        if let Some(t) = topics.iter().find(|t| t.is_empty()) {
            return Err(Error::config(
                context,
                format!("source.topic: {t:?} is not a topic name"),
            ));
        }
        Ok(topics)
    }
}

/// The `sink` (or `deadLetter`) object of a job writing Kafka: `{"type": "kafka", …}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KafkaSinkConfig {
    pub bootstrap_servers: String,
    pub topic: String,
    /// The record key: an expression over the output document (`"$_id"`,
    /// `{"$concat": […]}`); none by default.
    pub key: Option<Value>,
    /// Record headers: name → an expression over the output document.
    #[serde(default)]
    pub headers: BTreeMap<String, Value>,
    /// How records reach the topic: `idempotent` (default) or `transactional`.
    #[serde(default)]
    pub delivery: DeliveryMode,
    /// librdkafka's `partitioner` (`murmur2_random`, the Java client's, by default).
    pub partitioner: Option<String>,
    /// Passed to librdkafka as they are (`"linger.ms"`, `"batch.size"`, …).
    #[serde(default)]
    pub properties: BTreeMap<String, Value>,
}

/// How a Kafka sink's records reach the topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryMode {
    /// An idempotent producer; records are visible as soon as the broker has them, and a
    /// restart leaves out the ones already written.
    #[default]
    Idempotent,
    /// Also a Kafka transaction from one checkpoint to the next: `read_committed` consumers
    /// see a checkpoint's records once it is taken, and never those of a run that crashed
    /// before it (on brokers that hide aborted transactions).
    Transactional,
}

/// A librdkafka config: the servers, then the user's properties (which win), as text.
pub(crate) fn client_config(
    servers: &str,
    properties: &BTreeMap<String, Value>,
    context: &str,
) -> Result<ClientConfig> {
    if servers.trim().is_empty() {
        return Err(Error::config(
            context,
            "bootstrapServers: give at least one host:port",
        ));
    }
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", servers);
    // librdkafka's own log lines go through its log callback, not stderr.
    c.set("log_level", "3");
    for (k, v) in properties {
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => v.to_string(),
            _ => {
                return Err(Error::config(
                    context,
                    format!("properties.{k}: a string, number or boolean"),
                ));
            }
        };
        c.set(k, v);
    }
    Ok(c)
}

/// A librdkafka error as Fluxion's: the broker being away can pass, a bad config cannot.
pub(crate) fn kafka_error(context: impl Into<String>, e: rdkafka::error::KafkaError) -> Error {
    Error::external(context, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(v: Value) -> std::result::Result<KafkaSourceConfig, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn a_source_names_its_topics_one_way() {
        let c = config(serde_json::json!({"bootstrapServers": "b:9092", "topic": "t"})).unwrap();
        assert_eq!(c.subscription("job").unwrap(), ["t"]);
        assert_eq!(c.start_from, StartFrom::Earliest);
        let c = config(
            serde_json::json!({"bootstrapServers": "b", "topicPattern": "orders\\..*",
            "startFrom": {"timestamp": 5}}),
        )
        .unwrap();
        assert_eq!(c.subscription("job").unwrap(), ["^orders\\..*"]);
        assert_eq!(c.start_from, StartFrom::Timestamp { timestamp: 5 });
        for bad in [
            serde_json::json!({"bootstrapServers": "b"}),
            serde_json::json!({"bootstrapServers": "b", "topic": "a", "topics": ["b"]}),
            serde_json::json!({"bootstrapServers": "b", "topics": []}),
            serde_json::json!({"bootstrapServers": "b", "topicPattern": "("}),
        ] {
            let e = config(bad.clone())
                .unwrap()
                .subscription("job")
                .unwrap_err();
            assert!(e.to_string().contains("source"), "{bad}: {e}");
        }
        assert!(
            config(serde_json::json!({"bootstrapServers": "b", "topic": "t", "startFrom": "now"}))
                .is_err()
        );
        assert!(
            config(serde_json::json!({"bootstrapServers": "b", "topic": "t", "grupId": "g"}))
                .is_err()
        );
    }
}

//! A Kafka topic as a streaming sink: one record per output document, its value the document
//! as JSON, its key and headers from fields of the document. The producer is idempotent with
//! `acks=all` (so librdkafka's own retries neither lose nor repeat a record), and a commit
//! waits until the broker has every record of the micro-batch.
//!
//! Delivery is at least once: records written after the last checkpoint are written again by
//! a restarted run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StructArray};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use rdkafka::ClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use serde_json::{Value, json};

use super::{KafkaSinkConfig, client_config, kafka_error};
use crate::connect::source::Sink;
use crate::document::encode::write_batch;
use crate::{Error, Result};

/// How long a commit waits for the broker to acknowledge a micro-batch.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Keeps the first delivery failure for the commit to report.
#[derive(Default)]
struct Delivery {
    failed: Mutex<Option<String>>,
}

impl ClientContext for Delivery {}

impl ProducerContext for Delivery {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failed = self.failed.lock().expect("not poisoned");
            failed.get_or_insert_with(|| e.to_string());
        }
    }
}

/// One record to send.
struct Out {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Output documents produced to a topic.
pub struct KafkaSink {
    producer: Arc<ThreadedProducer<Delivery>>,
    topic: String,
    key: Option<Vec<String>>,
    headers: Vec<(String, Vec<String>)>,
    sent: u64,
}

/// `"$a.b"` as the path `["a", "b"]`.
fn field_path(spec: &str, what: &str, context: &str) -> Result<Vec<String>> {
    match spec.strip_prefix('$') {
        Some(p) if !p.is_empty() && !p.starts_with('$') && p.split('.').all(|s| !s.is_empty()) => {
            Ok(p.split('.').map(str::to_string).collect())
        }
        _ => Err(Error::config(
            context,
            format!("sink.{what}: {spec:?} is not a field path (\"$field\" or \"$a.b\")"),
        )),
    }
}

impl KafkaSink {
    /// A producer for `config`'s topic.
    pub fn open(config: &KafkaSinkConfig, context: &str) -> Result<Self> {
        if config.topic.is_empty() {
            return Err(Error::config(context, "sink.topic: name a topic"));
        }
        let mut client = client_config(&config.bootstrap_servers, &config.properties, context)?;
        // Safe defaults the user's properties may still override.
        for (k, v) in [("enable.idempotence", "true"), ("acks", "all")] {
            if !config.properties.contains_key(k) {
                client.set(k, v);
            }
        }
        if let Some(p) = &config.partitioner {
            client.set("partitioner", p);
        }
        let producer: ThreadedProducer<Delivery> = client
            .create_with_context(Delivery::default())
            .map_err(|e| Error::config(context, format!("sink: {e}")))?;
        let key = config
            .key
            .as_deref()
            .map(|k| field_path(k, "key", context))
            .transpose()?;
        let headers = config
            .headers
            .iter()
            .map(|(name, spec)| {
                Ok((
                    name.clone(),
                    field_path(spec, &format!("headers.{name}"), context)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KafkaSink {
            producer: Arc::new(producer),
            topic: config.topic.clone(),
            key,
            headers,
            sent: 0,
        })
    }

    fn records(&self, batch: &RecordBatch) -> Result<Vec<Out>> {
        let mut values = Vec::new();
        write_batch(&mut values, batch)?;
        let keys = match &self.key {
            Some(path) => Some(texts(batch, path)?),
            None => None,
        };
        let headers = self
            .headers
            .iter()
            .map(|(name, path)| Ok((name, texts(batch, path)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(batch.num_rows());
        for (row, line) in values
            .split(|b| *b == b'\n')
            .take(batch.num_rows())
            .enumerate()
        {
            out.push(Out {
                key: keys.as_ref().and_then(|k| k[row].clone()),
                value: line.to_vec(),
                headers: headers
                    .iter()
                    .map(|(name, vs)| (name.to_string(), vs[row].clone()))
                    .collect(),
            });
        }
        Ok(out)
    }
}

/// The value at `path` in each row, as bytes: text as it is, anything else as JSON; `None`
/// where the document has no such field.
fn texts(batch: &RecordBatch, path: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
    let mut column: Option<ArrayRef> = batch.column_by_name(&path[0]).cloned();
    for name in &path[1..] {
        column = column.and_then(|c| {
            c.as_struct_opt()
                .and_then(|s: &StructArray| s.column_by_name(name).cloned())
        });
    }
    let Some(column) = column else {
        return Ok(vec![None; batch.num_rows()]);
    };
    if let Some(s) = column.as_string_opt::<i32>() {
        return Ok((0..s.len())
            .map(|i| s.is_valid(i).then(|| s.value(i).as_bytes().to_vec()))
            .collect());
    }
    // Anything else goes through the document encoder: `{"v":…}` per row, `{}` for none.
    let one = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(
            "v",
            column.data_type().clone(),
            true,
        )])),
        vec![column.clone()],
    )?;
    let mut text = Vec::new();
    write_batch(&mut text, &one)?;
    Ok(text
        .split(|b| *b == b'\n')
        .take(batch.num_rows())
        .map(|line| {
            line.strip_prefix(b"{\"v\":")
                .and_then(|l| l.strip_suffix(b"}"))
                .map(<[u8]>::to_vec)
        })
        .collect())
}

#[async_trait]
impl Sink for KafkaSink {
    async fn write(&mut self, batches: &[RecordBatch]) -> Result<()> {
        let mut records = Vec::new();
        for b in batches.iter().filter(|b| b.num_rows() > 0) {
            records.extend(self.records(b)?);
        }
        self.sent += records.len() as u64;
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || send(&producer, &topic, records))
            .await
            .map_err(|e| Error::external("producing to kafka", e))?
    }

    async fn commit(&mut self) -> Result<Value> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            producer.flush(FLUSH_TIMEOUT).map_err(|e| {
                kafka_error(format!("waiting for {topic} to acknowledge the batch"), e)
            })?;
            match producer
                .context()
                .failed
                .lock()
                .expect("not poisoned")
                .take()
            {
                Some(e) => Err(Error::external(
                    format!("producing to {topic}"),
                    std::io::Error::other(e),
                )),
                None => Ok(()),
            }
        })
        .await
        .map_err(|e| Error::external("producing to kafka", e))??;
        Ok(json!({ "records": self.sent }))
    }

    async fn restore(&mut self, state: &Value) -> Result<()> {
        self.sent = state.get("records").and_then(Value::as_u64).unwrap_or(0);
        Ok(())
    }
}

/// Queues every record, waiting while the producer's queue is full.
fn send(producer: &ThreadedProducer<Delivery>, topic: &str, records: Vec<Out>) -> Result<()> {
    for r in records {
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
        for (name, value) in &r.headers {
            headers = headers.insert(Header {
                key: name,
                value: value.as_deref(),
            });
        }
        let mut record = BaseRecord::to(topic).payload(&r.value).headers(headers);
        if let Some(k) = &r.key {
            record = record.key(k);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(kafka_error(format!("producing to {topic}"), e)),
            }
        }
    }
    Ok(())
}

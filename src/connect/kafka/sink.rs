//! A Kafka topic as a streaming sink: one record per output document, its value the document
//! as JSON, its key and headers expressions over the document. The producer is idempotent with
//! `acks=all` (so librdkafka's own retries neither lose nor repeat a record), and a commit
//! waits until the broker has every record of the micro-batch.
//!
//! Exactly once as a consumer sees it, on any Kafka-protocol broker: every record carries a
//! `fluxion-id` header naming its job, micro-batch and index. The runtime logs each batch's
//! input before writing it, so a run after a crash forms the same batches again and so makes
//! the same records; before writing them the sink reads its partitions past the checkpointed
//! offsets ([`Sink::recover`]) and leaves out the records already there.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use rdkafka::ClientContext;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use serde_json::{Value, json};

use super::{DeliveryMode, KafkaSinkConfig, client_config, kafka_error};
use crate::connect::source::{BatchId, Sink};
use crate::document::encode::{column_texts, write_batch};
use crate::dsl::JsonPath;
use crate::plan::expr::BatchExpr;
use crate::{Error, Result};

/// How long a commit waits for the broker to acknowledge a micro-batch.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long reading the topic's tail after a crash may take.
const RECOVER_TIMEOUT: Duration = Duration::from_secs(60);

/// The header naming a record's job, micro-batch and index.
pub const ID_HEADER: &str = "fluxion-id";

/// Keeps the first delivery failure for the commit to report, and where each partition's
/// records end.
#[derive(Default)]
struct Delivery {
    failed: Mutex<Option<String>>,
    next: Mutex<BTreeMap<i32, i64>>,
}

impl ClientContext for Delivery {}

impl ProducerContext for Delivery {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Err((e, _)) => {
                let mut failed = self.failed.lock().expect("not poisoned");
                failed.get_or_insert_with(|| e.to_string());
            }
            Ok(m) => {
                let mut next = self.next.lock().expect("not poisoned");
                let at = next.entry(m.partition()).or_insert(0);
                *at = (*at).max(m.offset() + 1);
            }
        }
    }
}

/// One record to send.
#[derive(Clone)]
struct Out {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Output documents produced to a topic.
pub struct KafkaSink {
    producer: Arc<ThreadedProducer<Delivery>>,
    topic: String,
    key: Option<BatchExpr>,
    headers: Vec<(String, BatchExpr)>,
    sent: u64,
    servers: String,
    properties: BTreeMap<String, Value>,
    /// The batch being written, and how many of its records so far.
    batch: Option<BatchId>,
    index: u64,
    /// Identities of the records already in the topic past the checkpoint.
    present: HashSet<Vec<u8>>,
    /// With `"delivery": "transactional"`: the transaction's state.
    transaction: Option<Transaction>,
}

/// A transactional sink's state. One transaction runs from a checkpoint to the next; its
/// records are kept until it commits, so one that the broker aborts can be sent again.
struct Transaction {
    /// Whether `init_transactions` has run (it fences a crashed run's producer and aborts
    /// the transaction it left open).
    ready: bool,
    open: bool,
    sent: Vec<Arc<Vec<Out>>>,
}

/// How long a transaction call (init, commit, abort) may take.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

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
        let transactional = config.delivery == DeliveryMode::Transactional;
        if transactional && !config.properties.contains_key("transactional.id") {
            // The same id in every run of the job, so a restart fences the run before it.
            client.set(
                "transactional.id",
                format!("fluxion-{context}-{}", config.topic),
            );
        }
        let producer: ThreadedProducer<Delivery> = client
            .create_with_context(Delivery::default())
            .map_err(|e| Error::config(context, format!("sink: {e}")))?;
        let key = config
            .key
            .as_ref()
            .map(|k| BatchExpr::parse(k, JsonPath::named("sink.key")))
            .transpose()
            .map_err(|e| Error::config(context, e.to_string()))?;
        let headers = config
            .headers
            .iter()
            .map(|(name, spec)| {
                let at = JsonPath::named(&format!("sink.headers.{name}"));
                Ok((name.clone(), BatchExpr::parse(spec, at)?))
            })
            .collect::<Result<Vec<_>>>()
            .map_err(|e| Error::config(context, e.to_string()))?;
        Ok(KafkaSink {
            producer: Arc::new(producer),
            topic: config.topic.clone(),
            key,
            headers,
            sent: 0,
            servers: config.bootstrap_servers.clone(),
            properties: config.properties.clone(),
            batch: None,
            index: 0,
            present: HashSet::new(),
            transaction: transactional.then(|| Transaction {
                ready: false,
                open: false,
                sent: Vec::new(),
            }),
        })
    }

    /// Readies the producer for transactions, once per run.
    async fn init_transactions(&mut self) -> Result<()> {
        let Some(t) = &mut self.transaction else {
            return Ok(());
        };
        if t.ready {
            return Ok(());
        }
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .init_transactions(TRANSACTION_TIMEOUT)
                .map_err(|e| kafka_error(format!("starting transactions on {topic}"), e))
        })
        .await
        .map_err(|e| Error::external("producing to kafka", e))??;
        t.ready = true;
        Ok(())
    }

    /// Commits the open transaction. If the broker aborts it, its records are sent again in
    /// a new one and the error is returned, so a retry commits them.
    async fn commit_transaction(&mut self) -> Result<()> {
        let Some(t) = &mut self.transaction else {
            return Ok(());
        };
        if !t.open {
            return Ok(());
        }
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        let sent = t.sent.clone();
        let outcome = tokio::task::spawn_blocking(move || -> Result<bool> {
            match producer.commit_transaction(TRANSACTION_TIMEOUT) {
                Ok(()) => Ok(true),
                Err(e) => {
                    let abort = matches!(&e, rdkafka::error::KafkaError::Transaction(r)
                        if r.txn_requires_abort());
                    if !abort {
                        return Err(kafka_error(format!("committing to {topic}"), e));
                    }
                    tracing::warn!("kafka: the transaction on {topic} was aborted ({e}); sending its records again");
                    producer
                        .abort_transaction(TRANSACTION_TIMEOUT)
                        .map_err(|e| kafka_error(format!("aborting on {topic}"), e))?;
                    producer
                        .begin_transaction()
                        .map_err(|e| kafka_error(format!("a transaction on {topic}"), e))?;
                    for records in &sent {
                        send(&producer, &topic, records)?;
                    }
                    flush(&producer, &topic)?;
                    Err(Error::external(
                        format!("committing to {topic}"),
                        std::io::Error::other(format!("the transaction was aborted: {e}")),
                    ))
                }
            }
        })
        .await
        .map_err(|e| Error::external("producing to kafka", e))??;
        if outcome {
            t.open = false;
            t.sent.clear();
        }
        Ok(())
    }

    fn records(&mut self, batch: &RecordBatch) -> Result<Vec<Out>> {
        let mut values = Vec::new();
        write_batch(&mut values, batch)?;
        let keys = match &mut self.key {
            Some(e) => Some(column_texts(&e.evaluate(batch)?)?),
            None => None,
        };
        let headers = self
            .headers
            .iter_mut()
            .map(|(name, e)| Ok((name.clone(), column_texts(&e.evaluate(batch)?)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(batch.num_rows());
        for (row, line) in values
            .split(|b| *b == b'\n')
            .take(batch.num_rows())
            .enumerate()
        {
            let mut hs: Vec<(String, Option<Vec<u8>>)> = headers
                .iter()
                .map(|(name, vs)| (name.to_string(), vs[row].clone()))
                .collect();
            if let Some(b) = &self.batch {
                let id = format!("{}:{}:{}", b.job, b.number, self.index).into_bytes();
                self.index += 1;
                if self.present.contains(&id) {
                    continue;
                }
                hs.push((ID_HEADER.to_string(), Some(id)));
            }
            out.push(Out {
                key: keys.as_ref().and_then(|k| k[row].clone()),
                value: line.to_vec(),
                headers: hs,
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl Sink for KafkaSink {
    async fn write(&mut self, batches: &[RecordBatch]) -> Result<()> {
        let mut records = Vec::new();
        for b in batches.iter().filter(|b| b.num_rows() > 0) {
            records.extend(self.records(b)?);
        }
        self.sent += records.len() as u64;
        self.init_transactions().await?;
        let records = Arc::new(records);
        if let Some(t) = &mut self.transaction {
            if !t.open {
                self.producer
                    .begin_transaction()
                    .map_err(|e| kafka_error(format!("a transaction on {}", self.topic), e))?;
                t.open = true;
            }
            t.sent.push(records.clone());
        }
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || send(&producer, &topic, &records))
            .await
            .map_err(|e| Error::external("producing to kafka", e))?
    }

    async fn commit(&mut self) -> Result<Value> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            flush(&producer, &topic)?;
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
        let next = self
            .producer
            .context()
            .next
            .lock()
            .expect("not poisoned")
            .clone();
        let offsets: serde_json::Map<String, Value> = next
            .iter()
            .map(|(p, o)| (p.to_string(), json!(o)))
            .collect();
        Ok(json!({ "records": self.sent, "offsets": offsets }))
    }

    async fn sync(&mut self) -> Result<()> {
        self.commit_transaction().await
    }

    async fn restore(&mut self, state: &Value) -> Result<()> {
        self.sent = state.get("records").and_then(Value::as_u64).unwrap_or(0);
        *self.producer.context().next.lock().expect("not poisoned") = offsets_of(state);
        Ok(())
    }

    fn recognises_output(&self) -> bool {
        true
    }

    fn begin(&mut self, batch: &BatchId) {
        self.batch = Some(batch.clone());
        self.index = 0;
    }

    async fn recover(&mut self, state: &Value) -> Result<()> {
        let from = offsets_of(state);
        // A crashed run's open transaction blocks `read_committed` readers until it is
        // aborted, which readying this run's producer does.
        self.init_transactions().await?;
        let client = client_config(&self.servers, &self.properties, "sink")?;
        let topic = self.topic.clone();
        let found = tokio::task::spawn_blocking(move || read_ids(client, &topic, &from))
            .await
            .map_err(|e| Error::external("reading kafka", e))??;
        tracing::info!(
            topic = %self.topic,
            records = found.len(),
            "kafka sink: records of the last run found past the checkpoint"
        );
        self.present = found;
        Ok(())
    }
}

/// The per-partition offsets of a sink state.
fn offsets_of(state: &Value) -> BTreeMap<i32, i64> {
    state
        .get("offsets")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(p, o)| Some((p.parse().ok()?, o.as_i64()?)))
        .collect()
}

/// The `fluxion-id` headers of `topic`'s records from `from` (per partition; the beginning
/// where none is given) to the end.
fn read_ids(
    mut client: rdkafka::ClientConfig,
    topic: &str,
    from: &BTreeMap<i32, i64>,
) -> Result<HashSet<Vec<u8>>> {
    use rdkafka::Offset;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    client
        .set("group.id", "fluxion-sink-recovery")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        // Records of aborted transactions are not output.
        .set("isolation.level", "read_committed");
    let consumer: BaseConsumer = client
        .create()
        .map_err(|e| kafka_error(format!("reading {topic}"), e))?;
    let md = consumer
        .fetch_metadata(Some(topic), RECOVER_TIMEOUT)
        .map_err(|e| kafka_error(format!("reading the partitions of {topic}"), e))?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    let mut open = HashSet::new();
    for t in md.topics() {
        for p in t.partitions() {
            let start = from
                .get(&p.id())
                .map_or(Offset::Beginning, |&o| Offset::Offset(o));
            tpl.add_partition_offset(topic, p.id(), start)
                .map_err(|e| kafka_error(format!("reading {topic}"), e))?;
            open.insert(p.id());
        }
    }
    consumer
        .assign(&tpl)
        .map_err(|e| kafka_error(format!("reading {topic}"), e))?;
    let began = std::time::Instant::now();
    let mut ids = HashSet::new();
    while !open.is_empty() {
        if began.elapsed() > RECOVER_TIMEOUT {
            return Err(Error::external(
                format!("reading {topic} past the checkpoint"),
                std::io::Error::other(format!(
                    "partitions {open:?} did not reach their end within {} s",
                    RECOVER_TIMEOUT.as_secs()
                )),
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => tracing::warn!("kafka: reading {topic}: {e}"),
            Some(Ok(m)) => {
                if let Some(hs) = m.headers() {
                    for h in hs.iter() {
                        if h.key == ID_HEADER
                            && let Some(v) = h.value
                        {
                            ids.insert(v.to_vec());
                        }
                    }
                }
            }
        }
    }
    Ok(ids)
}

/// Waits until the broker has acknowledged every record sent. (librdkafka's flush, beside
/// the producer's own polling thread, waits a whole poll interval — 100 ms — each time; the
/// count of records in flight falls as soon as their acknowledgements are served.)
fn flush(producer: &ThreadedProducer<Delivery>, topic: &str) -> Result<()> {
    let began = std::time::Instant::now();
    while producer.in_flight_count() > 0 {
        if began.elapsed() > FLUSH_TIMEOUT {
            return Err(Error::external(
                format!("waiting for {topic} to acknowledge the batch"),
                std::io::Error::other(format!(
                    "{} records not acknowledged within {} s",
                    producer.in_flight_count(),
                    FLUSH_TIMEOUT.as_secs()
                )),
            ));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// Queues every record, waiting while the producer's queue is full.
fn send(producer: &ThreadedProducer<Delivery>, topic: &str, records: &[Out]) -> Result<()> {
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

//! Kafka topics as a streaming source: records polled in bulk from librdkafka, their values
//! read into Arrow by the same strict JSON-lines reader as files, and the record's own fields
//! beside them (`_topic`, `_partition`, `_offset`, `_timestamp`, `_key`, `_headers`).
//!
//! Each document's partition number is the same in every run (a hash of topic and
//! partition), so the runtime can put a micro-batch's records in an order its input range
//! alone decides. The position is the next offset of every partition read so far. A restart assigns each
//! partition at its checkpointed offset (in the rebalance callback, before fetching starts),
//! and drops any record below it — so a group whose committed offsets lag the checkpoint (a
//! crash between the checkpoint and the group commit) never replays records twice. After
//! each checkpoint the offsets are committed to the group, when there is one.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BinaryArray, Int64Array, ListBuilder, StringArray, StringBuilder, StructBuilder,
    TimestampMillisecondArray,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::{Value, json};

use super::{EndAt, KafkaSourceConfig, StartFrom, ValueFormat, client_config, kafka_error};
use crate::connect::source::{CheckpointHook, Position, Rejected, Source, SourceBatch};
use crate::document::decode::{JsonlOptions, infer_schema, read_lines_parallel};
use crate::{Error, Result};

/// How long a poll waits for a first record before handing back an empty batch.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// How long a poll that has records waits for more, and how many times in a row.
const LINGER: Duration = Duration::from_millis(2);
const LINGER_TRIES: u32 = 2;
/// How long to wait for records to infer a schema from, when none is declared.
const INFER_WAIT: Duration = Duration::from_secs(10);
/// How long a request to the broker (metadata, watermarks) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How soon the ends are asked for again while the source has no partitions yet.
const LAG_FIRST: Duration = Duration::from_millis(50);
/// How often the partitions' ends are asked for, for the lag.
const LAG_EVERY: Duration = Duration::from_secs(1);

/// A topic partition.
type Tp = (String, i32);

/// What the rebalance callback needs: where to put partitions it is given.
#[derive(Default)]
struct Shared {
    /// The next offset of each partition, from the checkpoint and the records read since.
    offsets: Mutex<BTreeMap<Tp, i64>>,
    start_from: StartFrom,
    /// The partitions this process holds now.
    assigned: Mutex<Vec<Tp>>,
    /// Each held partition's end, as last asked of the broker (for the lag).
    highs: Mutex<BTreeMap<Tp, i64>>,
}

/// What a consumer of a scaled-out job does on a rebalance instead (`kafka::group`).
pub(super) trait Rebalance: Send + Sync {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Context>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    );
}

/// The consumer's context: assigns partitions at Fluxion's offsets.
pub(super) struct Context {
    shared: Arc<Shared>,
    /// Set for the consumer of a scaled-out job, whose partitions run as tasks.
    group: Option<Arc<dyn Rebalance>>,
}

impl ClientContext for Context {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::warn!(target: "fluxion::kafka", facility = fac, "{log_message}")
            }
            _ => tracing::debug!(target: "fluxion::kafka", facility = fac, "{log_message}"),
        }
    }
}

impl ConsumerContext for Context {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        if let Some(group) = &self.group {
            return group.rebalance(consumer, err, tpl);
        }
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                place(consumer, &self.shared, tpl);
                assign(consumer, tpl, cooperative);
                let mut assigned = self.shared.assigned.lock().expect("not poisoned");
                if !cooperative {
                    assigned.clear();
                }
                for e in tpl.elements() {
                    assigned.push((e.topic().to_string(), e.partition()));
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                give_back(consumer, tpl, cooperative);
                let gone = tps_of(tpl);
                self.shared
                    .assigned
                    .lock()
                    .expect("not poisoned")
                    .retain(|tp| !gone.contains(tp));
            }
            other => tracing::warn!("kafka: rebalance failed: {other:?}"),
        }
    }
}

/// Takes `tpl`'s partitions (added to those held, under the cooperative protocol).
pub(super) fn assign<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
    cooperative: bool,
) {
    let done = if cooperative {
        consumer.incremental_assign(tpl)
    } else {
        consumer.assign(tpl)
    };
    if let Err(e) = done {
        tracing::warn!("kafka: assigning partitions failed: {e}");
    }
}

/// Gives `tpl`'s partitions back (all of them, under the eager protocol).
pub(super) fn give_back<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
    cooperative: bool,
) {
    let done = if cooperative {
        consumer.incremental_unassign(tpl)
    } else {
        consumer.unassign()
    };
    if let Err(e) = done {
        tracing::warn!("kafka: giving partitions back failed: {e}");
    }
}

/// The topic partitions of `tpl`.
pub(super) fn tps_of(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

/// Sets where each partition of `tpl` starts: its checkpointed offset, else the group's
/// (left as is), else `startFrom` (a timestamp is looked up in the broker).
fn place<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    shared: &Shared,
    tpl: &mut TopicPartitionList,
) {
    let offsets = shared.offsets.lock().expect("not poisoned").clone();
    place_at(consumer, &offsets, shared.start_from, tpl);
}

/// [`place`] with the checkpointed offsets given.
pub(super) fn place_at<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    offsets: &BTreeMap<Tp, i64>,
    start_from: StartFrom,
    tpl: &mut TopicPartitionList,
) {
    let mut by_time = TopicPartitionList::new();
    let held = tps_of(tpl);
    for tp in held {
        if let Some(&o) = offsets.get(&tp) {
            let _ = tpl.set_partition_offset(&tp.0, tp.1, Offset::Offset(o));
        } else if let StartFrom::Timestamp { timestamp } = start_from {
            let _ = by_time.add_partition_offset(&tp.0, tp.1, Offset::Offset(timestamp));
        }
    }
    if by_time.count() > 0 {
        match consumer.offsets_for_times(by_time, REQUEST_TIMEOUT) {
            Ok(found) => {
                for e in found.elements() {
                    // No record that late: the partition's end.
                    let o = match e.offset() {
                        Offset::Offset(o) => Offset::Offset(o),
                        _ => Offset::End,
                    };
                    let _ = tpl.set_partition_offset(e.topic(), e.partition(), o);
                }
            }
            Err(e) => tracing::warn!("kafka: finding offsets by time failed: {e}"),
        }
    }
}

/// A record as polled.
pub(super) struct Raw {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<String>)>,
}

impl Raw {
    fn of(
        m: &rdkafka::message::BorrowedMessage<'_>,
        topics: &mut HashMap<String, Arc<str>>,
    ) -> Raw {
        let topic = match topics.get(m.topic()) {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = m.topic().into();
                topics.insert(m.topic().to_string(), t.clone());
                t
            }
        };
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            h.value.map(|v| String::from_utf8_lossy(v).into_owned()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Raw {
            topic,
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        }
    }

    /// Its topic and partition.
    pub(super) fn tp(&self) -> (&str, i32) {
        (&self.topic, self.partition)
    }

    fn position(&self) -> Position {
        Position(json!({"topic": &*self.topic, "partition": self.partition, "offset": self.offset}))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(self.value.as_deref().unwrap_or_default()).into_owned()
    }
}

/// The fields every Kafka document has beside its value's.
fn record_fields() -> Vec<Field> {
    let header = Fields::from(vec![
        Field::new("key", DataType::Utf8, true),
        Field::new("value", DataType::Utf8, true),
    ]);
    vec![
        Field::new("_topic", DataType::Utf8, true),
        Field::new("_partition", DataType::Int64, true),
        Field::new("_offset", DataType::Int64, true),
        Field::new(
            "_timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("_key", DataType::Utf8, true),
        Field::new(
            "_headers",
            DataType::List(Arc::new(Field::new("item", DataType::Struct(header), true))),
            true,
        ),
    ]
}

/// Where a source's records come from.
enum Feed {
    /// Its own consumer, polled.
    Consumer,
    /// One partition of a scaled-out job's consumer, whose records are routed to it.
    Routed {
        tp: Tp,
        records: tokio::sync::mpsc::Receiver<Raw>,
    },
}

/// Topic partitions read from Kafka.
pub struct KafkaSource {
    consumer: Arc<BaseConsumer<Context>>,
    feed: Feed,
    shared: Arc<Shared>,
    topics: Vec<String>,
    group: bool,
    format: ValueFormat,
    end_at: Option<EndAt>,
    /// The documents' own fields, as the value reader reads them.
    value_schema: SchemaRef,
    /// The value's fields, then the record's that the value does not have.
    schema: SchemaRef,
    started: bool,
    /// The end of each partition when the source started (with `endAt`).
    ends: Option<BTreeMap<Tp, i64>>,
    /// Records polled before they were asked for (to infer the schema from).
    pending: Vec<Raw>,
    names: HashMap<String, Arc<str>>,
    context: String,
    /// The last poll found no record.
    caught_up: bool,
    /// Where each partition stops while a logged batch is formed again.
    cut: Option<BTreeMap<Tp, i64>>,
}

impl KafkaSource {
    /// Connects to the brokers of `config`. `schema` (a checkpoint's) is read with when the
    /// config declares none; without either, the schema is inferred from the first records.
    pub fn open(
        config: &KafkaSourceConfig,
        schema: Option<SchemaRef>,
        context: &str,
    ) -> Result<Self> {
        let topics = config.subscription(context)?;
        let shared = Arc::new(Shared {
            start_from: config.start_from,
            ..Shared::default()
        });
        let consumer: BaseConsumer<Context> = consumer_config(config, context)?
            .create_with_context(Context {
                shared: shared.clone(),
                group: None,
            })
            .map_err(|e| Error::config(context, format!("source: {e}")))?;
        let mut source = Self::over(config, Arc::new(consumer), Feed::Consumer, shared, context);
        source.topics = topics;
        let declared = declared_schema(config, context)?;
        let value_schema = match (config.format, declared.or(schema)) {
            (ValueFormat::String | ValueFormat::Bytes, _) => value_field(config.format),
            // A checkpoint's schema holds the record fields too: only the value's are read.
            (ValueFormat::Json, Some(s)) => value_fields(&s),
            (ValueFormat::Json, None) => source.infer()?,
        };
        source.set_schema(value_schema);
        Ok(source)
    }

    /// The consumer of a scaled-out job (`kafka::group`): subscribed to `config`'s topics,
    /// its rebalances handled by `group`.
    pub(super) fn group_consumer(
        config: &KafkaSourceConfig,
        context: &str,
        group: Arc<dyn Rebalance>,
    ) -> Result<Arc<BaseConsumer<Context>>> {
        let topics = config.subscription(context)?;
        let consumer: BaseConsumer<Context> = consumer_config(config, context)?
            .create_with_context(Context {
                shared: Arc::new(Shared::default()),
                group: Some(group),
            })
            .map_err(|e| Error::config(context, format!("source: {e}")))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|e| kafka_error(format!("subscribing to {}", topics.join(", ")), e))?;
        Ok(Arc::new(consumer))
    }

    /// One partition of a scaled-out job: its records come from `records`, routed to it by
    /// the job's consumer.
    pub(super) fn routed(
        config: &KafkaSourceConfig,
        consumer: Arc<BaseConsumer<Context>>,
        tp: (String, i32),
        records: tokio::sync::mpsc::Receiver<Raw>,
        context: &str,
    ) -> Result<Self> {
        let shared = Arc::new(Shared {
            start_from: config.start_from,
            assigned: Mutex::new(vec![tp.clone()]),
            ..Shared::default()
        });
        let topics = vec![tp.0.clone()];
        let feed = Feed::Routed { tp, records };
        let mut source = Self::over(config, consumer, feed, shared, context);
        source.topics = topics;
        let value_schema = match (config.format, declared_schema(config, context)?) {
            (ValueFormat::String | ValueFormat::Bytes, _) => value_field(config.format),
            (ValueFormat::Json, Some(s)) => s,
            (ValueFormat::Json, None) => {
                return Err(Error::config(
                    context,
                    "source.schema: a job scaled out over a consumer group reads with a declared schema (each partition's task would infer its own)",
                ));
            }
        };
        source.set_schema(value_schema);
        Ok(source)
    }

    fn over(
        config: &KafkaSourceConfig,
        consumer: Arc<BaseConsumer<Context>>,
        feed: Feed,
        shared: Arc<Shared>,
        context: &str,
    ) -> Self {
        KafkaSource {
            consumer,
            feed,
            shared,
            topics: Vec::new(),
            group: config.group_id.is_some(),
            format: config.format,
            end_at: config.end_at,
            value_schema: Arc::new(Schema::empty()),
            schema: Arc::new(Schema::empty()),
            started: false,
            ends: None,
            pending: Vec::new(),
            names: HashMap::new(),
            context: context.to_string(),
            caught_up: false,
            cut: None,
        }
    }

    fn set_schema(&mut self, value_schema: SchemaRef) {
        let mut fields: Vec<Field> = value_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for f in record_fields() {
            if value_schema.field_with_name(f.name()).is_err() {
                fields.push(f);
            }
        }
        self.schema = Arc::new(Schema::new(fields));
        self.value_schema = value_schema;
    }

    /// A schema from the records there are when the source opens.
    fn infer(&mut self) -> Result<SchemaRef> {
        let started = Instant::now();
        let mut raws = Vec::new();
        while raws.len() < 1000 && started.elapsed() < INFER_WAIT {
            let more = self.poll_blocking(1000 - raws.len(), POLL_WAIT)?;
            if more.is_empty() && !raws.is_empty() {
                break;
            }
            raws.extend(more);
        }
        let mut text = Vec::new();
        for r in &raws {
            if let Some(line) = json_line(r) {
                text.extend_from_slice(&line);
                text.push(b'\n');
            }
        }
        if text.is_empty() {
            return Err(Error::config(
                &self.context,
                format!(
                    "source.schema: {} has no JSON records to infer a schema from within {} s: declare the source's schema",
                    self.topics.join(", "),
                    INFER_WAIT.as_secs()
                ),
            ));
        }
        self.pending = raws;
        infer_schema(&text, JsonlOptions::default().infer_records, 1)
    }

    /// Subscribes (with a group) or assigns every partition (without), once, after any seek.
    fn start(&mut self) -> Result<()> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        watch_ends(Arc::downgrade(&self.consumer), Arc::downgrade(&self.shared));
        let pattern = self.topics.first().is_some_and(|t| t.starts_with('^'));
        let routed = match &self.feed {
            Feed::Routed { tp, .. } => Some(tp.clone()),
            Feed::Consumer => None,
        };
        if self.group && routed.is_none() {
            let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
            self.consumer.subscribe(&topics).map_err(|e| {
                kafka_error(format!("subscribing to {}", self.topics.join(", ")), e)
            })?;
        }
        let needs_partitions = !self.group || self.end_at.is_some();
        if !needs_partitions {
            return Ok(());
        }
        let partitions = match &routed {
            Some(tp) => vec![tp.clone()],
            None => self.partitions(pattern)?,
        };
        if self.end_at.is_some() {
            let mut ends = BTreeMap::new();
            for (t, p) in &partitions {
                let (low, high) = self
                    .consumer
                    .fetch_watermarks(t, *p, REQUEST_TIMEOUT)
                    .map_err(|e| kafka_error(format!("reading the end of {t}/{p}"), e))?;
                tracing::debug!("kafka: {t}/{p} from {low} to {high}");
                // An empty partition is at its end wherever the source stands.
                ends.insert((t.clone(), *p), if high <= low { i64::MIN } else { high });
                // The lag is known from the start, however short the run.
                self.shared
                    .highs
                    .lock()
                    .expect("not poisoned")
                    .entry((t.clone(), *p))
                    .or_insert(high);
            }
            self.ends = Some(ends);
        }
        if !self.group && routed.is_none() {
            let mut tpl = TopicPartitionList::new();
            for (t, p) in &partitions {
                tpl.add_partition(t, *p);
            }
            place(&self.consumer, &self.shared, &mut tpl);
            let unplaced: Vec<Tp> = tpl
                .elements()
                .iter()
                .filter(|e| e.offset() == Offset::Invalid)
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            let start = match self.shared.start_from {
                StartFrom::Latest => Offset::End,
                _ => Offset::Beginning,
            };
            for (t, p) in unplaced {
                let _ = tpl.set_partition_offset(&t, p, start);
            }
            self.consumer
                .assign(&tpl)
                .map_err(|e| kafka_error("assigning partitions", e))?;
            *self.shared.assigned.lock().expect("not poisoned") = partitions;
        }
        Ok(())
    }

    /// Every partition of the topics (or of those the pattern matches).
    fn partitions(&self, pattern: bool) -> Result<Vec<Tp>> {
        let topic = if pattern || self.topics.len() > 1 {
            None
        } else {
            self.topics.first().map(String::as_str)
        };
        let md = self
            .consumer
            .fetch_metadata(topic, REQUEST_TIMEOUT)
            .map_err(|e| kafka_error("reading the topics' partitions", e))?;
        let re = if pattern {
            Some(
                regex::Regex::new(&self.topics[0])
                    .map_err(|e| Error::config(&self.context, e.to_string()))?,
            )
        } else {
            None
        };
        let mut out = Vec::new();
        for t in md.topics() {
            let wanted = match &re {
                Some(re) => re.is_match(t.name()),
                None => self.topics.iter().any(|n| n == t.name()),
            };
            if !wanted {
                continue;
            }
            if t.error().is_some() || t.partitions().is_empty() {
                return Err(Error::config(
                    &self.context,
                    format!("source.topic: topic {:?} does not exist", t.name()),
                ));
            }
            for p in t.partitions() {
                out.push((t.name().to_string(), p.id()));
            }
        }
        if out.is_empty() {
            return Err(Error::config(
                &self.context,
                format!("source.topic: no topic {}", self.topics.join(", ")),
            ));
        }
        Ok(out)
    }

    /// Up to `max` records, waiting at most `wait` for the first.
    fn poll_blocking(&mut self, max: usize, wait: Duration) -> Result<Vec<Raw>> {
        self.start()?;
        poll(&self.consumer, max, wait, &mut self.names)
    }

    /// True once every partition is at or past the end it had when the source started and a
    /// poll found nothing more: the source has caught up. (Waiting for the caught-up poll
    /// keeps a broker whose reported ends lag its records — Tansu counts record batches, not
    /// records — from ending the source early.)
    fn at_end(&self) -> bool {
        let Some(ends) = &self.ends else {
            return false;
        };
        if !self.caught_up {
            return false;
        }
        let offsets = self.shared.offsets.lock().expect("not poisoned");
        let assigned = self.shared.assigned.lock().expect("not poisoned");
        if self.group && assigned.is_empty() {
            return false;
        }
        ends.iter()
            .filter(|(tp, _)| !self.group || assigned.contains(tp))
            .all(|(tp, end)| offsets.get(tp).is_some_and(|o| o >= end) || *end == i64::MIN)
    }

    /// Whether `r` may go in the batch being read: always, except past a bound.
    fn may_take(&self, r: &Raw) -> bool {
        self.cut.as_ref().is_none_or(|cut| {
            cut.get(&(r.topic.to_string(), r.partition))
                .is_some_and(|&end| r.offset < end)
        })
    }

    /// The offsets of a position this source returned.
    fn offsets_of(&self, position: &Position) -> Result<BTreeMap<Tp, i64>> {
        let bad = || {
            Error::input(
                &self.context,
                format!("not a position of a kafka source: {}", position.0),
            )
        };
        let topics = position
            .0
            .get("offsets")
            .and_then(Value::as_object)
            .ok_or_else(bad)?;
        let mut offsets = BTreeMap::new();
        for (t, parts) in topics {
            for (p, o) in parts.as_object().ok_or_else(bad)? {
                let p: i32 = p.parse().map_err(|_| bad())?;
                offsets.insert((t.clone(), p), o.as_i64().ok_or_else(bad)?);
            }
        }
        Ok(offsets)
    }

    /// The records as one batch of documents, and those that are none.
    fn decode(&mut self, raws: Vec<Raw>) -> Result<(RecordBatch, Vec<u32>, Vec<Rejected>)> {
        let mut rejected = Vec::new();
        let mut kept: Vec<Raw> = Vec::with_capacity(raws.len());
        let mut text = Vec::new();
        let value_batch = match self.format {
            ValueFormat::Json => {
                let mut lines: Vec<Raw> = Vec::with_capacity(raws.len());
                for r in raws {
                    match json_line(&r) {
                        Some(line) => {
                            text.extend_from_slice(&line);
                            text.push(b'\n');
                            lines.push(r);
                        }
                        None => rejected.push(Rejected {
                            position: r.position(),
                            reason: bad_value(&r),
                            raw: r.text(),
                        }),
                    }
                }
                let threads = if text.len() > 4 << 20 {
                    crate::document::decode::cores()
                } else {
                    1
                };
                let read = read_lines_parallel(
                    &text,
                    &self.value_schema,
                    false,
                    lines.len().max(1),
                    threads,
                )?;
                let mut bad = read.invalid.iter().map(|i| (i.line, &i.reason)).peekable();
                for (i, r) in lines.into_iter().enumerate() {
                    if bad.peek().is_some_and(|(l, _)| *l == i) {
                        let (_, reason) = bad.next().expect("peeked");
                        rejected.push(Rejected {
                            position: r.position(),
                            reason: reason.clone(),
                            raw: r.text(),
                        });
                    } else {
                        kept.push(r);
                    }
                }
                concat_batches(&self.value_schema, &read.batches)?
            }
            ValueFormat::Bytes => {
                let mut values: Vec<Option<Vec<u8>>> = Vec::with_capacity(raws.len());
                for mut r in raws {
                    match r.value.take() {
                        Some(v) => {
                            values.push(Some(v));
                            kept.push(r);
                        }
                        None => rejected.push(Rejected {
                            position: r.position(),
                            reason: bad_value(&r),
                            raw: String::new(),
                        }),
                    }
                }
                RecordBatch::try_new(
                    self.value_schema.clone(),
                    vec![Arc::new(BinaryArray::from_iter(values)) as ArrayRef],
                )?
            }
            ValueFormat::String => {
                let mut values = Vec::with_capacity(raws.len());
                for r in raws {
                    match r.value.as_deref().map(std::str::from_utf8) {
                        Some(Ok(s)) => {
                            values.push(Some(s.to_string()));
                            kept.push(r);
                        }
                        Some(Err(e)) => rejected.push(Rejected {
                            position: r.position(),
                            reason: format!("not valid UTF-8 at byte {}", e.valid_up_to()),
                            raw: r.text(),
                        }),
                        None => rejected.push(Rejected {
                            position: r.position(),
                            reason: bad_value(&r),
                            raw: String::new(),
                        }),
                    }
                }
                RecordBatch::try_new(
                    self.value_schema.clone(),
                    vec![Arc::new(StringArray::from(values)) as ArrayRef],
                )?
            }
        };
        let mut columns = value_batch.columns().to_vec();
        for f in self
            .schema
            .fields()
            .iter()
            .skip(self.value_schema.fields().len())
        {
            columns.push(record_column(f.name(), &kept));
        }
        let options = RecordBatchOptions::new().with_row_count(Some(kept.len()));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        let partitions = kept
            .iter()
            .map(|r| partition_number(&r.topic, r.partition))
            .collect();
        Ok((batch, partitions, rejected))
    }
}

/// The one field of a value read as text or bytes: `value`.
fn value_field(format: ValueFormat) -> SchemaRef {
    let ty = match format {
        ValueFormat::Bytes => DataType::Binary,
        _ => DataType::Utf8,
    };
    Arc::new(Schema::new(vec![Field::new("value", ty, true)]))
}

/// The librdkafka settings of a source's consumer.
fn consumer_config(config: &KafkaSourceConfig, context: &str) -> Result<rdkafka::ClientConfig> {
    let mut client = client_config(&config.bootstrap_servers, &config.properties, context)?;
    // librdkafka wants a group id even for manual assignment; nothing is committed then.
    client.set("group.id", config.group_id.as_deref().unwrap_or("fluxion"));
    // librdkafka's defaults hold a fetch at the broker for up to 500 ms (`fetch.wait.max.ms`;
    // Tansu waits that long even when it has records) and, once a partition's local queue is
    // full, stop fetching it for a whole second (`fetch.queue.backoff.ms`): after a bulk poll
    // drained the queue, the next batch waited out that second. The user's settings win.
    for (key, value) in [
        ("fetch.wait.max.ms", "10"),
        ("fetch.queue.backoff.ms", "10"),
    ] {
        if !config.properties.contains_key(key) {
            client.set(key, value);
        }
    }
    // Offsets are Fluxion's: committed after checkpoints, never on their own.
    client.set("enable.auto.commit", "false");
    client.set("enable.auto.offset.store", "false");
    client.set(
        "auto.offset.reset",
        match config.start_from {
            StartFrom::Latest => "latest",
            _ => "earliest",
        },
    );
    Ok(client)
}

/// The source's declared schema, if it has one.
fn declared_schema(config: &KafkaSourceConfig, context: &str) -> Result<Option<SchemaRef>> {
    config
        .schema
        .as_ref()
        .map(|s| crate::document::declared::parse_schema(s, context, "source.schema").map(Arc::new))
        .transpose()
}

/// A topic partition's number for per-partition watermarks and the order of a batch's
/// records: FNV-1a of the topic and the partition, the same in every run.
fn partition_number(topic: &str, partition: i32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in topic.bytes().chain([0]).chain(partition.to_le_bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The value fields of a checkpoint's schema (the record's own are added back).
fn value_fields(schema: &SchemaRef) -> SchemaRef {
    let record: Vec<String> = record_fields().iter().map(|f| f.name().clone()).collect();
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .filter(|f| !record.contains(f.name()))
            .map(|f| f.as_ref().clone())
            .collect::<Vec<_>>(),
    ))
}

/// Why a record's value is no document.
fn bad_value(r: &Raw) -> String {
    match &r.value {
        None => "the record has no value (a tombstone)".into(),
        Some(v) if v.iter().all(u8::is_ascii_whitespace) => "the record's value is empty".into(),
        Some(v) => match serde_json::from_slice::<Value>(v) {
            Err(e) => format!("not valid JSON: {e}"),
            Ok(_) => "not a JSON object".into(),
        },
    }
}

/// The record's value as one JSON line, or `None` if it cannot be one. A value spread over
/// lines is checked strictly and written on one; a value without a newline goes as it is
/// (the reader checks it).
fn json_line(r: &Raw) -> Option<std::borrow::Cow<'_, [u8]>> {
    let v = r.value.as_deref()?;
    if v.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    if memchr::memchr2(b'\n', b'\r', v).is_none() {
        return Some(std::borrow::Cow::Borrowed(v));
    }
    match serde_json::from_slice::<Value>(v) {
        Ok(doc @ Value::Object(_)) => Some(std::borrow::Cow::Owned(doc.to_string().into_bytes())),
        _ => None,
    }
}

/// One of the record's own fields, for the records kept.
fn record_column(name: &str, kept: &[Raw]) -> ArrayRef {
    match name {
        "_topic" => Arc::new(StringArray::from_iter(kept.iter().map(|r| Some(&*r.topic)))),
        "_partition" => Arc::new(Int64Array::from_iter_values(
            kept.iter().map(|r| r.partition as i64),
        )),
        "_offset" => Arc::new(Int64Array::from_iter_values(kept.iter().map(|r| r.offset))),
        "_timestamp" => Arc::new(
            TimestampMillisecondArray::from_iter(kept.iter().map(|r| r.timestamp))
                .with_timezone("UTC"),
        ),
        "_key" => Arc::new(StringArray::from_iter(kept.iter().map(|r| {
            r.key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned())
        }))),
        "_headers" => {
            let fields = Fields::from(vec![
                Field::new("key", DataType::Utf8, true),
                Field::new("value", DataType::Utf8, true),
            ]);
            let values = StructBuilder::new(
                fields,
                vec![
                    Box::new(StringBuilder::new()),
                    Box::new(StringBuilder::new()),
                ],
            );
            let mut b = ListBuilder::new(values);
            for r in kept {
                for (k, v) in &r.headers {
                    let s = b.values();
                    s.field_builder::<StringBuilder>(0)
                        .expect("key")
                        .append_value(k);
                    s.field_builder::<StringBuilder>(1)
                        .expect("value")
                        .append_option(v.as_deref());
                    s.append(true);
                }
                b.append(true);
            }
            Arc::new(b.finish())
        }
        other => unreachable!("no record field {other}"),
    }
}

/// Asks the broker for the end of every partition held, every [`LAG_EVERY`], for the lag —
/// on a thread of its own, so a slow answer never holds up reading. Ends with the source.
fn watch_ends(consumer: std::sync::Weak<BaseConsumer<Context>>, shared: std::sync::Weak<Shared>) {
    std::thread::spawn(move || {
        loop {
            let (Some(consumer), Some(shared)) = (consumer.upgrade(), shared.upgrade()) else {
                return;
            };
            let held = shared.assigned.lock().expect("not poisoned").clone();
            let mut highs = BTreeMap::new();
            for (t, p) in &held {
                if let Ok((_, high)) = consumer.fetch_watermarks(t, *p, REQUEST_TIMEOUT) {
                    highs.insert((t.clone(), *p), high);
                }
            }
            let known = !held.is_empty() && highs.len() == held.len();
            // Merged, not replaced: an end that could not be asked for this time, or one the
            // source noted while this round ran (it reads the ends it stops at itself), stays
            // until a newer answer comes. Ends of partitions no longer held are never read:
            // the lag only counts the partitions held.
            shared.highs.lock().expect("not poisoned").extend(highs);
            drop((consumer, shared));
            // Soon again while partitions are still being assigned, so even a short run
            // reports its lag.
            std::thread::sleep(if known { LAG_EVERY } else { LAG_FIRST });
        }
    });
}

/// Up to `max` records from `consumer`, waiting at most `wait` for the first. Errors the
/// client reports while polling (a broker away, a partition's end) are logged: librdkafka
/// retries by itself, and the lag shows a source that is stuck.
pub(super) fn poll<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    max: usize,
    wait: Duration,
    names: &mut HashMap<String, Arc<str>>,
) -> Result<Vec<Raw>> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    // Once records come, a short wait for the next fetch's answer before the batch closes:
    // while a topic has a backlog, batches fill up instead of each holding what one fetch
    // brought.
    let mut lingered = 0;
    while out.len() < max {
        let timeout = if out.is_empty() {
            deadline.saturating_duration_since(Instant::now())
        } else if lingered > 0 {
            LINGER
        } else {
            Duration::ZERO
        };
        match consumer.poll(timeout) {
            None if out.is_empty() && Instant::now() < deadline => continue,
            None if !out.is_empty() && lingered < LINGER_TRIES => lingered += 1,
            None => break,
            Some(Ok(m)) => {
                lingered = 0;
                out.push(Raw::of(&m, names));
            }
            Some(Err(e)) => {
                if matches!(e, rdkafka::error::KafkaError::PartitionEOF(_)) {
                    continue;
                }
                if e.rdkafka_error_code().is_some_and(|c| {
                    matches!(
                        c,
                        rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition
                            | rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed
                            | rdkafka::types::RDKafkaErrorCode::GroupAuthorizationFailed
                    )
                }) {
                    return Err(kafka_error("reading from kafka", e));
                }
                tracing::warn!("kafka: {e}");
                if out.is_empty() && Instant::now() >= deadline {
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// Up to `max` records routed to a partition's task, waiting at most `wait` for the first
/// and briefly for more (as [`poll`] does); whether the route is closed.
async fn receive(
    records: &mut tokio::sync::mpsc::Receiver<Raw>,
    max: usize,
    wait: Duration,
) -> (Vec<Raw>, bool) {
    let mut out = Vec::new();
    match tokio::time::timeout(wait, records.recv()).await {
        Ok(Some(r)) => out.push(r),
        Ok(None) => return (out, true),
        Err(_) => return (out, false),
    }
    let mut lingered = 0;
    while out.len() < max {
        match records.try_recv() {
            Ok(r) => {
                lingered = 0;
                out.push(r);
            }
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return (out, true),
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) if lingered < LINGER_TRIES => {
                lingered += 1;
                tokio::time::sleep(LINGER).await;
            }
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
        }
    }
    (out, false)
}

#[async_trait]
impl Source for KafkaSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn position(&self) -> Position {
        let offsets = self.shared.offsets.lock().expect("not poisoned");
        let mut by_topic: BTreeMap<&str, serde_json::Map<String, Value>> = BTreeMap::new();
        for ((t, p), o) in offsets.iter() {
            by_topic
                .entry(t)
                .or_default()
                .insert(p.to_string(), json!(o));
        }
        Position(json!({ "offsets": by_topic }))
    }

    fn seek(&mut self, position: &Position) -> Result<()> {
        let offsets = self.offsets_of(position)?;
        if self.started {
            return Err(Error::internal("a kafka source seeks before it reads"));
        }
        *self.shared.offsets.lock().expect("not poisoned") = offsets;
        // Records polled before the seek (to infer a schema) may be before or after it.
        self.pending.clear();
        Ok(())
    }

    fn bound(&mut self, end: Option<&Position>) -> Result<()> {
        self.cut = end.map(|e| self.offsets_of(e)).transpose()?;
        Ok(())
    }

    async fn next_batch(&mut self, max_rows: usize) -> Result<Option<SourceBatch>> {
        if self.at_end() {
            return Ok(None);
        }
        let mut raws = std::mem::take(&mut self.pending);
        let eligible = raws.iter().filter(|r| self.may_take(r)).count();
        if matches!(self.feed, Feed::Routed { .. }) {
            self.start()?;
        }
        if eligible < max_rows
            && let Feed::Routed { records, .. } = &mut self.feed
        {
            let wait = if eligible == 0 {
                POLL_WAIT
            } else {
                Duration::ZERO
            };
            let (more, closed) = receive(records, max_rows - eligible, wait).await;
            // The partition was taken away: the task ends with what it has read.
            if closed && more.is_empty() && raws.is_empty() {
                return Ok(None);
            }
            self.caught_up = more.is_empty();
            raws.extend(more);
        } else if eligible < max_rows {
            self.start()?;
            let consumer = self.consumer.clone();
            let want = max_rows - eligible;
            let wait = if eligible == 0 {
                POLL_WAIT
            } else {
                Duration::ZERO
            };
            let mut names = std::mem::take(&mut self.names);
            let (more, names) = tokio::task::spawn_blocking(move || {
                let got = poll(&consumer, want, wait, &mut names);
                (got, names)
            })
            .await
            .map_err(|e| Error::external("polling kafka", e))?;
            self.names = names;
            let more = more?;
            self.caught_up = more.is_empty();
            raws.extend(more);
        }
        // A record below where a partition stands was read before (a group's committed
        // offset behind the checkpoint's): dropped, once. Under a bound, the records past it
        // wait (in order) for a later batch, as do those past `max_rows`.
        let mut offsets = self.shared.offsets.lock().expect("not poisoned").clone();
        // Where each partition stands and where its bound is, looked up once a partition.
        let mut limits: HashMap<(Arc<str>, i32), (Option<i64>, Option<i64>)> = HashMap::new();
        for r in &raws {
            limits
                .entry((r.topic.clone(), r.partition))
                .or_insert_with(|| {
                    let tp = (r.topic.to_string(), r.partition);
                    let cut = self.cut.as_ref().and_then(|c| c.get(&tp).copied());
                    (offsets.get(&tp).copied(), cut)
                });
        }
        let limit = |r: &Raw| limits[&(r.topic.clone(), r.partition)];
        raws.retain(|r| limit(r).0.is_none_or(|next| r.offset >= next));
        let bounded = self.cut.is_some();
        let (mut now, later): (Vec<Raw>, Vec<Raw>) = raws
            .into_iter()
            .partition(|r| !bounded || limit(r).1.is_some_and(|end| r.offset < end));
        let mut rest = now.split_off(now.len().min(max_rows));
        rest.extend(later);
        self.pending = rest;
        let mut next: HashMap<(Arc<str>, i32), i64> = HashMap::new();
        for r in &now {
            let at = next.entry((r.topic.clone(), r.partition)).or_insert(0);
            *at = (*at).max(r.offset + 1);
        }
        for ((t, p), o) in next {
            offsets.insert((t.to_string(), p), o);
        }
        *self.shared.offsets.lock().expect("not poisoned") = offsets;
        let raws = now;
        let (batch, partitions, rejected) = self.decode(raws)?;
        Ok(Some(SourceBatch {
            batch,
            position: self.position(),
            rejected,
            partitions: Some(partitions),
        }))
    }

    fn resume_schema(&mut self, schema: SchemaRef) {
        if self.format == ValueFormat::Json {
            self.set_schema(value_fields(&schema));
        }
    }

    fn lag(&self) -> Option<u64> {
        let offsets = self.shared.offsets.lock().expect("not poisoned");
        let assigned = self.shared.assigned.lock().expect("not poisoned");
        let highs = self.shared.highs.lock().expect("not poisoned");
        let mut lag = 0u64;
        for tp in assigned.iter() {
            let high = *highs.get(tp)?;
            let at = offsets.get(tp).copied().unwrap_or(0);
            lag += high.saturating_sub(at).max(0) as u64;
        }
        Some(lag)
    }

    fn partition_lag(&self) -> Vec<(String, u64)> {
        let offsets = self.shared.offsets.lock().expect("not poisoned");
        let assigned = self.shared.assigned.lock().expect("not poisoned");
        let highs = self.shared.highs.lock().expect("not poisoned");
        assigned
            .iter()
            .filter_map(|tp| {
                let high = *highs.get(tp)?;
                let at = offsets.get(tp).copied().unwrap_or(0);
                Some((
                    format!("{}/{}", tp.0, tp.1),
                    high.saturating_sub(at).max(0) as u64,
                ))
            })
            .collect()
    }

    fn on_checkpoint(&self) -> Option<CheckpointHook> {
        if !self.group {
            return None;
        }
        let consumer = self.consumer.clone();
        Some(Arc::new(move |position: &Position| {
            let Some(topics) = position.0.get("offsets").and_then(Value::as_object) else {
                return;
            };
            let mut tpl = TopicPartitionList::new();
            for (t, parts) in topics {
                for (p, o) in parts.as_object().into_iter().flatten() {
                    if let (Ok(p), Some(o)) = (p.parse::<i32>(), o.as_i64()) {
                        let _ = tpl.add_partition_offset(t, p, Offset::Offset(o));
                    }
                }
            }
            // Only the partitions this process holds may be committed by it.
            if let Ok(mine) = consumer.assignment() {
                let mut held = TopicPartitionList::new();
                for e in tpl.elements() {
                    if mine.find_partition(e.topic(), e.partition()).is_some() {
                        let _ = held.add_partition_offset(e.topic(), e.partition(), e.offset());
                    }
                }
                if held.count() > 0
                    && let Err(e) = consumer.commit(&held, CommitMode::Async)
                {
                    tracing::warn!("kafka: committing offsets to the group failed: {e}");
                }
            }
        }))
    }
}

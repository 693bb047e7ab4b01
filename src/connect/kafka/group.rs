//! A Kafka source scaled out over a consumer group: processes running the same job with the
//! same `groupId` share the topics' partitions, and each partition a process holds runs as a
//! task of its own — a stream over that partition with its own checkpoint (the runtime's
//! `exec::tasks`).
//!
//! One consumer per process polls every partition it holds and routes each record to its
//! partition's task (a [`KafkaSource`] of one partition). On a rebalance the callback waits
//! while the tasks of the partitions taken away finish their batch and checkpoint, so a
//! partition moves only once its state and position are saved; a partition handed over starts
//! at the offset its task's last checkpoint names (whoever saved it).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer, RebalanceProtocol};
use rdkafka::types::RDKafkaRespErr;
use serde_json::Value;

use super::KafkaSourceConfig;
use super::source::{
    Context, KafkaSource, Raw, Rebalance, assign, give_back, place_at, poll, tps_of,
};
use crate::connect::source::{PartitionChange, PartitionedSource, Position, Source, TaskPositions};
use crate::{Error, Result};

/// Records routed to a task and not read yet, at most.
const ROUTE_CAPACITY: usize = 20_000;
/// How long the consumer waits for records before looking at its stop flag again.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// Records polled at once.
const POLL_MAX: usize = 5_000;
/// How long a rebalance waits for the tasks of revoked partitions to checkpoint.
const REVOKE_WAIT: Duration = Duration::from_secs(120);

type Tp = (String, i32);

/// A partition's task id: `orders.v1-3`.
pub fn task_id(topic: &str, partition: i32) -> String {
    format!("{topic}-{partition}")
}

/// The next offset of `tp` in a Kafka source's position.
fn offset_in(position: &Position, tp: &Tp) -> Option<i64> {
    position
        .0
        .get("offsets")?
        .get(&tp.0)?
        .get(tp.1.to_string())
        .and_then(Value::as_i64)
}

/// How long a process stays in the group after its tasks ended: the group evicts a member
/// that died once its session times out (`session.timeout.ms`, librdkafka's default 45 s),
/// then rebalances — half as long again covers that.
fn linger(config: &KafkaSourceConfig) -> Duration {
    let session = config
        .properties
        .get("session.timeout.ms")
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
        .unwrap_or(45_000);
    Duration::from_millis(session + session / 2)
}

/// What the consumer's rebalance callback works with.
struct Hooks {
    config: KafkaSourceConfig,
    context: String,
    positions: TaskPositions,
    changes: tokio::sync::mpsc::UnboundedSender<Result<PartitionChange>>,
    routes: Mutex<HashMap<Tp, tokio::sync::mpsc::Sender<Raw>>>,
    consumer: OnceLock<Weak<BaseConsumer<Context>>>,
}

impl Hooks {
    fn assigned(
        &self,
        consumer: &BaseConsumer<Context>,
        tpl: &mut TopicPartitionList,
        cooperative: bool,
    ) {
        let tps = tps_of(tpl);
        let mut offsets = BTreeMap::new();
        for tp in &tps {
            if let Some(o) = (self.positions)(&task_id(&tp.0, tp.1))
                .as_ref()
                .and_then(|p| offset_in(p, tp))
            {
                offsets.insert(tp.clone(), o);
            }
        }
        place_at(consumer, &offsets, self.config.start_from, tpl);
        assign(consumer, tpl, cooperative);
        let Some(shared) = self.consumer.get().and_then(Weak::upgrade) else {
            return;
        };
        let mut routes = self.routes.lock().expect("not poisoned");
        let mut tasks: Vec<(String, Box<dyn Source>)> = Vec::new();
        for tp in tps {
            let (tx, rx) = tokio::sync::mpsc::channel(ROUTE_CAPACITY);
            let id = task_id(&tp.0, tp.1);
            match KafkaSource::routed(&self.config, shared.clone(), tp.clone(), rx, &self.context) {
                Ok(source) => {
                    routes.insert(tp, tx);
                    tasks.push((id, Box::new(source)));
                }
                Err(e) => {
                    let _ = self.changes.send(Err(e));
                    return;
                }
            }
        }
        tracing::info!(
            partitions = ?tasks.iter().map(|t| t.0.as_str()).collect::<Vec<_>>(),
            "kafka: partitions assigned"
        );
        let _ = self.changes.send(Ok(PartitionChange::Assigned(tasks)));
    }

    fn revoked(
        &self,
        consumer: &BaseConsumer<Context>,
        tpl: &TopicPartitionList,
        cooperative: bool,
    ) {
        let tps = tps_of(tpl);
        let ids: Vec<String> = tps.iter().map(|tp| task_id(&tp.0, tp.1)).collect();
        tracing::info!(partitions = ?ids, "kafka: partitions revoked; their tasks checkpoint");
        let (tx, rx) = std::sync::mpsc::channel();
        let change = PartitionChange::Revoked(
            ids,
            Box::new(move || {
                let _ = tx.send(());
            }),
        );
        // Nobody to wait for once the job has stopped.
        if self.changes.send(Ok(change)).is_ok() && rx.recv_timeout(REVOKE_WAIT).is_err() {
            tracing::warn!(
                "kafka: the tasks of revoked partitions did not checkpoint within {} s",
                REVOKE_WAIT.as_secs()
            );
        }
        let mut routes = self.routes.lock().expect("not poisoned");
        for tp in &tps {
            routes.remove(tp);
        }
        drop(routes);
        give_back(consumer, tpl, cooperative);
    }
}

impl Rebalance for Hooks {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Context>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.assigned(consumer, tpl, cooperative)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.revoked(consumer, tpl, cooperative)
            }
            other => tracing::warn!("kafka: rebalance failed: {other:?}"),
        }
    }
}

/// The partitions of a consumer group this process holds, as tasks.
pub struct KafkaGroup {
    changes: tokio::sync::mpsc::UnboundedReceiver<Result<PartitionChange>>,
    stop: Arc<AtomicBool>,
    driver: Option<std::thread::JoinHandle<()>>,
    bounded: bool,
    linger: Duration,
}

impl KafkaGroup {
    /// Joins `config`'s group; `positions` finds a partition's checkpointed position.
    pub fn open(
        config: &KafkaSourceConfig,
        context: &str,
        positions: TaskPositions,
    ) -> Result<Self> {
        if config.group_id.is_none() {
            return Err(Error::config(
                context,
                "runtime.scaleOut: the source needs a groupId, whose members share its partitions",
            ));
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let hooks = Arc::new(Hooks {
            config: config.clone(),
            context: context.to_string(),
            positions,
            changes: tx,
            routes: Mutex::new(HashMap::new()),
            consumer: OnceLock::new(),
        });
        // Checked once here rather than in every rebalance.
        if config.format == super::ValueFormat::Json && config.schema.is_none() {
            return Err(Error::config(
                context,
                "source.schema: a job scaled out over a consumer group reads with a declared schema (each partition's task would infer its own)",
            ));
        }
        let consumer = KafkaSource::group_consumer(config, context, hooks.clone())?;
        let _ = hooks.consumer.set(Arc::downgrade(&consumer));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let driver = std::thread::Builder::new()
            .name("fluxion-kafka-group".into())
            .spawn(move || drive(consumer, hooks, flag))
            .map_err(|e| Error::external("starting the kafka consumer", e))?;
        Ok(KafkaGroup {
            changes: rx,
            stop,
            driver: Some(driver),
            bounded: config.end_at.is_some(),
            linger: linger(config),
        })
    }
}

/// Polls the consumer (which serves its rebalances) and routes each record to its
/// partition's task until told to stop.
fn drive(consumer: Arc<BaseConsumer<Context>>, hooks: Arc<Hooks>, stop: Arc<AtomicBool>) {
    let mut names = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        let raws = match poll(&consumer, POLL_MAX, POLL_WAIT, &mut names) {
            Ok(r) => r,
            Err(e) => {
                let _ = hooks.changes.send(Err(e));
                return;
            }
        };
        let mut route: Option<(Tp, tokio::sync::mpsc::Sender<Raw>)> = None;
        for r in raws {
            let (topic, partition) = r.tp();
            if route
                .as_ref()
                .is_none_or(|(tp, _)| tp.1 != partition || tp.0 != topic)
            {
                let tp = (topic.to_string(), partition);
                let tx = hooks.routes.lock().expect("not poisoned").get(&tp).cloned();
                route = tx.map(|tx| (tp, tx));
            }
            // No route: a partition no longer held (its next owner reads it from its
            // checkpoint), or a task that has ended.
            if let Some((_, tx)) = &route {
                let _ = tx.blocking_send(r);
            }
        }
    }
}

impl Drop for KafkaGroup {
    fn drop(&mut self) {
        // Leaving the group revokes every partition; the tasks have stopped by now, so the
        // callback must not wait for them.
        self.changes.close();
        self.stop.store(true, Ordering::SeqCst);
        if let Some(d) = self.driver.take() {
            let _ = d.join();
        }
    }
}

#[async_trait]
impl PartitionedSource for KafkaGroup {
    async fn next_change(&mut self) -> Result<Option<PartitionChange>> {
        self.changes.recv().await.transpose()
    }

    fn bounded(&self) -> bool {
        self.bounded
    }

    fn linger(&self) -> Duration {
        self.linger
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_partition_offset_is_read_from_a_position() {
        let p = Position(json!({"offsets": {"orders": {"0": 12, "3": 40}}}));
        assert_eq!(offset_in(&p, &("orders".into(), 3)), Some(40));
        assert_eq!(offset_in(&p, &("orders".into(), 1)), None);
        assert_eq!(offset_in(&p, &("other".into(), 0)), None);
        assert_eq!(task_id("orders.v1", 3), "orders.v1-3");
    }
}

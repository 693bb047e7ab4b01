//! The Nexmark source: the benchmark's bid events, generated in process by the `nexmark`
//! crate (RisingWave's generator), as Arrow batches — `auction`, `bidder`, `price`, `channel`,
//! `url`, `dateTime` (a date), `extra`. The position is the number of bids generated, so a
//! restart or a replay regenerates the same bids (event times count from a fixed base time,
//! 2026-01-01, not from the wall clock).
//!
//! Only bids are generated: Nexmark's q0–q2, q5 and q7 read bids alone; persons and auctions
//! (for the join queries) are not built yet.

use std::sync::Arc;

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

/// Bids from the Nexmark generator.
pub struct NexmarkSource {
    config: NexmarkConfig,
    generated: u64,
    /// How many bids in all (`None`: unbounded).
    events: Option<u64>,
    end: Option<u64>,
    schema: SchemaRef,
}

impl NexmarkSource {
    /// `events` bids (or without end).
    pub fn new(events: Option<u64>) -> Self {
        let config = NexmarkConfig {
            base_time: BASE_TIME_MS,
            ..Default::default()
        };
        let utc: Arc<str> = "UTC".into();
        let schema = Arc::new(Schema::new(vec![
            Field::new("auction", DataType::Int64, false),
            Field::new("bidder", DataType::Int64, false),
            Field::new("price", DataType::Int64, false),
            Field::new("channel", DataType::Utf8, false),
            Field::new("url", DataType::Utf8, false),
            Field::new(
                "dateTime",
                DataType::Timestamp(TimeUnit::Millisecond, Some(utc)),
                false,
            ),
            Field::new("extra", DataType::Utf8, false),
        ]));
        NexmarkSource {
            config,
            generated: 0,
            events,
            end: None,
            schema,
        }
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
        let n = (max_rows.max(1) as u64).min(left) as usize;
        let generator = EventGenerator::new(self.config.clone())
            .with_type_filter(EventType::Bid)
            .with_offset(self.generated);
        let mut auction = Vec::with_capacity(n);
        let mut bidder = Vec::with_capacity(n);
        let mut price = Vec::with_capacity(n);
        let mut time = Vec::with_capacity(n);
        let mut channel = StringBuilder::with_capacity(n, n * 8);
        let mut url = StringBuilder::with_capacity(n, n * 40);
        let mut extra = StringBuilder::with_capacity(n, n * 16);
        for event in generator.take(n) {
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
        self.generated += n as u64;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(auction)),
            Arc::new(Int64Array::from(bidder)),
            Arc::new(Int64Array::from(price)),
            Arc::new(channel.finish()),
            Arc::new(url.finish()),
            Arc::new(TimestampMillisecondArray::from(time).with_timezone("UTC")),
            Arc::new(extra.finish()),
        ];
        Ok(Some(SourceBatch {
            batch: RecordBatch::try_new(self.schema.clone(), columns)?,
            position: self.position(),
            rejected: Vec::new(),
            partitions: None,
        }))
    }
}

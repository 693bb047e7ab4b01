//! JSON lines → Arrow on one core: the reader every batch input and stream uses (one strict
//! pass per line, straight into Arrow columns, dates included), over the quickstart orders and
//! over Nexmark bids whose `dateTime` is an extended-JSON date.
//!
//! `cargo bench --bench decode` prints MB/s (criterion's throughput) for each input, inferred,
//! with a declared schema, and for the strict line check alone.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fluxion::connect::nexmark::{NexmarkKind, NexmarkSource};
use fluxion::connect::source::Source;
use fluxion::document::declared::parse_schema;
use fluxion::document::decode::{JsonlOptions, decode};
use fluxion::document::lines::check;
use serde_json::{Value, json};

/// About `bytes` of the quickstart orders (examples/data/orders.jsonl repeated).
fn orders(bytes: usize) -> Vec<u8> {
    let one = std::fs::read("examples/data/orders.jsonl").expect("examples/data/orders.jsonl");
    let mut out = Vec::with_capacity(bytes + one.len());
    while out.len() < bytes {
        out.extend_from_slice(&one);
    }
    out
}

/// `n` Nexmark bids as JSON lines, dates written as `{"$date": "…"}`.
fn bids(n: u64) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut source = NexmarkSource::of(NexmarkKind::parse("bid").unwrap(), Some(n));
    let mut out = Vec::new();
    rt.block_on(async {
        while let Some(b) = source.next_batch(1 << 16).await.unwrap() {
            fluxion::document::encode::write_batch(&mut out, &b.batch).unwrap();
        }
    });
    out
}

fn one_core(schema: Option<Value>) -> JsonlOptions {
    JsonlOptions {
        max_partitions: 1,
        schema: schema.map(|s| Arc::new(parse_schema(&s, "bench", "schema").unwrap())),
        ..Default::default()
    }
}

fn decoding(c: &mut Criterion) {
    let inputs = [
        (
            "orders",
            orders(64 << 20),
            json!({"orderId": "string", "customerId": "string", "status": "string",
                   "orderValue": "double", "currency": "string", "createdAt": "string",
                   "shipping": {"city": "string", "country": "string", "express": "bool"},
                   "items": [{"sku": "string", "qty": "long", "price": "double"}],
                   "coupon": "string"}),
        ),
        (
            "bids",
            bids(300_000),
            json!({"auction": "long", "bidder": "long", "price": "long", "channel": "string",
                   "url": "string", "dateTime": "date", "extra": "string"}),
        ),
    ];
    let mut group = c.benchmark_group("decode");
    group.sample_size(10);
    for (name, data, schema) in inputs {
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(format!("{name}/inferred"), |b| {
            b.iter(|| decode(&data, name, &one_core(None)).unwrap())
        });
        group.bench_function(format!("{name}/declared"), |b| {
            let opts = one_core(Some(schema.clone()));
            b.iter(|| decode(&data, name, &opts).unwrap())
        });
        // The strict grammar check alone, reading no values: the floor of the reader.
        group.bench_function(format!("{name}/check-only"), |b| {
            b.iter(|| check(&data).len())
        });
    }
    group.finish();
}

criterion_group!(benches, decoding);
criterion_main!(benches);

//! The quickstart pipeline (PAID orders → count and sum per customer), JSON path vs SQL path,
//! over the same in-memory table. Both compile to one DataFusion plan, so the difference is
//! planning overhead plus any difference in the plans themselves.
//!
//! `cargo bench --bench quickstart`; `benches/compare.py` compares with DuckDB and Polars.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fluxion::{Engine, Pipeline};

const EVENTS: usize = 200_000;

/// Quickstart events, shaped like `generate.py --shape quickstart` (deterministic LCG).
fn events(n: usize) -> Vec<u8> {
    let statuses = ["PAID", "PAID", "PAID", "PENDING", "CANCELLED", "REFUNDED"];
    let mut state: u64 = 7;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    let mut out = Vec::with_capacity(n * 90);
    for i in 0..n {
        let customer = next() % (n as u64 / 12).max(10) + 1;
        let status = statuses[(next() % 6) as usize];
        let cents = next() % 40_000 + 200;
        out.extend_from_slice(
            format!(
                "{{\"orderId\":\"o-{i:07}\",\"customerId\":\"c-{customer:05}\",\"status\":\"{status}\",\"orderValue\":{}.{:02}}}\n",
                cents / 100,
                cents % 100
            )
            .as_bytes(),
        );
    }
    out
}

fn quickstart(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let engine = Engine::new();
    engine.register_jsonl("orders", &events(EVENTS)).unwrap();
    let pipeline = Pipeline::from_json_str(
        r#"[{"$match": {"status": "PAID"}},
            {"$group": {"_id": "$customerId", "orderCount": {"$count": {}}, "lifetimeValue": {"$sum": "$orderValue"}}}]"#,
    )
    .unwrap();
    let sql = "SELECT customerId AS _id, count(*) AS orderCount, sum(orderValue) AS lifetimeValue \
               FROM orders WHERE status = 'PAID' GROUP BY customerId";

    let mut group = c.benchmark_group("quickstart");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("json", |b| {
        b.to_async(&rt).iter(|| async {
            let df = engine.pipeline("orders", &pipeline).await.unwrap();
            df.collect().await.unwrap()
        })
    });
    group.bench_function("sql", |b| {
        b.to_async(&rt).iter(|| async {
            let df = engine.sql(sql).await.unwrap();
            df.collect().await.unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, quickstart);
criterion_main!(benches);

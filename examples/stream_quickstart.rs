//! The quickstart as a stream, through the library builder: PAID orders grouped per customer,
//! continuously, from `examples/data/orders.jsonl` into a JSON-lines file of upserts, with
//! checkpoints in a directory. Checks that the last upsert per customer is the expected batch
//! answer (`examples/orders-ltv.expected.jsonl`) and exits non-zero otherwise.
//!
//!     cargo run --example stream_quickstart

use std::collections::BTreeMap;

use fluxion::connect::jsonl_sink::JsonlFileSink;
use fluxion::connect::jsonl_source::JsonlFileSource;
use fluxion::runtime::builder::Stream;
use fluxion::runtime::checkpoint::DirCheckpoints;
use serde_json::Value;

#[tokio::main]
async fn main() -> fluxion::Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = dir.path().join("ltv.jsonl");
    let handle = Stream::builder("orders-ltv-stream")
        .source(JsonlFileSource::open(
            "examples/data/orders.jsonl",
            None,
            false,
        )?)
        .stages_json(
            r#"[{"$match": {"status": "PAID"}},
                {"$group": {"_id": "$customerId", "orderCount": {"$count": {}},
                            "lifetimeValue": {"$sum": "$orderValue"}}}]"#,
        )?
        .sink(JsonlFileSink::open(&out)?)
        .checkpoints(DirCheckpoints::new(dir.path().join("checkpoints"))?)
        .micro_batch_size(50)
        .start()?;
    let stats = handle.wait().await?;

    let lines = |path: &std::path::Path| -> Vec<Value> {
        std::fs::read_to_string(path)
            .expect("readable")
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect()
    };
    let mut last = BTreeMap::new();
    for d in lines(&out) {
        last.insert(d["_id"].as_str().expect("customer id").to_string(), d);
    }
    let expected = lines(std::path::Path::new("examples/orders-ltv.expected.jsonl"));
    assert_eq!(last.len(), expected.len(), "one group per customer");
    for e in &expected {
        let g = &last[e["_id"].as_str().expect("customer id")];
        assert_eq!(g["orderCount"], e["orderCount"], "{g} vs {e}");
        let (a, b) = (
            g["lifetimeValue"].as_f64().expect("number"),
            e["lifetimeValue"].as_f64().expect("number"),
        );
        assert!((a - b).abs() < 1e-6, "{g} vs {e}");
    }
    println!(
        "ok: {} orders in {} micro-batches, {} upserts, {} customers as expected",
        stats.input_rows,
        stats.batches,
        stats.output_rows,
        expected.len()
    );
    Ok(())
}

//! The quickstart as a stream, through the library builder — written like the seed's Java
//! quickstart: connector configs, a runtime config, stages loaded from a JSON file, a pipeline
//! id, a state (checkpoint) store, a handle with metrics. PAID orders grouped per customer,
//! continuously, from `examples/data/orders.jsonl` into a JSON-lines file of upserts. Checks that the last upsert per customer is the expected batch
//! answer (`examples/orders-ltv.expected.jsonl`) and exits non-zero otherwise.
//!
//!     cargo run --example stream_quickstart

use std::collections::BTreeMap;

use fluxion::connect::config::{SinkConfig, SourceConfig};
use fluxion::job::RuntimeConfig;
use fluxion::runtime::builder::Stream;
use fluxion::runtime::state::checkpoint::DirCheckpoints;
use serde_json::Value;

#[tokio::main]
async fn main() -> fluxion::Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = dir.path().join("ltv.jsonl");
    // 1. Connector configs (what a job file's "source" and "sink" say).
    let source_config = SourceConfig::File {
        path: "examples/data/orders.jsonl".into(),
        format: None,
        table: None,
        schema: None,
        follow: false,
        time_field: None,
    };
    let sink_config = SinkConfig::File {
        path: out.display().to_string(),
        format: None,
    };
    // 2. The runtime config.
    let runtime_config = RuntimeConfig {
        micro_batch_size: Some(50),
        max_batch_delay_ms: None,
        queue_capacity: Some(4),
        source_queue_capacity: Some(2),
        worker_threads: Some(2),
        group_upserts: None,
        scale_out: false,
    };
    // 3. The pipeline definition, run by the orchestrator; the handle has its metrics.
    let handle = Stream::builder("orders-ltv")
        .source_config(&source_config)?
        .stages_file("examples/orders-ltv.pipeline.json")?
        .sink_config(&sink_config)?
        .runtime_config(&runtime_config)
        .checkpoints(DirCheckpoints::new(dir.path().join("checkpoints"))?)
        .start()?;
    let metrics = handle.registry();
    let stats = handle.wait().await?;
    let totals = metrics
        .totals("orders-ltv")
        .expect("metrics of committed batches");
    assert_eq!(totals.batches, stats.batches, "the metrics saw every batch");

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

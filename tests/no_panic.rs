//! Nothing a user can write panics: random JSON values — mutated corpus pipelines, job files
//! and checkpoints, and plain random values — go through validation, planning (what
//! `fluxion validate` and `fluxion explain` do), the streaming operators' planning, and a
//! restart from a (damaged) checkpoint. Each must give a result or an error; a panic fails the
//! test with the input that caused it.
//!
//! `FLUXION_NOPANIC_COUNT` sets how many inputs of each kind (default 150);
//! `FLUXION_NOPANIC_SEED` the seed (default 7).

use datafusion::sql::unparser::plan_to_sql;
use fluxion::connect::memory::{MemorySink, MemorySource};
use fluxion::job::Job;
use fluxion::runtime::exec::micro_batch::{RuntimeOptions, run};
use fluxion::runtime::state::checkpoint::{CheckpointStore, DirCheckpoints};
use fluxion::{Engine, Pipeline};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

fn count() -> usize {
    std::env::var("FLUXION_NOPANIC_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150)
}

fn seed() -> u64 {
    std::env::var("FLUXION_NOPANIC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7)
}

/// Words a mutation puts in: stage and operator names, option names, units.
const WORDS: &[&str] = &[
    "$match",
    "$group",
    "$project",
    "$addFields",
    "$set",
    "$unset",
    "$sort",
    "$limit",
    "$skip",
    "$unwind",
    "$count",
    "$bucket",
    "$bucketAuto",
    "$sortByCount",
    "$lookup",
    "$facet",
    "$replaceRoot",
    "$setWindowFields",
    "$densify",
    "$fill",
    "$tumblingWindow",
    "$hoppingWindow",
    "$sessionWindow",
    "$sum",
    "$avg",
    "$min",
    "$max",
    "$push",
    "$first",
    "$last",
    "$topN",
    "$percentile",
    "$median",
    "$mergeObjects",
    "$dateAdd",
    "$dateTrunc",
    "$dateDiff",
    "$multiply",
    "$divide",
    "$mod",
    "$pow",
    "$range",
    "$slice",
    "$substr",
    "$regexMatch",
    "$let",
    "$map",
    "$reduce",
    "$filter",
    "$switch",
    "$cond",
    "$expr",
    "$in",
    "$gte",
    "$lt",
    "$eq",
    "$size",
    "$arrayElemAt",
    "$toDate",
    "$convert",
    "$literal",
    "$$ROOT",
    "$$NOW",
    "$_id",
    "$orderValue",
    "$items",
    "$createdAt",
    "_id",
    "size",
    "unit",
    "interval",
    "gap",
    "hopSize",
    "pipeline",
    "boundaries",
    "default",
    "output",
    "groupBy",
    "buckets",
    "n",
    "sortBy",
    "window",
    "documents",
    "range",
    "step",
    "bounds",
    "partitionBy",
    "day",
    "week",
    "month",
    "ms",
    "hour",
    "allowedLateness",
    "idleTimeout",
    "offset",
    "source",
    "sink",
    "checkpoint",
    "errorPolicy",
    "deadLetter",
    "runtime",
    "microBatchSize",
    "type",
    "path",
    "format",
    "schema",
    "follow",
    "timeField",
    "memory",
    "file",
    "PARQUET",
    "retry",
    "then",
];

fn random_number(rng: &mut StdRng) -> Value {
    match rng.random_range(0..10) {
        0 => json!(i64::MAX),
        1 => json!(i64::MIN),
        2 => json!(-1),
        3 => json!(0),
        4 => json!(1e308),
        5 => json!(-0.5),
        6 => json!(u64::MAX),
        7 => json!(1i64 << 53),
        _ => json!(rng.random_range(-1000..1000)),
    }
}

fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    let word = |rng: &mut StdRng| WORDS[rng.random_range(0..WORDS.len())].to_string();
    match rng.random_range(0..if depth > 3 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 | 3 => random_number(rng),
        4 => json!(word(rng)),
        5 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.random_range(0..4))
                .map(|_| (word(rng), random_value(rng, depth + 1)))
                .collect(),
        ),
    }
}

/// `v` with one to three random changes somewhere inside.
fn mutate(v: &Value, rng: &mut StdRng) -> Value {
    let mut out = v.clone();
    for _ in 0..rng.random_range(1..=3) {
        mutate_in(&mut out, rng, 0);
    }
    out
}

fn mutate_in(v: &mut Value, rng: &mut StdRng, depth: u32) {
    let here = rng.random_range(0..4) == 0 || depth > 8;
    match v {
        Value::Object(map) if !map.is_empty() && !here => {
            let i = rng.random_range(0..map.len());
            let key = map.keys().nth(i).cloned().unwrap_or_default();
            match rng.random_range(0..6) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    let w = WORDS[rng.random_range(0..WORDS.len())].to_string();
                    let value = map.remove(&key).unwrap_or(Value::Null);
                    map.insert(w, value);
                }
                2 => {
                    let w = WORDS[rng.random_range(0..WORDS.len())].to_string();
                    map.insert(w, random_value(rng, depth));
                }
                _ => {
                    if let Some(child) = map.get_mut(&key) {
                        mutate_in(child, rng, depth + 1);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() && !here => {
            let i = rng.random_range(0..items.len());
            match rng.random_range(0..5) {
                0 => {
                    items.remove(i);
                }
                1 => {
                    let copy = items[i].clone();
                    items.insert(i, copy);
                }
                _ => mutate_in(&mut items[i], rng, depth + 1),
            }
        }
        Value::Number(_) if rng.random_bool(0.7) => *v = random_number(rng),
        _ => *v = random_value(rng, depth),
    }
}

/// The oracle corpus's pipelines with the dataset each runs over.
fn corpus() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir("tests/oracle/cases")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files {
        let cases: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        for case in cases.as_array().into_iter().flatten() {
            let data = case["data"].as_str().unwrap_or("orders").to_string();
            out.push((data, case["pipeline"].clone()));
        }
    }
    assert!(out.len() > 300, "the corpus is there");
    out
}

/// An engine with the three oracle datasets registered under their names.
fn engine() -> Engine {
    let engine = Engine::new();
    for name in ["orders", "sensors", "events"] {
        let data = std::fs::read(format!("tests/oracle/data/{name}.jsonl")).unwrap();
        engine.register_jsonl(name, &data).unwrap();
    }
    engine
}

/// Runs `check` on its own task; a panic fails the test naming `input`.
async fn no_panic<F>(what: &str, input: &Value, check: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    if let Err(e) = tokio::spawn(check).await
        && e.is_panic()
    {
        panic!("{what} panicked on this input:\n{input}");
    }
}

/// What `validate` and `explain` do with a pipeline, and the stream operators' planning.
async fn plan_pipeline(engine: Engine, table: String, v: Value) {
    let Ok(p) = Pipeline::from_value(&v) else {
        return;
    };
    let _ = fluxion::runtime::window::WindowOperator::plan(&p, Some(&json!("$createdAt")));
    let _ = fluxion::runtime::state::group::ContinuousGroup::plan(&p);
    let _ = fluxion::runtime::query::check_stages(&p);
    let Ok(df) = engine.pipeline(&table, &p).await else {
        return;
    };
    let _ = plan_to_sql(df.logical_plan());
    if df.clone().into_optimized_plan().is_ok() {
        let _ = df.create_physical_plan().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_pipelines_give_errors_not_panics() {
    let corpus = corpus();
    let engine = engine();
    let mut rng = StdRng::seed_from_u64(seed());
    for i in 0..count() * 2 {
        let (table, v) = if i % 5 == 0 {
            // A plain random value, sometimes an array of random stages.
            let v = match rng.random_bool(0.5) {
                true => random_value(&mut rng, 0),
                false => Value::Array(
                    (0..rng.random_range(1..4))
                        .map(|_| {
                            let stage = WORDS[rng.random_range(0..21)].to_string();
                            json!({ stage: random_value(&mut rng, 1) })
                        })
                        .collect(),
                ),
            };
            ("orders".to_string(), v)
        } else {
            let (table, p) = &corpus[rng.random_range(0..corpus.len())];
            (table.clone(), mutate(p, &mut rng))
        };
        no_panic(
            "planning a pipeline",
            &v,
            plan_pipeline(engine.clone(), table, v.clone()),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_job_files_give_errors_not_panics() {
    let mut jobs = Vec::new();
    for f in [
        "examples/orders-ltv.json",
        "examples/windows/clicks-per-minute.json",
        "examples/nexmark/q5.json",
        "examples/nexmark/q11.json",
    ] {
        jobs.push(serde_json::from_slice::<Value>(&std::fs::read(f).unwrap()).unwrap());
    }
    jobs.push(
        json!({"source": {"type": "memory", "documents": [{"a": 1}]},
                     "pipeline": [{"$group": {"_id": "$a", "n": {"$count": {}}}}],
                     "checkpoint": {"store": "/nonexistent/fluxion-test/cp"},
                     "errorPolicy": {"retry": {"maxAttempts": 2}, "then": "deadLetter"},
                     "deadLetter": {"type": "file", "path": "/nonexistent/dead.jsonl"},
                     "runtime": {"microBatchSize": 2}}),
    );
    let mut rng = StdRng::seed_from_u64(seed() + 1);
    for _ in 0..count() {
        let v = mutate(&jobs[rng.random_range(0..jobs.len())], &mut rng);
        let text = v.to_string();
        let check = async move {
            let Ok(job) = Job::from_json_str(&text, "job.json") else {
                return;
            };
            let _ = job.source_location();
            let _ = job.query();
            if let Some(p) = &job.error_policy {
                let _ = fluxion::runtime::policy::error_policy::ErrorPolicy::from_json(
                    p,
                    "errorPolicy",
                );
            }
            // Builds the stream (opens the source, sinks and store) without starting it.
            let _ = fluxion::runtime::builder::Stream::from_job(&job).await;
        };
        no_panic("reading a job file", &v, check).await;
    }
}

/// 60 orders of the oracle dataset.
fn orders() -> Vec<u8> {
    let data = std::fs::read_to_string("tests/oracle/data/orders.jsonl").unwrap();
    data.lines()
        .take(60)
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .into_bytes()
}

/// Runs `pipeline` over the orders from the checkpoint in `dir` (if any).
async fn run_from(dir: std::path::PathBuf, pipeline: Value) -> fluxion::Result<()> {
    let p = Pipeline::from_value(&pipeline)?;
    let mut source = MemorySource::from_jsonl(&orders())?;
    let mut store = DirCheckpoints::new(dir)?;
    let options = RuntimeOptions {
        micro_batch_size: 7,
        time_field: Some(json!({"$toDate": "$createdAt"})),
        ..Default::default()
    };
    run(
        &Engine::new(),
        &p,
        &mut source,
        &mut MemorySink::default(),
        &mut store,
        &options,
    )
    .await
    .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_foreign_checkpoints_give_errors_not_panics() {
    let pipelines = [
        json!([{"$match": {"status": "PAID"}}, {"$group": {"_id": "$customerId", "v": {"$sum": "$orderValue"}, "n": {"$count": {}}}}]),
        json!([{"$sessionWindow": {"gap": {"size": 1, "unit": "day"}, "partitionBy": "$customerId",
                "pipeline": [{"$group": {"_id": "$customerId", "n": {"$count": {}}}}]}}]),
        json!([{"$tumblingWindow": {"interval": {"size": 7, "unit": "day"},
                "pipeline": [{"$group": {"_id": "$status", "v": {"$avg": "$orderValue"}}}]}}]),
        json!([{"$project": {"status": 1}}]),
    ];
    // Real checkpoints of each pipeline, to damage.
    let base = tempfile::tempdir().unwrap();
    let mut originals = Vec::new();
    for (i, p) in pipelines.iter().enumerate() {
        let dir = base.path().join(format!("cp{i}"));
        run_from(dir.clone(), p.clone())
            .await
            .unwrap_or_else(|e| panic!("{p}: {e}"));
        let mut store = DirCheckpoints::new(&dir).unwrap();
        assert!(store.load().await.unwrap().is_some(), "{p} checkpointed");
        let checkpoint: Value =
            serde_json::from_slice(&std::fs::read(dir.join("checkpoint.json")).unwrap()).unwrap();
        let state = checkpoint["state"]
            .as_str()
            .map(|f| std::fs::read(dir.join(f)).unwrap());
        originals.push((p.clone(), checkpoint, state));
    }
    let mut rng = StdRng::seed_from_u64(seed() + 2);
    for k in 0..count() {
        let (_, checkpoint, state) = &originals[rng.random_range(0..originals.len())];
        // Resumed by its own or by another pipeline.
        let pipeline = originals[rng.random_range(0..originals.len())].0.clone();
        let dir = base.path().join(format!("damaged{k}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cp = checkpoint.clone();
        match rng.random_range(0..3) {
            // The plan mark taken away: an older checkpoint, resumed by anything.
            0 => {
                cp.as_object_mut().unwrap().remove("plan");
            }
            1 => cp = mutate(&cp, &mut rng),
            _ => {}
        }
        std::fs::write(dir.join("checkpoint.json"), cp.to_string()).unwrap();
        if let (Some(bytes), Some(name)) = (state, cp["state"].as_str())
            && !name.contains('/')
            && !name.is_empty()
        {
            let mut bytes = bytes.clone();
            match rng.random_range(0..3) {
                0 => {
                    for _ in 0..rng.random_range(1..8) {
                        let i = rng.random_range(0..bytes.len());
                        bytes[i] = rng.random();
                    }
                }
                1 => bytes.truncate(rng.random_range(0..bytes.len())),
                _ => {}
            }
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        let input = json!({"checkpoint": cp, "pipeline": pipeline});
        no_panic("resuming from a checkpoint", &input, async move {
            let _ = run_from(dir, pipeline).await;
        })
        .await;
    }
}

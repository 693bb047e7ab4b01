//! Event-time windows on a stream (`runtime::window_state`, `dsl::stream_window`): tumbling and
//! hopping windows emit when the watermark passes their end, with the same contents whatever
//! the micro-batch size; out-of-order documents within the allowed lateness are kept, later
//! ones are counted and dead-lettered as late; a bounded source flushes every open window; a
//! restart inside an open window emits every window exactly once. The expected windows are
//! computed here, in plain Rust, from the rule: a document is late when every window holding
//! it ends at or before (largest event time before it − allowed lateness).

mod common;

use std::collections::BTreeMap;

use fluxion::connect::jsonl_sink::JsonlFileSink;
use fluxion::connect::jsonl_source::JsonlFileSource;
use fluxion::connect::memory::{MemorySink, MemorySource};
use fluxion::document::encode::to_documents;
use fluxion::runtime::exec::micro_batch::{RuntimeOptions, run, run_with_dead_letters};
use fluxion::runtime::policy::error_policy::ErrorPolicy;
use fluxion::runtime::query::StreamQuery;
use fluxion::runtime::state::checkpoint::{DirCheckpoints, MemoryCheckpoints};
use fluxion::{Engine, Pipeline};
use serde_json::{Value, json};

/// 200 events over ~100 s, mostly in order, some a few seconds late, a few very late.
fn events() -> Vec<Value> {
    let mut out = Vec::new();
    let mut seed = 42u64;
    for i in 0..200i64 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let jitter = (seed >> 33) as i64 % 4_000; // up to 4 s out of order
        let very_late = if i % 37 == 36 { 30_000 } else { 0 };
        let ts = 1_000_000 + i * 500 - jitter - very_late;
        out.push(json!({"_id": i, "ts": ts, "k": format!("k{}", i % 3), "v": i}));
    }
    out
}

fn jsonl(docs: &[Value]) -> String {
    docs.iter().map(|d| format!("{d}\n")).collect()
}

/// (window start ms, key) → (count, total).
type Windows = BTreeMap<(i64, String), (i64, i64)>;

/// The windows by the rule, computed directly: (start, key) → (count, total), and the late ids.
fn expected(docs: &[Value], size: i64, hop: i64, lateness: i64) -> (Windows, Vec<i64>) {
    let mut windows = BTreeMap::new();
    let mut late = Vec::new();
    let mut max: Option<i64> = None;
    for d in docs {
        let t = d["ts"].as_i64().unwrap();
        let wm = max.map(|m| m - lateness);
        let last = t.div_euclid(hop) * hop;
        let mut any = false;
        for k in 0..size / hop {
            let s = last - k * hop;
            if wm.is_none_or(|w| s + size > w) {
                let e = windows
                    .entry((s, d["k"].as_str().unwrap().to_string()))
                    .or_insert((0, 0));
                e.0 += 1;
                e.1 += d["v"].as_i64().unwrap();
                any = true;
            }
        }
        if !any {
            late.push(d["_id"].as_i64().unwrap());
        }
        max = Some(max.map_or(t, |m| m.max(t)));
    }
    (windows, late)
}

fn pipeline(stage: &str, extra: Value) -> Pipeline {
    let mut spec = json!({
        "interval": {"size": 10, "unit": "second"},
        "allowedLateness": {"size": 2, "unit": "second"},
        "pipeline": [{"$group": {"_id": "$k", "n": {"$sum": 1}, "total": {"$sum": "$v"}}},
                     {"$sort": {"_id": 1}}]
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    Pipeline::from_value(&json!([{ stage: spec }])).unwrap()
}

fn sql_query(sql: &str) -> StreamQuery {
    StreamQuery::Sql {
        sql: sql.to_string(),
        table: "input".to_string(),
    }
}

/// SQL rows with `window_start` / `window_end` in the JSON spelling's `_stream_meta.window`.
fn as_window_meta(rows: &[Value]) -> Vec<Value> {
    rows.iter()
        .map(|d| {
            let mut d = d.clone();
            let o = d.as_object_mut().unwrap();
            let start = o.remove("window_start").unwrap();
            let end = o.remove("window_end").unwrap_or(Value::Null);
            o.insert(
                "_stream_meta".into(),
                json!({"window": {"start": start, "end": end}}),
            );
            d
        })
        .collect()
}

/// (start ms, key) → (n, total) of emitted window documents.
fn emitted(docs: &[Value]) -> Windows {
    let mut out = BTreeMap::new();
    for d in docs {
        let start = d["_stream_meta"]["window"]["start"]["$date"]
            .as_str()
            .unwrap();
        let start = chrono::DateTime::parse_from_rfc3339(start)
            .unwrap()
            .timestamp_millis();
        let prev = out.insert(
            (start, d["_id"].as_str().unwrap().to_string()),
            (d["n"].as_i64().unwrap(), d["total"].as_i64().unwrap()),
        );
        assert!(prev.is_none(), "a window emitted twice: {d}");
    }
    out
}

async fn stream(
    p: impl Into<StreamQuery>,
    data: &str,
    size: usize,
    policy: ErrorPolicy,
) -> (Vec<Value>, Vec<Value>, u64) {
    let mut source = MemorySource::from_jsonl(data.as_bytes()).unwrap();
    let mut sink = MemorySink::default();
    let mut dead = MemorySink::default();
    let dead_letters = policy == ErrorPolicy::dead_letter();
    let stats = run_with_dead_letters(
        &Engine::new(),
        p,
        &mut source,
        &mut sink,
        if dead_letters { Some(&mut dead) } else { None },
        &mut MemoryCheckpoints::default(),
        &RuntimeOptions {
            micro_batch_size: size,
            error_policy: policy,
            time_field: Some(json!("$ts")),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    (
        to_documents(&sink.committed).unwrap(),
        to_documents(&dead.committed).unwrap(),
        stats.late,
    )
}

#[tokio::test]
async fn tumbling_and_hopping_windows_give_the_rule_whatever_the_batch_size() {
    let docs = events();
    let data = jsonl(&docs);
    for (stage, extra, hop) in [
        ("$tumblingWindow", json!({}), 10_000),
        (
            "$hoppingWindow",
            json!({"hopSize": {"size": 5, "unit": "second"}}),
            5_000,
        ),
    ] {
        let p = pipeline(stage, extra);
        let (want, late) = expected(&docs, 10_000, hop, 2_000);
        assert!(
            !late.is_empty() && late.len() < 20,
            "the data has some late events"
        );
        let mut first: Option<Vec<Value>> = None;
        for size in [1, 7, 64, 500] {
            let (out, _, n_late) = stream(&p, &data, size, ErrorPolicy::fail_fast()).await;
            assert_eq!(emitted(&out), want, "{stage} in batches of {size}");
            assert_eq!(n_late as usize, late.len(), "{stage} in batches of {size}");
            // Windows come out in order of their start, the same whatever the batch size.
            match &first {
                None => first = Some(out),
                Some(f) => assert_eq!(&out, f, "{stage} in batches of {size}"),
            }
        }
        // The event time is the source document's: stages before the window may drop `ts`
        // (or `$replaceRoot` away from it) and the windows stay the same.
        let mut reshaped = Pipeline::from_value(&json!([
            {"$project": {"doc": {"k": "$k", "v": "$v"}}},
            {"$replaceRoot": {"newRoot": "$doc"}}
        ]))
        .unwrap();
        reshaped.stages.extend(p.stages.clone());
        let (out, _, n_late) = stream(&reshaped, &data, 64, ErrorPolicy::fail_fast()).await;
        assert_eq!(emitted(&out), want, "{stage} after $project");
        assert_eq!(n_late as usize, late.len());
        // The SQL twin gives the same windows.
        let window = if hop == 10_000 {
            "tumble(ts, INTERVAL '10' SECOND".to_string()
        } else {
            "hop(ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND".to_string()
        };
        let sql = sql_query(&format!(
            "SELECT window_start, k AS _id, count(*) AS n, sum(v) AS total FROM input \
             GROUP BY {window}, allowed_lateness => INTERVAL '2' SECOND), k"
        ));
        let (out, _, n_late) = stream(sql, &data, 64, ErrorPolicy::fail_fast()).await;
        assert_eq!(emitted(&as_window_meta(&out)), want, "{stage} in SQL");
        assert_eq!(n_late as usize, late.len(), "{stage} in SQL");
    }
}

#[tokio::test]
async fn late_documents_are_dead_lettered_with_their_reason() {
    let docs = events();
    let (_, late) = expected(&docs, 10_000, 10_000, 2_000);
    let p = pipeline("$tumblingWindow", json!({}));
    let (_, letters, n_late) = stream(&p, &jsonl(&docs), 25, ErrorPolicy::dead_letter()).await;
    assert_eq!(n_late as usize, late.len());
    let ids: Vec<i64> = letters
        .iter()
        .map(|l| {
            assert_eq!(l["stage"], json!("window"));
            assert!(
                l["reason"]
                    .as_str()
                    .unwrap()
                    .starts_with("late: event time"),
                "{l}"
            );
            serde_json::from_str::<Value>(l["raw"].as_str().unwrap()).unwrap()["_id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, late);
    // `lateData: "drop"` (SQL: `late_data => 'drop'`): counted, not dead-lettered.
    let p = pipeline("$tumblingWindow", json!({"lateData": "drop"}));
    let (out, letters, n_late) = stream(&p, &jsonl(&docs), 25, ErrorPolicy::dead_letter()).await;
    assert_eq!((letters.len(), n_late as usize), (0, late.len()));
    assert_eq!(emitted(&out), expected(&docs, 10_000, 10_000, 2_000).0);
    let sql = sql_query(
        "SELECT window_start, k AS _id, count(*) AS n, sum(v) AS total FROM input \
         GROUP BY tumble(ts, INTERVAL '10' SECOND, allowed_lateness => INTERVAL '2' SECOND, \
         late_data => 'drop'), k",
    );
    let (_, letters, n_late) = stream(sql, &jsonl(&docs), 25, ErrorPolicy::dead_letter()).await;
    assert_eq!((letters.len(), n_late as usize), (0, late.len()));
}

#[tokio::test]
async fn a_restart_inside_an_open_window_emits_every_window_once() {
    let docs = events();
    let data = jsonl(&docs);
    let p = pipeline("$tumblingWindow", json!({}));
    let (want, _) = expected(&docs, 10_000, 10_000, 2_000);
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&input, &data).unwrap();
    // Runs of 3 batches of 9: each stops with windows open, the next resumes from the
    // checkpoint (buffered documents and the largest event time included).
    for _ in 0..40 {
        let mut source = JsonlFileSource::open(&input, None, false).unwrap();
        let mut sink = JsonlFileSink::open(&output).unwrap();
        let mut checkpoints = DirCheckpoints::new(dir.path().join("cp")).unwrap();
        let stats = run(
            &Engine::new(),
            &p,
            &mut source,
            &mut sink,
            &mut checkpoints,
            &RuntimeOptions {
                micro_batch_size: 9,
                max_batches: Some(3),
                time_field: Some(json!("$ts")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        if stats.batches == 0 {
            break;
        }
    }
    let out: Vec<Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(emitted(&out), want);
}

#[tokio::test]
async fn window_stages_are_checked_by_path() {
    for (stages, says) in [
        (
            json!([{"$tumblingWindow": {"interval": {"size": 1, "unit": "minute"}}}]),
            "pipeline[0].$tumblingWindow: $tumblingWindow needs a pipeline",
        ),
        (
            json!([{"$hoppingWindow": {"interval": {"size": 10, "unit": "second"},
                                       "hopSize": {"size": 3, "unit": "second"}, "pipeline": []}}]),
            "pipeline[0].$hoppingWindow.hopSize: hopSize must be positive, at most the interval, and divide it evenly",
        ),
        (
            json!([{"$tumblingWindow": {"interval": {"size": 1, "unit": "minute"}, "pipeline": [],
                                        "boundary": "wallClock"}}]),
            "pipeline[0].$tumblingWindow.boundary: expected \"eventTime\" or \"processingTime\"",
        ),
        (
            json!([{"$tumblingWindow": {"interval": {"size": 1, "unit": "minute"}, "pipeline": [],
                                        "idleTimeout": {"size": 0, "unit": "second"}}}]),
            "pipeline[0].$tumblingWindow.idleTimeout: the idleTimeout must be positive",
        ),
    ] {
        let e = Pipeline::from_value(&stages).unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }
    // No timeField on the source; and a batch run explains where windows run.
    let p = pipeline("$tumblingWindow", json!({}));
    let mut source = MemorySource::from_jsonl(b"{\"ts\": 1}\n").unwrap();
    let e = run(
        &Engine::new(),
        &p,
        &mut source,
        &mut MemorySink::default(),
        &mut MemoryCheckpoints::default(),
        &RuntimeOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("an eventTime window needs the source's timeField"),
        "{e}"
    );
    let e = common::run(
        "{\"ts\": 1}\n",
        json!([{"$tumblingWindow": {"interval": {"size": 1, "unit": "minute"}, "pipeline": []}}]),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("window stages run on a stream"), "{e}");
}

/// (start, end, key) → the sorted ids of a session.
type Sessions = BTreeMap<(i64, i64, String), Vec<i64>>;

/// Sessions by the rule, computed directly: the sessions, the late ids, and how many times a
/// document merged two sessions.
fn expected_sessions(docs: &[Value], gap: i64, lateness: i64) -> (Sessions, Vec<i64>, usize) {
    // Open sessions per key: (start, last, ids).
    let mut open: BTreeMap<String, Vec<(i64, i64, Vec<i64>)>> = BTreeMap::new();
    let mut done = BTreeMap::new();
    let mut late = Vec::new();
    let mut merges = 0;
    let mut max: Option<i64> = None;
    for d in docs {
        let (t, id) = (d["ts"].as_i64().unwrap(), d["_id"].as_i64().unwrap());
        let key = d["k"].as_str().unwrap().to_string();
        let wm = max.map(|m| m - lateness);
        let sessions = open.entry(key.clone()).or_default();
        let mut keep = Vec::new();
        let mut touching = Vec::new();
        for s in sessions.drain(..) {
            if wm.is_some_and(|w| s.1 + gap <= w) {
                done.insert((s.0, s.1 + gap, key.clone()), s.2);
            } else if t > s.0 - gap && t < s.1 + gap {
                touching.push(s);
            } else {
                keep.push(s);
            }
        }
        merges += usize::from(touching.len() > 1);
        if touching.is_empty() && wm.is_some_and(|w| t + gap <= w) {
            late.push(id);
        } else {
            let mut m = (t, t, vec![id]);
            for s in touching {
                m.0 = m.0.min(s.0);
                m.1 = m.1.max(s.1);
                m.2.extend(s.2);
            }
            keep.push(m);
        }
        *sessions = keep;
        max = Some(max.map_or(t, |x| x.max(t)));
    }
    for (key, sessions) in open {
        for s in sessions {
            done.insert((s.0, s.1 + gap, key.clone()), s.2);
        }
    }
    for ids in done.values_mut() {
        ids.sort();
    }
    (done, late, merges)
}

#[tokio::test]
async fn sessions_merge_close_by_the_watermark_and_survive_restarts() {
    // Bursts per key with pauses; a document that bridges two sessions merges them.
    let mut docs = Vec::new();
    let mut seed = 7u64;
    let mut ts = 1_000_000i64;
    for i in 0..300i64 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = (seed >> 33) as i64;
        ts += if r % 11 == 0 { 9_000 } else { r % 900 };
        let jitter = r % 2_500 + if i % 29 == 28 { 20_000 } else { 0 };
        docs.push(json!({"_id": i, "ts": ts - jitter, "k": format!("k{}", r % 2), "v": i}));
    }
    let (want, late, merges) = expected_sessions(&docs, 3_000, 1_000);
    assert!(
        want.len() > 10 && !late.is_empty() && merges > 0,
        "{} sessions, {} late, {merges} merges",
        want.len(),
        late.len()
    );
    let p = Pipeline::from_value(&json!([{"$sessionWindow": {
        "gap": {"size": 3, "unit": "second"}, "partitionBy": "$k",
        "allowedLateness": {"size": 1, "unit": "second"},
        "pipeline": [{"$group": {"_id": "$k", "ids": {"$push": "$_id"}}}]}}]))
    .unwrap();
    let sessions = |out: &[Value]| -> Sessions {
        let ms = |v: &Value| {
            chrono::DateTime::parse_from_rfc3339(v["$date"].as_str().unwrap())
                .unwrap()
                .timestamp_millis()
        };
        out.iter()
            .map(|d| {
                let mut ids: Vec<i64> = d["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap())
                    .collect();
                ids.sort();
                let w = &d["_stream_meta"]["window"];
                (
                    (
                        ms(&w["start"]),
                        ms(&w["end"]),
                        d["_id"].as_str().unwrap().to_string(),
                    ),
                    ids,
                )
            })
            .collect()
    };
    let data = jsonl(&docs);
    let mut first: Option<Vec<Value>> = None;
    for size in [1, 5, 33, 500] {
        let (out, _, n_late) = stream(&p, &data, size, ErrorPolicy::fail_fast()).await;
        assert_eq!(sessions(&out), want, "batches of {size}");
        assert_eq!(n_late as usize, late.len(), "batches of {size}");
        match &first {
            None => first = Some(out),
            Some(f) => assert_eq!(&out, f, "same order in batches of {size}"),
        }
    }
    // The SQL twin: session(…), partitioned by the other GROUP BY key.
    let sql = sql_query(
        "SELECT window_start, window_end, k AS _id, array_agg(_id) AS ids FROM input \
         GROUP BY session(ts, INTERVAL '3' SECOND, allowed_lateness => INTERVAL '1' SECOND), k",
    );
    let (out, _, n_late) = stream(sql, &data, 33, ErrorPolicy::fail_fast()).await;
    assert_eq!(sessions(&as_window_meta(&out)), want, "in SQL");
    assert_eq!(n_late as usize, late.len(), "in SQL");
    // Restarts inside open sessions.
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.jsonl"), dir.path().join("out.jsonl"));
    std::fs::write(&input, &data).unwrap();
    for _ in 0..60 {
        let mut source = JsonlFileSource::open(&input, None, false).unwrap();
        let mut sink = JsonlFileSink::open(&output).unwrap();
        let mut checkpoints = DirCheckpoints::new(dir.path().join("cp")).unwrap();
        let stats = run(
            &Engine::new(),
            &p,
            &mut source,
            &mut sink,
            &mut checkpoints,
            &RuntimeOptions {
                micro_batch_size: 11,
                max_batches: Some(2),
                time_field: Some(json!("$ts")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        if stats.batches == 0 {
            break;
        }
    }
    let out: Vec<Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(sessions(&out), want);
    assert_eq!(out.len(), want.len(), "each session emitted once");
}

/// Waits (up to a minute) until `done` holds — a stream running on its own task gets there.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

fn counted_windows(view: &fluxion::connect::memory::CommittedView) -> Vec<(String, i64)> {
    view.documents()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["_stream_meta"]["window"]["start"]["$date"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                d["n"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn stream_schema() -> datafusion::arrow::datatypes::SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    std::sync::Arc::new(Schema::new(vec![
        Field::new("ts", DataType::Int64, true),
        Field::new("v", DataType::Int64, true),
    ]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_partitions_stop_holding_the_watermark_back() {
    use fluxion::connect::channel::channel;
    use fluxion::runtime::builder::Stream;
    use fluxion::runtime::window::clock::ManualClock;

    let (tx, source) = channel(stream_schema());
    let (sink, view) = MemorySink::with_view();
    let clock = ManualClock::at(0);
    let stages = json!([{"$tumblingWindow": {
        "interval": {"size": 10, "unit": "second"},
        "idleTimeout": {"size": 5, "unit": "second"},
        "pipeline": [{"$group": {"_id": null, "n": {"$sum": 1}}}]}}]);
    let handle = Stream::builder("idle")
        .source(source)
        .sink(sink)
        .stages_json(&stages.to_string())
        .unwrap()
        .time_field(json!("$ts"))
        .clock(std::sync::Arc::new(clock.clone()))
        .tick_interval(std::time::Duration::from_millis(5))
        .start()
        .unwrap();
    let input = |n| {
        let h = &handle;
        move || h.metrics().is_some_and(|m| m.input >= n)
    };
    // Partition 1 is behind: the watermark is its 1.5 s.
    tx.send_json(&[json!({"ts": 1_500, "v": 1})], 1).unwrap();
    tx.send_json(
        &[json!({"ts": 1_000, "v": 2}), json!({"ts": 2_000, "v": 3})],
        0,
    )
    .unwrap();
    until("3 documents in", input(3)).await;
    clock.set(3_000);
    tx.send_json(&[json!({"ts": 12_000, "v": 4})], 0).unwrap();
    until("4 documents in", input(4)).await;
    // Ticks go by; partition 1 (last heard of at 0 s) is not idle yet at 3 s.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        counted_windows(&view).is_empty(),
        "partition 1 holds [0, 10 s) open"
    );
    // At 6 s partition 1 has been quiet for 5 s: partition 0 alone moves the watermark to 12 s.
    clock.set(6_000);
    until("the first window", || counted_windows(&view).len() == 1).await;
    assert_eq!(
        counted_windows(&view),
        [("1970-01-01T00:00:00.000Z".to_string(), 3)]
    );
    // At 20 s every partition is idle: the open window closes, as Atlas closes an idle
    // source's windows.
    clock.set(20_000);
    until("the second window", || counted_windows(&view).len() == 2).await;
    assert_eq!(
        counted_windows(&view)[1],
        ("1970-01-01T00:00:10.000Z".to_string(), 1)
    );
    // Partition 1 wakes up with a document for a closed window: late.
    tx.send_json(&[json!({"ts": 5_000, "v": 5})], 1).unwrap();
    drop(tx);
    let stats = handle.wait().await.unwrap();
    assert_eq!((stats.input_rows, stats.late), (5, 1));
    assert_eq!(counted_windows(&view).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_time_windows_follow_the_clock() {
    use fluxion::connect::channel::channel;
    use fluxion::runtime::builder::Stream;
    use fluxion::runtime::window::clock::ManualClock;

    // The JSON stages, and the SQL spelling with PROCTIME().
    for stage in ["$tumblingWindow", "$sessionWindow", "sql"] {
        let (tx, source) = channel(stream_schema());
        let (sink, view) = MemorySink::with_view();
        let clock = ManualClock::at(1_000);
        let size = if stage == "$sessionWindow" {
            "gap"
        } else {
            "interval"
        };
        let stages = json!([{stage: {
            size: {"size": 10, "unit": "second"},
            "boundary": "processingTime",
            "pipeline": [{"$group": {"_id": null, "n": {"$sum": 1}, "v": {"$sum": "$v"}}}]}}]);
        // No timeField: the clock places documents.
        let builder = Stream::builder("clock").source(source).sink(sink);
        let builder = if stage == "sql" {
            builder.sql(
                "SELECT count(*) AS n, sum(v) AS v, window_start FROM input \
                 GROUP BY tumble(PROCTIME(), INTERVAL '10' SECOND)",
                "input",
            )
        } else {
            builder.stages_json(&stages.to_string()).unwrap()
        };
        let handle = builder
            .clock(std::sync::Arc::new(clock.clone()))
            .tick_interval(std::time::Duration::from_millis(5))
            .start()
            .unwrap();
        // Event times in the documents do not matter.
        tx.send_json(
            &[json!({"ts": 999_999, "v": 1}), json!({"ts": 0, "v": 2})],
            0,
        )
        .unwrap();
        until("2 in", || handle.metrics().is_some_and(|m| m.input >= 2)).await;
        clock.set(8_000);
        tx.send_json(&[json!({"v": 4})], 3).unwrap();
        until("3 in", || handle.metrics().is_some_and(|m| m.input >= 3)).await;
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert!(
            view.documents().unwrap().is_empty(),
            "{stage}: nothing closed at 8 s"
        );
        // Tumbling: [0, 10 s) closes at 10 s; a session: 10 s after its last document (8 s).
        clock.set(if stage == "$sessionWindow" {
            18_000
        } else {
            10_000
        });
        until("a window", || !view.documents().unwrap().is_empty()).await;
        let docs = view.documents().unwrap();
        assert_eq!(docs.len(), 1, "{stage}: {docs:?}");
        assert_eq!(
            (docs[0]["n"].as_i64(), docs[0]["v"].as_i64()),
            (Some(3), Some(7))
        );
        let start = if stage == "$sessionWindow" {
            "1970-01-01T00:00:01.000Z"
        } else {
            "1970-01-01T00:00:00.000Z"
        };
        let bound = if stage == "sql" {
            &docs[0]["window_start"]
        } else {
            &docs[0]["_stream_meta"]["window"]["start"]
        };
        assert_eq!(bound, &json!({"$date": start}), "{stage}");
        tx.send_json(&[json!({"v": 8})], 0).unwrap();
        drop(tx);
        handle.wait().await.unwrap();
        // The source ended: the last window is flushed.
        let docs = view.documents().unwrap();
        assert_eq!(docs.len(), 2, "{stage}: {docs:?}");
        assert_eq!(docs[1]["v"], json!(8));
    }
}

/// A random window pipeline's inner stages (a `$group` with random accumulators and key, or
/// a top-n), with document-by-document stages around.
fn random_inner(rng: &mut impl rand::Rng) -> Vec<Value> {
    let mut stages = Vec::new();
    match rng.random_range(0..4) {
        0 => stages.push(json!({"$match": {"v": {"$gte": rng.random_range(0..100)}}})),
        1 => stages.push(json!({"$project": {"k": 1, "v": 1}})),
        2 => stages.push(json!({"$addFields": {"w": {"$multiply": ["$v", 3]}}})),
        _ => {}
    }
    if rng.random_bool(0.2) {
        stages.extend([
            json!({"$sort": {"v": -1, "_id": 1}}),
            json!({"$limit": rng.random_range(1..4)}),
        ]);
        return stages;
    }
    let key = match rng.random_range(0..3) {
        0 => json!("$k"),
        1 => Value::Null,
        _ => json!({"k": "$k", "odd": {"$mod": ["$v", 2]}}),
    };
    let mut group = serde_json::Map::new();
    group.insert("_id".into(), key);
    let all = [
        ("n", json!({"$sum": 1})),
        ("s", json!({"$sum": "$v"})),
        ("c", json!({"$count": {}})),
        ("lo", json!({"$min": "$v"})),
        ("hi", json!({"$max": "$v"})),
        ("f", json!({"$first": "$v"})),
        ("l", json!({"$last": "$v"})),
        ("p", json!({"$push": "$v"})),
        ("set", json!({"$addToSet": "$k"})),
        ("avg", json!({"$avg": "$v"})),
        ("top2", json!({"$maxN": {"input": "$v", "n": 2}})),
        ("first2", json!({"$firstN": {"input": "$v", "n": 2}})),
        (
            "med",
            json!({"$median": {"input": "$v", "method": "approximate"}}),
        ),
    ];
    for (name, acc) in all {
        if rng.random_bool(0.4) {
            group.insert(name.into(), acc);
        }
    }
    if group.len() == 1 {
        group.insert("n".into(), json!({"$sum": 1}));
    }
    stages.push(json!({"$group": group}));
    stages.push(json!({"$sort": {"_id": 1}}));
    if rng.random_bool(0.3) {
        stages.push(json!({"$addFields": {"tag": "t"}}));
    }
    stages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_window_pipelines_give_each_window_its_batch_answer() {
    use rand::{Rng, SeedableRng};
    let count: usize = std::env::var("FLUXION_WINDOW_COUNT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(12);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let docs = events();
    let data = jsonl(&docs);
    for case in 0..count {
        let size = [4_000i64, 10_000, 12_000][rng.random_range(0..3)];
        let hop = if rng.random_bool(0.5) {
            size
        } else {
            size / [2, 4][rng.random_range(0..2)]
        };
        let lateness = [0i64, 1_000, 3_000][rng.random_range(0..3)];
        let inner = random_inner(&mut rng);
        let mut spec = json!({
            "interval": {"size": size, "unit": "ms"},
            "allowedLateness": {"size": lateness, "unit": "ms"},
            "pipeline": inner,
        });
        let stage = if hop == size {
            "$tumblingWindow"
        } else {
            spec["hopSize"] = json!({"size": hop, "unit": "ms"});
            "$hoppingWindow"
        };
        let p = Pipeline::from_value(&json!([{ stage: spec }])).unwrap();
        // Each window's documents by the rule, and the inner pipeline over them in batch.
        let mut windows: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
        let mut max: Option<i64> = None;
        for d in &docs {
            let t = d["ts"].as_i64().unwrap();
            let wm = max.map(|m| m - lateness);
            let last = t.div_euclid(hop) * hop;
            for k in 0..size / hop {
                let s = last - k * hop;
                if wm.is_none_or(|w| s + size > w) {
                    windows.entry(s).or_default().push(d.clone());
                }
            }
            max = Some(max.map_or(t, |m| m.max(t)));
        }
        let mut want = Vec::new();
        for (start, in_window) in &windows {
            let stages = inner_with_bounds(&inner, *start, start + size);
            let batch = Pipeline::from_value(&Value::Array(stages)).unwrap();
            want.extend(common::batch_result(&jsonl(in_window), &batch).await);
        }
        let want = sets_sorted(want);
        for batch in [5usize, 64, 500] {
            let (out, _, _) = stream(&p, &data, batch, ErrorPolicy::fail_fast()).await;
            let out = sets_sorted(out);
            if let Err(e) = common::same_documents(&out, &want, true) {
                panic!(
                    "case {case}: {stage} size {size} hop {hop} lateness {lateness} inner {inner:?}, batches of {batch}: {e}"
                );
            }
        }
    }
}

/// `$addToSet` arrays in one order (a set has none).
fn sets_sorted(mut docs: Vec<Value>) -> Vec<Value> {
    for d in &mut docs {
        if let Some(Value::Array(set)) = d.get_mut("set") {
            set.sort_by_key(|v| v.to_string());
        }
    }
    docs
}

/// `inner`, then the window's bounds as `_stream_meta.window`.
fn inner_with_bounds(inner: &[Value], start: i64, end: i64) -> Vec<Value> {
    let mut stages = inner.to_vec();
    stages.push(json!({"$addFields": {"_stream_meta": {"window": {
        "start": {"$toDate": start}, "end": {"$toDate": end}}}}}));
    stages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_session_pipelines_give_each_session_its_batch_answer() {
    use rand::{Rng, SeedableRng};
    let count: usize = std::env::var("FLUXION_WINDOW_COUNT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(12);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let docs = events();
    let data = jsonl(&docs);
    for case in 0..count {
        let gap = [700i64, 1_500, 4_000][rng.random_range(0..3)];
        let lateness = [0i64, 1_000, 3_000][rng.random_range(0..3)];
        let mut inner = random_inner(&mut rng);
        // With one group per session (`_id` the partition, or null) the pipeline can run many
        // sessions as one query; keep the `$sort` only where a session has several groups.
        let several = inner.iter().any(|s| s["$group"]["_id"].is_object());
        if !several && let Some(g) = inner.iter().position(|s| s.get("$group").is_some()) {
            inner.remove(g + 1);
        }
        let p = Pipeline::from_value(&json!([{"$sessionWindow": {
            "gap": {"size": gap, "unit": "ms"}, "partitionBy": "$k",
            "allowedLateness": {"size": lateness, "unit": "ms"},
            "pipeline": inner,
        }}]))
        .unwrap();
        let (sessions, _, _) = expected_sessions(&docs, gap, lateness);
        // In order of their end, partition, start.
        let mut order: Vec<_> = sessions.iter().collect();
        order.sort_by(|((s1, e1, k1), _), ((s2, e2, k2), _)| (e1, k1, s1).cmp(&(e2, k2, s2)));
        let mut want = Vec::new();
        for ((start, end, _), ids) in order {
            let in_session: Vec<Value> = ids.iter().map(|&i| docs[i as usize].clone()).collect();
            let stages = inner_with_bounds(&inner, *start, *end);
            let batch = Pipeline::from_value(&Value::Array(stages)).unwrap();
            want.extend(common::batch_result(&jsonl(&in_session), &batch).await);
        }
        let want = sets_sorted(want);
        for batch in [5usize, 64, 500] {
            let (out, _, _) = stream(&p, &data, batch, ErrorPolicy::fail_fast()).await;
            let out = sets_sorted(out);
            if let Err(e) = common::same_documents(&out, &want, true) {
                panic!(
                    "case {case}: gap {gap} lateness {lateness} inner {inner:?}, batches of {batch}: {e}"
                );
            }
        }
    }
}

/// A document's own field may have any name, even one like Fluxion's hidden columns: a window
/// keeps it (its pipeline groups by it here), in batch-sized and single-document batches.
#[tokio::test]
async fn fields_named_like_hidden_columns_are_ordinary_fields() {
    let docs: Vec<Value> = (0..40i64)
        .map(|i| json!({"_id": i, "ts": 1_000_000 + i * 500, "__fluxion_seq": format!("g{}", i % 2), "v": i}))
        .collect();
    let p = Pipeline::from_value(&json!([{"$tumblingWindow": {
        "interval": {"size": 10, "unit": "second"},
        "pipeline": [{"$group": {"_id": "$__fluxion_seq", "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}]
    }}]))
    .unwrap();
    for size in [40, 1] {
        let (out, _, _) = stream(&p, &jsonl(&docs), size, ErrorPolicy::fail_fast()).await;
        let got: Vec<(String, i64)> = out
            .iter()
            .map(|d| {
                (
                    d["_id"].as_str().unwrap().to_string(),
                    d["n"].as_i64().unwrap(),
                )
            })
            .collect();
        // 40 documents, 500 ms apart: two 10 s windows of 20, ten of each group in each.
        assert_eq!(
            got,
            [
                ("g0".into(), 10),
                ("g1".into(), 10),
                ("g0".into(), 10),
                ("g1".into(), 10)
            ],
            "batches of {size}"
        );
    }
}

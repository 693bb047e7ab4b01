//! Nexmark (`connect::nexmark`, `examples/nexmark/`): the JSON and SQL spellings of q0–q2,
//! q14 and q22 stream the same rows; q5, q7 and q11 give the windows computed directly, in
//! plain Rust, from the generated bids; the source regenerates the same events (bids, auctions,
//! persons) from a position, and paces them to a rate.

use std::collections::BTreeMap;

use fluxion::connect::memory::MemorySink;
use fluxion::connect::nexmark::{NexmarkKind, NexmarkSource};
use fluxion::connect::source::{Position, Source};
use fluxion::document::encode::to_documents;
use fluxion::runtime::exec::micro_batch::{RuntimeOptions, run};
use fluxion::runtime::query::StreamQuery;
use fluxion::runtime::state::checkpoint::MemoryCheckpoints;
use fluxion::{Engine, Pipeline};
use serde_json::{Value, json};

const EVENTS: u64 = 60_000;

fn query(name: &str) -> String {
    std::fs::read_to_string(format!("examples/nexmark/{name}")).unwrap()
}

async fn stream(q: StreamQuery, events: u64, size: usize) -> Vec<Value> {
    let mut source = NexmarkSource::new(Some(events));
    let mut sink = MemorySink::default();
    run(
        &Engine::new(),
        q,
        &mut source,
        &mut sink,
        &mut MemoryCheckpoints::default(),
        &RuntimeOptions {
            micro_batch_size: size,
            time_field: Some(json!("$dateTime")),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    to_documents(&sink.committed).unwrap()
}

/// (auction, price, dateTime ms) of every generated bid.
async fn bids(events: u64) -> Vec<(i64, i64, i64)> {
    let mut source = NexmarkSource::new(Some(events));
    let mut out = Vec::new();
    while let Some(b) = source.next_batch(10_000).await.unwrap() {
        for d in to_documents(&[b.batch]).unwrap() {
            let t = chrono::DateTime::parse_from_rfc3339(d["dateTime"]["$date"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            out.push((
                d["auction"].as_i64().unwrap(),
                d["price"].as_i64().unwrap(),
                t,
            ));
        }
    }
    out
}

fn window_start(d: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(
        d["_stream_meta"]["window"]["start"]["$date"]
            .as_str()
            .unwrap(),
    )
    .unwrap()
    .timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_sql_spellings_of_the_stateless_queries_agree() {
    for q in ["q0", "q1", "q2", "q14", "q22"] {
        let json = Pipeline::from_json_str(&query(&format!("{q}.json"))).unwrap();
        let sql = StreamQuery::Sql {
            sql: query(&format!("{q}.sql")),
            table: "bid".into(),
        };
        let a = stream(StreamQuery::from(json), EVENTS, 7_000).await;
        let b = stream(sql, EVENTS, 7_000).await;
        assert!(!a.is_empty(), "{q}");
        assert_eq!(a, b, "{q}");
        if q != "q2" && q != "q14" {
            assert_eq!(a.len() as u64, EVENTS, "{q} keeps every bid");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q5_and_q7_give_the_windows_of_the_generated_bids() {
    let all = bids(EVENTS).await;
    // The generator's bids are in event-time order: no window is missing a late bid.
    assert!(all.windows(2).all(|w| w[0].2 <= w[1].2));
    // q7: the highest bid per 10 s window (earliest first among equal prices).
    let mut want7: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for &(_, price, t) in &all {
        let start = t.div_euclid(10_000) * 10_000;
        let e = want7.entry(start).or_insert((price, t));
        if price > e.0 {
            *e = (price, t);
        }
    }
    let q7 = Pipeline::from_json_str(&query("q7.json")).unwrap();
    let got7 = stream(StreamQuery::from(q7), EVENTS, 5_000).await;
    let got7: BTreeMap<i64, (i64, i64)> = got7
        .iter()
        .map(|d| {
            let t = chrono::DateTime::parse_from_rfc3339(d["dateTime"]["$date"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            (window_start(d), (d["price"].as_i64().unwrap(), t))
        })
        .collect();
    assert_eq!(got7, want7);
    // q5: the auction with the most bids per 10 s window sliding by 2 s.
    let mut counts: BTreeMap<i64, BTreeMap<i64, i64>> = BTreeMap::new();
    for &(auction, _, t) in &all {
        let last = t.div_euclid(2_000) * 2_000;
        for k in 0..5 {
            *counts
                .entry(last - k * 2_000)
                .or_default()
                .entry(auction)
                .or_default() += 1;
        }
    }
    let want5: BTreeMap<i64, (i64, i64)> = counts
        .into_iter()
        .map(|(start, by_auction)| {
            let (auction, n) = by_auction
                .into_iter()
                .max_by_key(|(a, n)| (*n, -a))
                .unwrap();
            (start, (auction, n))
        })
        .collect();
    let q5 = Pipeline::from_json_str(&query("q5.json")).unwrap();
    let got5: BTreeMap<i64, (i64, i64)> = stream(StreamQuery::from(q5), EVENTS, 5_000)
        .await
        .iter()
        .map(|d| {
            (
                window_start(d),
                (d["_id"].as_i64().unwrap(), d["num"].as_i64().unwrap()),
            )
        })
        .collect();
    assert_eq!(got5, want5);
}

#[tokio::test]
async fn the_source_regenerates_the_same_bids_from_a_position() {
    let mut a = NexmarkSource::new(Some(1_000));
    let first = a.next_batch(600).await.unwrap().unwrap();
    let rest = a.next_batch(600).await.unwrap().unwrap();
    assert_eq!((first.batch.num_rows(), rest.batch.num_rows()), (600, 400));
    assert!(a.next_batch(600).await.unwrap().is_none());
    let mut b = NexmarkSource::new(Some(1_000));
    b.seek(&Position(json!({"offset": 600}))).unwrap();
    assert_eq!(
        b.next_batch(1_000).await.unwrap().unwrap().batch,
        rest.batch
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q5_and_q7_in_sql_give_the_json_windows() {
    let ms = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v["$date"].as_str().unwrap())
            .unwrap()
            .timestamp_millis()
    };
    let sql = |q: &str| StreamQuery::Sql {
        sql: query(&format!("{q}.sql")),
        table: "bid".into(),
    };
    let json =
        |q: &str| StreamQuery::from(Pipeline::from_json_str(&query(&format!("{q}.json"))).unwrap());
    // q7: the highest price per window.
    let by_sql: BTreeMap<i64, i64> = stream(sql("q7"), EVENTS, 4_000)
        .await
        .iter()
        .map(|d| (ms(&d["window_start"]), d["price"].as_i64().unwrap()))
        .collect();
    let by_json: BTreeMap<i64, i64> = stream(json("q7"), EVENTS, 4_000)
        .await
        .iter()
        .map(|d| (window_start(d), d["price"].as_i64().unwrap()))
        .collect();
    assert!(!by_json.is_empty());
    assert_eq!(by_sql, by_json);
    // q5: the hottest auction per sliding window.
    let by_sql: BTreeMap<i64, (i64, i64)> = stream(sql("q5"), EVENTS, 4_000)
        .await
        .iter()
        .map(|d| {
            (
                ms(&d["window_start"]),
                (d["auction"].as_i64().unwrap(), d["num"].as_i64().unwrap()),
            )
        })
        .collect();
    let by_json: BTreeMap<i64, (i64, i64)> = stream(json("q5"), EVENTS, 4_000)
        .await
        .iter()
        .map(|d| {
            (
                window_start(d),
                (d["_id"].as_i64().unwrap(), d["num"].as_i64().unwrap()),
            )
        })
        .collect();
    assert_eq!(by_sql, by_json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q11_sessions_per_bidder_in_json_and_sql_give_the_direct_sessions() {
    // (bidder, start, end) → bids, sessions of one bidder's bids less than 10 s apart.
    let mut source = NexmarkSource::new(Some(EVENTS));
    let mut open: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
    let mut want: BTreeMap<(i64, i64, i64), i64> = BTreeMap::new();
    while let Some(b) = source.next_batch(10_000).await.unwrap() {
        for d in to_documents(&[b.batch]).unwrap() {
            let t = chrono::DateTime::parse_from_rfc3339(d["dateTime"]["$date"].as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            let bidder = d["bidder"].as_i64().unwrap();
            match open.get_mut(&bidder) {
                Some(s) if t < s.1 + 10_000 => {
                    s.1 = t;
                    s.2 += 1;
                }
                _ => {
                    if let Some((start, last, n)) = open.insert(bidder, (t, t, 1)) {
                        want.insert((bidder, start, last + 10_000), n);
                    }
                }
            }
        }
    }
    for (bidder, (start, last, n)) in open {
        want.insert((bidder, start, last + 10_000), n);
    }
    assert!(want.values().any(|n| *n > 1) && want.len() > 100);
    let ms = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v["$date"].as_str().unwrap())
            .unwrap()
            .timestamp_millis()
    };
    let json = Pipeline::from_json_str(&query("q11.json")).unwrap();
    let by_json: BTreeMap<(i64, i64, i64), i64> = stream(StreamQuery::from(json), EVENTS, 4_000)
        .await
        .iter()
        .map(|d| {
            let w = &d["_stream_meta"]["window"];
            (
                (d["_id"].as_i64().unwrap(), ms(&w["start"]), ms(&w["end"])),
                d["bid_count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_json, want);
    let sql = StreamQuery::Sql {
        sql: query("q11.sql"),
        table: "bid".into(),
    };
    let by_sql: BTreeMap<(i64, i64, i64), i64> = stream(sql, EVENTS, 4_000)
        .await
        .iter()
        .map(|d| {
            (
                (
                    d["bidder"].as_i64().unwrap(),
                    ms(&d["window_start"]),
                    ms(&d["window_end"]),
                ),
                d["bid_count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_sql, want);
}

#[tokio::test]
async fn auctions_and_persons_are_generated_and_regenerated() {
    for kind in [NexmarkKind::Auction, NexmarkKind::Person] {
        let mut a = NexmarkSource::of(kind, Some(500));
        let first = a.next_batch(300).await.unwrap().unwrap();
        let rest = a.next_batch(300).await.unwrap().unwrap();
        assert_eq!((first.batch.num_rows(), rest.batch.num_rows()), (300, 200));
        let mut b = NexmarkSource::of(kind, Some(500));
        b.seek(&Position(json!({"offset": 300}))).unwrap();
        assert_eq!(b.next_batch(500).await.unwrap().unwrap().batch, rest.batch);
        let docs = to_documents(&[first.batch, rest.batch]).unwrap();
        let mut ids: Vec<i64> = docs.iter().map(|d| d["id"].as_i64().unwrap()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 500, "{kind:?}: ids are distinct and increasing");
        for d in &docs {
            match kind {
                NexmarkKind::Auction => {
                    assert!(d["expires"]["$date"].as_str() > d["dateTime"]["$date"].as_str());
                    assert!(d["reserve"].as_i64() >= d["initialBid"].as_i64(), "{d}");
                }
                _ => assert_eq!(d["state"].as_str().unwrap().len(), 2, "{d}"),
            }
        }
    }
    // A job names the kind; an unknown one is an error.
    let job = fluxion::connect::config::SourceConfig::Nexmark {
        kind: Some("persons".into()),
        events: Some(1),
        rate: None,
        table: None,
        time_field: None,
    };
    let e = fluxion::connect::config::open_source(&job, None, "job.json")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("unknown Nexmark event kind \"persons\""), "{e}");
}

#[tokio::test]
async fn a_rate_paces_generation() {
    // 200 events at 2 000 a second take at least 0.1 s whatever the machine (a lower bound
    // only: a slow machine takes longer, never shorter).
    let started = std::time::Instant::now();
    let mut source = NexmarkSource::new(Some(200)).with_rate(Some(2_000.0));
    let mut n = 0;
    let mut empty = 0;
    while let Some(b) = source.next_batch(1_000).await.unwrap() {
        n += b.batch.num_rows();
        empty += usize::from(b.batch.num_rows() == 0);
    }
    assert_eq!(n, 200);
    assert!(empty > 0, "the source waited for its rate");
    assert!(started.elapsed() >= std::time::Duration::from_millis(99));
}

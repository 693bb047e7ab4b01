//! Order semantics on an input large enough to be read as several parallel partitions:
//! `$first` / `$last` / `$push`, `$limit` / `$skip` and `$unwind` follow the input order (or
//! the order of a preceding `$sort`), and every run gives the same output.

mod common;

use common::run;
use serde_json::{Value, json};

/// 60 000 documents (~2.4 MB, more than one decoding chunk) in `_id` order.
fn docs() -> String {
    (0..60_000)
        .map(|i| {
            format!(
                "{{\"_id\":{i},\"k\":{},\"v\":{},\"a\":[{i},{}]}}\n",
                i % 7,
                (i * 37) % 1000,
                i + 1
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accumulators_follow_input_order() {
    let data = docs();
    let out = run(&data, json!([{"$group": {"_id": "$k", "first": {"$first": "$_id"}, "last": {"$last": "$_id"}, "all": {"$push": "$_id"}}}, {"$sort": {"_id": 1}}]))
        .await
        .unwrap();
    assert_eq!(out.len(), 7);
    for (k, doc) in out.iter().enumerate() {
        let expected: Vec<Value> = (0..60_000)
            .filter(|i| i % 7 == k)
            .map(|i| json!(i))
            .collect();
        assert_eq!(doc["first"], expected[0], "group {k}");
        assert_eq!(doc["last"], *expected.last().unwrap(), "group {k}");
        assert_eq!(
            doc["all"].as_array().unwrap(),
            &expected,
            "group {k}: $push out of order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accumulators_follow_a_preceding_sort() {
    let data = docs();
    let out = run(&data, json!([{"$sort": {"v": -1}}, {"$group": {"_id": "$k", "first": {"$first": "$_id"}, "last": {"$last": "$_id"}}}, {"$sort": {"_id": 1}}]))
        .await
        .unwrap();
    assert_eq!(out.len(), 7);
    for (k, doc) in out.iter().enumerate() {
        // Sorted by v descending, ties in input order.
        let mut ids: Vec<i64> = (0..60_000).filter(|i| i % 7 == k as i64).collect();
        ids.sort_by_key(|i| std::cmp::Reverse((i * 37) % 1000));
        assert_eq!(doc["first"], json!(ids[0]), "group {k}");
        assert_eq!(doc["last"], json!(*ids.last().unwrap()), "group {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_skip_and_output_follow_the_order() {
    let data = docs();
    let out = run(
        &data,
        json!([{"$skip": 29_998}, {"$limit": 4}, {"$project": {"_id": 1}}]),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        vec![
            json!({"_id": 29_998}),
            json!({"_id": 29_999}),
            json!({"_id": 30_000}),
            json!({"_id": 30_001})
        ]
    );
    // A filter keeps input order in the output.
    let out = run(
        &data,
        json!([{"$match": {"k": 3}}, {"$project": {"_id": 1}}]),
    )
    .await
    .unwrap();
    let ids: Vec<i64> = out.iter().map(|d| d["_id"].as_i64().unwrap()).collect();
    let expected: Vec<i64> = (0..60_000).filter(|i| i % 7 == 3).collect();
    assert_eq!(ids, expected);
    // A stable sort: ties keep input order.
    let out = run(
        &data,
        json!([{"$sort": {"v": 1}}, {"$limit": 3}, {"$project": {"_id": 1}}]),
    )
    .await
    .unwrap();
    let mut by_v: Vec<i64> = (0..60_000).collect();
    by_v.sort_by_key(|i| (i * 37) % 1000);
    assert_eq!(
        out,
        by_v[..3]
            .iter()
            .map(|i| json!({"_id": i}))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwind_keeps_element_order_and_runs_repeat() {
    let data = docs();
    let pipeline = json!([{"$unwind": "$a"}, {"$group": {"_id": {"$mod": ["$_id", 3]}, "seq": {"$push": "$a"}}}, {"$sort": {"_id": 1}}]);
    let first = run(&data, pipeline.clone()).await.unwrap();
    assert_eq!(first.len(), 3);
    for (r, doc) in first.iter().enumerate() {
        let expected: Vec<Value> = (0..60_000i64)
            .filter(|i| i % 3 == r as i64)
            .flat_map(|i| [json!(i), json!(i + 1)])
            .collect();
        assert_eq!(doc["seq"].as_array().unwrap(), &expected, "group {r}");
    }
    let again = run(&data, pipeline).await.unwrap();
    assert_eq!(first, again);
}

//! Stage and operator semantics, each checked against the answer MongoDB gives for the same
//! documents (taken from MongoDB's documented behaviour; the full oracle corpus is separate).

mod common;

use common::{run, run_sorted};
use serde_json::json;

const PEOPLE: &str = r#"{"_id": 1, "name": "ann", "age": 31, "city": {"name": "Lisbon", "zip": "1000"}, "tags": ["a", "b"]}
{"_id": 2, "name": "bob", "age": 25.5, "city": {"name": "Porto"}}
{"_id": 3, "name": "cy", "city": null, "tags": []}
{"_id": 4, "name": "dee", "age": 40, "nick": "D"}
"#;

#[tokio::test]
async fn match_uses_type_bracketing_and_missing_fields() {
    // {age: {$gt: 30}} only sees numbers; the string "50" never matches a numeric bound.
    let docs = "{\"a\": 50}\n{\"a\": \"50\"}\n{\"b\": 1}\n";
    let out = run(docs, json!([{"$match": {"a": {"$gt": 30}}}]))
        .await
        .unwrap();
    // The column is widened to text ("50" and 50 both become "50"), so the numeric bound
    // matches nothing: documented difference for mixed-type fields.
    assert!(out.is_empty(), "{out:?}");

    let out = run_sorted(
        PEOPLE,
        json!([{"$match": {"age": {"$gt": 30}}}, {"$project": {"name": 1}}]),
    )
    .await;
    assert_eq!(
        out,
        vec![
            json!({"_id": 1, "name": "ann"}),
            json!({"_id": 4, "name": "dee"})
        ]
    );
    // $ne and $nin match documents where the field is missing.
    let out = run_sorted(
        PEOPLE,
        json!([{"$match": {"nick": {"$ne": "D"}}}, {"$project": {"_id": 1}}]),
    )
    .await;
    assert_eq!(
        out,
        vec![json!({"_id": 1}), json!({"_id": 2}), json!({"_id": 3})]
    );
    let out = run_sorted(
        PEOPLE,
        json!([{"$match": {"age": {"$nin": [31, 40]}}}, {"$project": {"_id": 1}}]),
    )
    .await;
    assert_eq!(out, vec![json!({"_id": 2}), json!({"_id": 3})]);
    // {field: null} matches null and missing.
    let out = run_sorted(
        PEOPLE,
        json!([{"$match": {"city": null}}, {"$project": {"_id": 1}}]),
    )
    .await;
    assert_eq!(out, vec![json!({"_id": 3}), json!({"_id": 4})]);
    // $not also matches documents without the field.
    let out = run_sorted(
        PEOPLE,
        json!([{"$match": {"age": {"$not": {"$gte": 30}}}}, {"$project": {"_id": 1}}]),
    )
    .await;
    assert_eq!(out, vec![json!({"_id": 2}), json!({"_id": 3})]);
    // A scalar condition on an array field matches when an element matches.
    let out = run(
        PEOPLE,
        json!([{"$match": {"tags": "b"}}, {"$project": {"_id": 1}}]),
    )
    .await
    .unwrap();
    assert_eq!(out, vec![json!({"_id": 1})]);
    // $exists, dotted paths, $in with null.
    let out = run_sorted(
        PEOPLE,
        json!([{"$match": {"city.zip": {"$exists": false}}}, {"$project": {"_id": 1}}]),
    )
    .await;
    assert_eq!(
        out,
        vec![json!({"_id": 2}), json!({"_id": 3}), json!({"_id": 4})]
    );
    let out = run_sorted(
        PEOPLE,
        json!([{"$match": {"nick": {"$in": ["D", null]}}}, {"$count": "n"}]),
    )
    .await;
    assert_eq!(out, vec![json!({"n": 4})]);
    // $regex with options, on strings only.
    let out = run(
        PEOPLE,
        json!([{"$match": {"name": {"$regex": "^B", "$options": "i"}}}, {"$project": {"_id": 1}}]),
    )
    .await
    .unwrap();
    assert_eq!(out, vec![json!({"_id": 2})]);
}

#[tokio::test]
async fn expressions_compare_across_types_by_bson_order() {
    // In aggregation expressions null < numbers < strings, and missing counts as null.
    let docs = "{\"v\": 5}\n{\"v\": \"x\"}\n{\"w\": 1}\n";
    let out = run_sorted(docs, json!([{"$project": {"_id": 0, "gt": {"$gt": ["$v", 3]}, "eqNull": {"$eq": ["$v", null]}, "cmp": {"$cmp": ["$v", 5]}}}])).await;
    // v is stored as text ("5", "x") because its type varies: both strings > 3.
    assert_eq!(
        out,
        vec![
            json!({"gt": false, "eqNull": true, "cmp": -1}),
            json!({"gt": true, "eqNull": false, "cmp": 1}),
            json!({"gt": true, "eqNull": false, "cmp": 1}),
        ]
    );
    let out = run_sorted(PEOPLE, json!([{"$project": {"_id": 1, "older": {"$gte": ["$age", 31]}, "missingLt": {"$lt": ["$age", 0]}}}])).await;
    assert_eq!(out[0], json!({"_id": 1, "older": true, "missingLt": false}));
    assert_eq!(out[2], json!({"_id": 3, "older": false, "missingLt": true}));
}

#[tokio::test]
async fn truthiness_conditionals_and_strings() {
    let out = run_sorted(
        PEOPLE,
        json!([{"$project": {
            "_id": 1,
            "hasAge": {"$cond": ["$age", "yes", "no"]},
            "nick": {"$ifNull": ["$nick", "$name"]},
            "shout": {"$toUpper": "$nick"},
            "both": {"$concat": ["$name", "-", "$nick"]},
            "any": {"$or": ["$nick", {"$gt": ["$age", 30]}]}
        }}]),
    )
    .await;
    // $toUpper of missing is "", $concat with a missing part is null (omitted).
    assert_eq!(
        out[0],
        json!({"_id": 1, "hasAge": "yes", "nick": "ann", "shout": "", "any": true})
    );
    assert_eq!(
        out[2],
        json!({"_id": 3, "hasAge": "no", "nick": "cy", "shout": "", "any": false})
    );
    assert_eq!(
        out[3],
        json!({"_id": 4, "hasAge": "yes", "nick": "D", "shout": "D", "both": "dee-D", "any": true})
    );
}

#[tokio::test]
async fn arithmetic_follows_mongodb() {
    let docs = "{\"a\": 7, \"b\": 2}\n{\"a\": 1, \"b\": 0}\n{\"a\": -3}\n";
    let out = run(docs, json!([{"$project": {"_id": 0, "div": {"$divide": ["$a", "$b"]}, "mod": {"$mod": ["$a", "$b"]},
        "sum": {"$add": ["$a", "$b", 1]}, "abs": {"$abs": "$a"}, "sub": {"$subtract": ["$a", 1]}, "mul": {"$multiply": ["$a", 2]}}}])).await.unwrap();
    assert_eq!(
        out,
        vec![
            json!({"div": 3.5, "mod": 1, "sum": 10, "abs": 7, "sub": 6, "mul": 14}),
            // Division and modulo by zero give null (MongoDB raises an error; see README).
            json!({"sum": 2, "abs": 1, "sub": 0, "mul": 2}),
            // A missing operand makes the result null.
            json!({"abs": 3, "sub": -4, "mul": -6}),
        ]
    );
}

#[tokio::test]
async fn project_keeps_document_order_and_id_rules() {
    let out = run(PEOPLE, json!([{"$match": {"_id": 1}}, {"$project": {"tags": 1, "name": 1, "upper": {"$toUpper": "$name"}, "city.zip": 1}}])).await.unwrap();
    let keys: Vec<_> = out[0].as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["_id", "name", "city", "tags", "upper"]);
    assert_eq!(out[0]["city"], json!({"zip": "1000"}));
    let out = run(
        PEOPLE,
        json!([{"$match": {"_id": 2}}, {"$project": {"_id": 0, "name": 1}}]),
    )
    .await
    .unwrap();
    assert_eq!(out, vec![json!({"name": "bob"})]);
    let out = run(
        PEOPLE,
        json!([{"$match": {"_id": 1}}, {"$project": {"city": 0, "tags": 0, "age": 0}}]),
    )
    .await
    .unwrap();
    assert_eq!(out, vec![json!({"_id": 1, "name": "ann"})]);
    let out = run(
        PEOPLE,
        json!([{"$match": {"_id": 1}}, {"$project": {"city.zip": 0, "tags": 0}}]),
    )
    .await
    .unwrap();
    // `age` holds 31 and 25.5, so the column is widened to double (README: schema rules).
    assert_eq!(
        out,
        vec![json!({"_id": 1, "name": "ann", "age": 31.0, "city": {"name": "Lisbon"}})]
    );
}

#[tokio::test]
async fn add_fields_replaces_in_place_and_appends() {
    let out = run(PEOPLE, json!([{"$match": {"_id": 2}}, {"$set": {"name": {"$toUpper": "$name"}, "city.country": "PT", "n": 1}}, {"$unset": "tags"}])).await.unwrap();
    assert_eq!(
        out,
        vec![
            json!({"_id": 2, "name": "BOB", "age": 25.5, "city": {"name": "Porto", "country": "PT"}, "n": 1})
        ]
    );
    let keys: Vec<_> = out[0].as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["_id", "name", "age", "city", "n"]);
}

#[tokio::test]
async fn group_accumulators() {
    let docs = "{\"k\": \"a\", \"v\": 1}\n{\"k\": \"a\", \"v\": 2.5}\n{\"k\": \"b\", \"v\": \"text\"}\n{\"k\": \"b\"}\n";
    // v mixes numbers and a string, so it is text: $sum ignores non-numbers (0) like MongoDB.
    let out = run_sorted(
        docs,
        json!([{"$group": {"_id": "$k", "s": {"$sum": "$v"}, "n": {"$sum": 1}}}]),
    )
    .await;
    assert_eq!(
        out,
        vec![
            json!({"_id": "a", "s": 0, "n": 2}),
            json!({"_id": "b", "s": 0, "n": 2})
        ]
    );

    let docs = "{\"k\": \"a\", \"v\": 1}\n{\"k\": \"a\", \"v\": 2.5}\n{\"k\": \"b\", \"v\": 4}\n{\"k\": \"b\"}\n{\"v\": 10}\n";
    let out = run_sorted(docs, json!([{"$group": {"_id": "$k", "s": {"$sum": "$v"}, "avg": {"$avg": "$v"}, "min": {"$min": "$v"},
        "max": {"$max": "$v"}, "n": {"$count": {}}, "twice": {"$sum": 2}, "set": {"$addToSet": "$k"}}}])).await;
    assert_eq!(
        out,
        vec![
            json!({"_id": "a", "s": 3.5, "avg": 1.75, "min": 1.0, "max": 2.5, "n": 2, "twice": 4, "set": ["a"]}),
            json!({"_id": "b", "s": 4.0, "avg": 4.0, "min": 4.0, "max": 4.0, "n": 2, "twice": 4, "set": ["b"]}),
            // Missing keys group under null.
            json!({"_id": null, "s": 10.0, "avg": 10.0, "min": 10.0, "max": 10.0, "n": 1, "twice": 2, "set": [null]}),
        ]
    );
}

#[tokio::test]
async fn group_with_constant_id_and_count_return_nothing_for_empty_input() {
    let out = run(
        PEOPLE,
        json!([{"$match": {"age": {"$gt": 100}}}, {"$group": {"_id": null, "n": {"$sum": 1}}}]),
    )
    .await
    .unwrap();
    assert!(out.is_empty(), "{out:?}");
    let out = run(
        PEOPLE,
        json!([{"$match": {"age": {"$gt": 100}}}, {"$count": "n"}]),
    )
    .await
    .unwrap();
    assert!(out.is_empty(), "{out:?}");
    let out = run(
        PEOPLE,
        json!([{"$group": {"_id": null, "n": {"$sum": 1}, "avgAge": {"$avg": "$age"}}}]),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        vec![json!({"_id": null, "n": 4, "avgAge": 32.166666666666664})]
    );
    let out = run(PEOPLE, json!([{"$group": {"_id": {"c": "$city.name"}, "n": {"$sum": 1}}}, {"$sort": {"_id.c": 1}}])).await.unwrap();
    assert_eq!(
        out,
        vec![
            json!({"_id": {}, "n": 2}),
            json!({"_id": {"c": "Lisbon"}, "n": 1}),
            json!({"_id": {"c": "Porto"}, "n": 1})
        ]
    );
}

#[tokio::test]
async fn sort_puts_nulls_first_ascending_and_last_descending() {
    let out = run(
        PEOPLE,
        json!([{"$sort": {"age": 1}}, {"$project": {"_id": 1}}]),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        vec![
            json!({"_id": 3}),
            json!({"_id": 2}),
            json!({"_id": 1}),
            json!({"_id": 4})
        ]
    );
    let out = run(
        PEOPLE,
        json!([{"$sort": {"age": -1}}, {"$skip": 1}, {"$limit": 2}, {"$project": {"_id": 1}}]),
    )
    .await
    .unwrap();
    assert_eq!(out, vec![json!({"_id": 1}), json!({"_id": 2})]);
    let out = run(
        PEOPLE,
        json!([{"$sort": {"city.name": -1, "_id": 1}}, {"$project": {"_id": 1}}]),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        vec![
            json!({"_id": 2}),
            json!({"_id": 1}),
            json!({"_id": 3}),
            json!({"_id": 4})
        ]
    );
}

#[tokio::test]
async fn plan_time_type_errors_name_the_path() {
    let e = run(
        PEOPLE,
        json!([{"$project": {"x": {"$add": ["$age", "$name"]}}}]),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "pipeline[0].$project.x.$add[1]: $add only supports numeric types, not string"
    );
    let e = run(
        PEOPLE,
        json!([{"$project": {"x": {"$cond": [true, 1, "one"]}}}]),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("pipeline[0].$project.x.$cond[2]: $cond branches must have one type"),
        "{e}"
    );
    let e = run(PEOPLE, json!([{"$match": {"name": {"$regex": "("}}}]))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("pipeline[0].$match.name: invalid $regex"),
        "{e}"
    );
    let e = run(
        PEOPLE,
        json!([{"$match": {"a": {"$elemMatch": {"$expr": true}}}}]),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "pipeline[0].$match.a.$elemMatch.$expr: $expr is not supported inside $elemMatch"
    );
    let docs = "{\"o\": [{\"a\": [1, 2]}]}\n";
    let e = run(docs, json!([{"$unwind": "$o.a"}])).await.unwrap_err();
    assert!(
        e.to_string().starts_with(
            "pipeline[0].$unwind: cannot unwind \"o.a\": the path goes through an array"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn date_operators_reject_bad_arguments_by_path() {
    let docs = "{\"at\": {\"$date\": \"2024-03-10T06:30:00Z\"}, \"s\": \"x\"}\n";
    let cases = [
        (
            json!([{"$project": {"y": {"$year": "$s"}}}]),
            "pipeline[0].$project.y.$year: $year expects a date, got string (use $toDate or $dateFromString to convert)",
        ),
        (
            json!([{"$project": {"y": {"$hour": {"date": "$at", "timezone": "Mars/Olympus"}}}}]),
            "pipeline[0].$project.y.$hour: timezone: unknown time zone \"Mars/Olympus\"",
        ),
        (
            json!([{"$project": {"y": {"$dateTrunc": {"date": "$at", "unit": "fortnight"}}}}]),
            "pipeline[0].$project.y.$dateTrunc: unit: unknown unit \"fortnight\"",
        ),
        (
            json!([{"$project": {"y": {"$dateToString": {"date": "$at", "format": "%Q"}}}}]),
            "pipeline[0].$project.y.$dateToString: format: unknown format specifier %Q",
        ),
        (
            json!([{"$project": {"y": {"$dateAdd": {"startDate": "$at", "unit": "day"}}}}]),
            "pipeline[0].$project.y.$dateAdd: $dateAdd is missing its \"amount\" argument",
        ),
        (
            json!([{"$match": {"at": {"$gt": {"$date": "yesterday"}}}}]),
            "pipeline[0].$match.at.$gt.$date: \"yesterday\" is not an ISO-8601 date",
        ),
    ];
    for (pipeline, want) in cases {
        let e = run(docs, pipeline).await.unwrap_err().to_string();
        assert!(e.starts_with(want), "{e}\nwanted: {want}");
    }
    // Text that does not parse is an error at run time, unless onError is given.
    let e = run(docs, json!([{"$project": {"d": {"$toDate": "$s"}}}]))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot parse \"x\" as a date"), "{e}");
    let ok = run(
        docs,
        json!([{"$project": {"_id": 0, "d": {"$dateFromString": {"dateString": "$s", "onError": "$at"}}}}]),
    )
    .await
    .unwrap();
    assert_eq!(ok, [json!({"d": {"$date": "2024-03-10T06:30:00.000Z"}})]);
}

#[tokio::test]
async fn reduce_without_a_columnar_fold_is_rejected_by_path() {
    let docs = "{\"a\": [1, 2, 3]}\n";
    let e = run(
        docs,
        json!([{"$project": {"r": {"$reduce": {"input": "$a", "initialValue": 0,
            "in": {"$subtract": ["$$value", "$$this"]}}}}}]),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("pipeline[0].$project.r.$reduce.in: $reduce is supported when"),
        "{e}"
    );
    // $$value used twice is not a fold of one element either.
    let e = run(
        docs,
        json!([{"$project": {"r": {"$reduce": {"input": "$a", "initialValue": 0,
            "in": {"$add": ["$$value", "$$value"]}}}}}]),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("$reduce is supported when"), "{e}");
    let ok = run(
        docs,
        json!([{"$project": {"_id": 0, "r": {"$reduce": {"input": "$a", "initialValue": 10,
            "in": {"$add": ["$$value", {"$multiply": ["$$this", "$$this"]}]}}}}}]),
    )
    .await
    .unwrap();
    assert_eq!(ok, [json!({"r": 24})], "integers stay integers");
}

#[tokio::test]
async fn integer_overflow_stops_instead_of_wrapping() {
    let docs = "{\"n\": 4611686018427387904, \"m\": 3}\n";
    let e = run(docs, json!([{"$project": {"x": {"$multiply": ["$n", 2]}}}]))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("integer overflow in $multiply"),
        "{e}"
    );
    let e = run(docs, json!([{"$project": {"x": {"$add": ["$n", "$n"]}}}]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("integer overflow in $add"), "{e}");
    let ok = run(
        docs,
        json!([{"$project": {"_id": 0, "x": {"$subtract": ["$n", "$m"]}, "y": {"$multiply": ["$m", 3, null]}}}]),
    )
    .await
    .unwrap();
    assert_eq!(ok, [json!({"x": 4611686018427387901i64})]);
}

#[tokio::test]
async fn nested_lambdas_after_a_sort_and_limit() {
    // A lambda inside another lambda's argument, above a top-k sort: DataFusion 55's physical
    // projection pushdown re-indexed its parameter (the engine turns that rule off).
    let got = run(
        PEOPLE,
        json!([{"$sort": {"age": -1}}, {"$limit": 2}, {"$project": {"t": {"$reduce": {
            "input": "$tags", "initialValue": "", "in": {"$concat": ["$$value", "$$this"]}}}}}]),
    )
    .await
    .unwrap();
    assert_eq!(got, [json!({"_id": 4}), json!({"_id": 1, "t": "ab"})]);
}

#[tokio::test]
async fn paths_through_arrays_of_scalars_are_missing() {
    // `tags` holds strings: `tags.x` has no values, so it matches only as missing.
    let out = run(PEOPLE, json!([{"$match": {"tags.x": 1}}]))
        .await
        .unwrap();
    assert!(out.is_empty(), "{out:?}");
    let out = run_sorted(
        PEOPLE,
        json!([{"$match": {"tags.x": {"$exists": false}}}, {"$project": {"_id": 1}}]),
    )
    .await;
    assert_eq!(out.len(), 4, "{out:?}");
}

#[tokio::test]
async fn variables_must_be_bound_and_inputs_typed() {
    let e = run(PEOPLE, json!([{"$project": {"x": "$$nope"}}]))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "pipeline[0].$project.x: undefined variable \"$$nope\""
    );
    let e = run(
        PEOPLE,
        json!([{"$project": {"x": {"$map": {"input": "$name", "in": 1}}}}]),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "pipeline[0].$project.x.$map.input: input must be an array, not string"
    );
    let e = run(PEOPLE, json!([{"$project": {"x": {"$size": "$name"}}}]))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "pipeline[0].$project.x.$size[0]: $size needs an array, not string"
    );
    let e = run(
        PEOPLE,
        json!([{"$project": {"x": {"$regexMatch": {"input": "$name", "regex": "$nick"}}}}]),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "pipeline[0].$project.x.$regexMatch[1]: $regexMatch needs a constant string here"
    );
    // $let variables see the document but not each other.
    let out = run(PEOPLE, json!([{"$match": {"_id": 1}}, {"$project": {"_id": 0, "x": {"$let": {"vars": {"a": "$age", "b": 2}, "in": {"$multiply": ["$$a", "$$b"]}}}}}]))
        .await
        .unwrap();
    assert_eq!(out, vec![json!({"x": 62.0})]);
}

#[tokio::test]
async fn sample_is_a_seeded_subset() {
    let docs: String = (0..500).map(|i| format!("{{\"_id\": {i}}}\n")).collect();
    let a = run(&docs, json!([{"$sample": {"size": 20, "seed": 7}}]))
        .await
        .unwrap();
    let b = run(&docs, json!([{"$sample": {"size": 20, "seed": 7}}]))
        .await
        .unwrap();
    let c = run(&docs, json!([{"$sample": {"size": 20, "seed": 8}}]))
        .await
        .unwrap();
    assert_eq!(a.len(), 20);
    assert_eq!(a, b, "same seed, same sample");
    assert_ne!(a, c, "another seed, another sample");
    let mut ids: Vec<i64> = a.iter().map(|d| d["_id"].as_i64().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 20, "no document twice");
    assert!(ids.iter().all(|i| (0..500).contains(i)));
    // The sample is spread over the input, not its first documents.
    assert!(ids.iter().any(|i| *i >= 250), "{ids:?}");
    let all = run(&docs, json!([{"$sample": {"size": 900}}]))
        .await
        .unwrap();
    assert_eq!(all.len(), 500);
}

#[tokio::test]
async fn combining_stages_report_bad_input_names_and_options() {
    let e = run(PEOPLE, json!([{"$lookup": {"from": "nowhere", "localField": "a", "foreignField": "b", "as": "x"}}]))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "pipeline[0].$lookup: unknown input \"nowhere\" (register it with --input nowhere=PATH)"
    );
    // A correlated $lookup pipeline may only filter (yet): other stages name their path.
    let e = run(
        PEOPLE,
        json!([{"$lookup": {"from": "input", "let": {"n": "$name"}, "as": "y",
            "pipeline": [{"$match": {"$expr": {"$eq": ["$name", "$$n"]}}}, {"$sort": {"age": 1}}]}}]),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "pipeline[0].$lookup.pipeline[1].$sort: a $lookup pipeline with let variables (or localField) supports $match, $project, $addFields/$set, $unset and $replaceRoot stages (yet)"
    );
    let e = run(
        PEOPLE,
        json!([{"$lookup": {"from": "input", "let": {"n": "$name"}, "as": "y"}}]),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("pipeline[0].$lookup.let: let needs a pipeline"),
        "{e}"
    );
    let e = run(PEOPLE, json!([{"$replaceRoot": {"newRoot": "$name"}}]))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "pipeline[0].$replaceRoot.newRoot: the new root must be a document, not string"
    );
}

#[tokio::test]
async fn sample_rate_keeps_about_that_share_repeatably() {
    let docs: String = (0..2000).map(|i| format!("{{\"_id\": {i}}}\n")).collect();
    let a = run(&docs, json!([{"$sampleRate": 0.25}])).await.unwrap();
    let b = run(&docs, json!([{"$sampleRate": 0.25}])).await.unwrap();
    assert_eq!(a, b);
    assert!((400..600).contains(&a.len()), "{} of 2000", a.len());
    assert!(
        run(&docs, json!([{"$sampleRate": 0}]))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        run(&docs, json!([{"$sampleRate": 1}])).await.unwrap().len(),
        2000
    );
    let e = run(&docs, json!([{"$sampleRate": 2}])).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "pipeline[0].$sampleRate: $sampleRate expects a number from 0 to 1"
    );
}

/// MongoDB's own `$bucket` example: numeric boundaries and `"default": "Other"`. The `_id`
/// column holds both as text (the widening rule for mixed values); buckets come in MongoDB's
/// order, numbers before the string default.
#[tokio::test]
async fn bucket_with_a_default_of_another_type() {
    let artists = r#"{"last_name": "Bernard", "year_born": 1845}
{"last_name": "Rippl-Ronai", "year_born": 1861}
{"last_name": "Ostroumova", "year_born": 1871}
{"last_name": "Van Gogh", "year_born": 1853}
{"last_name": "Maurer", "year_born": 1868}
{"last_name": "Munch", "year_born": 1863}
{"last_name": "Redon", "year_born": 1840}
{"last_name": "Hokusai", "year_born": 1760}
"#;
    let out = run(
        artists,
        json!([{"$bucket": {"groupBy": "$year_born", "boundaries": [1840, 1850, 1860, 1870, 1880],
                            "default": "Other",
                            "output": {"count": {"$sum": 1}, "artists": {"$push": "$last_name"}}}}]),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        vec![
            json!({"_id": "1840", "count": 2, "artists": ["Bernard", "Redon"]}),
            json!({"_id": "1850", "count": 1, "artists": ["Van Gogh"]}),
            json!({"_id": "1860", "count": 3, "artists": ["Rippl-Ronai", "Maurer", "Munch"]}),
            json!({"_id": "1870", "count": 1, "artists": ["Ostroumova"]}),
            json!({"_id": "Other", "count": 1, "artists": ["Hokusai"]}),
        ]
    );
    // A numeric default with string boundaries sorts first.
    let out = run(
        artists,
        json!([{"$bucket": {"groupBy": "$last_name", "boundaries": ["C", "N", "Z"], "default": 0}}]),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        vec![
            json!({"_id": "0", "count": 1}),
            json!({"_id": "C", "count": 3}),
            json!({"_id": "N", "count": 4}),
        ]
    );
}

/// A constant array whose elements no one Arrow type holds (an object and a number) is a list
/// of their JSON texts, the widening rule of documents — it once panicked while planning.
#[tokio::test]
async fn a_constant_array_of_mixed_types_follows_the_widening_rule() {
    let out = run(
        PEOPLE,
        json!([{"$project": {"_id": 0, "name": 1, "mixed": {"$literal": [{"a": 1}, 28, "x"]}}}, {"$limit": 1}]),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        vec![json!({"name": "ann", "mixed": ["{\"a\":1}", "28", "x"]})]
    );
    // The pipeline the fuzzer found: an array constant holding an operator document.
    let out = run(
        PEOPLE,
        json!([{"$match": {"tags": {"$lte": [{"$dayOfMonth": "$at"}, 28]}}}]),
    )
    .await;
    assert!(out.is_ok(), "{out:?}");
}

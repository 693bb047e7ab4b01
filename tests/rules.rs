//! The rule engine: hit policies and ordering, actions, traces, hooks, custom actions, the
//! CLI, and a differential test against json-rules-engine on random rule sets.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};

use fluxion::Engine;
use fluxion::dsl::rule_set::{Rule, RuleSet};
use fluxion::rules::{Action, Decision, Hooks, Options, RuleEngine};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

const DOCS: &str = r#"{"id": 1, "amount": 50, "country": "FR", "tags": ["new"]}
{"id": 2, "amount": 500, "country": "PT", "tags": ["vip", "new"]}
{"id": 3, "amount": 5000, "country": "FR"}
{"id": 4, "country": "DE", "tags": []}
"#;

async fn decide(rule_set: Value, docs: &str, options: Options) -> Vec<Decision> {
    let engine = Engine::new();
    engine.register_jsonl("docs", docs.as_bytes()).unwrap();
    let rs = RuleSet::from_value(&rule_set).unwrap();
    let rules = RuleEngine::new(rs);
    if options.execute {
        rules.execute(&engine, "docs", options.trace).await.unwrap()
    } else {
        rules.evaluate(&engine, "docs", &options).await.unwrap()
    }
}

fn passed(d: &[Decision]) -> Vec<Vec<String>> {
    d.iter().map(|d| d.passed.clone()).collect()
}

fn set(policy: &str) -> Value {
    json!({"id": "t", "version": "1.0.0", "hitPolicy": policy, "rules": [
        {"id": "any-amount", "salience": 1, "when": {"all": [{"fact": "amount", "operator": "greaterThan", "value": 0}]}},
        {"id": "big", "salience": 10, "when": [{"$match": {"amount": {"$gte": 500}}}]},
        {"id": "huge", "salience": 10, "when": {"all": [{"fact": "amount", "operator": "greaterThanInclusive", "value": 5000}]}},
        {"id": "fr", "salience": 5, "when": {"any": [{"fact": "country", "operator": "equal", "value": "FR"}]}}
    ]})
}

#[tokio::test]
async fn hit_policies_follow_salience_then_file_order() {
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let all = decide(set("all"), DOCS, Options::default()).await;
    assert_eq!(
        passed(&all),
        vec![
            s(&["fr", "any-amount"]),
            s(&["big", "any-amount"]),
            s(&["big", "huge", "fr", "any-amount"]),
            s(&[]),
        ]
    );
    assert_eq!(all[0].rule_set, "t@1.0.0");
    assert_eq!(all[2].index, 2);
    let first = decide(set("first"), DOCS, Options::default()).await;
    assert_eq!(
        passed(&first),
        vec![s(&["fr"]), s(&["big"]), s(&["big"]), s(&[])]
    );
    let priority = decide(set("priority"), DOCS, Options::default()).await;
    assert_eq!(
        passed(&priority),
        vec![s(&["fr"]), s(&["big"]), s(&["big", "huge"]), s(&[])]
    );
}

fn actions_set() -> Value {
    json!({"id": "a", "version": "2.1.0", "attributes": {"team": "risk"}, "rules": [
        {"id": "review", "salience": 2, "when": [{"$match": {"amount": {"$gte": 500}}}],
         "actions": [
            {"type": "set", "field": "state", "value": "review"},
            {"type": "set", "field": "fee", "value": {"$multiply": ["$amount", 0.01]}},
            {"type": "route", "sink": "manual"},
            {"type": "emit", "document": {"id": "$id", "why": "large"}}
         ]},
        {"id": "french", "salience": 1, "attributes": {"team": "fr"}, "when": {"all": [{"fact": "country", "operator": "equal", "value": "FR"}]},
         "actions": [
            {"type": "set", "field": "state", "value": "french"},
            {"type": "unset", "field": "tags"},
            {"type": "tag", "tag": "eu"}
         ]}
    ]})
}

#[tokio::test]
async fn execute_runs_actions_in_evaluation_order() {
    let d = decide(
        actions_set(),
        DOCS,
        Options {
            execute: true,
            trace: false,
        },
    )
    .await;
    // Later rules' writes win; values are computed from the document as it came in.
    assert_eq!(
        d[0].document,
        Some(json!({"id": 1, "amount": 50, "country": "FR", "state": "french"}))
    );
    assert_eq!(
        d[1].document,
        Some(
            json!({"id": 2, "amount": 500, "country": "PT", "tags": ["vip", "new"], "state": "review", "fee": 5.0})
        )
    );
    assert_eq!(
        d[2].document,
        Some(json!({"id": 3, "amount": 5000, "country": "FR", "state": "french", "fee": 50.0}))
    );
    assert_eq!(
        d[3].document,
        Some(json!({"id": 4, "country": "DE", "tags": []}))
    );
    assert_eq!(d[2].tags, vec!["eu"]);
    assert_eq!(d[2].routes, vec!["manual"]);
    assert_eq!(
        d[1].actions,
        vec![
            json!({"rule": "review", "type": "set", "field": "state", "value": "review", "attributes": {"team": "risk"}}),
            json!({"rule": "review", "type": "set", "field": "fee", "value": 5.0, "attributes": {"team": "risk"}}),
            json!({"rule": "review", "type": "route", "sink": "manual", "attributes": {"team": "risk"}}),
            json!({"rule": "review", "type": "emit", "document": {"id": 2, "why": "large"}, "attributes": {"team": "risk"}}),
        ]
    );
    assert_eq!(d[0].actions[2]["attributes"], json!({"team": "fr"}));
    // Evaluating leaves documents alone but lists the same actions.
    let e = decide(actions_set(), DOCS, Options::default()).await;
    assert_eq!(e[1].document, None);
    assert_eq!(e[1].actions, d[1].actions);
}

#[tokio::test]
async fn traces_show_the_values_that_decided() {
    let d = decide(
        json!({"id": "t", "version": "1.0.0", "rules": [
            {"id": "r", "when": {"all": [
                {"fact": "amount", "operator": "greaterThan", "value": 100},
                {"not": {"fact": "tags", "operator": "contains", "value": "vip"}}
            ]}},
            {"id": "m", "when": [{"$match": {"country": "FR"}}]}
        ]}),
        DOCS,
        Options {
            execute: false,
            trace: true,
        },
    )
    .await;
    let trace = d[1].trace.as_ref().unwrap();
    assert_eq!(
        trace[0],
        json!({"rule": "r", "result": false, "conditions": [
            {"fact": "amount", "operator": "greaterThan", "value": 100, "factResult": 500, "result": true},
            {"fact": "tags", "operator": "contains", "value": "vip", "factResult": ["vip", "new"], "result": true}
        ]})
    );
    assert_eq!(
        trace[1],
        json!({"rule": "m", "result": false, "conditions": [{"stage": 0, "operator": "$match", "result": false}]})
    );
    assert_eq!(d[2].trace.as_ref().unwrap()[0]["result"], json!(true));
    assert_eq!(
        d[3].trace.as_ref().unwrap()[0]["conditions"][0]["factResult"],
        Value::Null
    );
}

#[tokio::test]
async fn rules_with_stages_that_reshape_run_as_their_own_plan() {
    let d = decide(
        json!({"id": "t", "version": "1.0.0", "rules": [
            {"id": "vip-tag", "when": [{"$unwind": "$tags"}, {"$match": {"tags": "vip"}}]},
            {"id": "computed", "when": [{"$addFields": {"double": {"$multiply": ["$amount", 2]}}}, {"$match": {"double": {"$gt": 900}}}]},
            {"id": "plain", "when": [{"$match": {"country": "FR"}}]}
        ]}),
        DOCS,
        Options::default(),
    )
    .await;
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        passed(&d),
        vec![
            s(&["plain"]),
            s(&["vip-tag", "computed"]),
            s(&["computed", "plain"]),
            s(&[])
        ]
    );
    let engine = Engine::new();
    engine.register_jsonl("docs", DOCS.as_bytes()).unwrap();
    let grouped = RuleSet::from_value(&json!({"id": "t", "version": "1.0.0", "rules": [
        {"id": "g", "when": [{"$group": {"_id": "$country"}}]}
    ]}))
    .unwrap();
    let e = RuleEngine::new(grouped)
        .evaluate(&engine, "docs", &Options::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("do not keep documents"), "{e}");
}

struct Recorder(Mutex<Vec<String>>);

impl Hooks for Recorder {
    fn before_rule_set(&self, rs: &RuleSet, documents: usize) {
        self.0
            .lock()
            .unwrap()
            .push(format!("start {} {documents}", rs.label()));
    }
    fn before_rule(&self, rule: &Rule) {
        self.0.lock().unwrap().push(format!("before {}", rule.id));
    }
    fn after_rule(&self, rule: &Rule, fired: &[usize]) {
        self.0
            .lock()
            .unwrap()
            .push(format!("after {} {fired:?}", rule.id));
    }
    fn after_rule_set(&self, _: &RuleSet, decisions: &[Decision]) {
        self.0
            .lock()
            .unwrap()
            .push(format!("end {}", decisions.len()));
    }
}

struct Notify;

impl Action for Notify {
    fn name(&self) -> &str {
        "notify"
    }
    fn run(&self, action: &Value, document: &mut Map<String, Value>) -> fluxion::Result<()> {
        if document.get("id") == Some(&json!(3)) {
            return Err(fluxion::Error::config("notify", "the pager is down"));
        }
        document.insert("notified".into(), action["channel"].clone());
        Ok(())
    }
}

#[tokio::test]
async fn hooks_and_custom_actions() {
    let rs = RuleSet::from_value(&json!({"id": "h", "version": "0.1.0", "rules": [
        {"id": "low", "salience": 1, "when": [{"$match": {"amount": {"$lt": 100}}}],
         "actions": [{"type": "notify", "channel": "ops"}]},
        {"id": "de", "salience": 9, "when": [{"$match": {"country": "DE"}}]}
    ]}))
    .unwrap();
    let engine = Engine::new();
    engine.register_jsonl("docs", DOCS.as_bytes()).unwrap();
    let mut rules = RuleEngine::new(rs.clone());
    // Unknown until registered, then a second registration under the same name clashes.
    assert!(
        rules
            .evaluate(&engine, "docs", &Options::default())
            .await
            .is_err()
    );
    rules.register_action(Arc::new(Notify)).unwrap();
    let clash = rules.register_action(Arc::new(Notify)).unwrap_err();
    assert!(clash.to_string().contains("already registered"), "{clash}");
    let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
    rules.add_hooks(recorder.clone());
    let d = rules.execute(&engine, "docs", false).await.unwrap();
    assert_eq!(d[0].document.as_ref().unwrap()["notified"], "ops");
    assert_eq!(
        *recorder.0.lock().unwrap(),
        vec![
            "start h@0.1.0 4",
            "before de",
            "after de [3]",
            "before low",
            "after low [0]",
            "end 4"
        ]
    );
    // A failing action fails the run, naming the rule and the document.
    let failing = r#"{"id": 3, "amount": 5}"#;
    let engine = Engine::new();
    engine.register_jsonl("docs", failing.as_bytes()).unwrap();
    let e = rules
        .execute(&engine, "docs", false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ruleSet.rules[0].actions: action \"notify\" failed for document 0: notify: the pager is down"),
        "{e}"
    );
}

#[tokio::test]
async fn a_rules_stage_in_a_pipeline() {
    let out = common::run(
        DOCS,
        json!([
            {"$rules": {"ruleSet": actions_set(), "mode": "execute", "as": "d"}},
            {"$project": {"_id": 0, "id": 1, "state": 1, "passed": "$d.passed", "tags": "$d.tags"}}
        ]),
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        vec![
            json!({"id": 1, "state": "french", "passed": ["french"], "tags": ["eu"]}),
            json!({"id": 2, "state": "review", "passed": ["review"], "tags": []}),
            json!({"id": 3, "state": "french", "passed": ["review", "french"], "tags": ["eu"]}),
            json!({"id": 4, "passed": [], "tags": []}),
        ]
    );
}

fn fluxion() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fluxion"))
}

/// Runs `fluxion args…`, which must succeed; its standard output.
fn fluxion_ok(args: &[&str]) -> String {
    let out = fluxion().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "fluxion {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The documents of JSON-lines text.
fn documents(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The documents of a JSON-lines file.
fn file_documents(path: impl AsRef<std::path::Path>) -> Vec<Value> {
    documents(&std::fs::read_to_string(path).unwrap())
}

#[test]
fn cli_eval_prints_one_line_per_document() {
    let lines = documents(&fluxion_ok(&[
        "rules",
        "eval",
        "examples/rules/order-approval.json",
        "--input",
        "examples/data/orders.jsonl",
        "--execute",
    ]));
    assert_eq!(lines.len(), 600);
    let inputs = file_documents("examples/data/orders.jsonl");
    for (i, (line, input)) in lines.iter().zip(&inputs).enumerate() {
        assert_eq!(line["index"], json!(i));
        assert_eq!(line["ruleSet"], "order-approval@1.0.0");
        let passed: Vec<&str> = line["passed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        // Each rule, judged here by hand from the input document.
        let status = input["status"].as_str().unwrap();
        let value = input["orderValue"].as_f64().unwrap();
        let ship = &input["shipping"];
        let mut expected = Vec::new();
        if status == "CANCELLED" {
            expected.push("cancelled");
        }
        if status == "PAID" && value > 400.0 {
            expected.push("large-order");
        }
        if ship["express"] == json!(true)
            && !["PT", "ES"].contains(&ship["country"].as_str().unwrap_or(""))
        {
            expected.push("express-abroad");
        }
        if status == "PAID" && input["coupon"] == json!("VIP") && value <= 400.0 {
            expected.push("vip-paid");
        }
        if input["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|it| it["qty"].as_i64().unwrap() >= 4)
        {
            expected.push("many-items");
        }
        assert_eq!(passed, expected, "document {i}");
        let doc = &line["document"];
        assert_eq!(doc["orderId"], input["orderId"]);
        let approval = if expected.contains(&"vip-paid") {
            json!("approved")
        } else if expected.contains(&"large-order") {
            json!("review")
        } else if expected.contains(&"cancelled") {
            json!("rejected")
        } else {
            Value::Null
        };
        assert_eq!(doc["approval"], approval, "document {i}");
    }
}

#[test]
fn cli_lint_reports_errors_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        json!({"id": "b", "version": "1.0.0", "hitPolicy": "first", "rules": [
            {"id": "a", "when": {"all": [{"fact": "x", "operator": "greaterThan", "value": 1}]}},
            {"id": "b", "when": {"all": [{"fact": "x", "operator": "greaterThan", "value": 5}]}, "actions": [{"type": "page"}]}
        ]})
        .to_string(),
    )
    .unwrap();
    let out = fluxion()
        .args(["rules", "lint", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        vec![
            "error[unknown-action] rule \"b\" at ruleSet.rules[1].actions[0].type (page): unknown action \"page\" (built in: set, unset, tag, emit, route)",
            "warning[duplicate-salience] rule \"b\" at ruleSet.rules[1].salience: salience 0 is also rule \"a\"'s: under hitPolicy \"first\" file order decides which fires",
            "warning[unreachable] rule \"b\" at ruleSet.rules[1].when: whenever it passes, rule \"a\" (evaluated before it) passes too: under hitPolicy \"first\" it never fires",
        ]
    );
    let ok = fluxion()
        .args(["rules", "lint", "examples/rules/order-approval.json"])
        .output()
        .unwrap();
    assert!(ok.status.success());
    assert_eq!(
        String::from_utf8(ok.stdout).unwrap(),
        "examples/rules/order-approval.json: ok (0 warning(s))\n"
    );
}

// ---- differential: json-rules-engine ----

const WORDS: &[&str] = &["a", "b", "gold", "FR", ""];

fn random_scalar(rng: &mut StdRng) -> Value {
    match rng.random_range(0..4) {
        0 => json!(rng.random_range(-3..4)),
        1 => json!(rng.random_range(-6..7) as f64 / 2.0),
        2 => json!(WORDS[rng.random_range(0..WORDS.len())]),
        _ => json!(rng.random_bool(0.5)),
    }
}

/// A document: each field present with probability 0.8, each of one type across documents
/// (a field of mixed types is JSON text in Fluxion).
fn random_doc(rng: &mut StdRng) -> Value {
    let mut m = Map::new();
    let mut maybe = |name: &str, v: Value, rng: &mut StdRng| {
        if rng.random_bool(0.8) {
            m.insert(name.into(), v);
        }
    };
    let n = json!(rng.random_range(-3..4));
    maybe("n", n, rng);
    let x = json!(rng.random_range(-6..7) as f64 / 2.0);
    maybe("x", x, rng);
    let s = json!(WORDS[rng.random_range(0..WORDS.len())]);
    maybe("s", s, rng);
    let b = json!(rng.random_bool(0.5));
    maybe("b", b, rng);
    let len = rng.random_range(0..4);
    let tags: Vec<Value> = (0..len)
        .map(|_| json!(WORDS[rng.random_range(0..WORDS.len())]))
        .collect();
    maybe("tags", json!(tags), rng);
    let len = rng.random_range(0..3);
    let nums: Vec<Value> = (0..len).map(|_| json!(rng.random_range(-3..4))).collect();
    maybe("nums", json!(nums), rng);
    let o = json!({"k": rng.random_range(-3..4), "w": WORDS[rng.random_range(0..WORDS.len())]});
    maybe("o", o, rng);
    Value::Object(m)
}

const FACTS: &[&str] = &["n", "x", "s", "b", "tags", "nums", "o", "absent"];
const NUMERIC: &[&str] = &["n", "x"];
const OPS: &[&str] = &[
    "equal",
    "notEqual",
    "lessThan",
    "lessThanInclusive",
    "greaterThan",
    "greaterThanInclusive",
    "in",
    "notIn",
    "contains",
    "doesNotContain",
];

fn random_leaf(rng: &mut StdRng) -> Value {
    let fact = FACTS[rng.random_range(0..FACTS.len())];
    let op = OPS[rng.random_range(0..OPS.len())];
    let mut leaf = json!({"fact": fact, "operator": op});
    if fact == "o" || rng.random_bool(0.05) {
        leaf["path"] = json!(["$.k", "$.w", "$.none"][rng.random_range(0..3)]);
    }
    let ordering = op.contains("Than");
    leaf["value"] = match op {
        "in" | "notIn" => {
            let len = rng.random_range(0..4);
            json!((0..len).map(|_| random_scalar(rng)).collect::<Vec<_>>())
        }
        _ if ordering && rng.random_bool(0.2) => {
            json!({"fact": NUMERIC[rng.random_range(0..NUMERIC.len())]})
        }
        _ if ordering => json!(rng.random_range(-6..7) as f64 / 2.0),
        _ if rng.random_bool(0.15) => json!({"fact": FACTS[rng.random_range(0..FACTS.len())]}),
        _ if rng.random_bool(0.05) => json!([1]),
        _ => random_scalar(rng),
    };
    leaf
}

fn random_condition(rng: &mut StdRng, depth: usize) -> Value {
    if depth == 0 || rng.random_bool(0.4) {
        return random_leaf(rng);
    }
    match rng.random_range(0..5) {
        0 => json!({"not": random_condition(rng, depth - 1)}),
        k => {
            let len = rng.random_range(1..4);
            let parts: Vec<Value> = (0..len).map(|_| random_condition(rng, depth - 1)).collect();
            if k % 2 == 0 {
                json!({"all": parts})
            } else {
                json!({"any": parts})
            }
        }
    }
}

#[tokio::test]
async fn decisions_equal_json_rules_engine_on_random_rule_sets() {
    let mut oracle = common::oracle::Oracle::start_script("rules_oracle.cjs");
    let mut rng = StdRng::seed_from_u64(20261201);
    let mut compared = 0;
    for case in 0..150 {
        let docs: Vec<Value> = (0..25).map(|_| random_doc(&mut rng)).collect();
        let rules: Vec<Value> = (0..6)
            .map(|i| {
                let top = if rng.random_bool(0.5) { "all" } else { "any" };
                let len = rng.random_range(1..4);
                let parts: Vec<Value> = (0..len).map(|_| random_condition(&mut rng, 2)).collect();
                json!({"id": format!("r{i}"), "priority": rng.random_range(1..4), "conditions": {top: parts}})
            })
            .collect();
        let answer = oracle.request(json!({"rules": rules, "docs": docs}));
        let expected = answer["passed"]
            .as_array()
            .unwrap_or_else(|| panic!("case {case}: json-rules-engine failed: {answer}"));
        let rule_set = json!({"id": "random", "version": "1.0.0", "rules": rules.iter().map(|r| json!({
            "id": r["id"], "salience": r["priority"], "when": r["conditions"]
        })).collect::<Vec<_>>()});
        let data: String = docs.iter().map(|d| format!("{d}\n")).collect();
        let decisions = decide(rule_set.clone(), &data, Options::default()).await;
        for (i, (d, want)) in decisions.iter().zip(expected).enumerate() {
            let mut got = d.passed.clone();
            got.sort();
            let want: Vec<String> = serde_json::from_value(want.clone()).unwrap();
            assert_eq!(
                got, want,
                "case {case}, document {i}: {}\nrules: {rule_set}",
                docs[i]
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 150 * 25);
}

#[test]
fn a_streaming_job_decides_as_the_batch_does_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::copy(
        "examples/rules/order-approval.json",
        rules.join("order-approval.json"),
    )
    .unwrap();
    std::fs::copy("examples/data/orders.jsonl", dir.path().join("in.jsonl")).unwrap();
    let pipeline = json!([
        {"$rules": {"ruleSet": "order-approval@^1", "mode": "execute"}},
        {"$project": {"_id": 0, "orderId": 1, "approval": 1, "discount": 1,
                      "passed": "$decision.passed", "ruleSet": "$decision.ruleSet"}}
    ]);
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        json!({"source": {"type": "file", "path": "in.jsonl"}, "checkpoint": {"store": "cp"},
               "rules": "rules", "pipeline": pipeline,
               "sink": {"type": "file", "path": "out.jsonl"},
               "runtime": {"microBatchSize": 37}})
        .to_string(),
    )
    .unwrap();
    fluxion_ok(&["run", job.to_str().unwrap()]);
    let streamed = file_documents(dir.path().join("out.jsonl"));
    // The same pipeline in one batch, the rule set read from its file.
    let mut batch_pipeline = pipeline.clone();
    batch_pipeline[0]["$rules"]["ruleSet"] = json!("examples/rules/order-approval.json");
    let batch_file = dir.path().join("batch.json");
    std::fs::write(&batch_file, batch_pipeline.to_string()).unwrap();
    let batch = documents(&fluxion_ok(&[
        "run",
        "--pipeline",
        batch_file.to_str().unwrap(),
        "--input",
        "examples/data/orders.jsonl",
    ]));
    assert_eq!(streamed.len(), 600);
    assert_eq!(streamed, batch);
    assert!(
        streamed
            .iter()
            .all(|d| d["ruleSet"] == "order-approval@1.0.0")
    );
    assert!(
        streamed
            .iter()
            .any(|d| d["passed"] == json!(["vip-paid", "many-items"]))
    );
    let said = fluxion_ok(&["replay", job.to_str().unwrap(), "--verify"]);
    assert!(said.ends_with("match\n"), "{said}");
}

#[test]
fn route_actions_send_documents_to_the_named_sinks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("examples/data/orders.jsonl", dir.path().join("in.jsonl")).unwrap();
    let rules = std::fs::canonicalize("examples/rules/order-approval.json").unwrap();
    let job = |routes: Value| {
        json!({"source": {"type": "file", "path": "in.jsonl"}, "checkpoint": {"store": "cp"},
               "pipeline": [{"$rules": {"ruleSet": rules, "mode": "execute"}},
                            {"$project": {"_id": 0, "orderId": 1, "approval": 1, "decision": 1}}],
               "sink": {"type": "file", "path": "main.jsonl"}, "routes": routes,
               "runtime": {"microBatchSize": 50}})
    };
    let path = dir.path().join("job.json");
    // A route no sink is declared for is refused before anything runs.
    std::fs::write(
        &path,
        job(json!({"audit": {"type": "file", "path": "audit.jsonl"}})).to_string(),
    )
    .unwrap();
    let out = fluxion()
        .args(["run", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("routes to \"review\", which is not under the job's \"routes\" (audit)"),
        "{said}"
    );
    std::fs::write(
        &path,
        job(json!({"review": {"type": "file", "path": "review.jsonl"}})).to_string(),
    )
    .unwrap();
    fluxion_ok(&["run", path.to_str().unwrap()]);
    let main = file_documents(dir.path().join("main.jsonl"));
    let review = file_documents(dir.path().join("review.jsonl"));
    // 87 large paid orders route to review (computed from the data by hand in Python).
    assert_eq!(review.len(), 87);
    assert_eq!(main.len(), 600 - 87);
    assert!(
        review
            .iter()
            .all(|d| d["approval"] == "review" && d["decision"]["routes"] == json!(["review"]))
    );
    assert!(main.iter().all(|d| d["decision"]["routes"] == json!([])));
    let said = fluxion_ok(&["replay", path.to_str().unwrap(), "--verify"]);
    assert!(said.ends_with("match\n"), "{said}");
}

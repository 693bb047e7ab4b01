//! JSON pipelines against their SQL twins: every `tests/equivalence/NAME.json` has a
//! `sql/equivalence/NAME.sql`, and both must produce identical documents (same fields in the
//! same order, same values) over the bundled orders. Queries with ORDER BY compare in order.

mod common;

use std::path::Path;

use fluxion::{Engine, Pipeline};

#[tokio::test]
async fn json_pipelines_equal_their_sql_twins() {
    let engine = Engine::new();
    engine
        .register_file("orders", "examples/data/orders.jsonl", None)
        .await
        .unwrap();
    let mut cases: Vec<_> = std::fs::read_dir("tests/equivalence")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 20,
        "expected at least 20 cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_stem().unwrap().to_string_lossy().to_string();
        let sql_path = Path::new("sql/equivalence").join(format!("{name}.sql"));
        let sql = std::fs::read_to_string(&sql_path)
            .unwrap_or_else(|_| panic!("{name}: missing {}", sql_path.display()));
        let pipeline = Pipeline::from_json_str(&std::fs::read_to_string(case).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let json = common::collect(engine.pipeline("orders", &pipeline).await)
            .await
            .unwrap_or_else(|e| panic!("{name} (pipeline): {e}"));
        let sql_docs = common::collect(engine.sql(sql.trim().trim_end_matches(';')).await)
            .await
            .unwrap_or_else(|e| panic!("{name} (sql): {e}"));
        assert!(
            !json.is_empty(),
            "{name}: the pipeline returned no documents; pick a case that does"
        );
        let ordered = sql.to_uppercase().contains("ORDER BY");
        if let Err(diff) = common::same_documents(&json, &sql_docs, ordered) {
            failures.push(format!("{name}: {diff}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

//! Runs every `sql/*.slt` file with sqllogictest against a Fluxion session that has the
//! bundled example tables registered (`orders`). `--complete` rewrites expected output.

use std::path::{Path, PathBuf};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use fluxion::Engine;
use sqllogictest::{DBOutput, DefaultColumnType};

struct FluxionDb {
    engine: Engine,
}

#[derive(Debug)]
struct DbError(String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DbError {}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for FluxionDb {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let df = self
            .engine
            .sql(sql)
            .await
            .map_err(|e| DbError(e.to_string()))?;
        let is_query = {
            let s = sql.trim_start().to_ascii_uppercase();
            s.starts_with("SELECT") || s.starts_with("WITH") || s.starts_with("VALUES")
        };
        let batches = df.collect().await.map_err(|e| DbError(e.to_string()))?;
        if !is_query {
            return Ok(DBOutput::StatementComplete(0));
        }
        let width = batches.first().map_or(0, RecordBatch::num_columns);
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; width],
            rows: rows(&batches).map_err(DbError)?,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "fluxion"
    }
}

fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, String> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let fmts = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        for row in 0..b.num_rows() {
            out.push(
                fmts.iter()
                    .map(|f| {
                        let s = f.value(row).to_string();
                        if s.is_empty() {
                            "(empty)".to_string()
                        } else {
                            s
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(out)
}

async fn new_db() -> Result<FluxionDb, DbError> {
    let engine = Engine::new();
    engine
        .register_file("orders", "examples/data/orders.jsonl", None)
        .await
        .map_err(|e| DbError(e.to_string()))?;
    Ok(FluxionDb { engine })
}

fn slt_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("sql/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    files
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let complete = std::env::args().any(|a| a == "--complete");
    let files = slt_files(Path::new("sql"));
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        let mut runner = sqllogictest::Runner::new(new_db);
        let result = if complete {
            runner
                .update_test_file(
                    file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .map_err(|e| e.to_string())
        } else {
            runner.run_file_async(file).await.map_err(|e| e.to_string())
        };
        match result {
            Ok(()) => {
                println!("test {} ... ok", file.display());
                passed += 1;
            }
            Err(e) => {
                println!("test {} ... FAILED\n{e}", file.display());
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 || files.is_empty() {
        std::process::exit(1);
    }
}

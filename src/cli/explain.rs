//! `fluxion explain`: the optimized logical plan, the physical plan and the SQL the pipeline
//! is equivalent to (DataFusion's unparser).

use datafusion::physical_plan::displayable;
use datafusion::sql::unparser::plan_to_sql;

use crate::engine::Engine;
use crate::job::{Job, Query};
use crate::{Error, Result};

use super::ExplainArgs;
use super::run::register_inputs;

pub(super) async fn explain(args: ExplainArgs) -> Result<()> {
    let engine = Engine::new();
    let name = args.file.display().to_string();
    let text =
        std::fs::read_to_string(&args.file).map_err(|e| Error::config(&name, e.to_string()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::config(&name, format!("not valid JSON: {e}")))?;
    let (query, table) = if Job::is_job(&v) && args.inputs.inputs.is_empty() {
        let job = Job::load(&args.file)?;
        let (location, options) = job.source_location()?;
        engine
            .register_file_with(job.table(), &location, &options)
            .await?;
        (job.query()?, job.table().to_string())
    } else {
        if args.inputs.inputs.is_empty() {
            return Err(Error::config(
                &name,
                "explain needs the input's schema: pass --input D (or explain a job file)",
            ));
        }
        let query = if Job::is_job(&v) {
            Job::from_json_str(&text, &name)?.query()?
        } else {
            Query::Pipeline(crate::dsl::Pipeline::from_value(&v)?)
        };
        (query, register_inputs(&engine, &args.inputs).await?)
    };
    let df = match &query {
        Query::Pipeline(p) => engine.pipeline(&table, p).await?,
        Query::Sql(sql) => engine.sql(sql).await?,
    };
    let unoptimized = df.logical_plan().clone();
    let optimized = df.clone().into_optimized_plan()?;
    let physical = df.create_physical_plan().await?;
    let sql = match plan_to_sql(&unoptimized) {
        Ok(sql) => sql.to_string(),
        Err(e) => format!("-- not expressible as SQL: {e}"),
    };
    let text = format!(
        "== Logical plan ==\n{}\n\n== Physical plan ==\n{}\n== SQL ==\n{sql}\n",
        optimized.display_indent(),
        displayable(physical.as_ref()).indent(true)
    );
    // A closed pipe (`| head`) is not an error.
    let text = crate::document::hidden::display(&text);
    match std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(Error::external("writing to stdout", e));
        }
        _ => {}
    }
    Ok(())
}

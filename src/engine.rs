//! The embedded entry point: a DataFusion session with Fluxion's settings, tables from
//! connectors, and pipelines (JSON or SQL) turned into DataFrames over those tables.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};

use crate::Result;
use crate::connect::Format;
use crate::connect::file::{self, FileOptions};
use crate::document::decode::{JsonlOptions, decode};
use crate::dsl::Pipeline;
use crate::plan::{self, order};

/// A Fluxion session: tables plus the planner for both pipeline spellings.
#[derive(Clone)]
pub struct Engine {
    ctx: SessionContext,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    /// A session with Fluxion's SQL settings: identifiers keep their case, so camelCase
    /// document fields (`orderValue`) work unquoted in SQL.
    pub fn new() -> Self {
        let mut config = SessionConfig::new().with_information_schema(true);
        config.options_mut().sql_parser.enable_ident_normalization = false;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .build();
        // DataFusion 55's physical `ProjectionPushdown` moves a projection under a sort or
        // limit and re-indexes its expressions, lambda parameters included: a lambda nested
        // in another lambda's argument (`$reduce`, `$anyElementTrue` of a `$map`) then reads
        // the wrong column ("Field of physical LambdaVariable with index 0 doesn't match").
        // Without the rule the projection stays above the sort, which computes it on fewer
        // rows anyway.
        let rules: Vec<_> = state
            .physical_optimizers()
            .iter()
            .filter(|r| r.name() != "ProjectionPushdown")
            .cloned()
            .collect();
        let state = SessionStateBuilder::new_from_existing(state)
            .with_physical_optimizer_rules(rules)
            .build();
        let mut ctx = SessionContext::new_with_state(state);
        // DataFusion 55's leaf-expression pushdown (moving `get_field` towards the scan) fails
        // with "Schema contains duplicate unqualified field name" on plans where a projection
        // re-binds a column name above an Unnest or a window, which `$unwind` and the order
        // column produce. These two rules only move cheap expressions; without them the plans
        // are the same minus that pushdown.
        for rule in ["extract_leaf_expressions", "push_down_leaf_projections"] {
            ctx.remove_optimizer_rule(rule);
        }
        // SQL's `http_call(...)` and `sql_query(...)`: typed by placeholders, replaced per
        // call site by the analyzer.
        for f in crate::enrich::sql::placeholders() {
            ctx.register_udf(f);
        }
        if let Err(e) =
            ctx.register_function_rewrite(std::sync::Arc::new(crate::enrich::sql::EnrichRewrite))
        {
            tracing::warn!("http_call and sql_query are not available in SQL: {e}");
        }
        // SQL's `rules(rule_set, table)`: the `$rules` stage over a table.
        ctx.register_udtf("rules", Arc::new(crate::rules::sql::RulesTable));
        // SQL can call the functions the date operators compile to.
        for f in crate::udf::all() {
            ctx.register_udf(f.as_ref().clone());
        }
        Engine { ctx }
    }

    /// The underlying DataFusion session.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Registers the file(s) at `location` as table `name` (format from the extension when
    /// `format` is `None`).
    pub async fn register_file(
        &self,
        name: &str,
        location: &str,
        format: Option<Format>,
    ) -> Result<()> {
        let options = FileOptions {
            format,
            schema: None,
        };
        file::register_source(&self.ctx, name, location, &options).await
    }

    /// Registers the file(s) at `location` as table `name`, read as `options` say (format,
    /// declared schema).
    pub async fn register_file_with(
        &self,
        name: &str,
        location: &str,
        options: &FileOptions,
    ) -> Result<()> {
        file::register_source(&self.ctx, name, location, options).await
    }

    /// Registers in-memory batches as table `name`.
    pub fn register_batches(
        &self,
        name: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<()> {
        let table = MemTable::try_new(schema, vec![batches])?;
        self.ctx.register_table(name, Arc::new(table))?;
        Ok(())
    }

    /// Registers JSON lines held in memory as table `name`, with the same schema rules as
    /// JSON-lines files.
    pub fn register_jsonl(&self, name: &str, data: &[u8]) -> Result<()> {
        let decoded = decode(data, name, &JsonlOptions::default())?;
        order::register_ordered(&self.ctx, name, decoded.schema, decoded.partitions)
    }

    /// Compiles `pipeline` over table `table`.
    pub async fn pipeline(&self, table: &str, pipeline: &Pipeline) -> Result<DataFrame> {
        let scan = self.scan(table).await?;
        let mut tables = plan::Tables::new();
        for name in pipeline.inputs() {
            if !tables.contains_key(&name) && self.ctx.table_exist(name.as_str())? {
                let plan = self.scan(&name).await?;
                tables.insert(name, plan);
            }
        }
        let plan = plan::compile(pipeline, scan, &tables)?;
        Ok(DataFrame::new(self.ctx.state(), plan))
    }

    /// The plan reading table `name`: its numbered source where there is one (`plan::order`).
    async fn scan(&self, name: &str) -> Result<datafusion::logical_expr::LogicalPlan> {
        let source = order::source_name(name);
        let name = if self.ctx.table_exist(source.as_str())? {
            source.as_str()
        } else {
            name
        };
        Ok(self.ctx.table(name).await?.into_unoptimized_plan())
    }

    /// Plans a SQL query over the registered tables.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        Ok(self.ctx.sql(sql).await?)
    }
}

//! A job's sink with routes: each output document goes to the named sinks its route list
//! names (`decision.routes`, which a rule set's `route` actions fill), or to the main sink
//! when it names none. Every part follows the runtime's protocol on its own — written per
//! micro-batch, committed, restored to the checkpoint's state — and the checkpoint holds all
//! their states, so each route is exactly once where its sink is.

use std::collections::HashSet;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use serde_json::{Map, Value};

use super::source::{BatchId, Sink};
use crate::{Error, Result};

/// The default field holding a document's routes.
pub const DEFAULT_FIELD: &str = "decision.routes";

/// The main sink and the named ones.
pub struct RoutedSink {
    /// The path of the list of route names in each document.
    field: Vec<String>,
    main: Box<dyn Sink>,
    routes: Vec<(String, Box<dyn Sink>)>,
    context: String,
}

impl RoutedSink {
    /// Routes by the list at `field` (a dotted path) to `routes`, the rest to `main`.
    pub fn new(
        main: Box<dyn Sink>,
        routes: Vec<(String, Box<dyn Sink>)>,
        field: &str,
        context: &str,
    ) -> RoutedSink {
        RoutedSink {
            field: field.split('.').map(str::to_string).collect(),
            main,
            routes,
            context: context.to_string(),
        }
    }

    /// Each document's route names (none where the field is missing).
    fn route_lists(&self, batch: &RecordBatch) -> Result<Vec<HashSet<String>>> {
        let missing = || {
            Error::config(
                &self.context,
                format!(
                    "routes: the output has no list of route names at \"{}\" (a $rules stage's decision.routes, kept by the stages after it)",
                    self.field.join(".")
                ),
            )
        };
        let mut column: ArrayRef = batch
            .column_by_name(&self.field[0])
            .ok_or_else(missing)?
            .clone();
        for name in &self.field[1..] {
            column = column
                .as_struct_opt()
                .and_then(|s| s.column_by_name(name))
                .ok_or_else(missing)?
                .clone();
        }
        let list = column.as_list_opt::<i32>().ok_or_else(missing)?;
        Ok((0..batch.num_rows())
            .map(|row| {
                if list.is_null(row) {
                    return HashSet::new();
                }
                let names = list.value(row);
                let names = names.as_string_opt::<i32>();
                names
                    .map(|n| {
                        (0..n.len())
                            .filter(|&i| n.is_valid(i))
                            .map(|i| n.value(i).to_string())
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect())
    }
}

#[async_trait]
impl Sink for RoutedSink {
    async fn write(&mut self, batches: &[RecordBatch]) -> Result<()> {
        let mut main = Vec::new();
        let mut routed: Vec<Vec<RecordBatch>> = vec![Vec::new(); self.routes.len()];
        for b in batches {
            let lists = self.route_lists(b)?;
            let known =
                |names: &HashSet<String>| self.routes.iter().any(|(n, _)| names.contains(n));
            let rest = BooleanArray::from(lists.iter().map(|l| !known(l)).collect::<Vec<_>>());
            main.push(filter_record_batch(b, &rest)?);
            for (i, (name, _)) in self.routes.iter().enumerate() {
                let mask =
                    BooleanArray::from(lists.iter().map(|l| l.contains(name)).collect::<Vec<_>>());
                routed[i].push(filter_record_batch(b, &mask)?);
            }
        }
        self.main.write(&main).await?;
        for ((_, sink), batches) in self.routes.iter_mut().zip(routed) {
            sink.write(&batches).await?;
        }
        Ok(())
    }

    async fn commit(&mut self) -> Result<Value> {
        let main = self.main.commit().await?;
        let mut routes = Map::new();
        for (name, sink) in &mut self.routes {
            routes.insert(name.clone(), sink.commit().await?);
        }
        Ok(serde_json::json!({"main": main, "routes": routes}))
    }

    async fn sync(&mut self) -> Result<()> {
        self.main.sync().await?;
        for (_, sink) in &mut self.routes {
            sink.sync().await?;
        }
        Ok(())
    }

    async fn restore(&mut self, state: &Value) -> Result<()> {
        self.main.restore(&state["main"]).await?;
        for (name, sink) in &mut self.routes {
            // A route added since the checkpoint starts empty.
            sink.restore(&state["routes"][name.as_str()]).await?;
        }
        Ok(())
    }

    fn recognises_output(&self) -> bool {
        self.main.recognises_output() || self.routes.iter().any(|(_, s)| s.recognises_output())
    }

    fn begin(&mut self, batch: &BatchId) {
        self.main.begin(batch);
        for (_, sink) in &mut self.routes {
            sink.begin(batch);
        }
    }

    async fn recover(&mut self, state: &Value) -> Result<()> {
        self.main.recover(&state["main"]).await?;
        for (name, sink) in &mut self.routes {
            sink.recover(&state["routes"][name.as_str()]).await?;
        }
        Ok(())
    }
}

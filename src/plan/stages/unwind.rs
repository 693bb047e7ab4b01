//! `$unwind`: one output document per array element, compiled to DataFusion's `Unnest`.
//!
//! The array is copied into a working column and unnested (`NullHandling::Drop`, or
//! `PreserveAndExpandEmpty` for `preserveNullAndEmptyArrays`, which is exactly MongoDB's
//! rule: a null, missing or empty array keeps its document once, without the field). The
//! element indexes, when asked for, are a second list (`range(0, n)`) unnested beside it, so
//! both stay aligned. The element is then written back at the array's place in the document,
//! nested paths included, by the same code as `$set`. A value that is not an array counts as
//! a one-element array, as in MongoDB.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, NullHandling, UnnestOptions};
use datafusion::functions_nested::expr_fn::{cardinality, range};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast, lit, when};

use super::project;
use crate::Result;
use crate::dsl::expression::Expression;
use crate::dsl::project::assignments;
use crate::dsl::unwind::Unwind;
use crate::dsl::{FieldPath, JsonPath};
use crate::plan::field::{self, Mode};
use crate::plan::order;

use crate::document::hidden::{UNWIND_ELEMENT as ELEMENT, UNWIND_INDEX as INDEX};

/// Plans `$unwind`.
pub fn plan(input: LogicalPlan, u: &Unwind, at: &JsonPath) -> Result<LogicalPlan> {
    let r = field::resolve_in(input.schema(), &u.path, Mode::Expression);
    if r.through_array {
        return Err(at.err(format!(
            "cannot unwind \"{}\": the path goes through an array; unwind the outer array first",
            u.path
        )));
    }
    let index_path = u.include_array_index.clone();
    // The element index also orders the new documents (`plan::order`).
    let numbered = order::has_seq(input.schema());
    let with_index = index_path.is_some() || numbered;
    // A top-level array is unnested in place (it keeps its name and position); a nested one
    // through a working column that is written back afterwards.
    let top_level = u.path.segments().len() == 1;
    let element = if top_level {
        u.path.head().to_string()
    } else {
        ELEMENT.to_string()
    };
    let mut exprs: Vec<Expr> = input
        .schema()
        .columns()
        .into_iter()
        .filter(|c| c.name != element)
        .map(Expr::Column)
        .collect();
    let element_at = if top_level {
        input
            .schema()
            .index_of_column_by_name(None, &element)
            .unwrap_or(exprs.len())
    } else {
        exprs.len()
    };
    let plan = if matches!(r.ty, DataType::List(_) | DataType::LargeList(_)) {
        exprs.insert(element_at, r.expr.clone().alias(&element));
        let mut unnest = vec![Column::from_name(&element)];
        if with_index {
            let n = cast(cardinality(r.expr), DataType::Int64);
            exprs.push(range(lit(0i64), n, lit(1i64)).alias(INDEX));
            unnest.push(Column::from_name(INDEX));
        }
        let nulls = if u.preserve_null_and_empty {
            NullHandling::PreserveAndExpandEmpty
        } else {
            NullHandling::Drop
        };
        LogicalPlanBuilder::from(input)
            .project(exprs)?
            .unnest_columns_with_options(unnest, UnnestOptions::new().with_null_handling(nulls))?
            .build()?
    } else {
        // A scalar is a one-element array (index 0); null or missing is an empty one.
        let mut b = LogicalPlanBuilder::from(input.clone());
        if !u.preserve_null_and_empty {
            b = b.filter(r.expr.clone().is_not_null())?;
        }
        exprs.insert(element_at, r.expr.clone().alias(&element));
        if with_index {
            let idx = when(r.expr.is_not_null(), lit(0i64)).end()?;
            exprs.push(idx.alias(INDEX));
        }
        b.project(exprs)?.build()?
    };
    let plan = if numbered {
        let idx = Expr::Column(Column::from_name(INDEX)).sort(true, true);
        order::renumber(plan, vec![order::by_seq(), idx])?
    } else {
        plan
    };
    // Write the element (nested paths) and the index back into the document, dropping the
    // working columns in the same projection.
    let working = |name: &str| Expression::Field(FieldPath::parse(name, at).expect("a valid name"));
    let mut sets = Vec::new();
    if !top_level {
        sets.push((u.path.clone(), working(ELEMENT)));
    }
    if let Some(p) = &index_path {
        sets.push((p.clone(), working(INDEX)));
    }
    if sets.is_empty() {
        return if with_index {
            project::drop_columns(plan, &[INDEX], at)
        } else {
            Ok(plan)
        };
    }
    project::plan_add_fields_dropping(plan, &assignments(sets, at)?, &[ELEMENT, INDEX], at)
}

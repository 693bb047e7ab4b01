//! `$project`, `$addFields` / `$set` and `$unset`: projection trees compiled to one DataFusion
//! projection, rebuilding sub-documents with `named_struct` where a nested field changes.
//!
//! Field order follows MongoDB: an inclusion `$project` keeps fields in the input document's
//! order and appends computed fields in the order written; `$addFields` replaces a field in
//! place and appends new ones; `_id` is kept unless excluded.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, DFSchema};
use datafusion::functions::core::expr_fn::{get_field, named_struct};
use datafusion::functions_nested::expr_fn::array_transform;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, lambda, lit, when};

use crate::Result;
use crate::dsl::JsonPath;
use crate::dsl::project::{Mode, Node, Projection, Tree};
use crate::plan::expr::{ExprCompiler, Typed};
use crate::plan::{field, order};

/// A field available at one level of the document: its name, how to read it, its type.
struct Source {
    name: String,
    expr: Expr,
    ty: DataType,
}

/// Plans a `$project`.
pub fn plan_project(input: LogicalPlan, p: &Projection, at: &JsonPath) -> Result<LogicalPlan> {
    let schema = input.schema().clone();
    let c = ExprCompiler::new(&schema);
    let top = top_level(&schema);
    let fields = match p.mode {
        Mode::Inclusion => include(&top, &p.tree, true, &c, at, 0)?,
        Mode::Exclusion => exclude(&top, &p.tree, 0)?,
    };
    project(input, fields, at)
}

/// Plans `$addFields` / `$set`.
pub fn plan_add_fields(input: LogicalPlan, tree: &Tree, at: &JsonPath) -> Result<LogicalPlan> {
    let schema = input.schema().clone();
    let c = ExprCompiler::new(&schema);
    let fields = add(&top_level(&schema), tree, &c, at)?;
    project(input, fields, at)
}

/// Plans `$addFields` whose expressions may read the variables `vars` (`$$name`).
pub fn plan_add_fields_with(
    input: LogicalPlan,
    tree: &Tree,
    vars: &[(String, Typed)],
    at: &JsonPath,
) -> Result<LogicalPlan> {
    let schema = input.schema().clone();
    let mut c = ExprCompiler::new(&schema);
    for (name, value) in vars {
        c = c.with_var(name, value.clone());
    }
    let fields = add(&top_level(&schema), tree, &c, at)?;
    project(input, fields, at)
}

/// Plans `$unset` (an exclusion projection).
pub fn plan_unset(input: LogicalPlan, tree: &Tree, at: &JsonPath) -> Result<LogicalPlan> {
    let fields = exclude(&top_level(input.schema()), tree, 0)?;
    project(input, fields, at)
}

/// Keeps every column but `names` (working columns of other stages).
pub fn drop_columns(input: LogicalPlan, names: &[&str], at: &JsonPath) -> Result<LogicalPlan> {
    let fields = columns(input.schema())
        .into_iter()
        .filter(|(n, _)| !names.contains(&n.as_str()))
        .collect();
    project(input, fields, at)
}

/// `$addFields` that also drops the working columns `names` of the stage that asked for it,
/// in one projection.
pub fn plan_add_fields_dropping(
    input: LogicalPlan,
    tree: &Tree,
    names: &[&str],
    at: &JsonPath,
) -> Result<LogicalPlan> {
    let schema = input.schema().clone();
    let c = ExprCompiler::new(&schema);
    let fields = add(&top_level(&schema), tree, &c, at)?
        .into_iter()
        .filter(|(n, _)| !names.contains(&n.as_str()))
        .collect();
    project(input, fields, at)
}

/// A projection onto `fields` (name, expression), keeping the order column.
pub fn project_fields(
    input: LogicalPlan,
    fields: Vec<(String, Expr)>,
    at: &JsonPath,
) -> Result<LogicalPlan> {
    project(input, fields, at)
}

fn project(
    input: LogicalPlan,
    mut fields: Vec<(String, Expr)>,
    at: &JsonPath,
) -> Result<LogicalPlan> {
    if fields.iter().all(|(n, _)| order::rides(n)) {
        return Err(
            at.err("the projection leaves no fields; Fluxion cannot represent empty documents")
        );
    }
    // The order column and the runtime's riders ride along, whatever the projection says
    // (`plan::order`).
    for (_, f) in input.schema().iter() {
        let name = f.name();
        if order::rides(name) && !fields.iter().any(|(n, _)| n == name) {
            fields.push((name.clone(), Expr::Column(Column::from_name(name))));
        }
    }
    let exprs: Vec<Expr> = fields.into_iter().map(|(n, e)| e.alias(n)).collect();
    Ok(LogicalPlanBuilder::from(input).project(exprs)?.build()?)
}

/// Every column of `schema` as `(name, expression)`, for a projection that keeps them.
pub fn columns(schema: &DFSchema) -> Vec<(String, Expr)> {
    top_level(schema)
        .into_iter()
        .map(|s| (s.name, s.expr))
        .collect()
}

fn top_level(schema: &DFSchema) -> Vec<Source> {
    schema
        .iter()
        .map(|(q, f)| Source {
            name: f.name().clone(),
            expr: Expr::Column(Column::new(q.cloned(), f.name())),
            ty: f.data_type().clone(),
        })
        .collect()
}

fn children(parent: &Expr, ty: &DataType) -> Vec<Source> {
    match ty {
        DataType::Struct(fields) => fields
            .iter()
            .map(|f| Source {
                name: f.name().clone(),
                expr: get_field(parent.clone(), f.name().as_str()),
                ty: f.data_type().clone(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn has_computed(tree: &Tree) -> bool {
    tree.values().any(|n| match n {
        Node::Computed(_) => true,
        Node::Nested(sub) => has_computed(sub),
        _ => false,
    })
}

fn make_struct(fields: Vec<(String, Expr)>) -> Expr {
    named_struct(fields.into_iter().flat_map(|(n, e)| [lit(n), e]).collect())
}

/// For an array of sub-documents, the array of `build(fields of each element)`, computed with
/// an `array_transform` lambda; `None` when `build` keeps no field.
fn map_elements(
    list: &Source,
    depth: usize,
    build: impl FnOnce(&[Source]) -> Result<Vec<(String, Expr)>>,
) -> Result<Option<Expr>> {
    let DataType::List(elem) = &list.ty else {
        return Ok(None);
    };
    let (name, var) = field::element_var(elem, depth);
    let inner = build(&children(&var, elem.data_type()))?;
    if inner.is_empty() {
        return Ok(None);
    }
    Ok(Some(array_transform(
        list.expr.clone(),
        lambda([name], make_struct(inner)),
    )))
}

fn is_list_of_structs(ty: &DataType) -> bool {
    matches!(ty, DataType::List(f) if matches!(f.data_type(), DataType::Struct(_)))
}

fn include(
    src: &[Source],
    tree: &Tree,
    top: bool,
    c: &ExprCompiler,
    at: &JsonPath,
    depth: usize,
) -> Result<Vec<(String, Expr)>> {
    let mut out = Vec::new();
    for s in src {
        match tree.get(&s.name) {
            Some(Node::Include) => out.push((s.name.clone(), s.expr.clone())),
            // `"items.qty": 1` keeps `qty` in every element of the array `items`.
            Some(Node::Nested(sub)) if is_list_of_structs(&s.ty) => {
                let here = at.key(&s.name);
                if let Some(mapped) = map_elements(s, depth, |fields| {
                    include(fields, sub, false, c, &here, depth + 1)
                })? {
                    out.push((s.name.clone(), mapped));
                }
            }
            Some(Node::Nested(sub)) if matches!(s.ty, DataType::Struct(_)) => {
                let inner = include(
                    &children(&s.expr, &s.ty),
                    sub,
                    false,
                    c,
                    &at.key(&s.name),
                    depth,
                )?;
                if !inner.is_empty() {
                    let built = make_struct(inner);
                    // A null sub-document stays null, unless the projection computes into it.
                    let built = if has_computed(sub) {
                        built
                    } else {
                        when(s.expr.clone().is_not_null(), built).end()?
                    };
                    out.push((s.name.clone(), built));
                }
            }
            None if top && s.name == "_id" => out.push((s.name.clone(), s.expr.clone())),
            _ => {}
        }
    }
    for (name, node) in tree {
        let here = at.key(name);
        match node {
            Node::Computed(e) => out.push((name.clone(), c.compile(e, &here)?)),
            Node::Nested(sub) => {
                let is_struct_in_source = src.iter().any(|s| {
                    &s.name == name
                        && (matches!(s.ty, DataType::Struct(_)) || is_list_of_structs(&s.ty))
                });
                if !is_struct_in_source {
                    let inner = include(&[], sub, false, c, &here, depth)?;
                    if !inner.is_empty() {
                        out.push((name.clone(), make_struct(inner)));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn exclude(src: &[Source], tree: &Tree, depth: usize) -> Result<Vec<(String, Expr)>> {
    let mut out = Vec::new();
    for s in src {
        match tree.get(&s.name) {
            Some(Node::Exclude) => {}
            Some(Node::Nested(sub)) if is_list_of_structs(&s.ty) => {
                if let Some(mapped) =
                    map_elements(s, depth, |fields| exclude(fields, sub, depth + 1))?
                {
                    out.push((s.name.clone(), mapped));
                }
            }
            Some(Node::Nested(sub)) if matches!(s.ty, DataType::Struct(_)) => {
                let inner = exclude(&children(&s.expr, &s.ty), sub, depth)?;
                if !inner.is_empty() {
                    let built = when(s.expr.clone().is_not_null(), make_struct(inner))
                        .end()
                        .expect("CASE with one branch");
                    out.push((s.name.clone(), built));
                }
            }
            _ => out.push((s.name.clone(), s.expr.clone())),
        }
    }
    Ok(out)
}

fn add(
    src: &[Source],
    tree: &Tree,
    c: &ExprCompiler,
    at: &JsonPath,
) -> Result<Vec<(String, Expr)>> {
    let mut out = Vec::new();
    for s in src {
        let here = at.key(&s.name);
        match tree.get(&s.name) {
            Some(Node::Computed(e)) => out.push((s.name.clone(), c.compile(e, &here)?)),
            Some(Node::Nested(sub)) => {
                let inner = add(&children(&s.expr, &s.ty), sub, c, &here)?;
                out.push((s.name.clone(), make_struct(inner)));
            }
            _ => out.push((s.name.clone(), s.expr.clone())),
        }
    }
    for (name, node) in tree {
        if src.iter().any(|s| &s.name == name) {
            continue;
        }
        let here = at.key(name);
        match node {
            Node::Computed(e) => out.push((name.clone(), c.compile(e, &here)?)),
            Node::Nested(sub) => out.push((name.clone(), make_struct(add(&[], sub, c, &here)?))),
            _ => {}
        }
    }
    Ok(out)
}

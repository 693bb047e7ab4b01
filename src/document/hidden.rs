//! Hidden columns: the names of every column Fluxion's plans carry that no document shows —
//! document numbers, event times, window bounds, the scratch columns of stages.
//!
//! Each starts with [`PREFIX`], the NUL character. No document can have a field named so: JSON
//! lines refuse field names holding NUL, as MongoDB does ([`lines`](super::lines)), and a
//! table whose columns are named so is refused ([`check_columns`]). So a document may call its
//! fields anything — `__fluxion_seq` included — without meeting these, and [`is_hidden`] drops
//! exactly these. Plans printed for people show the prefix as `␀` ([`display`]).
//!
//! Tables Fluxion registers for itself are named with [`TABLE_PREFIX`] instead (table names
//! go through SQL identifiers, and no document field is a table name).

use std::borrow::Cow;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::Column;
use datafusion::logical_expr::Expr;

use crate::{Error, Result};

/// The first character of every hidden column's name.
pub const PREFIX: char = '\u{0}';

/// The document number, in the order the pipeline defines (`plan::order`).
pub const SEQ: &str = "\u{0}seq";
/// The next document number, while `$sort`/`$unwind` renumber.
pub const SEQ_NEXT: &str = "\u{0}seq_next";

/// The prefix of the riders: columns every stage keeping documents carries through, whatever a
/// `$project` says, so that a window after it still knows when and where a document arrived.
pub const RIDER: &str = "\u{0}ride_";
/// A stream document's event time, in milliseconds (a rider).
pub const RIDE_TIME: &str = "\u{0}ride_time";
/// The start of a fixed window a document falls in (a rider).
pub const RIDE_WINDOW_START: &str = "\u{0}ride_window_start";
/// The source partition a stream document came from (a rider).
pub const RIDE_PARTITION: &str = "\u{0}ride_partition";
/// The session a document belongs to, while closed sessions run as one query (riders).
pub const RIDE_SESSION: &str = "\u{0}ride_session";
pub const RIDE_SESSION_START: &str = "\u{0}ride_session_start";
pub const RIDE_SESSION_END: &str = "\u{0}ride_session_end";

/// A session window's grouping key and session number, in the window state.
pub const SESSION_KEY: &str = "\u{0}session_key";
pub const SESSION: &str = "\u{0}session";

/// `$unwind`'s element and its index.
pub const UNWIND_ELEMENT: &str = "\u{0}unwind";
pub const UNWIND_INDEX: &str = "\u{0}unwind_index";
/// `$densify`'s range bounds and step count.
pub const DENSIFY_LO: &str = "\u{0}densify_lo";
pub const DENSIFY_HI: &str = "\u{0}densify_hi";
pub const DENSIFY_STEPS: &str = "\u{0}densify_k";
/// A continuous `$group`'s merge key: the number of the batch's partial row a state row or
/// partial row belongs to.
pub const GROUP_SLOT: &str = "\u{0}group_slot";
/// `$group`'s count of rows per group (for `$avg` merging and empty groups).
pub const GROUP_ROWS: &str = "\u{0}rows";
/// `$fill`'s next non-null value.
pub const NEXT_MIN: &str = "\u{0}next_min";
/// `$facet`/`$unionWith` branch number.
pub const BRANCH: &str = "\u{0}branch";
/// `$lookup`'s join key, local value, matched documents, row and foreign number.
pub const LOOKUP_KEY: &str = "\u{0}lookup_key";
pub const LOOKUP_LOCAL: &str = "\u{0}lookup_local";
pub const LOOKUP_DOCS: &str = "\u{0}lookup_docs";
pub const LOOKUP_ROW: &str = "\u{0}lookup_row";
pub const LOOKUP_SEQ: &str = "\u{0}lookup_seq";
/// `$bucket`/`$bucketAuto`'s bucket and sort key.
pub const BUCKET: &str = "\u{0}bucket";
pub const BUCKET_KEY: &str = "\u{0}bucket_key";

/// A document's number while a rule's stages run (a rider), the rules that fired for it,
/// and the marker of a rule whose stages ran as their own plan (`plan::stages::rules`).
pub const RIDE_RULE_DOC: &str = "\u{0}ride_rule_doc";
pub const RULES_FIRED: &str = "\u{0}rules_fired";
pub fn rule_hit(k: usize) -> String {
    numbered("rule_hit", k)
}
/// The `i`-th scratch column of kind `kind` (`id`, `warg`, `let`, `lag_x`, …).
pub fn numbered(kind: &str, i: usize) -> String {
    format!("{PREFIX}{kind}_{i}")
}

/// The names earlier versions gave hidden columns in the window state, read from their
/// checkpoints.
pub mod legacy {
    pub const WINDOW_START: &str = "__fluxion_window_start";
    pub const EVENT_TIME: &str = "__fluxion_event_time";

    /// Today's name of a hidden column an earlier checkpoint named `name`.
    pub fn current(name: &str) -> Option<&'static str> {
        Some(match name {
            WINDOW_START | "__fluxion_ride_window_start" => super::RIDE_WINDOW_START,
            EVENT_TIME | "__fluxion_ride_time" => super::RIDE_TIME,
            "__fluxion_ride_partition" => super::RIDE_PARTITION,
            "__fluxion_seq" => super::SEQ,
            "__fluxion_session" => super::SESSION,
            "__fluxion_session_key" => super::SESSION_KEY,
            _ => return None,
        })
    }
}

/// The first characters of the tables Fluxion registers for itself.
pub const TABLE_PREFIX: &str = "__fluxion_";
/// A stream's micro-batch, as a table.
pub const STREAM_TABLE: &str = "__fluxion_stream";
/// Replayed input, as a table.
pub const REPLAY_TABLE: &str = "__fluxion_replay";
/// A window's documents, its partial groups' input, and its groups.
pub const WINDOW_TABLE: &str = "__fluxion_window";
pub const WINDOW_IN_TABLE: &str = "__fluxion_window_in";
pub const WINDOW_GROUPS_TABLE: &str = "__fluxion_window_groups";
pub const SESSION_TABLE: &str = "__fluxion_session_window";
/// The alias of a session query's rows when they are sorted by session.
pub const SESSIONS_ALIAS: &str = "__fluxion_sessions";
/// A continuous `$group`'s touched state rows followed by a batch's partial groups, and the
/// merged upserts.
pub const GROUP_STATE_TABLE: &str = "__fluxion_group_state";
pub const GROUP_UPSERTS_TABLE: &str = "__fluxion_group_upserts";

/// The name of the numbered source behind table `name`.
pub fn source_table(name: &str) -> String {
    format!("{TABLE_PREFIX}source_{name}")
}

/// The name of a lambda parameter (not a column) for one element, `depth` lambdas deep.
pub fn element_var(depth: usize) -> String {
    format!("{TABLE_PREFIX}e{depth}")
}

/// True for the name of a hidden column.
pub fn is_hidden(name: &str) -> bool {
    name.starts_with(PREFIX)
}

/// True for the columns that ride along: the document number and the riders.
pub fn rides(name: &str) -> bool {
    name == SEQ || name.starts_with(RIDER)
}

/// The hidden column `name`, as an expression (never parsed as SQL).
pub fn column(name: &str) -> Expr {
    Expr::Column(Column::from_name(name))
}

/// Refuses a table whose column names hold NUL (a CSV header or a Parquet file can have one):
/// they could pass for hidden columns.
pub fn check_columns(schema: &Schema, source: &str) -> Result<()> {
    match schema.fields().iter().find(|f| f.name().contains(PREFIX)) {
        Some(f) => Err(Error::input(
            source,
            format!(
                "the column {:?} holds a NUL character, which no field name may have",
                f.name()
            ),
        )),
        None => Ok(()),
    }
}

/// Text for people (a printed plan) with hidden names readable: NUL shown as `␀`.
pub fn display(text: &str) -> Cow<'_, str> {
    match text.contains(PREFIX) {
        true => Cow::Owned(text.replace(PREFIX, "␀")),
        false => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field};

    #[test]
    fn hidden_names_survive_datafusion_name_handling() {
        // `col()` parses its argument as a SQL identifier; a NUL must not be dropped by it.
        let parsed = datafusion::prelude::col(SEQ);
        assert_eq!(parsed, column(SEQ));
        assert!(is_hidden(SEQ) && is_hidden(&numbered("id", 0)));
        assert!(!is_hidden("__fluxion_seq"));
        assert!(rides(RIDE_TIME) && rides(SEQ) && !rides(BUCKET));
        assert_eq!(display(&format!("Sort: {SEQ}")), "Sort: ␀seq");
    }

    #[test]
    fn tables_with_nul_in_column_names_are_refused() {
        let bad = Schema::new(vec![Field::new("a\u{0}b", DataType::Int64, true)]);
        let e = check_columns(&bad, "t.csv").unwrap_err();
        assert!(e.to_string().contains("NUL"), "{e}");
        let good = Schema::new(vec![Field::new("__fluxion_seq", DataType::Int64, true)]);
        assert!(check_columns(&good, "t.csv").is_ok());
    }
}

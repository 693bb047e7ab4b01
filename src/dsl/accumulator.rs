//! The accumulators of `$group` and `$setWindowFields`, as one enum: their names, which stage
//! takes which, and the internal ones a streaming `$group` splits a sum into.

use std::fmt;

/// An accumulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Acc {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    First,
    Last,
    Push,
    AddToSet,
    StdDevPop,
    StdDevSamp,
    FirstN,
    LastN,
    MaxN,
    MinN,
    Top,
    Bottom,
    TopN,
    BottomN,
    MergeObjects,
    Median,
    Percentile,
    /// Internal (a continuous `$group`'s partial and merge steps): what rounding left out of
    /// a double sum; the merged sum of partial sums and residuals; the merged residual.
    SumResidual,
    SumMerge,
    SumMergeResidual,
}

/// Every accumulator with its name.
const NAMES: &[(Acc, &str)] = &[
    (Acc::Sum, "$sum"),
    (Acc::Avg, "$avg"),
    (Acc::Min, "$min"),
    (Acc::Max, "$max"),
    (Acc::Count, "$count"),
    (Acc::First, "$first"),
    (Acc::Last, "$last"),
    (Acc::Push, "$push"),
    (Acc::AddToSet, "$addToSet"),
    (Acc::StdDevPop, "$stdDevPop"),
    (Acc::StdDevSamp, "$stdDevSamp"),
    (Acc::FirstN, "$firstN"),
    (Acc::LastN, "$lastN"),
    (Acc::MaxN, "$maxN"),
    (Acc::MinN, "$minN"),
    (Acc::Top, "$top"),
    (Acc::Bottom, "$bottom"),
    (Acc::TopN, "$topN"),
    (Acc::BottomN, "$bottomN"),
    (Acc::MergeObjects, "$mergeObjects"),
    (Acc::Median, "$median"),
    (Acc::Percentile, "$percentile"),
    (Acc::SumResidual, "$__sumResidual"),
    (Acc::SumMerge, "$__sumMerge"),
    (Acc::SumMergeResidual, "$__sumMergeResidual"),
];

impl Acc {
    /// Its name as written, e.g. `$sum`.
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(a, _)| *a == self)
            .map_or("$unknown", |(_, n)| n)
    }

    /// The accumulator a `$group` field names (internal ones cannot be written).
    pub fn for_group(name: &str) -> Option<Acc> {
        NAMES
            .iter()
            .find(|(a, n)| *n == name && !a.is_internal())
            .map(|(a, _)| *a)
    }

    /// The accumulator a `$setWindowFields` output names, among those applied over a frame
    /// by their argument alone (the n-forms and percentiles are parsed apart).
    pub fn for_window(name: &str) -> Option<Acc> {
        Acc::for_group(name).filter(|a| {
            matches!(
                a,
                Acc::Sum
                    | Acc::Avg
                    | Acc::Min
                    | Acc::Max
                    | Acc::Count
                    | Acc::First
                    | Acc::Last
                    | Acc::Push
                    | Acc::AddToSet
                    | Acc::StdDevPop
                    | Acc::StdDevSamp
            )
        })
    }

    /// The n-forms: `$firstN` `$lastN` `$maxN` `$minN`.
    pub fn for_window_n(name: &str) -> Option<Acc> {
        Acc::for_group(name)
            .filter(|a| matches!(a, Acc::FirstN | Acc::LastN | Acc::MaxN | Acc::MinN))
    }

    fn is_internal(self) -> bool {
        matches!(
            self,
            Acc::SumResidual | Acc::SumMerge | Acc::SumMergeResidual
        )
    }

    /// Whether its result depends on the order of the documents.
    pub fn is_ordered(self) -> bool {
        matches!(
            self,
            Acc::First
                | Acc::Last
                | Acc::Push
                | Acc::FirstN
                | Acc::LastN
                | Acc::Top
                | Acc::Bottom
                | Acc::TopN
                | Acc::BottomN
                | Acc::MergeObjects
        )
    }
}

impl fmt::Display for Acc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_internal_ones_cannot_be_written() {
        for (a, n) in NAMES {
            assert_eq!(a.name(), *n);
            assert_eq!(Acc::for_group(n), (!a.is_internal()).then_some(*a));
        }
        assert_eq!(Acc::for_group("$summ"), None);
        assert_eq!(Acc::for_window("$sum"), Some(Acc::Sum));
        assert_eq!(Acc::for_window("$topN"), None);
        assert_eq!(Acc::for_window_n("$maxN"), Some(Acc::MaxN));
    }
}

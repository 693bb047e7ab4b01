//! Randomized differential testing against the oracle: pipelines generated from the grammar
//! Fluxion supports run through Fluxion and through mingo over the oracle datasets, and must
//! agree (`common::oracle::compare`).
//!
//! CI runs a small fixed-seed batch. For a long local session:
//!
//! ```sh
//! FLUXION_DIFF_COUNT=5000 FLUXION_DIFF_SEED=42 cargo test --test differential -- --nocapture
//! ```
//!
//! The generator knows each dataset's fields and types, so it writes pipelines a user could
//! write against them. It stays away from the places where mingo is known to depart from
//! MongoDB's documentation (comparisons with null operands in expressions, `$round`,
//! `$bucket`, `$count` of nothing: see `tests/oracle/cases/90_oracle_disagreements.json`).
//! A pipeline Fluxion rejects with a planning error is counted, not failed; one whose answer
//! differs fails the test with the pipeline printed for reproduction.

mod common;

use common::oracle::{Oracle, compare};
use fluxion::{Engine, Pipeline};
use serde_json::{Value, json};

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Ty {
    Num,
    Str,
    Bool,
    /// An array of numbers or strings.
    NumArray,
    StrArray,
    /// An array of sub-documents (`items`).
    DocArray,
    /// A date (extended JSON `{"$date": …}` in the data).
    Date,
}

/// A field the generator may use: path, type, whether it can be null or missing, and sample
/// values for conditions.
#[derive(Clone, Debug)]
struct FieldInfo {
    path: String,
    ty: Ty,
    nullable: bool,
    /// Holds an explicit `null` in some documents. Fluxion does not tell a null from a
    /// missing field (README), so `$exists` is not generated on such fields.
    explicit_null: bool,
    values: Vec<Value>,
}

fn f(path: &str, ty: Ty, nullable: bool, values: Value) -> FieldInfo {
    FieldInfo {
        path: path.to_string(),
        ty,
        nullable,
        explicit_null: false,
        values: values.as_array().cloned().unwrap_or_default(),
    }
}

fn with_nulls(mut fi: FieldInfo) -> FieldInfo {
    fi.explicit_null = true;
    fi
}

fn dataset_fields(name: &str) -> Vec<FieldInfo> {
    match name {
        "orders" => vec![
            f("_id", Ty::Num, false, json!([10, 40, 70])),
            f(
                "customerId",
                Ty::Str,
                false,
                json!(["c-01", "c-04", "c-07", "c-11"]),
            ),
            f(
                "status",
                Ty::Str,
                false,
                json!(["PAID", "PENDING", "CANCELLED", "REFUNDED"]),
            ),
            f("orderValue", Ty::Num, false, json!([0, 50, 120.5, 200])),
            f("priority", Ty::Num, false, json!([1, 2, 3, 4, 5])),
            f(
                "shipping.city",
                Ty::Str,
                false,
                json!(["Lisbon", "Porto", "Berlin", "Lyon", "Austin"]),
            ),
            f(
                "shipping.country",
                Ty::Str,
                false,
                json!(["PT", "DE", "FR", "US"]),
            ),
            f("shipping.express", Ty::Bool, false, json!([true, false])),
            f("shipping.cost", Ty::Num, false, json!([0, 4.5, 9.9, 12])),
            f(
                "coupon",
                Ty::Str,
                true,
                json!(["VIP", "SPRING10", "WELCOME"]),
            ),
            f(
                "tags",
                Ty::StrArray,
                false,
                json!(["gift", "fragile", "bulk", "promo", "eco"]),
            ),
            f("flags", Ty::NumArray, false, json!([0, 3, 7, 12])),
            f("items", Ty::DocArray, false, json!([])),
        ],
        "events" => vec![
            f("_id", Ty::Num, false, json!([10, 30, 50])),
            f(
                "user",
                Ty::Str,
                false,
                json!(["u-1", "u-2", "u-3", "u-4", "u-5"]),
            ),
            f("kind", Ty::Str, false, json!(["click", "view", "buy"])),
            f("amount", Ty::Num, false, json!([50, 250, 400])),
            f(
                "at",
                Ty::Date,
                false,
                json!([{"$date": "2024-06-01T00:00:00Z"}, {"$date": "2025-03-10T12:30:00Z"}, {"$date": "2026-01-01T00:00:00Z"}]),
            ),
            with_nulls(f(
                "due",
                Ty::Date,
                true,
                json!([{"$date": "2024-09-01T00:00:00Z"}, {"$date": "2025-06-15T08:00:00Z"}]),
            )),
        ],
        _ => vec![
            f("_id", Ty::Num, false, json!([10, 60, 110])),
            f(
                "sensor",
                Ty::Str,
                false,
                json!(["s-1", "s-2", "s-3", "s-4", "s-5", "s-6"]),
            ),
            f(
                "site.name",
                Ty::Str,
                false,
                json!(["north", "south", "east"]),
            ),
            f("site.floor", Ty::Num, false, json!([0, 1, 2, 3])),
            with_nulls(f("temp", Ty::Num, true, json!([15, 20.5, 25]))),
            f("humidity", Ty::Num, true, json!([30, 50, 80])),
            f("ok", Ty::Bool, false, json!([true, false])),
            f("readings", Ty::NumArray, false, json!([10, 50.5, 90])),
        ],
    }
}

struct Gen {
    rng: Rng,
}

impl Gen {
    fn pipeline(&mut self, dataset: &str) -> Value {
        let mut fields = dataset_fields(dataset);
        let mut stages = Vec::new();
        let n = 1 + self.rng.below(4);
        for _ in 0..n {
            let stage = match self.rng.below(8) {
                0 | 1 => self.matcher(&fields),
                2 => self.add_fields(&mut fields),
                3 => self.project(&mut fields),
                4 => match self.unwind(&mut fields) {
                    Some(s) => s,
                    None => continue,
                },
                5 if self.rng.chance(40) => {
                    // MongoDB leaves the documents sorted by partition after the stage (it sorts
                    // to compute the windows); mingo keeps partitions in encounter order. Order
                    // is not specified, so only order-insensitive stages follow.
                    stages.push(self.window(&mut fields));
                    if self.rng.chance(50) {
                        stages.push(self.matcher(&fields));
                    }
                    break;
                }
                5 => self.sort_limit(&fields),
                6 if self.rng.chance(15) => {
                    // A self-$lookup on a string key: by keys, or by let + $match pipeline.
                    let keys: Vec<FieldInfo> = fields
                        .iter()
                        .filter(|x| x.ty == Ty::Str && !x.nullable && !x.path.contains('.'))
                        .cloned()
                        .collect();
                    if keys.is_empty()
                        || !dataset_fields(dataset)
                            .iter()
                            .any(|f| f.path == keys[0].path)
                    {
                        continue;
                    }
                    // A key that is a string in the foreign documents too (after `$unwind` a
                    // local string may be an array there, which `$eq` does not look into).
                    let original = dataset_fields(dataset);
                    let keys: Vec<FieldInfo> = keys
                        .into_iter()
                        .filter(|x| original.iter().any(|f| f.path == x.path && f.ty == Ty::Str))
                        .collect();
                    if keys.is_empty() {
                        continue;
                    }
                    let k = self.rng.pick(&keys).path.clone();
                    let lookup = if self.rng.chance(50) {
                        json!({"$lookup": {"from": dataset, "localField": k, "foreignField": k, "as": "m"}})
                    } else {
                        json!({"$lookup": {"from": dataset, "let": {"key": format!("${k}"), "id": "$_id"},
                            "pipeline": [{"$match": {"$expr": {"$and": [{"$eq": [format!("${k}"), "$$key"]}, {"$lt": ["$_id", "$$id"]}]}}},
                                         {"$project": {"_id": 1}}], "as": "m"}})
                    };
                    stages.push(lookup);
                    stages.push(json!({"$project": {"n": {"$size": "$m"}, "ids": "$m._id"}}));
                    break;
                }
                // First, so its input is never empty: mingo makes an empty bucket of nothing
                // (`90_oracle_disagreements.json`).
                6 if stages.is_empty() && self.rng.chance(15) => {
                    let nums: Vec<FieldInfo> = fields
                        .iter()
                        .filter(|x| matches!(x.ty, Ty::Num | Ty::Str) && !x.nullable)
                        .cloned()
                        .collect();
                    if nums.is_empty() {
                        continue;
                    }
                    let key = format!("${}", self.rng.pick(&nums).path);
                    stages.push(
                        json!({"$bucketAuto": {"groupBy": key, "buckets": 1 + self.rng.below(6)}}),
                    );
                    break;
                }
                6 if self.rng.chance(30) => {
                    let keys: Vec<FieldInfo> = fields
                        .iter()
                        .filter(|x| x.ty == Ty::Str && !x.nullable)
                        .cloned()
                        .collect();
                    if keys.is_empty() {
                        continue;
                    }
                    stages.push(json!({"$sortByCount": format!("${}", self.rng.pick(&keys).path)}));
                    break;
                }
                _ => {
                    let g = self.group(&mut fields);
                    stages.push(g);
                    // After a group only _id and the accumulators remain; stop adding stages that
                    // need the original fields, but allow a match/sort on the result.
                    if self.rng.chance(50) {
                        stages.push(self.matcher(&fields));
                    }
                    break;
                }
            };
            stages.push(stage);
        }
        Value::Array(stages)
    }

    /// A value of one of `fields` (for equality tests).
    fn rng_values(&mut self, fields: &[FieldInfo]) -> Vec<Value> {
        let fi = self.rng.pick(fields);
        if fi.values.is_empty() {
            vec![json!("x")]
        } else {
            fi.values.clone()
        }
    }

    fn scalar_fields<'a>(&self, fields: &'a [FieldInfo], ty: Ty) -> Vec<&'a FieldInfo> {
        fields.iter().filter(|x| x.ty == ty).collect()
    }

    fn condition(&mut self, fields: &[FieldInfo]) -> Value {
        let fi = self.rng.pick(fields).clone();
        let v = if fi.values.is_empty() {
            json!(1)
        } else {
            self.rng.pick(&fi.values).clone()
        };
        let key = fi.path.clone();
        let exists = |g: &mut Gen, fallback: Value| {
            if fi.explicit_null {
                fallback
            } else {
                json!({"$exists": g.rng.chance(50)})
            }
        };
        let cond = match fi.ty {
            Ty::Num | Ty::NumArray => match self.rng.below(7) {
                0 => v,
                1 => json!({"$gt": v}),
                2 => json!({"$lte": v}),
                3 => json!({"$gte": v, "$lt": 1000}),
                4 => json!({"$ne": v}),
                5 => json!({"$in": [v, 3]}),
                _ if fi.ty == Ty::NumArray => json!({"$elemMatch": {"$gt": 2, "$lt": 60}}),
                _ => exists(self, json!({"$gte": v})),
            },
            Ty::Str | Ty::StrArray => match self.rng.below(6) {
                0 | 1 => v,
                2 => json!({"$in": fi.values.iter().take(2).cloned().collect::<Vec<_>>()}),
                3 => json!({"$nin": [v]}),
                4 => json!({"$regex": "^[A-Pa-p]"}),
                _ => exists(self, v),
            },
            Ty::Bool => json!(self.rng.chance(50)),
            Ty::Date => match self.rng.below(5) {
                0 => json!({"$gt": v}),
                1 => json!({"$lte": v}),
                2 => json!({"$gte": v, "$lt": {"$date": "2026-06-01T00:00:00Z"}}),
                3 => json!({"$in": fi.values.clone()}),
                _ => exists(self, json!({"$lt": v})),
            },
            Ty::DocArray => match self.rng.below(3) {
                0 => {
                    return json!({"items.sku": self.rng.pick(&["A-100", "B-310", "D-777"]).to_string()});
                }
                1 => {
                    return json!({"items": {"$elemMatch": {"qty": {"$gte": 3}, "price": {"$lt": 40}}}});
                }
                _ => return json!({"items": {"$size": self.rng.below(3)}}),
            },
        };
        json!({ key: cond })
    }

    fn matcher(&mut self, fields: &[FieldInfo]) -> Value {
        let q = if self.rng.chance(25) {
            json!({"$or": [self.condition(fields), self.condition(fields)]})
        } else if self.rng.chance(20) {
            json!({"$nor": [self.condition(fields)]})
        } else {
            self.condition(fields)
        };
        json!({"$match": q})
    }

    /// An arithmetic expression over non-null numeric fields.
    fn number_expr(&mut self, fields: &[FieldInfo], depth: usize) -> Value {
        let nums: Vec<&FieldInfo> = self
            .scalar_fields(fields, Ty::Num)
            .into_iter()
            .filter(|x| !x.nullable)
            .collect();
        if depth == 0 || nums.is_empty() || self.rng.chance(30) {
            if nums.is_empty() || self.rng.chance(20) {
                return json!(self.rng.below(10) + 1);
            }
            return json!(format!("${}", self.rng.pick(&nums).path));
        }
        let a = self.number_expr(fields, depth - 1);
        let b = self.number_expr(fields, depth - 1);
        match self.rng.below(6) {
            0 => json!({"$add": [a, b]}),
            1 => json!({"$subtract": [a, b]}),
            2 => json!({"$multiply": [a, b]}),
            3 => json!({"$abs": a}),
            4 => json!({"$cond": [{"$gt": [a, b]}, a, b]}),
            _ => json!({"$max": [a, b]}),
        }
    }

    fn add_fields(&mut self, fields: &mut Vec<FieldInfo>) -> Value {
        let name = format!("f{}", self.rng.below(1000));
        let strs: Vec<FieldInfo> = self
            .scalar_fields(fields, Ty::Str)
            .into_iter()
            .filter(|x| !x.nullable)
            .cloned()
            .collect();
        let arrays: Vec<FieldInfo> = fields
            .iter()
            .filter(|x| matches!(x.ty, Ty::NumArray | Ty::StrArray) && !x.nullable)
            .cloned()
            .collect();
        let dates: Vec<FieldInfo> = fields
            .iter()
            .filter(|x| x.ty == Ty::Date && !x.nullable)
            .cloned()
            .collect();
        let (e, ty) = if !dates.is_empty() && self.rng.chance(50) {
            self.date_expr(&dates)
        } else if !strs.is_empty() && self.rng.chance(30) {
            let a = self.rng.pick(&strs).path.clone();
            let e = match self.rng.below(4) {
                0 => json!({"$concat": [format!("${a}"), "-", {"$toLower": format!("${a}")}]}),
                1 => json!({"$toUpper": {"$substrCP": [format!("${a}"), 1, 3]}}),
                2 => {
                    json!({"$concat": [{"$toString": {"$strLenCP": format!("${a}")}}, ":", format!("${a}")]})
                }
                _ => {
                    let values = self.rng_values(&strs);
                    let v = self.rng.pick(&values).clone();
                    json!({"$cond": [{"$eq": [format!("${a}"), v]}, "yes", "no"]})
                }
            };
            (e, Ty::Str)
        } else if !arrays.is_empty() && self.rng.chance(35) {
            let a = self.rng.pick(&arrays).clone();
            let p = format!("${}", a.path);
            let e = match (a.ty, self.rng.below(4)) {
                (_, 0) => json!({"$size": p}),
                (Ty::NumArray, 1) => json!({"$sum": p}),
                (Ty::NumArray, 2) => {
                    json!({"$size": {"$filter": {"input": p, "cond": {"$gt": ["$$this", 5]}}}})
                }
                (Ty::NumArray, 3) if self.rng.chance(50) => json!({"$reduce": {"input": p,
                    "initialValue": self.rng.below(5), "in": {"$add": ["$$value", {"$multiply": ["$$this", 2]}]}}}),
                (Ty::NumArray, _) => {
                    json!({"$sum": {"$map": {"input": p, "as": "x", "in": {"$multiply": ["$$x", 2]}}}})
                }
                (Ty::StrArray, 2) => {
                    json!({"$strLenCP": {"$reduce": {"input": p, "initialValue": "",
                    "in": {"$concat": ["$$value", "$$this", ","]}}}})
                }
                (Ty::StrArray, 3) => {
                    json!({"$size": {"$regexFindAll": {"input": {"$reduce": {"input": p,
                    "initialValue": "", "in": {"$concat": ["$$value", "$$this"]}}}, "regex": "[aeiou]"}}})
                }
                (_, 1) => json!({"$cond": [{"$in": ["gift", p]}, 1, 0]}),
                _ => {
                    json!({"$size": {"$filter": {"input": p, "cond": {"$ne": ["$$this", "eco"]}}}})
                }
            };
            (e, Ty::Num)
        } else {
            (self.number_expr(fields, 2), Ty::Num)
        };
        fields.push(FieldInfo {
            path: name.clone(),
            ty,
            nullable: false,
            explicit_null: false,
            values: match ty {
                Ty::Num => vec![json!(10), json!(100)],
                Ty::Date => vec![json!({"$date": "2025-01-01T00:00:00Z"})],
                _ => vec![],
            },
        });
        json!({"$addFields": { name: e }})
    }

    /// An expression over a non-null date field: a calendar part, a difference, a formatted
    /// string, or a truncated / shifted date. Units and zones where mingo departs from
    /// MongoDB (month clamping, `$week`, `$isoWeekYear`, zoned truncation) are left out.
    fn date_expr(&mut self, dates: &[FieldInfo]) -> (Value, Ty) {
        let d = format!("${}", self.rng.pick(dates).path);
        let unit = *self.rng.pick(&["year", "day", "hour", "minute"]);
        let zone = *self.rng.pick(&["UTC", "Asia/Tokyo", "+05:30"]);
        match self.rng.below(9) {
            0 => {
                let op = *self.rng.pick(&[
                    "$year",
                    "$month",
                    "$dayOfMonth",
                    "$hour",
                    "$minute",
                    "$second",
                    "$millisecond",
                    "$dayOfYear",
                    "$dayOfWeek",
                    "$isoWeek",
                    "$isoDayOfWeek",
                ]);
                (json!({ op: d }), Ty::Num)
            }
            1 => (json!({"$hour": {"date": d, "timezone": zone}}), Ty::Num),
            2 => (
                json!({"$dateDiff": {"startDate": {"$date": "2024-01-01T00:00:00Z"}, "endDate": d, "unit": unit}}),
                Ty::Num,
            ),
            // Kept small: later arithmetic on milliseconds would overflow 64 bits.
            3 => (json!({"$mod": [{"$toLong": d}, 1000]}), Ty::Num),
            4 => (
                json!({"$trunc": {"$divide": [{"$subtract": [d, {"$date": "2025-01-01T00:00:00Z"}]}, 3_600_000]}}),
                Ty::Num,
            ),
            5 => {
                let format = *self.rng.pick(&["%Y-%m-%d", "%H:%M:%S.%L", "%j/%V/%u"]);
                (
                    json!({"$dateToString": {"date": d, "format": format, "timezone": zone}}),
                    Ty::Str,
                )
            }
            6 => (
                json!({"$dateTrunc": {"date": d, "unit": *self.rng.pick(&["year", "month", "day", "hour"]), "binSize": 1 + self.rng.below(3)}}),
                Ty::Date,
            ),
            7 => (
                // Not years or months: mingo rolls Feb 29 + 1 year over to March 1.
                json!({"$dateAdd": {"startDate": d, "unit": *self.rng.pick(&["week", "day", "hour", "minute"]), "amount": self.rng.below(100) as i64 - 50}}),
                Ty::Date,
            ),
            _ => (json!({"$add": [d, 3_600_000]}), Ty::Date),
        }
    }

    fn project(&mut self, fields: &mut Vec<FieldInfo>) -> Value {
        let mut spec = serde_json::Map::new();
        let mut kept = Vec::new();
        for fi in fields.iter() {
            if fi.path == "_id" || self.rng.chance(50) {
                // Keep whole top-level fields only, so later paths stay valid.
                let top = fi.path.split('.').next().unwrap().to_string();
                spec.insert(top, json!(1));
                kept.push(fi.path.clone());
            }
        }
        let name = format!("p{}", self.rng.below(1000));
        let mut e = self.number_expr(fields, 2);
        if e.is_number() {
            // In $project a bare number means "include the field" (MongoDB); a constant
            // value is written with $literal (mingo reads a bare number as the value).
            e = json!({ "$literal": e });
        }
        spec.insert(name.clone(), e);
        fields.retain(|fi| spec.contains_key(fi.path.split('.').next().unwrap()));
        fields.push(FieldInfo {
            path: name,
            ty: Ty::Num,
            nullable: false,
            explicit_null: false,
            values: vec![json!(5), json!(50)],
        });
        json!({"$project": spec})
    }

    fn unwind(&mut self, fields: &mut Vec<FieldInfo>) -> Option<Value> {
        let arrays: Vec<FieldInfo> = fields
            .iter()
            .filter(|x| {
                matches!(x.ty, Ty::NumArray | Ty::StrArray | Ty::DocArray) && !x.path.contains('.')
            })
            .cloned()
            .collect();
        if arrays.is_empty() {
            return None;
        }
        let a = self.rng.pick(&arrays).clone();
        fields.retain(|x| x.path != a.path);
        match a.ty {
            Ty::NumArray => fields.push(FieldInfo {
                ty: Ty::Num,
                ..a.clone()
            }),
            Ty::StrArray => fields.push(FieldInfo {
                ty: Ty::Str,
                ..a.clone()
            }),
            _ => {
                fields.push(f(
                    &format!("{}.sku", a.path),
                    Ty::Str,
                    false,
                    json!(["A-100", "B-310", "D-777"]),
                ));
                fields.push(f(
                    &format!("{}.qty", a.path),
                    Ty::Num,
                    false,
                    json!([1, 3, 5]),
                ));
                fields.push(f(
                    &format!("{}.price", a.path),
                    Ty::Num,
                    false,
                    json!([10, 50.5]),
                ));
            }
        }
        let preserve = self.rng.chance(30);
        if preserve {
            // Preserved documents lack the field: it becomes nullable.
            if let Some(last) = fields
                .iter_mut()
                .rev()
                .find(|x| x.path.starts_with(&a.path))
            {
                last.nullable = true;
            }
            for x in fields
                .iter_mut()
                .filter(|x| x.path.starts_with(&format!("{}.", a.path)))
            {
                x.nullable = true;
            }
            Some(
                json!({"$unwind": {"path": format!("${}", a.path), "preserveNullAndEmptyArrays": true}}),
            )
        } else {
            Some(json!({"$unwind": format!("${}", a.path)}))
        }
    }

    /// `$setWindowFields` partitioned by a string field, ordered by `_id` (a total order).
    fn window(&mut self, fields: &mut Vec<FieldInfo>) -> Value {
        let keys: Vec<FieldInfo> = fields
            .iter()
            .filter(|x| x.ty == Ty::Str && !x.nullable)
            .cloned()
            .collect();
        let nums: Vec<FieldInfo> = fields
            .iter()
            .filter(|x| x.ty == Ty::Num && !x.nullable)
            .cloned()
            .collect();
        let name = format!("w{}", self.rng.below(1000));
        let mut spec = json!({"sortBy": {"_id": 1}, "output": {}});
        if !keys.is_empty() && self.rng.chance(70) {
            spec["partitionBy"] = json!(format!("${}", self.rng.pick(&keys).path));
        }
        let out = match (self.rng.below(8), nums.is_empty()) {
            (0, false) => {
                let p = format!("${}", self.rng.pick(&nums).path);
                json!({"$sum": p, "window": {"documents": ["unbounded", "current"]}})
            }
            (1, false) => {
                let p = format!("${}", self.rng.pick(&nums).path);
                json!({"$max": p, "window": {"documents": [-1, 1]}})
            }
            (4, false) => {
                // Over two or more documents: a one-document window has no slope (Fluxion:
                // null; mingo: NaN, README).
                spec.as_object_mut().unwrap().remove("partitionBy");
                let p = format!("${}", self.rng.pick(&nums).path);
                json!({"$derivative": {"input": p}, "window": {"documents": ["unbounded", "unbounded"]}})
            }
            (5, false) => {
                let p = format!("${}", self.rng.pick(&nums).path);
                json!({"$integral": {"input": p}, "window": {"documents": [-2, 0]}})
            }
            (6, false) => {
                let p = format!("${}", self.rng.pick(&nums).path);
                json!({"$expMovingAvg": {"input": p, "N": 1 + self.rng.below(4)}})
            }
            (7, false) => {
                let p = format!("${}", self.rng.pick(&nums).path);
                json!({"$avg": p, "window": {"range": [-20, 0]}})
            }
            (2, _) => json!({"$documentNumber": {}}),
            _ => json!({"$count": {}}),
        };
        // Later stages may test the result for equality: only integer results are offered
        // (a windowed average can differ from the oracle's in the last bit).
        let integral = out.get("$documentNumber").is_some() || out.get("$count").is_some();
        spec["output"][&name] = out;
        if !integral {
            return json!({ "$setWindowFields": spec });
        }
        fields.push(FieldInfo {
            path: name,
            ty: Ty::Num,
            nullable: false,
            explicit_null: false,
            values: vec![json!(1), json!(3), json!(50)],
        });
        json!({ "$setWindowFields": spec })
    }

    fn sort_limit(&mut self, fields: &[FieldInfo]) -> Value {
        // Sorting on a non-null scalar, then _id, keeps the order total.
        let keys: Vec<&FieldInfo> = fields
            .iter()
            .filter(|x| matches!(x.ty, Ty::Num | Ty::Str) && !x.nullable && x.path != "_id")
            .collect();
        let mut spec = serde_json::Map::new();
        if !keys.is_empty() {
            spec.insert(
                self.rng.pick(&keys).path.clone(),
                json!(if self.rng.chance(50) { 1 } else { -1 }),
            );
        }
        spec.insert("_id".into(), json!(1));
        if self.rng.chance(60) {
            json!({"$sort": spec})
        } else {
            json!({"$limit": 1 + self.rng.below(30)})
        }
    }

    /// A pipeline that can run on a stream: document-by-document stages, maybe ending in a
    /// `$group` (and an `$addFields` after it).
    fn stream_pipeline(&mut self, dataset: &str) -> Value {
        let mut fields = dataset_fields(dataset);
        let mut stages = Vec::new();
        for _ in 0..1 + self.rng.below(3) {
            let stage = match self.rng.below(5) {
                0 | 1 => self.matcher(&fields),
                2 => self.add_fields(&mut fields),
                3 => self.project(&mut fields),
                _ => match self.unwind(&mut fields) {
                    Some(s) => s,
                    None => continue,
                },
            };
            stages.push(stage);
        }
        if self.rng.chance(50) {
            stages.push(self.group(&mut fields));
            if self.rng.chance(30) {
                stages.push(json!({"$addFields": {"hasA0": {"$ne": ["$a0", null]}}}));
            }
        }
        Value::Array(stages)
    }

    fn group(&mut self, fields: &mut Vec<FieldInfo>) -> Value {
        let keys: Vec<FieldInfo> = fields
            .iter()
            .filter(|x| matches!(x.ty, Ty::Str | Ty::Bool) && !x.nullable)
            .cloned()
            .collect();
        let nums: Vec<FieldInfo> = fields.iter().filter(|x| x.ty == Ty::Num).cloned().collect();
        let dates: Vec<FieldInfo> = fields
            .iter()
            .filter(|x| x.ty == Ty::Date)
            .cloned()
            .collect();
        let id = if keys.is_empty() || self.rng.chance(10) {
            json!(null)
        } else {
            json!(format!("${}", self.rng.pick(&keys).path))
        };
        let mut spec = serde_json::Map::new();
        spec.insert("_id".into(), id);
        // A null `_id` and all-null accumulators are explicit nulls.
        let mut out = vec![with_nulls(f("_id", Ty::Str, true, json!([])))];
        for i in 0..1 + self.rng.below(3) {
            let name = format!("a{i}");
            let (acc, ty) = match self.rng.below(11) {
                0 if !dates.is_empty() && self.rng.chance(50) => {
                    let op = *self.rng.pick(&["$min", "$max", "$first", "$last"]);
                    (
                        json!({ op: format!("${}", self.rng.pick(&dates).path) }),
                        Ty::Date,
                    )
                }
                0 => (json!({"$count": {}}), Ty::Num),
                1 if !nums.is_empty() => (
                    json!({"$sum": format!("${}", self.rng.pick(&nums).path)}),
                    Ty::Num,
                ),
                2 if !nums.is_empty() => (
                    json!({"$avg": format!("${}", self.rng.pick(&nums).path)}),
                    Ty::Num,
                ),
                3 if !nums.is_empty() => (
                    json!({"$min": format!("${}", self.rng.pick(&nums).path)}),
                    Ty::Num,
                ),
                4 if !nums.is_empty() => (
                    json!({"$max": format!("${}", self.rng.pick(&nums).path)}),
                    Ty::Num,
                ),
                5 => (json!({"$first": "$_id"}), Ty::Num),
                6 if self.rng.chance(50) => (json!({"$last": "$_id"}), Ty::Num),
                6 => (json!({"$push": "$_id"}), Ty::NumArray),
                // mingo answers NaN where MongoDB answers null (all values null): non-null fields only.
                7 if nums.iter().any(|x| !x.nullable) => {
                    let non_null: Vec<&FieldInfo> = nums.iter().filter(|x| !x.nullable).collect();
                    (
                        json!({"$stdDevPop": format!("${}", self.rng.pick(&non_null).path)}),
                        Ty::Num,
                    )
                }
                8 => (
                    json!({"$firstN": {"input": "$_id", "n": 1 + self.rng.below(3)}}),
                    Ty::NumArray,
                ),
                9 if !nums.is_empty() => {
                    let p = format!("${}", self.rng.pick(&nums).path);
                    (json!({"$maxN": {"input": p, "n": 2}}), Ty::NumArray)
                }
                10 if !nums.is_empty() => {
                    let key = self.rng.pick(&nums).path.clone();
                    (
                        json!({"$topN": {"sortBy": {key: -1, "_id": 1}, "output": "$_id", "n": 2}}),
                        Ty::NumArray,
                    )
                }
                _ => (json!({"$sum": 1}), Ty::Num),
            };
            spec.insert(name.clone(), acc);
            out.push(with_nulls(f(&name, ty, true, json!([1, 10, 100]))));
        }
        *fields = out;
        json!({"$group": spec})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_pipelines_agree_with_the_oracle() {
    let count: usize = std::env::var("FLUXION_DIFF_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let seed: u64 = std::env::var("FLUXION_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261126);
    let mut generator = Gen { rng: Rng(seed) };
    let mut oracle = Oracle::start();
    let engine = Engine::new();
    let mut data = std::collections::HashMap::new();
    for name in ["orders", "sensors", "events"] {
        let text = std::fs::read_to_string(format!("tests/oracle/data/{name}.jsonl")).unwrap();
        engine.register_jsonl(name, text.as_bytes()).unwrap();
        let docs: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        data.insert(name, docs);
    }
    let (mut agreed, mut rejected, mut oracle_failed) = (0, Vec::new(), 0);
    let mut failures = Vec::new();
    for i in 0..count {
        let dataset = match generator.rng.below(10) {
            0..5 => "orders",
            5..8 => "sensors",
            _ => "events",
        };
        let pipeline = generator.pipeline(dataset);
        let collections = json!({ dataset: data[dataset] });
        let expected = match oracle.aggregate(&data[dataset], &pipeline, &collections) {
            Ok(d) => d,
            Err(_) => {
                oracle_failed += 1;
                continue;
            }
        };
        let parsed = match Pipeline::from_value(&pipeline) {
            Ok(p) => p,
            Err(e) => {
                rejected.push(format!("{pipeline}: {e}"));
                continue;
            }
        };
        match common::collect(engine.pipeline(dataset, &parsed).await).await {
            Ok(got) => match compare(&got, &expected, false) {
                Ok(()) => agreed += 1,
                Err(diff) => failures.push(format!("#{i} over {dataset}: {pipeline}\n  {diff}")),
            },
            Err(e @ fluxion::Error::Pipeline { .. }) => rejected.push(format!("{pipeline}: {e}")),
            Err(e) => failures.push(format!(
                "#{i} over {dataset}: {pipeline}\n  Fluxion failed: {e}"
            )),
        }
    }
    println!(
        "seed {seed}: {count} pipelines, {agreed} agree, {} rejected with a planning error, {oracle_failed} the oracle could not run, {} disagree",
        rejected.len(),
        failures.len()
    );
    for r in rejected.iter().take(5) {
        println!("rejected: {r}");
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(
        agreed * 10 >= count * 8,
        "too few pipelines compared ({agreed} of {count})"
    );
}

/// The streaming property: a pipeline streamed in micro-batches of a random size (1 … 30)
/// gives what it gives in batch — the same documents in the same order, or for a `$group`, the
/// last upsert per `_id` equal to the batch group. Random pipelines from the grammar above
/// (`FLUXION_STREAM_COUNT`, default 60; seed `FLUXION_DIFF_SEED`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_pipelines_stream_as_they_run_in_batch() {
    use fluxion::connect::memory::{MemorySink, MemorySource};
    use fluxion::document::encode::to_documents;
    use fluxion::runtime::exec::micro_batch::{RuntimeOptions, run};
    use fluxion::runtime::state::checkpoint::MemoryCheckpoints;
    let count: usize = std::env::var("FLUXION_STREAM_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let seed: u64 = std::env::var("FLUXION_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261126);
    let mut generator = Gen {
        rng: Rng(seed ^ 0x5eed),
    };
    let (mut agreed, mut grouped, mut rejected) = (0, 0, Vec::new());
    let mut failures = Vec::new();
    for i in 0..count {
        let dataset = *generator.rng.pick(&["orders", "sensors", "events"]);
        let text = std::fs::read_to_string(format!("tests/oracle/data/{dataset}.jsonl")).unwrap();
        let stages = generator.stream_pipeline(dataset);
        let pipeline = Pipeline::from_value(&stages).unwrap();
        let batch = common::collect({
            let engine = Engine::new();
            engine.register_jsonl("input", text.as_bytes()).unwrap();
            engine.pipeline("input", &pipeline).await
        })
        .await;
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                rejected.push(format!("{stages}: batch: {e}"));
                continue;
            }
        };
        let size = 1 + generator.rng.below(30);
        let mut source = MemorySource::from_jsonl(text.as_bytes()).unwrap();
        let mut sink = MemorySink::default();
        let streamed = run(
            &Engine::new(),
            &pipeline,
            &mut source,
            &mut sink,
            &mut MemoryCheckpoints::default(),
            &RuntimeOptions {
                micro_batch_size: size,
                ..Default::default()
            },
        )
        .await;
        if let Err(e) = streamed {
            let msg = e.to_string();
            if msg.contains("not supported in a $group over a stream") {
                rejected.push(format!("{stages}: {msg}"));
            } else {
                failures.push(format!(
                    "#{i} over {dataset} in batches of {size}: {stages}\n  stream failed: {msg}"
                ));
            }
            continue;
        }
        let got = to_documents(&sink.committed).unwrap();
        let has_group = stages.to_string().contains("\"$group\"");
        let verdict = if has_group {
            let got = common::last_per_id(got);
            common::same_documents(&got, &batch, false)
        } else {
            common::same_documents(&got, &batch, true)
        };
        match verdict {
            Ok(()) => {
                agreed += 1;
                grouped += has_group as usize;
            }
            Err(diff) => failures.push(format!(
                "#{i} over {dataset} in batches of {size}: {stages}\n  {diff}"
            )),
        }
    }
    println!(
        "seed {seed}: {count} pipelines streamed, {agreed} agree with batch ({grouped} with a continuous $group), {} not streamable",
        rejected.len()
    );
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(
        agreed * 10 >= count * 7,
        "too few pipelines compared ({agreed} of {count})"
    );
}

//! The independent oracle: mingo (a JavaScript implementation of MongoDB's aggregation
//! language) run by `tests/oracle/oracle.cjs` in a node child process, and the comparison of
//! its answers with Fluxion's.
//!
//! The harness installs mingo itself (`npm ci` in `tests/oracle`) when it is missing, so the
//! README's test command works on a fresh machine that has node and npm.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Once;

use serde_json::{Value, json};

const DIR: &str = "tests/oracle";

/// Installs the oracle's npm packages once per test process.
pub fn ensure_installed() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let installed = ["mingo", "json-rules-engine"].iter().all(|p| {
            Path::new(DIR)
                .join("node_modules")
                .join(p)
                .join("package.json")
                .is_file()
        });
        if installed {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(DIR)
            .status()
            .expect("npm must be installed to run the oracle tests");
        assert!(status.success(), "npm ci in {DIR} failed");
    });
}

/// A running oracle process.
pub struct Oracle {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Oracle {
    pub fn start() -> Oracle {
        Oracle::start_script("oracle.cjs")
    }

    /// The oracle of another script of `tests/oracle` (`rules_oracle.cjs`: json-rules-engine).
    pub fn start_script(script: &str) -> Oracle {
        ensure_installed();
        let mut child = Command::new("node")
            .arg(script)
            .current_dir(DIR)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node must be installed to run the oracle tests");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Oracle {
            child,
            stdin,
            stdout,
            next_id: 0,
        }
    }

    /// Sends `req` (given the next id) and reads the answer.
    pub fn request(&mut self, mut req: Value) -> Value {
        self.next_id += 1;
        req["id"] = json!(self.next_id);
        writeln!(self.stdin, "{req}").expect("write to oracle");
        self.stdin.flush().expect("flush oracle");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from oracle");
        let answer: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("oracle said {line:?}: {e}"));
        assert_eq!(answer["id"], json!(self.next_id), "oracle out of step");
        answer
    }

    /// Runs `pipeline` over `docs` (with `collections` for `$lookup` / `$unionWith`).
    pub fn aggregate(
        &mut self,
        docs: &[Value],
        pipeline: &Value,
        collections: &Value,
    ) -> Result<Vec<Value>, String> {
        let answer =
            self.request(json!({"docs": docs, "pipeline": pipeline, "collections": collections}));
        match answer.get("docs") {
            Some(Value::Array(docs)) => Ok(docs.clone()),
            _ => Err(answer["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_string()),
        }
    }
}

impl Drop for Oracle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Puts a document into the form both sides are compared in: fields whose value is null are
/// dropped (Fluxion does not distinguish null from missing: README), `{"$date": x}` becomes
/// `x`, and object keys are sorted (field order is checked by Fluxion's own tests, not here).
pub fn normalize(v: &Value) -> Value {
    normalize_at(v, true)
}

/// Fluxion writes `"_id": null` only at the top of a document (`document::encode`).
fn normalize_at(v: &Value, top: bool) -> Value {
    match v {
        Value::Object(map) => {
            if let (1, Some(d)) = (map.len(), map.get("$date")) {
                return d.clone();
            }
            let mut keys: Vec<_> = map
                .iter()
                .filter(|(k, v)| !v.is_null() || (top && *k == "_id"))
                .collect();
            keys.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                keys.into_iter()
                    .map(|(k, v)| (k.clone(), normalize_at(v, false)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| normalize_at(i, false)).collect()),
        other => other.clone(),
    }
}

/// Compares Fluxion's documents with the oracle's: after [`normalize`], numbers equal within
/// 1e-9 relative (float sums differ in the last bits with evaluation order), in order when
/// `ordered`, as multisets otherwise.
pub fn compare(fluxion: &[Value], oracle: &[Value], ordered: bool) -> Result<(), String> {
    let mut a: Vec<Value> = fluxion.iter().map(normalize).collect();
    let mut b: Vec<Value> = oracle.iter().map(normalize).collect();
    if a.len() != b.len() {
        return Err(format!(
            "{} documents from Fluxion, {} from the oracle\n  fluxion: {}\n  oracle:  {}",
            a.len(),
            b.len(),
            preview(&a),
            preview(&b)
        ));
    }
    if !ordered {
        a.sort_by_key(sort_key);
        b.sort_by_key(sort_key);
    }
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        if !super::same_value(x, y) {
            return Err(format!(
                "document {i} differs\n  fluxion: {x}\n  oracle:  {y}"
            ));
        }
    }
    Ok(())
}

fn preview(docs: &[Value]) -> String {
    let s: Vec<String> = docs.iter().take(3).map(Value::to_string).collect();
    format!(
        "[{}{}]",
        s.join(", "),
        if docs.len() > 3 { ", …" } else { "" }
    )
}

/// A sort key that puts numerically-equal documents together (ints and floats print alike).
fn sort_key(v: &Value) -> String {
    match v {
        // `+ 0.0` turns -0 into 0, which compare equal.
        Value::Number(n) => format!("{:.6}", n.as_f64().unwrap_or(0.0) + 0.0),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(sort_key).collect::<Vec<_>>().join(",")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{k}:{}", sort_key(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

// Fluxion's test oracle: runs MongoDB aggregation pipelines with mingo, an implementation of
// the aggregation language that is not ours. Protocol: one JSON request per line on stdin,
//   {"id": ..., "docs": [...], "pipeline": [...], "collections": {"name": [...]}}
// one JSON answer per line on stdout,
//   {"id": ..., "docs": [...]}   or   {"id": ..., "error": "message"}
// Extended JSON dates ({"$date": "..."}) become Date objects on the way in and go back out
// as {"$date": "<ISO-8601>"}.
"use strict";
const readline = require("readline");
const mingo = require("mingo");

function revive(v) {
  if (Array.isArray(v)) return v.map(revive);
  if (v && typeof v === "object") {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === "$date") {
      const d = v.$date;
      return new Date(typeof d === "object" && d.$numberLong ? Number(d.$numberLong) : d);
    }
    const out = {};
    for (const k of keys) out[k] = revive(v[k]);
    return out;
  }
  return v;
}

function dump(v) {
  if (v instanceof Date) return { $date: isNaN(v) ? null : v.toISOString() };
  if (Array.isArray(v)) return v.map(dump);
  if (v && typeof v === "object") {
    const out = {};
    for (const k of Object.keys(v)) out[k] = dump(v[k]);
    return out;
  }
  if (typeof v === "number" && !Number.isFinite(v)) return { $number: String(v) };
  return v;
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on("line", (line) => {
  if (!line.trim()) return;
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    process.stdout.write(JSON.stringify({ id: null, error: "bad request: " + e.message }) + "\n");
    return;
  }
  const collections = {};
  for (const [name, docs] of Object.entries(req.collections || {})) collections[name] = revive(docs);
  try {
    const options = {
      collectionResolver: (name) => collections[name] || [],
      // Pin $$NOW so both sides can agree on it.
      variables: req.now ? { NOW: new Date(req.now) } : undefined,
    };
    const docs = mingo.aggregate(revive(req.docs), revive(req.pipeline), options);
    process.stdout.write(JSON.stringify({ id: req.id, docs: dump(docs) }) + "\n");
  } catch (e) {
    process.stdout.write(JSON.stringify({ id: req.id, error: String(e && e.message || e) }) + "\n");
  }
});

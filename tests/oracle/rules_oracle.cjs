// The rule engine's test oracle: json-rules-engine, run on the rule sets and documents Fluxion
// is tested with. Protocol: one JSON request per line on stdin,
//   {"id": ..., "rules": [{"id", "priority", "conditions"}], "docs": [...]}
// one JSON answer per line on stdout,
//   {"id": ..., "passed": [[rule ids that passed, sorted], ...]}   or   {"id": ..., "error": "..."}
// Facts are the documents' top-level fields; a missing one is undefined (allowUndefinedFacts).
"use strict";
const readline = require("readline");
const { Engine } = require("json-rules-engine");

async function judge(req) {
  const engine = new Engine([], { allowUndefinedFacts: true });
  for (const r of req.rules) {
    engine.addRule({
      name: r.id,
      priority: r.priority || 1,
      conditions: r.conditions,
      event: { type: r.id },
    });
  }
  const out = [];
  for (const doc of req.docs) {
    const { events } = await engine.run(doc);
    out.push(events.map((e) => e.type).sort());
  }
  return out;
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });
let queue = Promise.resolve();
rl.on("line", (line) => {
  if (!line.trim()) return;
  queue = queue.then(async () => {
    let req;
    try {
      req = JSON.parse(line);
      const passed = await judge(req);
      process.stdout.write(JSON.stringify({ id: req.id, passed }) + "\n");
    } catch (e) {
      process.stdout.write(JSON.stringify({ id: req && req.id, error: String(e && e.message || e) }) + "\n");
    }
  });
});

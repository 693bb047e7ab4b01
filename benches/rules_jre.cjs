// json-rules-engine on the benchmark's rules and documents: one {"index", "passed"} line per
// document, like `fluxion rules eval`. Usage: node rules_jre.cjs RULESET.json DOCS.jsonl LIMIT
"use strict";
const fs = require("fs");
const path = require("path");
const readline = require("readline");
const { Engine } = require(path.join(__dirname, "../tests/oracle/node_modules/json-rules-engine"));

async function main() {
  const [rulesFile, docsFile, limit] = process.argv.slice(2);
  const rs = JSON.parse(fs.readFileSync(rulesFile, "utf8"));
  const engine = new Engine([], { allowUndefinedFacts: true });
  for (const r of rs.rules) {
    engine.addRule({ name: r.id, priority: r.salience || 1, conditions: r.when, event: { type: r.id } });
  }
  const out = fs.createWriteStream("/dev/stdout");
  const rl = readline.createInterface({ input: fs.createReadStream(docsFile), terminal: false });
  let index = 0;
  const max = Number(limit);
  for await (const line of rl) {
    if (index >= max) break;
    const { events } = await engine.run(JSON.parse(line));
    const ok = out.write(JSON.stringify({ index, passed: events.map((e) => e.type) }) + "\n");
    if (!ok) await new Promise((r) => out.once("drain", r));
    index++;
  }
  out.end();
}
main();

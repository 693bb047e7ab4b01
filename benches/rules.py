#!/usr/bin/env python3
"""The rule engine's throughput beside json-rules-engine's, on the same rules and documents.

Random rule sets of json-rules-engine conditions (each rule an `all` of 2–3 comparisons on
the documents' fields, salience 1–5, hit policy `all`) over random orders (JSON lines written
here): Fluxion runs `[{"$rules": …}, {"$project": {"passed": "$decision.passed"}}]` over the
file (`fluxion run --pipeline`, the path `$rules` takes in any job), json-rules-engine 7.3.1
under node (the test oracle's copy) judges each document; both write one JSON line per
document with the rules that passed. Both answers are compared
document by document before any time is reported, so a fast wrong answer cannot win.
json-rules-engine judges one document at a time,
so it runs on the first `--jre-events` documents only, once; rates are documents per second.

    FLUXION_BIN=target/release/fluxion python3 benches/rules.py [--runs 2]
"""
import argparse, json, os, random, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import build  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
COUNTRIES = ["FR", "DE", "PT", "ES", "IT", "NL", "BE", "PL", "SE", "DK"]
TIERS = ["gold", "silver", "bronze", "basic"]
WORDS = ["vip", "new", "gift", "promo", "b2b"]


def docs(path, n, seed):
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            d = {"id": i, "amount": round(rng.uniform(0, 1000), 2), "qty": rng.randint(1, 20),
                 "country": rng.choice(COUNTRIES), "tier": rng.choice(TIERS),
                 "score": rng.randint(0, 100), "tags": rng.sample(WORDS, rng.randint(0, 3))}
            f.write(json.dumps(d) + "\n")


def leaf(rng):
    kind = rng.randrange(6)
    if kind == 0:
        return {"fact": "amount", "operator": rng.choice(["greaterThan", "lessThanInclusive"]),
                "value": round(rng.uniform(0, 1000), 1)}
    if kind == 1:
        return {"fact": "qty", "operator": rng.choice(["greaterThanInclusive", "lessThan"]), "value": rng.randint(1, 20)}
    if kind == 2:
        return {"fact": "country", "operator": rng.choice(["in", "notIn"]), "value": rng.sample(COUNTRIES, 3)}
    if kind == 3:
        return {"fact": "tier", "operator": rng.choice(["equal", "notEqual"]), "value": rng.choice(TIERS)}
    if kind == 4:
        return {"fact": "tags", "operator": rng.choice(["contains", "doesNotContain"]), "value": rng.choice(WORDS)}
    return {"fact": "score", "operator": "greaterThan", "value": rng.randint(0, 100)}


def rule_set(path, n, seed):
    rng = random.Random(seed)
    rules = [{"id": f"r{i}", "salience": rng.randint(1, 5),
              "when": {"all": [leaf(rng) for _ in range(rng.randint(2, 3))]}} for i in range(n)]
    with open(path, "w") as f:
        json.dump({"id": "bench", "version": "1.0.0", "rules": rules}, f)


def timed(cmd, out):
    t = time.perf_counter()
    with open(out, "w") as f:
        subprocess.run(cmd, stdout=f, check=True)
    return time.perf_counter() - t


def passed(path, limit):
    out = []
    with open(path) as f:
        for i, line in enumerate(f):
            if i >= limit:
                break
            out.append(sorted(json.loads(line).get("passed", [])))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--jre-events", type=int, default=20_000)
    ap.add_argument("--jre-runs", type=int, default=1)
    args = ap.parse_args()
    fluxion = build()
    d = tempfile.mkdtemp(prefix="fluxion-rules-bench-")
    print(f"{'rules':>6} {'documents':>10} | {'fluxion s':>9} {'docs/s':>10} | {'json-rules-engine s':>19} "
          f"{'docs':>8} {'docs/s':>8} | ratio", flush=True)
    for rules, events in [(100, 1_000_000), (1000, 100_000)]:
        data = os.path.join(d, f"docs-{events}.jsonl")
        rs = os.path.join(d, f"rules-{rules}.json")
        docs(data, events, 1)
        rule_set(rs, rules, 2)
        out_f = os.path.join(d, "fluxion.jsonl")
        out_j = os.path.join(d, "jre.jsonl")
        pipeline = os.path.join(d, f"pipeline-{rules}.json")
        with open(pipeline, "w") as f:
            json.dump([{"$rules": {"ruleSet": rs}}, {"$project": {"_id": 0, "passed": "$decision.passed"}}], f)
        best_f = min(timed([fluxion, "run", "--pipeline", pipeline, "--input", data], out_f)
                     for _ in range(args.runs))
        jre_events = min(events, args.jre_events)
        best_j = min(timed(["node", os.path.join(HERE, "rules_jre.cjs"), rs, data, str(jre_events)], out_j)
                     for _ in range(args.jre_runs))
        a, b = passed(out_f, jre_events), passed(out_j, jre_events)
        if a != b:
            bad = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
            sys.exit(f"answers differ at document {bad}: fluxion {a[bad]}, json-rules-engine {b[bad]}")
        rate_f, rate_j = events / best_f, jre_events / best_j
        print(f"{rules:>6} {events:>10} | {best_f:>9.2f} {rate_f:>10.0f} | {best_j:>19.2f} {jre_events:>8} "
              f"{rate_j:>8.0f} | {rate_f / rate_j:.1f}x", flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Nexmark throughput: events per second on one core, per query.

Each query of examples/nexmark/ (JSON, and SQL where it has a SQL spelling) runs as a streaming
job over the in-process Nexmark source (N bids) into the null sink, pinned to one core with
`taskset -c 0` and `workerThreads: 1`; wall time of the whole process, best of R runs.

    FLUXION_BIN=target/release/fluxion python3 benches/nexmark.py --events 2000000 --runs 3
"""
import argparse, json, os, shutil, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import ROOT, best_of, build  # noqa: E402

QUERIES = os.path.join(ROOT, "examples", "nexmark")


def job(dirname, query, spelling, events, batch):
    j = {"name": f"nexmark-{query}",
         "source": {"type": "nexmark", "events": events, "table": "bid"},
         "sink": {"type": "null"},
         "runtime": {"microBatchSize": batch, "workerThreads": 1}}
    path = os.path.join(QUERIES, f"{query}.{spelling}")
    with open(path) as f:
        if spelling == "json":
            j["pipeline"] = json.load(f)
        else:
            j["sql"] = f.read()
    out = os.path.join(dirname, f"{query}-{spelling}.json")
    with open(out, "w") as f:
        json.dump(j, f)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=100_000)
    args = ap.parse_args()
    fluxion = build()
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    d = tempfile.mkdtemp(prefix="fluxion-nexmark-")
    rows = []
    try:
        for q in ["q0", "q1", "q2", "q5", "q7", "q11", "q14", "q22"]:
            for spelling in ["json", "sql"]:
                if not os.path.exists(os.path.join(QUERIES, f"{q}.{spelling}")):
                    continue
                path = job(d, q, spelling, args.events, args.batch)
                best = best_of(pin + [fluxion, "run", path], args.runs)
                rows.append((q, spelling, best, args.events / best))
    finally:
        shutil.rmtree(d)
    print(f"{args.events} bids, micro-batches of {args.batch}, one core, best of {args.runs}")
    print(f"{'query':<6}{'spelling':<10}{'s':>8}{'events/s':>14}")
    for q, s, best, rate in rows:
        print(f"{q:<6}{s:<10}{best:>8.3f}{rate:>14,.0f}")


if __name__ == "__main__":
    main()

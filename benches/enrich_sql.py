#!/usr/bin/env python3
"""`$sqlQuery` throughput against a local PostgreSQL server.

1 M orders over 1 000 distinct customers (a JSON-lines file written here), as a batch job:
`$match PAID`, then the customer's tier looked up with `$sqlQuery` (`SELECT tier FROM
customers WHERE id = $1`, an index lookup), then a `$group` per tier — with the call site's
cache, without it (each DataFusion batch of 8 192 documents still looks each distinct
customer up once, all of them in one statement), and the same pipeline without the lookup.
The server is a throwaway cluster from Debian's PostgreSQL binaries, started here on
loopback; it shares the 2 cores. "lookups" is the index scans the server counted.

    FLUXION_BIN=target/release/fluxion python3 benches/enrich_sql.py [--events 1000000] [--runs 2]
"""
import argparse, glob, json, os, shutil, socket, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import build  # noqa: E402

USER, PASSWORD = "fluxion", "bench"


def as_postgres(args):
    return (["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) + args


def start_postgres(d):
    """A fresh cluster in `d`, listening on a free loopback port; its URL."""
    bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))[-1]
    if os.geteuid() == 0:
        shutil.chown(d, "postgres")
    pw = os.path.join(d, "pw")
    with open(pw, "w") as f:
        f.write(PASSWORD)
    os.chmod(pw, 0o644)
    data = os.path.join(d, "data")
    subprocess.run(as_postgres([f"{bindir}/initdb", "-D", data, "-U", USER, "--pwfile", pw,
                                "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync"]),
                   check=True, stdout=subprocess.DEVNULL)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    opts = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={data}"
    subprocess.run(as_postgres([f"{bindir}/pg_ctl", "-D", data, "-l", os.path.join(d, "log"), "-w",
                                "-o", opts, "start"]), check=True, stdout=subprocess.DEVNULL)
    stop = lambda: subprocess.run(as_postgres([f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"]),
                                  stdout=subprocess.DEVNULL)
    return f"postgres://{USER}:{PASSWORD}@127.0.0.1:{port}/postgres", port, stop


def psql(port, sql):
    env = {**os.environ, "PGPASSWORD": PASSWORD}
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", USER, "-d", "postgres",
                          "-qtAX", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         check=True, capture_output=True, text=True, env=env)
    return out.stdout.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=1_000)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    fluxion = build()
    d = tempfile.mkdtemp(prefix="fluxion-enrich-sql-bench-")
    os.chmod(d, 0o755)
    url, port, stop = start_postgres(d)
    try:
        psql(port, f"CREATE TABLE customers (id text PRIMARY KEY, tier text); "
                   f"INSERT INTO customers SELECT 'c-' || i, CASE WHEN i % 2 = 0 THEN 'gold' ELSE 'basic' END "
                   f"FROM generate_series(0, {args.keys - 1}) i; ANALYZE customers;")
        data = os.path.join(d, "orders.jsonl")
        with open(data, "w") as f:
            for i in range(args.events):
                status = "NEW" if i % 3 == 0 else "PAID"
                f.write(f'{{"customerId": "c-{i * 7919 % args.keys}", "status": "{status}", '
                        f'"orderValue": {i % 50}.25}}\n')
        lookup = {"url": url, "query": "SELECT tier FROM customers WHERE id = $1",
                  "params": ["$customerId"], "result": "value"}
        group = {"$group": {"_id": "$tier", "orders": {"$count": {}}, "value": {"$sum": "$orderValue"}}}
        runs = [
            ("without the lookup", [{"$match": {"status": "PAID"}}, {"$addFields": {"tier": "x"}}, group]),
            ("$sqlQuery with the cache",
             [{"$match": {"status": "PAID"}},
              {"$addFields": {"tier": {"$sqlQuery": {**lookup, "cache": {"maxEntries": 10_000}}}}}, group]),
            ("$sqlQuery without a cache",
             [{"$match": {"status": "PAID"}}, {"$addFields": {"tier": {"$sqlQuery": lookup}}}, group]),
        ]
        scans = lambda: int(psql(port, "SELECT coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'customers'"))
        print(f"{args.events:,} orders over {args.keys:,} customers in PostgreSQL; best of {args.runs}")
        print(f"{'run':<30}{'s':>8}{'events/s':>12}{'lookups':>10}{'ratio':>8}")
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
                time.sleep(0.6)  # the statistics collector's last word
                before = scans()
                t = time.perf_counter()
                subprocess.run([fluxion, "run", job], check=True, stdout=subprocess.DEVNULL)
                secs = time.perf_counter() - t
                time.sleep(0.6)
                lookups = scans() - before
                groups = [json.loads(line) for line in open(out)]
                if sum(g["orders"] for g in groups) != sum(1 for i in range(args.events) if i % 3):
                    raise SystemExit(f"{label}: wrong answer {groups}")
                if best is None or secs < best[0]:
                    best = (secs, lookups)
            secs, lookups = best
            base_secs = base_secs or secs
            print(f"{label:<30}{secs:>8.2f}{args.events / secs:>12,.0f}{lookups:>10,}{secs / base_secs:>8.2f}")
    finally:
        stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()

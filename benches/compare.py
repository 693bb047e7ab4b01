#!/usr/bin/env python3
"""Times the quickstart pipeline on 1M generated events: fluxion (JSON pipeline), fluxion (SQL),
DuckDB and Polars, on the same JSONL file in the same run, and prints the ratios.

    python3 benches/compare.py                 # 1M events, best of 5 runs each
    python3 benches/compare.py --events 200000 --runs 3

DuckDB and Polars are installed from PyPI into bench-data/venv by this script. Every engine's
result is checked against the others (same customers, same counts, sums within 1e-6), so a
fast wrong answer cannot win.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, time, venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "bench-data")
VENV = os.path.join(DATA, "venv")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.expanduser("~"), ".cache", "fluxion-target"))

SQL = ("SELECT customerId AS _id, count(*) AS orderCount, sum(orderValue) AS lifetimeValue "
       "FROM orders WHERE status = 'PAID' GROUP BY customerId")

ENGINE_SCRIPT = r'''
import sys, time, json
engine, path = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if engine == "duckdb":
    import duckdb
    con = duckdb.connect()
    con.execute("SET threads TO %d" % int(sys.argv[3]))
    rows = con.execute(
        "SELECT customerId, count(*), sum(orderValue) FROM read_json(?, format='newline_delimited') "
        "WHERE status = 'PAID' GROUP BY customerId", [path]).fetchall()
else:
    import polars as pl
    df = (pl.scan_ndjson(path).filter(pl.col("status") == "PAID")
          .group_by("customerId").agg(pl.len().alias("n"), pl.col("orderValue").sum().alias("v"))
          .collect())
    rows = df.rows()
elapsed = time.perf_counter() - t
print(json.dumps({"seconds": elapsed, "rows": [[r[0], int(r[1]), float(r[2])] for r in rows]}))
'''


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def best_of(cmd, runs):
    """The shortest wall time, in seconds, of `runs` runs of `cmd` (each must succeed)."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sh(cmd)
        times.append(time.perf_counter() - t)
    return min(times)


def ensure_venv():
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        venv.create(VENV, with_pip=True)
    probe = subprocess.run([py, "-c", "import duckdb, polars"], capture_output=True)
    if probe.returncode != 0:
        sh([py, "-m", "pip", "install", "--quiet", "duckdb", "polars"])
    versions = subprocess.run([py, "-c", "import duckdb, polars; print(duckdb.__version__, polars.__version__)"],
                              capture_output=True, text=True, check=True).stdout.split()
    return py, versions


def ensure_data(events):
    path = os.path.join(DATA, f"quickstart-{events}.jsonl")
    if not os.path.exists(path):
        sh([sys.executable, os.path.join(ROOT, "examples", "data", "generate.py"), "--events", str(events),
            "--shape", "quickstart", "--out", path])
    return path


def build():
    if os.environ.get("FLUXION_BIN"):
        return os.environ["FLUXION_BIN"]
    sh(["cargo", "build", "--release", "--quiet", "--bin", "fluxion"], cwd=ROOT,
       env={**os.environ, "CARGO_TARGET_DIR": TARGET})
    return os.path.join(TARGET, "release", "fluxion")


def rows_of_jsonl(text):
    out = []
    for line in text.splitlines():
        d = json.loads(line)
        out.append([d["_id"], int(d["orderCount"]), float(d["lifetimeValue"])])
    return out


def same(a, b):
    a, b = sorted(a), sorted(b)
    return len(a) == len(b) and all(x[0] == y[0] and x[1] == y[1] and abs(x[2] - y[2]) <= 1e-6 * max(1, abs(x[2]))
                                    for x, y in zip(a, b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    os.makedirs(DATA, exist_ok=True)
    py, versions = ensure_venv()
    path = ensure_data(a.events)
    fluxion = build()
    pipeline = os.path.join(DATA, "quickstart-pipeline.json")
    with open(pipeline, "w") as f:
        json.dump([{"$match": {"status": "PAID"}},
                   {"$group": {"_id": "$customerId", "orderCount": {"$count": {}},
                               "lifetimeValue": {"$sum": "$orderValue"}}}], f)
    script = os.path.join(DATA, "engine.py")
    with open(script, "w") as f:
        f.write(ENGINE_SCRIPT)

    def wall(cmd):
        t = time.perf_counter()
        r = subprocess.run(cmd, check=True, capture_output=True, text=True)
        return time.perf_counter() - t, r.stdout

    engines = {
        "fluxion (JSON)": lambda: wall([fluxion, "run", "--pipeline", pipeline, "--input", f"orders={path}"]),
        "fluxion (SQL)": lambda: wall([fluxion, "run", "--sql", SQL, "--input", f"orders={path}"]),
        "DuckDB": lambda: wall([py, script, "duckdb", path, str(a.threads)]),
        "Polars": lambda: wall([py, script, "polars", path]),
    }
    size = os.path.getsize(path) / 1e6
    print(f"{a.events} events, {size:.0f} MB JSONL, {a.threads} threads, best of {a.runs} "
          f"(duckdb {versions[0]}, polars {versions[1]}); wall time of the whole process")
    times, inner, results = {}, {}, {}
    for _ in range(a.runs):
        # Interleave engines so background noise hits all of them alike.
        for name, run in engines.items():
            secs, out = run()
            times.setdefault(name, []).append(secs)
            if name.startswith("fluxion"):
                results[name] = rows_of_jsonl(out)
            else:
                answer = json.loads(out)
                results[name] = answer["rows"]
                # Time inside Python, without interpreter start-up and imports.
                inner.setdefault(name, []).append(answer["seconds"])
    ref = results["DuckDB"]
    for name, rows in results.items():
        if not same(rows, ref):
            sys.exit(f"{name} disagrees with DuckDB on the result")
    base = min(times["fluxion (SQL)"])
    print(f"{'engine':<16}{'best s':>9}{'median s':>10}{'Mev/s':>8}{'time vs fluxion SQL':>21}{'in-engine s':>13}")
    for name, ts in times.items():
        best = min(ts)
        engine = f"{min(inner[name]):>13.3f}" if name in inner else f"{'':>13}"
        print(f"{name:<16}{best:>9.3f}{statistics.median(ts):>10.3f}{a.events / best / 1e6:>8.2f}"
              f"{best / base:>20.2f}x{engine}")
    j = min(times["fluxion (JSON)"])
    jm, sm = statistics.median(times["fluxion (JSON)"]), statistics.median(times["fluxion (SQL)"])
    print(f"JSON path vs SQL path: {100 * (j - base) / base:+.1f} % (best), {100 * (jm - sm) / sm:+.1f} % (median)")
    for other in ("DuckDB", "Polars"):
        print(f"{other} takes {min(times[other]) / base:.2f}x fluxion (SQL)'s wall time, "
              f"{min(inner[other]) / base:.2f}x counting only its in-engine time")


if __name__ == "__main__":
    main()

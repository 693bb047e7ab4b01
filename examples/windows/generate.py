#!/usr/bin/env python3
"""Sample click events for the window example, and the windows expected from them.

clicks.jsonl: 300 page views over ~10 minutes, a few seconds out of order, every 40th one
two minutes late. clicks-per-minute.expected.jsonl: what examples/windows/clicks-per-minute.json
must output, computed here in plain Python from the rule (watermark = largest event time so
far - allowedLateness, document by document; a document whose window the watermark has passed
is late; windows come out in order of their start, pages by views desc then name).
"""
import datetime, json, os, random

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SIZE, LATENESS = 60_000, 10_000
PAGES = ["/", "/cart", "/checkout", "/item/1", "/item/2", "/search"]


def iso(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def main():
    rng = random.Random(20261127)
    events = []
    for i in range(300):
        t = BASE + i * 2_000 - rng.randrange(0, 6_000) - (120_000 if i % 40 == 39 else 0)
        events.append({"id": i, "ts": iso(t), "page": rng.choice(PAGES), "ms": t})
    with open(os.path.join(HERE, "clicks.jsonl"), "w") as f:
        for e in events:
            f.write(json.dumps({"id": e["id"], "ts": e["ts"], "page": e["page"]}) + "\n")
    windows, late, top = {}, [], None
    for e in events:
        t = e["ms"]
        start = t // SIZE * SIZE
        if top is not None and start + SIZE <= top - LATENESS:
            late.append(e["id"])
        else:
            windows.setdefault(start, {}).setdefault(e["page"], 0)
            windows[start][e["page"]] += 1
        top = t if top is None else max(top, t)
    with open(os.path.join(HERE, "clicks-per-minute.expected.jsonl"), "w") as f:
        for start in sorted(windows):
            for page, n in sorted(windows[start].items(), key=lambda kv: (-kv[1], kv[0])):
                f.write(json.dumps({"_id": page, "views": n,
                                    "_stream_meta": {"window": {"start": {"$date": iso(start)},
                                                                "end": {"$date": iso(start + SIZE)}}}},
                                   separators=(",", ":")) + "\n")
    print(f"{len(events)} clicks, {len(windows)} windows, late: {late}")


if __name__ == "__main__":
    main()

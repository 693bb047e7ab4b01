#!/usr/bin/env python3
"""Generates the oracle corpus's datasets (seeded, reproducible):

- orders.jsonl: 80 orders with item arrays, tags, an optional coupon, a sub-document, some
  nulls, an ISO-8601 `createdAt`;
- sensors.jsonl: 120 sensor events with reading arrays, optional fields and epoch-millisecond
  timestamps;
- events.jsonl: 60 events with extended JSON dates, ISO-8601 text and epoch milliseconds.

    python3 tests/oracle/data/generate.py
"""
import json, os, random

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(20261126)

STATUSES = ["PAID", "PAID", "PENDING", "CANCELLED", "REFUNDED"]
CITIES = [("Lisbon", "PT"), ("Porto", "PT"), ("Berlin", "DE"), ("Lyon", "FR"), ("Austin", "US")]
SKUS = ["A-100", "A-200", "B-310", "C-042", "D-777"]
TAGS = ["gift", "fragile", "bulk", "promo", "eco"]

with open(os.path.join(HERE, "orders.jsonl"), "w") as f:
    for i in range(80):
        items = [{"sku": rng.choice(SKUS), "qty": rng.randint(1, 5), "price": round(rng.uniform(1, 90), 2)}
                 for _ in range(rng.randint(0, 4))]
        city, country = rng.choice(CITIES)
        o = {
            "_id": i + 1,
            "orderId": f"o-{i:04d}",
            "customerId": f"c-{rng.randint(1, 12):02d}",
            "status": rng.choice(STATUSES),
            "orderValue": round(sum(it["qty"] * it["price"] for it in items), 2),
            "createdAt": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
            "shipping": {"city": city, "country": country, "express": rng.random() < 0.3,
                         "cost": rng.choice([0, 4.5, 9.9, 12])},
            "items": items,
            "tags": rng.sample(TAGS, rng.randint(0, 3)),
            "flags": [rng.randint(0, 15) for _ in range(rng.randint(0, 3))],
            "priority": rng.randint(1, 5),
        }
        if rng.random() < 0.25:
            o["coupon"] = rng.choice(["SPRING10", "VIP", "WELCOME"])
        if rng.random() < 0.1:
            o["note"] = None
        elif rng.random() < 0.2:
            o["note"] = rng.choice(["leave at door", "Call first", "fragile!", "  gift wrap  "])
        f.write(json.dumps(o, separators=(",", ":")) + "\n")

with open(os.path.join(HERE, "sensors.jsonl"), "w") as f:
    t0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    for i in range(120):
        sensor = f"s-{rng.randint(1, 6)}"
        e = {
            "_id": i + 1,
            "sensor": sensor,
            "site": {"name": rng.choice(["north", "south", "east"]), "floor": rng.randint(0, 3)},
            "ts": t0 + i * 60_000 * rng.randint(1, 30),
            "temp": round(rng.gauss(21, 4), 2),
            "readings": [round(rng.uniform(0, 100), 1) for _ in range(rng.randint(0, 5))],
            "ok": rng.random() < 0.85,
        }
        if rng.random() < 0.3:
            e["humidity"] = rng.randint(20, 90)
        if rng.random() < 0.15:
            e["temp"] = None
        f.write(json.dumps(e, separators=(",", ":")) + "\n")

# events.jsonl: 60 events with extended JSON dates (`at`, `due`), ISO text (`when`) and epoch
# milliseconds (`epoch`); some fall on DST changes, leap days, year and ISO-week boundaries.
import datetime as dt

def iso(d):
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"

SPECIAL = [
    dt.datetime(2024, 3, 10, 6, 30, 0, 0),          # New York springs forward at 07:00Z
    dt.datetime(2024, 11, 3, 5, 30, 0, 0),          # ... and falls back at 06:00Z
    dt.datetime(2024, 2, 29, 23, 0, 0, 0),          # leap day
    dt.datetime(2025, 12, 31, 23, 59, 59, 999000),  # last millisecond of a year
    dt.datetime(2021, 1, 3, 12, 0, 0, 0),           # ISO week 53 of 2020, a Sunday
    dt.datetime(2026, 1, 1, 0, 0, 0, 0),
]
with open(os.path.join(HERE, "events.jsonl"), "w") as f:
    base = dt.datetime(2023, 12, 25)
    for i in range(60):
        if i < len(SPECIAL):
            at = SPECIAL[i]
        else:
            at = base + dt.timedelta(milliseconds=rng.randint(0, 3 * 365 * 86_400_000))
        e = {
            "_id": i + 1,
            "user": f"u-{rng.randint(1, 5)}",
            "kind": rng.choice(["click", "view", "buy"]),
            "at": {"$date": iso(at)},
            "amount": rng.randint(1, 500),
        }
        r = rng.random()
        if r < 0.7:
            due = at + dt.timedelta(hours=rng.randint(-100, 2000), minutes=rng.randint(0, 59))
            e["due"] = {"$date": {"$numberLong": str(int((due - dt.datetime(1970, 1, 1)).total_seconds() * 1000))}}
        elif r < 0.8:
            e["due"] = None
        w = at + dt.timedelta(days=rng.randint(-30, 30))
        e["when"] = rng.choice([w.strftime("%Y-%m-%dT%H:%M:%SZ"), w.strftime("%Y-%m-%d"),
                                w.strftime("%Y-%m-%dT%H:%M:%S+02:00")])
        e["epoch"] = int((at - dt.datetime(1970, 1, 1)).total_seconds() * 1000) + rng.randint(0, 999)
        f.write(json.dumps(e, separators=(",", ":")) + "\n")

#!/usr/bin/env python3
"""Generates examples/data/orders.jsonl (seeded, reproducible) and the expected output of the
quickstart job, computed here in plain Python as an oracle independent of Fluxion.

    python3 examples/data/generate.py            # 600 orders (the bundled sample)
    python3 examples/data/generate.py --events 1000000 --shape quickstart --out bench-data/q.jsonl
"""
import argparse, json, math, random, os

STATUSES = ["PAID", "PAID", "PAID", "PENDING", "CANCELLED", "REFUNDED"]
CITIES = [("Lisbon", "PT"), ("Porto", "PT"), ("Berlin", "DE"), ("Hamburg", "DE"), ("Lyon", "FR"),
          ("Paris", "FR"), ("Austin", "US"), ("Boston", "US")]
SKUS = ["A-100", "A-200", "B-310", "C-042", "D-777", "E-501"]

def order(rng, i, customers):
    items = [{"sku": rng.choice(SKUS), "qty": rng.randint(1, 4),
              "price": round(rng.uniform(2, 120), 2)} for _ in range(rng.randint(1, 3))]
    city, country = rng.choice(CITIES)
    return {
        "orderId": f"o-{i:07d}",
        "customerId": f"c-{rng.randint(1, customers):05d}",
        "status": rng.choice(STATUSES),
        "orderValue": round(sum(it["qty"] * it["price"] for it in items), 2),
        "currency": "EUR" if country != "US" else "USD",
        "createdAt": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
        "shipping": {"city": city, "country": country, "express": rng.random() < 0.2},
        "items": items,
    }

def with_coupon(rng, o):
    # About 15% of orders carry a coupon: an optional field, missing elsewhere.
    if rng.random() < 0.15:
        o["coupon"] = rng.choice(["SPRING10", "VIP", "WELCOME"])
    return o

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=600)
    ap.add_argument("--customers", type=int, default=None)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "orders.jsonl"))
    ap.add_argument("--expected", default=None, help="write the quickstart's expected output here")
    ap.add_argument("--shape", choices=["orders", "quickstart"], default="orders",
                    help="orders: full nested orders; quickstart: only the fields the quickstart reads (~85 bytes)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    customers = a.customers or max(10, a.events // 12)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    ltv = {}
    with open(a.out, "w") as f:
        for i in range(a.events):
            o = with_coupon(rng, order(rng, i, customers))
            if a.shape == "quickstart":
                o = {k: o[k] for k in ("orderId", "customerId", "status", "orderValue")}
            f.write(json.dumps(o, separators=(",", ":")) + "\n")
            if o["status"] == "PAID":
                c = ltv.setdefault(o["customerId"], [0, []])
                c[0] += 1
                c[1].append(o["orderValue"])
    if a.expected:
        with open(a.expected, "w") as f:
            for cid in sorted(ltv):
                n, v = ltv[cid]
                # MongoDB sums doubles compensated: the correctly rounded sum, as math.fsum.
                f.write(json.dumps({"_id": cid, "orderCount": n, "lifetimeValue": math.fsum(v)}) + "\n")

if __name__ == "__main__":
    main()

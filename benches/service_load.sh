#!/usr/bin/env bash
# Loopback load on `fluxion serve` (release binary) with wrk: memory with 100 idle running
# pipelines, reads (the pipeline list, one pipeline's status) and commands (submit + delete
# of a small job) on the embedded event store. Prints one JSON line per measurement.
#
#   benches/service_load.sh            # 10 s per load; DURATION=30 for longer
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${FLUXION_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/fluxion-target}/release/fluxion}"
DURATION="${DURATION:-10}"
export BENCH_DIR="$PWD/benches/service"
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null; }
[ -x "$BIN" ] || { echo "build the release binary first: cargo build --release" >&2; exit 1; }

work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
export KEY="bench-admin-key-0123456789"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
printf 'rateLimit = { perSecond = 10000000, burst = 10000000 }\n' > "$work/fluxion.toml"
FLUXION_BOOTSTRAP_ADMIN_KEY="$KEY" RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:$port" \
    --data-dir "$work/data" --config "$work/fluxion.toml" >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
echo "{\"measure\": \"rss_empty_kb\", \"value\": $(rss)}"

# 100 idle pipelines: each follows a file of its own that holds one document and no more.
for i in $(seq 100); do
    echo '{"n": 1}' > "$work/in-$i.jsonl"
    curl -sf -H "Authorization: Bearer $KEY" -d "{\"name\": \"idle-$i\", \"source\": {\"type\": \"file\", \"path\": \"$work/in-$i.jsonl\", \"follow\": true}, \"pipeline\": [{\"\$match\": {\"n\": {\"\$gt\": 0}}}], \"sink\": {\"type\": \"null\"}}" "$base/v1/pipelines" >/dev/null
    curl -sf -X POST -H "Authorization: Bearer $KEY" "$base/v1/pipelines/idle-$i/start" >/dev/null
done
sleep 3
running=$(curl -sf -H "Authorization: Bearer $KEY" "$base/v1/pipelines" | python3 -c 'import json,sys; print(sum(p["status"]=="running" for p in json.load(sys.stdin)["pipelines"]))')
echo "{\"measure\": \"rss_100_idle_pipelines_kb\", \"value\": $(rss), \"running\": $running}"

echo -n '{"measure": "read_list_100", "result": '
wrk -t2 -c32 -d"${DURATION}s" -s benches/service/read.lua "$base/v1/pipelines" | tail -1
echo '}'
echo -n '{"measure": "read_status", "result": '
wrk -t2 -c32 -d"${DURATION}s" -s benches/service/read.lua "$base/v1/pipelines/idle-7" | tail -1
echo '}'
echo '{"n": 1}' > "$work/small.jsonl"
echo -n '{"measure": "commands_submit_delete", "result": '
SOURCE="$work/small.jsonl" wrk -t4 -c4 -d"${DURATION}s" -s benches/service/commands.lua "$base" | tail -1
echo '}'
echo "{\"measure\": \"rss_end_kb\", \"value\": $(rss), \"peak_kb\": $(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")}"

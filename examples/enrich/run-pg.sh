#!/usr/bin/env bash
# The PostgreSQL enrich example: the customers table in a PostgreSQL server, then the job
# that looks each paid order's customer up in it and sums revenue per region and tier.
#
# With PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE set it uses that server; otherwise it
# starts a throwaway one from Debian's PostgreSQL binaries (/usr/lib/postgresql/*/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
FLUXION="${FLUXION:-cargo run --release --quiet --}"
if [ -z "${PGPORT:-}" ]; then
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    data=$(mktemp -d)
    as=()
    if [ "$(id -u)" = 0 ]; then chown postgres "$data"; as=(runuser -u postgres --); fi
    export PGHOST=127.0.0.1 PGPORT=55432 PGUSER=fluxion PGPASSWORD=example PGDATABASE=postgres
    echo "$PGPASSWORD" > "$data/pw" && chmod 644 "$data/pw"
    "${as[@]}" "$bin/initdb" -D "$data/db" -U "$PGUSER" --pwfile "$data/pw" \
        --auth-host=scram-sha-256 --auth-local=trust >/dev/null
    "${as[@]}" "$bin/pg_ctl" -D "$data/db" -l "$data/log" -w \
        -o "-p $PGPORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$data/db" start >/dev/null
    trap '"${as[@]}" "$bin/pg_ctl" -D "$data/db" -m fast stop >/dev/null; rm -rf "$data"' EXIT
fi
psql -q -v ON_ERROR_STOP=1 -f enrich/customers.sql
mkdir -p out
$FLUXION run enrich-region-tier-pg.json
cat out/revenue-by-region-tier.jsonl

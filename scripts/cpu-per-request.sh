#!/usr/bin/env bash
# The server's own CPU time per request for one page, signed in as a trader with 100 paper
# orders: a steadier figure than req/s for comparing two builds on this 2-core machine, where
# the load generator shares the cores and req/s moves by ±10 % between identical runs.
#
#   scripts/cpu-per-request.sh [--bin BINARY] [--signed-out] PATH      e.g. /trade
#
# --signed-out sends no session cookie (the page a visitor gets, e.g. /login as bench.sh loads it).
#
# Prints microseconds of server CPU (user + system, from /proc/PID/stat) per request, over
# 10 s of `wrk -c8` (keep-alive) after 2 s to warm up. SQLite in a temporary directory; limits
# raised as bench.sh raises them so that the orders are all accepted.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release/cryptopulse
signed_in=1
while [ $# -gt 1 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --signed-out) signed_in=0; shift ;;
    *) break ;;
  esac
done
path=${1:?usage: scripts/cpu-per-request.sh [--bin BINARY] [--signed-out] PATH}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
[ -x "$bin" ] || { echo "no server binary at $bin: cargo build --release -p cryptopulse-server" >&2; exit 1; }

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
origin="http://localhost:$port" base="http://127.0.0.1:$port"
export CRYPTOPULSE_DATABASE_URL="sqlite://$work/app.db?mode=rwc" CRYPTOPULSE_DATA_DIR="$work" \
  CRYPTOPULSE_BIND="127.0.0.1:$port" CRYPTOPULSE_PUBLIC_URL="$origin" CRYPTOPULSE_LOG_LEVEL=warn \
  CRYPTOPULSE_RATE_LIMIT__REQUESTS_PER_MINUTE=100000000 CRYPTOPULSE_RATE_LIMIT__AUTH_PER_MINUTE=1000000 \
  CRYPTOPULSE_TRADING__JOB_INTERVAL_SECONDS=60 CRYPTOPULSE_AUDIT__CHECKPOINT_INTERVAL_MINUTES=0 \
  LEPTOS_OUTPUT_NAME=cryptopulse LEPTOS_SITE_ROOT=target/site LEPTOS_SITE_PKG_DIR=pkg
"$bin" serve >"$work/server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do curl -s -o /dev/null "$base/login" && break; sleep 0.2; done
kill -0 "$pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }

password="bench horse battery staple"
curl -sS --fail -c "$work/jar" -b "$work/jar" -H "Origin: $origin" --data-urlencode email=trader@bench.example \
  --data-urlencode "password=$password" --data-urlencode "password_confirm=$password" \
  "$base/api/auth/signup" >/dev/null
sqlite3 "$work/app.db" "PRAGMA busy_timeout=5000;
  UPDATE risk_limits SET value='1000000000' WHERE scope='global' AND field IN ('max_order_notional','daily_notional');
  UPDATE risk_limits SET value='10000' WHERE scope='global' AND field='velocity_max_orders';
  UPDATE risk_limits SET value='1' WHERE scope='global' AND field IN ('velocity_window_secs','anomaly_threshold');" >/dev/null
quote=$(curl -sS --fail -b "$work/jar" -H "Origin: $origin" -d venue=paper "$base/api/trading/quotes" | python3 -c '
import json, sys
print(next(q["price"] for q in json.load(sys.stdin) if q["symbol"] == "BTCUSDT"))')
for _ in $(seq 1 100); do
  curl -sS --fail -o /dev/null -b "$work/jar" -H "Origin: $origin" \
    -d "venue=paper&symbol=BTCUSDT&side=buy&order_type=market&quantity=0.0001&price=$quote" \
    "$base/api/trading/place"
done
cookie=$(awk -F'\t' 'NF>=7 {printf "%s=%s; ", $6, $7}' "$work/jar" | sed 's/; $//')

load() { # seconds; prints the requests completed
  local headers=()
  [ "$signed_in" = 1 ] && headers=(-H "Cookie: $cookie")
  wrk -t1 -c8 -d"$1"s "${headers[@]}" "$base$path" >"$work/wrk.out"
  grep -q 'Non-2xx' "$work/wrk.out" && { echo "refused requests: $(cat "$work/wrk.out")" >&2; exit 1; }
  awk '/requests in/ {print $1}' "$work/wrk.out"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
load 2 >/dev/null
before=$(cpu_ticks)
requests=$(load 10)
after=$(cpu_ticks)
awk -v a="$before" -v b="$after" -v n="$requests" -v hz="$(getconf CLK_TCK)" -v p="$path" \
  -v who="$([ "$signed_in" = 1 ] && echo "signed in" || echo "signed out")" \
  'BEGIN { printf "%s (%s): %.0f us of server CPU per request (%d requests)\n", p, who, (b - a) / hz * 1e6 / n, n }'

#!/usr/bin/env bash
# One benchmark run on this machine: each figure of the product next to its ceiling, measured in
# the same run with the same release profile, so that the ratio is the result. See
# docs/benchmarks.md for the method and how to profile.
#
#   scripts/bench.sh            full run (1M-event chain, 15 s per HTTP run) -> docs/bench-results.md
#   scripts/bench.sh --short    CI size (50k events, 3 s per HTTP run)       -> target/bench/results-short.md
#   scripts/bench.sh --out F    write the results to F instead
#   scripts/bench.sh --no-build use the binaries already in target/release
#
# Figures are reported, not asserted; the script fails if a step fails (a server that does not
# start, a request that is refused, a chain that does not verify).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

short=0
out=""
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --short) short=1 ;;
    --out) out="$2"; shift ;;
    --no-build) build=0 ;;
    *) echo "usage: scripts/bench.sh [--short] [--out FILE] [--no-build]" >&2; exit 2 ;;
  esac
  shift
done

if [ "$short" = 1 ]; then
  duration=3s; kms_secs=3; chain_n=50000; appends=2000; raw_commits=500; users=16; paper_fills=2000
  out=${out:-target/bench/results-short.md}
else
  duration=15s; kms_secs=10; chain_n=1000000; appends=20000; raw_commits=3000; users=64; paper_fills=10000
  out=${out:-docs/bench-results.md}
fi
conns=64
pg_admin="postgres://postgres@127.0.0.1:5432/postgres"

step() { echo "==> $*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

# --- tools --------------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
  step "installing wrk (Debian)"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd=sudo
  $sudo_cmd apt-get install -y wrk >/dev/null || { $sudo_cmd apt-get update >/dev/null && $sudo_cmd apt-get install -y wrk >/dev/null; }
fi
for tool in wrk curl python3 node; do command -v "$tool" >/dev/null || die "$tool is required"; done

if [ "$build" = 1 ]; then
  step "cargo build --release (server and bench harness)"
  cargo build --release -p cryptopulse-server -p cryptopulse-bench
fi
work=$(mktemp -d "$root/target/bench-run.XXXXXX")
# A private copy: another build relinking target/release mid-run cannot change what is measured.
bin=$work/bin
mkdir -p "$bin"
cp target/release/cryptopulse target/release/bench-bare target/release/bench-db "$bin/" \
  || die "release binaries missing: run without --no-build"
server_bin=$bin/cryptopulse
pids=()
pg_dbs=()
cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    rm -rf "$root/target/bench/failed" && mkdir -p "$root/target/bench/failed"
    cp "$work"/*.log "$work"/*.wrk "$work"/*.out "$root/target/bench/failed/" 2>/dev/null || true
    echo "bench: failed; logs kept in target/bench/failed/" >&2
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for db in "${pg_dbs[@]}"; do psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # url pid
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "$1" && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# Starts a bench-bare server; sets `bare_url` and remembers the pid.
start_bare() { # name args...
  local name=$1; shift
  local port; port=$(free_port)
  "$bin/bench-bare" --bind "127.0.0.1:$port" "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  bare_pid=$!
  bare_url="http://127.0.0.1:$port"
  wait_http "$bare_url/" "$bare_pid" || die "bench-bare $name did not start: $(cat "$work/$name.log")"
}

stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# key=value from a BENCH line
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

# Runs wrk at c=64; sets `w_rate w_p50 w_p99` (ms) and fails on refused requests.
run_wrk() { # name url [method body cookies origin]
  local name=$1 url=$2 perf_pid=""
  # BENCH_PROFILE=orders (or any run's name): a CPU profile of the server during that run.
  if [ "${BENCH_PROFILE:-}" = "$name" ] && [ -n "${server_pid:-}" ]; then
    mkdir -p "$root/target/bench"
    perf record -q -e cpu-clock -g -p "$server_pid" -o "$root/target/bench/$name.perf.data" \
      -- sleep "${duration%s}" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  BENCH_METHOD=${3:-GET} BENCH_BODY=${4:-} BENCH_COOKIES=${5:-} BENCH_ORIGIN=${6:-} \
    wrk -t2 -c"$conns" -d"$duration" --timeout 10s -s bench/wrk/bench.lua "$url" >"$work/$name.wrk" 2>&1 \
    || die "wrk $name failed: $(cat "$work/$name.wrk")"
  if [ -n "$perf_pid" ]; then
    wait "$perf_pid" || true
    echo "    profile: perf report -i target/bench/$name.perf.data --no-children --sort symbol --stdio -g none" >&2
  fi
  local line; line=$(grep '^BENCH ' "$work/$name.wrk") || die "wrk $name printed no figures"
  w_rate=$(field "$line" rate)
  w_p50=$(awk -v u="$(field "$line" p50_us)" 'BEGIN{printf "%.2f", u/1000}')
  w_p99=$(awk -v u="$(field "$line" p99_us)" 'BEGIN{printf "%.2f", u/1000}')
  local bad; bad=$(( $(field "$line" non2xx) + $(field "$line" socket_errors) ))
  echo "    $name: $w_rate req/s, p50 $w_p50 ms, p99 $w_p99 ms, non-2xx/errors $bad" >&2
  # The figures of a run with failures are still reported; the script fails at the end.
  if [ "$bad" -ne 0 ] || [ "$(field "$line" requests)" -eq 0 ]; then
    failures+=("$name: $(field "$line" requests) requests completed, $bad non-2xx or socket errors")
    cp "$work/$name.wrk" "$work/$name.failed.out"
  fi
}
failures=()

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.1f %%", 100*a/b; else print "n/a" }'; }
fmt() { awk -v a="$1" 'BEGIN{ printf "%.0f", a }'; }

rows=()
row() { rows+=("| $1 | $2 | $3 | $4 | $5 |"); printf '  %-44s %-26s %-30s %-9s %s\n' "$1" "$2" "$3" "$4" "$5" >&2; }

kib_of() { awk -v k="$2" '$1==k":" {print $2}' "/proc/$1/status"; }

# --- 1. ceilings: bare axum hello and group-commit insert ----------------------------------
step "ceiling: bare axum hello (c=$conns, $duration)"
start_bare hello hello
run_wrk hello "$bare_url/"
hello_rate=$w_rate; hello_p99=$w_p99
stop_pid "$bare_pid"

step "ceiling: bare axum one INSERT per request, SQLite WAL synchronous=FULL, group commit"
start_bare insert insert --db "$work/groupcommit.db"
run_wrk groupcommit "$bare_url/insert" POST "payload=an+order+of+about+this+size"
gc_rate=$w_rate; gc_p50=$w_p50; gc_p99=$w_p99
stop_pid "$bare_pid"

# --- 2. durable appends and raw commit rates ---------------------------------------------
step "SQLite: raw commit rate and the product's audit appends"
line=$("$bin/bench-db" --url "sqlite://$work/raw.db?mode=rwc" --data-dir "$work/data-raw" raw-commit --n "$raw_commits")
sqlite_raw=$(field "$line" rate)
line=$("$bin/bench-db" --url "sqlite://$work/append.db?mode=rwc" --data-dir "$work/data-append" audit-append --n "$appends" --concurrency 64)
sqlite_append=$(field "$line" rate); sqlite_append_p99=$(field "$line" p99_us)

pg_ok=0
if psql -q "$pg_admin" -c "SELECT 1" >/dev/null 2>&1; then
  pg_ok=1
  step "PostgreSQL: raw commit rate and the product's audit appends"
  for db in bench_raw_$$ bench_append_$$; do
    psql -q "$pg_admin" -c "CREATE DATABASE $db" >/dev/null; pg_dbs+=("$db")
  done
  line=$("$bin/bench-db" --url "postgres://postgres@127.0.0.1:5432/bench_raw_$$" --data-dir "$work/data-raw" raw-commit --n "$raw_commits")
  pg_raw=$(field "$line" rate)
  line=$("$bin/bench-db" --url "postgres://postgres@127.0.0.1:5432/bench_append_$$" --data-dir "$work/data-append" audit-append --n "$appends" --concurrency 64)
  pg_append=$(field "$line" rate); pg_append_p99=$(field "$line" p99_us)
else
  echo "    PostgreSQL at 127.0.0.1:5432 not reachable: its figures are skipped" >&2
fi

step "KMS: remote calls per decrypt through the product's data-key cache (64 keys, 64 tasks)"
line=$("$bin/bench-db" --url "sqlite://$work/raw.db?mode=rwc" kms --keys 64 --secs "$kms_secs")
kms_decrypts=$(field "$line" decrypts); kms_remote=$(field "$line" remote); kms_pct=$(field "$line" ratio_pct); kms_ttl=$(field "$line" ttl_secs)

step "paper account: a trader with $paper_fills paper fills, from the stored book vs a replay of every fill"
lines=$("$bin/bench-db" --url "sqlite://$work/paper.db?mode=rwc" --data-dir "$work/data-paper" paper-account --fills "$paper_fills")
line=$(grep 'kind=paper_account_replay ' <<<"$lines")
paper_replay_p50=$(field "$line" p50_us)
line=$(grep 'kind=paper_account ' <<<"$lines")
paper_p50=$(field "$line" p50_us); paper_first=$(field "$line" first_read_us)

# --- 3. chain verification --------------------------------------------------------------
db_url="sqlite://$work/app.db?mode=rwc"
data_dir="$work/data"
step "loading a chain of $chain_n events"
"$bin/bench-db" --url "$db_url" --data-dir "$data_dir" chain-load --n "$chain_n" >/dev/null
step "chain verification: in-app (AuditService) vs raw scan + SHA-256"
line=$("$bin/bench-db" --url "$db_url" --data-dir "$data_dir" verify)
verify_rate=$(field "$line" rate); verify_growth=$(field "$line" growth_kib)
line=$("$bin/bench-db" --url "$db_url" --data-dir "$data_dir" raw-scan)
scan_rate=$(field "$line" rate); scan_growth=$(field "$line" growth_kib)
[ "$(field "$line" n)" -ge "$chain_n" ] || die "raw scan saw fewer rows than loaded"

# The CLI as an operator runs it (same service, plus process start-up and migrations check).
export CRYPTOPULSE_DATABASE_URL="$db_url" CRYPTOPULSE_DATA_DIR="$data_dir" CRYPTOPULSE_LOG_LEVEL=warn
cli_start=$(date +%s.%N)
/usr/bin/time -f "%M" -o "$work/cli.maxrss" "$server_bin" audit verify >"$work/cli-verify.out" 2>&1 \
  || die "cryptopulse audit verify failed: $(cat "$work/cli-verify.out")"
cli_secs=$(awk -v a="$cli_start" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')
cli_rate=$(awk -v n="$chain_n" -v s="$cli_secs" 'BEGIN{printf "%.1f", n/s}')
cli_maxrss=$(cat "$work/cli.maxrss")

# --- 4. the real server -----------------------------------------------------------------
port=$(free_port)
# Requests go to 127.0.0.1; the public URL (and so the Origin a browser sends) names localhost,
# since WebAuthn refuses a bare IP address as the relying party.
base="http://127.0.0.1:$port"
origin="http://localhost:$port"
export CRYPTOPULSE_BIND="127.0.0.1:$port" CRYPTOPULSE_PUBLIC_URL="$origin" \
  CRYPTOPULSE_LOG_LEVEL=info \
  CRYPTOPULSE_RATE_LIMIT__REQUESTS_PER_MINUTE=100000000 CRYPTOPULSE_RATE_LIMIT__AUTH_PER_MINUTE=1000000 \
  CRYPTOPULSE_LOGIN__IP_FREE_FAILURES=1000000 CRYPTOPULSE_LOGIN__ACCOUNT_FREE_FAILURES=1000000 \
  CRYPTOPULSE_TRADING__JOB_INTERVAL_SECONDS=60 CRYPTOPULSE_AUDIT__CHECKPOINT_INTERVAL_MINUTES=0 \
  CRYPTOPULSE_STEP_UP__ORDER_THRESHOLD=1000000000 \
  LEPTOS_OUTPUT_NAME=cryptopulse LEPTOS_SITE_ROOT=target/site LEPTOS_SITE_PKG_DIR=pkg
step "starting the server on $origin (SQLite, $chain_n events in the chain)"
"$server_bin" serve >"$work/server.log" 2>&1 &
server_pid=$!; pids+=("$server_pid")
wait_http "$base/login" "$server_pid" || die "server did not start: $(tail -20 "$work/server.log")"
sleep 1
idle_rss=$(kib_of "$server_pid" VmRSS)

# Risk limits raised for the run (they live in the database; the server reads them per order).
sqlite3 "$work/app.db" "PRAGMA busy_timeout=5000;
  UPDATE risk_limits SET value='1000000000' WHERE scope='global' AND field IN ('max_order_notional','daily_notional');
  UPDATE risk_limits SET value='10000' WHERE scope='global' AND field='velocity_max_orders';
  UPDATE risk_limits SET value='1' WHERE scope='global' AND field IN ('velocity_window_secs','anomaly_threshold');" >/dev/null \
  || die "could not raise the risk limits"

password="bench horse battery staple"
post() { # jar endpoint form...
  local jar=$1 endpoint=$2; shift 2
  local args=(); for f in "$@"; do args+=(--data-urlencode "$f"); done
  curl -sS --fail-with-body -b "$jar" -c "$jar" -H "Origin: $origin" -X POST "${args[@]}" "$base/api/$endpoint" \
    || die "POST $endpoint failed"
}
step "signing up $users traders and a reviewer"
for i in $(seq 1 "$users"); do
  post "$work/u$i.jar" auth/signup "email=trader$i@bench.example" "password=$password" "password_confirm=$password" >/dev/null
done
post "$work/reviewer.jar" auth/signup "email=reviewer@bench.example" "password=$password" "password_confirm=$password" >/dev/null
"$server_bin" set-role --email reviewer@bench.example --role reviewer >/dev/null \
  || die "set-role reviewer failed"

step "memory: $users concurrent logins (argon2) from idle"
rss_before_logins=$(kib_of "$server_pid" VmRSS)
seq 1 "$users" | xargs -P "$users" -I{} curl -sS -o /dev/null -w '%{http_code}\n' -c "$work/u{}.jar" \
  -H "Origin: $origin" --data-urlencode "email=trader{}@bench.example" --data-urlencode "password=$password" \
  "$base/api/auth/login" >"$work/logins.codes"
[ "$(grep -c '^200$' "$work/logins.codes")" -eq "$users" ] || die "not every login succeeded: $(sort "$work/logins.codes" | uniq -c)"
sleep 2
login_hwm=$(kib_of "$server_pid" VmHWM); login_rss_after=$(kib_of "$server_pid" VmRSS)
curl -sS -o /dev/null -c "$work/reviewer.jar" -H "Origin: $origin" --data-urlencode "email=reviewer@bench.example" \
  --data-urlencode "password=$password" "$base/api/auth/login"
: >"$work/cookies"
for i in $(seq 1 "$users"); do
  awk -F'\t' 'NF>=7 {printf "%s=%s; ", $6, $7} END {print ""}' "$work/u$i.jar" | sed 's/; $//' >>"$work/cookies"
done

# --- 4a. order screening ----------------------------------------------------------------
quote=$(post "$work/u1.jar" trading/quotes "venue=paper" | python3 -c '
import json, sys
for q in json.load(sys.stdin):
    if q.get("symbol") == "BTCUSDT": print(q["price"]); break')
[ -n "$quote" ] || die "no BTCUSDT quote from the paper exchange"
order_body="venue=paper&symbol=BTCUSDT&side=buy&order_type=market&quantity=0.0001&price=$quote"
# The user agent wrk sends (bench/wrk/bench.lua): another one would be a new device.
probe=$(curl -sS -A cryptopulse-bench -b "$work/u1.jar" -H "Origin: $origin" -d "$order_body" \
  -w ' %{http_code}' "$base/api/trading/place")
[ "${probe##* }" = 200 ] || die "a probe order was refused: $probe"
grep -q '"filled"\|"open"\|"sent"' <<<"$probe" || echo "    note: probe order answered: ${probe:0:200}" >&2
step "order screening: POST /api/trading/place from $users traders (c=$conns, $duration)"
events_before=$(sqlite3 "$work/app.db" "SELECT max(seq) FROM audit_events")
run_wrk orders "$base/api/trading/place" POST "$order_body" "$work/cookies" "$origin"
order_rate=$w_rate; order_p50=$w_p50; order_p99=$w_p99
events_after=$(sqlite3 "$work/app.db" "SELECT max(seq) FROM audit_events")
held=$(sqlite3 "$work/app.db" "SELECT count(*) FROM orders WHERE status IN ('denied','held')")

# --- 4b. SSR pages ----------------------------------------------------------------------
step "SSR pages: /login and the signed-in /trade"
login_bytes=$(curl -sS -o /dev/null -w '%{size_download}' "$base/login")
trade_bytes=$(curl -sS -o /dev/null -w '%{size_download}' -b "$work/u1.jar" "$base/trade")
run_wrk login "$base/login"
login_rate=$w_rate; login_p99=$w_p99
# A query string is never served from the kept visitor page: this is /login rendered per request.
run_wrk login_rendered "$base/login?bench=render"
login_rendered_rate=$w_rate; login_rendered_p99=$w_p99
run_wrk trade "$base/trade" GET "" "$work/cookies"
trade_rate=$w_rate; trade_p99=$w_p99
start_bare static-login static --bytes "$login_bytes"
run_wrk static_login "$bare_url/"
static_login_rate=$w_rate
stop_pid "$bare_pid"
start_bare static-trade static --bytes "$trade_bytes"
run_wrk static_trade "$bare_url/"
static_trade_rate=$w_rate
stop_pid "$bare_pid"

# --- 4c. CSV and PDF reports -------------------------------------------------------------
step "CSV report of the whole chain (reviewer session)"
# The peak (VmHWM) is reset first, so the growth is the report's own and not an earlier
# phase's peak (the page runs leave one above the RSS the allocator has since given back).
echo 5 >"/proc/$server_pid/clear_refs" 2>/dev/null || echo "    note: cannot reset VmHWM; the CSV growth may include earlier peaks" >&2
rss_before_csv=$(kib_of "$server_pid" VmRSS)
csv_stats=$(curl -sS -b "$work/reviewer.jar" -o "$work/report.csv" \
  -w '%{http_code} %{time_starttransfer} %{time_total} %{size_download}' "$base/reports/audit.csv")
read -r csv_code csv_ttfb csv_total csv_size <<<"$csv_stats"
if [ "$csv_code" != 200 ]; then
  failures+=("CSV report answered $csv_code")
  echo '"report" answered an error' >"$work/report.csv"
fi
csv_hwm=$(kib_of "$server_pid" VmHWM)
csv_rows=$(( $(grep -c '' "$work/report.csv") ))
csv_rate=$(awk -v n="$csv_rows" -v s="$csv_total" 'BEGIN{printf "%.1f", n/s}')
csv_ttfb_ms=$(awk -v s="$csv_ttfb" 'BEGIN{printf "%.1f", s*1000}')
csv_growth=$(( csv_hwm > rss_before_csv ? csv_hwm - rss_before_csv : 0 ))
# Offline verification as a regulator runs it, pinned to the key the server publishes: the CLI
# reads the file as it checks it.
report_key=$(curl -sS "$base/.well-known/cryptopulse-report-key")
report_verify_start=$(date +%s.%N)
if [ "$csv_code" = 200 ] && ! /usr/bin/time -f "%M" -o "$work/report-verify.maxrss" \
  "$server_bin" report verify "$work/report.csv" --public-key "$report_key" >"$work/report-verify.out" 2>&1; then
  failures+=("the downloaded CSV report does not verify: $(tail -1 "$work/report-verify.out")")
fi
report_verify_secs=$(awk -v a="$report_verify_start" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')
report_verify_rate=$(awk -v n="$csv_rows" -v s="$report_verify_secs" 'BEGIN{printf "%.1f", n/s}')
report_verify_maxrss=$(cat "$work/report-verify.maxrss" 2>/dev/null || echo 0)
rm -f "$work/report.csv"

step "PDF report of the filled trades (the product caps a PDF at 100,000 rows)"
# Filled trades that succeeded: one event in 12 of the loaded chain, under the PDF's row cap.
job=$(post "$work/reviewer.jar" reports/pdf/start "filter[action]=trade.order_filled" "filter[outcome]=success" | python3 -c 'import json,sys; print(json.load(sys.stdin))')
pdf_start=$(date +%s.%N)
pdf_total=0
for _ in $(seq 1 1200); do
  status=$(post "$work/reviewer.jar" reports/pdf/status "job_id=$job")
  if python3 -c 'import json,sys; v=json.loads(sys.argv[1]); sys.exit(0 if v["finished"] else 1)' "$status"; then
    pdf_total=$(python3 -c 'import json,sys; v=json.loads(sys.argv[1]); assert v["error"] is None, v["error"]; print(v["total"])' "$status") \
      || die "PDF job failed: $status"
    break
  fi
  sleep 0.2
done
[ "$pdf_total" -gt 0 ] || failures+=("PDF job did not finish: ${status:0:200}")
pdf_secs=$(awk -v a="$pdf_start" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')
pdf_rate=$(awk -v n="$pdf_total" -v s="$pdf_secs" 'BEGIN{printf "%.1f", n/s}')

server_hwm=$(kib_of "$server_pid" VmHWM)
stop_pid "$server_pid"

# --- 5. WASM bundle -----------------------------------------------------------------------
wasm=$(ls -S target/site/pkg/*.wasm 2>/dev/null | head -1 || true)
# target/site holds whichever site was built last: the release one from build-site.sh (which
# precompresses it) or the debug one `cargo leptos end-to-end` builds, which is not what ships.
wasm_build="release"
if [ -n "$wasm" ] && [ ! -e "$wasm.br" ]; then
  wasm_build="debug build, not the shipped bundle: run scripts/build-site.sh first"
fi
if [ -n "$wasm" ]; then
  read -r wasm_raw wasm_gz wasm_br < <(node -e '
    const fs = require("fs"), z = require("zlib"); const b = fs.readFileSync(process.argv[1]);
    const br = z.brotliCompressSync(b, {params: {[z.constants.BROTLI_PARAM_QUALITY]: 11}});
    console.log(b.length, z.gzipSync(b, {level: 9}).length, br.length);' "$wasm")
fi

# --- report ---------------------------------------------------------------------------------
kb() { awk -v k="$1" 'BEGIN{printf "%.1f MiB", k/1024}'; }
step "results"
printf '  %-44s %-26s %-30s %-9s %s\n' figure value ceiling ratio target >&2
row "order screening, req/s (c=$conns)" "$(fmt "$order_rate")" "group commit $(fmt "$gc_rate") / hello $(fmt "$hello_rate")" "$(ratio "$order_rate" "$gc_rate")" "≥ 50 % of group commit"
row "order screening, p50 / p99 ms" "$order_p50 / $order_p99" "group commit $gc_p50 / $gc_p99" "$(ratio "$order_p99" "$gc_p99")" "p99 ≤ 200 % of group commit"
row "SSR /login visitor page (kept), req/s ($login_bytes B)" "$(fmt "$login_rate") (p99 $login_p99 ms)" "static page $(fmt "$static_login_rate")" "$(ratio "$login_rate" "$static_login_rate")" "≥ 25 %"
row "SSR /login rendered per request, req/s" "$(fmt "$login_rendered_rate") (p99 $login_rendered_p99 ms)" "static page $(fmt "$static_login_rate")" "$(ratio "$login_rendered_rate" "$static_login_rate")" "reported"
row "SSR /trade signed in, req/s ($trade_bytes B)" "$(fmt "$trade_rate") (p99 $trade_p99 ms)" "static page $(fmt "$static_trade_rate")" "$(ratio "$trade_rate" "$static_trade_rate")" "≥ 25 %"
row "chain verification in-app, events/s" "$(fmt "$verify_rate") (+$(kb "$verify_growth"))" "raw scan + SHA-256 $(fmt "$scan_rate") (+$(kb "$scan_growth"))" "$(ratio "$verify_rate" "$scan_rate")" "≥ 50 %, constant memory"
row "chain verification CLI, events/s" "$(fmt "$cli_rate") (max RSS $(kb "$cli_maxrss"))" "raw scan + SHA-256 $(fmt "$scan_rate")" "$(ratio "$cli_rate" "$scan_rate")" "≥ 50 %"
row "audit appends/s SQLite (64 tasks)" "$(fmt "$sqlite_append") (p99 $(fmt "$(awk -v u="$sqlite_append_p99" 'BEGIN{print u/1000}')") ms)" "raw INSERT+COMMIT $(fmt "$sqlite_raw")" "$(ratio "$sqlite_append" "$sqlite_raw")" "reported"
if [ "$pg_ok" = 1 ]; then
  row "audit appends/s PostgreSQL (64 tasks)" "$(fmt "$pg_append") (p99 $(fmt "$(awk -v u="$pg_append_p99" 'BEGIN{print u/1000}')") ms)" "raw INSERT+COMMIT $(fmt "$pg_raw")" "$(ratio "$pg_append" "$pg_raw")" "reported"
fi
row "CSV report of $chain_n events, rows/s" "$(fmt "$csv_rate")" "raw scan + SHA-256 $(fmt "$scan_rate")" "$(ratio "$csv_rate" "$scan_rate")" "≥ 30 %"
row "CSV report: first byte / memory growth" "${csv_ttfb_ms} ms / +$(kb "$csv_growth")" "–" "–" "< 50 ms / < 16 MiB"
row "CSV report verification CLI, rows/s" "$(fmt "$report_verify_rate") (max RSS $(kb "$report_verify_maxrss"))" "raw scan + SHA-256 $(fmt "$scan_rate")" "$(ratio "$report_verify_rate" "$scan_rate")" "reported, constant memory"
row "PDF report of $pdf_total rows, rows/s" "$(fmt "$pdf_rate")" "CSV $(fmt "$csv_rate")" "$(ratio "$pdf_rate" "$csv_rate")" "reported"
row "memory: $users concurrent logins" "peak $(kb "$login_hwm"), after $(kb "$login_rss_after")" "idle $(kb "$idle_rss")" "–" "peak < 200 MiB"
if [ -n "${wasm:-}" ]; then
  row "WASM ($wasm_build) raw / gzip / brotli" "$((wasm_raw/1024)) / $((wasm_gz/1024)) / $((wasm_br/1024)) kB" "–" "–" "≤ 300 kB brotli"
else
  row "WASM bundle" "not built (run scripts/build-site.sh)" "–" "–" "≤ 300 kB brotli"
fi
row "paper account read, $paper_fills fills, p50 µs" "$paper_p50 (first read $paper_first)" "replay of every fill $paper_replay_p50" "$(ratio "$paper_p50" "$paper_replay_p50")" "reported"
row "KMS: remote calls per decrypt (cache TTL ${kms_ttl} s)" "$kms_remote of $kms_decrypts ($kms_pct %)" "–" "–" "≤ 1 %"

mkdir -p "$(dirname "$out")"
{
  echo "# Benchmark results"
  echo
  echo "Written by \`scripts/bench.sh$([ "$short" = 1 ] && echo " --short")\` on $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), \`git $(git rev-parse --short HEAD 2>/dev/null || echo '?')\`."
  echo "HTTP: wrk -t2 -c$conns -d$duration on loopback; load generator and server share the machine."
  echo "Chain: $chain_n events on SQLite (WAL, synchronous=FULL). The ratio column is value / ceiling."
  echo
  echo "| figure | value | ceiling (same run) | ratio | target |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Order run: $((events_after - events_before)) audit events written during the run; orders denied or held: $held."
  if [ "${#failures[@]}" -gt 0 ]; then
    echo
    echo "**Failures in this run** (their figures above are not valid):"
    printf -- '- %s\n' "${failures[@]}"
  fi
} >"$out"
step "results written to $out"
if [ "${#failures[@]}" -gt 0 ]; then
  printf 'bench: FAILED: %s\n' "${failures[@]}" >&2
  exit 1
fi

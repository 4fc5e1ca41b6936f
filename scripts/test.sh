#!/usr/bin/env bash
# Runs every test: unit and API tests (SQLite, and PostgreSQL when CRYPTOPULSE_TEST_PG_URL is
# set; under CI=true PostgreSQL is required), then the Playwright end-to-end suite in Debian's
# chromium against a freshly built server with its own temporary database.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-tools.sh

# moto's KMS server for the AWS KMS adapter tests (a cached venv; sets CRYPTOPULSE_TEST_MOTO_SERVER).
source scripts/moto.sh
# schemathesis for the agent API test (a cached venv; sets AGENT_API_SCHEMATHESIS).
source scripts/schemathesis.sh

if [ "${CI:-}" = "true" ] && [ -z "${CRYPTOPULSE_TEST_PG_URL:-}" ]; then
  export CRYPTOPULSE_TEST_PG_URL="postgres://postgres@127.0.0.1:5432/postgres"
fi

echo "==> unit and API tests on SQLite"
CRYPTOPULSE_TEST_PG_URL= cargo test --workspace --exclude cryptopulse-frontend

if [ -n "${CRYPTOPULSE_TEST_PG_URL:-}" ]; then
  echo "==> API tests on PostgreSQL (${CRYPTOPULSE_TEST_PG_URL%%@*}@…)"
  # A test run against an unreachable database fails loudly rather than skipping.
  # faults: kill -9 mid-write, database/KMS/exchange cut through a fault proxy, a full disk.
  cargo test -p cryptopulse-server --test api --test report_stream --test faults
  # Each test made its own database; drop them once the run has passed.
  if command -v psql >/dev/null 2>&1; then
    psql "$CRYPTOPULSE_TEST_PG_URL" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'cryptopulse_test_%'" |
      while read -r db; do psql "$CRYPTOPULSE_TEST_PG_URL" -qc "DROP DATABASE IF EXISTS \"$db\"" || true; done
  fi
else
  echo "==> PostgreSQL API tests skipped: CRYPTOPULSE_TEST_PG_URL is not set (CI sets it)"
fi

echo "==> fuzzing every parser of outside input, ${FUZZ_SECONDS:-20} s per target (scripts/fuzz.sh)"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}"

echo "==> end-to-end tests (Playwright, chromium)"
e2e_dir=$(mktemp -d)
trap 'rm -rf "$e2e_dir"' EXIT
export CRYPTOPULSE_DATABASE_URL="sqlite://$e2e_dir/e2e.db?mode=rwc"
export CRYPTOPULSE_DATA_DIR="$e2e_dir/data"
export CRYPTOPULSE_RATE_LIMIT__AUTH_PER_MINUTE=500
export CRYPTOPULSE_LOG_FORMAT=json
export CRYPTOPULSE_ADMIN_PASSWORD="e2e-admin-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
# The exchange secret the vault tests type into the key form; it must never reach the log.
export E2E_KEY_SECRET="e2e-secret-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
# The suite's Binance testnet stand-in (end2end/binance-stand-in.ts) listens here; it signs with
# E2E_KEY_SECRET too, so that secret is also what the log search below looks for.
binance_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export CRYPTOPULSE_EXCHANGES__BINANCE_TESTNET_URL="http://127.0.0.1:$binance_port"
mkdir -p end2end/test-results/screens
# Each Playwright test reads the server's lines it caused from here (end2end/tests/fixtures.ts).
export E2E_SERVER_LOG="$e2e_dir/e2e.log"
cargo leptos end-to-end 2>&1 | tee "$E2E_SERVER_LOG"

echo "==> server logs: structured, and free of the passwords and key secrets the suite typed"
grep -q '"request_id"' "$e2e_dir/e2e.log" || { echo "no structured request logs found"; exit 1; }
if grep -F -e "$CRYPTOPULSE_ADMIN_PASSWORD" -e "correct horse battery staple" -e "$E2E_KEY_SECRET" "$e2e_dir/e2e.log"; then
  echo "a password or key secret appeared in the server log"
  exit 1
fi
echo "logs clean"

echo "==> the binary started on its own, as run.sh starts it: hashed /pkg files, caching, hydration"
bash scripts/check-site.sh target/debug/cryptopulse

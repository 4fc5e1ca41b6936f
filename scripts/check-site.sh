#!/usr/bin/env bash
# Starts a built server binary on its own (no cargo-leptos, no LEPTOS_* variables), as run.sh
# does, and checks that its pages name the site's hashed files, that /pkg serves them with
# immutable caching, and that a page hydrates in chromium (scripts/check-site.mjs).
#
#   scripts/check-site.sh [BINARY] [--precompressed]     (default target/release/cryptopulse)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/cryptopulse}
shift || true

dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Only what cargo-leptos would not set: the server's own settings.
env $(env | grep -o '^LEPTOS_[A-Z_]*' | sed 's/^/-u /') \
  CRYPTOPULSE_BIND="127.0.0.1:$port" \
  CRYPTOPULSE_DATABASE_URL="sqlite://$dir/check.db?mode=rwc" \
  CRYPTOPULSE_DATA_DIR="$dir/data" \
  CRYPTOPULSE_LOG_FORMAT=json \
  "$bin" >"$dir/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$dir"' EXIT

for _ in $(seq 1 100); do
  curl -fs -o /dev/null "http://127.0.0.1:$port/login" && break
  kill -0 $server 2>/dev/null || { cat "$dir/server.log"; echo "the server exited"; exit 1; }
  sleep 0.1
done
# The startup warnings of server/src/assets.rs::site_problems.
if grep -E 'pages will|rebuilt by another build' "$dir/server.log"; then
  echo "the server reported a problem with its site"
  exit 1
fi
node scripts/check-site.mjs "http://127.0.0.1:$port" "$@"

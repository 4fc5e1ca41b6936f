#!/usr/bin/env bash
# Sets up everything CryptoPulse needs on a fresh Debian machine (Rust toolchain, Node and
# Python present) and starts the app on http://localhost:3000 with an embedded SQLite database
# and a generated local master key in ./data (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-tools.sh

echo "==> building (release; the first build takes several minutes on 2 cores)"
cargo leptos build --release

echo "==> preparing ./data (SQLite database and local master key, mode 0600)"
target/release/cryptopulse init

cat <<'TXT'
==> starting CryptoPulse on http://localhost:3000  (Ctrl-C stops it; open localhost, not 127.0.0.1: security keys only work on a name)
    Create the first admin from another terminal with:
      target/release/cryptopulse create-admin --email you@example.com
TXT
exec cargo leptos serve --release

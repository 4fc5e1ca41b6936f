#!/usr/bin/env bash
# Sets up everything CryptoPulse needs on a fresh Debian machine (Rust toolchain, Node and
# Python present) and starts the app on http://localhost:3000 with an embedded SQLite database
# and a generated local master key in ./data (git-ignored).
#
# When nothing changed since the last build it starts the built binary at once (seconds);
# otherwise it installs the missing build tools and builds (scripts/build-site.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/release/cryptopulse
stamp=target/release/.run-build-stamp

# Everything the binary and the site are built from.
inputs=(Cargo.toml Cargo.lock package.json style public)
for crate in domain app frontend server migrations; do inputs+=("$crate/Cargo.toml" "$crate/src"); done

up_to_date() {
  [ -x "$bin" ] && [ -f target/release/hash.txt ] && [ -d target/site/pkg ] && [ -f "$stamp" ] &&
    [ -z "$(find "${inputs[@]}" -newer "$stamp" -print -quit 2>/dev/null)" ]
}

if up_to_date; then
  echo "==> the build is up to date (nothing changed since $(date -r "$stamp" '+%F %T'))"
else
  started=$(date +%s)
  bash scripts/install-tools.sh --run
  echo "==> building (release; the first build takes about 10 minutes on 2 cores)"
  # Stamped with the time the build began: a file edited meanwhile triggers the next build.
  mkdir -p target/release && touch "$stamp.next"
  bash scripts/build-site.sh
  mv "$stamp.next" "$stamp"
  echo "==> set-up and build took $(( $(date +%s) - started )) s"
fi

echo "==> preparing ./data (SQLite database and local master key, mode 0600)"
"$bin" init

cat <<'TXT'
==> starting CryptoPulse on http://localhost:3000  (Ctrl-C stops it; open localhost, not 127.0.0.1: security keys only work on a name)
    Create the first admin from another terminal with:
      target/release/cryptopulse create-admin --email you@example.com
TXT
# The binary itself, not `cargo leptos serve` (which would rebuild the site): its Leptos
# options are baked in from Cargo.toml.
exec "$bin"

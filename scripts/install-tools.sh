#!/usr/bin/env bash
# Installs the build tools CryptoPulse needs, from the package registries only
# (crates.io, npm, Debian). Each step is skipped when the right version is present.
# With --run, only what scripts/run.sh needs to build and serve (no cargo-leptos, no browser or
# Playwright: those are for the tests).
set -euo pipefail
run_only=false
[ "${1:-}" = "--run" ] && run_only=true

CARGO_LEPTOS_VERSION=0.3.11
WASM_BINDGEN_VERSION=0.2.130  # must equal the wasm-bindgen crate pinned in Cargo.toml

log() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
have_version() { command -v "$1" >/dev/null 2>&1 && "$1" --version 2>/dev/null | grep -q "$2"; }

export PATH="$HOME/.cargo/bin:$PATH"

if ! rustup target list --installed | grep -q '^wasm32-unknown-unknown$'; then
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# cargo-leptos and wasm-bindgen-cli: their locked dependency sets need one pin each to build on
# this toolchain, so install from a patched copy of the crate source (see shared BUILD.md).
install_from_patched_source() { # crate version "pin-spec..." -- extra cargo-install args
  local crate=$1 version=$2; shift 2
  local pins=() extra=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do pins+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  extra=("$@")
  local work; work=$(mktemp -d)
  cargo install "$crate" --version "$version" --locked "${extra[@]}" && { rm -rf "$work"; return 0; } || true
  local src
  src=$(ls -d "$HOME"/.cargo/registry/src/*/"$crate-$version" | head -n1)
  cp -r "$src" "$work/src"
  (
    cd "$work/src"
    for pin in "${pins[@]}"; do cargo update -p "${pin%@*}" --precise "${pin#*@}"; done
    cargo install --path . --locked "${extra[@]}"
  )
  rm -rf "$work"
}

if ! $run_only && ! have_version cargo-leptos "$CARGO_LEPTOS_VERSION"; then
  log "installing cargo-leptos $CARGO_LEPTOS_VERSION (about 16 minutes on 2 cores)"
  install_from_patched_source cargo-leptos "$CARGO_LEPTOS_VERSION" cargo-util-schemas@0.14.1 -- --features no_downloads
fi

if ! have_version wasm-bindgen "$WASM_BINDGEN_VERSION"; then
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 10 minutes on 2 cores)"
  # Only the wasm-bindgen binary, without the test runner's TLS stack: about half the build.
  install_from_patched_source wasm-bindgen-cli "$WASM_BINDGEN_VERSION" webpki-roots@1.0.10 \
    -- --no-default-features --bin wasm-bindgen
fi

# cargo-fuzz for scripts/fuzz.sh (tests only); a plain `--locked` install works on this toolchain.
CARGO_FUZZ_VERSION=0.13.2
if ! $run_only && ! have_version cargo-fuzz "$CARGO_FUZZ_VERSION"; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION (about 3 minutes on 2 cores)"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

if ! $run_only && ! command -v chromium >/dev/null 2>&1; then
  log "installing Debian's chromium for the end-to-end tests"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi

log "installing npm tools (tailwindcss, wasm-opt, playwright)"
root=$(cd "$(dirname "$0")/.." && pwd)
(cd "$root" && npm install --no-audit --no-fund --loglevel=error)
$run_only || (cd "$root/end2end" && { npm ci --no-audit --no-fund --loglevel=error || npm install --no-audit --no-fund --loglevel=error; })
log "tools ready"

#!/usr/bin/env bash
# Builds what `cargo leptos build --release --precompress` builds, without cargo-leptos (whose
# install from source takes 16+ minutes on 2 cores): the WASM bundle (cargo, wasm-bindgen,
# wasm-opt -Oz), the Tailwind stylesheet, content-hashed /pkg names with the hash list beside
# the binary, .br/.gz variants of every file, and the release server binary. The site is
# replaced only once everything has built, so a failed build leaves the last one serving.
#
# Needs: the wasm32-unknown-unknown target, wasm-bindgen (= the crate's version) and the root
# npm packages (tailwindcss, wasm-opt): `bash scripts/install-tools.sh --run` installs them.
#
#   scripts/build-site.sh                 target/release/cryptopulse (quick release profile)
#   scripts/build-site.sh --production    target/production/cryptopulse (fat LTO, for images)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$HOME/.cargo/bin:$PATH"

name=cryptopulse # output-name in [[workspace.metadata.leptos]] (Cargo.toml)
site=target/site # site-root
profile=release
[ "${1:-}" = "--production" ] && profile=production
# The compile-time variable cargo-leptos sets: the same value keeps both builds' artifacts shared.
export LEPTOS_OUTPUT_NAME=$name
# Leptos's type-erased views, in the server and the browser alike (they change the markers in
# the HTML, so both sides must agree): the WASM bundle is 38 % smaller (see README). As
# `always-erase-components` in Cargo.toml does for cargo-leptos. Separate artifacts from a
# build without the flag, so neither rebuilds the other.
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }--cfg erase_components"
step() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }

mkdir -p "target/$profile"
work=$(mktemp -d target/site.new.XXXXXX)
trap 'rm -rf "$work" "$work.hash.txt"' EXIT
chmod 755 "$work" # mktemp makes it private; the site is public
mkdir -p "$work/pkg"

step "WASM bundle (profile wasm-release)"
cargo build -p cryptopulse-frontend --lib --no-default-features \
  --target wasm32-unknown-unknown --profile wasm-release
wasm-bindgen --target=web --no-typescript --out-name=$name --out-dir="$work/pkg" \
  target/wasm32-unknown-unknown/wasm-release/cryptopulse_frontend.wasm
mv "$work/pkg/${name}_bg.wasm" "$work/pkg/$name.wasm"
wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
  "$work/pkg/$name.wasm" -o "$work/pkg/$name.wasm"

step "stylesheet (Tailwind)"
tailwindcss --input style/tailwind.css --output "$work/pkg/$name.css" --minify

# assets-dir: copied to the site root as they are.
find public -mindepth 1 -maxdepth 1 ! -name .gitkeep -exec cp -r {} "$work/" \;

step "hashed names and precompressed files"
node scripts/site-files.mjs "$work" $name "$work.hash.txt"

step "server (profile $profile)"
cargo build --profile "$profile" -p cryptopulse-server --bin cryptopulse --no-default-features

# The binary, its hash list and the site change together.
mv "$work.hash.txt" "target/$profile/hash.txt"
rm -rf "$site"
mv "$work" "$site"
trap - EXIT
step "built target/$profile/cryptopulse (with its hash.txt) and $site"

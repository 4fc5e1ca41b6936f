#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ (one per parser of outside input) for a bounded time.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default: 20 s each, every target
# A crash stops the run with the reproducing input under fuzz/artifacts/<target>/ and the
# command to replay it. The working corpus is cached (so later runs start deeper); the small
# committed seeds are in fuzz/seeds/<target>.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
seconds=${1:-20}
[ $# -gt 0 ] && shift
export PATH="$HOME/.cargo/bin:$PATH"
cache="${CRYPTOPULSE_CACHE_DIR:-$HOME/.cache/cryptopulse}"

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# cargo-fuzz passes nightly-only flags (-Z, sanitizer coverage); the stable toolchain takes them
# with RUSTC_BOOTSTRAP. No sanitizer: the product forbids unsafe code, so ASan would only slow
# the runs; debug assertions (-a) keep overflow checks on. Its own target dir: the flags differ
# from the workspace's, and sharing would rebuild both.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$cache/fuzz-target"
flags=(--sanitizer none -O -a)

cd fuzz
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
echo "==> building the fuzz targets: ${targets[*]}"
cargo fuzz build "${flags[@]}"

for target in "${targets[@]}"; do
  corpus="$cache/fuzz-corpus/$target"
  mkdir -p "$corpus"
  seeds=()
  [ -d "seeds/$target" ] && seeds=("seeds/$target")
  log=$(mktemp)
  echo "==> fuzzing $target for ${seconds}s"
  if ! cargo fuzz run "${flags[@]}" "$target" "$corpus" "${seeds[@]}" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    grep -v '^#[0-9]' "$log" | tail -n 60
    echo "fuzz target $target failed; replay: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run ${flags[*]} $target artifacts/$target/<file>)"
    rm -f "$log"
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 || true)
  echo "    $target: $runs inputs, no crash ($cov, corpus $(ls "$corpus" | wc -l) files)"
  rm -f "$log"
done

#!/usr/bin/env bash
# Sourced by scripts/test.sh (or by hand: `source scripts/moto.sh`): installs moto's standalone
# server from PyPI into a cached venv and exports CRYPTOPULSE_TEST_MOTO_SERVER, which the AWS KMS
# tests use to start their own local KMS endpoint. Reuses the venv when moto_server is there.

MOTO_VERSION=5.2.5

moto_venv="${CRYPTOPULSE_CACHE_DIR:-$HOME/.cache/cryptopulse}/moto-venv"
if [ ! -x "$moto_venv/bin/moto_server" ] || ! "$moto_venv/bin/python" -m pip show moto 2>/dev/null | grep -qx "Version: $MOTO_VERSION"; then
  echo "==> installing moto[server]==$MOTO_VERSION into $moto_venv"
  mkdir -p "$(dirname "$moto_venv")"
  python3 -m venv "$moto_venv"
  "$moto_venv/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi
export CRYPTOPULSE_TEST_MOTO_SERVER="$moto_venv/bin/moto_server"
unset moto_venv

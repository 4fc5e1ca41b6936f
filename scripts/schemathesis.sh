#!/usr/bin/env bash
# schemathesis (PyPI) against the agent API's OpenAPI document, with a fixed seed.
#   source scripts/schemathesis.sh   installs it into a cached venv and exports
#                                    AGENT_API_SCHEMATHESIS (what scripts/test.sh does; the
#                                    API test `agent::schemathesis_…` then runs it)
#   scripts/schemathesis.sh          the same, then runs just that test
# The test starts the server on a temporary SQLite database, signs up a trader, creates an agent
# token with every scope and runs `schemathesis run` with it: any 5xx, any panic, any response
# off the document, or any schema-valid request answered other than 2xx fails it.

st_requirements="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/schemathesis-requirements.txt"
st_venv="${CRYPTOPULSE_CACHE_DIR:-$HOME/.cache/cryptopulse}/schemathesis-venv"
st_version=$(grep -o 'schemathesis==[0-9.]*' "$st_requirements" | cut -d= -f3)
if [ ! -x "$st_venv/bin/schemathesis" ] || ! "$st_venv/bin/python" -m pip show schemathesis 2>/dev/null | grep -qx "Version: $st_version"; then
  echo "==> installing schemathesis $st_version into $st_venv"
  mkdir -p "$(dirname "$st_venv")"
  python3 -m venv "$st_venv"
  "$st_venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$st_requirements"
fi
export AGENT_API_SCHEMATHESIS="$st_venv/bin/schemathesis"
unset st_requirements st_venv st_version

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  cd "$(dirname "$0")/.."
  cargo test -p cryptopulse-server --test api agent::schemathesis -- --nocapture
fi

#!/usr/bin/env bash
# Install the real migration tools the conformance tests compare with (idempotent, fast when done):
#   alembic, Django (+ SQLAlchemy, psycopg, PyMySQL) from PyPI into build/conformance/venv,
#   knex, pg and dbmate from the npm registry into build/conformance/node.
# A tool that cannot be installed (no network to the registry, npm too slow) is reported and left
# out: its tests skip with that reason. Exit status is always 0 unless the repository is broken.
#
#   scripts/install-conformance-tools.sh          DBOPS_CONFORMANCE_DIR overrides build/conformance
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest="${DBOPS_CONFORMANCE_DIR:-$here/build/conformance}"
py="${DBOPS_PYTHON:-python3}"
mkdir -p "$dest"

stamp_of() { sha256sum "$@" | sha256sum | cut -c1-16; }

# --- PyPI tools --------------------------------------------------------------------------------
want=$(stamp_of "$here/requirements-conformance.txt")
if [ "$(cat "$dest/venv.stamp" 2>/dev/null)" = "$want" ] && [ -x "$dest/venv/bin/alembic" ]; then
  echo "conformance: python tools up to date ($dest/venv)"
else
  echo "conformance: installing alembic, Django into $dest/venv"
  rm -rf "$dest/venv" "$dest/venv.stamp"
  if "$py" -m venv "$dest/venv" \
      && timeout 600 "$dest/venv/bin/pip" install -q --disable-pip-version-check \
           -r "$here/requirements-conformance.txt"; then
    echo "$want" > "$dest/venv.stamp"
  else
    echo "conformance: WARNING: could not install the python tools; their conformance tests will skip" >&2
    echo "pip install -r requirements-conformance.txt failed" > "$dest/venv.failed"
  fi
fi

# --- npm tools -----------------------------------------------------------------------------------
want=$(stamp_of "$here/package.json")
if [ "$(cat "$dest/node.stamp" 2>/dev/null)" = "$want" ] && [ -x "$dest/node/node_modules/.bin/knex" ]; then
  echo "conformance: npm tools up to date ($dest/node)"
elif ! command -v npm >/dev/null 2>&1; then
  echo "conformance: WARNING: npm not found; knex and dbmate conformance tests will skip" >&2
else
  echo "conformance: installing knex, pg, dbmate into $dest/node"
  mkdir -p "$dest/node"
  cp "$here/package.json" "$dest/node/package.json"
  if (cd "$dest/node" && timeout 300 npm install --no-audit --no-fund --loglevel=error >/dev/null); then
    echo "$want" > "$dest/node.stamp"
  else
    echo "conformance: WARNING: npm install failed or timed out; knex and dbmate conformance tests will skip" >&2
  fi
fi
exit 0

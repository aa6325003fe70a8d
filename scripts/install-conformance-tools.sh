#!/usr/bin/env bash
# Install the real migration tools the conformance tests compare with (idempotent, fast when done):
#   alembic, Django (+ SQLAlchemy, psycopg, PyMySQL) from PyPI into build/conformance/venv,
#   knex, pg and dbmate from the npm registry into build/conformance/node.
#
# In CI (CI=true) or with DBOPS_CONFORMANCE_REQUIRED=1, a tool that cannot be installed is an
# error: the script says which and exits 1 (a missing oracle must fail the build, not skip its
# tests). Elsewhere it warns, and the tests of that tool skip with the reason.
#
#   scripts/install-conformance-tools.sh          DBOPS_CONFORMANCE_DIR overrides build/conformance
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest="${DBOPS_CONFORMANCE_DIR:-$here/build/conformance}"
py="${DBOPS_PYTHON:-python3}"
required=0
if [ "${CI:-}" = true ] || [ "${DBOPS_CONFORMANCE_REQUIRED:-0}" = 1 ]; then
  required=1
fi
mkdir -p "$dest" || exit 1
problems=()

problem() {
  problems+=("$1")
  if [ "$required" = 1 ]; then
    echo "conformance: ERROR: $1" >&2
  else
    echo "conformance: WARNING: $1; its conformance tests will skip" >&2
  fi
}

stamp_of() { sha256sum "$@" | sha256sum | cut -c1-16; }

# --- PyPI tools --------------------------------------------------------------------------------
want=$(stamp_of "$here/requirements-conformance.txt")
if [ "$(cat "$dest/venv.stamp" 2>/dev/null)" = "$want" ] && [ -x "$dest/venv/bin/alembic" ] \
    && [ -x "$dest/venv/bin/django-admin" ]; then
  echo "conformance: python tools up to date ($dest/venv)"
else
  echo "conformance: installing alembic, Django into $dest/venv"
  rm -rf "$dest/venv" "$dest/venv.stamp" "$dest/venv.failed"
  if "$py" -m venv "$dest/venv" \
      && timeout 600 "$dest/venv/bin/pip" install -q --disable-pip-version-check \
           -r "$here/requirements-conformance.txt" \
      && [ -x "$dest/venv/bin/alembic" ] && [ -x "$dest/venv/bin/django-admin" ]; then
    echo "$want" > "$dest/venv.stamp"
  else
    echo "pip install -r requirements-conformance.txt failed" > "$dest/venv.failed"
    problem "could not install alembic and Django (pip install -r requirements-conformance.txt into $dest/venv)"
  fi
fi

# --- npm tools -----------------------------------------------------------------------------------
want=$(stamp_of "$here/package.json")
if [ "$(cat "$dest/node.stamp" 2>/dev/null)" = "$want" ] && [ -x "$dest/node/node_modules/.bin/knex" ] \
    && [ -x "$dest/node/node_modules/.bin/dbmate" ]; then
  echo "conformance: npm tools up to date ($dest/node)"
elif ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  problem "node/npm not found (scripts/bootstrap.sh installs Debian's nodejs and npm as root): knex and dbmate cannot be installed"
else
  echo "conformance: installing knex, pg, dbmate into $dest/node"
  rm -f "$dest/node.stamp"
  mkdir -p "$dest/node"
  cp "$here/package.json" "$dest/node/package.json"
  if (cd "$dest/node" && timeout 600 npm install --no-audit --no-fund --loglevel=error >/dev/null) \
      && [ -x "$dest/node/node_modules/.bin/knex" ] && [ -x "$dest/node/node_modules/.bin/dbmate" ] \
      && "$dest/node/node_modules/.bin/dbmate" --version >/dev/null 2>&1; then
    echo "$want" > "$dest/node.stamp"
  else
    problem "npm install of knex, pg, dbmate into $dest/node failed or timed out (or dbmate's binary does not run)"
  fi
fi

if [ ${#problems[@]} -gt 0 ] && [ "$required" = 1 ]; then
  echo "conformance: ${#problems[@]} tool set(s) missing; CI needs every oracle (see tests/README.md)" >&2
  exit 1
fi
exit 0

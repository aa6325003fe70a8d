#!/usr/bin/env bash
# molecule for this repository's scenarios, whether or not .venv/bin is on PATH:
#
#   bash scripts/molecule.sh test                 the default scenario (the smoke test of the fleet)
#   bash scripts/molecule.sh test -s maintenance  one scenario (molecule/README.md); any molecule command
#
# A bare .venv/bin/molecule without the venv on PATH fails with "FileNotFoundError: ... 'ansible-config'"
# (molecule runs ansible-config from PATH); the one-line fix is `export PATH="$PWD/.venv/bin:$PATH"`, or this
# script, which also passes the base config (.config/molecule/config.yml), the collections path and
# MOLECULE_GLOB (the scenarios stay in molecule/, not extensions/molecule: no migration warning).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv="${DBOPS_VENV:-$here/.venv}"
if [ ! -x "$venv/bin/molecule" ]; then
  echo "molecule.sh: no $venv/bin/molecule: run 'bash scripts/bootstrap.sh' first" >&2
  exit 1
fi
export PATH="$venv/bin:$PATH"
ANSIBLE_COLLECTIONS_PATH=$(bash "$here/scripts/collection-tree.sh")
export ANSIBLE_COLLECTIONS_PATH
export MOLECULE_GLOB="molecule/*/molecule.yml"
cd "$here"
exec "$venv/bin/molecule" --base-config "$here/.config/molecule/config.yml" "$@"

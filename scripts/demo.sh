#!/usr/bin/env bash
# The main job on a throwaway local database, from a clean clone:
# installs what it needs, starts PostgreSQL 15 and MariaDB on loopback ports in a temp dir,
# creates the two seed incidents (enum value missing -> 22P02; a column a migration adds twice),
# runs playbooks/maintenance.yml in check mode, for real, and again (idempotent), shows the result,
# and stops the servers.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/bootstrap.sh"
bash "$here/scripts/collection-tree.sh" >/dev/null
exec "$here/.venv/bin/python" "$here/scripts/demo.py" "$@"

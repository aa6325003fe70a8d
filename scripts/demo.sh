#!/usr/bin/env bash
# The main job on a throwaway local database, from a clean clone:
# installs what it needs, starts PostgreSQL 15 and MariaDB on loopback ports in /tmp/dbops-demo-*,
# creates the two seed incidents (enum value missing -> 22P02; a column a migration adds twice),
# runs playbooks/maintenance.yml in check mode, for real, and again (idempotent), names each incident as it
# is fixed, shows the result, and stops the servers (their data is removed; the backups and the reports in
# build/demo-reports/ are left to look at).
#
#   bash scripts/demo.sh           the demo (about 3 minutes)
#   bash scripts/demo.sh --clean   removes what demo runs left: /tmp/dbops-demo-* (servers still running there
#                                  stopped first), build/demo-reports/; lists what it leaves (Debian packages,
#                                  .venv, the system user dbopstest)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = "--clean" ]; then
  # Nothing to install for cleaning: the harness is standard library only.
  py="$here/.venv/bin/python"
  [ -x "$py" ] || py=python3
  exec "$py" "$here/scripts/demo.py" "$@"
fi
bash "$here/scripts/bootstrap.sh"
bash "$here/scripts/collection-tree.sh" >/dev/null
exec "$here/.venv/bin/python" "$here/scripts/demo.py" "$@"

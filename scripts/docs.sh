#!/usr/bin/env bash
# Read the collection's documentation from a clone: ansible-doc with the collections path that
# scripts/collection-tree.sh builds (build/collections/ansible_collections/dbops/maintenance -> this repo).
#
#   scripts/docs.sh enum_add                    the manual of dbops.maintenance.enum_add
#   scripts/docs.sh -t filter fix_checks        a filter (also: -t lookup connection, -t role preflight)
#   scripts/docs.sh -l                          every module of the collection
#   scripts/docs.sh -t role -l                  every role (any other ansible-doc option works too)
#
# A short name gets the dbops.maintenance. prefix. Uses .venv/bin/ansible-doc when there is one
# (scripts/bootstrap.sh makes it), else ansible-doc from PATH.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
ns=dbops.maintenance
doc="$here/.venv/bin/ansible-doc"
if [ ! -x "$doc" ]; then
  doc=$(command -v ansible-doc) || {
    echo "docs.sh: no ansible-doc: run 'bash scripts/bootstrap.sh' first (it makes .venv)" >&2
    exit 1
  }
fi
ANSIBLE_COLLECTIONS_PATH=$(bash "$here/scripts/collection-tree.sh")
export ANSIBLE_COLLECTIONS_PATH

args=()
list=0
optarg=0
for a in "$@"; do
  if [ "$optarg" = 1 ]; then args+=("$a"); optarg=0; continue; fi
  case "$a" in
    -l|--list) list=1; args+=("$a") ;;
    -t|--type|-M|--module-path|-r|--roles-path|-e|--entry-point|--playbook-dir) optarg=1; args+=("$a") ;;
    -*) args+=("$a") ;;
    *.*) args+=("$a") ;;
    *) args+=("$ns.$a") ;;
  esac
done
if [ "$list" = 1 ]; then
  # "-l" lists every installed collection's plugins: keep to this one.
  plain=()
  for a in "${args[@]}"; do [ "$a" = "-l" ] || [ "$a" = "--list" ] || plain+=("$a"); done
  exec "$doc" -l "${plain[@]}" "$ns"
fi
[ ${#args[@]} -gt 0 ] || { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
exec "$doc" "${args[@]}"

#!/usr/bin/env bash
# Lay out the collection where ansible looks for it: <dir>/ansible_collections/dbops/maintenance.
#
#   scripts/collection-tree.sh             build/collections/ansible_collections/dbops/maintenance
#                                          -> symlink to this repo (live code, for the tests);
#                                          prints the collections dir (ANSIBLE_COLLECTIONS_PATH).
#   scripts/collection-tree.sh --copy DIR  real copy of the tracked and untracked-but-not-ignored
#                                          files at DIR/ansible_collections/dbops/maintenance
#                                          (ansible-test needs a real tree); prints that path.
#                                          A built dbops-maintenance-*.tar.gz is never copied.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
ns=dbops
name=maintenance

if [ "${1:-}" = "--copy" ]; then
  [ -n "${2:-}" ] || { echo "usage: $0 --copy DIR" >&2; exit 2; }
  mkdir -p "$2"
  dest="$(cd "$2" && pwd)/ansible_collections/$ns/$name"
  rm -rf "$dest"
  mkdir -p "$dest"
  cd "$here"
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Tracked files plus untracked ones that .gitignore does not exclude; skip files
    # deleted from the work tree but still in the index.
    git ls-files -z --cached --others --exclude-standard \
      | while IFS= read -r -d '' f; do
          case "$f" in "$ns-$name-"*.tar.gz) continue ;; esac
          if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
        done \
      | rsync -a --from0 --files-from=- ./ "$dest/"
  else
    rsync -a --exclude=/.venv --exclude='/.venv-*' --exclude="/$ns-$name-*.tar.gz" --exclude=/build --exclude=/tests/output --exclude=.git \
      --exclude=__pycache__ --exclude='*.pyc' --exclude=.pytest_cache ./ "$dest/"
  fi
  echo "$dest"
  exit 0
fi

[ $# -eq 0 ] || { echo "usage: $0 [--copy DIR]" >&2; exit 2; }
coll="$here/build/collections"
link="$coll/ansible_collections/$ns/$name"
mkdir -p "$(dirname "$link")"
if [ "$(readlink "$link" 2>/dev/null)" != "$here" ]; then
  rm -rf "$link"
  ln -s "$here" "$link"
fi
echo "$coll"

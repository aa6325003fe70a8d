#!/usr/bin/env bash
# The project's test command: runs the whole suite, from a clean clone on a fresh machine.
#
#   scripts/test.sh
#
# Stages (all run even if one fails; the exit code is non-zero if any failed):
#   bootstrap      scripts/bootstrap.sh (Debian packages, .venv)          - fatal if it fails
#   tree           build/collections/ansible_collections/dbops/maintenance -> this repo
#   servers        PostgreSQL 15, PostgreSQL 16, MariaDB 10.11 started once (tests/harness/servers.py),
#                  stopped on exit whatever happens
#   ansible-doc    every module in plugins/modules renders
#   sanity         ansible-test sanity --python 3.11 on a copy of the tree
#   ansible-lint   --offline over roles/ and playbooks/
#   unit           pytest tests/unit
#   integration    pytest tests/integration -n 2 against the servers above
#   mutation       scripts/mutation-check.sh: each safety behaviour disabled in a scratch copy of the
#                  collection must make at least one of its tests fail (tests/README.md lists them)
#   molecule       molecule test, one scenario at a time (each starts its own fleet of servers on
#                  127.0.0.x addresses and a local sshd; see molecule/README.md)
#   ecosystem      pytest tests/repo: the collection tarball's contents, changelogs/ (antsibull-changelog lint,
#                  CHANGELOG.rst generated), the EE build context (ansible-builder create), examples/fixes,
#                  demo.sh --clean, docs.sh
#   docs           antsibull-docs lint-collection-docs, and the docs site (scripts/docs-site.sh, offline) with a
#                  page for every module, role, filter and lookup
#   core-2.16      the oldest supported ansible-core, from .venv-2.16: ansible-doc, unit tests, sanity, and the
#                  integration slice tests/integration/test_every_module_once.py (every module per engine,
#                  maintenance.yml once)
#
# Skipped tests: every pytest run is checked against tests/allowed_skips.txt (test id pattern + reason);
# a skip not listed there fails the stage (DBOPS_ALLOW_SKIPS=1 turns that into a warning, for local runs
# that start fewer servers). pytest's exit 5 (no tests collected) is a failure.
#
# Environment: DBOPS_TEST_STAGES="unit integration" runs only those stages (bootstrap, tree
# and servers always run when needed); DBOPS_PYTEST_ARGS adds pytest options to both pytest runs.
# The stage functions are called indirectly, through run_stage:
# shellcheck disable=SC2317
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 1
venv="${DBOPS_VENV:-$here/.venv}"
py="$venv/bin/python"
t_start=$(date +%s)
work=$(mktemp -d /tmp/dbops-test.XXXXXX)
chmod 0711 "$work"  # the PostgreSQL user (dbopstest) must reach the server dirs inside
state="$work/servers"
servers_started=0

names=()
results=()
secs=()
notes=()

log() { printf '\n=== %s\n' "$*"; }

cleanup() {
  local rc=$?
  if [ "$servers_started" = 1 ]; then
    "$py" tests/harness/servers.py stop --state-dir "$state" || true
  fi
  rm -rf "$work"
  return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

want_stage() {
  [ -z "${DBOPS_TEST_STAGES:-}" ] && return 0
  case " $DBOPS_TEST_STAGES " in *" $1 "*) return 0 ;; esac
  return 1
}

SKIP_REASON=""
skip() { SKIP_REASON="$*"; return 0; }

# run_stage NAME FUNCTION [always]: runs it (if selected, or "always"), records
# PASS/FAIL/SKIP and the time it took.
run_stage() {
  local name=$1 fn=$2 t0 rc result
  if [ "${3:-}" != always ] && ! want_stage "$name"; then
    return 0
  fi
  log "[$name] start"
  SKIP_REASON=""
  t0=$(date +%s)
  "$fn"
  rc=$?
  if [ -n "$SKIP_REASON" ] && [ $rc = 0 ]; then
    result=SKIP
    echo "[$name] skipped: $SKIP_REASON"
  elif [ $rc = 0 ]; then
    result=PASS
  else
    result=FAIL
  fi
  names+=("$name")
  results+=("$result")
  secs+=("$(( $(date +%s) - t0 ))")
  notes+=("${SKIP_REASON:-$( [ $result = FAIL ] && echo "exit code $rc" )}")
  log "[$name] $result ($(( $(date +%s) - t0 ))s)"
  return 0
}

# ---------------------------------------------------------------------------
stage_bootstrap() {
  bash scripts/bootstrap.sh
}

stage_tree() {
  local coll
  coll=$(bash scripts/collection-tree.sh) || return 1
  export ANSIBLE_COLLECTIONS_PATH="$coll"
  echo "ANSIBLE_COLLECTIONS_PATH=$ANSIBLE_COLLECTIONS_PATH"
}

stage_servers() {
  "$py" tests/harness/servers.py start --state-dir "$state" || return 1
  export DBOPS_SERVERS_STATE="$state"
}

stage_ansible_doc() {
  local f name out failed=0 count=0
  shopt -s nullglob
  local modules=(plugins/modules/*.py)
  shopt -u nullglob
  for f in "${modules[@]}"; do
    name=$(basename "$f" .py)
    [ "$name" = "__init__" ] && continue
    count=$((count + 1))
    if out=$("$venv/bin/ansible-doc" "dbops.maintenance.$name" 2>&1) \
        && [ -n "$out" ] && ! grep -q '^\[ERROR\]' <<<"$out"; then
      echo "ok    dbops.maintenance.$name ($(wc -l <<<"$out") lines)"
    else
      echo "FAIL  dbops.maintenance.$name"
      # shellcheck disable=SC2001
      sed 's/^/      /' <<<"$out" | head -40
      failed=1
    fi
  done
  [ "$count" = 0 ] && skip "no modules in plugins/modules yet"
  return "$failed"
}

# ansible_test_get_pip PYTHON: ansible-test creates one virtualenv per sanity test and bootstraps pip
# into it with a get-pip.py from ci-files.testing.ansible.com, which is unreachable here; it uses a
# cached copy first, so put our stand-in there (ensurepip + PyPI), for the ansible-test of PYTHON's venv.
# The pinned tool versions themselves come from PyPI (needs network to PyPI the first time; cached in
# ~/.ansible/test/venv afterwards).
ansible_test_get_pip() {
  local cached
  cached=$("$1" - <<'EOF'
import os.path
import types
from ansible_test._internal.python_requirements import get_venv_packages
version = get_venv_packages(types.SimpleNamespace(version="3.11"))["pip"]
print(os.path.expanduser(f"~/.ansible/test/cache/get_pip_{version.replace('.', '_')}.py"))
EOF
  ) || return 1
  if [ ! -s "$cached" ] || grep -q 'Stand-in for the get-pip.py' "$cached"; then
    mkdir -p "$(dirname "$cached")"
    cp tests/harness/ansible_test_get_pip.py "$cached"
  fi
}

stage_sanity() {
  local tree rc
  ansible_test_get_pip "$py" || return 1
  # Outside this git work tree: inside it, ansible-test would apply .gitignore (build/) and
  # find nothing to test.
  tree=$(bash scripts/collection-tree.sh --copy "$work/sanity") || return 1
  # Every sanity test of ansible-core 2.19 runs (shellcheck: Debian's, from bootstrap); pslint skips itself when
  # there is no PowerShell file.
  (cd "$tree" && PATH="$venv/bin:$PATH" "$venv/bin/ansible-test" sanity --python 3.11 --color no \
      2>&1) | tee "$work/sanity.log"
  rc=${PIPESTATUS[0]}
  if grep -q 'All targets skipped' "$work/sanity.log"; then
    echo "ansible-test found nothing to test in $tree" >&2
    return 1
  fi
  return "$rc"
}

stage_ansible_lint() {
  local dirs=() d
  for d in roles playbooks; do
    if [ -d "$d" ] && [ -n "$(find "$d" -type f \( -name '*.yml' -o -name '*.yaml' \) -print -quit)" ]; then
      dirs+=("$d")
    fi
  done
  if [ ${#dirs[@]} = 0 ]; then
    skip "nothing to lint (no roles/ or playbooks/ yet)"
    return 0
  fi
  PATH="$venv/bin:$PATH" "$venv/bin/ansible-lint" --offline "${dirs[@]}"
}

# run_pytest JUNIT ARGS...: pytest; exit 5 (no tests collected) is a failure, and so is any skipped test
# that tests/allowed_skips.txt does not list.
run_pytest() {
  local xml=$1 rc
  shift
  rm -f "$xml"
  # shellcheck disable=SC2086
  "${PYTEST_PY:-$py}" -m pytest -p no:cacheprovider --junitxml="$xml" ${DBOPS_PYTEST_ARGS:-} "$@"
  rc=$?
  if [ "$rc" = 5 ]; then
    echo "pytest collected no tests: that is a failure (pytest $*)" >&2
    return 5
  fi
  if ! "$py" tests/harness/check_skips.py "$xml" tests/allowed_skips.txt; then
    [ "$rc" = 0 ] && rc=1
  fi
  return "$rc"
}

stage_unit() {
  if [ ! -d tests/unit ]; then
    skip "no tests/unit yet"
    return 0
  fi
  run_pytest "$work/junit-unit.xml" tests/unit
}

stage_integration() {
  if [ -z "${DBOPS_SERVERS_STATE:-}" ]; then
    echo "servers did not start: the integration tests cannot run" >&2
    return 1
  fi
  # The real alembic, Django, knex and dbmate, for the migration conformance tests (fast when installed).
  DBOPS_PYTHON="$py" bash "$here/scripts/install-conformance-tools.sh" || return 1
  run_pytest "$work/junit-integration.xml" -n 2 tests/integration
}

stage_mutation() {
  if [ -z "${DBOPS_SERVERS_STATE:-}" ]; then
    echo "servers did not start: the mutation check cannot run" >&2
    return 1
  fi
  # The baseline (the same tests on the unmutated code) is the integration stage's run, when there was one.
  DBOPS_PYTHON="$py" DBOPS_MUTATION_BASELINE_JUNIT="$work/junit-integration.xml" bash "$here/scripts/mutation-check.sh"
}

stage_molecule() {
  # Each scenario: molecule test = dependency (collection tree), destroy, syntax, create (the
  # shared molecule/resources/create.yml: servers on 127.0.0.x, SQLite files, sshd), prepare,
  # converge, idempotence, verify (testinfra), destroy; see molecule/README.md.
  # molecule/resources holds the shared playbooks, not a scenario.
  local scenarios=() f s rc=0 t0
  shopt -s nullglob
  for f in molecule/*/molecule.yml extensions/molecule/*/molecule.yml; do
    s=$(basename "$(dirname "$f")")
    [ "$s" = resources ] && continue
    scenarios+=("$s")
  done
  shopt -u nullglob
  if [ ${#scenarios[@]} = 0 ]; then
    skip "no molecule scenarios yet"
    return 0
  fi
  for s in "${scenarios[@]}"; do
    echo "--- molecule scenario $s"
    t0=$(date +%s)
    # scripts/molecule.sh: the venv on PATH, the base config explicitly (molecule only finds it by
    # itself from a git work tree), the collections path, MOLECULE_GLOB.
    if DBOPS_VENV="$venv" NO_COLOR=1 bash scripts/molecule.sh test -s "$s"; then
      echo "--- molecule scenario $s: PASS ($(( $(date +%s) - t0 ))s)"
    else
      echo "--- molecule scenario $s: FAIL ($(( $(date +%s) - t0 ))s)"
      rc=1
    fi
  done
  return "$rc"
}

stage_ecosystem() {
  run_pytest "$work/junit-ecosystem.xml" -n 2 tests/repo
}

stage_docs() {
  local site rc=0
  DBOPS_VENV="$venv" bash scripts/docs-site.sh --lint || rc=1
  site=$(DBOPS_VENV="$venv" bash scripts/docs-site.sh "$work/docs-site" | tail -1) || return 1
  # A page for every module, role, filter and lookup the collection has (ansible-doc's own lists).
  ANSIBLE_COLLECTIONS_PATH="$here/build/collections" "$py" scripts/check_docs_site.py "$site" \
    "$venv/bin/ansible-doc" || rc=1
  return "$rc"
}

stage_core_216() {
  local v216="${DBOPS_VENV_216:-$here/.venv-2.16}" f name failed=0 tree
  if [ ! -x "$v216/bin/ansible-doc" ]; then
    echo "no $v216 (scripts/bootstrap.sh makes it)" >&2
    return 1
  fi
  "$v216/bin/ansible-doc" --version | sed -n 1p
  for f in plugins/modules/*.py; do
    name=$(basename "$f" .py)
    [ "$name" = "__init__" ] && continue
    if "$v216/bin/ansible-doc" "dbops.maintenance.$name" >"$work/doc216.out" 2>&1 \
        && ! grep -q '^\[ERROR\]' "$work/doc216.out"; then
      echo "ok    ansible-doc (2.16) dbops.maintenance.$name"
    else
      echo "FAIL  ansible-doc (2.16) dbops.maintenance.$name"
      sed 's/^/      /' "$work/doc216.out" | head -20
      failed=1
    fi
  done
  PYTEST_PY="$v216/bin/python" run_pytest "$work/junit-unit-2.16.xml" tests/unit || failed=1
  # ansible-test 2.16's sanity (its own pinned tool versions; cached in ~/.ansible/test after the first run):
  # the tests that read our code with 2.16's rules (the whole set runs on 2.19 in the sanity stage; on a new
  # machine each further 2.16 test builds its own tool venv, which the suite's time budget does not afford).
  ansible_test_get_pip "$v216/bin/python" || return 1
  tree=$(bash scripts/collection-tree.sh --copy "$work/sanity-2.16") || return 1
  (cd "$tree" && PATH="$v216/bin:$PATH" "$v216/bin/ansible-test" sanity --python 3.11 --color no \
    --test compile --test pep8 --test pylint --test validate-modules --test ansible-doc --test yamllint) || failed=1
  if [ -n "${DBOPS_SERVERS_STATE:-}" ]; then
    PYTEST_PY="$v216/bin/python" run_pytest "$work/junit-integration-2.16.xml" -n 2 \
      tests/integration/test_every_module_once.py || failed=1
  else
    echo "servers did not start: the 2.16 integration slice cannot run" >&2
    failed=1
  fi
  return "$failed"
}

# ---------------------------------------------------------------------------
export ANSIBLE_NOCOLOR=1 PY_COLORS=0 PYTHONDONTWRITEBYTECODE=1

run_stage bootstrap stage_bootstrap always
if [ "${results[0]}" = FAIL ]; then
  echo "bootstrap failed: nothing else can run" >&2
  exit 1
fi
run_stage tree stage_tree always
if want_stage integration || want_stage mutation || want_stage core-2.16; then
  servers_started=1
  run_stage servers stage_servers always
fi
run_stage ansible-doc stage_ansible_doc
run_stage sanity stage_sanity
run_stage ansible-lint stage_ansible_lint
run_stage unit stage_unit
run_stage integration stage_integration
run_stage mutation stage_mutation
run_stage molecule stage_molecule
run_stage ecosystem stage_ecosystem
run_stage docs stage_docs
run_stage core-2.16 stage_core_216

# ---------------------------------------------------------------------------
log "summary ($(( $(date +%s) - t_start ))s in all)"
failed=0
for i in "${!names[@]}"; do
  printf '%-5s %-13s %5ss  %s\n' "${results[$i]}" "${names[$i]}" "${secs[$i]}" "${notes[$i]}"
  [ "${results[$i]}" = FAIL ] && failed=1
done
# One closing line with the test counts of both pytest runs.
"$py" - "$work"/junit-*.xml <<'EOF' || true
import sys
import xml.etree.ElementTree as ET
counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
parsed = 0
for path in sys.argv[1:]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        continue
    parsed += 1
    for suite in root.iter("testsuite"):
        for key in counts:
            counts[key] += int(suite.get(key, 0))
if not parsed:
    sys.exit(0)
failed = counts["failures"] + counts["errors"]
passed = counts["tests"] - failed - counts["skipped"]
print(f"pytest: {passed} passed, {failed} failed, {counts['skipped']} skipped")
EOF
exit $failed

#!/usr/bin/env bash
# Mutation check: each safety behaviour, disabled in a scratch copy of the collection, must make at least
# one of the tests that claim it fail. A mutation that survives (all its tests pass) fails this script.
#
#   scripts/mutation-check.sh [NAME...]      (default: every mutation; DBOPS_SERVERS_STATE must be set)
#
# Each mutation is a regular-expression edit of plugins/ in the copy, anchored on things that do not move
# when the code around them is rewritten (option names in the argument spec and the params they are read
# from, `if self.check_mode` in Adapter.run_step, the manifest's sha256 comparison...). An anchor that is
# not found fails LOUDLY (exit 3): the code moved, and this list must follow it. Selected tests that are not
# collected (renamed) fail loudly too. The list, with the tests that catch each mutation, is in
# tests/README.md ("Mutation check"); keep both in step.
#
# Verdicts: KILLED (at least one test failed, read from the junit XML: a <failure>, not only a setup
# <error>), KILLED-BY-TIMEOUT (the tests hung past DBOPS_MUTATION_TIMEOUT seconds, default 900: e.g. a
# DDL that waits without its lock timeout for a lock the test holds until the module returns), SURVIVED.
# First a baseline: the same tests on the unmutated code must all have passed (read from the integration
# stage's junit XML when DBOPS_MUTATION_BASELINE_JUNIT names it, else run once on an unmutated copy), or
# nothing can be concluded.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py="${DBOPS_PYTHON:-$here/.venv/bin/python}"
[ -x "$py" ] || py=$(command -v python3)
timeout_s="${DBOPS_MUTATION_TIMEOUT:-900}"
if [ -z "${DBOPS_SERVERS_STATE:-}" ]; then
  echo "mutation-check: DBOPS_SERVERS_STATE is not set (scripts/test.sh starts the servers and sets it)" >&2
  exit 2
fi
work=$(mktemp -d /tmp/dbops-mutation.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The mutations: name | what is disabled | file glob (under the copy) | regex | replacement | pytest args
# (The table is read by the Python below; fields are separated by " || ".)
cat > "$work/mutations.txt" <<'EOF'
lock_timeout_not_set || PostgreSQL sessions get no lock_timeout || plugins/module_utils/engines/postgresql/connection.py || (settings\[\s*'lock_timeout'\s*\]\s*=|set_config\(\s*'lock_timeout'|SET (?:SESSION )?lock_timeout\b) || <<lock_timeout>> || tests/integration/test_safety.py -k "pg and lock_timeout"
lock_retries_ignored || lock_retries read as 0 everywhere || plugins/**/*.py || \b(?:self\.|module\.|ctx\.)*params(?:\.get\(\s*'lock_retries'[^)]*\)|\[\s*'lock_retries'\s*\]) || 0 || tests/integration/test_safety.py -k "retr"
wait_for_lock_ignored || wait_for_lock read as 0 (fail at once) || plugins/**/*.py || \b(?:self\.|module\.|ctx\.)*params(?:\.get\(\s*'wait_for_lock'[^)]*\)|\[\s*'wait_for_lock'\s*\]) || 0 || tests/integration/test_safety.py -k "maintenance_lock or wait_for_lock"
maintenance_lock_not_taken || acquire_maintenance_lock() does nothing || plugins/**/*.py || \b[\w.]+\.acquire_maintenance_lock\( || (lambda *_a, **_k: None)( || tests/integration/test_safety.py -k "maintenance_lock"
restore_checksum_refusal_disabled || a backup whose sha256 differs from its manifest is restored anyway || plugins/**/*.py || if\s+\w+\s*!=\s*\w+(?:\.get\(\s*'sha256'\s*\)|\[\s*'sha256'\s*\])\s*: || if False: || tests/integration/test_db_restore.py -k "corrupt"
check_mode_executes || Adapter.run_step runs the statement in check mode || plugins/module_utils/engines/base.py || (def run_step\(.*?\n\s+)if self\.check_mode: || \1if False: || tests/integration/test_column_ensure.py tests/integration/test_enum_add.py -k "check"
no_log_removed || login_password is not no_log || plugins/**/*.py || (['"]?login_password['"]?\s*[=:]\s*dict\([^)]*?)no_log\s*=\s*True\s*,?\s* || \1 || tests/integration/test_safety.py -k "password_never_in_output"
EOF

"$py" - "$here" "$work" "$timeout_s" "$@" <<'PY'
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

here, work, timeout_s, only = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
muts = []
for line in open(os.path.join(work, "mutations.txt"), encoding="utf-8"):
    if line.strip():
        name, what, files, regex, repl, tests = [f.strip() for f in line.split(" || ")]
        muts.append(dict(name=name, what=what, files=files, regex=regex, repl=repl, tests=shlex.split(tests)))
unknown = [n for n in only if n not in {m["name"] for m in muts}]
if unknown:
    sys.exit("mutation-check: unknown mutation(s) %s; known: %s" % (unknown, ", ".join(m["name"] for m in muts)))
if only:
    muts = [m for m in muts if m["name"] in only]


def copy_tree(dest):
    """The work tree as it is (uncommitted changes included), without .git, build/ and caches."""
    shutil.copytree(here, dest, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "__pycache__", ".pytest_cache", ".venv", "*.pyc", "output"))


def mutate(root, m):
    total, touched = 0, []
    for path in sorted(glob.glob(os.path.join(root, m["files"]), recursive=True)):
        text = open(path, encoding="utf-8").read()
        if m["repl"] == "<<lock_timeout>>":
            # replace the GUC name, keep the statement valid: the session then sets a harmless setting
            new, n = re.subn(m["regex"], lambda mo: mo.group(0).replace("lock_timeout", "application_name"), text,
                             flags=re.S)
        else:
            new, n = re.subn(m["regex"], m["repl"], text, flags=re.S)
        if n:
            total += n
            touched.append("%s (%d)" % (os.path.relpath(path, root), n))
            with open(path, "w", encoding="utf-8") as f:
                f.write(new)
    return total, touched


def junit_counts(xml):
    try:
        root = ET.parse(xml).getroot()
    except (OSError, ET.ParseError):
        return None
    c = dict(tests=0, failures=0, errors=0, skipped=0)
    for case in root.iter("testcase"):
        c["tests"] += 1
        if case.find("failure") is not None:
            c["failures"] += 1
        elif case.find("error") is not None:
            c["errors"] += 1
        elif case.find("skipped") is not None:
            c["skipped"] += 1
    return c


def run_tests(root, args, label):
    xml = os.path.join(work, "junit-%s.xml" % label)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-x", "-n", "2", "--junitxml", xml] + args
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout_s, check=False)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = "timeout", (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    return rc, out, junit_counts(xml), time.monotonic() - t0


def collect(root, args):
    """The node ids pytest selects for args (no test runs)."""
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--collect-only"] + args,
                       cwd=root, capture_output=True, text=True, check=False, timeout=600)
    return p.returncode, [ln.strip() for ln in p.stdout.splitlines() if "::" in ln and not ln.startswith(" ")]


def junit_outcomes(xml):
    """{test id: passed|failed|skipped} of a junit XML (ids as pytest prints them)."""
    out = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        parts = case.get("classname", "").split(".")
        mods = [i for i, p in enumerate(parts) if p.startswith("test_")]
        cut = mods[0] + 1 if mods else len(parts)
        tid = "/".join(parts[:cut]) + ".py::" + "::".join(parts[cut:] + [case.get("name", "")])
        state = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                state = {"failure": "failed", "error": "failed", "skipped": "skipped"}[tag]
        out[tid] = state
    return out


problems = []
# Baseline: every selected test passes on the unmutated code. With DBOPS_MUTATION_BASELINE_JUNIT (scripts/test.sh
# passes the integration stage's junit XML) the outcomes are read from there; otherwise the tests run once on
# an unmutated copy.
base = os.path.join(work, "baseline")
copy_tree(base)
baseline_xml = os.environ.get("DBOPS_MUTATION_BASELINE_JUNIT")
outcomes = junit_outcomes(baseline_xml) if baseline_xml and os.path.exists(baseline_xml) else None
print("mutation-check: baseline (%s)" % ("from " + baseline_xml if outcomes is not None else "unmutated copy"),
      flush=True)
for m in muts:
    rc, ids = collect(base, m["tests"])
    if rc == 5 or not ids:
        problems.append("%s: its tests are not collected (renamed?): pytest %s" % (m["name"], " ".join(m["tests"])))
        continue
    m["ids"] = ids
    if outcomes is not None:
        states = {i: outcomes.get(i, "not run") for i in ids}
        wrong = {i: st for i, st in states.items() if st != "passed"}
        if wrong:
            problems.append("%s: its tests did not pass in the baseline run: %s" % (m["name"], wrong))
        else:
            print("  baseline %-36s %d passed (in the integration run)" % (m["name"], len(ids)), flush=True)
        continue
    rc, out, counts, secs = run_tests(base, m["tests"], "baseline-" + m["name"])
    if rc != 0:
        problems.append("%s: its tests do not pass on the unmutated copy (rc %s):\n%s"
                        % (m["name"], rc, out[-2500:]))
    else:
        print("  baseline %-36s %d passed (%.0fs)" % (m["name"], counts["tests"] - counts["skipped"], secs), flush=True)
        if counts["skipped"]:
            problems.append("%s: %d of its tests skip: they cannot catch anything" % (m["name"], counts["skipped"]))
if problems:
    print("\nmutation-check: cannot evaluate:\n  " + "\n  ".join(problems), file=sys.stderr)
    sys.exit(3)

results = []
for m in muts:
    root = os.path.join(work, m["name"])
    copy_tree(root)
    n, touched = mutate(root, m)
    if not n:
        print("mutation-check: ANCHOR NOT FOUND for %s (%s): no match of /%s/ in %s. The code moved: update "
              "scripts/mutation-check.sh and tests/README.md." % (m["name"], m["what"], m["regex"], m["files"]),
              file=sys.stderr)
        sys.exit(3)
    rc, out, counts, secs = run_tests(root, m["tests"], m["name"])
    if rc == "timeout":
        verdict = "KILLED-BY-TIMEOUT"
    elif rc == 0:
        verdict = "SURVIVED"
    elif rc not in (0, 5) and counts and counts["failures"]:  # 2 = interrupted by -x under xdist
        verdict = "KILLED"
    else:
        verdict = "ERROR"
    results.append((m, verdict, touched, counts, secs, out))
    print("  %-18s %-36s %s; %s (%.0fs)" % (verdict, m["name"], m["what"], ", ".join(touched), secs), flush=True)
    shutil.rmtree(root, ignore_errors=True)

bad = [r for r in results if r[1] in ("SURVIVED", "ERROR")]
for m, verdict, _t, counts, _s, out in bad:
    why = ("every test passed: no test notices that %s" % m["what"]) if verdict == "SURVIVED" else \
        "the tests broke without a test failure (setup error? %s)" % counts
    print("\nmutation-check: %s %s: %s\n%s" % (verdict, m["name"], why, out[-2000:]), file=sys.stderr)
print("mutation-check: %d mutation(s), %d killed, %d survived or broke" % (len(results), len(results) - len(bad),
                                                                           len(bad)))
sys.exit(1 if bad else 0)
PY

"""migration_lint side by side with squawk, the reference PostgreSQL migration linter (issue 13).

squawk-cli is pinned in requirements-dev.txt (SQUAWK_VERSION below); its binary is in the venv, next to the
Python running the tests. Nothing is fetched at test time.

The corpus is tests/integration/lint_corpus/postgresql: one statement per file (hazards and their safe twins).
squawk runs with its DEFAULT rule set (no --include / --exclude, no config file), --pg-version 16, twice:
as squawk assumes by default (statements not in a transaction) and with --assume-in-transaction. migration_lint
runs through Ansible on the same files with pg_version 16, ONE playbook for both modes: the corpus directory
without a tool (not in a transaction) and as sqlx migrations (tool sqlx: each file in a transaction).

Every (file, squawk rule) squawk reports must be matched by a finding of one of the migration_lint rules that
SQUAWK_TO_OURS maps it to, on the same file. A squawk rule that is missing from the map fails the test (so a new
squawk default rule is noticed when the pin moves).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from migration_batch import run_tasks

MOD = "dbops.maintenance.migration_lint"
SQUAWK_VERSION = "2.70.0"
PG_VERSION = 16
CORPUS = Path(__file__).resolve().parent / "lint_corpus" / "postgresql"
SQUAWK = Path(sys.executable).parent / "squawk"
FILES = sorted(p.name for p in CORPUS.glob("*.sql"))

# squawk rule -> the migration_lint rules that report the same hazard
SQUAWK_TO_OURS = {
    "adding-field-with-default": {"add-column-volatile-default"},
    "adding-foreign-key-constraint": {"constraint-not-valid"},
    "adding-not-nullable-field": {"set-not-null"},
    "adding-required-field": {"add-column-not-null-no-default"},
    "adding-serial-primary-key-field": {"add-unique-without-index", "add-column-volatile-default"},
    "ban-alter-domain-with-add-constraint": {"domain-constraint"},
    "ban-char-field": {"char-column"},
    "ban-concurrent-index-creation-in-transaction": {"concurrently-in-transaction"},
    "ban-create-domain-with-constraint": {"domain-constraint"},
    "ban-drop-column": {"drop-column"},
    "ban-drop-constraint": {"drop-constraint"},
    "ban-drop-database": {"drop-schema"},
    "ban-drop-not-null": {"drop-not-null"},
    "ban-drop-schema": {"drop-schema"},
    "ban-drop-table": {"drop-table"},
    "ban-duplicate-column-assignments": {"duplicate-assignment"},
    "ban-truncate-cascade": {"truncate"},
    "ban-uncommitted-transaction": {"uncommitted-transaction"},
    "changing-column-type": {"column-type-rewrite"},
    "constraint-missing-not-valid": {"constraint-not-valid", "add-unique-without-index"},
    "disallowed-unique-constraint": {"add-unique-without-index"},
    "identifier-too-long": {"identifier-too-long"},
    "prefer-bigint-over-int": {"prefer-bigint"},
    "prefer-bigint-over-smallint": {"prefer-bigint"},
    "prefer-identity": {"prefer-identity"},
    "prefer-robust-stmts": {"prefer-robust-statements"},
    "prefer-text-field": {"prefer-text-field"},
    "prefer-timestamp-tz": {"timestamp-without-time-zone"},
    "renaming-column": {"rename-column"},
    "renaming-object": {"enum-change", "rename-table", "rename-column"},
    "renaming-table": {"rename-table"},
    "require-concurrent-index-creation": {"index-not-concurrently"},
    "require-concurrent-index-deletion": {"drop-index-not-concurrently"},
    "require-concurrent-partition-detach": {"detach-partition-not-concurrently"},
    "require-concurrent-reindex": {"reindex-not-concurrently"},
    "require-enum-value-ordering": {"enum-value-ordering"},
    "require-lock-timeout": {"missing-lock-timeout"},
    "require-statement-timeout": {"missing-statement-timeout"},
    "syntax-error": {"parse-error"},
    "transaction-nesting": {"transaction-nesting"},
}

# Our severities on the corpus (not in a transaction): error only for data loss, statements that fail, and
# statements that rewrite or lock a table for as long as it is big. Everything else deploys.
ERRORS = {
    "001_volatile_default.sql": {"add-column-volatile-default"},
    "002_volatile_default_random.sql": {"add-column-volatile-default"},
    "004_generated_stored.sql": {"add-column-volatile-default"},
    "005_add_serial_pk.sql": {"add-column-volatile-default"},
    "012_add_not_null_no_default.sql": {"add-column-not-null-no-default"},
    "023_reindex.sql": {"reindex-not-concurrently"},
    "024_reindex_table.sql": {"reindex-not-concurrently"},
    "046_drop_database.sql": {"drop-schema"},
    "047_drop_schema.sql": {"drop-schema"},
    "048_drop_table.sql": {"drop-table"},
    "049_drop_column.sql": {"drop-column"},
    "050_truncate.sql": {"truncate"},
    "051_truncate_cascade.sql": {"truncate"},
    "052_delete_all.sql": {"delete-without-where"},
    "053_update_all.sql": {"update-without-where"},
    "054_update_duplicate.sql": {"duplicate-assignment"},
    "059_begin_uncommitted.sql": {"uncommitted-transaction"},
    "060_vacuum_full.sql": {"vacuum-full"},
    "061_cluster.sql": {"cluster"},
    "067_syntax_error.sql": {"parse-error"},
}


def _squawk(files_dir, in_transaction):
    cmd = [str(SQUAWK), "--pg-version", "%d.0" % PG_VERSION, "--reporter", "json"]
    if in_transaction:
        cmd.append("--assume-in-transaction")
    proc = subprocess.run(cmd + FILES, cwd=str(files_dir), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode in (0, 1, 2, 3), proc.stderr
    found = {}
    for v in json.loads(proc.stdout or "[]"):
        found.setdefault(v["file"], set()).add(v["rule_name"])
    return found


@pytest.fixture(scope="module")
def side_by_side(ansible):
    assert SQUAWK.exists(), "squawk-cli is not installed in the venv (pip install -r requirements-dev.txt)"
    version = subprocess.run([str(SQUAWK), "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert version.stdout.split()[-1] == SQUAWK_VERSION, version.stdout
    tasks = [
        dict(name="plain", module=MOD,
             args=dict(engine="postgresql", path=[str(CORPUS)], pg_version=PG_VERSION, fail_on="never",
                       max_info_findings=-1)),
        dict(name="sqlx", module=MOD,
             args=dict(engine="postgresql", path=[str(CORPUS)], tool="sqlx", pg_version=PG_VERSION, fail_on="never",
                       max_info_findings=-1)),
    ]
    res = run_tasks(ansible, tasks)
    ours = {}
    for mode in ("plain", "sqlx"):
        assert not res[mode]["failed"], res[mode]
        by_file = {}
        for f in res[mode]["findings"]:
            name = Path(f["file"]).name
            # the rule's texts are returned once per rule (result "rules"); here beside each finding
            by_file.setdefault(name, []).append(dict(f, **res[mode]["rules"][f["rule"]]))
        ours[mode] = by_file
    theirs = {"plain": _squawk(CORPUS, False), "sqlx": _squawk(CORPUS, True)}
    return theirs, ours


def test_corpus_is_one_statement_per_file():
    assert len(FILES) >= 60
    for name in FILES:
        text = (CORPUS / name).read_text()
        assert text.count(";") == 1, name


def test_every_squawk_rule_seen_is_mapped(side_by_side):
    theirs, _ours = side_by_side
    seen = set()
    for mode in theirs.values():
        for rules in mode.values():
            seen |= rules
    assert seen - set(SQUAWK_TO_OURS) == set(), "squawk rules with no counterpart in SQUAWK_TO_OURS"
    # the corpus exercises most of squawk's default rules
    assert len(seen) >= 35, sorted(seen)


@pytest.mark.parametrize("mode", ["plain", "sqlx"])
@pytest.mark.parametrize("name", FILES)
def test_we_flag_what_squawk_flags(side_by_side, mode, name):
    theirs, ours = side_by_side
    our_rules = {f["rule"] for f in ours[mode].get(name, [])}
    missing = {r: sorted(SQUAWK_TO_OURS.get(r, {"?"})) for r in theirs[mode].get(name, set())
               if not SQUAWK_TO_OURS.get(r, set()) & our_rules}
    assert not missing, "%s (%s): squawk flags %s, we flag %s" % (name, mode, missing, sorted(our_rules))
    for f in ours[mode].get(name, []):
        assert f["message"] and f["alternative"] and f["line"] == 1, f


@pytest.mark.parametrize("name", FILES)
def test_errors_only_for_data_loss_failure_or_long_locks(side_by_side, name):
    _theirs, ours = side_by_side
    errors = {f["rule"] for f in ours["plain"].get(name, []) if f["severity"] == "error"}
    assert errors == ERRORS.get(name, set()), name


def test_sqlx_mode_is_in_a_transaction(side_by_side):
    """The second mode really lints each file as run in a transaction (so the comparison with
    --assume-in-transaction means something)."""
    _theirs, ours = side_by_side
    rules = {f["rule"] for f in ours["sqlx"]["019_create_index_concurrently.sql"]}
    assert "concurrently-in-transaction" in rules
    assert "transaction-nesting" in {f["rule"] for f in ours["sqlx"]["059_begin_uncommitted.sql"]}
    assert "prefer-robust-statements" not in {f["rule"] for fs in ours["sqlx"].values() for f in fs}

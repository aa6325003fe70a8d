"""Unit tests of migration_lint's engine (no database, no ansible-playbook): front-ends, line numbers,
ignore comments, the rule context, sources of the tools' files."""

from __future__ import annotations

import pytest

from ansible_collections.dbops.maintenance.plugins.module_utils.lint import runner, sources
from ansible_collections.dbops.maintenance.plugins.module_utils.lint.model import parse_ignore
from ansible_collections.dbops.maintenance.plugins.module_utils.lint.rules import RULES, RULES_BY_ID


# Rules added for squawk parity (issue 13) that fire on almost any DDL: the tests of this file, written before
# them, look at the other rules; tests/unit/test_lint_parity.py tests these.
NOISE = ["prefer-bigint", "prefer-identity", "char-column", "prefer-text-field", "timestamp-without-time-zone",
         "prefer-robust-statements", "missing-statement-timeout", "enum-value-ordering"]


def lint(sql, engine, **kw):
    return runner.lint([sources.Source("m.sql", sql, **kw)], engine, ignore=NOISE)["findings"]


def rules_of(findings, ignored=False):
    return [(f["line"], f["rule"]) for f in findings if f["ignored"] is ignored]


def test_rule_table_is_complete():
    assert len(RULES) == len(RULES_BY_ID)
    for rule in RULES:
        assert rule.severity in ("error", "warning", "info")
        assert rule.why and rule.alternative and rule.title and rule.kinds
        assert set(rule.engines) <= {"postgresql", "mysql", "sqlite"}


@pytest.mark.parametrize("engine", ["postgresql", "mysql", "sqlite"])
def test_line_numbers_skip_leading_comments_and_blank_lines(engine):
    sql = "-- header\n\n/* block\n comment */\nDELETE FROM a;\n\n  -- c\n  UPDATE b SET x = 1;\n"
    assert rules_of(lint(sql, engine)) == [(5, "delete-without-where"), (8, "update-without-where")]


@pytest.mark.parametrize("engine", ["postgresql", "mysql", "sqlite"])
def test_parse_error_does_not_hide_later_statements(engine):
    sql = "DELETE FROM a;\nCREATE TABLE (;\nDELETE FROM b;\n"
    assert rules_of(lint(sql, engine)) == [(1, "delete-without-where"), (2, "parse-error"),
                                           (3, "delete-without-where")]


def test_unterminated_string_is_one_parse_error():
    found = lint("DELETE FROM a WHERE x = 'oops;\n", "postgresql")
    assert [f["rule"] for f in found] == ["parse-error"]


@pytest.mark.parametrize("engine", ["postgresql", "mysql", "sqlite"])
def test_ignore_comment_placements(engine):
    sql = ("-- dbops:ignore delete-without-where before the statement\n"
           "DELETE FROM a;\n"
           "DELETE FROM b; -- dbops:ignore delete-without-where trailing\n"
           "DELETE FROM c;\n"
           "DELETE FROM d /* dbops:ignore all inside */;\n")
    found = lint(sql, engine)
    assert rules_of(found, ignored=True) == [(2, "delete-without-where"), (3, "delete-without-where"),
                                             (5, "delete-without-where")]
    assert rules_of(found) == [(4, "delete-without-where")]
    assert [f["ignore_reason"] for f in found if f["ignored"]] == ["before the statement", "trailing", "inside"]


def test_mysql_hash_comment_ignore_and_strings_are_not_comments():
    sql = "DELETE FROM a; # dbops:ignore delete-without-where hash comment\nSELECT '-- dbops:ignore x y';\n"
    found = lint(sql, "mysql")
    assert rules_of(found, ignored=True) == [(1, "delete-without-where")]


def test_parse_ignore():
    assert parse_ignore(" dbops:ignore a,b the reason ") == (["a", "b"], "the reason")
    assert parse_ignore("dbops:ignore a") == (["a"], "")
    assert parse_ignore("just a comment") is None


def test_created_in_same_file_is_not_reported():
    sql = ("CREATE TABLE n (id int);\nALTER TABLE n ADD COLUMN x int NOT NULL;\nCREATE INDEX i ON n (id);\n"
           "ALTER TABLE n ADD CONSTRAINT c CHECK (id > 0);\nDROP TABLE n;\n")
    assert lint(sql, "postgresql") == []


def test_missing_lock_timeout_once_per_file_and_set_config_counts():
    sql = "ALTER TABLE a ADD COLUMN x int;\nALTER TABLE b ADD COLUMN y int;\n"
    assert rules_of(lint(sql, "postgresql")) == [(1, "missing-lock-timeout")]
    sql = "SELECT set_config('lock_timeout', '2s', false);\n" + sql
    assert lint(sql, "postgresql") == []


# the transaction tests below are not about lock_timeout (a weak lock is an info since issue 13)
NOISE_TX = NOISE + ["missing-lock-timeout"]


def lint_tx(sql, **kw):
    return runner.lint([sources.Source("m.sql", sql, **kw)], "postgresql", ignore=NOISE_TX)["findings"]


def test_transactions_explicit_wrapped_and_multi():
    idx = "CREATE INDEX CONCURRENTLY i ON t (a);"
    assert rules_of(lint_tx(idx)) == []
    assert rules_of(lint_tx(idx, wrapped=True)) == [(1, "concurrently-in-transaction")]
    # 'multi': one statement runs alone, two run as one implicit transaction
    assert rules_of(runner.lint([sources.Source("m", idx, wrapped="multi")], "postgresql", ignore=NOISE_TX)["findings"]) == []
    two = "SET lock_timeout = '1s';\n" + idx
    assert rules_of(runner.lint([sources.Source("m", two, wrapped="multi")], "postgresql", ignore=NOISE_TX)["findings"]) == [
        (2, "concurrently-in-transaction")]


def test_enum_value_in_transaction_depends_on_version():
    sql = "BEGIN;\nALTER TYPE mood ADD VALUE 'meh';\nCOMMIT;\n"
    assert rules_of(lint_tx(sql)) == [(2, "enum-value-in-transaction")]
    assert lint_tx(sql)[0]["severity"] == "warning"      # version unknown: a risk, not a certainty
    assert runner.lint([sources.Source("m", sql)], "postgresql", pg_version=11, ignore=NOISE_TX)["findings"][0]["severity"] == "error"
    assert runner.lint([sources.Source("m", sql)], "postgresql", pg_version=12, ignore=NOISE_TX)["findings"] == []


def test_mysql_enum_model_across_files():
    srcs = [sources.Source("1.sql", "CREATE TABLE o (s ENUM('a', 'b'));"),
            sources.Source("2.sql", "ALTER TABLE o MODIFY COLUMN s ENUM('a', 'b', 'c');"),
            sources.Source("3.sql", "ALTER TABLE o MODIFY COLUMN s ENUM('a', 'c');")]
    found = runner.lint(srcs, "mysql")["findings"]
    assert [(f["file"], f["rule"]) for f in found] == [("3.sql", "enum-change")]
    assert "removes 'b'" in found[0]["message"]


def test_sqlite_rebuild_pattern_is_not_data_loss_but_a_plain_drop_is():
    rebuild = ('CREATE TABLE "new_U" (id INTEGER);\nINSERT INTO "new_U" (id) SELECT id FROM "U";\n'
               'DROP TABLE "U";\nALTER TABLE "new_U" RENAME TO "U";\n')
    assert rules_of(lint(rebuild, "sqlite")) == [(3, "sqlite-table-rebuild")]     # an info since issue 13
    assert rules_of(lint('DROP TABLE "U";\n', "sqlite")) == [(1, "drop-table")]


def test_rules_and_ignore_selection():
    sql = "DELETE FROM a;\nTRUNCATE b;\n"
    only = runner.lint([sources.Source("m", sql)], "postgresql", select=["truncate"])["findings"]
    assert [f["rule"] for f in only] == ["truncate"]
    rest = runner.lint([sources.Source("m", sql)], "postgresql", ignore=["truncate", "missing-lock-timeout"] + NOISE)
    assert [f["rule"] for f in rest["findings"]] == ["delete-without-where"]


def test_summary_and_failing():
    result = runner.lint([sources.Source("m.sql", "DELETE FROM a;\nALTER TABLE b RENAME TO c;\n")], "sqlite")
    assert [f["rule"] for f in runner.failing(result["findings"], "error")] == ["delete-without-where"]
    assert len(runner.failing(result["findings"], "warning")) == 2
    assert runner.failing(result["findings"], "never") == []
    text = runner.summary(result, "error")
    assert text.splitlines()[0] == ("migration_lint failed (fail_on=error): 1 error(s), 1 warning(s), 0 info, "
                                    "0 ignored in 2 statement(s) of 1 file(s)")
    assert "m.sql:1 [error] delete-without-where" in text


@pytest.mark.parametrize("tool,text,expected", [
    ("dbmate", "-- migrate:up\nDROP TABLE a;\n-- migrate:down\nCREATE TABLE a (id int);\n", ("DROP TABLE a;", 1, True)),
    ("dbmate", "-- migrate:up transaction:false\nSELECT 1;\n-- migrate:down\n", ("SELECT 1;", 1, False)),
    ("goose", "-- +goose NO TRANSACTION\n-- +goose Up\nSELECT 1;\n-- +goose Down\nSELECT 2;\n", ("SELECT 1;", 2, False)),
    ("goose", "-- +goose Up\n-- +goose StatementBegin\nSELECT 1;\n-- +goose StatementEnd\n",
     ("-- +goose StatementBegin\nSELECT 1;\n-- +goose StatementEnd\n", 1, True)),
    ("sqlx", "-- no-transaction\nSELECT 1;\n", ("-- no-transaction\nSELECT 1;\n", 0, False)),
    ("flyway", "SELECT 1;\n", ("SELECT 1;\n", 0, True)),
])
def test_up_part(tool, text, expected):
    sql, offset, transaction = sources.up_part(tool, text)
    assert (sql.strip(), offset, transaction) == (expected[0].strip(), expected[1], expected[2])


def test_python_migration_strings(tmp_path):
    path = tmp_path / "0002_x.py"
    path.write_text("from django.db import migrations\n\n\nclass Migration(migrations.Migration):\n"
                    "    atomic = False\n    operations = [\n        migrations.RunSQL(\n"
                    "            sql=['DELETE FROM a', \"UPDATE b SET c = 1\"],\n        ),\n    ]\n")
    strings, atomic = sources._py_strings(path.read_text(), str(path))  # pylint: disable=protected-access
    assert strings == [(8, "DELETE FROM a"), (8, "UPDATE b SET c = 1")] and atomic is False


# --- bounds (issue 10 items 12 and 15): big sources take a linear path with the same findings ------------------

def _mixed(engine, n):
    from random import Random
    rnd = Random(7)
    out = ["CREATE TABLE t0 (id int, name varchar(10));"]
    for i in range(n):
        choice = rnd.randrange(6)
        if choice == 0:
            out.append("ALTER TABLE t%d ADD COLUMN flag INT NOT NULL;" % (i % 7))
        elif choice == 1:
            out.append("-- dbops:ignore drop-table replaced\nDROP TABLE old%d;" % i)
        elif choice == 2:
            out.append("DELETE FROM t%d;" % (i % 5))
        elif choice == 3:
            out.append("CREATE TABLE oops (id int,,);")
        else:
            out.append("INSERT INTO t0 (id, name) VALUES (%d, 'a;b -- %d');" % (i, i))
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("engine", ["postgresql", "mysql", "sqlite"])
def test_big_path_gives_the_same_findings(engine, monkeypatch):
    from ansible_collections.dbops.maintenance.plugins.module_utils.lint import bigfile
    text = _mixed(engine, 400)
    small = runner.lint([sources.Source("m.sql", text)], engine)
    monkeypatch.setattr(bigfile, "BIG_SOURCE_CHARS", 0)
    monkeypatch.setattr(bigfile, "CHUNK_CHARS", 300)
    big = runner.lint([sources.Source("m.sql", text)], engine)
    assert big["findings"] == small["findings"]
    assert big["statements"] == small["statements"]


def test_copy_from_stdin_data_is_skipped_and_inserts_are_not_parsed():
    data = "".join("%d\tname ; %d\n" % (i, i) for i in range(50000))
    rows = "".join("INSERT INTO t (a, b) VALUES (%d, 'x');\n" % i for i in range(30000))
    text = "CREATE TABLE t (a int, b text);\nCOPY t (a, b) FROM stdin;\n" + data + "\\.\n" + rows + "DROP TABLE u;\n"
    out = runner.lint([sources.Source("dump.sql", text)], "postgresql", ignore=NOISE)
    assert [(f["rule"], f["line"]) for f in out["findings"]] == [
        ("drop-table", 50000 + 30000 + 4), ("missing-lock-timeout", 50000 + 30000 + 4)]


def test_statement_over_max_statement_size_is_a_too_large_finding():
    big = "CREATE VIEW v AS SELECT " + " + ".join(["1"] * 5000) + ";\nDROP TABLE u;\n"
    out = runner.lint([sources.Source("m.sql", big)], "postgresql", max_statement_size=10000)
    assert [(f["rule"], f["line"], f["severity"]) for f in out["findings"]][:2] == [
        ("too-large", 1, "error"), ("drop-table", 2, "error")]
    assert "more than max_statement_size (10000)" in out["findings"][0]["message"]


def test_file_over_max_file_size_is_not_read(tmp_path):
    path = tmp_path / "big.sql"
    path.write_text("DROP TABLE t;\n" * 1000)
    srcs = sources.collect(paths=[str(path)], max_file_size=1000)
    out = runner.lint(srcs, "sqlite")
    assert [f["rule"] for f in out["findings"]] == ["too-large"]
    assert "more than max_file_size (1000)" in out["findings"][0]["message"]
    assert runner.lint(srcs, "sqlite", ignore=["too-large"])["findings"] == []


@pytest.mark.parametrize("engine", ["postgresql", "mysql", "sqlite"])
@pytest.mark.parametrize("deep", ["SELECT " + "(" * 100000 + "1" + ")" * 100000,
                                  "SELECT " + "+".join(["1"] * 40000)])
def test_deep_nesting_is_a_finding_not_a_crash(engine, deep):
    out = runner.lint([sources.Source("m.sql", deep + ";\nDROP TABLE x;\n")], engine)
    rules = [(f["rule"], f["line"]) for f in out["findings"]]
    assert ("drop-table", 2) in rules
    errors = [f for f in out["findings"] if f["rule"] == "parse-error"]
    assert all("nested too deeply" in f["message"] for f in errors)


@pytest.mark.parametrize("engine", ["mysql", "sqlite"])
def test_an_explicit_null_column_is_not_a_not_null_column(engine):
    # Prisma writes `ADD COLUMN ... NULL` for an optional field: sqlglot parses NULL as
    # NotNullColumnConstraint(allow_null=True), which is not a NOT NULL without a default.
    nullable = lint("ALTER TABLE t ADD COLUMN c varchar(191) NULL;\n", engine)
    not_null = lint("ALTER TABLE t ADD COLUMN c varchar(191) NOT NULL;\n", engine)
    assert "add-column-not-null-no-default" not in [r for _line, r in rules_of(nullable)]
    assert "add-column-not-null-no-default" in [r for _line, r in rules_of(not_null)]

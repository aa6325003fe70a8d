"""Unit tests of the rules added in issue 13: context across statements, transactions, versions."""

from __future__ import annotations

import pytest

from ansible_collections.dbops.maintenance.plugins.module_utils.lint import runner, sources


def found(sql, wrapped=False, **kw):
    out = runner.lint([sources.Source("m.sql", sql, wrapped=wrapped)], "postgresql", **kw)["findings"]
    return [(f["line"], f["rule"], f["severity"]) for f in out]


def rules(sql, rule, **kw):
    return [(line, sev) for line, r, sev in found(sql, **kw) if r == rule]


def test_set_not_null_after_validated_check_in_separate_transactions_is_fine():
    sql = ("ALTER TABLE u ADD CONSTRAINT u_e_nn CHECK (e IS NOT NULL) NOT VALID;\n"
           "ALTER TABLE u VALIDATE CONSTRAINT u_e_nn;\n"
           "ALTER TABLE u ALTER COLUMN e SET NOT NULL;\n")
    assert rules(sql, "set-not-null") == []
    assert rules(sql, "set-not-null", pg_version=11) == [(3, "warning")]     # PG 11 scans anyway
    # all in one transaction: the scan is skipped but the ACCESS EXCLUSIVE lock is held through VALIDATE
    txn = "BEGIN;\n" + sql + "COMMIT;\n"
    assert rules(txn, "set-not-null") == [(4, "warning")]
    assert rules(sql, "set-not-null", wrapped=True) == [(3, "warning")]
    # a check on another column proves nothing
    other = sql.replace("ALTER COLUMN e", "ALTER COLUMN f")
    assert rules(other, "set-not-null") == [(3, "warning")]


def test_validate_in_the_transaction_of_not_valid_is_reported():
    sql = ("ALTER TABLE o ADD CONSTRAINT o_fk FOREIGN KEY (u) REFERENCES u (id) NOT VALID;\n"
           "ALTER TABLE o VALIDATE CONSTRAINT o_fk;\n")
    assert rules(sql, "constraint-not-valid") == []
    assert rules(sql, "constraint-not-valid", wrapped=True) == [(2, "warning")]
    assert rules("BEGIN;\n" + sql.replace(";\nALTER", ";\nCOMMIT;\nALTER"), "constraint-not-valid") == []


def test_enum_value_used_in_the_transaction_that_adds_it():
    sql = "ALTER TYPE mood ADD VALUE 'meh';\nUPDATE t SET m = 'meh' WHERE id = 1;\n"
    assert rules(sql, "enum-value-in-transaction", wrapped=True, pg_version=16) == [(2, "error")]
    assert rules(sql, "enum-value-in-transaction", pg_version=16) == []            # autocommit: fine
    split = "BEGIN;\nALTER TYPE mood ADD VALUE 'meh';\nCOMMIT;\nUPDATE t SET m = 'meh' WHERE id = 1;\n"
    assert rules(split, "enum-value-in-transaction", pg_version=16) == []


def test_version_aware_defaults_reindex_detach():
    add = "ALTER TABLE u ADD COLUMN a int DEFAULT 0;\n"
    assert rules(add, "add-column-volatile-default") == []
    assert rules(add, "add-column-volatile-default", pg_version=10) == [(1, "error")]
    assert rules("ALTER TABLE u ADD COLUMN t timestamptz DEFAULT now();", "add-column-volatile-default") == []
    assert rules("ALTER TABLE u ADD COLUMN t float8 DEFAULT random();", "add-column-volatile-default") == [
        (1, "error")]
    assert rules("ALTER TABLE u ADD COLUMN t int DEFAULT my_func();", "add-column-volatile-default") == [
        (1, "error")]
    detach = "ALTER TABLE e DETACH PARTITION e1;"
    assert rules(detach, "detach-partition-not-concurrently", pg_version=13) == [(1, "info")]
    assert rules(detach, "detach-partition-not-concurrently", pg_version=14) == [(1, "warning")]
    msgs = runner.lint([sources.Source("m", "REINDEX TABLE t;")], "postgresql", pg_version=11)["findings"]
    assert "no REINDEX CONCURRENTLY" in [f for f in msgs if f["rule"] == "reindex-not-concurrently"][0]["message"]


def test_new_table_takes_no_lock_worth_reporting():
    sql = ("CREATE TABLE n (id bigint PRIMARY KEY, e text);\n"
           "ALTER TABLE n ADD COLUMN t uuid DEFAULT gen_random_uuid();\n"
           "ALTER TABLE n ALTER COLUMN e SET NOT NULL;\n"
           "ALTER TABLE n ADD CONSTRAINT n_e UNIQUE (e);\n"
           "CREATE INDEX n_e_idx ON n (e);\n")
    got = {r for _l, r, _s in found(sql)}
    assert not got & {"add-column-volatile-default", "set-not-null", "add-unique-without-index",
                      "index-not-concurrently", "missing-lock-timeout"}


def test_identifier_length_counts_bytes():
    name = "\u00e9" * 32                    # 32 characters, 64 bytes
    assert rules('CREATE TABLE "%s" (id bigint);' % name, "identifier-too-long") == [(1, "warning")]
    assert rules('CREATE TABLE "%s" (id bigint);' % name[:31], "identifier-too-long") == []
    assert rules("CREATE TABLE %s (id bigint);" % ("a" * 63), "identifier-too-long") == []


def test_uncommitted_and_nested_begin():
    assert rules("BEGIN;\nALTER TABLE u ADD COLUMN IF NOT EXISTS a text;\n", "uncommitted-transaction") == [
        (1, "error")]
    assert rules("BEGIN;\nSELECT 1;\nCOMMIT;\n", "transaction-nesting", wrapped=True) == [(1, "warning")]
    assert rules("BEGIN;\nSELECT 1;\nCOMMIT;\n", "transaction-nesting") == []


# Django's and Alembic's SQL comes from the tools themselves, generated at test time:
# tests/integration/test_lint_orm.py. Prisma and Rails cannot run here (Prisma's schema engine is a binary
# downloaded from binaries.prisma.sh, Rails a gem from rubygems.org: neither is reachable), so these are
# renderings, written by hand after the SQL the tools print: Prisma 5 `prisma migrate dev` migration.sql files
# (the shape of tests/integration/fixtures/lint/prisma_pg) and Rails 7 db/structure.sql of the listed
# migration methods. They are not the tools' output.
@pytest.mark.parametrize("sql", [
    # Prisma migrate dev: new required field with default, new relation, @unique, @@index, enum value
    'ALTER TABLE "User" ADD COLUMN "role" TEXT NOT NULL DEFAULT \'user\';\n'
    'ALTER TABLE "Post" ADD COLUMN "authorId" INTEGER;\n'
    'CREATE UNIQUE INDEX "User_email_key" ON "User"("email");\n'
    'CREATE INDEX "Post_authorId_idx" ON "Post"("authorId");\n'
    'ALTER TABLE "Post" ADD CONSTRAINT "Post_authorId_fkey" FOREIGN KEY ("authorId") REFERENCES "User"("id") '
    'ON DELETE SET NULL ON UPDATE CASCADE;\n'
    'ALTER TABLE "User" ALTER COLUMN "name" SET NOT NULL;\n',
    'CREATE TABLE "Order" ("id" SERIAL NOT NULL, "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, '
    '"note" VARCHAR(255), CONSTRAINT "Order_pkey" PRIMARY KEY ("id"));\n',
    # Rails (structure.sql of add_reference, add_column with default, change_column_null, add_index)
    'ALTER TABLE "comments" ADD "post_id" bigint;\nCREATE INDEX "index_comments_on_post_id" ON "comments" ("post_id");\n'
    'ALTER TABLE "comments" ADD CONSTRAINT "fk_rails_2fd19c0db7" FOREIGN KEY ("post_id") REFERENCES "posts" ("id");\n'
    'ALTER TABLE "comments" ADD "published" boolean DEFAULT FALSE NOT NULL;\n'
    'ALTER TABLE "comments" ALTER COLUMN "body" SET NOT NULL;\n',
], ids=["prisma-changes", "prisma-create", "rails"])
def test_orm_generated_sql_for_common_changes_is_not_refused(sql):
    out = runner.lint([sources.Source("m.sql", sql)], "postgresql", pg_version=16)["findings"]
    assert runner.failing(out, "error") == [], [(f["rule"], f["message"]) for f in out if f["severity"] == "error"]
    assert out      # but they are not silent: warnings say what locks


@pytest.mark.parametrize("version,sql,expected", [
    ("5.7.44", "ALTER TABLE t ADD COLUMN x INT;", ["warning"]),
    ("8.0.11", "ALTER TABLE t ADD COLUMN x INT;", ["warning"]),
    ("8.0.12", "ALTER TABLE t ADD COLUMN x INT;", []),
    ("8.0.20", "ALTER TABLE t ADD COLUMN x INT AFTER id;", ["warning"]),
    ("8.0.29", "ALTER TABLE t ADD COLUMN x INT AFTER id;", []),
    ("10.2.44", "ALTER TABLE t ADD COLUMN x INT;", ["warning"]),
    ("10.3.2", "ALTER TABLE t ADD COLUMN x INT;", []),
    ("10.11.6-MariaDB", "ALTER TABLE t ADD COLUMN x INT;", []),
    (None, "ALTER TABLE t ADD COLUMN x INT;", []),
    ("5.7.44", "ALTER TABLE t ADD COLUMN x INT, ALGORITHM=INSTANT;", []),     # the server refuses: no copy
])
def test_mysql_instant_add_column_is_version_aware(version, sql, expected):
    out = runner.lint([sources.Source("m.sql", sql)], "mysql", mysql_version=version)["findings"]
    assert [f["severity"] for f in out if f["rule"] == "mysql-add-column-rebuild"] == expected


def test_mysql_version_parsing():
    from ansible_collections.dbops.maintenance.plugins.module_utils.lint.rules import parse_mysql_version
    assert parse_mysql_version("8.0.36-log") == (8, 0, 36)
    assert parse_mysql_version("10.11") == (10, 11, 0)
    assert parse_mysql_version("eight") is None


def test_sqlite_foreign_keys_and_rebuild_are_per_source():
    srcs = [sources.Source("1.sql", "PRAGMA foreign_keys=OFF;\n"), sources.Source("2.sql", "PRAGMA foreign_keys=ON;\n")]
    out = runner.lint(srcs, "sqlite")["findings"]
    assert [(f["file"], f["rule"]) for f in out] == [("1.sql", "sqlite-foreign-keys-off")]


def test_index_built_concurrently_then_used_by_the_constraint_is_fine():
    sql = ("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);\n"
           "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_idx;\n")
    got = {r for _l, r, _s in found(sql)}
    assert not got & {"add-unique-without-index", "index-not-concurrently", "concurrently-in-transaction"}
    plain = sql.replace(" USING INDEX users_email_idx", " (email)")
    assert "add-unique-without-index" in {r for _l, r, _s in found(plain)}


def test_style_findings_are_one_per_statement_and_robust_one_per_migration():
    sql = ("CREATE TABLE t (a varchar(10), b varchar(20), c varchar(30));\n"
           "ALTER TABLE u ADD COLUMN x text;\nALTER TABLE v ADD COLUMN y text;\n")
    out = runner.lint([sources.Source("m.sql", sql)], "postgresql")["findings"]
    text = [f for f in out if f["rule"] == "prefer-text-field"]
    assert len(text) == 1 and 'more such column(s): b, c' in text[0]["message"]
    robust = [f for f in out if f["rule"] == "prefer-robust-statements"]
    assert [f["line"] for f in robust] == [1] and "line(s) 2, 3" in robust[0]["message"]

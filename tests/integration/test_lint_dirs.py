"""migration_lint through Ansible on real-world-shaped migration directories of every tool
migration_status knows (tests/integration/fixtures/lint/<tool>), on inline ignores, rule
selection, fail_on, unparseable SQL, and only_pending against real servers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

MOD = "dbops.maintenance.migration_lint"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lint"

# (tool, directory, engine) -> {(file relative to the directory, line, rule, ignored)}
EXPECTED = {
    ("prisma", "prisma_pg", "postgresql"): {
        ("20240215093000_add_tokens/migration.sql", 2, "enum-value-in-transaction", False),
        ("20240215093000_add_tokens/migration.sql", 5, "add-column-not-null-no-default", False),
        ("20240215093000_add_tokens/migration.sql", 5, "missing-lock-timeout", False),
        ("20240215093000_add_tokens/migration.sql", 8, "index-not-concurrently", False),
        ("20240301120000_drop_sessions/migration.sql", 3, "drop-table", True),
        ("20240301120000_drop_sessions/migration.sql", 3, "missing-lock-timeout", False),
        ("20240301120000_drop_sessions/migration.sql", 6, "drop-column", False),
    },
    # Prisma's SQLite table rebuild (create new_User, copy, drop, rename) is not data loss.
    ("prisma", "prisma_sqlite", "sqlite"): {
        ("20240210000000_make_email_required/migration.sql", 17, "add-column-not-null-no-default", False),
    },
    ("flyway", "flyway", "postgresql"): {
        ("V1_1__backfill_status.sql", 1, "update-without-where", False),
        ("V2__index_and_rewrite.sql", 2, "concurrently-in-transaction", False),
        ("V2__index_and_rewrite.sql", 3, "column-type-rewrite", False),
    },
    # only .up.sql files; appending an ENUM value is fine, inserting one is not
    ("golang-migrate", "golang_migrate", "mysql"): {
        ("000002_order_status.up.sql", 2, "enum-change", False),
        ("000003_cleanup.up.sql", 1, "delete-without-where", False),
        ("000003_cleanup.up.sql", 2, "rename-table", False),
    },
    # '-- no-transaction' makes CONCURRENTLY legal in the second file, not in the third
    ("sqlx", "sqlx", "postgresql"): {
        ("20240103000000_users_name_idx.sql", 1, "concurrently-in-transaction", False),
    },
    # only the migrate:up part; transaction:false makes CONCURRENTLY legal
    ("dbmate", "dbmate", "postgresql"): {
        ("20240103000000_items_kind.sql", 3, "add-column-not-null-no-default", False),
        ("20240103000000_items_kind.sql", 4, "rename-column", False),
    },
    # only the +goose Up part; ADD VALUE on a type created in the same transaction is fine;
    # NO TRANSACTION makes CONCURRENTLY legal; a .go migration is reported as code
    ("goose", "goose", "postgresql"): {
        ("00003_widgets_fk.sql", 4, "constraint-not-valid", False),
        ("00004_seed.go", 1, "code-migration", False),
    },
    # the SQL strings of op.execute are linted, at their line in the .py file
    ("alembic", "alembic/versions", "postgresql"): {
        ("1a2b3c4d5e6f_create_invoices.py", 1, "code-migration", False),
        ("2b3c4d5e6f7a_invoice_state.py", 1, "code-migration", False),
        ("2b3c4d5e6f7a_invoice_state.py", 13, "enum-value-in-transaction", False),
        ("2b3c4d5e6f7a_invoice_state.py", 14, "update-without-where", False),
    },
    # RunSQL strings; atomic = False makes CONCURRENTLY legal
    ("django", "django", "postgresql"): {
        ("0001_initial.py", 1, "code-migration", False),
        ("0002_book_isbn_index.py", 1, "code-migration", False),
        ("0002_book_isbn_index.py", 12, "truncate", False),
        ("0002_book_isbn_index.py", 12, "missing-lock-timeout", False),
    },
    ("knex", "knex", "mysql"): {("20240101000000_create_posts.js", 1, "code-migration", False)},
    ("rails", "rails", "sqlite"): {("20240101000000_create_comments.rb", 1, "code-migration", False)},
}

# Found since issue 13 (squawk parity), on top of EXPECTED: style, timeout and re-run rules, info or warning
# only, so none of these directories is refused by them. Reviewed one by one.
ADDED = {
    # Prisma's SQLite table rebuild: not data loss, but a copy of every row under the write lock (info)
    ("prisma", "prisma_sqlite", "sqlite"): {
        ("20240210000000_make_email_required/migration.sql", 10, "sqlite-table-rebuild", False),
    },
    ("prisma", "prisma_pg", "postgresql"): {
        ("20240101000000_init/migration.sql", 5, "prefer-bigint", False),           # SERIAL primary key: warning
        ("20240101000000_init/migration.sql", 5, "prefer-identity", False),
        ("20240101000000_init/migration.sql", 5, "timestamp-without-time-zone", False),
        ("20240101000000_init/migration.sql", 13, "prefer-bigint", False),          # an INTEGER column: info
        ("20240101000000_init/migration.sql", 13, "prefer-identity", False),
        ("20240215093000_add_tokens/migration.sql", 2, "enum-value-ordering", False),
        ("20240215093000_add_tokens/migration.sql", 2, "missing-lock-timeout", False),   # info: a catalog lock
        ("20240215093000_add_tokens/migration.sql", 2, "missing-statement-timeout", False),
        ("20240215093000_add_tokens/migration.sql", 5, "prefer-bigint", False),
        ("20240301120000_drop_sessions/migration.sql", 3, "missing-statement-timeout", False),
    },
    ("flyway", "flyway", "postgresql"): {
        ("V1__init.sql", 1, "prefer-identity", False),
        ("V2__index_and_rewrite.sql", 2, "missing-statement-timeout", False),
    },
    ("sqlx", "sqlx", "postgresql"): {
        ("20240102000000_users_email_idx.sql", 2, "missing-lock-timeout", False),
        ("20240102000000_users_email_idx.sql", 2, "missing-statement-timeout", False),
        ("20240102000000_users_email_idx.sql", 2, "prefer-robust-statements", False),   # -- no-transaction file
        ("20240103000000_users_name_idx.sql", 1, "missing-lock-timeout", False),
        ("20240103000000_users_name_idx.sql", 1, "missing-statement-timeout", False),
    },
    ("dbmate", "dbmate", "postgresql"): {
        ("20240101000000_create_items.sql", 2, "prefer-bigint", False),
        ("20240101000000_create_items.sql", 2, "prefer-identity", False),
        ("20240102000000_items_idx.sql", 2, "missing-lock-timeout", False),
        ("20240102000000_items_idx.sql", 2, "missing-statement-timeout", False),
        ("20240102000000_items_idx.sql", 2, "prefer-robust-statements", False),
        ("20240103000000_items_kind.sql", 3, "missing-statement-timeout", False),
    },
    ("goose", "goose", "postgresql"): {
        ("00001_create_widgets.sql", 3, "prefer-bigint", False),
        ("00001_create_widgets.sql", 3, "prefer-identity", False),
        ("00002_widgets_enum.sql", 3, "missing-lock-timeout", False),
        ("00002_widgets_enum.sql", 3, "missing-statement-timeout", False),
        ("00003_widgets_fk.sql", 4, "missing-statement-timeout", False),
        ("00003_widgets_fk.sql", 4, "prefer-robust-statements", False),     # names line 5 too
    },
    ("alembic", "alembic/versions", "postgresql"): {
        ("2b3c4d5e6f7a_invoice_state.py", 13, "enum-value-ordering", False),
        ("2b3c4d5e6f7a_invoice_state.py", 13, "missing-lock-timeout", False),
        ("2b3c4d5e6f7a_invoice_state.py", 13, "missing-statement-timeout", False),
    },
    ("django", "django", "postgresql"): {
        ("0002_book_isbn_index.py", 9, "missing-lock-timeout", False),
        ("0002_book_isbn_index.py", 9, "missing-statement-timeout", False),
        ("0002_book_isbn_index.py", 9, "prefer-robust-statements", False),
        ("0002_book_isbn_index.py", 12, "missing-statement-timeout", False),
    },
}


@pytest.mark.parametrize("tool,directory,engine", list(EXPECTED), ids=["-".join(k[:2]) for k in EXPECTED])
def test_tool_directory(ansible, tool, directory, engine):
    path = FIXTURES / directory
    r = ansible.run(MOD, dict(engine=engine, path=[str(path)], tool=tool, fail_on="never"), expect_failure=False)
    got = {(str(Path(f["file"]).relative_to(path)), f["line"], f["rule"], f["ignored"]) for f in r["findings"]}
    key = (tool, directory, engine)
    assert got == EXPECTED[key] | ADDED.get(key, set()), r["summary"]
    new_rules = {f[2] for f in ADDED.get(key, ())}
    assert not [f for f in r["findings"] if f["rule"] in new_rules and f["severity"] == "error"]
    assert all(f.get("migration") for f in r["findings"])
    if tool == "prisma" and engine == "postgresql":
        ignored = [f for f in r["findings"] if f["ignored"]][0]
        assert ignored["ignore_reason"] == "sessions moved to Redis in release 41; table backed up in OPS-1234"
        assert "[ignored] drop-table: sessions moved to Redis" in r["summary"]
        # ADD VALUE in Prisma's multi-statement script: a warning while the server version is unknown
        assert r["counts"] == dict(error=2, warning=6, info=9, ignored=1)


def test_fail_on_fails_the_task_with_the_summary(ansible):
    path = FIXTURES / "prisma_pg"
    r = ansible.run(MOD, dict(engine="postgresql", path=[str(path)], tool="prisma"), expect_failure=True)
    assert r["msg"].startswith("migration_lint failed (fail_on=error): 2 error(s), 6 warning(s)")
    assert "20240301120000_drop_sessions/migration.sql:6 [error] drop-column" in r["msg"]
    assert "Instead:" in r["msg"] and r["findings"]
    # only warnings selected: fail_on=error passes, fail_on=warning fails
    args = dict(engine="postgresql", path=[str(path)], tool="prisma",
                rules=["index-not-concurrently", "missing-lock-timeout"])
    assert ansible.run(MOD, args, expect_failure=False)["counts"]["warning"] == 3
    ansible.run(MOD, dict(args, fail_on="warning"), expect_failure=True)
    # with the target version known to be before 12, ADD VALUE in a transaction is a certain failure
    r = ansible.run(MOD, dict(engine="postgresql", path=[str(path)], tool="prisma", pg_version=11, fail_on="never",
                              rules=["enum-value-in-transaction"]), expect_failure=False)
    assert [(f["severity"], f["line"]) for f in r["findings"]] == [("error", 2)]
    assert "the target is PostgreSQL 11" in r["findings"][0]["message"]


def test_sql_string_inline_ignores_rules_and_unparseable(ansible):
    sql = "\n".join([
        "SET lock_timeout = '1s';",
        "DELETE FROM audit_log; -- dbops:ignore delete-without-where audit log is rebuilt nightly",
        "/* dbops:ignore truncate */",
        "TRUNCATE sessions;",
        "-- dbops:ignore drop-table,drop-column two-step cleanup agreed in ADR-7",
        "ALTER TABLE users DROP COLUMN legacy;",
        "CREATE TABLE broken (id int,,);",
        "UPDATE users SET flag = true;",
    ])
    r = ansible.run(MOD, dict(engine="postgresql", sql=sql, ignore=["update-without-where"]), expect_failure=True)
    by_rule = {f["rule"]: f for f in r["findings"]}
    assert by_rule["delete-without-where"]["ignored"] is True
    assert by_rule["delete-without-where"]["ignore_reason"] == "audit log is rebuilt nightly"
    assert by_rule["delete-without-where"]["line"] == 2
    # an ignore without a reason does not count, and says so
    assert by_rule["truncate"]["ignored"] is False and "gives no reason" in by_rule["truncate"]["message"]
    assert by_rule["drop-column"]["ignored"] is True and by_rule["drop-column"]["ignore_reason"].startswith("two-step")
    # the unparseable statement is a finding at its line, and the statements after it are still checked
    assert by_rule["parse-error"]["line"] == 7 and by_rule["parse-error"]["severity"] == "error"
    assert "syntax error" in by_rule["parse-error"]["message"]
    assert "update-without-where" not in by_rule     # ignore option
    assert r["counts"] == dict(error=2, warning=0, info=2, ignored=2)     # info: statement_timeout, IF EXISTS
    assert r["statements"] == 6 and r["files"] == 1


def test_globs_and_bad_options(ansible, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "001.sql").write_text("ALTER TABLE t RENAME TO u;\n")
    (tmp_path / "a" / "002.sql").write_text("SELECT 1;\n")
    (tmp_path / "b.txt").write_text("DROP TABLE t;\n")
    r = ansible.run(MOD, dict(engine="sqlite", path=[str(tmp_path / "**" / "*.sql")]), expect_failure=False)
    assert [(Path(f["file"]).name, f["rule"]) for f in r["findings"]] == [("001.sql", "rename-table")]
    assert r["files"] == 2
    r = ansible.run(MOD, dict(engine="sqlite", sql="SELECT 1", rules=["drop-tabel"]), expect_failure=True)
    assert "not a rule" in r["msg"] and "drop-table" in r["msg"]
    r = ansible.run(MOD, dict(engine="mysql", path=[str(tmp_path / "nope")]), expect_failure=True)
    assert "does not exist on the host" in r["msg"]


PRISMA_PG_DDL = ('CREATE TABLE "_prisma_migrations" ("id" VARCHAR(36) PRIMARY KEY NOT NULL, "checksum" VARCHAR(64) '
                 'NOT NULL, "finished_at" TIMESTAMPTZ, "migration_name" VARCHAR(255) NOT NULL, "logs" TEXT, '
                 '"rolled_back_at" TIMESTAMPTZ, "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(), '
                 '"applied_steps_count" INTEGER NOT NULL DEFAULT 0)')


def test_only_pending_prisma_postgresql(ansible, pg_db):
    path = FIXTURES / "prisma_pg"
    pg_db.execute(PRISMA_PG_DDL)
    for name in ("20240101000000_init", "20240215093000_add_tokens"):
        checksum = hashlib.sha256((path / name / "migration.sql").read_bytes()).hexdigest()
        pg_db.execute("INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, "
                      "applied_steps_count) VALUES (%s, %s, now(), %s, 1)", (name[:20], checksum, name))
    r = ansible.run(MOD, dict(pg_db.params, path=[str(path)], tool="prisma", only_pending=True, fail_on="never"),
                    expect_failure=False)
    assert r["pending"] == ["20240301120000_drop_sessions"]
    assert {f["migration"] for f in r["findings"]} == {"20240301120000_drop_sessions"}
    assert {f["rule"] for f in r["findings"]} == {"drop-table", "drop-column", "missing-lock-timeout",
                                                  "missing-statement-timeout"}


def test_only_pending_golang_migrate_mysql(ansible, mysql_db):
    path = FIXTURES / "golang_migrate"
    mysql_db.execute("CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)")
    mysql_db.execute("INSERT INTO schema_migrations VALUES (2, false)")
    r = ansible.run(MOD, dict(mysql_db.params, path=[str(path)], tool="golang-migrate", only_pending=True),
                    expect_failure=True)
    assert r["pending"] == ["3"]
    assert [(f["rule"], f["migration"]) for f in r["findings"]] == [("delete-without-where", "3"),
                                                                    ("rename-table", "3")]
    # an empty history: everything is pending (and the enum model still sees 000001 before 000002)
    mysql_db.execute("DELETE FROM schema_migrations")
    r = ansible.run(MOD, dict(mysql_db.params, path=[str(path)], tool="golang-migrate", only_pending=True,
                              fail_on="never"), expect_failure=False)
    assert sorted(r["pending"]) == ["1", "2", "3"]
    assert [f["rule"] for f in r["findings"]] == ["enum-change", "delete-without-where", "rename-table"]

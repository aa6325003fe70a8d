"""migration_apply's parsing without servers: statements cut as the engine's lexer cuts them, the tools'
markers (dbmate, goose, sqlx), golang-migrate's advisory lock id, Flyway placeholders."""

from __future__ import annotations

import zlib

import pytest

from ansible_collections.dbops.maintenance.plugins.module_utils.engines import scripts
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations import dbmate, flyway, golang_migrate, goose
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.base import Local

SCRIPT = ("CREATE TABLE a (b varchar(10));\n-- it's; a comment\n"
          "INSERT INTO a VALUES ('x;y'), ('it''s; fine');\n/* c; */\n")


def test_split_mysql_keeps_strings_and_comments_whole():
    assert scripts.split(SCRIPT, "mysql") == [
        "CREATE TABLE a (b varchar(10))",
        "-- it's; a comment\nINSERT INTO a VALUES ('x;y'), ('it''s; fine')",
    ]


def test_split_sqlite_keeps_trigger_body_whole():
    text = SCRIPT + "CREATE TRIGGER t AFTER INSERT ON a BEGIN\n INSERT INTO a VALUES ('1');\n DELETE FROM a;\nEND;\n-- end\n"
    out = scripts.split(text, "sqlite")
    assert out[0] == "CREATE TABLE a (b varchar(10));"
    assert out[1].endswith("('it''s; fine');")
    assert out[2].startswith("/* c; */\nCREATE TRIGGER") and out[2].endswith("END;")
    assert len(out) == 3


def test_split_postgresql_is_one_script():
    assert scripts.split(SCRIPT, "postgresql") == [SCRIPT]
    assert scripts.split("  \n", "postgresql") == []


def test_statement_at_finds_the_failing_statement():
    text = "CREATE TABLE a (id int);\nINSERT INTO nowhere VALUES (1);\n"
    pos = text.index("nowhere") + 1
    assert scripts.statement_at(text, pos).startswith("INSERT INTO nowhere")
    assert scripts.statement_at(text, None) is None


def test_dbmate_sections_and_transaction_option():
    body, tx = dbmate.parse_up("-- migrate:up transaction:false\nALTER TYPE e ADD VALUE 'x';\n-- migrate:down\nSELECT 1;\n")
    assert body.strip() == "ALTER TYPE e ADD VALUE 'x';" and tx is False
    body, tx = dbmate.parse_up("--migrate:up\nSELECT 1;\n")
    assert body.strip() == "SELECT 1;" and tx is True
    with pytest.raises(DbopsError):
        dbmate.parse_up("SELECT 1;\n")


def test_goose_statements_blocks_and_no_transaction():
    text = ("-- +goose NO TRANSACTION\n-- +goose Up\n-- a comment\nCREATE TABLE a (id int);\n\n"
            "-- +goose StatementBegin\nCREATE FUNCTION f() RETURNS int AS $$\nBEGIN\n  RETURN 1;\nEND;\n"
            "$$ LANGUAGE plpgsql;\n-- +goose StatementEnd\nINSERT INTO a\nVALUES (1);\n-- +goose Down\nDROP TABLE a;\n")
    statements, tx = goose.parse_up(text)
    assert tx is False
    assert statements[0] == "CREATE TABLE a (id int);"
    assert statements[1].startswith("CREATE FUNCTION") and statements[1].endswith("LANGUAGE plpgsql;")
    assert statements[2] == "INSERT INTO a\nVALUES (1);"
    assert len(statements) == 3
    with pytest.raises(DbopsError):
        goose.parse_up("CREATE TABLE a (id int);\n")
    with pytest.raises(DbopsError):
        goose.parse_up("-- +goose Up\nCREATE TABLE a (id int)\n")


def test_golang_migrate_advisory_lock_id():
    # database/util.go: crc32.ChecksumIEEE(names joined by NUL, additional names first) * 1486364155, uint32
    expect = (zlib.crc32(b"public\x00schema_migrations\x00app") * 1486364155) & 0xFFFFFFFF
    assert golang_migrate.advisory_lock_id("app", "public", "schema_migrations") == expect
    lock = golang_migrate.TOOL.tool_lock("postgresql", {"database": "app"})
    assert lock["key"] == expect and lock["kind"] == "pg_advisory"
    assert golang_migrate.TOOL.tool_lock("mysql", {"database": "app"})["name"] == str(
        (zlib.crc32(b"app:schema_migrations") * 1486364155) & 0xFFFFFFFF)


def test_flyway_placeholders():
    local = Local("1", "V1__a.sql", "/x/V1__a.sql", 0)
    params = {"database": "shop", "placeholders": {"owner": "app"}}
    out = flyway.replace_placeholders("GRANT ALL ON ${flyway:defaultSchema}.t TO ${owner}; -- ${flyway:filename}",
                                      local, "postgresql", params)
    assert out == "GRANT ALL ON public.t TO app; -- V1__a.sql"
    with pytest.raises(DbopsError, match=r"\$\{missing\}"):
        flyway.replace_placeholders("SELECT ${missing}", local, "postgresql", params)


def test_sqlx_lock_id_matches_sqlx():
    # sqlx-postgres generate_lock_id: 0x3d32ad9e * crc32(database name); vectors from a project pinning it
    from ansible_collections.dbops.maintenance.plugins.module_utils.migrations import sqlx
    assert sqlx.TOOL.tool_lock("postgresql", {"database": "zone"})["key"] == 2_771_974_297_191_923_538
    assert sqlx.TOOL.tool_lock("postgresql", {"database": "zone_test"})["key"] == 1_283_835_657_316_171_598
    assert sqlx.TOOL.tool_lock("sqlite", {"database": "x"}) is None


# One read per migration: what the lint gate reads is what runs (and what the checksum was computed from).
PINNED = {
    # tool: (file name, text as linted, the rewrite that lands on disk after the lint)
    "dbmate": ("20240101000000_a.sql", "-- migrate:up\nCREATE TABLE a (id int);\n-- migrate:down\n",
               "-- migrate:up\nDROP TABLE users;\n-- migrate:down\n"),
    "goose": ("00001_a.sql", "-- +goose Up\nCREATE TABLE a (id int);\n", "-- +goose Up\nDROP TABLE users;\n"),
    "golang-migrate": ("1_a.up.sql", "CREATE TABLE a (id int);\n", "DROP TABLE users;\n"),
    "flyway": ("V1__a.sql", "CREATE TABLE a (id int);\n", "DROP TABLE users;\n"),
    "sqlx": ("1_a.sql", "CREATE TABLE a (id int);\n", "DROP TABLE users;\n"),
    "prisma": ("20240101000000_a/migration.sql", "CREATE TABLE a (id int);\n", "DROP TABLE users;\n"),
}


@pytest.mark.parametrize("tool", sorted(PINNED))
def test_apply_runs_the_bytes_the_lint_gate_read(tool, tmp_path):
    from ansible_collections.dbops.maintenance.plugins.module_utils.lint import sources
    from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.base import pin
    from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.registry import TOOLS
    name, text, rewrite = PINNED[tool]
    t = TOOLS[tool]
    params = {"database": "app.sqlite3"}
    dirs = {}
    for which, content in (("run", text), ("rewritten", rewrite)):
        path = tmp_path / which / name
        path.parent.mkdir(parents=True)
        path.write_text(content, encoding="utf-8")
        dirs[which] = (path, str(tmp_path / which))
    [local] = t.scan(dirs["run"][1], params)
    linted = sources.local_sources(tool, local, dirs["run"][1], data=pin(local))
    assert "CREATE TABLE a" in linted[0].text and "DROP" not in linted[0].text
    dirs["run"][0].write_text(rewrite, encoding="utf-8")  # changed on disk between the gate and the run
    unit = t.deploy(local, "sqlite", t.deploy_state([], "sqlite", params), params)
    ran = "\n".join(unit.pieces)
    assert "CREATE TABLE a" in ran and "DROP" not in ran, ran
    if t.has_checksum:  # the checksum recorded is that of the bytes that ran, not of the file as it is now
        [now] = t.scan(dirs["rewritten"][1], params)
        assert local.checksum != now.checksum


def test_pin_refuses_an_unreadable_migration_clearly(tmp_path):
    from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.base import pin
    (tmp_path / "20240101000000_a.sql").mkdir()  # a directory with a migration's name
    local = Local("20240101000000", "20240101000000_a.sql", str(tmp_path / "20240101000000_a.sql"))
    with pytest.raises(DbopsError, match="Cannot read the migration 20240101000000_a.sql.*Nothing was run"):
        pin(local)
    with pytest.raises(DbopsError, match="Cannot read the migration"):  # lint: false reads it the same way
        dbmate.TOOL.deploy(local, "sqlite", {}, {})


@pytest.mark.parametrize("piece,word", [
    ("CREATE TABLE a (id int);", "CREATE"),
    ("  -- a comment; PRAGMA x\n  /* another\n one */ insert into a values (1);", "INSERT"),
    ("/* unterminated", ""),
    ("-- only a comment", ""),
    ("PRAGMA foreign_keys = ON;", "PRAGMA"),
    ("\tvacuum;", "VACUUM"),
    ("BEGIN;", "BEGIN"),
    ("SAVEPOINT x;", "SAVEPOINT"),
])
def test_sqlite_first_word(piece, word):
    assert scripts.first_word(piece) == word


def test_sqlite_group_takes_only_plain_statements():
    """A SQLite migration is grouped (migrations/group.py) only when every statement starts with a DDL/DML word:
    a PRAGMA, VACUUM, ATTACH or transaction control statement anywhere makes it run alone."""
    import sqlite3
    from ansible_collections.dbops.maintenance.plugins.module_utils.migrations import group
    from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.base import Unit

    class Db:  # the adapter's two attributes group.groupable reads
        engine = "sqlite"
        conn = sqlite3.connect(":memory:")

    local = Local("1", "1_a.sql", "/nonexistent")
    plain = ["CREATE TABLE a (id int);", "INSERT INTO a VALUES (1);", "-- note\nALTER TABLE a ADD b int;"]
    assert group.groupable(Db, Unit(local, plain, True, inside=lambda ms: []))
    for odd in ("PRAGMA foreign_keys = OFF;", "VACUUM;", "ATTACH 'x.db' AS x;", "COMMIT;", "SAVEPOINT s;",
                "SELECT 1;"):
        assert not group.groupable(Db, Unit(local, plain + [odd], True)), odd
    assert not group.groupable(Db, Unit(local, plain, False)), "a transaction:false migration runs alone"
    assert not group.groupable(Db, Unit(local, plain, True, before=["x"])), "rows written before it"
    assert not group.groupable(Db, Unit(local, plain, True, after=lambda ms: ["x"])), "rows written after it"
    assert not group.groupable(Db, Unit(local, [], True)), "an empty migration"

    class Pg(Db):
        engine = "postgresql"

    assert not group.groupable(Pg, Unit(local, plain, True)), "PostgreSQL is not grouped"
    assert group.seconds({"lock_timeout": 0.1}) == 0.05 and group.seconds({"lock_timeout": 5}) == 0.2
    assert group.seconds({}) == 0.2

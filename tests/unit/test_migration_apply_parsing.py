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

"""migration_lint's version-aware rules with only_pending, through Ansible against real PostgreSQL 15/16 and
MariaDB 10.11: the server's own answer (its version, and MySQL vs MariaDB) decides, not the option."""

from __future__ import annotations

import pytest

MOD = "dbops.maintenance.migration_lint"


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


def migrations(tmp_path, sql, tool="golang-migrate"):
    path = tmp_path / "migrations"
    path.mkdir()
    if tool == "dbmate":    # dbmate runs a migration in one transaction
        (path / "20240101000000_change.sql").write_text("-- migrate:up\n" + sql + "-- migrate:down\n")
    else:
        (path / "000001_change.up.sql").write_text(sql)
        (path / "000001_change.down.sql").write_text("SELECT 1;\n")
    return str(path)


def rules(result):
    return [(f["rule"], f["severity"]) for f in result["findings"]]


def test_mariadb_version_and_flavour_come_from_the_server(ansible, mysql_db, tmp_path):
    server = mysql_db.query("SELECT VERSION()")[0][0]
    assert "mariadb" in server.lower()
    mysql_db.execute("CREATE TABLE orders (id BIGINT PRIMARY KEY)")
    path = migrations(tmp_path, "ALTER TABLE orders ADD COLUMN note VARCHAR(20);\n")
    told = dict(path=[path], tool="golang-migrate", engine="mysql", mysql_version="10.2", fail_on="never",
                ignore=["prefer-robust-statements", "missing-lock-timeout"])
    # Not connected: the option is all the linter knows. MariaDB 10.2 rebuilds the table for ADD COLUMN.
    r = ansible.run(MOD, told, expect_failure=False)
    assert rules(r) == [("mysql-add-column-rebuild", "warning")]
    assert "MariaDB 10.2" in r["findings"][0]["message"]
    assert "server_version" not in r
    # Connected (only_pending): MariaDB 10.11 adds the column instantly; the option is overruled, with a warning.
    r = ansible.run(MOD, dict(mysql_db.params, only_pending=True, **told), expect_failure=False)
    assert r["pending"] == ["1"]
    assert rules(r) == []
    assert r["server_version"] == dict(engine="mysql", flavour="mariadb", version=server.split("-")[0])
    assert any("mysql_version=10.2, but the server is MariaDB" in w for w in r.get("warnings", []))


def test_mysql_version_text_names_the_flavour(ansible, tmp_path):
    # 8.0.11 is MySQL before INSTANT ADD COLUMN; "5.5.5-10.2.44-MariaDB"-style texts without the word are
    # not guessed: a major version from 10 on is MariaDB's.
    path = migrations(tmp_path, "ALTER TABLE orders ADD COLUMN note VARCHAR(20);\n")
    base = dict(path=[path], tool="golang-migrate", engine="mysql", fail_on="never",
                ignore=["prefer-robust-statements", "missing-lock-timeout"])
    r = ansible.run(MOD, dict(base, mysql_version="8.0.11"), expect_failure=False)
    assert rules(r) == [("mysql-add-column-rebuild", "warning")] and "MySQL 8.0.11" in r["findings"][0]["message"]
    r = ansible.run(MOD, dict(base, mysql_version="10.2.44-MariaDB-log"), expect_failure=False)
    assert rules(r) == [("mysql-add-column-rebuild", "warning")] and "MariaDB 10.2" in r["findings"][0]["message"]
    r = ansible.run(MOD, dict(base, mysql_version="8.0.12"), expect_failure=False)
    assert rules(r) == []


def test_pg_version_comes_from_the_server(ansible, pg_db, tmp_path):
    major = int(pg_db.query("SHOW server_version_num")[0][0]) // 10000
    pg_db.execute("CREATE TYPE mood AS ENUM ('sad', 'ok')")
    path = migrations(tmp_path, "ALTER TYPE mood ADD VALUE 'happy' AFTER 'ok';\n", tool="dbmate")
    told = dict(path=[path], tool="dbmate", engine="postgresql", pg_version=11, fail_on="never",
                ignore=["missing-lock-timeout", "missing-statement-timeout"])
    r = ansible.run(MOD, told, expect_failure=False)
    assert rules(r) == [("enum-value-in-transaction", "error")]
    assert "PostgreSQL 11" in r["findings"][0]["message"]
    r = ansible.run(MOD, dict(pg_db.params, only_pending=True, **told), expect_failure=False)
    assert rules(r) == []
    assert r["server_version"] == dict(engine="postgresql", flavour="postgresql", version=str(major))
    assert any("pg_version=11, but the server is PostgreSQL %d" % major in w for w in r.get("warnings", []))

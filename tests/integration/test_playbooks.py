"""playbooks/schema_fix.yml as an operator runs it: check mode, the fix, then an idempotent re-run."""

from __future__ import annotations

import re
from pathlib import Path

PLAYBOOK = Path(__file__).resolve().parents[2] / "playbooks" / "schema_fix.yml"


def recap(result):
    m = re.search(r"localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", result.stdout)
    assert m, result.stdout[-2000:] + result.stderr[-2000:]
    return dict(ok=int(m[1]), changed=int(m[2]), failed=int(m[4]))


def conn_vars(db):
    p = db.params
    return {"dbops_engine": p["engine"], "dbops_login_host": p["login_host"], "dbops_login_port": p["login_port"],
            "dbops_login_user": p["login_user"], "dbops_login_password": p["login_password"],
            "dbops_database": p["database"], "dbops_hosts": "localhost"}


def test_schema_fix_playbook_postgresql(ansible, pg_db):
    pg_db.execute('''CREATE TYPE "CredentialType" AS ENUM ('API_KEY', 'COOKIE')''')
    pg_db.execute('CREATE TABLE "ExternalCredential" (id serial PRIMARY KEY, type "CredentialType")')
    pg_db.execute('''INSERT INTO "ExternalCredential" (type) VALUES ('COOKIE')''')
    extra = dict(conn_vars(pg_db),
                 dbops_enums=[{"name": "CredentialType", "values": ["PERSONAL_ACCESS_TOKEN"]}],
                 dbops_columns=[{"table": "ExternalCredential", "column": "rotatedAt", "type": "timestamptz"},
                                {"table": "ExternalCredential", "column": "rotation_days", "type": "int",
                                 "nullable": False, "default": "90"}])

    def state():
        return (pg_db.query('SELECT unnest(enum_range(NULL::"CredentialType"))::text'),
                pg_db.query("SELECT column_name, data_type, is_nullable, column_default FROM "
                            "information_schema.columns WHERE table_name = 'ExternalCredential' ORDER BY 1"))

    before = state()
    r = ansible.playbook(PLAYBOOK, extra_vars=extra, check=True, diff=True)
    assert r.rc == 0 and recap(r)["changed"] == 2, r.stdout[-3000:]
    assert state() == before
    r = ansible.playbook(PLAYBOOK, extra_vars=extra)
    assert r.rc == 0 and recap(r)["changed"] == 2
    enum, cols = state()
    assert enum == [("API_KEY",), ("COOKIE",), ("PERSONAL_ACCESS_TOKEN",)]
    assert ("rotation_days", "integer", "NO", "90") in cols and ("rotatedAt", "timestamp with time zone", "YES", None) in cols
    r = ansible.playbook(PLAYBOOK, extra_vars=extra)
    assert r.rc == 0 and recap(r)["changed"] == 0


def test_schema_fix_playbook_mariadb_duplicate_column_case(ansible, mysql_db):
    mysql_db.execute("CREATE TABLE shipment_records (id int PRIMARY KEY, shipmentFile varchar(191) NULL)")
    extra = dict(conn_vars(mysql_db),
                 dbops_columns=[{"table": "shipment_records", "column": "shipmentFile", "type": "varchar(191)"}])
    r = ansible.playbook(PLAYBOOK, extra_vars=extra)
    assert r.rc == 0 and recap(r)["changed"] == 0, r.stdout[-3000:]
    # A different definition is refused and reported, nothing changes.
    before = mysql_db.query("SHOW CREATE TABLE shipment_records")
    extra["dbops_columns"][0]["type"] = "varchar(255)"
    r = ansible.playbook(PLAYBOOK, extra_vars=extra)
    assert r.rc != 0 and recap(r)["failed"] == 1
    assert "exists with another definition" in r.stdout
    assert mysql_db.query("SHOW CREATE TABLE shipment_records") == before


def test_schema_fix_playbook_indexes_and_constraints_postgresql(ansible, pg_db):
    # seed 004's repair without a reset: the foreign key that drift removed comes back NOT VALID + VALIDATE, with
    # the index it needs built CONCURRENTLY; check mode changes nothing, the re-run changes nothing.
    pg_db.execute("CREATE TABLE users_sync (id int PRIMARY KEY)")
    pg_db.execute("CREATE TABLE quotas (id int PRIMARY KEY, user_id int)")
    pg_db.execute("INSERT INTO users_sync VALUES (1), (2)")
    pg_db.execute("INSERT INTO quotas VALUES (10, 1), (11, 2)")
    extra = dict(conn_vars(pg_db),
                 dbops_indexes=[{"table": "quotas", "name": "quotas_user_id_idx", "columns": ["user_id"]}],
                 dbops_constraints=[{"table": "quotas", "name": "quotas_user_id_fkey", "type": "foreign_key",
                                     "columns": ["user_id"], "references": {"table": "users_sync", "columns": ["id"]},
                                     "on_delete": "cascade"}])

    def state():
        return (pg_db.query("SELECT indexname::text, indexdef FROM pg_indexes WHERE tablename = 'quotas' ORDER BY 1"),
                pg_db.query("SELECT conname::text, convalidated, pg_get_constraintdef(oid) FROM pg_constraint "
                            "WHERE conrelid = 'quotas'::regclass AND contype = 'f'"))

    before = state()
    r = ansible.playbook(PLAYBOOK, extra_vars=extra, check=True, diff=True)
    assert r.rc == 0 and recap(r)["changed"] == 2, r.stdout[-3000:]
    assert "CREATE INDEX CONCURRENTLY" in r.stdout and "NOT VALID" in r.stdout, r.stdout[-3000:]
    assert state() == before
    r = ansible.playbook(PLAYBOOK, extra_vars=extra)
    assert r.rc == 0 and recap(r)["changed"] == 2, r.stdout[-3000:]
    indexes, fks = state()
    assert [i[0] for i in indexes] == ["quotas_pkey", "quotas_user_id_idx"]
    assert fks == [("quotas_user_id_fkey", True, "FOREIGN KEY (user_id) REFERENCES users_sync(id) ON DELETE CASCADE")]
    r = ansible.playbook(PLAYBOOK, extra_vars=extra)
    assert r.rc == 0 and recap(r)["changed"] == 0, r.stdout[-3000:]

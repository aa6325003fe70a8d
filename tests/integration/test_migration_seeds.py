"""The two seed incidents of the migration-history issue, as playbooks against real servers."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "migrations"
SHIPMENT = "20250821015630_add_shipment_file_field"


def conn_vars(db):
    return {"dbops_" + k: v for k, v in db.params.items()}


def test_prisma_shipment_file_marked_applied_on_mariadb(ansible, mysql_db, tmp_path):
    db = mysql_db
    path = tmp_path / "prisma"
    shutil.copytree(FIXTURES / "prisma", path)
    # The incident: the migration added the column, then failed (P3018/P3009): a row without finished_at.
    db.execute((path / "20250101000000_init" / "migration.sql").read_text())
    db.execute((path / SHIPMENT / "migration.sql").read_text())
    playbook_vars = conn_vars(db)
    setup = ansible.run("dbops.maintenance.migration_resolve", dict(
        db.params, tool="prisma", migrations_path=str(path), migration="20250101000000_init", create_table=True),
        expect_failure=False)
    assert setup["changed"]
    db.execute("INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, logs, applied_steps_count) "
               "VALUES (%s, %s, %s, UTC_TIMESTAMP(3), %s, 0)",
               (str(uuid.uuid4()), "0" * 64, SHIPMENT,
                "Duplicate column name 'shipmentFile' (1060)"))
    playbook = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/dbops.maintenance.all: {}
  vars:
    conn: &conn
      engine: "{{ dbops_engine }}"
      login_host: "{{ dbops_login_host }}"
      login_port: "{{ dbops_login_port }}"
      login_user: "{{ dbops_login_user }}"
      login_password: "{{ dbops_login_password }}"
      database: "{{ dbops_database }}"
  tasks:
    - name: The history shows the failed migration
      dbops.maintenance.migration_status:
        <<: *conn
        tool: prisma
        migrations_path: %(path)s
      register: before
    - name: The column the migration adds is there, as the migration defines it
      dbops.maintenance.column_ensure:
        <<: *conn
        table: shipment_records
        column: shipmentFile
        type: varchar(191)
        nullable: true
      register: column
    - name: So mark it applied (prisma migrate resolve --applied)
      dbops.maintenance.migration_resolve:
        <<: *conn
        tool: prisma
        migrations_path: %(path)s
        migration: %(m)s
      when: column is not changed
    - name: Clean now
      dbops.maintenance.migration_status:
        <<: *conn
        tool: prisma
        migrations_path: %(path)s
        fail_on: [failed, pending, unknown, modified]
      register: after
    - name: Report
      ansible.builtin.debug:
        msg: "SEED {{ {'before': before.failed_migrations, 'after': after.clean, 'summary': after.summary} | to_json }}"
""" % dict(path=path, m=SHIPMENT)
    res = ansible.playbook(playbook, extra_vars=playbook_vars)
    assert res.rc == 0, res.output[-4000:]
    line = [x for x in res.stdout.splitlines() if "SEED" in x][0]
    got = json.loads(line.split("SEED ", 1)[1].rstrip('"').replace('\\"', '"'))
    assert got["before"] == [SHIPMENT] and got["after"] is True, got
    rows = db.query("SELECT finished_at IS NOT NULL, rolled_back_at IS NOT NULL, checksum, logs "
                    "FROM _prisma_migrations WHERE migration_name = %s ORDER BY started_at", (SHIPMENT,))
    assert len(rows) == 2
    failed_row, new_row = sorted(rows, key=lambda r: r[0])
    assert failed_row[:2] == (0, 1), "the failed attempt is marked rolled back"
    import hashlib  # pylint: disable=import-outside-toplevel
    assert new_row[:2] == (1, 0) and new_row[2] == hashlib.sha256(
        (path / SHIPMENT / "migration.sql").read_bytes()).hexdigest() and new_row[3] == ""


def test_alembic_unknown_revision_reported_and_repaired(ansible, pg_db, tmp_path):
    db = pg_db
    versions = tmp_path / "versions"
    versions.mkdir()
    shutil.copy(FIXTURES / "alembic" / "versions" / "001_initial_schema.py", versions)
    db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
               "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))")
    db.execute("INSERT INTO alembic_version VALUES ('e3c92c171920')")
    playbook = """
- hosts: localhost
  gather_facts: false
  vars:
    conn: &conn
      engine: "{{ dbops_engine }}"
      login_host: "{{ dbops_login_host }}"
      login_port: "{{ dbops_login_port }}"
      login_user: "{{ dbops_login_user }}"
      login_password: "{{ dbops_login_password }}"
      database: "{{ dbops_database }}"
      tool: alembic
      migrations_path: %(path)s
  tasks:
    - name: Diagnose
      dbops.maintenance.migration_status:
        <<: *conn
      register: diag
    - name: Stamp without purge is refused
      dbops.maintenance.migration_resolve:
        <<: *conn
        revision: 001_initial_schema
      register: refused
      ignore_errors: true
    - name: Repair (alembic stamp --purge 001_initial_schema)
      dbops.maintenance.migration_resolve:
        <<: *conn
        revision: 001_initial_schema
        purge: true
      when: "'e3c92c171920' in diag.unknown"
    - name: Gate
      dbops.maintenance.migration_status:
        <<: *conn
        fail_on: [unknown, pending, failed]
      register: gate
    - name: Report
      ansible.builtin.debug:
        msg: "SEED {{ {'unknown': diag.unknown, 'refused': refused.msg, 'current': gate.current} | to_json }}"
""" % dict(path=versions)
    res = ansible.playbook(playbook, extra_vars=conn_vars(db))
    assert res.rc == 0, res.output[-4000:]
    line = [x for x in res.stdout.splitlines() if "SEED" in x][0]
    got = json.loads(line.split("SEED ", 1)[1].rstrip('"').replace('\\"', '"'))
    assert got["unknown"] == ["e3c92c171920"] and got["current"] == ["001_initial_schema"], got
    assert "Can't locate revision identified by 'e3c92c171920'" in got["refused"] and "purge: true" in got["refused"]
    assert db.query("SELECT version_num FROM alembic_version") == [("001_initial_schema",)]

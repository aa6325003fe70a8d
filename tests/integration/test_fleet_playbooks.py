"""The focused playbooks (enum_fix, migration_resolve, backup, rollback, verify) as an operator or AWX runs them:
flat extra vars only, through ansible-playbook, against real servers. The whole-fleet behaviour (canary, rehearsal,
check mode over many hosts) is proven by the molecule scenarios; these tests pin each playbook's contract."""

from __future__ import annotations

import glob
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest


PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


def recap(result, host="localhost"):
    m = re.search(host + r"\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", result.stdout)
    assert m, result.stdout[-3000:] + result.stderr[-2000:]
    return dict(ok=int(m[1]), changed=int(m[2]), failed=int(m[4]))


def conn_vars(db, tmp_path):
    p = db.params
    out = {"dbops_engine": p["engine"], "dbops_database": p["database"], "dbops_hosts": "localhost",
           "dbops_backup_dir": str(tmp_path / "backups"), "dbops_report_dir": str(tmp_path / "reports"),
           "dbops_preflight_min_free_mb": 1}
    for key in ("login_host", "login_port", "login_user", "login_password"):
        if p.get(key) is not None:
            out["dbops_" + key] = p[key]
    return out


def reports(tmp_path):
    return [json.loads(Path(f).read_text()) for f in sorted(glob.glob(str(tmp_path / "reports" / "*" / "report.json")))]


def manifests(tmp_path):
    return sorted(glob.glob(str(tmp_path / "backups" / "*.manifest.json")))


def test_enum_fix_playbook_awx_style_extra_vars(ansible, pg_db, tmp_path):
    """Seed 1 with flat survey answers: a comma string of values; backup, fix, verify, report; re-run is a no-op."""
    pg_db.execute('''CREATE TYPE "CredentialType" AS ENUM ('API_KEY', 'COOKIE')''')
    pg_db.execute('CREATE TABLE "ExternalCredential" (id serial PRIMARY KEY, type "CredentialType")')
    pg_db.execute('''INSERT INTO "ExternalCredential" (type) VALUES ('COOKIE'), ('API_KEY')''')
    extra = dict(conn_vars(pg_db, tmp_path), dbops_enum_name="CredentialType",
                 dbops_enum_values="PERSONAL_ACCESS_TOKEN, OAUTH_APP", dbops_report_run_id="run1")
    r = ansible.playbook(PLAYBOOKS / "enum_fix.yml", extra_vars=extra)
    assert r.rc == 0, r.stdout[-4000:]
    assert pg_db.query('SELECT unnest(enum_range(NULL::"CredentialType"))::text') == [
        ("API_KEY",), ("COOKIE",), ("PERSONAL_ACCESS_TOKEN",), ("OAUTH_APP",)]
    pg_db.execute('''INSERT INTO "ExternalCredential" (type) VALUES ('PERSONAL_ACCESS_TOKEN')''')
    # One fresh backup, its sha256 true to the file, recorded in the report with the statement that ran.
    [manifest] = manifests(tmp_path)
    m = json.loads(Path(manifest).read_text())
    backup_file = Path(manifest).parent / m["file"]
    assert hashlib.sha256(backup_file.read_bytes()).hexdigest() == m["sha256"]
    [report] = reports(tmp_path)
    [host] = report["hosts"]
    assert host["outcome"] == "changed" and report["summary"]["changed"] == 1
    assert host["backup"]["path"] == str(backup_file) and host["backup"]["sha256"] == m["sha256"]
    statements = [q for c in host["changes"] if not c["plan"] for q in c["queries"]]
    assert statements == ['ALTER TYPE "public"."CredentialType" ADD VALUE IF NOT EXISTS \'PERSONAL_ACCESS_TOKEN\'',
                          'ALTER TYPE "public"."CredentialType" ADD VALUE IF NOT EXISTS \'OAUTH_APP\''], statements
    assert host["checks"]["failed"] == 0 and host["checks"]["passed"] >= 2
    html = (tmp_path / "reports" / "run1" / "report.html").read_text()
    assert "localhost" in html and m["sha256"][:12] in html
    # Secrets: the password is in no report and no output.
    password = pg_db.params["login_password"]
    assert password not in (tmp_path / "reports" / "run1" / "report.json").read_text() and password not in html
    assert password not in r.stdout + r.stderr
    # The re-run: the plan changes nothing, so no backup, no change.
    extra["dbops_report_run_id"] = "run2"
    r = ansible.playbook(PLAYBOOKS / "enum_fix.yml", extra_vars=extra)
    assert r.rc == 0 and recap(r)["changed"] == 0, r.stdout[-4000:]
    assert len(manifests(tmp_path)) == 1
    assert reports(tmp_path)[1]["hosts"][0]["outcome"] == "unchanged"


def test_backup_then_rollback_from_a_named_backup(ansible, sqlite_db, tmp_path):
    sqlite_db.execute("CREATE TABLE accounts (id integer PRIMARY KEY, balance integer)")
    sqlite_db.execute("INSERT INTO accounts (balance) VALUES (10), (20), (30)")
    extra = conn_vars(sqlite_db, tmp_path)
    r = ansible.playbook(PLAYBOOKS / "backup.yml", extra_vars=extra)
    assert r.rc == 0 and recap(r)["changed"] >= 1, r.stdout[-4000:]
    [manifest] = manifests(tmp_path)
    # The damage the runbook rolls back from.
    sqlite_db.execute("DELETE FROM accounts WHERE balance > 10")
    sqlite_db.execute("CREATE TABLE junk (x int)")
    # Without a named backup: a clear refusal, nothing restored.
    r = ansible.playbook(PLAYBOOKS / "rollback.yml", extra_vars=extra)
    assert r.rc != 0 and "Set dbops_rollback_backup" in r.stdout
    assert sqlite_db.query("SELECT count(*) FROM accounts") == [(1,)]
    r = ansible.playbook(PLAYBOOKS / "rollback.yml", extra_vars=dict(extra, dbops_rollback_backup=manifest))
    assert r.rc == 0 and recap(r)["changed"] >= 1, r.stdout[-4000:]
    assert sqlite_db.query("SELECT balance FROM accounts ORDER BY id") == [(10,), (20,), (30,)]
    assert sqlite_db.query("SELECT name FROM sqlite_master WHERE name = 'junk'") == []


def test_verify_playbook_catches_the_empty_sqlite_file(ansible, tmp_path):
    """Seed 3: a release skipped its migrations and left a 0-byte SQLite file."""
    empty = tmp_path / "app.db"
    empty.write_bytes(b"")
    extra = {"dbops_engine": "sqlite", "dbops_database": str(empty), "dbops_hosts": "localhost"}
    r = ansible.playbook(PLAYBOOKS / "verify.yml", extra_vars=extra)
    assert r.rc != 0 and "empty database: no tables" in r.stdout, r.stdout[-3000:]
    assert empty.stat().st_size == 0


def test_preflight_refuses_when_the_backup_would_not_fit(ansible, sqlite_db, tmp_path):
    sqlite_db.execute("CREATE TABLE t (x int)")
    extra = dict(conn_vars(sqlite_db, tmp_path), dbops_preflight_min_free_mb=1 << 40)
    r = ansible.playbook(PLAYBOOKS / "backup.yml", extra_vars=extra)
    assert r.rc != 0 and "MiB needed" in r.stdout and "Free some space" in r.stdout, r.stdout[-3000:]
    assert not (tmp_path / "backups").exists()


def test_migration_resolve_playbook_seed_prisma_on_mariadb(ansible, mysql_db, tmp_path):
    """Seed 2: the column exists, the Prisma migration that adds it failed; ensure the column, mark it applied."""
    name = "20240315120000_add_shipment_file"
    mig = tmp_path / "migrations" / name
    mig.mkdir(parents=True)
    (mig / "migration.sql").write_text("ALTER TABLE `shipment_records` ADD COLUMN `shipmentFile` VARCHAR(191) NULL;\n")
    mysql_db.execute("CREATE TABLE shipment_records (id int PRIMARY KEY, shipmentFile varchar(191) NULL)")
    extra = dict(conn_vars(mysql_db, tmp_path), dbops_migration_tool="prisma",
                 dbops_migrations_path=str(tmp_path / "migrations"), dbops_migration_name=name,
                 dbops_columns=[{"table": "shipment_records", "column": "shipmentFile", "type": "varchar(191)"}])
    # The history as Prisma left it: the migration started, failed (no finished_at), never rolled back.
    mysql_db.execute(
        "CREATE TABLE _prisma_migrations (id VARCHAR(36) PRIMARY KEY NOT NULL, checksum VARCHAR(64) NOT NULL, "
        "finished_at DATETIME(3), migration_name VARCHAR(255) NOT NULL, logs TEXT, rolled_back_at DATETIME(3), "
        "started_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), applied_steps_count INTEGER UNSIGNED NOT NULL DEFAULT 0)")
    mysql_db.execute(
        "INSERT INTO _prisma_migrations (id, checksum, migration_name, logs, applied_steps_count) VALUES "
        "('0b0e6b8e-0000-4000-8000-000000000001', 'x', %s, 'Duplicate column name shipmentFile', 0)", (name,))
    r = ansible.playbook(PLAYBOOKS / "migration_resolve.yml", extra_vars=extra)
    assert r.rc == 0, r.stdout[-5000:]
    rows = mysql_db.query("SELECT migration_name, finished_at IS NOT NULL, rolled_back_at IS NULL FROM _prisma_migrations "
                          "ORDER BY started_at")
    assert (name, 1, 1) in rows, rows
    [report] = reports(tmp_path)
    host = report["hosts"][0]
    assert host["outcome"] == "changed" and host["migrations"]["clean"] is True, host
    assert [c["step"] for c in host["changes"] if not c["plan"]] == ["migration_repair"]
    r = ansible.playbook(PLAYBOOKS / "migration_resolve.yml", extra_vars=extra)
    assert r.rc == 0 and recap(r)["changed"] == 0, r.stdout[-4000:]


def test_preflight_installs_a_missing_driver_only_when_allowed(ansible, pg_db, tmp_path):
    """A host whose Python lacks psycopg: a clear refusal, or pip installs it (from PyPI) when allowed."""
    if pg_db.server.name != "pg15":
        pytest.skip("the driver is the host's, not the server's: one PostgreSQL server is enough")
    venv = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    inventory = f"localhost ansible_connection=local ansible_python_interpreter={venv}/bin/python\n"
    play = ("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
            "    - ansible.builtin.include_role:\n        name: dbops.maintenance.preflight\n")
    extra = conn_vars(pg_db, tmp_path)
    r = ansible.playbook(play, extra_vars=extra, inventory=inventory)
    assert r.rc != 0 and "Failed to import the required Python library" in r.stdout
    assert "dbops_preflight_install_drivers" in r.stdout, r.stdout[-3000:]
    r = ansible.playbook(play, extra_vars=dict(extra, dbops_preflight_install_drivers=True), inventory=inventory)
    assert r.rc == 0, r.stdout[-4000:]
    # The driver was installed, and the connection made with it.
    assert re.search(r"TASK \[dbops\.maintenance\.preflight : Install the Python driver on the host\][^\n]*\n(changed|ok): ", r.stdout)
    assert re.search(r"TASK \[dbops\.maintenance\.preflight : Connect again with the driver installed\][^\n]*\nok: ", r.stdout)
    assert subprocess.run([f"{venv}/bin/python", "-c", "import psycopg"], check=False).returncode == 0


def test_migration_review_refuses_a_drop_table_then_rehearses_a_safe_fix(ansible, sqlite_db, tmp_path):
    """Seed 5: review pending migrations (DROP TABLE refused), rehearse the fix on a copy; production untouched."""
    sqlite_db.execute("CREATE TABLE notes (id integer PRIMARY KEY, body text)")
    sqlite_db.execute("INSERT INTO notes (body) VALUES ('keep me')")
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "000001_drop_notes.up.sql").write_text("DROP TABLE notes;\n")
    extra = dict(conn_vars(sqlite_db, tmp_path), dbops_migration_tool="golang-migrate",
                 dbops_migrations_path=str(migrations),
                 dbops_columns=[{"table": "notes", "column": "title", "type": "text"}])
    schema = sqlite_db.query("SELECT sql FROM sqlite_master ORDER BY name")
    r = ansible.playbook(PLAYBOOKS / "migration_review.yml", extra_vars=extra)
    assert r.rc != 0 and "drop-table" in r.stdout, r.stdout[-3000:]
    (migrations / "000001_drop_notes.up.sql").unlink()
    (migrations / "000001_add_title.up.sql").write_text("ALTER TABLE notes ADD COLUMN title text;\n")
    r = ansible.playbook(PLAYBOOKS / "migration_review.yml", extra_vars=extra)
    assert r.rc == 0, r.stdout[-4000:]
    assert re.search(r'changed: \[localhost\] => \(item=notes\.title\)', r.stdout)  # the fix ran on the copy
    assert sqlite_db.query("SELECT sql FROM sqlite_master ORDER BY name") == schema
    assert sqlite_db.query("SELECT body FROM notes") == [("keep me",)]
    assert not list(Path(sqlite_db.name).parent.glob("dbops_scratch_*"))


def test_a_failed_host_is_rolled_back_to_the_seed(ansible, pg_db, tmp_path):
    """A check after the change fails: the host's row says rolled back, and the database IS the seed again
    (read from the database, not from the report)."""
    if pg_db.server.name != "pg15":
        pytest.skip("the rollback path does not depend on the server version: one PostgreSQL server is enough")
    pg_db.execute('''CREATE TYPE "CredentialType" AS ENUM ('API_KEY', 'COOKIE')''')
    pg_db.execute('CREATE TABLE "ExternalCredential" (id serial PRIMARY KEY, type "CredentialType", note text)')
    pg_db.execute('''INSERT INTO "ExternalCredential" (type, note) VALUES ('COOKIE', 'a'), ('API_KEY', 'b')''')

    def content():
        return (pg_db.query('SELECT unnest(enum_range(NULL::"CredentialType"))::text'),
                pg_db.query('SELECT id, type::text, note FROM "ExternalCredential" ORDER BY id'),
                pg_db.query("SELECT table_name, column_name, data_type FROM information_schema.columns "
                            "WHERE table_schema = 'public' ORDER BY 1, 2"))

    seed = content()
    # A declared check that passes before the change and on the rehearsal copy (another database), and fails
    # on production once the new value is there: the post-change verify fails, after production changed.
    failing = {"name": "no credential rows may change after the fix",
               "sql": "SELECT count(*) = 0 FROM pg_stat_user_tables WHERE relname = 'ExternalCredential' "
                      "AND current_database() = '%s' AND EXISTS (SELECT 1 FROM pg_enum WHERE enumlabel = "
                      "'PERSONAL_ACCESS_TOKEN')" % pg_db.name}
    extra = dict(conn_vars(pg_db, tmp_path), dbops_enum_name="CredentialType", dbops_enum_values="PERSONAL_ACCESS_TOKEN",
                 dbops_verify_queries=[failing], dbops_report_run_id="rb1")
    r = ansible.playbook(PLAYBOOKS / "enum_fix.yml", extra_vars=extra)
    assert r.rc != 0, r.stdout[-4000:]
    [report] = reports(tmp_path)
    [host] = report["hosts"]
    # roles/report: outcome rolled_back (maintenance.yml marks a host whose restore succeeded), the rollback
    # record says restored and verified (roles/rollback), the summary counts it.
    assert host["outcome"] == "rolled_back", json.dumps(host, indent=1)[:3000]
    assert host["rollback"]["restored"] is True and host["rollback"]["verified"] is True, host["rollback"]
    assert report["summary"]["rolled_back"] == 1 and report["summary"]["changed"] == 0, report["summary"]
    # production had changed (so the rollback undid something)
    ran = [q for c in host["changes"] if not c["plan"] for q in c["queries"]]
    assert any("ALTER TYPE" in q and "PERSONAL_ACCESS_TOKEN" in q for q in ran), host["changes"]
    [manifest] = manifests(tmp_path)
    assert host["rollback"]["backup"] in (manifest, str(Path(manifest).parent / json.loads(Path(manifest).read_text())["file"]))
    # The database content is the seed again: enum values, rows, columns.
    assert content() == seed


def test_schema_proof_nothing_but_the_declared_change(ansible, pg_db, tmp_path):
    """dbops_verify_schema: a snapshot before the change, the check after it finds exactly the declared change
    (the enum); a change nobody declared (an event trigger creates a table when the type is altered) fails the
    verify, and the host is rolled back to the seed."""
    if pg_db.server.name != "pg15":
        pytest.skip("the verify role's wiring does not depend on the server version: one PostgreSQL server is enough")
    pg_db.execute('''CREATE TYPE "CredentialType" AS ENUM ('API_KEY', 'COOKIE')''')
    pg_db.execute('CREATE TABLE "ExternalCredential" (id serial PRIMARY KEY, type "CredentialType")')
    extra = dict(conn_vars(pg_db, tmp_path), dbops_enum_name="CredentialType", dbops_enum_values="PERSONAL_ACCESS_TOKEN",
                 dbops_verify_schema=True, dbops_report_run_id="proof1")
    r = ansible.playbook(PLAYBOOKS / "enum_fix.yml", extra_vars=extra)
    assert r.rc == 0, r.stdout[-4000:]
    [report] = reports(tmp_path)
    [host] = report["hosts"]
    assert host["outcome"] == "changed", json.dumps(host, indent=1)[:3000]
    [schema] = [c for c in host["checks"]["checks"] if c["kind"] == "schema"]
    assert schema["ok"] is True and "exactly the declared change (1 entry)" in schema["message"], schema
    assert schema["actual"][0]["kind"] == "enum" and schema["actual"][0]["name"] == "CredentialType", schema
    snap = Path(schema["name"].split(" ", 1)[1])
    assert snap.parent == tmp_path / "backups" and (snap.stat().st_mode & 0o777) == 0o600
    # Something else changes with the declared change: the proof fails and names it; the host is rolled back.
    pg_db.execute("CREATE FUNCTION dbops_t_sneaky() RETURNS event_trigger LANGUAGE plpgsql AS "
                  "$$ BEGIN CREATE TABLE IF NOT EXISTS sneaky_side_effect (id int); END $$")
    pg_db.execute("CREATE EVENT TRIGGER dbops_t_sneak ON ddl_command_end WHEN TAG IN ('ALTER TYPE') "
                  "EXECUTE FUNCTION dbops_t_sneaky()")
    try:
        again = dict(extra, dbops_enum_values="SESSION_TOKEN", dbops_report_run_id="proof2")
        r = ansible.playbook(PLAYBOOKS / "enum_fix.yml", extra_vars=again)
        assert r.rc != 0, r.stdout[-4000:]
        host = [rep for rep in reports(tmp_path) if rep["run_id"] == "proof2"][0]["hosts"][0]
        assert host["outcome"] == "rolled_back", json.dumps(host, indent=1)[:3000]
        [schema] = [c for c in host["checks"]["failed_checks"] if c["kind"] == "schema"]
        assert "not declared: 1 difference: 1 table unexpected (sneaky_side_effect)" in schema["message"], schema
        assert pg_db.query("SELECT count(*) FROM pg_class WHERE relname = 'sneaky_side_effect'") == [(0,)]
        assert pg_db.query('''SELECT unnest(enum_range(NULL::"CredentialType"))::text''') == [
            ("API_KEY",), ("COOKIE",), ("PERSONAL_ACCESS_TOKEN",)]
    finally:
        pg_db.execute("DROP EVENT TRIGGER IF EXISTS dbops_t_sneak")


def test_maintenance_tags_run_one_phase(ansible, sqlite_db, tmp_path):
    """--tags verify runs the checks and the report only: no backup, no fix, the declared column not added.
    --skip-tags report writes no report."""
    sqlite_db.execute("CREATE TABLE notes (id integer PRIMARY KEY, body text)")
    extra = dict(conn_vars(sqlite_db, tmp_path), dbops_report_run_id="tags", dbops_verify_fixes=False,
                 dbops_columns=[{"table": "notes", "column": "title", "type": "text"}])
    r = ansible.playbook(PLAYBOOKS / "maintenance.yml", extra_vars=extra, env={"ANSIBLE_RUN_TAGS": "verify"})
    assert r.rc == 0, r.stdout[-4000:]
    assert "TASK [dbops.maintenance.verify : Run the checks]" in r.stdout
    assert "Fix the schema" not in r.stdout and "Back up]" not in r.stdout
    assert not (tmp_path / "backups").exists()
    assert sqlite_db.query("SELECT name FROM pragma_table_info('notes') ORDER BY cid") == [("id",), ("body",)]
    [report] = reports(tmp_path)
    [host] = report["hosts"]
    assert host["outcome"] == "unchanged" and host["checks"]["failed"] == 0 and host["checks"]["passed"] >= 1
    assert [m["phase"] for m in host["timeline"]] == ["verify", "end"]
    r = ansible.playbook(PLAYBOOKS / "maintenance.yml", extra_vars=dict(extra, dbops_report_run_id="noreport"),
                         env={"ANSIBLE_RUN_TAGS": "verify", "ANSIBLE_SKIP_TAGS": "report"})
    assert r.rc == 0 and not (tmp_path / "reports" / "noreport").exists(), r.stdout[-3000:]


# --- the fast path (issue 15): state_check decides, the full path is taken whenever anything differs ------------

TIMING_PLUGINS = Path(__file__).resolve().parents[2] / "bench" / "callback_plugins"


def maintenance(ansible, extra, tmp_path, run_id, env_extra=None, **kw):
    """maintenance.yml with the fleet_timing callback: (result, module runs per task name, report host row)."""
    timing = tmp_path / ("timing-%s.json" % run_id)
    env = {"ANSIBLE_CALLBACK_PLUGINS": str(TIMING_PLUGINS), "ANSIBLE_CALLBACKS_ENABLED": "fleet_timing",
           "FLEET_TIMING_OUT": str(timing), **(env_extra or {})}
    r = ansible.playbook(PLAYBOOKS / "maintenance.yml", extra_vars=dict(extra, dbops_report_run_id=run_id), env=env, **kw)
    data = json.loads(timing.read_text())
    # report_write is an action plugin that writes the report in the controller's process: no module run
    runs = [t["action"] for t in data["tasks"] if t["action"].startswith("dbops.maintenance.")
            and t["action"] != "dbops.maintenance.report_write"
            for h in t["hosts"].values() if h.get("status") not in (None, "skipped")]
    assert any(t["action"] == "dbops.maintenance.report_write" for t in data["tasks"]), "no report written"
    rows = [h for rep in reports(tmp_path) if rep["run_id"] == run_id for h in rep["hosts"]]
    assert len(rows) == 1, (run_id, r.stdout[-3000:])
    return r, runs, rows[0]


def comparable(row):
    """The report row without what differs from run to run (times, the run id)."""
    checks = [(c["name"], c["ok"], c.get("expected"), c.get("actual")) for c in row["checks"].get("checks", [])]
    return dict(outcome=row["outcome"], server=row["server"], changes=row["changes"], backup=row["backup"],
                rehearsal=row["rehearsal"], migrations=row["migrations"], rollback=row["rollback"],
                error=row["error"], failed_step=row["failed_step"], checks=checks,
                passed=row["checks"].get("passed"), failed=row["checks"].get("failed"),
                summary=row["checks"].get("summary"), phases=[m["phase"] for m in row["timeline"]])


def seed_fix(db):
    """(declarations of a fix, and the SQL that seeds the state it fixes) per engine."""
    if db.params["engine"] == "postgresql":
        db.execute('''CREATE TYPE "CredentialType" AS ENUM ('API_KEY', 'COOKIE')''')
        db.execute('CREATE TABLE "ExternalCredential" (id serial PRIMARY KEY, type "CredentialType")')
        db.execute('''INSERT INTO "ExternalCredential" (type) VALUES ('COOKIE')''')
        return dict(dbops_enums=[{"name": "CredentialType", "values": ["PERSONAL_ACCESS_TOKEN"]}],
                    dbops_columns=[{"table": "ExternalCredential", "column": "rotatedAt", "type": "timestamptz"}])
    if db.params["engine"] == "mysql":
        db.execute("CREATE TABLE shipment_records (id int PRIMARY KEY, status ENUM('PENDING','SHIPPED'))")
        db.execute("INSERT INTO shipment_records VALUES (1, 'PENDING')")
        return dict(dbops_enums=[{"table": "shipment_records", "column": "status", "values": ["RETURNED"]}],
                    dbops_columns=[{"table": "shipment_records", "column": "shipmentFile", "type": "varchar(191)"}])
    db.execute("CREATE TABLE notes (id integer PRIMARY KEY, body text)")
    db.execute("INSERT INTO notes (body) VALUES ('a')")
    return dict(dbops_columns=[{"table": "notes", "column": "title", "type": "text"}])


def fast_path_case(ansible, db, tmp_path):
    """Every engine: a state that differs takes the full path (backup, change, verify); the re-run is one module
    run (state_check) and reports exactly what the full path reports for the same state; a declaration the
    plan would refuse takes the full path and fails there with the module's own message, nothing changed."""
    extra = dict(conn_vars(db, tmp_path), dbops_serial="100%", **seed_fix(db))
    # 1. The state differs: the full path, with its backup and the change.
    r, runs, row = maintenance(ansible, extra, tmp_path, "first")
    assert r.rc == 0, r.stdout[-4000:]
    # as few module runs as the safety allows: state_check (server, plan, baseline, and the backup with its
    # preflight, its directory and the dump), the fix, the checks after it
    fix = (["dbops.maintenance.enum_add"] if "dbops_enums" in extra else []) + ["dbops.maintenance.column_ensure"]
    assert runs == ["dbops.maintenance.state_check"] + fix + ["dbops.maintenance.db_verify"], runs
    assert row["outcome"] == "changed", (runs, row)
    assert row["backup"]["taken"] is True and len(manifests(tmp_path)) == 1
    # no separate check-mode preflight of the backup: the backup checked the tools and the space in its own run
    assert "Check what the backup needs" not in r.stdout and row["backup"]["sha256"], r.stdout[-3000:]
    backup = json.loads(Path(row["backup"]["manifest_path"]).read_text())
    assert row["backup"]["verified"] == "list" and backup["sha256"] == row["backup"]["sha256"], (row["backup"], backup)
    assert [m["phase"] for m in row["timeline"]][:3] == ["preflight", "plan", "backup"], row["timeline"]
    # 2. Nothing differs any more: one module run, changed=0, no backup.
    r, runs, fast = maintenance(ansible, extra, tmp_path, "fast")
    assert r.rc == 0 and recap(r)["changed"] == 0, r.stdout[-4000:]
    assert runs == ["dbops.maintenance.state_check"], runs
    assert re.search(r"TASK \[Full path \(the state differs\)\][^\n]*\nskipping: ", r.stdout), r.stdout[-3000:]
    assert fast["outcome"] == "unchanged" and fast["checks"]["failed"] == 0 and fast["checks"]["passed"] >= 2, fast
    assert fast["path"] == "fast" and row["path"] == "full", (fast["path"], row["path"])
    # skipping tags that are not a phase's (molecule always passes these) keeps the fast path
    r, runs, _row = maintenance(ansible, extra, tmp_path, "fast-skip", env_extra={"ANSIBLE_SKIP_TAGS": "molecule-notest,notest"})
    assert r.rc == 0 and runs == ["dbops.maintenance.state_check"], (runs, r.stdout[-3000:])
    assert len(manifests(tmp_path)) == 1
    # 3. The same state through the full path: the same report row.
    r, runs, full = maintenance(ansible, dict(extra, dbops_fast_path=False), tmp_path, "full")
    assert r.rc == 0 and recap(r)["changed"] == 0, r.stdout[-4000:]
    assert "dbops.maintenance.state_check" not in runs and len(runs) >= 3, runs
    assert comparable(fast) == comparable(full) and full["path"] == "full"
    # 4. A column that exists with another definition: the plan refuses, so the full path, which fails there.
    col = dict(extra["dbops_columns"][0], type="integer" if db.params["engine"] != "mysql" else "int")
    r, runs, row = maintenance(ansible, dict(extra, dbops_columns=[col]), tmp_path, "refused")
    assert r.rc != 0 and "exists with another definition" in r.stdout, r.stdout[-4000:]
    assert runs[0] == "dbops.maintenance.state_check" and "dbops.maintenance.column_ensure" in runs, runs
    assert row["outcome"] == "failed" and len(manifests(tmp_path)) == 1, row


def full_path_case(ansible, db, tmp_path):
    """An enum value missing (PostgreSQL, MariaDB) / a column missing (SQLite), and a pending migration when the
    history must have none: state_check says so, and the host goes the full path."""
    extra = dict(conn_vars(db, tmp_path), dbops_serial="100%", **seed_fix(db))
    r, runs, row = maintenance(ansible, extra, tmp_path, "fix")
    assert r.rc == 0 and row["outcome"] == "changed", r.stdout[-4000:]
    # a new value declared (a new column on SQLite): the full path changes it
    if "dbops_enums" in extra:
        extra["dbops_enums"] = [dict(extra["dbops_enums"][0], values=extra["dbops_enums"][0]["values"] + ["EXTRA"])]
    else:
        extra["dbops_columns"] = extra["dbops_columns"] + [{"table": "notes", "column": "extra", "type": "text"}]
    r, runs, row = maintenance(ansible, extra, tmp_path, "more")
    assert r.rc == 0 and row["outcome"] == "changed" and "dbops.maintenance.db_backup" not in runs, (runs, r.stdout[-3000:])
    assert row["backup"]["taken"] is True and len(manifests(tmp_path)) == 2, row["backup"]
    # one more, without the fast path: db_backup takes it, with the same options (one mapping of the variables)
    if "dbops_enums" in extra:
        extra["dbops_enums"] = [dict(extra["dbops_enums"][0], values=extra["dbops_enums"][0]["values"] + ["EXTRA2"])]
    else:
        extra["dbops_columns"] = extra["dbops_columns"] + [{"table": "notes", "column": "extra2", "type": "text"}]
    r, runs, row2 = maintenance(ansible, dict(extra, dbops_fast_path=False), tmp_path, "more-full")
    assert r.rc == 0 and row2["outcome"] == "changed" and "dbops.maintenance.db_backup" in runs, (runs, r.stdout[-3000:])
    assert "dbops.maintenance.state_check" not in runs and len(manifests(tmp_path)) == 3, runs
    same = ("taken", "verified", "reused")
    assert {k: row["backup"][k] for k in same} == {k: row2["backup"][k] for k in same}, (row["backup"], row2["backup"])
    assert Path(row["backup"]["path"]).parent == Path(row2["backup"]["path"]).parent
    # a pending dbmate migration, with a history that must have none pending: the full path, which fails as before
    mig = tmp_path / "db" / "migrations"
    mig.mkdir(parents=True)
    (mig / "20240101000000_first.sql").write_text("-- migrate:up\nSELECT 1;\n-- migrate:down\n")
    pending = dict(extra, dbops_migration_tool="dbmate", dbops_migrations_path=str(mig),
                   dbops_migration_fail_on=["failed", "unknown", "modified", "pending"])
    r, runs, row = maintenance(ansible, pending, tmp_path, "pending")
    assert r.rc != 0 and runs[0] == "dbops.maintenance.state_check", (runs, r.stdout[-3000:])
    assert "dbops.maintenance.migration_status" in runs and row["outcome"] == "failed", (runs, row)
    r2, runs2, row2 = maintenance(ansible, dict(pending, dbops_fast_path=False), tmp_path, "pending-full")
    assert r2.rc != 0 and comparable(row2)["error"] == comparable(row)["error"], (row, row2)


def test_first_run_backup_that_would_not_fit_changes_nothing(ansible, sqlite_db, tmp_path):
    """state_check takes the backup of a host that will change: when it would not fit, the host goes the full
    path (the modules plan), whose backup step fails with db_backup's own findings; nothing written or changed."""
    extra = dict(conn_vars(sqlite_db, tmp_path), dbops_serial="100%", **seed_fix(sqlite_db))
    extra["dbops_preflight_min_free_mb"] = 1 << 40
    r, runs, row = maintenance(ansible, extra, tmp_path, "no-space")
    assert r.rc != 0 and row["outcome"] == "failed" and "Take the backup" in row["failed_step"], (runs, row)
    assert "MiB free" in row["error"], row["error"]
    assert runs[0] == "dbops.maintenance.state_check" and runs[-1] == "dbops.maintenance.db_backup", runs
    assert "dbops.maintenance.column_ensure" in runs, runs  # the plan, in check mode: the column is not there
    assert [c for c in sqlite_db.query("PRAGMA table_info(notes)") if c[1] == "title"] == []
    backups = tmp_path / "backups"
    assert not backups.exists() or not any(backups.iterdir()), list(backups.iterdir())


def test_fast_path_only_when_nothing_differs(ansible, db, tmp_path):
    fast_path_case(ansible, db, tmp_path)


def test_fast_path_only_when_nothing_differs_sqlite(ansible, sqlite_db, tmp_path):
    fast_path_case(ansible, sqlite_db, tmp_path)


def test_full_path_for_a_missing_enum_value_or_a_pending_migration(ansible, db, tmp_path):
    full_path_case(ansible, db, tmp_path)


def test_full_path_for_a_missing_column_or_a_pending_migration_sqlite(ansible, sqlite_db, tmp_path):
    full_path_case(ansible, sqlite_db, tmp_path)

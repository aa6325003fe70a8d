"""playbooks/drift_report.yml through ansible-playbook: a fleet of two tenants (one drifted) against their
migrations and against a reference host; the play's own summary and JSON report (it checks ansible's own output,
so it runs ansible-playbook per case, not the session)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

PLAYBOOK = Path(__file__).resolve().parents[2] / "playbooks" / "drift_report.yml"


def inventory(dbs):
    lines = ["[fleet]"]
    for name, d in dbs.items():
        p = d.params
        lines.append("%s ansible_connection=local ansible_python_interpreter=%s dbops_engine=%s dbops_login_host=%s "
                     "dbops_login_port=%s dbops_login_user=%s dbops_login_password=%s dbops_database=%s" % (
                         name, sys.executable, p["engine"], p["login_host"], p["login_port"], p["login_user"],
                         p["login_password"], p["database"]))
    return "\n".join(lines) + "\n"


def test_drift_report_fleet(ansible, pg_db, tmp_path):
    other = pg_db.server.create_database()
    try:
        from conftest import DB  # pylint: disable=import-outside-toplevel
        tenant_b = DB(pg_db.server, other)
        mig = tmp_path / "migrations"
        mig.mkdir()
        (mig / "20240101000001_init.sql").write_text(
            "-- migrate:up\nCREATE TABLE users (id int PRIMARY KEY, email text NOT NULL);\n-- migrate:down\n")
        for d in (pg_db, tenant_b):
            r = ansible.run("dbops.maintenance.migration_apply", dict(d.params, tool="dbmate",
                                                                      migrations_path=str(mig), create_table=True))
            assert not r.get("failed"), r
        tenant_b.execute("ALTER TABLE users ADD COLUMN note text")
        inv = inventory({"tenant_a": pg_db, "tenant_b": tenant_b})
        report = tmp_path / "drift.json"
        reports = tmp_path / "reports"
        extra = {"dbops_hosts": "fleet", "dbops_drift_tool": "dbmate", "dbops_drift_migrations_path": str(mig),
                 "dbops_drift_report_dest": str(report), "dbops_report_dir": str(reports),
                 "dbops_report_run_id": "drift1"}
        r = ansible.playbook(PLAYBOOK, extra_vars=extra, inventory=inv)
        assert r.rc == 0, r.stdout[-3000:]
        assert "fleet drift: 2 host(s), 1 in sync, 1 drifted, 0 not compared" in r.stdout, r.stdout[-3000:]
        assert "tenant_b: 1 difference: 1 column unexpected (users.note)" in r.stdout
        data = {h["host"]: h for h in json.loads(report.read_text())}
        assert (report.stat().st_mode & 0o777) == 0o600
        assert data["tenant_a"]["in_sync"] is True and data["tenant_b"]["in_sync"] is False
        assert data["tenant_b"]["drift"][0]["name"] == "users.note"
        assert pg_db.params["login_password"] not in report.read_text()
        # the fleet report (roles/report): a drift column, and each host's differences in the HTML page
        fleet = json.loads((reports / "drift1" / "report.json").read_text())
        rows = {h["host"]: h for h in fleet["hosts"]}
        assert rows["tenant_b"]["drift"]["in_sync"] is False and rows["tenant_a"]["drift"]["in_sync"] is True
        assert rows["tenant_b"]["drift"]["drift"][0]["name"] == "users.note"
        assert fleet["drift"] == {"compared": 2, "drifted": 1}, fleet
        assert fleet["summary"]["unchanged"] == 2 and fleet["summary"]["changed"] == 0
        page = (reports / "drift1" / "report.html").read_text()
        assert "<th>drift</th>" in page and "drifted: 1 of 2 compared" in page
        assert '<td class="drift">1 difference</td>' in page and '<td class="drift">in sync</td>' in page
        assert "<td>column</td><td><code>users.note</code></td><td>unexpected</td>" in page, page[-3000:]
        assert pg_db.params["login_password"] not in page
        # against a reference host (the canary), and as a gate
        extra = {"dbops_hosts": "fleet", "dbops_drift_reference_host": "tenant_a", "dbops_drift_fail": True,
                 "dbops_report_dir": str(reports), "dbops_report_run_id": "drift2"}
        r = ansible.playbook(PLAYBOOK, extra_vars=extra, inventory=inv)
        assert r.rc != 0
        assert "tenant_b: 1 difference: 1 column unexpected (users.note)" in r.stdout, r.stdout[-3000:]
        assert "fleet drift: 2 host(s), 1 in sync, 1 drifted, 0 not compared" in r.stdout
        # a hostile name in the differences is text in the page, never markup; an unreachable reference is a row
        # that was not compared
        tenant_b.execute('ALTER TABLE users ADD COLUMN "<img src=x onerror=alert(1)>" int')
        extra = {"dbops_hosts": "fleet", "dbops_drift_reference_host": "tenant_a",
                 "dbops_report_dir": str(reports), "dbops_report_run_id": "drift3"}
        missing = inventory({"tenant_c": tenant_b}).splitlines()[1].replace(
            "dbops_database=%s" % other, "dbops_database=dbops_no_such_tenant")
        r = ansible.playbook(PLAYBOOK, extra_vars=extra, inventory=inv + missing + "\n")
        assert r.rc == 0, r.stdout[-3000:]
        page = (reports / "drift3" / "report.html").read_text()
        assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
        assert '<td class="drift">2 differences</td>' in page
        assert '<td class="drift">not compared</td>' in page
        assert "fleet drift: 3 host(s), 1 in sync, 1 drifted, 1 not compared" in r.stdout, r.stdout[-3000:]
        fleet = json.loads((reports / "drift3" / "report.json").read_text())
        rows = {h["host"]: h for h in fleet["hosts"]}
        assert rows["tenant_c"]["outcome"] == "failed", json.dumps(rows["tenant_c"])[:2000]
        assert rows["tenant_c"]["failed_step"] == "schema_diff"
        assert "dbops_no_such_tenant" in rows["tenant_c"]["error"], rows["tenant_c"]
        assert fleet["drift"] == {"compared": 2, "drifted": 1}
    finally:
        pg_db.server.drop_database(other)

"""The canary scenario: the first host of the rollout changed, failed its check, was rolled back; the rollout
stopped there, so the other hosts were never reached."""

import glob
import hashlib
import json
import os
from pathlib import Path

import pytest

SEED_COLUMNS = {
    "postgresql": ("ExternalCredential", {"id", "platform", "type", "createdAt"}),
    "mysql": ("shipment_records", {"id", "trackingNumber", "status", "createdAt"}),
    "sqlite": ("customers", {"id", "email", "created_at"}),
}
SEED_ROWS = {
    "postgresql": ('SELECT platform, type::text FROM "ExternalCredential" ORDER BY id',
                   [("GITHUB", "API_KEY"), ("GITLAB", "OAUTH_TOKEN"), ("JIRA", "COOKIE")]),
    "mysql": ("SELECT trackingNumber, status FROM shipment_records ORDER BY id",
              [("TRK-0001", "PENDING"), ("TRK-0002", "SHIPPED"), ("TRK-0003", "DELIVERED")]),
    "sqlite": ("SELECT email FROM customers ORDER BY id", [("a@example.com",), ("b@example.com",)]),
}


@pytest.fixture(name="report", scope="module")
def report_fixture():
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "reports" / "canary" / "report.json"
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(name="canary", scope="module")
def canary_fixture(fleet):
    names = fleet.names(group="canary")
    assert names == ["canary1"]
    assert next(iter(fleet.hosts)) == "canary1", "the canary is the first host of the inventory"
    return names[0]


def columns(fleet, query, name):
    engine = fleet.host(name)["engine"]
    table = SEED_COLUMNS[engine][0]
    if engine == "postgresql":
        return {r[0] for r in query(name, "SELECT column_name FROM information_schema.columns "
                                          "WHERE table_schema = 'public' AND table_name = %s", (table,))}
    if engine == "mysql":
        return {r[0] for r in query(name, "SELECT column_name FROM information_schema.columns "
                                          "WHERE table_schema = DATABASE() AND table_name = %s", (table,))}
    return {r[1] for r in query(name, f"PRAGMA table_info({table})")}


def assert_as_seeded(fleet, query, name):
    engine = fleet.host(name)["engine"]
    assert columns(fleet, query, name) == SEED_COLUMNS[engine][1], name
    sql, rows = SEED_ROWS[engine]
    assert query(name, sql) == rows, name
    if engine == "postgresql":
        labels = [r[0] for r in query(name, "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
                                            "WHERE t.typname = 'CredentialType' ORDER BY e.enumsortorder")]
        assert labels == ["API_KEY", "COOKIE", "OAUTH_TOKEN"], name
        assert query(name, "SELECT datname FROM pg_database WHERE datname LIKE 'dbops%%'") == [], name
    elif engine == "mysql":
        (column_type,), = query(name, "SELECT column_type FROM information_schema.columns WHERE table_schema = "
                                      "DATABASE() AND table_name = 'shipment_records' AND column_name = 'status'")
        assert column_type == "enum('PENDING','SHIPPED','DELIVERED')", name
        assert query(name, "SELECT schema_name FROM information_schema.schemata "
                           "WHERE schema_name LIKE 'dbops%%'") == [], name
    else:
        assert not glob.glob(os.path.join(os.path.dirname(fleet.host(name)["database"]), "dbops_scratch_*"))


def test_canary_rolled_back_to_the_seed(fleet, query, canary):
    assert_as_seeded(fleet, query, canary)


def test_canary_backup_is_what_was_restored(fleet, canary, report):
    manifests = glob.glob(os.path.join(fleet.host(canary)["molecule_dir"], "backups", "*.manifest.json"))
    assert len(manifests) == 1, manifests
    with open(manifests[0], encoding="utf-8") as f:
        manifest = json.load(f)
    backup = manifests[0][: -len(".manifest.json")]
    with open(backup, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == manifest["sha256"]
    row = {h["host"]: h for h in report["hosts"]}[canary]
    assert row["backup"]["path"] == backup
    assert row["rollback"]["backup"] == manifests[0]
    assert row["rollback"]["restored"] is True
    assert row["rollback"]["verified"] is True


def test_other_hosts_untouched(fleet, query, canary):
    others = [n for n in fleet.names() if n != canary]
    assert len(others) >= 3
    for name in others:
        assert_as_seeded(fleet, query, name)
        molecule_dir = fleet.host(name)["molecule_dir"]
        assert os.listdir(molecule_dir) == [], (name, "no backup dir: never reached")


def test_report(fleet, canary, report):
    assert report["check_mode"] is False
    rows = {h["host"]: h for h in report["hosts"]}
    assert list(rows) == [canary], "only the canary ran"
    row = rows[canary]
    assert row["outcome"] == "rolled_back"
    assert row["failed_step"] == "Run the checks"
    assert "the deployed release knows every CredentialType value" in row["error"], row["error"]
    production = [c for c in row["changes"] if not c["rehearsal"] and not c["plan"]]
    assert {c["step"] for c in production} == {"schema_fix"}, "the fix was applied before the check failed"
    assert sorted(report["not_run"]) == sorted(n for n in fleet.names() if n != canary)
    assert report["summary"] == {"hosts": 4, "changed": 0, "unchanged": 0, "failed": 0, "rolled_back": 1,
                                 "not_run": 3}


def test_report_html(fleet, report):
    html = (Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "reports" / "canary" / "report.html").read_text(
        encoding="utf-8")
    for name in fleet.names():
        assert name in html, name
    assert "rolled back" in html

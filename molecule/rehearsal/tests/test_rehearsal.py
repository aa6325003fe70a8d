"""The rehearsal scenario: each host's fix failed on its scratch copy; production was never changed (no
restore was needed), the copy is gone, and the report says so."""

import glob
import json
import os
from pathlib import Path

import pytest

SEED = {
    "postgresql": {
        "columns": ("SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND table_name = 'ExternalCredential' ORDER BY ordinal_position",
                    [("id", "integer"), ("platform", "text"), ("type", "USER-DEFINED"),
                     ("createdAt", "timestamp with time zone")]),
        "enum": ("SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
                 "WHERE t.typname = 'CredentialType' ORDER BY e.enumsortorder",
                 [("API_KEY",), ("COOKIE",), ("OAUTH_TOKEN",)]),
        "rows": ('SELECT platform, type::text FROM "ExternalCredential" ORDER BY id',
                 [("GITHUB", "API_KEY"), ("GITLAB", "OAUTH_TOKEN"), ("JIRA", "COOKIE")]),
        "scratch": ("SELECT datname FROM pg_database WHERE datname LIKE 'dbops%%'", []),
    },
    "mysql": {
        "columns": ("SELECT column_name, column_type FROM information_schema.columns WHERE table_schema = DATABASE() "
                    "AND table_name = 'shipment_records' ORDER BY ordinal_position",
                    [("id", "int(11)"), ("trackingNumber", "varchar(64)"),
                     ("status", "enum('PENDING','SHIPPED','DELIVERED')"), ("createdAt", "datetime(3)")]),
        "rows": ("SELECT trackingNumber, status FROM shipment_records ORDER BY id",
                 [("TRK-0001", "PENDING"), ("TRK-0002", "SHIPPED"), ("TRK-0003", "DELIVERED")]),
        "scratch": ("SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'dbops%%'", []),
    },
}
# What the rehearsal's error says about the cause.
EXPECTED_ERROR = {
    "pg15r": "at \"Ensure columns\"",
    "mariar": "every shipped record has its shipment file",
}


@pytest.fixture(name="report", scope="module")
def report_fixture():
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "reports" / "rehearsal" / "report.json"
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_every_host_rehearses(fleet):
    assert fleet.names() == ["mariar", "pg15r"]
    for name in fleet.names():
        assert fleet.host(name)["vars"]["dbops_rehearse"] is True


@pytest.mark.parametrize("check", ["columns", "enum", "rows", "scratch"])
def test_production_identical_to_the_seed(fleet, query, check):
    for name in fleet.names():
        expected = SEED[fleet.host(name)["engine"]].get(check)
        if expected:
            sql, rows = expected
            assert query(name, sql) == rows, (name, check)


def test_backup_taken_but_not_restored(fleet, report):
    rows = {h["host"]: h for h in report["hosts"]}
    for name in fleet.names():
        manifests = glob.glob(os.path.join(fleet.host(name)["molecule_dir"], "backups", "*.manifest.json"))
        assert len(manifests) == 1, (name, manifests)
        assert rows[name]["backup"]["taken"] is True
        assert rows[name]["rollback"] == {}, "rollback not run: production never changed"


def test_report(fleet, report):
    assert report["check_mode"] is False
    assert report["not_run"] == []
    rows = {h["host"]: h for h in report["hosts"]}
    assert sorted(rows) == fleet.names()
    for name, row in rows.items():
        assert row["outcome"] == "failed", name
        assert row["failed_step"] == "Stop before production", name
        assert "production (appdb) was not touched" in row["error"], name
        assert EXPECTED_ERROR[name] in row["error"], (name, row["error"])
        assert row["rehearsal"]["status"] == "failed", name
        assert row["rehearsal"]["copy"].startswith("dbops_scratch_"), name
        assert row["rehearsal"]["kept"] is False, name
        # The plan saw changes, the copy got some of them, production none.
        assert [c for c in row["changes"] if c["plan"]], name
        assert [c for c in row["changes"] if c["rehearsal"]], name
        assert [c for c in row["changes"] if not c["plan"] and not c["rehearsal"]] == [], name
    assert report["summary"]["failed"] == 2 and report["summary"]["rolled_back"] == 0


def test_rehearsal_error_names_the_cause(report):
    row = {h["host"]: h for h in report["hosts"]}["pg15r"]
    assert "value too long for type character varying(5)" in row["rehearsal"]["error"]


def test_report_html(fleet):
    html = (Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "reports" / "rehearsal" / "report.html").read_text(
        encoding="utf-8")
    for name in fleet.names():
        assert f"<td>{name}</td>" in html

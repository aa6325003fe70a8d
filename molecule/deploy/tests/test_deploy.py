"""The deploy scenario: the deploy rollout applied both migrations on every engine (rehearsed, backed up once, the
re-run changed nothing); the bad rollout's canary failed on its rehearsal copy with production untouched, and the
rollout stopped before the next host."""

import glob
import hashlib
import json
import os
from pathlib import Path

import pytest

REPORTS = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "reports"
VERSIONS = ["20260101000000", "20260102000000"]
SEED_ROWS = {
    "postgresql": ('SELECT platform, type::text FROM "ExternalCredential" ORDER BY id',
                   [("GITHUB", "API_KEY"), ("GITLAB", "OAUTH_TOKEN"), ("JIRA", "COOKIE")]),
    "mysql": ("SELECT trackingNumber, status FROM shipment_records ORDER BY id",
              [("TRK-0001", "PENDING"), ("TRK-0002", "SHIPPED"), ("TRK-0003", "DELIVERED")]),
    "sqlite": ("SELECT email FROM customers ORDER BY id", [("a@example.com",), ("b@example.com",)]),
}


def deploy_reports():
    """The deploy rollout's reports, oldest first (run ids are UTC times)."""
    return [json.loads(Path(p).read_text(encoding="utf-8"))
            for p in sorted(glob.glob(str(REPORTS / "2*" / "report.json")))]


@pytest.fixture(name="bad_report", scope="module")
def bad_report_fixture():
    return json.loads((REPORTS / "badrollout" / "report.json").read_text(encoding="utf-8"))


def pg_labels(query, name):
    return [r[0] for r in query(name, "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
                                      "WHERE t.typname = 'CredentialType' ORDER BY e.enumsortorder")]


def columns(fleet, query, name, table):
    engine = fleet.host(name)["engine"]
    if engine == "postgresql":
        return {r[0]: r[1] for r in query(name, "SELECT column_name, data_type FROM information_schema.columns "
                                                "WHERE table_schema = 'public' AND table_name = %s", (table,))}
    if engine == "mysql":
        return {r[0]: r[1] for r in query(name, "SELECT column_name, column_type FROM information_schema.columns "
                                                "WHERE table_schema = DATABASE() AND table_name = %s", (table,))}
    return {r[1]: r[2] for r in query(name, f"PRAGMA table_info({table})")}


def history(fleet, query, name):
    engine = fleet.host(name)["engine"]
    if engine == "postgresql":
        exists = query(name, "SELECT to_regclass('public.schema_migrations') IS NOT NULL")[0][0]
    elif engine == "mysql":
        exists = bool(query(name, "SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() "
                                  "AND table_name = 'schema_migrations'"))
    else:
        exists = bool(query(name, "SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'"))
    if not exists:
        return None
    return [str(r[0]) for r in query(name, "SELECT version FROM schema_migrations ORDER BY version")]


def no_scratch_copy(fleet, query, name):
    h = fleet.host(name)
    if h["engine"] == "postgresql":
        assert query(name, "SELECT datname FROM pg_database WHERE datname LIKE 'dbops%%'") == [], name
    elif h["engine"] == "mysql":
        assert query(name, "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'dbops%%'") \
            == [], name
    else:
        assert not glob.glob(os.path.join(os.path.dirname(h["database"]), "dbops_scratch_*")), name


def test_deployed_on_every_engine(fleet, query):
    names = fleet.names(group="deploy")
    assert names == ["mariadeploy", "pgdeploy", "sqlitedeploy"]
    # PostgreSQL: the enum value (added outside a transaction) and the column.
    assert pg_labels(query, "pgdeploy") == ["API_KEY", "COOKIE", "OAUTH_TOKEN", "PERSONAL_ACCESS_TOKEN"]
    assert columns(fleet, query, "pgdeploy", "ExternalCredential")["lastUsedAt"] == "timestamp with time zone"
    # MariaDB: the enum value and the column.
    cols = columns(fleet, query, "mariadeploy", "shipment_records")
    assert cols["status"] == "enum('PENDING','SHIPPED','DELIVERED','RETURNED')"
    assert cols["shipmentFile"] == "varchar(191)"
    # SQLite: the column and its index.
    assert "phone" in columns(fleet, query, "sqlitedeploy", "customers")
    assert query("sqlitedeploy", "SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'customers_phone'") \
        == [("customers_phone",)]
    for name in names:
        assert history(fleet, query, name) == VERSIONS, name
        sql, rows = SEED_ROWS[fleet.host(name)["engine"]]
        assert query(name, sql) == rows, name
        no_scratch_copy(fleet, query, name)


def test_one_backup_per_deployed_host(fleet):
    """Taken before production changed; the idempotent re-run took none."""
    for name in fleet.names(group="deploy"):
        manifests = glob.glob(os.path.join(fleet.host(name)["molecule_dir"], "backups", "*.manifest.json"))
        assert len(manifests) == 1, (name, manifests)
        with open(manifests[0], encoding="utf-8") as f:
            manifest = json.load(f)
        path = os.path.join(os.path.dirname(manifests[0]), manifest["file"])
        if os.path.isfile(path):
            with open(path, "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == manifest["sha256"], name


def test_deploy_reports():
    reports = deploy_reports()
    assert len(reports) == 2, "the deploy run and the idempotence run"
    first, second = reports
    rows = {h["host"]: h for h in first["hosts"]}
    assert list(rows) == ["pgdeploy", "mariadeploy", "sqlitedeploy"], "the canary first"
    for name, row in rows.items():
        assert row["outcome"] == "changed", (name, row)
        assert row["rehearsal"]["status"] == "passed", (name, row["rehearsal"])
        assert row["backup"]["path"], name
        steps = [(c["step"], c["rehearsal"]) for c in row["changes"] if not c["plan"]]
        assert steps == [("migration_deploy", True), ("migration_deploy", False)], (name, steps)
        assert [a["name"] for a in row["migrations"]["applied"]] == VERSIONS, (name, row["migrations"])
    assert first["summary"]["changed"] == 3 and first["summary"]["failed"] == 0
    assert {h["host"]: h["outcome"] for h in second["hosts"]} == {
        "pgdeploy": "unchanged", "mariadeploy": "unchanged", "sqlitedeploy": "unchanged"}
    for row in second["hosts"]:
        assert row["backup"] == {} and row["rehearsal"] == {"status": "not run"}, row


def test_bad_canary_production_untouched(fleet, query, bad_report):
    assert pg_labels(query, "pgbad") == ["API_KEY", "COOKIE", "OAUTH_TOKEN"], \
        "not even the first migration (it ran on the copy only)"
    cols = columns(fleet, query, "pgbad", "ExternalCredential")
    assert set(cols) == {"id", "platform", "type", "createdAt"} and cols["platform"] == "text"
    assert history(fleet, query, "pgbad") is None
    assert query("pgbad", SEED_ROWS["postgresql"][0]) == SEED_ROWS["postgresql"][1]
    no_scratch_copy(fleet, query, "pgbad")
    assert not os.path.exists(os.path.join(fleet.host("pgbad")["molecule_dir"], "backups")), \
        "the rehearsal failed before the backup"
    [row] = bad_report["hosts"]
    assert row["host"] == "pgbad" and row["outcome"] == "failed", row
    assert row["rehearsal"]["status"] == "failed", row["rehearsal"]
    assert "value too long" in row["rehearsal"]["error"], row["rehearsal"]
    assert "was not touched" in row["error"], row["error"]
    assert not [c for c in row["changes"] if not c["rehearsal"]], "nothing ran on production"


def test_bad_rollout_stopped(fleet, query, bad_report):
    assert bad_report["not_run"] == ["sqlitebad"]
    assert bad_report["summary"]["failed"] == 1 and bad_report["summary"]["not_run"] == 1
    assert history(fleet, query, "sqlitebad") is None
    assert "phone" not in columns(fleet, query, "sqlitebad", "customers")
    assert sorted(os.listdir(fleet.host("sqlitebad")["molecule_dir"])) == ["migrations"], "never reached"

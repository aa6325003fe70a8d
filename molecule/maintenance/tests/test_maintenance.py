"""The maintenance scenario: after converge (the fix) and idempotence (a re-run that changes nothing).

Every assertion reads the databases, the files on the hosts or the reports on the controller.
"""

import glob
import hashlib
import json
import os
from pathlib import Path

import pytest

# The testinfra `host` tests run on the ssh host, over the same ssh connection Ansible used.
testinfra_hosts = ["ansible://dbops_ssh"]

SEED_ROWS = {"postgresql": ("ExternalCredential", 3), "mysql": ("shipment_records", 3), "sqlite": ("customers", 2)}
PRISMA_MIGRATION = "20250821015630_add_shipment_file_field"


def reports():
    """The run directories of the reports, oldest first (the run id is the UTC time of the run)."""
    base = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "reports"
    runs = sorted(p for p in base.iterdir() if (p / "report.json").is_file())
    assert runs, f"no report in {base}"
    return runs


def load_report(run):
    with open(run / "report.json", encoding="utf-8") as f:
        return json.load(f)


def backups(fleet, name):
    """(backup path, manifest) of every backup in the host's backup dir."""
    out = []
    for manifest_path in sorted(glob.glob(os.path.join(fleet.host(name)["molecule_dir"], "backups", "*.manifest.json"))):
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
        out.append((Path(manifest_path[: -len(".manifest.json")]), manifest))
    return out


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_tree(path):
    """The directory format's documented sha256: of the sorted lines '<sha256>  <relative name>' of its files."""
    files = {}
    for root, _dirs, names in os.walk(path):
        for n in names:
            full = os.path.join(root, n)
            files[os.path.relpath(full, path)] = sha256_file(full)
    text = "".join(f"{files[k]}  {k}\n" for k in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest(), files


def columns(fleet, query, name, table):
    engine = fleet.host(name)["engine"]
    if engine == "postgresql":
        rows = query(name, "SELECT column_name, data_type FROM information_schema.columns "
                           "WHERE table_schema = 'public' AND table_name = %s", (table,))
    elif engine == "mysql":
        rows = query(name, "SELECT column_name, column_type FROM information_schema.columns "
                           "WHERE table_schema = DATABASE() AND table_name = %s", (table,))
    else:
        rows = [(r[1], r[2]) for r in query(name, f"PRAGMA table_info({table})")]
    return dict(rows)


def test_fleet_is_the_mixed_fleet(fleet):
    assert len(fleet.names("postgresql")) >= 3
    assert len(fleet.names("mysql")) >= 2
    assert len(fleet.names("sqlite")) >= 1
    assert fleet.names(connection="ssh") == ["pg15b"]
    assert {fleet.host(n)["kind"] for n in fleet.names("postgresql")} == {"pg15", "pg16"}


def test_postgresql_enum_value_and_column(fleet, query):
    for name in fleet.names("postgresql"):
        labels = [r[0] for r in query(name, "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
                                            "WHERE t.typname = 'CredentialType' ORDER BY e.enumsortorder")]
        assert labels == ["API_KEY", "COOKIE", "OAUTH_TOKEN", "PERSONAL_ACCESS_TOKEN"], name
        assert columns(fleet, query, name, "ExternalCredential")["lastUsedAt"] == "timestamp with time zone", name


def test_mariadb_enum_value_and_column(fleet, query):
    for name in fleet.names("mysql"):
        cols = columns(fleet, query, name, "shipment_records")
        assert cols["status"] == "enum('PENDING','SHIPPED','DELIVERED','RETURNED')", name
        assert cols["shipmentFile"] == "varchar(191)", name


def test_sqlite_column(fleet, query):
    for name in fleet.names("sqlite"):
        assert columns(fleet, query, name, "customers")["phone"] == "TEXT", name


def test_rows_unchanged(fleet, query):
    for name in fleet.names():
        table, seeded = SEED_ROWS[fleet.host(name)["engine"]]
        q = f'SELECT count(*) FROM "{table}"' if fleet.host(name)["engine"] == "postgresql" else f"SELECT count(*) FROM {table}"
        assert query(name, q) == [(seeded,)], name
    # The data itself, not only its count.
    for name in fleet.names("postgresql"):
        assert query(name, 'SELECT platform, type::text FROM "ExternalCredential" ORDER BY id') == [
            ("GITHUB", "API_KEY"), ("GITLAB", "OAUTH_TOKEN"), ("JIRA", "COOKIE")], name
    for name in fleet.names("mysql"):
        assert query(name, "SELECT trackingNumber, status FROM shipment_records ORDER BY id") == [
            ("TRK-0001", "PENDING"), ("TRK-0002", "SHIPPED"), ("TRK-0003", "DELIVERED")], name


def test_prisma_history_repaired(fleet, query):
    names = fleet.names(group="prisma")
    assert names == ["maria2"]
    for name in names:
        rows = query(name, "SELECT finished_at IS NOT NULL, rolled_back_at IS NOT NULL FROM _prisma_migrations "
                           "WHERE migration_name = %s ORDER BY started_at, finished_at", (PRISMA_MIGRATION,))
        # The failed attempt is marked rolled back, one finished row was added (once: the re-run added none).
        assert sorted(rows) == [(0, 1), (1, 0)], (name, rows)
        assert query(name, "SELECT count(*) FROM _prisma_migrations WHERE finished_at IS NULL "
                           "AND rolled_back_at IS NULL") == [(0,)]


def test_no_scratch_copy_left(fleet, query):
    for name in fleet.names("postgresql"):
        assert query(name, "SELECT datname FROM pg_database WHERE datname LIKE 'dbops\\_scratch\\_%%'") == [], name
    for name in fleet.names("mysql"):
        assert query(name, "SELECT schema_name FROM information_schema.schemata "
                           "WHERE schema_name LIKE 'dbops\\_scratch\\_%%'") == [], name
    for name in fleet.names("sqlite"):
        directory = os.path.dirname(fleet.host(name)["database"])
        assert not glob.glob(os.path.join(directory, "dbops_scratch_*")), name
    for name in fleet.names():
        assert not glob.glob(os.path.join(fleet.host(name)["molecule_dir"], "**", "dbops_scratch_*"),
                             recursive=True), name


def test_one_backup_per_host_with_matching_checksum(fleet):
    """The first run backed up every host once; the idempotent re-run took no backup."""
    for name in fleet.names():
        found = backups(fleet, name)
        assert len(found) == 1, (name, found)
        path, manifest = found[0]
        assert manifest["created_by"] == "dbops.maintenance.db_backup", name
        assert manifest["file"] == path.name, name
        assert manifest["database"] == os.path.basename(fleet.host(name)["database"]) or \
            manifest["database"] == fleet.host(name)["database"], name
        if manifest.get("layout") == "directory":
            assert path.is_dir(), name
            digest, files = sha256_tree(path)
            assert files == manifest["files"], name
            assert digest == manifest["sha256"], name
            assert sum(os.path.getsize(path / f) for f in files) == manifest["size"], name
        else:
            assert path.is_file(), name
            assert sha256_file(path) == manifest["sha256"], name
            assert path.stat().st_size == manifest["size"], name


def test_directory_backup_used(fleet):
    (_path, manifest), = backups(fleet, "pg16a")
    assert manifest["format"] == "directory" and manifest["layout"] == "directory"


def test_backups_only_in_the_molecule_dirs(fleet):
    """Every backup the report names is in its host's molecule dir (never the role's default dir)."""
    for host in load_report(reports()[0])["hosts"]:
        backup_dir = os.path.join(fleet.host(host["host"])["molecule_dir"], "backups") + os.sep
        assert host["backup"]["path"].startswith(backup_dir), host
        assert host["backup"]["manifest_path"].startswith(backup_dir), host


def test_reports_first_changed_then_unchanged(fleet):
    runs = reports()
    first = load_report(runs[0])
    assert first["check_mode"] is False
    assert sorted(h["host"] for h in first["hosts"]) == fleet.names()
    assert first["not_run"] == []
    assert {h["host"]: h["outcome"] for h in first["hosts"]} == {n: "changed" for n in fleet.names()}
    assert first["summary"]["changed"] == len(fleet.names())
    for host in first["hosts"]:
        assert host["backup"]["taken"] is True, host["host"]
        backup_path, manifest = backups(fleet, host["host"])[0]
        assert host["backup"]["path"] == str(backup_path), host["host"]
        assert host["backup"]["sha256"] == manifest["sha256"], host["host"]
        assert host["checks"]["failed"] == 0, host["host"]
        rehearsal = fleet.host(host["host"])["vars"].get("dbops_rehearse", False)
        assert host["rehearsal"]["status"] == ("passed" if rehearsal else "not run"), host["host"]
    # The idempotence run (and any later one) changed nothing and took no backup.
    assert len(runs) >= 2, "converge + idempotence write two reports"
    for run in runs[1:]:
        later = load_report(run)
        assert {h["host"]: h["outcome"] for h in later["hosts"]} == {n: "unchanged" for n in fleet.names()}, run
        assert all(not h["backup"] for h in later["hosts"]), run
        assert later["summary"]["unchanged"] == len(fleet.names())
        # maintenance.yml's fast path: each host found in its desired state by one module run (state_check)
        assert {h["host"]: h.get("path") for h in later["hosts"]} == {n: "fast" for n in fleet.names()}, run
    assert {h["host"]: h.get("path") for h in first["hosts"]} == {n: "full" for n in fleet.names()}


def test_column_already_there_was_not_changed():
    """maria2 had shipmentFile already: its column_ensure changed nothing (only the enum and the history did)."""
    maria2 = {h["host"]: h for h in load_report(reports()[0])["hosts"]}["maria2"]
    production = [c for c in maria2["changes"] if not c["rehearsal"] and not c["plan"]]
    items = [i for c in production for i in c["items"]]
    assert {"table": "shipment_records", "column": "status", "values": ["RETURNED"]} in items
    assert not [i for i in items if i.get("column") == "shipmentFile"], items
    assert {c["step"] for c in production} == {"schema_fix", "migration_repair"}
    assert maria2["migrations"]["clean"] is True


def test_report_html_names_every_host(fleet):
    for run in reports():
        html = (run / "report.html").read_text(encoding="utf-8")
        assert html.startswith("<!DOCTYPE html>")
        for name in fleet.names():
            assert f"<td>{name}</td>" in html, (run, name)


@pytest.mark.parametrize("variable,expected", [("ansible_connection", "ssh")])
def test_ssh_host_reached_over_ssh(host, fleet, query, variable, expected):
    """pg15b is an ssh host for Ansible, the module that added the value ran there, and testinfra reaches it
    the same way (its backup is visible through that connection)."""
    name = host.backend.get_hostname()
    assert name == "pg15b"
    assert host.ansible.get_variables()[variable] == expected
    assert fleet.host(name)["connection"] == "ssh"
    labels = [r[0] for r in query(name, "SELECT unnest(enum_range(NULL::\"CredentialType\"))::text")]
    assert "PERSONAL_ACCESS_TOKEN" in labels
    (path, manifest), = backups(fleet, name)
    remote = host.file(str(path))
    assert remote.is_file and remote.sha256sum == manifest["sha256"]
    sshd_log = Path(fleet.data["ssh"]["log_file"]).read_text(encoding="utf-8", errors="replace")
    assert "Accepted publickey for root" in sshd_log

"""The checkmode scenario: ansible-playbook --check --diff of the whole maintenance run left every database
byte-identical (dumps before and after), wrote no backup, and reported check mode."""

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dump import dump_all  # noqa: E402  pylint: disable=wrong-import-position

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])


@pytest.fixture(name="report", scope="module")
def report_fixture():
    with open(EPHEMERAL / "reports" / "checkmode" / "report.json", encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(name="after", scope="module")
def after_fixture(fleet, tmp_path_factory):
    return dump_all(tmp_path_factory.mktemp("after"), fleet)


def test_fleet_has_every_kind(fleet):
    assert {fleet.host(n)["kind"] for n in fleet.names()} == {"pg15", "pg16", "mariadb", "sqlite"}
    assert fleet.names(connection="ssh") == ["pg15c"]


def test_dumps_byte_identical(fleet, after):
    for name in fleet.names():
        before = (EPHEMERAL / "dumps" / "before" / f"{name}.dump").read_bytes()
        now = after[name].read_bytes()
        assert b"-- dump\n" in before and len(before) > 300, name
        assert now == before, f"{name}: the database changed in check mode"


def test_the_dumps_hold_the_seed(fleet):
    """The comparison is meaningful: the dumps contain the schema and the rows the fix would change."""
    for name in fleet.names():
        text = (EPHEMERAL / "dumps" / "before" / f"{name}.dump").read_text(encoding="utf-8", errors="replace")
        engine = fleet.host(name)["engine"]
        if engine == "postgresql":
            assert "CREATE TYPE public.\"CredentialType\" AS ENUM" in text and "PERSONAL_ACCESS_TOKEN" not in text
            assert "GITHUB" in text and "lastUsedAt" not in text
        elif engine == "mysql":
            assert "enum('PENDING','SHIPPED','DELIVERED')" in text and "TRK-0003" in text
            assert "_prisma_migrations" in text and "deliveredAt" not in text
        else:
            assert "CREATE TABLE customers" in text and "b@example.com" in text and "phone" not in text


def test_no_backup_written(fleet):
    for name in fleet.names():
        molecule_dir = fleet.host(name)["molecule_dir"]
        expected = ["prisma"] if name in fleet.names(group="prisma") else []
        assert sorted(os.listdir(molecule_dir)) == expected, name


def test_report_says_check_mode(fleet, report):
    assert report["check_mode"] is True
    rows = {h["host"]: h for h in report["hosts"]}
    assert sorted(rows) == fleet.names()
    assert report["not_run"] == []
    for name, row in rows.items():
        assert row["check_mode"] is True, name
        # "changed" in check mode: the plan would change this host (nothing was changed).
        assert row["outcome"] == "changed", name
        assert row["backup"]["taken"] is False, name
        assert row["rollback"] == {}, name
        assert row["error"] == "", name
        assert all(c["check_mode"] for c in row["changes"]), name
    html = (EPHEMERAL / "reports" / "checkmode" / "report.html").read_text(encoding="utf-8")
    assert "check mode: nothing was changed" in html
    for name in fleet.names():
        assert f"<td>{name}</td>" in html

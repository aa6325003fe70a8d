"""The repository's ecosystem parts, as a user or a packager meets them (scripts/test.sh, stage ecosystem).

* the collection tarball ships what users need and nothing of the development tree; collection-tree.sh --copy
  never copies a built tarball;
* changelogs/ is valid for antsibull-changelog and CHANGELOG.rst is what it generates;
* meta/execution-environment.yml makes a valid ansible-builder build context: the galaxy stage's own command
  installs the collection from it, and ansible-builder's introspection finds the drivers and client tools;
* every examples/fixes/ file targets hosts of examples/inventory, names an existing playbook and sets only
  variables the roles or maintenance.yml declare;
* scripts/demo.sh --clean stops a demo's servers and removes its state and reports, and nothing else;
* scripts/docs.sh reads the docs from a clone.

Not shipped in the collection tarball (galaxy.yml build_ignore: tests/repo): it tests the repository's scripts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COLLECTIONS = ROOT / "build" / "collections"


def run(cmd, cwd=ROOT, env=None, check=True, timeout=600):
    full_env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}", ANSIBLE_NOCOLOR="1",
                    ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS))
    full_env.update(env or {})
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module", autouse=True)
def collection_tree():
    run(["bash", ROOT / "scripts" / "collection-tree.sh"])


# --------------------------------------------------------------------------
# the tarball
# --------------------------------------------------------------------------

def test_tarball_ships_what_users_need_and_no_development_files(tmp_path):
    run([BIN / "ansible-galaxy", "collection", "build", "--output-path", tmp_path, ROOT])
    (tarball,) = tmp_path.glob("dbops-maintenance-*.tar.gz")
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    tops = {n.split("/", 1)[0] for n in names}
    for needed in ("plugins", "roles", "playbooks", "meta", "examples", "tests", "changelogs", "README.md",
                   "CHANGELOG.rst", "requirements.txt", "bindep.txt", "MANIFEST.json", "FILES.json"):
        assert needed in tops, f"{needed} missing from the tarball: {sorted(tops)}"
    for n in ("plugins/modules/enum_add.py", "meta/runtime.yml", "examples/fixes/credentialtype-enum.yml",
              "changelogs/changelog.yaml", "tests/unit/conftest.py", "roles/preflight/meta/argument_specs.yml"):
        assert n in names, f"{n} missing from the tarball"
    for unwanted in ("bench", "molecule", "scripts", "package.json", ".config", ".ci", ".venv", "build",
                     "pytest.ini", "requirements-dev.txt", "requirements-conformance.txt", ".gitignore"):
        assert unwanted not in tops, f"{unwanted} is in the tarball"
    bad = [n for n in names if n.endswith(".tar.gz") or n.startswith(("tests/output", "tests/repo"))
           or "__pycache__" in n or n.endswith(".pyc") or n.startswith("requirements-ansible")
           or n in ("meta/execution-environment.yml", "changelogs/.plugin-cache.yaml")]
    assert not bad, f"not for users: {bad}"


def test_collection_tree_copy_never_copies_a_built_tarball(tmp_path):
    fake = ROOT / "dbops-maintenance-0.0.0-test.tar.gz"  # .gitignore'd, as a real build would be
    fake.write_bytes(b"not a real tarball")
    try:
        dest = Path(run(["bash", ROOT / "scripts" / "collection-tree.sh", "--copy", tmp_path]).stdout.strip())
    finally:
        fake.unlink()
    assert (dest / "plugins" / "modules" / "enum_add.py").is_file()
    assert not list(dest.glob("*.tar.gz"))


# --------------------------------------------------------------------------
# changelogs/
# --------------------------------------------------------------------------

def test_changelog_fragments_and_yaml_are_valid_and_changelog_rst_is_generated(tmp_path):
    tool = BIN / "antsibull-changelog"
    run([tool, "lint"])
    run([tool, "lint-changelog-yaml", "--strict", ROOT / "changelogs" / "changelog.yaml"])
    # CHANGELOG.rst is what antsibull-changelog generates from changelogs/ (regenerated in a copy).
    copy = tmp_path / "c"
    copy.mkdir()
    shutil.copytree(ROOT / "changelogs", copy / "changelogs",
                    ignore=shutil.ignore_patterns(".plugin-cache.yaml"))
    for f in ("galaxy.yml", "CHANGELOG.rst"):
        shutil.copy(ROOT / f, copy / f)
    shutil.copytree(ROOT / "plugins", copy / "plugins")
    run([tool, "generate"], cwd=copy)
    assert (copy / "CHANGELOG.rst").read_text() == (ROOT / "CHANGELOG.rst").read_text(), \
        "CHANGELOG.rst is stale: run antsibull-changelog generate"


# --------------------------------------------------------------------------
# the execution environment
# --------------------------------------------------------------------------

def test_execution_environment_definition_makes_a_valid_build_context(tmp_path):
    context = tmp_path / "ee"
    run([BIN / "ansible-builder", "create", "-f", ROOT / "meta" / "execution-environment.yml",
         "--context", context])
    containerfile = next(p for p in (context / "Containerfile", context / "Dockerfile") if p.exists())
    steps = containerfile.read_text()
    for stage in ("AS base", "AS galaxy", "AS builder", "AS final"):
        assert stage in steps
    galaxy = re.search(r"^RUN .*ansible-galaxy collection install .*-r requirements.yml.*$", steps, re.M)
    assert galaxy, steps
    assert "WORKDIR /build" in steps and "COPY _build /build" in steps
    build = context / "_build"
    assert (build / "requirements.yml").is_file()
    # The galaxy stage, as the image runs it: in /build (here: the context's _build), from requirements.yml.
    installed = tmp_path / "collections"
    run([BIN / "ansible-galaxy", "collection", "install", "-r", "requirements.yml", "--collections-path",
         installed], cwd=build, env={"ANSIBLE_GALAXY_DISABLE_GPG_VERIFY": "1",
                                     "ANSIBLE_COLLECTIONS_PATH": str(installed)})  # the image has none yet
    coll = installed / "ansible_collections" / "dbops" / "maintenance"
    assert (coll / "plugins" / "modules" / "enum_add.py").is_file()
    assert (coll / "roles" / "preflight" / "tasks" / "main.yml").is_file()
    assert (coll / "playbooks" / "maintenance.yml").is_file()
    assert not (coll / "meta" / "execution-environment.yml").exists()
    # The builder stage's introspection, as the image runs it, over the installed collections.
    proc = run([sys.executable, build / "scripts" / "introspect.py", "introspect", installed])
    found = yaml.safe_load(proc.stdout)
    python = " ".join(found["python"])
    system = " ".join(found["system"])
    for pkg in ("psycopg[binary]", "PyMySQL", "pglast", "sqlglot"):
        assert f"{pkg}" in python and "from collection dbops.maintenance" in python, found
    for pkg in ("postgresql-client", "mariadb-client", "sqlite3"):
        assert pkg in system, found


# --------------------------------------------------------------------------
# examples/fixes
# --------------------------------------------------------------------------

def _role_options():
    names = set()
    for spec in (ROOT / "roles").glob("*/meta/argument_specs.yml"):
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            names.update(entry.get("options", {}))
    return names


def test_every_example_fix_targets_inventory_hosts_and_declared_variables(tmp_path):
    password = tmp_path / "vault-password"
    password.write_text("dbops-example\n")
    inventory = json.loads(run([BIN / "ansible-inventory", "-i", ROOT / "examples" / "inventory", "--list",
                                "--vault-password-file", password]).stdout)
    groups = {g for g in inventory if g != "_meta"}
    options = _role_options()
    fixes = sorted((ROOT / "examples" / "fixes").glob("*.yml"))
    assert len(fixes) >= 5, "one fix file per seed incident"
    for path in fixes:
        text = path.read_text()
        data = yaml.safe_load(text)
        assert data["dbops_hosts"] in groups, f"{path.name}: dbops_hosts {data['dbops_hosts']} not a group"
        playbooks = re.findall(r"playbooks/(\w+)\.yml", text)
        assert playbooks, f"{path.name}: its header names no playbook"
        for pb in playbooks:
            assert (ROOT / "playbooks" / f"{pb}.yml").is_file(), f"{path.name}: playbooks/{pb}.yml"
        assert f"-e @examples/fixes/{path.name}" in text, f"{path.name}: its header shows another file"
        unknown = set(data) - options - {"dbops_hosts"}
        assert not unknown, f"{path.name}: variables no role declares: {unknown}"
    for doc in [ROOT / "README.md", *(ROOT / "examples").rglob("*.yml")]:
        text = doc.read_text()
        assert "@fix.yml" not in text, f"{doc}: -e @fix.yml names a file that does not exist"
        assert not re.search(r"dbops_columns: \[\]", text), f"{doc}: an empty dbops_columns workaround"


# --------------------------------------------------------------------------
# scripts/demo.sh --clean, scripts/docs.sh
# --------------------------------------------------------------------------

def _processes_of(path):
    return subprocess.run(["pgrep", "-f", str(path)], capture_output=True, text=True, check=False).stdout.split()


def test_demo_clean_stops_servers_and_removes_only_what_demos_left():
    base = Path(tempfile.mkdtemp(prefix="dbops-repo-test-", dir="/tmp"))
    holder = None
    try:
        os.chmod(base, 0o711)  # the PostgreSQL user must reach the server dirs inside
        left = base / "dbops-demo-left"          # a demo that was killed: its server still runs
        running = base / "dbops-demo-running"    # a demo that is running now
        foreign = base / "dbops-demo-foreign"    # not made by the demo (no marker)
        for d in (left, running, foreign):
            d.mkdir(mode=0o711)
        (left / ".dbops-demo").write_text("0\n")
        holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "demo.py"],
                                  stdin=subprocess.PIPE)
        (running / ".dbops-demo").write_text(f"{holder.pid}\n")
        run([sys.executable, ROOT / "tests" / "harness" / "servers.py", "start", "--state-dir", left,
             "--only", "pg15"])
        data_dir = json.loads((left / "servers.json").read_text())["pg15"]["data_dir"]
        assert _processes_of(data_dir), "the demo's PostgreSQL should be running before --clean"
        reports = base / "reports"
        (reports / "20261202T000000Z").mkdir(parents=True)
        (reports / "20261202T000000Z" / "report.html").write_text("<html></html>")
        proc = run(["bash", ROOT / "scripts" / "demo.sh", "--clean"],
                   env={"TMPDIR": str(base), "DBOPS_DEMO_REPORTS": str(reports)})
        assert not left.exists() and not reports.exists()
        assert running.is_dir() and foreign.is_dir()
        assert "still running: left alone" in proc.stdout
        assert "dbopstest" in proc.stdout and "postgresql-15" in proc.stdout  # what it leaves is listed
        assert not _processes_of(data_dir), "the demo's PostgreSQL still runs after --clean"
        again = run(["bash", ROOT / "scripts" / "demo.sh", "--clean"],
                    env={"TMPDIR": str(base), "DBOPS_DEMO_REPORTS": str(reports)})
        assert "removed nothing" in again.stdout
    finally:
        if holder is not None:
            holder.send_signal(signal.SIGTERM)
            holder.wait()
        subprocess.run([sys.executable, ROOT / "tests" / "harness" / "servers.py", "stop", "--state-dir",
                        base / "dbops-demo-left"], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_docs_sh_reads_the_docs_from_a_clone_without_the_venv_on_path():
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "ANSIBLE_COLLECTIONS_PATH": ""}
    module = run(["bash", ROOT / "scripts" / "docs.sh", "enum_add"], env=env).stdout
    assert "dbops.maintenance.enum_add" in module and "values" in module
    roles = run(["bash", ROOT / "scripts" / "docs.sh", "-t", "role", "-l"], env=env).stdout
    for role in ("preflight", "backup", "schema_fix", "migration_repair", "rehearse", "verify", "rollback",
                 "report"):
        assert f"dbops.maintenance.{role}" in roles

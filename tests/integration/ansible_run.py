"""Run modules and playbooks the way users do: through ``ansible-playbook``.

``AnsibleRunner.run(module, args)`` writes a one-task playbook (mode 0600, the
args may hold passwords), runs the venv's ``ansible-playbook`` against
localhost (connection local, interpreter = this venv's python) and returns
the task's result dict as a ``TaskResult``.  ``AnsibleRunner.playbook(...)``
runs a whole playbook with the default callback and returns rc/stdout/stderr.

The collection is loaded from build/collections (a symlink to this repo, made
by scripts/collection-tree.sh, or by ``ensure_collection_tree`` here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS_DIR = REPO_ROOT / "build" / "collections"
COLLECTION_LINK = COLLECTIONS_DIR / "ansible_collections" / "dbops" / "maintenance"
CALLBACK_DIR = REPO_ROOT / "tests" / "harness" / "callback_plugins"
JSON_BEGIN = "=== DBOPS_JSON_BEGIN ==="
JSON_END = "=== DBOPS_JSON_END ==="
DEFAULT_TIMEOUT = 600


def ensure_collection_tree():
    """Make build/collections/ansible_collections/dbops/maintenance -> repo root (idempotent,
    safe against concurrent callers); returns the collections dir."""
    link = COLLECTION_LINK
    if link.is_symlink() and os.readlink(link) == str(REPO_ROOT):
        return COLLECTIONS_DIR
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.parent / f".maintenance.{os.getpid()}.{threading.get_ident()}"
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(REPO_ROOT, tmp)
    if link.exists() and not link.is_symlink():
        shutil.rmtree(link)
    os.replace(tmp, link)
    return COLLECTIONS_DIR


def _venv_tool(name):
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found next to {sys.executable} nor on PATH")
    return found


def _write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return str(path)


class _Unsafe(str):
    """A string written as ``!unsafe`` so Ansible does not template it."""


class _Dumper(yaml.SafeDumper):  # pylint: disable=too-many-ancestors
    """SafeDumper that writes ``_Unsafe`` strings with the ``!unsafe`` tag."""


_Dumper.add_representer(_Unsafe, lambda dumper, value: dumper.represent_scalar(
    "!unsafe", str(value), style='"'))


def _mark_unsafe(value):
    if isinstance(value, dict):
        return {k: _mark_unsafe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mark_unsafe(v) for v in value]
    if isinstance(value, str) and any(m in value for m in ("{{", "{%", "{#")):
        # Only strings with Jinja markers: ansible-core 2.19 resolves an !unsafe scalar as if
        # it were plain, so !unsafe "yes" would load as the boolean true.
        return _Unsafe(value)
    return value


def to_yaml(data):
    """YAML text of ``data`` (any unicode, quoting as needed; ``_Unsafe`` -> ``!unsafe``)."""
    return yaml.dump(data, Dumper=_Dumper, allow_unicode=True, sort_keys=False,
                     default_flow_style=False, width=2 ** 20)


class TaskResult(dict):
    """The module's result dict (changed, failed, msg, queries, diff, ...), plus
    ``.stdout``, ``.stderr``, ``.rc`` and ``.cmd`` of the ansible-playbook run."""

    stdout = ""
    stderr = ""
    rc = None
    cmd = None
    playbook = None

    @property
    def changed(self):
        return bool(self.get("changed"))

    @property
    def failed(self):
        return bool(self.get("failed"))


class PlaybookResult:
    """What ``AnsibleRunner.playbook`` returns (CompletedProcess-like)."""

    def __init__(self, cmd, rc, stdout, stderr):
        self.cmd = cmd
        self.rc = rc
        self.returncode = rc
        self.stdout = stdout
        self.stderr = stderr

    @property
    def output(self):
        return self.stdout + self.stderr

    def __repr__(self):
        return f"PlaybookResult(rc={self.rc}, cmd={self.cmd!r})"


class AnsibleRunner:
    """Runs ``ansible-playbook`` from this venv against localhost (connection local)."""

    def __init__(self, base_dir=None, python=None):
        self.python = python or sys.executable
        self.ansible_playbook = _venv_tool("ansible-playbook")
        self.collections_path = str(ensure_collection_tree())
        self._own_base = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="dbops-ansible-"))
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o700)
        self.inventory = _write_private(
            self.base_dir / "inventory.ini",
            f"localhost ansible_connection=local ansible_python_interpreter={self.python}\n")
        self.config = _write_private(self.base_dir / "ansible.cfg", "[defaults]\n")
        self._counter = 0
        self._lock = threading.Lock()

    def close(self):
        if self._own_base:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # ------------------------------------------------------------------
    def _run_dir(self):
        with self._lock:
            self._counter += 1
            n = self._counter
        d = self.base_dir / f"run-{n:04d}"
        d.mkdir(mode=0o700)
        return d

    def environment(self, run_dir, stdout_callback="ansible.builtin.default", env=None):
        """The environment ansible-playbook runs with (outer ANSIBLE_* vars are dropped)."""
        out = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        out.update({
            "ANSIBLE_CONFIG": self.config,
            "ANSIBLE_HOME": str(self.base_dir / "ansible-home"),
            "ANSIBLE_COLLECTIONS_PATH": self.collections_path,
            "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_DIR),
            "ANSIBLE_STDOUT_CALLBACK": stdout_callback,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_LOCALHOST_WARNING": "False",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
            "ANSIBLE_DEPRECATION_WARNINGS": "False",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_GATHERING": "explicit",
            "ANSIBLE_PYTHON_INTERPRETER": self.python,
            "ANSIBLE_LOCAL_TEMP": str(run_dir / "local-tmp"),
            "ANSIBLE_REMOTE_TEMP": str(run_dir / "remote-tmp"),
            "PYTHONDONTWRITEBYTECODE": "1",
        })
        if env:
            out.update({k: str(v) for k, v in env.items()})
        return out

    def _exec(self, cmd, run_dir, env):
        count_file = os.environ.get("DBOPS_COUNT_PLAYBOOKS")
        if count_file:  # one line per ansible-playbook start, for measuring the suite (tests/README.md)
            test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
            fd = os.open(count_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, (test + "\n").encode())
            finally:
                os.close(fd)
        proc = subprocess.run(cmd, cwd=run_dir, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=DEFAULT_TIMEOUT, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    @staticmethod
    def _flags(check, diff, verbosity):
        flags = []
        if check:
            flags.append("--check")
        if diff:
            flags.append("--diff")
        if verbosity:
            flags.append("-" + "v" * int(verbosity))
        return flags

    # ------------------------------------------------------------------
    def run(self, module, args=None, check=False, diff=False, verbosity=0, env=None,
            expect_failure=None, unsafe_args=False, task_vars=None):
        """Run ``module`` (FQCN) with ``args`` as the one task of a playbook; returns its result.

        ``expect_failure``: True/False asserts the task failed/succeeded (None: no check).
        ``unsafe_args``: mark every string arg ``!unsafe`` (no Jinja templating).
        ``task_vars``: ``vars:`` of the task.
        """
        run_dir = self._run_dir()
        if args is None:
            args = {}
        elif isinstance(args, dict):
            args = dict(args)
        task = {"name": "run", module: _mark_unsafe(args) if unsafe_args else args,
                "register": "r", "ignore_errors": True}
        if task_vars:
            task["vars"] = task_vars
        playbook = _write_private(run_dir / "playbook.yml", to_yaml(
            [{"hosts": "localhost", "gather_facts": False, "tasks": [task]}]))
        cmd = [self.ansible_playbook, "-i", self.inventory, *self._flags(check, diff, verbosity),
               playbook]
        rc, stdout, stderr = self._exec(
            cmd, run_dir, self.environment(run_dir, "dbops_json", env))

        def broke(why):
            return AssertionError(
                f"ansible-playbook broke ({why}), rc={rc}\ncmd: {' '.join(cmd)}\n"
                f"--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}")

        begin, end = stdout.rfind(JSON_BEGIN), stdout.rfind(JSON_END)
        if begin < 0 or end < begin:
            raise broke("no JSON result in its output")
        try:
            doc = json.loads(stdout[begin + len(JSON_BEGIN):end])
        except ValueError as e:
            raise broke(f"unparseable JSON: {e}") from None
        hosts = None
        for play in doc.get("plays", []):
            for t in play.get("tasks", []):
                if t.get("task", {}).get("name") == "run":
                    hosts = t.get("hosts")
        if not hosts or "localhost" not in hosts:
            raise broke("the task did not run")
        res = hosts["localhost"]
        if res.get("unreachable"):
            raise broke("localhost unreachable")
        if rc not in (0, 2):
            raise broke("unexpected exit code")
        result = TaskResult(res)
        result.setdefault("changed", False)
        result.setdefault("failed", False)
        result.stdout, result.stderr, result.rc, result.cmd = stdout, stderr, rc, cmd
        result.playbook = playbook
        if expect_failure is True and not result.get("failed"):
            raise AssertionError(f"{module} was expected to fail but did not: "
                                 f"{json.dumps(dict(result), indent=2, default=str)}")
        if expect_failure is False and result.get("failed"):
            raise AssertionError(f"{module} failed: {result.get('msg')}\n"
                                 f"{json.dumps(dict(result), indent=2, default=str)}\n"
                                 f"--- stderr ---\n{stderr}")
        return result

    def playbook(self, path_or_yaml_text, extra_vars=None, check=False, diff=False, verbosity=0,
                 inventory=None, env=None):
        """Run a playbook (a path, or the YAML text of one) with the default stdout callback.

        ``extra_vars`` go through a 0600 file (``-e @file``), never the command line.
        ``inventory``: None (localhost, connection local), a path, ``host,`` list, or INI text.
        """
        run_dir = self._run_dir()
        if isinstance(path_or_yaml_text, Path) or (
                "\n" not in path_or_yaml_text and os.path.exists(path_or_yaml_text)):
            playbook = str(Path(path_or_yaml_text).resolve())
        else:
            playbook = _write_private(run_dir / "playbook.yml", path_or_yaml_text)
        if inventory is None:
            inv = self.inventory
        elif isinstance(inventory, Path) or os.path.exists(inventory):
            inv = str(inventory)
        elif "\n" not in inventory and inventory.rstrip().endswith(","):
            inv = inventory
        else:
            inv = _write_private(run_dir / "inventory.ini", inventory)
        cmd = [self.ansible_playbook, "-i", inv, *self._flags(check, diff, verbosity)]
        if extra_vars:
            cmd += ["-e", "@" + _write_private(run_dir / "extra-vars.json", json.dumps(extra_vars))]
        cmd.append(playbook)
        rc, stdout, stderr = self._exec(cmd, run_dir, self.environment(run_dir, env=env))
        return PlaybookResult(cmd, rc, stdout, stderr)

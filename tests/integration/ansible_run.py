"""Run modules and playbooks the way users do: through ``ansible-playbook``.

``AnsibleRunner.run(module, args)`` writes a one-task playbook (mode 0600, the
args may hold passwords), runs the venv's ``ansible-playbook`` against
localhost (connection local, interpreter = this venv's python) and returns
the task's result dict as a ``TaskResult``.  ``AnsibleRunner.playbook(...)``
runs a whole playbook with the default callback and returns rc/stdout/stderr.
``AnsibleRunner.session()`` is a ``PlaybookSession``: the same ``run`` API, but every
run goes to ONE long-lived ansible-playbook (one start, ~3 s, for many module runs).

The collection is loaded from build/collections (a symlink to this repo, made
by scripts/collection-tree.sh, or by ``ensure_collection_tree`` here).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS_DIR = REPO_ROOT / "build" / "collections"
COLLECTION_LINK = COLLECTIONS_DIR / "ansible_collections" / "dbops" / "maintenance"
CALLBACK_DIR = REPO_ROOT / "tests" / "harness" / "callback_plugins"
LOOKUP_DIR = REPO_ROOT / "tests" / "harness" / "lookup_plugins"
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

    @staticmethod
    def count_start():
        """With DBOPS_COUNT_PLAYBOOKS=<file>: one line (the test id) per ansible-playbook start."""
        count_file = os.environ.get("DBOPS_COUNT_PLAYBOOKS")
        if count_file:  # for measuring the suite (tests/README.md)
            test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
            fd = os.open(count_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, (test + "\n").encode())
            finally:
                os.close(fd)

    def session(self):
        """A ``PlaybookSession`` on this runner (use it as a context manager)."""
        return PlaybookSession(self)

    def _exec(self, cmd, run_dir, env):
        self.count_start()
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
        task = _module_task("run", module, args, unsafe_args, task_vars)
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
        result.stdout, result.stderr, result.rc, result.cmd = stdout, stderr, rc, cmd
        result.playbook = playbook
        return _checked(result, module, expect_failure, stderr)

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


def _module_task(name, module, args, unsafe_args, task_vars):
    if args is None:
        args = {}
    elif isinstance(args, dict):
        args = dict(args)
    task = {"name": name, module: _mark_unsafe(args) if unsafe_args else args,
            "register": "r", "ignore_errors": True}
    if task_vars:
        task["vars"] = task_vars
    return task


def _checked(result, module, expect_failure, stderr):
    result.setdefault("changed", False)
    result.setdefault("failed", False)
    if expect_failure is True and not result.get("failed"):
        raise AssertionError(f"{module} was expected to fail but did not: "
                             f"{json.dumps(dict(result), indent=2, default=str)}")
    if expect_failure is False and result.get("failed"):
        raise AssertionError(f"{module} failed: {result.get('msg')}\n"
                             f"{json.dumps(dict(result), indent=2, default=str)}\n"
                             f"--- stderr ---\n{stderr}")
    return result


class SessionTaskResult(TaskResult):
    """A ``TaskResult`` from a ``PlaybookSession``: the output of the shared ansible-playbook is
    not this run's alone, so ``.stdout`` / ``.stderr`` / ``.rc`` / ``.cmd`` refuse to answer
    (a test that checks the output must use ``AnsibleRunner.run``: a fresh ansible-playbook)."""

    def _refuse(self):
        raise AssertionError("a PlaybookSession run has no output of its own: "
                             "use AnsibleRunner.run (a fresh ansible-playbook) to check output")

    stdout = property(_refuse)
    stderr = property(_refuse)
    rc = property(_refuse)
    cmd = property(_refuse)


_STEP_YAML = [
    {"name": "dbops-session-next",
     "ansible.builtin.set_fact": {"dbops_session_next": "{{ lookup('dbops_next') }}"}},
    {"name": "dbops-session-include",
     "ansible.builtin.include_tasks": "{{ dbops_session_next }}"},
]


class PlaybookSession:
    """Runs module tasks one at a time in ONE ansible-playbook, each result back as soon as its
    task ends, so a test keeps its order (check-mode run, catalog snapshot, real run, re-run, ...)
    and its assertions, while paying the ansible-playbook start (~3 s, far more under load) once.

    The playbook loops ``MAX_STEPS`` times over: ask the test for the next task file (lookup
    ``dbops_next`` over a unix socket, tests/harness/lookup_plugins), ``include_tasks`` it.  The
    test answers with a file holding the same task ``AnsibleRunner.run`` would write (check mode
    and diff as task keywords); the callback dbops_json appends each result to a stream file
    (DBOPS_JSON_STREAM), read when the playbook asks for the task after it.  At ``close()`` the
    answer is a file with ``meta: end_play``.  Every wait is bounded (DEFAULT_TIMEOUT per task; a
    dead playbook is seen within a second), and a broken session is restarted on the next run.

    ``run()`` falls back to ``AnsibleRunner.run`` (a fresh ansible-playbook) for ``verbosity``,
    ``env`` (they are the ansible-playbook process's), and when another thread is already running
    a task in the session (tests that run modules concurrently).  Anything else (``playbook``,
    ``_run_dir``, ``inventory``, ...) is the runner's.
    """

    MAX_STEPS = 200

    def __init__(self, runner):
        self.runner = runner
        self._lock = threading.Lock()
        self._proc = None
        self._listener = None
        self._pending = None
        self._dir = None
        self._rdir = None
        self._end = None
        self._stream = None
        self._stream_pos = 0
        self._served = 0
        self._n = 0

    def __getattr__(self, name):
        return getattr(self.runner, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------
    def _output(self):
        out = []
        for name in ("stdout", "stderr"):
            try:
                out.append((self._rdir / name).read_text(encoding="utf-8", errors="replace")[-3000:])
            except OSError:
                out.append("")
        return out

    def _broke(self, why):
        stdout, stderr = self._output()
        self._kill()
        return AssertionError(f"ansible-playbook session broke ({why})\n"
                              f"--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}")

    def _kill(self):
        if self._pending is not None:
            self._pending.close()
            self._pending = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=60)
        self._proc = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _start(self):
        runner = self.runner
        self._rdir = runner._run_dir()  # pylint: disable=protected-access
        # a short private dir for the socket (AF_UNIX paths are limited to ~107 bytes)
        self._dir = Path(tempfile.mkdtemp(prefix="dbops-s-", dir="/tmp"))
        sock_path = str(self._dir / "s")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(sock_path)
        self._listener.listen(1)
        self._listener.settimeout(1.0)
        step = _write_private(self._rdir / "step.yml", to_yaml(_STEP_YAML))
        self._end = _write_private(self._rdir / "end.yml", to_yaml(
            [{"name": "dbops-session-end", "ansible.builtin.meta": "end_play"}]))
        playbook = _write_private(self._rdir / "playbook.yml", to_yaml([{
            "hosts": "localhost", "gather_facts": False, "tasks": [{
                "name": "dbops-session-step", "ansible.builtin.include_tasks": step,
                "loop": "{{ range(%d) | list }}" % self.MAX_STEPS,
                "loop_control": {"loop_var": "dbops_session_step"}}]}]))
        self._stream = self._rdir / "stream.jsonl"
        _write_private(self._stream, "")
        self._stream_pos = 0
        self._served = 0
        env = runner.environment(self._rdir, "dbops_json", {
            "DBOPS_SESSION_SOCKET": sock_path, "DBOPS_SESSION_TIMEOUT": DEFAULT_TIMEOUT,
            "DBOPS_JSON_STREAM": str(self._stream), "ANSIBLE_LOOKUP_PLUGINS": str(LOOKUP_DIR)})
        runner.count_start()
        with open(self._rdir / "stdout", "wb") as out, open(self._rdir / "stderr", "wb") as err:
            self._proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [runner.ansible_playbook, "-i", runner.inventory, playbook], cwd=self._rdir,
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)

    def _accept(self, what):
        """The playbook's next request (a connection), within DEFAULT_TIMEOUT."""
        deadline = time.monotonic() + DEFAULT_TIMEOUT
        while True:
            try:
                conn, _addr = self._listener.accept()
            except socket.timeout:
                if self._proc.poll() is not None:
                    raise self._broke(f"ansible-playbook exited rc={self._proc.returncode} {what}") from None
                if time.monotonic() > deadline:
                    raise self._broke(f"no request within {DEFAULT_TIMEOUT} s {what}") from None
                continue
            conn.settimeout(60)
            if conn.recv(16) != b"next\n":
                conn.close()
                raise self._broke(f"unexpected request {what}")
            return conn

    def _answer(self, path, what):
        if self._pending is None:
            self._pending = self._accept(what)
        conn, self._pending = self._pending, None
        try:
            conn.sendall(str(path).encode("utf-8"))
        finally:
            conn.close()

    def _results(self):
        with open(self._stream, encoding="utf-8") as f:
            f.seek(self._stream_pos)
            text = f.read()
        self._stream_pos += len(text.encode("utf-8"))
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    # ------------------------------------------------------------------
    def run(self, module, args=None, check=False, diff=False, verbosity=0, env=None,
            expect_failure=None, unsafe_args=False, task_vars=None):
        """``AnsibleRunner.run``'s API and result (a ``SessionTaskResult``)."""
        if verbosity or env or not self._lock.acquire(blocking=False):  # pylint: disable=consider-using-with
            return self.runner.run(module, args, check=check, diff=diff, verbosity=verbosity, env=env,
                                   expect_failure=expect_failure, unsafe_args=unsafe_args,
                                   task_vars=task_vars)
        try:
            name = f"dbops-task-{self._n + 1}"
            task = _module_task(name, module, args, unsafe_args, task_vars)
            if check:
                task["check_mode"] = True
            if diff:
                task["diff"] = True
            path, results = self._include([task], module)
            res = results.get(name)
            if res is None:
                raise self._broke(f"no result for {module}")
            result = SessionTaskResult(res)
            result.playbook = path
            return _checked(result, module, expect_failure, "(in the session's stderr)")
        finally:
            self._lock.release()

    def run_play_tasks(self, play_tasks):
        """Run a list of play tasks (what ``migration_batch.run_tasks`` builds) as one include of the
        session; returns (path of the task file, {task name: result}), or None when another thread
        is running a task in the session (the caller then starts its own ansible-playbook)."""
        if not self._lock.acquire(blocking=False):  # pylint: disable=consider-using-with
            return None
        try:
            return self._include(play_tasks, "a batch of %d tasks" % len(play_tasks))
        finally:
            self._lock.release()

    def _include(self, play_tasks, what):
        """Hand the playbook one task file and wait until it asks for the next: {name: result}."""
        if self._proc is not None and self._served >= self.MAX_STEPS - 1:
            self._finish()
        if self._proc is None:
            self._start()
        self._n += 1
        path = _write_private(self._rdir / f"task-{self._n:04d}.yml", to_yaml(play_tasks))
        self._answer(path, f"before {what}")
        self._served += 1
        self._pending = self._accept(f"while {what} ran")  # its tasks have ended
        results = {}
        for rec in self._results():
            if rec["host"] != "localhost":
                continue
            if rec["result"].get("unreachable"):
                raise self._broke("localhost unreachable")
            results[rec["task"]] = rec["result"]
        return path, results

    def _finish(self):
        """End the playbook (it must exit 0)."""
        try:
            self._answer(self._end, "at the end")
            rc = self._proc.wait(timeout=DEFAULT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise self._broke("it did not end") from None
        if rc != 0:
            raise self._broke(f"rc={rc} at the end")
        self._kill()

    def close(self):
        with self._lock:
            if self._proc is not None:
                self._finish()

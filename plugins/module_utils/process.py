# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One external command, bounded in time, its whole process tree included.

subprocess.run(timeout=) kills only the direct child: a wrapper (``npx knex``, ``bin/rails`` through spring, a
shell script) would leave the real migrator running after the module reported it killed and released its
locks, and a grandchild that keeps the output pipes open makes the wait last until it exits. Here the child
starts a session of its own (its process group); on timeout the whole group gets SIGTERM, then SIGKILL after
GRACE seconds. When the child exits but a process of its group still holds the pipes, that process gets GRACE
seconds to finish its output, then the group is killed too: nothing the command started outlives the module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

GRACE = 5.0


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _stop_group(proc, grace):
    """SIGTERM to the group, SIGKILL after `grace` seconds (or at once when the child ignores SIGTERM)."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def run_bounded(argv, timeout, cwd=None, env=None, stdin_path=None, merge_stderr=False, grace=GRACE):
    """Run argv; returns (rc, stdout bytes, stderr bytes). rc is None when it ran longer than `timeout` seconds
    and was killed, with its process group. OSError (no such program, not executable) is raised as is."""
    stdin = open(stdin_path, 'rb') if stdin_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=stdin, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                                close_fds=True, start_new_session=True)
    finally:
        if stdin_path:
            stdin.close()
    chunks = {'out': [], 'err': []}

    def drain(pipe, key):
        try:
            for block in iter(lambda: pipe.read(65536), b''):
                chunks[key].append(block)
        except (OSError, ValueError):
            pass

    readers = [(pipe, threading.Thread(target=drain, args=(pipe, key), daemon=True))
               for pipe, key in ((proc.stdout, 'out'), (proc.stderr, 'err')) if pipe is not None]
    for _pipe, t in readers:
        t.start()
    killed = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        killed = True
        _stop_group(proc, grace)
    # the child is gone; what else of its group still holds the pipes gets `grace` seconds to finish
    deadline = time.monotonic() + grace
    for _pipe, t in readers:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for _pipe, t in readers) and _signal_group(proc.pid, signal.SIGKILL):
        for _pipe, t in readers:
            t.join(grace)
    for pipe, t in readers:
        if not t.is_alive():  # a pipe still read (a process that left the group holds it) is left to the thread
            pipe.close()
    return (None if killed else proc.returncode), b''.join(chunks['out']), b''.join(chunks['err'])

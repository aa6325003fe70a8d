# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Processes, pipes, hashing and fsync of db_backup, db_restore and db_clone.

* Pipeline: runs tool | compressor | ... with every exit code and stderr kept;
  the last process's stdout is read by this process and written into a file,
  and a second thread computes its sha256 from the same chunks (while streaming,
  never by re-reading). Pipes are widened to 1 MiB (Linux) and the file's dirty
  pages are flushed in the background while the dump runs, so the final fsync
  has little left to do.
* A watchdog (stall_timeout) stops a pipeline that makes no progress: no bytes
  through the pipe, no bytes read or written by any of its processes, no growth
  of the directory it writes. Every stage runs in its own process group, so a
  stop (or any failure) kills the whole tree of each stage, grandchildren too.
* sha256 of a file or a directory tree (in threads), fsync of a tree.
"""

from __future__ import annotations

import hashlib
import os
import queue
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.files import disk_error_message, fsync_dir
from ansible_collections.dbops.maintenance.plugins.module_utils.process import run_bounded

CHUNK = 1024 * 1024
STDERR_KEEP = 4000
HASH_QUEUE = 8                     # chunks (each at most CHUNK) waiting for the hashing thread
SYNC_EVERY = 32 * 1024 * 1024      # fdatasync in the background after every this many bytes written
PIPE_SIZE = 1024 * 1024            # pipe capacity asked for (Linux F_SETPIPE_SZ; the default is 64 KiB)
# fcntl.F_SETPIPE_SZ exists from Python 3.10; its value on Linux is 1031
F_SETPIPE_SZ = 1031 if sys.platform.startswith('linux') else None


def widen_pipe(fileobj):
    """Ask for a PIPE_SIZE pipe buffer (fewer context switches between the stages); best effort."""
    if F_SETPIPE_SZ is None or fileobj is None:
        return
    try:
        import fcntl
        fcntl.fcntl(fileobj.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
    except (ImportError, OSError, ValueError):
        pass


class Stage:
    """One process of a pipeline: a name for messages, its argv and its environment."""

    def __init__(self, name, argv, env=None):
        self.name = name
        self.argv = argv
        self.env = env
        self.proc = None
        self.stderr_file = None
        self.returncode = None
        self.stderr = ''


class PipelineFailed(DbopsError):
    pass


def describe_rc(rc):
    if rc is None:
        return 'did not finish'
    if rc < 0:
        try:
            return 'killed by signal %s' % signal.Signals(-rc).name
        except ValueError:
            return 'killed by signal %d' % -rc
    return 'exit code %d' % rc


class StreamHasher:
    """sha256 of a stream, computed in its own thread from chunks handed over through a bounded queue.

    hashlib releases the GIL while it hashes a large buffer, so the hashing overlaps reading the pipe and writing
    the file. The digest is hashlib's over the chunks in the order given (the chunks are bytes, never changed
    after they are handed over). At most `maxsize` chunks wait, so memory stays bounded. An error in the thread
    is raised by the next update() or by finish(); the thread keeps taking chunks until close(), so the feeder
    never blocks on a dead thread.
    """

    def __init__(self, factory=hashlib.sha256, maxsize=HASH_QUEUE):
        self._hash = factory()
        self._queue = queue.Queue(maxsize)
        self.error = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name='dbops-sha256')
        self._thread.daemon = True
        self._thread.start()

    def _work(self):
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            if self.error is None:
                try:
                    self._hash.update(chunk)
                except BaseException as e:  # pylint: disable=broad-except
                    self.error = e

    def _fail(self):
        raise DbopsError('Computing the sha256 of the backup failed (%s: %s); nothing was kept.'
                         % (type(self.error).__name__, self.error))

    def update(self, chunk):
        if self.error is not None:
            self._fail()
        self._queue.put(chunk)

    def close(self):
        """Stop the thread after the chunks already queued (idempotent)."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()

    def finish(self):
        """Wait for every chunk; returns the hash object. Raises DbopsError when the thread failed."""
        self.close()
        if self.error is not None:
            self._fail()
        return self._hash


class BackgroundSync:
    """fdatasync of a file being written, in a thread, after every `every` bytes, so the dirty pages reach the
    disk while the dump runs and the caller's final fsync has only the last part left to write.

    It never replaces that final fsync. An error of a background fdatasync is raised by close(): Linux reports a
    write-back error to one fsync caller only, so it must not be lost here.
    """

    def __init__(self, fd, every=SYNC_EVERY):
        self.fd = fd
        self.every = every
        self.error = None
        self._next = every
        self._wake = threading.Event()
        self._stop = False
        self._requested = False
        self._thread = None

    def written(self, total):
        if total < self._next or self.error is not None:
            return
        self._next = total + self.every
        self._requested = True
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name='dbops-fdatasync')
            self._thread.daemon = True
            self._thread.start()
        self._wake.set()

    def _work(self):
        sync = getattr(os, 'fdatasync', os.fsync)
        while True:
            self._wake.wait()
            self._wake.clear()
            # A requested sync runs even when close() came right after it: stopping first would lose it, and
            # with it a write-back error that close() must raise.
            if self._requested:
                self._requested = False
                try:
                    sync(self.fd)
                except OSError as e:
                    self.error = e
                    return
            if self._stop:
                return

    def close(self):
        """Wait for a running fdatasync (the descriptor must stay open until then); raise its error."""
        if self._thread is not None:
            self._stop = True
            self._wake.set()
            self._thread.join()
            self._thread = None
        if self.error is not None:
            raise self.error


class PipelineStalled(PipelineFailed):
    """The watchdog stopped a pipeline that made no progress for stall_timeout seconds."""


def _read_io(pid):
    """rchar + wchar of a process (bytes it read and wrote through read/write calls), 0 when unreadable."""
    try:
        with open('/proc/%d/io' % pid) as f:
            vals = dict(line.split(':', 1) for line in f if ':' in line)
        return int(vals.get('rchar', 0)) + int(vals.get('wchar', 0))
    except (OSError, ValueError):
        return 0


def _descendants(pid, depth=0):
    """pid and its descendants (Linux /proc/<pid>/task/<pid>/children), for a stage that is a wrapper script."""
    out = [pid]
    if depth > 8:
        return out
    try:
        with open('/proc/%d/task/%d/children' % (pid, pid)) as f:
            kids = [int(k) for k in f.read().split()]
    except (OSError, ValueError):
        kids = []
    for k in kids:
        out.extend(_descendants(k, depth + 1))
    return out


def _cause_line(stderr):
    """The line of a tool's stderr that says why it failed: the first error line (pg_restore prints 'Command
    was: ...' after it, psql/mariadb a context line), and the last line when it differs."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if not lines:
        return ''
    last = lines[-1][:500]
    for ln in lines:
        low = ln.lower()
        if 'error' in low or 'fatal' in low or 'denied' in low or 'must be' in low:
            return last if ln[:500] == last else '%s (last line: %s)' % (ln[:500], last)
    return last


class Pipeline:
    """stage1 | stage2 | ... ; the last stage's stdout is read by this process (or goes to a file/DEVNULL).

    run_to_file(): stream the output through sha256 into an open file descriptor.
    run(): for pipelines whose last stage consumes everything (restores).
    Every stage's exit code and the tail of its stderr are kept; ok only if all are 0.

    stall_timeout (seconds, None or 0: no watchdog): the pipeline is stopped when for that long no byte came
    through the last pipe, no process of it (nor their children) read or wrote a byte, and watch_path (a
    directory pg_dump writes) did not grow. That is no progress, not a limit on a long dump. `where` names the
    server and the phase in the message (e.g. "127.0.0.1:5432, phase dump"). server_busy(), when given, is asked
    before a stall is declared: True (the server is executing this pipeline's statement, e.g. the CREATE INDEX of
    a restore, which sends no byte for a long time) counts as progress.
    """

    CHECK_EVERY = 1.0   # seconds between two looks at the processes' counters

    def __init__(self, stages, redact=None, stdin_path=None, progress=None, stall_timeout=None, where=None,
                 watch_path=None, server_busy=None):
        self.stages = stages
        self.redact = redact or (lambda s: s)
        self.stdin_path = stdin_path
        self.progress = progress
        self.stall_timeout = stall_timeout or None
        self.where = where
        self.watch_path = watch_path
        self.server_busy = server_busy
        self.bytes = 0
        self.sha256 = hashlib.sha256()
        self._activity = None
        self._last_progress = None

    def _start(self, capture_last):
        stdin = open(self.stdin_path, 'rb') if self.stdin_path else subprocess.DEVNULL
        prev = stdin
        try:
            for i, st in enumerate(self.stages):
                last = i == len(self.stages) - 1
                st.stderr_file = tempfile.TemporaryFile()
                # its own process group: kill() stops the stage with everything it started
                st.proc = subprocess.Popen(
                    st.argv, stdin=prev, stdout=subprocess.PIPE if (not last or capture_last) else subprocess.DEVNULL,
                    stderr=st.stderr_file, env=st.env, close_fds=True, start_new_session=True)
                widen_pipe(st.proc.stdout)
                if prev is not stdin and prev is not None:
                    prev.close()  # only the next stage holds the read end now: SIGPIPE works
                prev = st.proc.stdout
        except OSError as e:
            self.kill()
            raise DbopsError('Cannot start %s: %s' % (self.stages[i].argv[0], e))
        finally:
            if stdin is not subprocess.DEVNULL:
                stdin.close()
        self._last_progress = time.monotonic()
        return prev

    def kill(self):
        for st in self.stages:
            if st.proc is not None and st.proc.poll() is None:
                try:
                    os.killpg(st.proc.pid, signal.SIGKILL)
                except OSError:
                    try:
                        st.proc.kill()
                    except OSError:
                        pass
        for st in self.stages:
            if st.proc is not None:
                try:
                    st.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:  # pragma: no cover
                    pass

    # --- watchdog ------------------------------------------------------------------------------
    def _signature(self):
        total = self.bytes
        for st in self.stages:
            if st.proc is not None and st.proc.poll() is None:
                total += sum(_read_io(pid) for pid in _descendants(st.proc.pid))
        if self.watch_path:
            try:
                total += sum(os.path.getsize(os.path.join(r, n)) for r, _d, ns in os.walk(self.watch_path) for n in ns)
            except OSError:
                pass
        return total

    def _watch(self):
        """Called at least every CHECK_EVERY seconds while the pipeline runs; raises PipelineStalled."""
        if not self.stall_timeout:
            return
        now = time.monotonic()
        sig = self._signature()
        if sig != self._activity:
            self._activity = sig
            self._last_progress = now
            return
        if now - self._last_progress < self.stall_timeout:
            return
        if self._server_is_busy():
            self._last_progress = now  # e.g. a CREATE INDEX of a restore: the server works on our statement
            return
        running = [st.name for st in self.stages if st.proc is not None and st.proc.poll() is None]
        self.kill()
        self._collect()
        tool = running[0] if running else self.stages[0].name
        raise PipelineStalled(
            '%s made no progress for %.0f seconds (%s): no bytes came through the pipe and no process of the '
            'pipeline (%s) read or wrote anything%s. Every process was stopped and nothing was kept. Check the server '
            'and the network (a lock held, a hung server), or raise stall_timeout if this server is known to be '
            'silent for that long.' % (tool, now - self._last_progress, self.where or 'no server',
                                       ' | '.join(st.name for st in self.stages),
                                       ', and %s did not grow' % self.watch_path if self.watch_path else ''),
            processes=self.report())

    def _server_is_busy(self):
        """server_busy() (does the server run a statement of this pipeline's session?) in a thread, for at most
        30 seconds: a server that does not answer is not busy for us."""
        if self.server_busy is None:
            return False
        answer = []

        def ask():
            try:
                answer.append(bool(self.server_busy()))
            except Exception:  # pylint: disable=broad-except
                answer.append(False)
        t = threading.Thread(target=ask, name='dbops-stall-ask')
        t.daemon = True
        t.start()
        t.join(min(30.0, self.stall_timeout))
        return bool(answer and answer[0])

    def _collect(self):
        for st in self.stages:
            if st.stderr_file is None or st.stderr_file.closed:
                continue
            st.returncode = st.proc.wait()
            st.stderr_file.seek(0, os.SEEK_END)
            size = st.stderr_file.tell()
            st.stderr_file.seek(max(0, size - STDERR_KEEP))
            st.stderr = self.redact(st.stderr_file.read().decode('utf-8', 'replace').strip())
            st.stderr_file.close()

    def report(self):
        return [dict(name=st.name, rc=st.returncode, status=describe_rc(st.returncode), stderr=st.stderr)
                for st in self.stages]

    def failure(self, what):
        bad = [st for st in self.stages if st.returncode != 0]
        parts = []
        for st in bad:
            parts.append('%s %s%s' % (st.name, describe_rc(st.returncode),
                                      (': %s' % _cause_line(st.stderr)) if st.stderr else ''))
        return PipelineFailed('%s failed: %s.' % (what, '; '.join(parts) or 'no output'), processes=self.report())

    @property
    def ok(self):
        return all(st.returncode == 0 for st in self.stages)

    def run_to_file(self, fd, directory, consumer=None, sync_every=SYNC_EVERY):
        """Stream the last stage's stdout into fd (or to consumer(chunk) when fd is None), hashing on the way.

        This thread reads the pipe and writes the file; a StreamHasher thread hashes the same chunks; with fd, a
        BackgroundSync flushes the file every sync_every bytes (None: never; the caller fsyncs at the end either
        way). self.sha256 is the finished hash object afterwards.
        Raises DbopsError on write errors, a failed hashing thread or a stall (after killing every stage)."""
        out = self._start(capture_last=True)
        hasher = StreamHasher()
        syncer = BackgroundSync(fd, sync_every) if fd is not None and sync_every else None
        rfd = out.fileno()
        next_check = time.monotonic() + self.CHECK_EVERY
        try:
            while True:
                if self.stall_timeout:
                    ready, _w, _x = select.select([rfd], [], [], self.CHECK_EVERY)
                    if not ready or time.monotonic() >= next_check:
                        next_check = time.monotonic() + self.CHECK_EVERY
                        self._watch()
                        if not ready:
                            continue
                chunk = os.read(rfd, CHUNK)
                if not chunk:
                    break
                hasher.update(chunk)
                if fd is None:
                    consumer(chunk)
                    self.bytes += len(chunk)
                    continue
                view = memoryview(chunk)
                while view:
                    try:
                        n = os.write(fd, view)
                    except OSError as e:
                        raise DbopsError(disk_error_message(e, directory, self.bytes))
                    view = view[n:]
                    self.bytes += n
                if syncer is not None:
                    syncer.written(self.bytes)
                if self.progress:
                    self.progress(self.bytes)
            self.sha256 = hasher.finish()
            if syncer is not None:
                try:
                    syncer.close()
                except OSError as e:
                    raise DbopsError(disk_error_message(e, directory, self.bytes)) from e
            # EOF: the last stage closed its output; the others must still exit (watched too)
            while self.stall_timeout and any(st.proc.poll() is None for st in self.stages):
                time.sleep(0.05)
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.CHECK_EVERY
                    self._watch()
        except BaseException:
            out.close()
            self.kill()
            self._collect()
            hasher.close()
            if syncer is not None:
                try:
                    syncer.close()
                except OSError:
                    pass
            raise
        out.close()
        self._collect()
        return self.ok

    def run(self):
        """Run to completion (the last stage's stdout is discarded)."""
        self._start(capture_last=False)
        next_check = time.monotonic() + self.CHECK_EVERY
        try:
            while any(st.proc.poll() is None for st in self.stages):
                time.sleep(0.05)
                if self.progress:
                    self.progress(None)
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.CHECK_EVERY
                    self._watch()
        except BaseException:
            self.kill()
            self._collect()
            raise
        self._collect()
        return self.ok


def run_tool(argv, env=None, timeout=None, redact=None, stdin_path=None):
    """Run one command; returns (rc, stdout, stderr) with stderr redacted. Past `timeout` seconds it is stopped
    with its whole process group (process.run_bounded) and DbopsError says so."""
    try:
        rc, out, err = run_bounded(argv, timeout, env=env, stdin_path=stdin_path)
    except OSError as e:
        raise DbopsError('Cannot run %s: %s' % (argv[0], e))
    red = redact or (lambda s: s)
    err = red(err.decode('utf-8', 'replace').strip())
    if rc is None:
        raise DbopsError('%s did not finish within %s s and was stopped (with the processes it started).%s'
                         % (os.path.basename(argv[0]), timeout, (' Its error output: ' + err[-500:]) if err else ''))
    return rc, out, err


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def map_threads(fn, items, workers):
    """[fn(x) for x in items], computed by up to `workers` threads (for work that releases the GIL: hashing,
    reading files). The first exception is raised after every thread stopped."""
    items = list(items)
    workers = max(1, min(workers, len(items)))
    if workers == 1:
        return [fn(x) for x in items]
    results = [None] * len(items)
    errors = []
    lock = threading.Lock()
    todo = iter(range(len(items)))

    def work():
        while True:
            with lock:
                i = next(todo, None)
                if i is None or errors:
                    return
            try:
                results[i] = fn(items[i])
            except BaseException as e:  # pylint: disable=broad-except
                with lock:
                    errors.append(e)
                return
    threads = [threading.Thread(target=work, name='dbops-worker-%d' % n) for n in range(workers)]
    for t in threads:
        t.daemon = True
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def sha256_tree(path, workers=None):
    """sha256 of a directory backup: of the sorted lines '<sha256>  <relative name>' of its files.

    The files are hashed by up to `workers` threads (default: the CPU count, at most 4), largest first.
    Returns (digest, {relative name: sha256}, total size).
    """
    entries = []
    for root, _dirs, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            entries.append((os.path.getsize(full), os.path.relpath(full, path), full))
    entries.sort(key=lambda e: -e[0])
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    digests = map_threads(sha256_file, [full for _size, _rel, full in entries], workers)
    files = dict((rel, digest) for (_size, rel, _full), digest in zip(entries, digests))
    size = sum(e[0] for e in entries)
    text = ''.join('%s  %s\n' % (files[k], k) for k in sorted(files))
    return hashlib.sha256(text.encode('utf-8')).hexdigest(), files, size


def fsync_tree(path):
    for root, _dirs, names in os.walk(path):
        for name in names:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(root)

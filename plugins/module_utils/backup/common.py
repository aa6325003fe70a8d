# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What db_backup, db_restore and db_clone share, whatever the engine.

* Pipeline: runs tool | compressor | ... with every exit code and stderr kept;
  the last process's stdout is read by this process and written into a file,
  and a second thread computes its sha256 from the same chunks (while streaming,
  never by re-reading). Pipes are widened to 1 MiB (Linux) and the file's dirty
  pages are flushed in the background while the dump runs, so the final fsync
  has little left to do.
* Atomic files: a temporary name in the destination directory, fsync, rename,
  fsync of the directory. A failed or killed run removes its temporary file.
* Manifests (<backup>.manifest.json) and retention, which only ever looks at
  files that have this collection's manifest.
* Tool lookup (tool_path first) and private 0600 files for secrets.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError

MANIFEST_KIND = 'dbops.maintenance/backup'
MANIFEST_VERSION = 1
MANIFEST_SUFFIX = '.manifest.json'
TMP_PREFIX = '.dbops-tmp-'
CHUNK = 1024 * 1024
STDERR_KEEP = 4000
HASH_QUEUE = 8                     # chunks (each at most CHUNK) waiting for the hashing thread
SYNC_EVERY = 32 * 1024 * 1024      # fdatasync in the background after every this many bytes written
PIPE_SIZE = 1024 * 1024            # pipe capacity asked for (Linux F_SETPIPE_SZ; the default is 64 KiB)
# fcntl.F_SETPIPE_SZ exists from Python 3.10; its value on Linux is 1031
F_SETPIPE_SZ = 1031 if sys.platform.startswith('linux') else None

COMPRESSION_EXT = {'none': '', 'gzip': '.gz', 'lz4': '.lz4', 'zstd': '.zst'}
COMPRESSOR_TOOL = {'gzip': 'gzip', 'lz4': 'lz4', 'zstd': 'zstd'}


class Interrupted(Exception):
    """SIGTERM/SIGINT/SIGHUP reached the module (Ansible timeout, Ctrl-C): clean up and fail."""


def install_signal_handlers():
    def handler(signum, _frame):
        raise Interrupted('the module received signal %d' % signum)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):  # pragma: no cover - not the main thread
            pass


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------

def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(ts):
    return ts.strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def parse_iso(text):
    return datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=datetime.timezone.utc)


_DURATION = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$')


def parse_duration(value, option):
    """'90', '90s', '30m', '12h', '7d', '2w' -> seconds (float)."""
    if value is None:
        return None
    m = _DURATION.match(str(value).lower())
    if not m:
        raise DbopsError('%s=%r is not a duration: give seconds (e.g. 3600) or a number with a unit '
                         's, m, h, d or w (e.g. 12h, 7d).' % (option, value))
    return float(m.group(1)) * {'': 1, 's': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}[m.group(2)]


def human_size(n):
    n = float(n or 0)
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if n < 1024 or unit == 'TiB':
            return '%.1f %s' % (n, unit) if unit != 'B' else '%d B' % n
        n /= 1024.0
    return '%d B' % n  # pragma: no cover


def safe_label(text):
    """A file-name-safe label: letters, digits, '.', '_' and '-' (others become '_')."""
    label = re.sub(r'[^A-Za-z0-9._-]+', '_', text).strip('._') or 'backup'
    return label[:100]


def timestamp_name(ts):
    return ts.strftime('%Y%m%dT%H%M%SZ')


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_path(path):
    """Remove a file or directory tree; never raises for a missing path."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass


def disk_error_message(exc, directory, written=None):
    """An operator's message for an OSError met while writing into directory."""
    free = ''
    try:
        st = os.statvfs(directory)
        free = ' (%s free of %s)' % (human_size(st.f_bavail * st.f_frsize), human_size(st.f_blocks * st.f_frsize))
    except OSError:
        pass
    done = ' after %s' % human_size(written) if written else ''
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return ('No space left on the file system of %s%s%s. Free space there, remove old backups (keep_last / '
                'keep_days), or choose another dest.' % (directory, done, free))
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ('Cannot write into %s: %s. Choose a dest the module user can write to (a read-only file system or '
                'missing permission).' % (directory, exc.strerror))
    return 'Writing into %s failed%s: %s' % (directory, done, exc)


# --------------------------------------------------------------------------
# tools
# --------------------------------------------------------------------------

def find_tool(name, tool_path=None, extra_dirs=()):
    """Full path of the executable `name`: tool_path first, then extra_dirs, then PATH. None if absent."""
    dirs = []
    if tool_path:
        dirs.append(tool_path)
    dirs.extend(extra_dirs)
    for d in dirs:
        candidate = os.path.join(d, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which(name)


def widen_pipe(fileobj):
    """Ask for a PIPE_SIZE pipe buffer (fewer context switches between the stages); best effort."""
    if F_SETPIPE_SZ is None or fileobj is None:
        return
    try:
        import fcntl
        fcntl.fcntl(fileobj.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
    except (ImportError, OSError, ValueError):
        pass


def tool_version(path, env=None):
    try:
        out = subprocess.run([path, '--version'], capture_output=True, text=True, timeout=20, env=env,
                             stdin=subprocess.DEVNULL, check=False)
    except OSError as e:
        raise DbopsError('Cannot run %s: %s' % (path, e))
    text = (out.stdout or out.stderr or '').strip().splitlines()
    return text[0].strip() if text else ''


class VersionProbe:
    """tool_version(path) in a thread: started before the dump, read when the manifest is written, so the probe
    (a process start, 5 to 90 ms) is not on the dump's critical path. result() raises what tool_version raised."""

    def __init__(self, path, env=None):
        self.path = path
        self._value = None
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(env,), name='dbops-version-probe')
        self._thread.daemon = True
        self._thread.start()

    def _run(self, env):
        try:
            self._value = tool_version(self.path, env)
        except BaseException as e:  # pylint: disable=broad-except
            self._error = e

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def resolve_versions(tools):
    """A manifest's `tools` dict with every VersionProbe replaced by the version line it found."""
    return dict((name, dict((k, v.result() if isinstance(v, VersionProbe) else v) for k, v in info.items()))
                for name, info in tools.items())


def require_tool(name, tool_path, why, extra_dirs=()):
    path = find_tool(name, tool_path, extra_dirs)
    if not path:
        where = 'in tool_path %s, ' % tool_path if tool_path else ''
        raise DbopsError('%s is needed %s but was not found %sor on PATH. Install it (Debian: apt-get install %s) '
                         'or set tool_path to the directory that holds it.'
                         % (name, why, where, {'gzip': 'gzip', 'zstd': 'zstd', 'lz4': 'lz4'}.get(name, 'the client package')))
    return path


def compressor_argv(compression, tool_path, level=None, decompress=False):
    tool = COMPRESSOR_TOOL[compression]
    path = require_tool(tool, tool_path, 'to %scompress with %s' % ('de' if decompress else '', compression))
    if decompress:
        return [path, '-d', '-c'] + (['-q'] if compression != 'gzip' else [])
    argv = [path, '-c']
    if compression == 'zstd':
        argv += ['-q', '-T0']
    elif compression == 'lz4':
        argv += ['-q']
    if level is not None:
        argv.append('-%d' % level)
    return argv


class PrivateDir:
    """A 0700 temporary directory for secrets (a MySQL defaults file), always removed."""

    def __init__(self):
        self.path = tempfile.mkdtemp(prefix='dbops-secret-')
        os.chmod(self.path, 0o700)

    def write(self, name, text):
        path = os.path.join(self.path, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        return path

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


# --------------------------------------------------------------------------
# pipelines
# --------------------------------------------------------------------------

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
        self._thread = None

    def written(self, total):
        if total < self._next or self.error is not None:
            return
        self._next = total + self.every
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
            if self._stop:
                return
            try:
                sync(self.fd)
            except OSError as e:
                self.error = e
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


class Pipeline:
    """stage1 | stage2 | ... ; the last stage's stdout is read by this process (or goes to a file/DEVNULL).

    run_to_file(): stream the output through sha256 into an open file descriptor.
    run(): for pipelines whose last stage consumes everything (restores).
    Every stage's exit code and the tail of its stderr are kept; ok only if all are 0.
    """

    def __init__(self, stages, redact=None, stdin_path=None, progress=None):
        self.stages = stages
        self.redact = redact or (lambda s: s)
        self.stdin_path = stdin_path
        self.progress = progress
        self.bytes = 0
        self.sha256 = hashlib.sha256()

    def _start(self, capture_last):
        stdin = open(self.stdin_path, 'rb') if self.stdin_path else subprocess.DEVNULL
        prev = stdin
        try:
            for i, st in enumerate(self.stages):
                last = i == len(self.stages) - 1
                st.stderr_file = tempfile.TemporaryFile()
                st.proc = subprocess.Popen(
                    st.argv, stdin=prev, stdout=subprocess.PIPE if (not last or capture_last) else subprocess.DEVNULL,
                    stderr=st.stderr_file, env=st.env, close_fds=True)
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
        return prev

    def kill(self):
        for st in self.stages:
            if st.proc is not None and st.proc.poll() is None:
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

    def _collect(self):
        for st in self.stages:
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
                                      (': %s' % st.stderr.splitlines()[-1][:500]) if st.stderr else ''))
        return PipelineFailed('%s failed: %s.' % (what, '; '.join(parts) or 'no output'), processes=self.report())

    @property
    def ok(self):
        return all(st.returncode == 0 for st in self.stages)

    def run_to_file(self, fd, directory, consumer=None, sync_every=SYNC_EVERY):
        """Stream the last stage's stdout into fd (or to consumer(chunk) when fd is None), hashing on the way.

        This thread reads the pipe and writes the file; a StreamHasher thread hashes the same chunks; with fd, a
        BackgroundSync flushes the file every sync_every bytes (None: never; the caller fsyncs at the end either
        way). self.sha256 is the finished hash object afterwards.
        Raises DbopsError on write errors or a failed hashing thread (after killing every stage)."""
        out = self._start(capture_last=True)
        hasher = StreamHasher()
        syncer = BackgroundSync(fd, sync_every) if fd is not None and sync_every else None
        rfd = out.fileno()
        try:
            while True:
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
        try:
            while any(st.proc.poll() is None for st in self.stages):
                time.sleep(0.05)
                if self.progress:
                    self.progress(None)
        except BaseException:
            self.kill()
            self._collect()
            raise
        self._collect()
        return self.ok


def run_tool(argv, env=None, timeout=None, redact=None, stdin_path=None):
    """Run one command; returns (rc, stdout, stderr) with stderr redacted."""
    stdin = open(stdin_path, 'rb') if stdin_path else subprocess.DEVNULL
    try:
        p = subprocess.run(argv, env=env, stdin=stdin, capture_output=True, timeout=timeout, check=False)
    except OSError as e:
        raise DbopsError('Cannot run %s: %s' % (argv[0], e))
    finally:
        if stdin_path:
            stdin.close()
    red = redact or (lambda s: s)
    return p.returncode, p.stdout, red(p.stderr.decode('utf-8', 'replace').strip())


# --------------------------------------------------------------------------
# hashing, atomic files
# --------------------------------------------------------------------------

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


def host_tag():
    """8 hex digits naming this host in temporary names: a dest shared by several hosts (NFS) must not have
    one host remove another's running backup because that host's pid is not alive here."""
    return hashlib.sha256(socket.gethostname().encode('utf-8', 'replace')).hexdigest()[:8]


def tmp_name(directory, final_name):
    return os.path.join(directory, '%s%d.%s-%s' % (TMP_PREFIX, os.getpid(), host_tag(), final_name))


def cleanup_stale_tmp(directory):
    """Remove temporary files of earlier runs on this host whose process is gone (a killed module).

    Returns their names. Names without a host tag (written by older versions) count as this host's."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    here = host_tag()
    for name in names:
        m = re.match(r'^%s(\d+)(?:\.([0-9a-f]{8}))?-' % re.escape(TMP_PREFIX), name)
        if not m or m.group(2) not in (None, here):
            continue
        if int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            remove_path(os.path.join(directory, name))
            removed.append(name)
    return removed


def write_json_atomic(path, data):
    directory = os.path.dirname(path)
    tmp = tmp_name(directory, os.path.basename(path))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w') as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
            f.write('\n')
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
        fsync_dir(directory)
    except OSError as e:
        remove_path(tmp)
        raise DbopsError('Cannot write the manifest %s: %s' % (path, disk_error_message(e, directory)))
    except BaseException:
        remove_path(tmp)  # e.g. an object json cannot encode, or a signal: no half-written temporary file
        raise


# --------------------------------------------------------------------------
# manifests
# --------------------------------------------------------------------------

from ansible_collections.dbops.maintenance.plugins.module_utils.backup.manifest import (  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
    backup_file_of, check_backup_integrity, list_backups, manifest_path_for, read_manifest,
)


def current_size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(r, n)) for r, _d, ns in os.walk(path) for n in ns)
    return os.path.getsize(path)


# --------------------------------------------------------------------------
# retention
# --------------------------------------------------------------------------

def plan_retention(backups, keep_last, keep_days, now, protect=()):
    """Which backups to delete (list of (manifest_path, manifest)), oldest first.

    backups: one label group, oldest first. A backup is kept when it is among the
    newest keep_last, or younger than keep_days; with only one of the two set, that
    one decides. Backups in `protect` (manifest paths) are always kept.
    """
    if keep_last is None and keep_days is None:
        return []
    newest_first = list(reversed(backups))
    delete = []
    for i, (mpath, m) in enumerate(newest_first):
        if mpath in protect:
            continue
        keep = False
        if keep_last is not None and i < keep_last:
            keep = True
        if keep_days is not None and (now - parse_iso(m['finished_at'])).total_seconds() < keep_days * 86400:
            keep = True
        if not keep:
            delete.append((mpath, m))
    return list(reversed(delete))


def apply_retention(directory, to_delete):
    """Delete the manifest first (so nothing claims a half-deleted backup), then the backup."""
    removed = []
    for mpath, m in to_delete:
        backup = os.path.join(directory, m['file'])
        try:
            os.unlink(mpath)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise DbopsError('Retention could not remove %s: %s' % (mpath, e))
        remove_path(backup)
        removed.append(backup)
    if removed:
        fsync_dir(directory)
    return removed


# --------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------

class Progress:
    """Size/throughput while a dump runs: a JSON file beside the temporary file (for `async` polling or
    `watch cat`), updated every `every` seconds, and samples kept for the result."""

    def __init__(self, path, every=2.0, max_samples=30, size_of=None):
        self.path = path
        self.size_of = size_of
        self.every = every
        self.start = time.monotonic()
        self.last = 0.0
        self.samples = []
        self.max_samples = max_samples

    def __call__(self, nbytes):
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.start
        if nbytes is None:
            try:
                nbytes = self.size_of() if self.size_of else 0
            except OSError:
                nbytes = 0
        sample = dict(seconds=round(elapsed, 1), bytes=nbytes, throughput=int(nbytes / elapsed) if elapsed else 0)
        if len(self.samples) >= self.max_samples:
            self.samples = self.samples[::2]
            self.every *= 2
        self.samples.append(sample)
        if self.path:
            try:
                tmp = self.path + '.new'
                with open(tmp, 'w') as f:
                    human = '%s in %.0fs, %s/s' % (human_size(nbytes), elapsed, human_size(sample['throughput']))
                    json.dump(dict(sample, human=human), f)
                os.rename(tmp, self.path)
            except OSError:
                pass

    def remove(self):
        if self.path:
            remove_path(self.path)
            remove_path(self.path + '.new')


class ModuleView:
    """What an engine adapter needs from a module, with other parameters (e.g. another database)."""

    def __init__(self, module, **overrides):
        self._module = module
        self.params = dict(module.params, **overrides)
        self.check_mode = module.check_mode
        self._name = module._name

    def fail_json(self, **kw):
        self._module.fail_json(**kw)

    def warn(self, msg):
        self._module.warn(msg)

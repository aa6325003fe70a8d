# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The file rules of the backup side, in one place.

A backup directory may be shared (a world-writable, sticky /var/backups, an NFS export), so every file this
collection creates there follows the same rules:

* dest itself is checked first (check_dest): a dangling symlink, a non-directory, a directory writable by every
  user without the sticky bit, or one owned by another non-root user is refused with a clear message (another
  user could replace or remove the backups there).
* Every temporary thing of a run (the dump being written, the uncompressed SQLite copy and its -journal, the
  progress JSON, a directory-format dump, the manifest before its rename) lives in ONE private directory made
  by mkdtemp inside dest (mode 0700, an unpredictable name, created with mkdir, which never follows a symlink),
  so nobody else can plant anything at the names used inside it, nor read the data while it is written.
* Files are opened with O_CREAT|O_EXCL|O_NOFOLLOW and mode 0600 (create_private): they are new files of this
  run, never an existing file or the target of a symlink, and private from the first byte.
* The final names are taken with rename_noreplace (renameat2 RENAME_NOREPLACE, or link+unlink): an entry
  planted at the final name (a symlink, a file) makes the run fail clearly; it is never followed nor replaced.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import tempfile

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError

TMP_PREFIX = '.dbops-tmp-'
O_NOFOLLOW = getattr(os, 'O_NOFOLLOW', 0)
O_CLOEXEC = getattr(os, 'O_CLOEXEC', 0)
PRIVATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC
RENAME_NOREPLACE = 1
AT_FDCWD = -100


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_path(path):
    """Remove a file, a symlink (never what it points to) or a directory tree; never raises for a missing path."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass


def human_size(n):
    n = float(n or 0)
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if n < 1024 or unit == 'TiB':
            return '%.1f %s' % (n, unit) if unit != 'B' else '%d B' % n
        n /= 1024.0
    return '%d B' % n  # pragma: no cover


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


def host_tag():
    """8 hex digits naming this host in temporary names: a dest shared by several hosts (NFS) must not have
    one host remove another's running backup because that host's pid is not alive here."""
    return hashlib.sha256(socket.gethostname().encode('utf-8', 'replace')).hexdigest()[:8]


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return 'uid %d' % uid


def parse_dest_mode(value):
    """dest_mode ('0700', '750') as an int; a DbopsError saying what is wrong otherwise."""
    text = str(value).strip()
    if not text or len(text) > 4 or any(ch not in '01234567' for ch in text):
        raise DbopsError('dest_mode %r is not a mode: give it as a string of octal digits, e.g. "0700" (quoted in '
                         'YAML, so it is not read as a number).' % (value,))
    mode = int(text, 8)
    if mode & 0o700 != 0o700:
        raise DbopsError('dest_mode %s takes from the owner one of read, write and search (u+rwx): the module could '
                         'not write the backups into it. Use e.g. "0700" or "0750".' % text)
    if mode & 0o002:
        raise DbopsError('dest_mode %s lets every user write into dest (o+w): any user could replace or remove the '
                         'backups. Use e.g. "0700" or "0750".' % text)
    return mode


def check_dest(dest, create=True, mode=None):
    """Refuse a dest that is unsafe or unusable; create it when missing and `create`; set its mode to `mode`.

    A missing dest is created 0700, or with `mode` (an int from parse_dest_mode; missing parents 0700); an
    existing dest whose mode differs from `mode` is set to it, through a descriptor of the directory that was
    checked (fchmod: no second lookup of the path). Returns (exists afterwards, the mode before as '0755' when
    it was or would be changed, else None). Check mode passes create=False: a missing dest is then fine (the
    real run creates it), a mode that differs is reported and left, the refusals are those of a real run."""
    if os.path.islink(dest) and not os.path.exists(dest):
        raise DbopsError('dest %s is a symbolic link to %s, which does not exist. Create that directory, or give '
                         'dest as an existing directory (or a path to create).' % (dest, os.readlink(dest)))
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise DbopsError('dest %s exists and is not a directory. dest is the directory that holds the backups.'
                         % dest)
    created = False
    if not os.path.exists(dest):
        if not create:
            return False, None
        # The hosts of one play back up into dest/<host> at the same moment: another run may create the shared
        # parent, or this very dest, between our look and our mkdir. What it made is checked below like any
        # existing dest (a directory, not a link, owned by us or root, mode).
        try:
            parent = os.path.dirname(dest)
            if parent:
                os.makedirs(parent, mode=0o700, exist_ok=True)
            os.mkdir(dest, 0o700)
            created = True
        except FileExistsError as e:
            if os.path.islink(dest) or not os.path.isdir(dest):
                raise DbopsError('Cannot create dest %s: %s' % (dest, disk_error_message(e, os.path.dirname(dest))))
        except OSError as e:
            raise DbopsError('Cannot create dest %s: %s' % (dest, disk_error_message(e, os.path.dirname(dest))))
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | getattr(os, 'O_CLOEXEC', 0))
    try:
        st = os.fstat(fd)
        if st.st_uid not in (0, os.geteuid()):
            raise DbopsError('dest %s is owned by %s, neither the module user (%s) nor root: its owner could replace '
                             'or remove the backups in it. Use a directory owned by the module user or by root.'
                             % (dest, _owner_name(st.st_uid), _owner_name(os.geteuid())))
        before = stat.S_IMODE(st.st_mode)
        changed_from = None
        if mode is not None and before != mode:
            # a directory this run created is not reported as a mode change (it is new)
            changed_from = None if created else '%04o' % before
            if create:
                os.fchmod(fd, mode)
                st = os.fstat(fd)
        # check mode: judged by the mode the real run would set
        now = mode if changed_from is not None and not create else stat.S_IMODE(st.st_mode)
        if now & stat.S_IWOTH and not now & stat.S_ISVTX:
            raise DbopsError('dest %s is writable by every user and has no sticky bit (mode %04o): any user could '
                             'replace or remove the backups in it. Use a directory only the backup user can write to '
                             '(chmod o-w), set the sticky bit (chmod +t) as /tmp has, or give dest_mode.'
                             % (dest, now))
    finally:
        os.close(fd)
    return True, changed_from


def create_private(path):
    """A new file at path, 0600 from its creation; never an existing file, never through a symlink."""
    return os.open(path, PRIVATE_FLAGS, 0o600)


def create_like(path, st):
    """A new file at path (never an existing file, never through a symlink) with the owner (when root) and mode of
    the stat result st: created with at most 0600, so it is never more open than wanted before its owner is set."""
    fd = os.open(path, PRIVATE_FLAGS, stat.S_IMODE(st.st_mode) & 0o600 or 0o600)
    try:
        if os.geteuid() == 0:
            os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, stat.S_IMODE(st.st_mode))
    finally:
        os.close(fd)


def write_private(path, data):
    """create_private + write + fsync (bytes or str)."""
    fd = create_private(path)
    with os.fdopen(fd, 'wb' if isinstance(data, bytes) else 'w') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return path


_LIBC = {}


def _renameat2():
    """libc's renameat2 (glibc 2.28+), or None."""
    if 'libc' not in _LIBC:
        try:
            _LIBC['libc'] = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
        except OSError:
            _LIBC['libc'] = None
    return getattr(_LIBC['libc'], 'renameat2', None) if _LIBC['libc'] is not None else None


def rename_noreplace(src, dst):
    """rename(src, dst) that fails with FileExistsError when anything (a symlink too) is at dst.

    renameat2(RENAME_NOREPLACE) where the kernel and file system have it; else link+unlink for a file, and for a
    directory a check then rename (rename never writes through a symlink at dst; onto one it fails, ENOTDIR)."""
    fn = _renameat2()
    if fn is not None:
        rc = fn(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), RENAME_NOREPLACE)
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise FileExistsError(err, os.strerror(err), dst)
        if err not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), dst)
    if os.path.isdir(src) and not os.path.islink(src):
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
        os.rename(src, dst)
        return
    os.link(src, dst, follow_symlinks=False)
    os.unlink(src)


def take_final_name(src, dst):
    """rename_noreplace with the operator's message when something is at dst already."""
    try:
        rename_noreplace(src, dst)
    except FileExistsError:
        what = 'a symbolic link' if os.path.islink(dst) else 'an entry'
        raise DbopsError('%s appeared at %s while the backup was written (not made by this run). Nothing was '
                         'overwritten and the backup was not kept; check who else writes into %s.'
                         % (what.capitalize(), dst, os.path.dirname(dst)))


class WorkDir:
    """The run's private 0700 directory inside dest: <dest>/.dbops-tmp-<pid>.<host>-<random>.

    Everything temporary of the run is created inside it; cleanup() removes it with everything in it. The pid
    and host in the name let a later run remove it when this process was killed (cleanup_stale_tmp)."""

    def __init__(self, dest):
        self.dest = dest
        try:
            self.path = tempfile.mkdtemp(prefix='%s%d.%s-' % (TMP_PREFIX, os.getpid(), host_tag()), dir=dest)
        except OSError as e:
            raise DbopsError(disk_error_message(e, dest))
        os.chmod(self.path, 0o700)

    def join(self, name):
        return os.path.join(self.path, name)

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


def write_json_atomic(path, data, replace=True, workdir=None):
    """JSON into path: a private temporary file (in workdir, or a random name beside path), fsync, rename,
    fsync of the directory. replace=False: fail (DbopsError) when anything is at path already."""
    directory = os.path.dirname(path)
    if workdir is not None:
        tmp = os.path.join(workdir, 'json-%s' % secrets.token_hex(8))
    else:
        tmp = os.path.join(directory, '%s%d.%s-%s-%s' % (
            TMP_PREFIX, os.getpid(), host_tag(), secrets.token_hex(8), os.path.basename(path)))
    try:
        fd = create_private(tmp)
        with os.fdopen(fd, 'w') as f:
            json.dump(data, f, indent=2, sort_keys=True, default=str)
            f.write('\n')
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.rename(tmp, path)
        else:
            take_final_name(tmp, path)
        fsync_dir(directory)
    except OSError as e:
        remove_path(tmp)
        raise DbopsError('Cannot write the manifest %s: %s' % (path, disk_error_message(e, directory)))
    except BaseException:
        remove_path(tmp)  # e.g. an object json cannot encode, or a signal: no half-written temporary file
        raise


def replace_json(path, data):
    """Small status JSON (progress) replaced in place: a new private file beside it, then rename. Best effort:
    errors are ignored (progress is informational). path must be inside a private directory."""
    tmp = '%s.%s' % (path, secrets.token_hex(4))
    try:
        fd = create_private(tmp)
        with os.fdopen(fd, 'w') as f:
            json.dump(data, f)
        os.rename(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def tmp_name(directory, final_name):
    """A temporary name beside final_name (for callers outside dest's WorkDir): pid, host and a random part, so
    it cannot be guessed in advance; create it with create_private (O_EXCL|O_NOFOLLOW)."""
    return os.path.join(directory, '%s%d.%s-%s-%s' % (TMP_PREFIX, os.getpid(), host_tag(), secrets.token_hex(6),
                                                      final_name))


def cleanup_stale_tmp(directory):
    """Remove temporary files and directories of earlier runs on this host whose process is gone (a killed
    module), and only those owned by the module user (never another user's entries of a shared dest).

    Returns their names. Names without a host tag (written by older versions) count as this host's."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    here = host_tag()
    me = os.geteuid()
    for name in names:
        m = re.match(r'^%s(\d+)(?:\.([0-9a-f]{8}))?-' % re.escape(TMP_PREFIX), name)
        if not m or m.group(2) not in (None, here):
            continue
        path = os.path.join(directory, name)
        try:
            if os.lstat(path).st_uid != me:
                continue
        except OSError:
            continue
        if int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            remove_path(path)
            removed.append(name)
    return removed


class PrivateDir:
    """A 0700 temporary directory for secrets (a MySQL defaults file), always removed."""

    def __init__(self):
        self.path = tempfile.mkdtemp(prefix='dbops-secret-')
        os.chmod(self.path, 0o700)

    def write(self, name, text):
        path = os.path.join(self.path, name)
        fd = create_private(path)
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        return path

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

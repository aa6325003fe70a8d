# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Writing a run's report files into one directory, safely: the report_write module and its action plugin.

One call writes every file of the report (report.json, report.html): the report role used to spend three module
runs on the controller for it (file, copy, template), which the fleet benchmark showed as a sixth of an idempotent
fleet run. The action plugin calls write_report_files() in the controller's process; the module calls the same
function where it runs.

Files in a shared directory are attacker-reachable: the directory must not be a symlink, each file name is a plain
name, and each file is written to a new temporary file (O_CREAT|O_EXCL|O_NOFOLLOW, an unpredictable name, the
final mode from creation) and renamed over the old one, so a pre-planted symlink is replaced, never followed.
"""

from __future__ import annotations

import os
import re
import stat

ARGUMENT_SPEC = dict(
    path=dict(type='path', required=True),
    files=dict(type='dict', required=True),
    mode=dict(type='str', default='0640'),
    directory_mode=dict(type='str', default='0750'),
)

_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$')
_MODE = re.compile(r'^0?[0-7]{3}$')


class ReportFilesError(Exception):
    """A clear message: what is wrong and how to fix it (nothing was written)."""


def _mode(value, option):
    text = str(value)
    if not _MODE.match(text):
        raise ReportFilesError('%s must be an octal mode such as 0640 (got %r). Nothing was written.' % (option, value))
    mode = int(text, 8)
    if mode & 0o002:
        raise ReportFilesError('%s %s would let any user change the report. Use a mode without the write bit for '
                               'others, such as 0640. Nothing was written.' % (option, text))
    return mode


def validate(params):
    """(path, {name: bytes}, file mode, directory mode), or ReportFilesError; nothing is touched."""
    path = params['path']
    if not path or not os.path.isabs(path):
        raise ReportFilesError('path must be an absolute directory path (got %r). Nothing was written.' % path)
    files = {}
    for name, content in (params.get('files') or {}).items():
        if not isinstance(name, str) or not _NAME.match(name) or name in ('.', '..'):
            raise ReportFilesError('files: %r is not a plain file name (letters, digits, ".", "_", "-"; no "/"). '
                                   'Nothing was written.' % (name,))
        if not isinstance(content, str):
            raise ReportFilesError('files: the content of %s must be a string (got %s). Nothing was written.'
                                   % (name, type(content).__name__))
        files[name] = content.encode('utf-8')
    if not files:
        raise ReportFilesError('files is empty: give at least one file name and its content. Nothing was written.')
    return path, files, _mode(params.get('mode', '0640'), 'mode'), \
        _mode(params.get('directory_mode', '0750'), 'directory_mode')


def _read_nofollow(path):
    """The file's bytes, or None when it is missing, not a regular file, or a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b''.join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def write_report_files(params, check_mode=False):
    """Write the files; returns the result dict (changed, path, written, unchanged). ReportFilesError on bad
    input or an unsafe directory (before anything is written)."""
    path, files, mode, dir_mode = validate(params)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise ReportFilesError('%s exists and is not a directory (%s). Remove it or choose another report '
                               'directory. Nothing was written.' % (path, 'a symlink' if stat.S_ISLNK(st.st_mode)
                                                                    else 'a file'))
    if st is not None and st.st_mode & 0o002 and not st.st_mode & stat.S_ISVTX:
        raise ReportFilesError('%s is writable by every user and has no sticky bit: another user could replace the '
                               'report. Use a private directory. Nothing was written.' % path)
    written, unchanged = [], []
    for name, data in files.items():
        (unchanged if st is not None and _read_nofollow(os.path.join(path, name)) == data else written).append(name)
    dir_changed = st is None or stat.S_IMODE(st.st_mode) != dir_mode
    result = dict(changed=bool(written) or dir_changed, path=path, written=sorted(written),
                  unchanged=sorted(unchanged))
    if check_mode:
        return result
    if st is None:
        os.makedirs(os.path.dirname(path.rstrip('/')) or '/', exist_ok=True)  # parents as mkdir -p makes them
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise ReportFilesError('%s was replaced by something that is not a directory while it was created. '
                                   'Nothing was written.' % path)
    # Everything below goes through a descriptor of the directory itself, opened without following a symlink:
    # swapping the directory for a symlink after the checks above changes nothing.
    try:
        dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0))
    except OSError as e:
        raise ReportFilesError('%s cannot be opened as a directory (%s): it may have been replaced by a symlink. '
                               'Nothing was written.' % (path, e.strerror))
    try:
        if dir_changed:
            os.fchmod(dfd, dir_mode)
        for name in written:
            _write_one(dfd, name, files[name], mode)
    finally:
        os.close(dfd)
    return result


def _write_one(dfd, name, data, mode):
    tmp = '.%s.%s.tmp' % (name, os.urandom(8).hex())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0), mode,
                 dir_fd=dfd)
    try:
        try:
            os.fchmod(fd, mode)  # the umask must not widen or narrow it
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        # replaces a symlink at the name, never follows it
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        raise

# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Finding the dump tools, the compressors and their versions.

* find_tool / require_tool: tool_path first, then extra directories, then PATH.
* tool_version and VersionProbe (the --version line, asked in a thread while the dump runs).
* compressor_argv: the gzip/lz4/zstd command line of a pipeline stage.
* PostgreSQL client directories: candidate_bin_dirs, is_pg_wrapper, parse_major (the choice by server version is
  PgTooling.bin_dir in postgresql.py).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import subprocess
import threading

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError

COMPRESSOR_TOOL = {'gzip': 'gzip', 'lz4': 'lz4', 'zstd': 'zstd'}


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


def candidate_bin_dirs():
    dirs = sorted(glob.glob('/usr/lib/postgresql/*/bin')) + sorted(glob.glob('/usr/pgsql-*/bin'))
    dirs += ['/usr/local/pgsql/bin', '/opt/homebrew/bin', '/usr/local/bin']
    try:
        spec = importlib.util.find_spec('pgserver')
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        dirs.append(os.path.join(os.path.dirname(spec.origin), 'pginstall', 'bin'))
    for d in os.environ.get('PATH', '').split(os.pathsep):
        if d:
            dirs.append(d)
    seen, out = set(), []
    for d in dirs:
        real = os.path.realpath(d)
        if real not in seen and os.path.isfile(os.path.join(d, 'pg_dump')):
            seen.add(real)
            out.append(d)
    return out


def is_pg_wrapper(pg_dump):
    """Debian's postgresql-common makes /usr/bin/pg_dump a link to its pg_wrapper script. It is not a pg_dump of
    its own: it runs the pg_dump of one of the /usr/lib/postgresql/N/bin directories (candidates already), chosen
    at run time, behind a Perl start-up on every call."""
    return os.path.basename(os.path.realpath(pg_dump)) == 'pg_wrapper'


def parse_major(version_line):
    m = re.search(r'\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?', version_line)
    return int(m.group(1)) if m else None

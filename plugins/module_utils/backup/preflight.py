# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""db_backup's check-mode preflight: will a backup work here, and will it fit?

* the tools: the dump tool the real run would use (with its version line) and the client tools a restore of the
  backup needs (PostgreSQL pg_restore and psql of the same directory; MySQL/MariaDB mariadb or mysql);
* the space: the free bytes of dest (or, when it does not exist yet, of its nearest existing parent) against an
  estimate of the dump: the size of the data it would hold times space_factor, plus min_free.

The estimate of the data: PostgreSQL the sum of pg_table_size() (heap and TOAST, no indexes: a dump holds
index definitions, not index pages) of the tables the backup selects; MySQL/MariaDB the sum of DATA_LENGTH of
information_schema.TABLES of those tables; SQLite the size of the database file (the backup is a copy of it).
schema_only: 0. space_factor 1.0 by default: a dump's text is about the size of the data it holds (larger for
numbers, much smaller once compressed), so the default errs on the side of refusing.
"""

from __future__ import annotations

import math
import os

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.tools import find_tool


def human(n):
    n = float(n)
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'):
        if abs(n) < 1024 or unit == 'PiB':
            return ('%d %s' % (n, unit)) if unit == 'B' else ('%.1f %s' % (n, unit))
        n /= 1024.0
    return '%d B' % n  # pragma: no cover


def existing_parent(path):
    """path itself when it exists, else its nearest existing parent (the file system the backup would land on)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def free_bytes(path):
    st = os.statvfs(existing_parent(path))
    return st.f_bavail * st.f_frsize


def compressor_problem(tools, fmt, compression, tool_path):
    """The compressor the pipeline needs (not the dump tool's own, e.g. pg_dump's of custom/directory): missing =
    a problem."""
    if compression in (None, 'none') or tools.compresses_itself(fmt):
        return None
    if find_tool(compression, tool_path):
        return None
    return ('%s is needed to compress the backup but was not found%s or on PATH. Install it (Debian: apt-get install '
            '%s) or set tool_path to the directory that holds it.'
            % (compression, ' in tool_path %s' % tool_path if tool_path else '', compression))


def preflight(module, db, tools):  # pylint: disable=unused-argument
    """The preflight dict (ok, tool, tool_version, restore_tools, dest, checked_path, free_bytes, source_bytes,
    space_factor, min_free, estimated_bytes, needed_bytes, problems)."""
    p = module.params
    problems = []
    dest = os.path.abspath(os.path.expanduser(p['dest']))
    factor = p.get('space_factor')
    factor = 1.0 if factor is None else float(factor)
    min_free = int(p.get('min_free') or 0)
    if factor < 0 or min_free < 0:
        raise DbopsError('space_factor and min_free must be 0 or more.')
    dump, version, restore = '', '', {}
    try:
        dump, version, restore = tools.preflight_tools()
    except DbopsError as e:
        problems.append(str(e))
    problem = compressor_problem(tools, p.get('format'), p.get('compression'), p.get('tool_path'))
    if problem:
        problems.append(problem)
    tables = [] if tools.whole_file else tools.select_tables(p.get('tables'), p.get('exclude_tables'))['tables']
    data = 0 if p.get('schema_only') else tools.data_bytes(tables)
    estimated = int(math.ceil(data * factor))
    needed = estimated + min_free
    checked = existing_parent(dest)
    free = free_bytes(dest)
    if free < needed:
        problems.append(
            '%d MiB free in %s%s, %d MiB needed (%s: the estimate of the dump, %s of data x space_factor %s, '
            'plus min_free %s). Free some space, point dest elsewhere, or lower space_factor / min_free.'
            % (free // 1048576, checked, '' if checked == dest else ' (the nearest existing parent of %s)' % dest,
               -(-needed // 1048576), human(needed), human(data), factor, human(min_free)))
    return dict(ok=not problems, tool=dump, tool_version=version, restore_tools=restore, dest=dest,
                checked_path=checked, free_bytes=free, source_bytes=data, space_factor=factor, min_free=min_free,
                estimated_bytes=estimated, needed_bytes=needed, problems=problems)


def check(module, db, tools):
    """preflight(), raising a DbopsError that carries it when it is not ok."""
    result = preflight(module, db, tools)
    if not result['ok']:
        raise DbopsError('preflight: %s' % ' '.join(result['problems']), preflight=result)
    return result

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
import sqlite3

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.tools import find_tool, tool_version


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


def source_bytes(engine, db, params, tables):
    """Bytes of data the backup would hold (before the factor); tables: the selection's table dicts."""
    if params.get('schema_only'):
        return 0
    if engine == 'sqlite':
        path = os.path.abspath(os.path.expanduser(params['database']))
        return sum(os.path.getsize(p) for p in (path, path + '-wal') if os.path.isfile(p))
    if not tables:
        return 0
    if engine == 'postgresql':
        row = db.fetchone(
            "SELECT COALESCE(sum(pg_table_size(format('%%I.%%I', s, t)::regclass)), 0)::bigint "
            "FROM unnest(%s::text[], %s::text[]) AS x(s, t)",
            [[t['schema'] for t in tables], [t['table'] for t in tables]])
        return int(row[0] or 0)
    names = [t['table'] for t in tables]
    row = db.fetchone(
        'SELECT COALESCE(SUM(DATA_LENGTH), 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %%s '
        'AND TABLE_NAME IN (%s)' % ', '.join(['%s'] * len(names)), [params['database']] + names)
    return int(row[0] or 0)


def _tools(engine, tools, problems):
    """(dump tool path, its version line, {restore tool: path}) of the real run; what is missing goes to problems."""
    if engine == 'sqlite':
        return 'sqlite3 (online backup API)', 'SQLite %s' % sqlite3.sqlite_version, {}
    dump, version, restore = '', '', {}
    try:
        if engine == 'postgresql':
            d, _major, version = tools.bin_dir()
            dump = os.path.join(d, 'pg_dump')
            for name in ('pg_restore', 'psql'):
                restore[name] = tools.tool(name)
        else:
            dump = tools.tool('dump')
            version = tool_version(dump, tools.env())
            restore['client'] = tools.tool('client')
    except DbopsError as e:
        problems.append(str(e))
    return dump, version, restore


def compressor_problem(engine, fmt, compression, tool_path):
    """The compressor the pipeline needs (not pg_dump's own compression of custom/directory): missing = a problem."""
    if compression in (None, 'none') or (engine == 'postgresql' and fmt in (None, 'custom', 'directory')):
        return None
    if find_tool(compression, tool_path):
        return None
    return ('%s is needed to compress the backup but was not found%s or on PATH. Install it (Debian: apt-get install '
            '%s) or set tool_path to the directory that holds it.'
            % (compression, ' in tool_path %s' % tool_path if tool_path else '', compression))


def preflight(module, db, tools):
    """The preflight dict (ok, tool, tool_version, restore_tools, dest, checked_path, free_bytes, source_bytes,
    space_factor, min_free, estimated_bytes, needed_bytes, problems)."""
    p = module.params
    engine = p['engine']
    problems = []
    dest = os.path.abspath(os.path.expanduser(p['dest']))
    factor = p.get('space_factor')
    factor = 1.0 if factor is None else float(factor)
    min_free = int(p.get('min_free') or 0)
    if factor < 0 or min_free < 0:
        raise DbopsError('space_factor and min_free must be 0 or more.')
    dump, version, restore = _tools(engine, tools, problems)
    problem = compressor_problem(engine, p.get('format'), p.get('compression'), p.get('tool_path'))
    if problem:
        problems.append(problem)
    tables = [] if engine == 'sqlite' else tools.select_tables(p.get('tables'), p.get('exclude_tables'))['tables']
    data = source_bytes(engine, db, p, tables)
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

# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one bridge from migration_lint (only_pending) and db_verify (migrations) to migration_status.

Everything about a tool (where its migrations are, its history table, what a
row means, what is pending) is decided by the tool descriptions in
plugins/module_utils/migrations; this file only calls their public
interface: get_tool(), Tool.scan / table / columns / read_columns /
order_by / check_columns / status, and the adapters' mig_columns / mig_select.
"""

from __future__ import annotations

import os

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError

STATES = ('failed', 'unknown', 'modified', 'pending')


def _api():
    try:
        from ansible_collections.dbops.maintenance.plugins.module_utils import migrations
    except ImportError:
        raise DbopsError('Reading the migration history needs the migration tool descriptions of migration_status '
                         '(plugins/module_utils/migrations), which this installation of the collection does not have.')
    return migrations


def read_status(db, tool_name, path, params):
    """migration_status' view of one database: dict(applied, failed, pending, unknown, modified, table_exists)."""
    api = _api()
    if tool_name not in api.TOOLS:
        raise DbopsError('Unknown migration tool %s (known: %s).' % (tool_name, ', '.join(api.TOOLS)))
    try:
        tool = api.get_tool(tool_name)
    except ImportError:
        raise DbopsError('The %s tool description of migration_status is not available in this installation of the '
                         'collection yet.' % tool_name)
    local = tool.scan(path, params) if path else None
    table = params.get('history_table') or tool.table
    present = db.mig_columns(table)
    if present is None:
        rows, exists = [], False
    else:
        tool.check_columns(present, table)
        rows = db.mig_select(table, tool.read_columns(present), [c for c in tool.order_by if c in present])
        exists = True
    status = tool.status(local, rows, params)
    status['table_exists'] = exists
    status['history_table'] = table
    return status


def _tool_of(path, tool):
    if tool:
        return tool
    from ansible_collections.dbops.maintenance.plugins.module_utils.lint import sources
    found = sources.detect_tool(path)
    if not found:
        raise DbopsError('only_pending needs to know the migration tool of %s: set tool.' % path)
    return found


def pending_migrations(module, paths, tool):
    """(ids of the migrations not applied yet, PostgreSQL major version or None) for only_pending."""
    from ansible_collections.dbops.maintenance.plugins.module_utils.connection import open_database
    dirs = [os.path.expanduser(p) for p in paths if os.path.isdir(os.path.expanduser(p))]
    if len(dirs) != 1 or len(paths) != 1:
        raise DbopsError('only_pending takes exactly one migrations directory as path (got %s).' % ', '.join(paths))
    tool = _tool_of(dirs[0], tool)
    params = dict(module.params, tool=tool)
    with open_database(module, maintenance_lock=False) as db:
        status = read_status(db, tool, dirs[0], params)
        version = None
        if db.engine == 'postgresql':
            version = db.server_version // 10000
    if status.get('failed'):
        module.warn('The history of %s records failed migration(s) %s; they are linted as pending.' % (
            tool, ', '.join(map(str, status['failed']))))
    return set(status['pending']) | set(status.get('failed') or []), version


def verify_checks(db, spec):
    """db_verify's migrations check: one result per state that must be empty (failed, unknown, modified, pending)."""
    from ansible_collections.dbops.maintenance.plugins.module_utils.verify import check
    params = dict(db.params, tool=spec['tool'], history_table=spec.get('history_table'),
                  migrations_path=spec.get('path'))
    status = read_status(db, spec['tool'], spec.get('path'), params)
    out = []
    for state in STATES:
        if state in ('pending', 'unknown', 'modified') and not spec.get('path'):
            continue   # nothing is known about the files on disk
        items = [str(i) for i in status.get(state) or []]
        message = 'none'
        if items:
            message = '%d %s migration(s): %s%s' % (len(items), state, ', '.join(items[:5]),
                                                   ', ...' if len(items) > 5 else '')
            if state == 'pending' and not status['table_exists']:
                message += ' (history table %s does not exist: no migration was ever applied)' % status['history_table']
        out.append(check('migrations %s %s' % (spec['tool'], state), 'migrations', not items, [], items, message))
    return out

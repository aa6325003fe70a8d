# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one bridge from migration_lint (only_pending) and db_verify (migrations) to migration_status.

Everything about a tool (where its migrations are, its history table, what a
row means, what is pending) is decided by the tool descriptions in
plugins/module_utils/migrations; this file only calls their public
interface: migrations.service.History (what migration_status reports).
"""

from __future__ import annotations

import os

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError

try:  # migration_status' reading of the history (a static import, so that Ansible ships it with the module)
    from ansible_collections.dbops.maintenance.plugins.module_utils.migrations import service as mig_service
except ImportError:  # pragma: no cover - an installation without it
    mig_service = None

STATES = ('failed', 'unknown', 'modified', 'pending')


def read_status(db, tool_name, path, params):
    """migration_status' own view of one database (migrations.service.History(...).status()):
    dict(applied, failed, pending, unknown, modified, table_exists, history_table, summary, ...)."""
    if mig_service is None:
        raise DbopsError('Reading the migration history needs the migration tool descriptions of migration_status '
                         '(plugins/module_utils/migrations), which this installation of the collection does not have.')
    return mig_service.History(db, dict(params, tool=tool_name, migrations_path=path)).status()


def _tool_of(path, tool):
    if not tool:
        raise DbopsError('only_pending needs to know the migration tool of %s: set tool.' % path)
    return tool


def pending_migrations(module, paths, tool):
    """(ids of the migrations not applied yet, server version) for only_pending: the PostgreSQL major version
    (int), the MySQL/MariaDB server's VERSION() text (with its flavour), None for SQLite."""
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
        elif db.engine == 'mysql':
            version = db.version    # SELECT VERSION(): '10.11.19-MariaDB-0+deb12u1', '8.0.36'
    if status.get('failed'):
        module.warn('The history of %s records failed migration(s) %s; they are linted as pending.' % (
            tool, ', '.join(map(str, status['failed']))))
    return [str(i) for i in status.get('failed') or []] + [str(i) for i in status['pending']], version


def verify_checks(db, spec):
    """db_verify's migrations check: one result per state that must be empty (failed, unknown, modified, pending)."""
    from ansible_collections.dbops.maintenance.plugins.module_utils.verify import check
    params = dict(db.params, history_table=spec.get('history_table'))
    status = read_status(db, spec['tool'], spec.get('path'), params)
    out = []
    for state in STATES:
        if state in ('pending', 'unknown', 'modified') and not spec.get('path'):
            continue   # nothing is known about the files on disk
        items = [str(i) for i in status.get(state) or []]
        message = 'none'
        if items:
            shown = ', '.join(items[:5]) + (', ...' if len(items) > 5 else '')
            message = '%d %s migration(s): %s' % (len(items), state, shown)
            if state == 'pending' and not status['table_exists']:
                message += ' (history table %s does not exist: no migration was ever applied)' % status['history_table']
        out.append(check('migrations %s %s' % (spec['tool'], state), 'migrations', not items, [], items, message))
    return out

# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the backup, restore and clone flows (runner.py, restore.py, clone.py) ask of an engine.

Tooling is the base of the per-engine classes (postgresql.PgTooling, mysql.MysqlTooling,
sqlite.SqliteTooling): the flows call its hooks and read its capabilities instead of testing
the engine's name; the markers (marker_text / parse_marker) and the test-only fault hook fail_at
are theirs too. ModuleView lets a Tooling open more adapters (an admin session, a scratch
database, a snapshot connection) with other parameters than the module's own.
"""

from __future__ import annotations

import json
import os

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError

# The key of this collection's markers: the JSON comment on a replaced database or a clone, the side records.
MARKER_KEY = 'dbops.maintenance'


def fail_at(stage):
    """Test-only fault injection: DBOPS_TEST_FAIL_AT=<stage> makes the run fail right there."""
    if os.environ.get('DBOPS_TEST_FAIL_AT') == stage:
        raise DbopsError('DBOPS_TEST_FAIL_AT=%s: failing on purpose at this stage (a test-only hook).' % stage)


def marker_text(kind, target, at, **extra):
    return json.dumps(dict({MARKER_KEY: kind, 'target': target, 'at': at}, **extra), sort_keys=True)


def parse_marker(text, kind):
    try:
        data = json.loads(text or '')
    except ValueError:
        return None
    if isinstance(data, dict) and data.get(MARKER_KEY) == kind:
        return data
    return None


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


class Tooling:
    """The engine's side of db_backup / db_restore / db_clone.

    Capabilities (class attributes):
    engine: the engine option's value.
    default_port: the server's port when login_port is not given (messages only); None: no server.
    whole_file: the database is one file copied whole (SQLite's online backup API) rather than a dump
    tool's output streamed through the pipeline; the flows take their file-based path.
    counts_note: said after a verify=restore row-count difference (why the counts may differ).
    """

    engine = None
    default_port = None
    whole_file = False
    counts_note = ''

    def __init__(self, module, adapter):
        self.module = module
        self.db = adapter
        self.params = module.params
        self.tool_path = module.params.get('tool_path')

    @staticmethod
    def for_module(module, adapter):
        """The Tooling of the module's engine."""
        engine = module.params['engine']
        # pylint: disable=import-outside-toplevel
        if engine == 'postgresql':
            from ansible_collections.dbops.maintenance.plugins.module_utils.backup.postgresql import PgTooling
            return PgTooling(module, adapter)
        if engine == 'mysql':
            from ansible_collections.dbops.maintenance.plugins.module_utils.backup.mysql import MysqlTooling
            return MysqlTooling(module, adapter)
        from ansible_collections.dbops.maintenance.plugins.module_utils.backup.sqlite import SqliteTooling
        return SqliteTooling(module, adapter)

    def cleanup(self):
        """Remove what the tooling made for the run (MySQL: its private defaults file)."""

    # --- names for messages and manifests -----------------------------------------------------------
    def where(self, phase):
        """The server and the phase, for the messages of the stall watchdog."""
        p = self.params
        if p.get('login_unix_socket'):
            return 'server socket %s, phase %s' % (p['login_unix_socket'], phase)
        return 'server %s port %s, phase %s' % (p.get('login_host') or 'localhost',
                                                p.get('login_port') or self.default_port, phase)

    def source_identity(self):
        """The source as the manifest records it (and reuse compares it)."""
        return self.params['database']

    def default_label(self):
        """The backup's label when the task gives none (before safe_label)."""
        return self.params['database']

    def check_mode_tools(self):
        """The dump tools a check-mode run reports (dict), or None."""
        return None

    # --- db_backup's check-mode preflight (backup/preflight.py) ----------------------------------------------
    def preflight_tools(self):
        """(dump tool path, its version line, {restore tool: path}) of the real run; raises DbopsError for a
        missing tool."""
        raise NotImplementedError

    def data_bytes(self, tables):
        """Bytes of data a backup of `tables` (the selection's table dicts) holds, before space_factor."""
        raise NotImplementedError

    def compresses_itself(self, fmt):  # pylint: disable=unused-argument
        """The dump tool compresses format `fmt` itself (no external compressor is needed)."""
        return False

    # --- reading a restored or copied database ------------------------------------------------------------
    def tables_of(self, db, name):  # pylint: disable=unused-argument
        """The tables of the database `name`, open as the adapter `db` (list of dicts with name)."""
        return self.all_tables(db)

    # --- db_restore: replacing a database ---------------------------------------------------------------
    def guard_replaced(self, admin, target, tdb, objects):  # pylint: disable=unused-argument
        """Before a non-empty target is replaced (not in check mode only where it changes something):
        by default, hold the maintenance lock on the target (tdb) so no other maintenance run works on it."""
        if objects and not self.module.check_mode:
            tdb.acquire_maintenance_lock(self.params.get('wait_for_lock') or 0)

    def swap_plan(self, target, side, replaced):
        """The steps of swapping the side copy in for the target, as check mode lists them (list of str)."""
        raise NotImplementedError

    def swap_in(self, admin, target, side, replaced, tdb, now):
        """Put the restored side copy in the target's place; the target becomes `replaced`. Returns whether
        tdb (the session on the target) was closed on the way."""
        raise NotImplementedError

    def move_in(self, admin, side, target):
        """A new target: the side copy becomes it."""
        raise NotImplementedError

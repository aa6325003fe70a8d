# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQLite adapter, connection part (Python standard library sqlite3): opening the file, running one
statement, the maintenance lock (flock on the file).

The database option is the file path. The file must exist: a typo must not
silently create an empty database (the very failure of the empty-SQLite
incident). Identifiers are quoted with double quotes (doubled inside).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError, LockTimeout


def quote_ident(name):
    return '"%s"' % name.replace('"', '""')


class SqliteConnection:
    """Opening the database, executing, the maintenance lock."""

    def connect(self):
        path = os.path.expanduser(self.params['database'])
        self.path = path
        if not os.path.exists(path):
            raise DbopsError('SQLite database file %s does not exist. Check the path (database option); '
                             'this module never creates an empty database.' % path)
        try:
            self.conn = sqlite3.connect('file:%s?mode=rw' % path.replace('?', '%3f').replace('#', '%23'), uri=True,
                                        timeout=self.params.get('lock_timeout') or 5, isolation_level=None)
            self.conn.execute('PRAGMA schema_version').fetchone()
        except sqlite3.DatabaseError as e:
            raise DbopsError('Cannot open SQLite database %s: %s' % (path, e))
        self._lock_fd = None

    def server_info(self):
        return dict(engine='sqlite', flavour='sqlite', version=sqlite3.sqlite_version)

    def fetchall(self, query, params=()):
        return self.conn.execute(query, params).fetchall()

    # --- maintenance lock: flock on the database file (SQLite itself uses fcntl byte locks) ---
    def try_maintenance_lock(self):
        if self._lock_fd is None:
            self._lock_fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def unlock_maintenance(self):
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def close(self):
        super().close()
        if getattr(self, '_lock_fd', None) is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def maintenance_lock_holder(self):
        """Find the process holding the FLOCK on the file in /proc/locks (Linux)."""
        try:
            st = os.stat(self.path)
            with open('/proc/locks') as f:
                for line in f:
                    parts = line.split()
                    if len(parts) > 5 and parts[1] == 'FLOCK' and parts[5].rsplit(':', 1)[-1] == str(st.st_ino):
                        pid = parts[4]
                        if int(pid) == os.getpid():
                            continue
                        try:
                            with open('/proc/%s/cmdline' % pid, 'rb') as c:
                                cmd = c.read().replace(b'\0', b' ').decode(errors='replace').strip()[:200]
                        except OSError:
                            cmd = '?'
                        return 'process %s (%s)' % (pid, cmd)
        except (OSError, ValueError):
            pass
        return None

    # --- statements -----------------------------------------------------------------
    def execute(self, statement):
        try:
            self.conn.execute(statement)
        except sqlite3.OperationalError as e:
            if 'locked' in str(e) or 'busy' in str(e):
                raise LockTimeout(str(e))
            raise DbopsError('SQLite refused %s: %s' % (statement, e))
        except sqlite3.DatabaseError as e:
            raise DbopsError('SQLite refused %s: %s' % (statement, e))

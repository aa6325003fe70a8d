# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which lock a statement asks for on PostgreSQL, and who holds one that conflicts with it.

The blocker watch (connection.py) sees who blocks a waiting statement through pg_blocking_pids, but only
while the statement is still in the lock queue. On a loaded machine a short lock_timeout can end the wait
before the watch's first look reaches the server. The blocker still holds its lock after our timeout, so
it can be found afterwards from pg_locks: the sessions holding a granted lock, on the object the statement
locks, in a mode that conflicts with the mode the statement asks for.

The modes are PostgreSQL's (docs: "Explicit Locking", table "Conflicting Lock Modes"; AlterTableGetLockLevel
in src/backend/commands/tablecmds.c; AddEnumLabel in src/backend/catalog/pg_enum.c locks the type object in
ExclusiveLock). A statement kind not listed here yields no request: its blockers stay unknown, as before,
rather than guessed.
"""

from __future__ import annotations

from ansible_collections.dbops.maintenance.plugins.module_utils import sqlcheck

# pglast (sqlcheck.load_pglast) is imported when a statement's locks are first read (after a lock timeout).
ast = enums = None


ACCESS_SHARE, ROW_SHARE, ROW_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE, SHARE, SHARE_ROW_EXCLUSIVE, EXCLUSIVE, \
    ACCESS_EXCLUSIVE = range(1, 9)

# pg_locks.mode of each level
MODE_NAMES = {ACCESS_SHARE: 'AccessShareLock', ROW_SHARE: 'RowShareLock', ROW_EXCLUSIVE: 'RowExclusiveLock',
              SHARE_UPDATE_EXCLUSIVE: 'ShareUpdateExclusiveLock', SHARE: 'ShareLock',
              SHARE_ROW_EXCLUSIVE: 'ShareRowExclusiveLock', EXCLUSIVE: 'ExclusiveLock',
              ACCESS_EXCLUSIVE: 'AccessExclusiveLock'}

# The documented conflict table: the modes each mode conflicts with.
CONFLICTS = {
    ACCESS_SHARE: (ACCESS_EXCLUSIVE,),
    ROW_SHARE: (EXCLUSIVE, ACCESS_EXCLUSIVE),
    ROW_EXCLUSIVE: (SHARE, SHARE_ROW_EXCLUSIVE, EXCLUSIVE, ACCESS_EXCLUSIVE),
    SHARE_UPDATE_EXCLUSIVE: (SHARE_UPDATE_EXCLUSIVE, SHARE, SHARE_ROW_EXCLUSIVE, EXCLUSIVE, ACCESS_EXCLUSIVE),
    SHARE: (ROW_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE, SHARE_ROW_EXCLUSIVE, EXCLUSIVE, ACCESS_EXCLUSIVE),
    SHARE_ROW_EXCLUSIVE: (ROW_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE, SHARE, SHARE_ROW_EXCLUSIVE, EXCLUSIVE,
                          ACCESS_EXCLUSIVE),
    EXCLUSIVE: (ROW_SHARE, ROW_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE, SHARE, SHARE_ROW_EXCLUSIVE, EXCLUSIVE,
                ACCESS_EXCLUSIVE),
    ACCESS_EXCLUSIVE: tuple(range(1, 9)),
}

# ALTER TABLE subcommands that take less than ACCESS EXCLUSIVE (tablecmds.c AlterTableGetLockLevel).
_ALTER_TABLE_LEVELS = {
    'AT_ValidateConstraint': SHARE_UPDATE_EXCLUSIVE,
    'AT_SetStatistics': SHARE_UPDATE_EXCLUSIVE,
    'AT_ClusterOn': SHARE_UPDATE_EXCLUSIVE,
    'AT_DropCluster': SHARE_UPDATE_EXCLUSIVE,
    'AT_SetOptions': SHARE_UPDATE_EXCLUSIVE,
    'AT_ResetOptions': SHARE_UPDATE_EXCLUSIVE,
    'AT_AttachPartition': SHARE_UPDATE_EXCLUSIVE,
    'AT_EnableTrig': SHARE_ROW_EXCLUSIVE, 'AT_EnableAlwaysTrig': SHARE_ROW_EXCLUSIVE,
    'AT_EnableReplicaTrig': SHARE_ROW_EXCLUSIVE, 'AT_EnableTrigAll': SHARE_ROW_EXCLUSIVE,
    'AT_EnableTrigUser': SHARE_ROW_EXCLUSIVE, 'AT_DisableTrig': SHARE_ROW_EXCLUSIVE,
    'AT_DisableTrigAll': SHARE_ROW_EXCLUSIVE, 'AT_DisableTrigUser': SHARE_ROW_EXCLUSIVE,
}


def _qualified(rangevar_or_names):
    """The object's name as to_regclass/to_regtype read it: every part double-quoted."""
    if isinstance(rangevar_or_names, (tuple, list)):
        parts = [getattr(p, 'sval', p) for p in rangevar_or_names]
    else:
        parts = [p for p in (rangevar_or_names.catalogname, rangevar_or_names.schemaname,
                             rangevar_or_names.relname) if p]
    return '.'.join('"%s"' % str(p).replace('"', '""') for p in parts)


def _alter_table(node):
    level = 0
    requests = []
    for cmd in node.cmds or ():
        name = enums.AlterTableType(int(cmd.subtype)).name
        cmd_level = _ALTER_TABLE_LEVELS.get(name, ACCESS_EXCLUSIVE)
        con = getattr(cmd, 'def_', None)
        if name == 'AT_AddConstraint' and isinstance(con, ast.Constraint) and \
                int(con.contype) == int(enums.ConstrType.CONSTR_FOREIGN):
            cmd_level = SHARE_ROW_EXCLUSIVE
            if con.pktable is not None:
                requests.append(('relation', _qualified(con.pktable), SHARE_ROW_EXCLUSIVE))
        level = max(level, cmd_level)
    return [('relation', _qualified(node.relation), level or ACCESS_EXCLUSIVE)] + requests


def lock_requests(statement):
    """[(kind, qualified name, level)] the one statement asks for: kind 'relation' or 'type'.
    [] when the statement is not one statement of a known kind (or pglast is missing)."""
    global ast, enums  # pylint: disable=global-statement
    if not sqlcheck.HAS_PGLAST:
        return []
    try:
        ast, enums, parser, _visitors = sqlcheck.load_pglast()
        stmts = parser.parse_sql(statement)
    except Exception:  # pylint: disable=broad-except
        return []
    if len(stmts) != 1:
        return []
    node = stmts[0].stmt
    if isinstance(node, ast.AlterEnumStmt):
        return [('type', _qualified(node.typeName), EXCLUSIVE)]
    if isinstance(node, ast.AlterTableStmt) and node.relation is not None:
        return _alter_table(node)
    if isinstance(node, ast.IndexStmt):
        return [('relation', _qualified(node.relation), SHARE_UPDATE_EXCLUSIVE if node.concurrent else SHARE)]
    if isinstance(node, ast.CreateTrigStmt):
        return [('relation', _qualified(node.relation), SHARE_ROW_EXCLUSIVE)]
    if isinstance(node, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt)):
        return [('relation', _qualified(node.relation), ROW_EXCLUSIVE)]
    if isinstance(node, ast.LockStmt):
        return [('relation', _qualified(r), int(node.mode)) for r in node.relations or ()]
    if isinstance(node, ast.TruncateStmt):
        return [('relation', _qualified(r), ACCESS_EXCLUSIVE) for r in node.relations or ()]
    if isinstance(node, ast.RenameStmt) and node.relation is not None:
        return [('relation', _qualified(node.relation), ACCESS_EXCLUSIVE)]
    return []


# The holders, read on the statement's own connection right after its lock timeout (autocommit, idle): the
# names resolve through the session's own search_path; to_regclass/to_regtype take no lock.
HOLDERS = (
    "SELECT DISTINCT l.pid FROM pg_locks l "
    "WHERE l.granted AND l.pid <> pg_backend_pid() "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.mode = ANY (%(modes)s) AND CASE WHEN %(kind)s = 'type' "
    "THEN l.locktype = 'object' AND l.classid = 'pg_type'::regclass AND l.objid = to_regtype(%(name)s) "
    "ELSE l.locktype = 'relation' AND l.relation = to_regclass(%(name)s) END")


def holder_queries(statement):
    """The (query, params) that list the pids holding a lock that conflicts with what `statement` asks for."""
    return [(HOLDERS, dict(kind=kind, name=name, modes=[MODE_NAMES[m] for m in CONFLICTS[level]]))
            for kind, name, level in lock_requests(statement) if level in CONFLICTS]

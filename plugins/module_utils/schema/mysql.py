# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MySQL / MariaDB information_schema -> Snapshot. Read only: every query is a SELECT on information_schema, in one
READ ONLY transaction (schema_diff also makes the target's session READ ONLY).

Types are COLUMN_TYPE (the server's own spelling, as column_ensure compares it: ENUM/SET with their value list),
defaults as the flavour shows them (MariaDB: an SQL expression; the "no default" of a nullable column, NULL, is
None), the table's engine and collation, the column's collation. A view's definition
has the database's own name taken out (`shop`.`t` -> `t`), so a shadow database reads the same. One query per
kind over the whole database.
"""

from __future__ import annotations

import hashlib

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql.connection import quote_ident
from ansible_collections.dbops.maintenance.plugins.module_utils.schema.snapshot import Snapshot

TABLES = ("SELECT t.TABLE_NAME, t.ENGINE, t.TABLE_COLLATION, c.CHARACTER_SET_NAME, t.TABLE_COMMENT "
          "FROM information_schema.TABLES t LEFT JOIN information_schema.COLLATIONS c "
          "ON c.COLLATION_NAME = t.TABLE_COLLATION WHERE t.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE'")

# No join between information_schema tables (MariaDB materialises each side per table: it grew faster than
# linearly with 2,000 tables); rows of views are dropped in Python against the base tables read first.
COLUMNS = ("SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, COLLATION_NAME, EXTRA, "
           "GENERATION_EXPRESSION, COLUMN_COMMENT, ORDINAL_POSITION FROM information_schema.COLUMNS "
           "WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION")

STATISTICS = ("SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART, COLLATION, INDEX_TYPE, INDEX_COMMENT "
              "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
              "ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX")

FOREIGN_KEYS = ("SELECT TABLE_NAME, CONSTRAINT_NAME, COLUMN_NAME, REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME, "
                "REFERENCED_COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE CONSTRAINT_SCHEMA = DATABASE() "
                "AND REFERENCED_TABLE_NAME IS NOT NULL ORDER BY TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION")
FK_RULES = ("SELECT TABLE_NAME, CONSTRAINT_NAME, UPDATE_RULE, DELETE_RULE FROM information_schema.REFERENTIAL_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = DATABASE()")

CHECKS_MARIADB = ("SELECT TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                  "WHERE CONSTRAINT_SCHEMA = DATABASE()")
CHECKS_MYSQL = ("SELECT t.TABLE_NAME, c.CONSTRAINT_NAME, c.CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS c "
                "JOIN information_schema.TABLE_CONSTRAINTS t ON t.CONSTRAINT_SCHEMA = c.CONSTRAINT_SCHEMA "
                "AND t.CONSTRAINT_NAME = c.CONSTRAINT_NAME AND t.CONSTRAINT_TYPE = 'CHECK' "
                "WHERE c.CONSTRAINT_SCHEMA = DATABASE()")

VIEWS = ("SELECT TABLE_NAME, VIEW_DEFINITION, CHECK_OPTION, SECURITY_TYPE FROM information_schema.VIEWS "
         "WHERE TABLE_SCHEMA = DATABASE()")

TRIGGERS = ("SELECT EVENT_OBJECT_TABLE, TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION, ACTION_STATEMENT, "
            "ACTION_ORDER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()")

ROUTINES = ("SELECT ROUTINE_NAME, ROUTINE_TYPE, DTD_IDENTIFIER, ROUTINE_DEFINITION, IS_DETERMINISTIC, "
            "SQL_DATA_ACCESS, SECURITY_TYPE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE()")


def sha256(text):
    return hashlib.sha256((text or '').encode('utf-8')).hexdigest()


def _text(v):
    if isinstance(v, (bytes, bytearray)):
        return v.decode('utf-8', 'replace')
    return v


def read(db):
    """Snapshot of the database db (a connected MysqlAdapter)."""
    database = db.fetchone('SELECT DATABASE()')[0]
    snap = Snapshot('mysql', db.flavour, db.version, database)
    own = quote_ident(database) + '.'
    mariadb = db.flavour == 'mariadb'
    with db.conn.cursor() as cur:
        cur.execute('START TRANSACTION READ ONLY')
        try:
            def rows(query):
                cur.execute(query)
                return [tuple(_text(v) for v in r) for r in cur.fetchall()]
            _read(snap, rows, own, mariadb)
        finally:
            cur.execute('ROLLBACK')
    return snap


def _read(snap, rows, own, mariadb):
    tables = set()
    for name, engine, collation, charset, comment in rows(TABLES):
        tables.add(name)
        snap.add('table', (name,), dict(engine=engine, collation=collation, charset=charset, comment=comment or None))
    for (table, col, typ, nullable, default, coll, extra, gen, comment, pos) in rows(COLUMNS):
        if table not in tables:  # a view's column
            continue
        if mariadb and default == 'NULL':
            default = None
        snap.add('column', (table, col),
                 dict(type=typ, nullable=nullable == 'YES', default=default,
                      collation=coll, extra=(extra or '').lower() or None,
                      generated=gen or None, comment=comment or None, position=int(pos)), parent=(table,))
    indexes = {}
    for table, name, non_unique, col, sub, order, method, comment in rows(STATISTICS):
        if table not in tables:
            continue
        ix = indexes.setdefault((table, name), dict(columns=[], prefixes=[], orders=[], unique=not int(non_unique),
                                                    method=method, comment=comment or None))
        ix['columns'].append(col)
        ix['prefixes'].append(int(sub) if sub else None)
        ix['orders'].append('DESC' if order == 'D' else 'ASC')
    for (table, name), ix in indexes.items():
        if name == 'PRIMARY':
            snap.add('primary_key', (table,), dict(name=name, columns=ix['columns'], prefixes=ix['prefixes']),
                     parent=(table,))
        else:
            snap.add('index', (table, name), ix, parent=(table,))
    fks = {}
    rules = {(t, n): (u, d) for t, n, u, d in rows(FK_RULES)}
    for table, name, col, rschema, rtable, rcol in rows(FOREIGN_KEYS):
        upd, dele = rules.get((table, name), (None, None))
        fk = fks.setdefault((table, name), dict(name=name, columns=[], references=rtable if own == quote_ident(
            rschema) + '.' else '%s.%s' % (rschema, rtable), referenced_columns=[], on_update=upd, on_delete=dele))
        fk['columns'].append(col)
        fk['referenced_columns'].append(rcol)
    for (table, _name), fk in fks.items():
        snap.add('foreign_key', (table, ','.join(fk['columns'])), fk, parent=(table,))
    for table, name, clause in rows(CHECKS_MARIADB if mariadb else CHECKS_MYSQL):
        snap.add('check', (table, name), dict(definition=' '.join((clause or '').split())), parent=(table,))
    for name, definition, check, security in rows(VIEWS):
        snap.add('view', (name,), dict(definition=' '.join((definition or '').replace(own, '').split()),
                                       check_option=check, security=security))
    for table, name, timing, event, statement, order in rows(TRIGGERS):
        snap.add('trigger', (table, name), dict(timing=timing, event=event, order=int(order or 0),
                                                body_sha256=sha256(' '.join((statement or '').split()))),
                 parent=(table,))
    for name, kind, returns, body, deterministic, access, security in rows(ROUTINES):
        snap.add('function', ('%s %s' % (kind.lower(), name),),
                 dict(kind=kind.lower(), returns=returns, body_sha256=sha256(body), deterministic=deterministic,
                      data_access=access, security=security))

# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQLite schema (sqlite_master and the table/index/foreign-key pragmas) -> Snapshot. Read only: the file is
opened read-only (mode=ro) by the caller and every statement is a SELECT of a pragma table function.

Types are the declared type normalised as column_ensure compares them on SQLite (sqlite/catalog.normalise_type);
views and triggers are compared by their stored CREATE text with the layout normalised; a partial index keeps
its WHERE. SQLite has no schemas, sequences, enums, functions or comments. Not read (yet): CHECK constraints,
which live only in the CREATE TABLE text.
"""

from __future__ import annotations

import re

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.sqlite.catalog import normalise_type
from ansible_collections.dbops.maintenance.plugins.module_utils.schema.snapshot import Snapshot


def _layout(text):
    return ' '.join((text or '').split())


def _where(sql):
    """The predicate of a partial index (its CREATE INDEX text after the last top-level WHERE)."""
    m = re.search(r'\bWHERE\b(.*)$', sql or '', re.IGNORECASE | re.DOTALL)
    return _layout(m.group(1)) if m else None


def read(conn, path, version):
    """Snapshot of the SQLite database open on conn (a sqlite3 connection, read only)."""
    snap = Snapshot('sqlite', 'sqlite', version, path)

    def rows(query, params=()):
        return conn.execute(query, params).fetchall()

    master = rows("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
                  "OR type = 'index' ORDER BY type, name")
    for kind, name, table, text in master:
        if kind == 'table':
            snap.add('table', (name,), dict(without_rowid=bool(re.search(r'\bWITHOUT\s+ROWID\b', text or '', re.I)),
                                            strict=bool(re.search(r'\)\s*STRICT\b', text or '', re.I))))
            pk = []
            for cid, col, typ, notnull, default, pkpos, hidden in rows(
                    'SELECT cid, name, type, "notnull", dflt_value, pk, hidden FROM pragma_table_xinfo(?)', (name,)):
                generated = {2: 'virtual', 3: 'stored'}.get(hidden)
                attrs = dict(type=normalise_type(typ), nullable=not notnull, default=default, generated=generated,
                             position=cid + 1)
                snap.add('column', (name, col), attrs, parent=(name,))
                if pkpos:
                    pk.append((pkpos, col))
            if pk:
                snap.add('primary_key', (name,), dict(columns=[c for _p, c in sorted(pk)]), parent=(name,))
            fks = {}
            for fid, _seq, rtable, col, rcol, upd, dele in rows(
                    'SELECT id, seq, "table", "from", "to", on_update, on_delete FROM pragma_foreign_key_list(?) '
                    'ORDER BY id, seq', (name,)):
                fk = fks.setdefault(fid, dict(columns=[], references=rtable, referenced_columns=[], on_update=upd,
                                              on_delete=dele))
                fk['columns'].append(col)
                fk['referenced_columns'].append(rcol)
            for fk in fks.values():
                snap.add('foreign_key', (name, ','.join(fk['columns'])), fk, parent=(name,))
            for iname, unique, origin, partial in [r[1:5] for r in rows(
                    'SELECT seq, name, "unique", origin, partial FROM pragma_index_list(?)', (name,))]:
                if origin == 'pk':
                    continue
                cols, orders = [], []
                for _seqno, _cid, col, desc, key in rows(
                        'SELECT seqno, cid, name, "desc", key FROM pragma_index_xinfo(?) ORDER BY seqno', (iname,)):
                    if key:
                        cols.append(col if col is not None else '<expression>')
                        orders.append('DESC' if desc else 'ASC')
                isql = next((t for k, n, _tb, t in master if k == 'index' and n == iname), None)
                snap.add('index', (name, iname), dict(columns=cols, orders=orders, unique=bool(unique),
                                                      predicate=_where(isql) if partial else None,
                                                      constraint=origin == 'u',
                                                      definition=_layout(isql) if isql else None), parent=(name,))
        elif kind == 'view':
            snap.add('view', (name,), dict(definition=_layout(text)))
        elif kind == 'trigger':
            snap.add('trigger', (table, name), dict(definition=_layout(text)), parent=(table,))
    return snap

# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL catalog -> Snapshot. Read only: every query is a SELECT on the system catalogs, in one
READ ONLY transaction (one consistent view, nothing written; also works on a hot standby).

Types are the server's own spelling (format_type, as column_ensure compares them), defaults and predicates
pg_get_expr, constraints pg_get_constraintdef, views pg_get_viewdef: the server's normalisation, so two
databases built from the same migrations read the same. Objects that belong to an extension are left out.
One query per kind over the whole database (no query per table), so 2,000 tables cost what 200 do, times 10.
"""

from __future__ import annotations

import hashlib

from ansible_collections.dbops.maintenance.plugins.module_utils.schema.snapshot import Snapshot

USER_NS = ("n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' AND NOT EXISTS (SELECT 1 FROM pg_depend e "
           "WHERE e.classid = 'pg_namespace'::regclass AND e.objid = n.oid AND e.deptype = 'e')")
NOT_EXT = ("NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '%s'::regclass AND e.objid = %s "
           "AND e.deptype = 'e')")

SCHEMAS = "SELECT n.nspname FROM pg_namespace n WHERE " + USER_NS

TABLES = ("SELECT n.nspname, c.relname, c.relkind, obj_description(c.oid, 'pg_class') FROM pg_class c "
          "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND " + USER_NS +
          " AND " + NOT_EXT % ('pg_class', 'c.oid'))

COLUMNS = ("SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
           "CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END, "
           "CASE WHEN a.attcollation <> t.typcollation THEN co.collname END, a.attidentity, "
           "CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END, "
           "col_description(a.attrelid, a.attnum), a.attnum FROM pg_attribute a "
           "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
           "JOIN pg_type t ON t.oid = a.atttypid "
           "LEFT JOIN pg_collation co ON co.oid = a.attcollation "
           "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
           "WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND " + USER_NS +
           " AND " + NOT_EXT % ('pg_class', 'c.oid') + " ORDER BY 1, 2, a.attnum")

# indexes that do not back a constraint (those are the constraint's)
INDEXES = ("SELECT n.nspname, c.relname, i.relname, x.indisunique, x.indisvalid AND x.indisready, am.amname, "
           "pg_get_expr(x.indpred, x.indrelid), pg_get_indexdef(x.indexrelid), "
           "ARRAY(SELECT pg_get_indexdef(x.indexrelid, k, true) FROM generate_series(1, x.indnkeyatts) k ORDER BY k), "
           "ARRAY(SELECT CASE WHEN x.indoption[k - 1] & 1 = 1 THEN 'DESC' ELSE 'ASC' END "
           "FROM generate_series(1, x.indnkeyatts) k ORDER BY k), "
           "ARRAY(SELECT pg_get_indexdef(x.indexrelid, k, true) FROM generate_series(x.indnkeyatts + 1, x.indnatts) k "
           "ORDER BY k) "
           "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid "
           "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am am ON am.oid = i.relam "
           "WHERE c.relkind IN ('r', 'p') AND " + USER_NS + " AND " + NOT_EXT % ('pg_class', 'c.oid') +
           " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid AND k.conrelid = x.indrelid "
           "AND k.contype IN ('p', 'u', 'x'))")

CONSTRAINTS = ("SELECT n.nspname, c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid), k.convalidated, "
               "k.condeferrable, k.condeferred, "
               "ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY u(num, o) "
               "JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.num ORDER BY u.o), "
               "fn.nspname, fc.relname, "
               "ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY u(num, o) "
               "JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.num ORDER BY u.o), "
               "k.confupdtype, k.confdeltype, k.confmatchtype, "
               "(SELECT x.indisvalid FROM pg_index x WHERE x.indexrelid = k.conindid) "
               "FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
               "JOIN pg_namespace n ON n.oid = c.relnamespace "
               "LEFT JOIN pg_class fc ON fc.oid = k.confrelid LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace "
               "WHERE k.contype IN ('p', 'u', 'f', 'c', 'x') AND c.relkind IN ('r', 'p') AND " + USER_NS +
               " AND " + NOT_EXT % ('pg_class', 'c.oid'))

ENUMS = ("SELECT n.nspname, t.typname, ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid "
         "ORDER BY e.enumsortorder) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
         "WHERE t.typtype = 'e' AND " + USER_NS + " AND " + NOT_EXT % ('pg_type', 't.oid'))

SEQUENCES = ("SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, "
             "s.seqmax, s.seqcycle, (SELECT array[tn.nspname::text, t.relname::text] FROM pg_depend o "
             "JOIN pg_class t ON t.oid = o.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace "
             "WHERE o.classid = 'pg_class'::regclass AND o.objid = c.oid AND o.refclassid = 'pg_class'::regclass "
             "AND o.deptype = 'a' LIMIT 1) "
             "FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid "
             "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE " + USER_NS + " AND " + NOT_EXT % ('pg_class', 'c.oid') +
             " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid "
             "AND d.deptype = 'i')")

VIEWS = ("SELECT n.nspname, c.relname, c.relkind, pg_get_viewdef(c.oid, true) FROM pg_class c "
         "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('v', 'm') AND " + USER_NS +
         " AND " + NOT_EXT % ('pg_class', 'c.oid'))

TRIGGERS = ("SELECT n.nspname, c.relname, g.tgname, pg_get_triggerdef(g.oid), g.tgenabled FROM pg_trigger g "
            "JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE NOT g.tgisinternal AND " + USER_NS + " AND " + NOT_EXT % ('pg_class', 'c.oid'))

FUNCTIONS = ("SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.prokind, "
             "pg_get_function_result(p.oid), l.lanname, p.prosrc, p.provolatile, p.prosecdef "
             "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang "
             "WHERE p.prokind IN ('f', 'p') AND " + USER_NS + " AND " + NOT_EXT % ('pg_proc', 'p.oid'))

FK_ACTIONS = {'a': 'NO ACTION', 'r': 'RESTRICT', 'c': 'CASCADE', 'n': 'SET NULL', 'd': 'SET DEFAULT'}
IDENTITY = {'': None, 'a': 'ALWAYS', 'd': 'BY DEFAULT'}


def sha256(text):
    return hashlib.sha256((text or '').encode('utf-8')).hexdigest()


def normalise_sql(text):
    return ' '.join((text or '').split())


def read(db):
    """Snapshot of the database db (a connected PostgresAdapter), in one READ ONLY transaction."""
    v = db.server_version
    snap = Snapshot('postgresql', 'postgresql', '%d.%d' % (v // 10000, v % 10000), db.params.get('database'),
                    default_schema='public')
    conn = db.conn
    with conn.transaction(force_rollback=True):
        conn.execute('SET TRANSACTION READ ONLY')
        conn.execute("SET LOCAL search_path = ''")  # every name the server prints is schema-qualified, the same way

        def rows(query):
            return conn.execute(query).fetchall()

        for (nsp,) in rows(SCHEMAS):
            snap.add('schema', (nsp,), {})
        for nsp, rel, kind, comment in rows(TABLES):
            snap.add('table', (nsp, rel), dict(comment=comment, partitioned=kind == 'p'))
        for nsp, rel, col, typ, notnull, default, coll, ident, gen, comment, num in rows(COLUMNS):
            snap.add('column', (nsp, rel, col),
                     dict(type=typ, nullable=not notnull, default=default, collation=coll,
                          identity=IDENTITY.get(ident, ident), generated=gen, comment=comment, position=num),
                     parent=(nsp, rel))
        for nsp, rel, name, unique, valid, method, pred, definition, cols, orders, include in rows(INDEXES):
            snap.add('index', (nsp, rel, name),
                     dict(columns=list(cols), orders=list(orders), unique=unique, method=method, predicate=pred,
                          valid=valid, include=list(include), definition=definition), parent=(nsp, rel))
        for (nsp, rel, name, kind, definition, validated, deferrable, deferred, cols, fnsp, frel, fcols,
             upd, dele, _match, index_valid) in rows(CONSTRAINTS):
            table = (nsp, rel)
            deferral = ('INITIALLY DEFERRED' if deferred else 'DEFERRABLE') if deferrable else None
            if kind == 'p':
                snap.add('primary_key', table, dict(name=name, columns=list(cols), definition=definition),
                         parent=table)
            elif kind == 'u':
                snap.add('unique', (nsp, rel, name), dict(columns=list(cols), deferrable=deferral,
                                                          valid=index_valid, definition=definition), parent=table)
            elif kind == 'f':
                body = definition[:-len(' NOT VALID')] if definition.endswith(' NOT VALID') else definition
                snap.add('foreign_key', (nsp, rel, ','.join(cols)),
                         dict(name=name, columns=list(cols), references=_qualified(fnsp, frel),
                              referenced_columns=list(fcols), on_update=FK_ACTIONS.get(upd, upd),
                              on_delete=FK_ACTIONS.get(dele, dele), valid=validated, deferrable=deferral,
                              definition=body), parent=table)
            elif kind == 'c':
                body = definition[:-len(' NOT VALID')] if definition.endswith(' NOT VALID') else definition
                snap.add('check', (nsp, rel, name), dict(definition=body, valid=validated), parent=table)
            else:
                snap.add('exclusion', (nsp, rel, name), dict(definition=definition, deferrable=deferral),
                         parent=table)
        for nsp, name, values in rows(ENUMS):
            snap.add('enum', (nsp, name), dict(values=list(values)))
        for nsp, name, typ, start, inc, smin, smax, cycle, owner in rows(SEQUENCES):
            # a sequence OWNED BY a column (serial) belongs to that table: ignored / missing with it
            snap.add('sequence', (nsp, name), dict(type=typ, start=int(start), increment=int(inc), min=int(smin),
                                                   max=int(smax), cycle=cycle), parent=tuple(owner) if owner else None)
        for nsp, name, kind, definition in rows(VIEWS):
            snap.add('view', (nsp, name), dict(definition=normalise_sql(definition), materialized=kind == 'm'))
        for nsp, rel, name, definition, enabled in rows(TRIGGERS):
            snap.add('trigger', (nsp, rel, name), dict(definition=normalise_sql(definition),
                                                       enabled=enabled != 'D'), parent=(nsp, rel))
        for nsp, name, args, kind, result, lang, src, vol, secdef in rows(FUNCTIONS):
            snap.add('function', (nsp, '%s(%s)' % (name, args)),
                     dict(kind='procedure' if kind == 'p' else 'function', returns=result, language=lang,
                          body_sha256=sha256(src), volatility={'i': 'IMMUTABLE', 's': 'STABLE', 'v': 'VOLATILE'}
                          .get(vol, vol), security_definer=secdef))
    return snap


def _qualified(schema, name):
    if schema is None:
        return None
    return '%s.%s' % (schema, name)

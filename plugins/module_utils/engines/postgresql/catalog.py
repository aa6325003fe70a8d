# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL adapter, catalog part: what the server has (schemas, tables, columns, enum types), and
db_verify's read-only reads.

Nothing here writes: type normalisation and the operator's queries run in a READ ONLY transaction
that is rolled back (so they also work on a hot standby).
"""

from __future__ import annotations

from ansible_collections.dbops.maintenance.plugins.module_utils import sqlcheck
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.postgresql.connection import psycopg, sql


class PostgresCatalog:
    """Catalog reads."""

    # --- names -------------------------------------------------------------------
    def current_schema(self):
        return self.fetchone('SELECT current_schema()')[0] or 'public'

    def schema_exists(self, schema):
        return bool(self.fetchone('SELECT 1 FROM pg_namespace WHERE nspname = %s', [schema]))

    def schema_names(self):
        return [r[0] for r in self.fetchall("SELECT nspname FROM pg_namespace WHERE nspname !~ '^pg_'")]

    def qualified(self, schema, name):
        return sql.Identifier(schema, name)

    def display(self, schema, name):
        return self.render(self.qualified(schema, name))

    def find_enum(self, schema, name):
        """Returns (values, None) for an enum, (None, 'kind') for another type, (None, None) if missing."""
        row = self.fetchone(
            'SELECT t.oid, t.typtype FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace '
            'WHERE n.nspname = %s AND t.typname = %s', [schema, name])
        if not row:
            return None, None
        if row[1] != 'e':
            return None, {'b': 'base type', 'c': 'composite type', 'd': 'domain', 'r': 'range type',
                          'm': 'multirange type', 'p': 'pseudo-type'}.get(row[1], 'type')
        values = [r[0] for r in self.fetchall(
            'SELECT enumlabel FROM pg_enum WHERE enumtypid = %s ORDER BY enumsortorder', [row[0]])]
        return values, None

    def enum_names(self):
        return [(r[0], r[1]) for r in self.fetchall(
            "SELECT n.nspname, t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            "WHERE t.typtype = 'e' ORDER BY 1, 2")]

    def enum_ref(self, params):
        """enum_add's options that name the enum (a type): the keyword arguments of enum_state / plan_enum_add."""
        return dict(schema=params.get('schema'), name=params['name'])

    def enum_state(self, schema, name):
        schema = schema or self.current_schema()
        values, _kind = self.find_enum(schema, name)
        return dict(type=self.display(schema, name), values=values)

    # --- tables and columns ------------------------------------------------------------
    def find_table(self, schema, table):
        row = self.fetchone(
            "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')", [schema, table])
        return row[0] if row else None

    def relation_kind(self, schema, name):
        """'view', 'materialized view', ... for a relation that exists but is not a table; None otherwise."""
        row = self.fetchone(
            "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s", [schema, name])
        if not row:
            return None
        return {'v': 'view', 'm': 'materialized view', 'f': 'foreign table', 'i': 'index', 'S': 'sequence',
                'I': 'partitioned index', 'c': 'composite type', 't': 'TOAST table'}.get(row[0])

    def table_names(self, schema):
        return [r[0] for r in self.fetchall(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY 1", [schema])]

    def columns(self, table_oid):
        """Ordered dict-like list of the table's columns as the server describes them."""
        rows = self.fetchall(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, "
            "pg_get_expr(d.adbin, d.adrelid), col_description(a.attrelid, a.attnum) "
            "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum", [table_oid])
        return [dict(name=r[0], type=r[1], nullable=r[2], default=r[3], comment=r[4]) for r in rows]

    def count_rows(self, schema, table, where_null=None):
        q = sql.SQL('SELECT count(*) FROM {}').format(self.qualified(schema, table))
        if where_null:
            q = q + sql.SQL(' WHERE {} IS NULL').format(sql.Identifier(where_null))
        return self.fetchone(q)[0]

    def read_column(self, spec):
        schema = spec.get('schema') or self.current_schema()
        oid = self.find_table(schema, spec['table'])
        if oid is None:
            return None
        return {c['name']: c for c in self.columns(oid)}.get(spec['column'])

    # --- verification (db_verify) ---
    # Read-only helpers of db_verify. Nothing here writes: type normalisation and the operator's
    # queries run in a READ ONLY transaction that is rolled back (so they also work on a hot standby).
    def catalog_tables(self):
        """[(schema, table)] of every table outside the system schemas."""
        return [(r[0], r[1]) for r in self.fetchall(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname !~ '^pg_' "
            "AND n.nspname <> 'information_schema' ORDER BY 1, 2")]

    def catalog_columns(self, schema, table):
        oid = self.find_table(schema, table)
        return {c['name']: c for c in self.columns(oid)} if oid else {}

    def catalog_normalise_type(self, type_sql):
        """The server's own spelling of a type (format_type), read from the result description of
        SELECT NULL::<type> in a rolled-back READ ONLY transaction: no temporary table, nothing written."""
        query = sql.SQL('SELECT NULL::') + sql.SQL(type_sql)
        try:
            with self.conn.transaction(force_rollback=True):
                self.conn.execute('SET TRANSACTION READ ONLY')
                # prepare=True: the extended protocol runs exactly one statement, whatever the string holds.
                cur = self.conn.execute(query, prepare=True)
                oid, mod = cur.pgresult.ftype(0), cur.pgresult.fmod(0)
                return self.fetchone('SELECT format_type(%s::oid, %s)', [oid, mod])[0]
        except psycopg.Error as e:
            raise DbopsError('PostgreSQL does not accept the type %r: %s' % (
                type_sql, (str(e).strip().splitlines() or [''])[0]))

    def catalog_row_count(self, schema, table):
        return self.count_rows(schema, table)

    def run_readonly_query(self, text):
        """First row of the operator's query, once it is proven to only read.

        sqlcheck.readonly_query parses it with the server's own parser (pglast): one SELECT, no INTO, no FOR
        UPDATE/SHARE, no data-modifying WITH; check_readonly_calls then resolves every function, operator and cast type
        it names in this database's catalog. It runs as one statement (extended protocol) in a READ ONLY
        transaction that is rolled back: the second layer.
        """
        calls = sqlcheck.readonly_query(text, 'postgresql')
        self.check_readonly_calls(calls)
        try:
            with self.conn.transaction(force_rollback=True):
                self.conn.execute('SET TRANSACTION READ ONLY')
                cur = self.conn.execute(sql.SQL(text), prepare=True)
                return cur.fetchone() if cur.description else None
        except psycopg.Error as e:
            raise DbopsError('The query failed: %s%s. It runs in a READ ONLY transaction, as one statement: it '
                             'cannot change data.' % ((str(e).strip().splitlines() or [''])[0],
                                                      ' (SQLSTATE %s)' % e.sqlstate if e.sqlstate else ''))

    # Every function of that name the call could resolve to (in the schema it names, or on the search path).
    READONLY_FUNCTION_CANDIDATES = (
        "SELECT n.nspname, p.provolatile, p.proname, l.lanname FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang "
        "WHERE p.proname = %(name)s AND CASE WHEN %(schema)s::text IS NULL THEN n.nspname = ANY (current_schemas(true)) "
        "ELSE n.nspname = %(schema)s END")

    READONLY_OPERATOR_CANDIDATES = (
        "SELECT n.nspname, p.provolatile, p.proname, l.lanname FROM pg_operator o "
        "JOIN pg_namespace n ON n.oid = o.oprnamespace JOIN pg_proc p ON p.oid = o.oprcode "
        "JOIN pg_language l ON l.oid = p.prolang WHERE o.oprname = %(name)s AND CASE WHEN %(schema)s::text IS NULL "
        "THEN n.nspname = ANY (current_schemas(true)) ELSE n.nspname = %(schema)s END")

    # A cast to a type runs its input function and any cast function into it; a domain runs its CHECKs.
    READONLY_CAST_TYPES = (
        "SELECT t.typname, EXISTS (SELECT 1 FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
        "JOIN pg_namespace pn ON pn.oid = p.pronamespace WHERE (p.oid IN (t.typinput, t.typoutput) "
        "OR p.oid IN (SELECT c.castfunc FROM pg_cast c WHERE c.casttarget = t.oid)) "
        "AND pn.nspname <> 'pg_catalog' AND l.lanname NOT IN ('c', 'internal')), "
        "EXISTS (SELECT 1 FROM pg_constraint k WHERE k.contypid = t.oid) "
        "FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.typname = %(name)s "
        "AND CASE WHEN %(schema)s::text IS NULL THEN n.nspname = ANY (current_schemas(true)) "
        "ELSE n.nspname = %(schema)s END")

    def check_readonly_calls(self, calls):
        """Refuse (nothing run) unless every function/operator the query names is immutable or stable, not on
        sqlcheck's deny list, and built in (pg_catalog) or compiled code of an extension (language C or internal,
        which only a superuser can install: citext's = operator, for one), whatever overload the call resolves
        to; and every type it casts to is built in. Resolving by name and checking every candidate overload is
        exact without guessing the argument types: if any candidate could act, the query is refused. Functions
        written in SQL, PL/pgSQL or another procedural language outside pg_catalog are user code: refused."""
        refuse = sqlcheck.SqlRefused
        tail = (' db_verify runs only immutable or stable functions that are built in or compiled extension code. %s'
                % sqlcheck.NOTHING)
        for kind, query, items in (('function', self.READONLY_FUNCTION_CANDIDATES, calls['functions']),
                                   ('operator', self.READONLY_OPERATOR_CANDIDATES, calls['operators'])):
            for schema, name in items:
                label = '%s%s' % ('%s.' % schema if schema else '', name)
                rows = self.fetchall(query, dict(name=name, schema=schema))
                if not rows:
                    raise refuse('The query calls the %s %s, which does not exist here (on the search path).%s'
                                 % (kind, label, tail))
                for nsp, volatility, proname, language in rows:
                    if nsp != 'pg_catalog' and language not in ('c', 'internal'):
                        raise refuse('The query calls the %s %s, and %s.%s is user-defined (in %s).%s'
                                     % (kind, label, nsp, name, language, tail))
                    if volatility == 'v' or sqlcheck.pg_function_denied(proname):
                        raise refuse('The query calls the %s %s (%s), which is %s.%s' % (
                            kind, label, proname, 'volatile: it may act, not only read' if volatility == 'v'
                            else 'on the deny list of functions that act (files, sessions, settings, locks, waits)',
                            tail))
        for schema, name in calls.get('types', ()):
            for _typname, user_code, domain_checks in self.fetchall(self.READONLY_CAST_TYPES, dict(name=name, schema=schema)):
                if user_code or domain_checks:
                    raise refuse('The query casts to the type %s, whose %s user code. %s' % (
                        name, 'input or cast functions are' if user_code else 'domain CHECK constraints may call',
                        sqlcheck.NOTHING))

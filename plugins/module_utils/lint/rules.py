# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rule table of migration_lint and the checks behind it.

Every rule has an id, a severity (error | warning | info), the engines it
applies to, why the statement is dangerous and the safe alternative. A check
is a function (event, context) -> message or None, called for the events of
the kinds the rule listens to. Checks see Events only (model.py), never SQL.
"""

from __future__ import annotations

from ansible_collections.dbops.maintenance.plugins.module_utils.lint.model import Event

SEVERITIES = ('info', 'warning', 'error')
ALL = ('postgresql', 'mysql', 'sqlite')


class Rule:
    __slots__ = ('id', 'severity', 'engines', 'kinds', 'title', 'why', 'alternative', 'check')

    def __init__(self, rule_id, severity, engines, kinds, title, why, alternative, check):
        self.id = rule_id
        self.severity = severity
        self.engines = engines
        self.kinds = kinds
        self.title = title
        self.why = why
        self.alternative = alternative
        self.check = check


class Context:
    """What the checks know about the source being linted (and the ones before it).

    wrapped: the migration tool runs the whole file in one transaction.
    pg_version: PostgreSQL major version of the target, if known.
    enum_columns: (table, column) -> values of MySQL ENUM columns seen so far
    (kept across the files of one run, in order).
    """

    def __init__(self, engine, pg_version=None, enum_columns=None):
        self.engine = engine
        self.pg_version = pg_version
        self.enum_columns = enum_columns if enum_columns is not None else {}
        self.reset()

    def reset(self, wrapped=False):
        self.wrapped = wrapped
        self.explicit_txn = False
        self.created = set()
        self.lock_timeout = False
        self.lock_reported = False
        self.rebuilds = set()     # tables rebuilt by create-copy-drop-rename (recognised per source)

    def key(self, name):
        if name is None:
            return None
        name = name.split('.')[-1]
        return name if self.engine == 'postgresql' else name.lower()

    def in_transaction(self):
        return self.explicit_txn or self.wrapped

    def is_new(self, table):
        return self.key(table) in self.created


def q(name):
    return '"%s"' % name if name is not None else '(unknown)'


# --- checks ------------------------------------------------------------------------------
def _drop_table(e, ctx):
    if ctx.is_new(e['table']) or ctx.key(e['table']) in ctx.rebuilds:
        return None
    return 'DROP TABLE %s deletes the table and every row in it.' % q(e['table'])


def _drop_column(e, ctx):
    if ctx.is_new(e['table']):
        return None
    return 'Dropping column %s of %s deletes its data, and the running application still reads it.' % (
        q(e['column']), q(e['table']))


def _drop_schema(e, _ctx):
    what = 'DROP DATABASE' if e.get('database') else 'DROP SCHEMA'
    return '%s %s deletes every table in it and all their rows.' % (what, q(e['schema']))


def _truncate(e, ctx):
    tables = [t for t in e['tables'] if not ctx.is_new(t)]
    if not tables:
        return None
    return 'TRUNCATE %s deletes every row (and cannot be undone by a later migration).' % ', '.join(map(q, tables))


def _delete_all(e, ctx):
    if ctx.is_new(e['table']):
        return None
    return 'DELETE FROM %s has no WHERE clause: it deletes every row.' % q(e['table'])


def _update_all(e, ctx):
    if ctx.is_new(e['table']):
        return None
    return 'UPDATE %s has no WHERE clause: it changes every row, in one transaction that locks them all.' % (
        q(e['table']))


def _add_not_null(e, ctx):
    if not e['not_null'] or e['has_default'] or ctx.is_new(e['table']):
        return None
    effect = {
        'postgresql': 'fails as soon as the table has a row',
        'mysql': 'fails in strict mode, and otherwise silently fills existing rows with zero values (0, \'\', '
                 '0000-00-00)',
        'sqlite': 'is refused by SQLite ("Cannot add a NOT NULL column with default value NULL")',
    }[ctx.engine]
    return 'ADD COLUMN %s %s NOT NULL without a default on %s %s.' % (
        q(e['column']), e['type'], q(e['table']), effect)


REWRITE_FREE_PG_TYPES = ('text', 'varchar', 'character varying', 'pg_catalog.varchar', 'pg_catalog.text')


def _type_rewrite(e, ctx):
    if ctx.is_new(e['table']):
        return None
    if ctx.engine == 'postgresql':
        if e['type'].lower() in REWRITE_FREE_PG_TYPES and not e.get('using'):
            return None   # unbounded text/varchar: binary-coercible from varchar(n)/text, no rewrite
        return ('ALTER COLUMN %s TYPE %s on %s rewrites the whole table (and its indexes) under an ACCESS EXCLUSIVE '
                'lock, unless the new type is binary-coercible (e.g. only a longer varchar).'
                % (q(e['column']), e['type'], q(e['table'])))
    if e.get('safe_algorithm'):
        return None
    return ('Redefining column %s of %s as %s makes InnoDB copy or rebuild the table unless the change is '
            'metadata-only (e.g. a VARCHAR that grows within the same length byte), blocking writes while it copies.'
            % (q(e['column']), q(e['table']), e['type']))


def _index_not_concurrently(e, ctx):
    if e['concurrently'] or ctx.is_new(e['table']):
        return None
    return 'CREATE INDEX %son %s without CONCURRENTLY blocks every write to the table while the index builds.' % (
        (q(e['index']) + ' ') if e.get('index') else '', q(e['table']))


def _concurrently_in_txn(e, ctx):
    if not e.get('concurrently') or not ctx.in_transaction():
        return None
    return ('%s CONCURRENTLY cannot run inside a transaction block: PostgreSQL refuses it (SQLSTATE 25001)%s.'
            % ({'create_index': 'CREATE INDEX', 'drop_index': 'DROP INDEX'}.get(e.kind, 'REINDEX'),
               ' and this migration runs in a transaction (%s)' % (
                   'BEGIN in the file' if ctx.explicit_txn else 'the migration tool wraps the file in one')))


def _enum_in_txn(e, ctx):
    if not ctx.in_transaction() or ctx.is_new(e['type']):
        return None   # PostgreSQL < 12 allows ADD VALUE to a type created in the same transaction
    if ctx.pg_version is not None and ctx.pg_version >= 12:
        return None
    when = ('the target is PostgreSQL %d' % ctx.pg_version) if ctx.pg_version else \
        'the target version is unknown: set pg_version, or use only_pending'
    message = ('ALTER TYPE %s ADD VALUE %r runs inside a transaction: PostgreSQL before 12 refuses that (%s), and on '
               '12+ the new value cannot be used until the transaction commits.' % (q(e['type']), e['value'], when))
    # A certain failure on a known old server; a risk (warning) when the version is unknown.
    return message if ctx.pg_version else (message, 'warning')


def _enum_change(e, ctx):
    if e.kind == 'enum_rename_value':
        return ('ALTER TYPE %s RENAME VALUE %r TO %r: rows keep their data, but every running application and '
                'query that writes or compares %r breaks at once.' % (q(e['type']), e['old'], e['new'], e['old']))
    # MySQL ENUM column: record the new list; compare with the previous one if we know it.
    key = (ctx.key(e['table']), (e['column'] or '').lower())
    before = ctx.enum_columns.get(key)
    new_key = (ctx.key(e['table']), (e.get('new') or e['column'] or '').lower())
    ctx.enum_columns.pop(key, None)
    ctx.enum_columns[new_key] = list(e['values'])
    if e.get('how') != 'modify' or ctx.is_new(e['table']) or e.get('safe_algorithm'):
        return None
    if before is not None:
        if e['values'][:len(before)] == before and (len(e['values']) <= 255 or len(before) > 255):
            return None   # appended at the end, same storage size: metadata-only (INSTANT)
        removed = [v for v in before if v not in e['values']]
        detail = ('removes %s' % ', '.join(map(repr, removed))) if removed else 'inserts or reorders values'
        return ('Redefining ENUM column %s.%s %s (was %s): InnoDB copies the whole table for that, blocking writes'
                '%s.' % (q(e['table']), q(e['column']), detail, ', '.join(map(repr, before)),
                         ', and rows holding a removed value get an empty value' if removed else ''))
    return ('Redefining ENUM column %s.%s, whose current values this lint run has not seen: unless the new list only '
            'appends at the end, InnoDB copies the whole table.' % (q(e['table']), q(e['column'])))


def _rename_table(e, ctx):
    if ctx.is_new(e['table']) or ctx.key(e['new']) in ctx.rebuilds:
        return None
    return 'Renaming table %s to %s: every running application instance that still uses %s fails at once.' % (
        q(e['table']), q(e['new']), q(e['table']))


def _rename_column(e, ctx):
    if ctx.is_new(e['table']):
        return None
    return ('Renaming column %s.%s to %s: every running application instance that still uses %s fails at once.'
            % (q(e['table']), q(e['column']), q(e['new']), q(e['column'])))


def _not_valid(e, ctx):
    if e['not_valid'] or ctx.is_new(e['table']):
        return None
    return ('ADD %s%s on %s validates every existing row while holding a lock that blocks writes%s.'
            % (e['what'], (' ' + q(e['constraint'])) if e.get('constraint') else '', q(e['table']),
               ' (on both tables)' if e['what'] == 'FOREIGN KEY' else ''))


def _lock_timeout(e, ctx):
    if ctx.lock_timeout or ctx.lock_reported or ctx.is_new(e['table']):
        return None
    ctx.lock_reported = True
    return ('This migration takes an ACCESS EXCLUSIVE lock on %s without a lock_timeout: while it waits behind any '
            'long transaction, every query on the table queues behind it (an outage).' % q(e['table']))


def _parse_error(e, _ctx):
    return 'The parser cannot read this statement: %s' % e['message']


def _unparsed(e, _ctx):
    return ('The parser only recognises this statement as an opaque %s command, so no rule could check it.'
            % (e['command'] or 'SQL'))


RULES = [
    Rule('parse-error', 'error', ALL, ('parse_error',), 'unreadable SQL',
         'A statement the parser cannot read is not checked by any rule; it is often a syntax error that '
         'will also fail the migration, or SQL of another dialect than engine.',
         'Fix the statement, or make engine match the database the migration is for.', _parse_error),
    Rule('unparsed-statement', 'warning', ('mysql', 'sqlite'), ('unparsed',), 'statement not analysed',
         'sqlglot accepted the statement only as an opaque command, so it could hide anything the rules look for.',
         'Review it by hand; accept it with a dbops:ignore comment giving the reason.', _unparsed),
    Rule('drop-table', 'error', ALL, ('drop_table',), 'DROP TABLE',
         'Data loss: the table and its rows are gone, and running code that reads it fails.',
         'Stop using the table in the code first, deploy, back it up (or rename it to a *_deprecated name), '
         'and drop it in a later release.', _drop_table),
    Rule('drop-column', 'error', ALL, ('drop_column',), 'DROP COLUMN',
         'Data loss, and running application instances (ORMs select every column) fail until they are redeployed.',
         'Remove the column from the code (e.g. Rails ignored_columns, Prisma @ignore) and deploy first; drop it '
         'in a later migration, after a backup.', _drop_column),
    Rule('drop-schema', 'error', ('postgresql', 'mysql'), ('drop_schema',), 'DROP SCHEMA / DATABASE',
         'Data loss of every table in the schema or database.',
         'Drop the schema by hand after a verified backup; never from an application migration.', _drop_schema),
    Rule('truncate', 'error', ('postgresql', 'mysql'), ('truncate',), 'TRUNCATE',
         'Data loss: every row is deleted; TRUNCATE also takes an ACCESS EXCLUSIVE lock (PostgreSQL) and is not '
         'transactional in MySQL.',
         'Delete the rows you mean with a WHERE clause, in batches, after a backup; or keep the data.', _truncate),
    Rule('delete-without-where', 'error', ALL, ('delete_all',), 'DELETE without WHERE',
         'Data loss: every row of the table is deleted, in one long transaction.',
         'Add a WHERE clause that selects the rows you mean; delete in batches.', _delete_all),
    Rule('update-without-where', 'error', ALL, ('update_all',), 'UPDATE without WHERE',
         'Every row is overwritten in one transaction that locks them all; the old values are lost.',
         'Add a WHERE clause; backfill large tables in batches (WHERE id BETWEEN ...).', _update_all),
    Rule('add-column-not-null-no-default', 'error', ALL, ('add_column',), 'ADD COLUMN NOT NULL without default',
         'On a populated table the statement fails (PostgreSQL, SQLite) or MySQL silently fills zero values.',
         'Add the column with a DEFAULT (a constant default is metadata-only on PostgreSQL 11+ and MySQL 8), '
         'or add it nullable, backfill in batches, then set NOT NULL.', _add_not_null),
    Rule('column-type-rewrite', 'warning', ('postgresql', 'mysql'), ('alter_column_type',), 'column type change',
         'Changing a column type rewrites or copies the whole table while blocking writes (PostgreSQL: reads too).',
         'Add a new column of the new type, backfill it in batches, switch the code, drop the old column later. '
         'On MySQL add ALGORITHM=INPLACE, LOCK=NONE (or INSTANT) so the server refuses rather than copies.',
         _type_rewrite),
    Rule('index-not-concurrently', 'warning', ('postgresql',), ('create_index',), 'CREATE INDEX without CONCURRENTLY',
         'CREATE INDEX takes a SHARE lock: every INSERT, UPDATE and DELETE on the table waits until the build ends.',
         'CREATE INDEX CONCURRENTLY, in a migration of its own that does not run in a transaction.',
         _index_not_concurrently),
    Rule('concurrently-in-transaction', 'error', ('postgresql',), ('create_index', 'drop_index', 'reindex'),
         'CONCURRENTLY inside a transaction',
         'PostgreSQL refuses CREATE/DROP INDEX CONCURRENTLY and REINDEX CONCURRENTLY in a transaction block, so '
         'the migration fails (and may leave the tool\'s history in a failed state).',
         'Put the statement in a migration of its own that runs outside a transaction (dbmate transaction:false, '
         'goose NO TRANSACTION, sqlx -- no-transaction, Flyway executeInTransaction=false, a single-statement '
         'Prisma/golang-migrate file).', _concurrently_in_txn),
    Rule('enum-value-in-transaction', 'error', ('postgresql',), ('enum_add_value',), 'ADD VALUE in a transaction',
         'Before PostgreSQL 12, ALTER TYPE ... ADD VALUE cannot run inside a transaction block, so the migration '
         'fails; from 12 on, the new value cannot be used in the same transaction.',
         'Add the value in a migration of its own that runs outside a transaction (or with dbops.maintenance.'
         'enum_add), and use it in a later one.', _enum_in_txn),
    Rule('enum-change', 'warning', ('postgresql', 'mysql'), ('enum_rename_value', 'enum_column'),
         'enum change other than appending',
         'Renaming an enum value breaks the running code that uses it; on MySQL, inserting, reordering or '
         'removing ENUM values makes InnoDB copy the table, and removed values turn into empty strings.',
         'Only append new values at the end (MySQL: ALGORITHM=INSTANT); to retire a value, stop writing it '
         'first and migrate rows with a batched UPDATE.', _enum_change),
    Rule('rename-table', 'warning', ALL, ('rename_table',), 'RENAME TABLE',
         'Code deployed before the migration still uses the old name and fails until every instance is replaced.',
         'Expand and contract: create the new table (or a view with the new name), write to both, switch the '
         'code, then drop the old one in a later release.', _rename_table),
    Rule('rename-column', 'warning', ALL, ('rename_column',), 'RENAME COLUMN',
         'Code deployed before the migration still uses the old name and fails until every instance is replaced.',
         'Expand and contract: add the new column, write to both and backfill, switch reads, drop the old column '
         'in a later release.', _rename_column),
    Rule('constraint-not-valid', 'warning', ('postgresql',), ('add_constraint',), 'constraint without NOT VALID',
         'Adding a FOREIGN KEY or CHECK scans the whole table to validate it while holding a lock that blocks '
         'writes.',
         'ADD CONSTRAINT ... NOT VALID (instant; new rows are checked), then ALTER TABLE ... VALIDATE CONSTRAINT '
         'in a separate statement or migration (it does not block writes).', _not_valid),
    Rule('missing-lock-timeout', 'warning', ('postgresql',), ('exclusive_lock',), 'no lock_timeout',
         'A statement that needs an ACCESS EXCLUSIVE lock waits behind any long transaction, and every query on '
         'the table queues behind it: a short DDL becomes an outage.',
         "SET lock_timeout = '2s' (or SET LOCAL in a transaction) at the top of the migration, and retry "
         'the migration when it times out.', _lock_timeout),
]

RULES_BY_ID = dict((r.id, r) for r in RULES)


def rules_for(engine, select=None, ignore=None):
    """The rules that apply to engine, filtered by the rules / ignore options."""
    out = []
    for rule in RULES:
        if engine not in rule.engines:
            continue
        if select and rule.id not in select:
            continue
        if ignore and rule.id in ignore:
            continue
        out.append(rule)
    return out


def find_rebuilds(statements, ctx):
    """Tables rebuilt by the SQLite pattern (Prisma, Django): CREATE new_t; INSERT INTO new_t SELECT ... FROM t;
    DROP TABLE t; ALTER TABLE new_t RENAME TO t. Their DROP and RENAME are not data loss."""
    created, copied, dropped = set(), {}, set()
    found = set()
    for stmt in statements:
        for e in stmt.events:
            if e.kind == 'create_table':
                created.add(ctx.key(e['table']))
            elif e.kind == 'insert' and ctx.key(e['table']) in created:
                for src in e.get('sources') or ():
                    copied[ctx.key(src)] = ctx.key(e['table'])
            elif e.kind == 'drop_table':
                dropped.add(ctx.key(e['table']))
            elif e.kind == 'rename_table':
                old, new = ctx.key(e['table']), ctx.key(e['new'])
                if new in dropped and copied.get(new) == old:
                    found.add(new)
    return found


def check_source(statements, ctx, rules):
    """Run the rules over one source's statements. Returns (statement, rule, message) triples."""
    by_kind = {}
    for rule in rules:
        for kind in rule.kinds:
            by_kind.setdefault(kind, []).append(rule)
    ctx.rebuilds = find_rebuilds(statements, ctx)
    out = []
    for stmt in statements:
        if stmt.error is not None:
            events = [Event('parse_error', message=stmt.error)]
        else:
            events = stmt.events
        for e in events:
            for rule in by_kind.get(e.kind, ()):
                message = rule.check(e, ctx)
                if message:
                    out.append((stmt, rule, message))   # message may be (text, severity)
        # State changes after the checks of the statement.
        for e in events:
            if e.kind == 'begin':
                ctx.explicit_txn = True
            elif e.kind == 'commit':
                ctx.explicit_txn = False
            elif e.kind == 'create_table':
                ctx.created.add(ctx.key(e['table']))
            elif e.kind == 'create_type':
                ctx.created.add(ctx.key(e['type']))
            elif e.kind == 'set_lock_timeout':
                ctx.lock_timeout = True
            elif e.kind == 'enum_column' and 'enum-change' not in [r.id for r in rules]:
                ctx.enum_columns[(ctx.key(e['table']), (e.get('new') or e['column'] or '').lower())] = list(e['values'])
    return out

# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rule table of migration_lint and the checks behind it.

Every rule has an id, a severity (error | warning | info), the engines it
applies to, why the statement is dangerous and the safe alternative. A check
is a function (event, context) -> message or None, called for the events of
the kinds the rule listens to. Checks see Events only (model.py), never SQL.

Over 600 lines on purpose, for now: the 50 rules' checks sit next to the table that names them, in the table's
order, so that a rule's id, severity, message and check are read (and reviewed against squawk's catalogue) in one
place. The seam when it grows further is per engine family (the PostgreSQL checks, the MySQL/MariaDB checks from
parse_mysql_version on, the SQLite checks), with the table here.
"""

from __future__ import annotations

from ansible_collections.dbops.maintenance.plugins.module_utils.lint.model import Event

SEVERITIES = ('info', 'warning', 'error')
ALL = ('postgresql', 'mysql', 'sqlite')


class Rule:
    """One rule. also: the other linters that check the same hazard (for the docs' rules table), as
    (linter, their rule id) pairs; linters: squawk, atlas, strong_migrations, bytebase."""

    __slots__ = ('id', 'severity', 'engines', 'kinds', 'title', 'why', 'alternative', 'check', 'also')

    def __init__(self, rule_id, severity, engines, kinds, title, why, alternative, check, also=()):
        self.also = also
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

    def __init__(self, engine, pg_version=None, enum_columns=None, mysql_version=None):
        self.engine = engine
        self.pg_version = pg_version
        self.mysql_version = parse_mysql_version(mysql_version) if isinstance(mysql_version, str) else mysql_version
        self.mysql_flavour = mysql_flavour(mysql_version)
        self.enum_columns = enum_columns if enum_columns is not None else {}
        self.reset()

    def reset(self, wrapped=False):
        self.wrapped = wrapped
        self.explicit_txn = False
        self.begin_stmt = None        # the statement of the BEGIN that is still open
        self.txn_id = 0               # which transaction a statement runs in (0: none / the tool's)
        self.created = set()
        self.lock_timeout = False
        self.lock_reported = 0        # the strongest lock level reported (see _lock_level)
        self.statement_timeout = False
        self.statement_timeout_reported = False
        self.not_valid = {}           # constraint -> transaction id it was added NOT VALID in
        self.not_null_checks = {}     # (table, column) -> constraint name of CHECK (col IS NOT NULL)
        self.validated = {}           # (table, column) -> transaction id the CHECK was validated in
        self.concurrent_indexes = set()
        self.foreign_keys_off = None  # the statement of a PRAGMA foreign_keys=OFF not yet turned back ON
        self.rebuilds = set()     # tables rebuilt by create-copy-drop-rename (recognised per source)

    def key(self, name):
        if name is None:
            return None
        name = name.split('.')[-1]
        return name if self.engine == 'postgresql' else name.lower()

    def in_transaction(self):
        return self.explicit_txn or self.wrapped

    def transaction(self):
        """An id of the transaction the current statement runs in; None when it runs on its own (autocommit)."""
        if self.explicit_txn:
            return self.txn_id
        return 0 if self.wrapped else None

    def version_at_least(self, major):
        """True/False when pg_version is known, None when it is not."""
        return None if self.pg_version is None else self.pg_version >= major

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
            # binary-coercible from varchar(n)/text (no rewrite), but a rewrite from any other type, and the linter
            # does not know the old type
            return ('ALTER COLUMN %s TYPE %s on %s: no rewrite if the column is varchar/text now (binary-coercible), '
                    'a full rewrite under ACCESS EXCLUSIVE if it is any other type.'
                    % (q(e['column']), e['type'], q(e['table'])), 'info')
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
    if e.kind == 'enum_value_used':
        return ('This statement uses the enum value %r, which ALTER TYPE %s ADD VALUE on line %d added in the same '
                'transaction: PostgreSQL refuses that ("unsafe use of new value") until the transaction commits.'
                % (e['value'], q(e['type']), e['line']))
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
    kind = e.get('type_kind') or 'ENUM'
    if before is not None:
        if e['values'][:len(before)] == before and \
                enum_storage_bytes(kind, len(e['values'])) == enum_storage_bytes(kind, len(before)):
            return None   # appended at the end, same storage size: metadata-only (INSTANT)
        removed = [v for v in before if v not in e['values']]
        if removed:
            detail = 'removes %s' % ', '.join(map(repr, removed))
        elif e['values'][:len(before)] == before:
            detail = 'appends past %d values (%d to %d bytes a row)' % (
                {'ENUM': 255, 'SET': 8 * enum_storage_bytes(kind, len(before))}[kind],
                enum_storage_bytes(kind, len(before)), enum_storage_bytes(kind, len(e['values'])))
        else:
            detail = 'inserts or reorders values'
        loss = {'ENUM': ', and rows holding a removed value get an empty value',
                'SET': ', and rows lose the removed members from their sets'}[kind]
        return ('Redefining %s column %s.%s %s (was %s): InnoDB copies the whole table for that, blocking writes'
                '%s.' % (kind, q(e['table']), q(e['column']), detail, ', '.join(map(repr, before)),
                         loss if removed else ''))
    return ('Redefining %s column %s.%s, whose current values this lint run has not seen: unless the new list only '
            'appends at the end, InnoDB copies the whole table.' % (kind, q(e['table']), q(e['column'])))


def enum_storage_bytes(kind, count):
    """Bytes a row of a MySQL ENUM/SET column of count values takes: appending within it is INSTANT."""
    if kind == 'SET':
        return {1: 1, 2: 2, 3: 3, 4: 4}.get((count + 7) // 8, 8)
    return 1 if count <= 255 else 2


def _set_too_many(e, _ctx):
    if e.get('type_kind') != 'SET' or len(e['values']) <= 64:
        return None
    return ('SET column %s.%s has %d members: MySQL and MariaDB allow at most 64, the statement fails.'
            % (q(e['table']), q(e['column']), len(e['values'])))


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
    if e.kind == 'validate_constraint':
        added_in = ctx.not_valid.get(e['constraint'], 'no')
        if added_in == 'no' or added_in is None or added_in != ctx.transaction():
            return None
        return ('VALIDATE CONSTRAINT %s runs in the same transaction as the ADD CONSTRAINT ... NOT VALID before it: '
                'the lock ADD CONSTRAINT took (SHARE ROW EXCLUSIVE or ACCESS EXCLUSIVE) is held through the whole '
                'validation scan, so NOT VALID gains nothing.' % q(e['constraint']))
    if e['not_valid'] or ctx.is_new(e['table']):
        return None
    if e.get('inline'):
        return ('ADD COLUMN ... REFERENCES on %s takes a SHARE ROW EXCLUSIVE lock on the referenced table too; the '
                'new column is NULL, so the check itself is instant, but the lock waits behind long transactions on '
                'both tables.' % q(e['table']), 'info')
    return ('ADD %s%s on %s validates every existing row while holding a lock that blocks writes%s.'
            % (e['what'], (' ' + q(e['constraint'])) if e.get('constraint') else '', q(e['table']),
               ' (on both tables)' if e['what'] == 'FOREIGN KEY' else ''))


LOCK_LEVELS = {'weak_lock': 1, 'share_lock': 2, 'exclusive_lock': 3}


def _lock_level(e):
    """1: a lock that blocks schema changes only (or a catalog lock); 2: SHARE (blocks writes); 3: ACCESS EXCLUSIVE."""
    if e.kind == 'share_lock' and e.get('concurrently'):
        return 1
    return LOCK_LEVELS[e.kind]


def _lock_what(e):
    if e.get('table'):
        return q(e['table'])
    return e.get('what') or 'an existing object'


def _lock_timeout(e, ctx):
    level = _lock_level(e)
    if ctx.lock_timeout or ctx.lock_reported >= level or ctx.is_new(e.get('table')):
        return None
    ctx.lock_reported = level
    if level == 3:
        return ('This migration takes an ACCESS EXCLUSIVE lock on %s without a lock_timeout: while it waits behind '
                'any long transaction, every query on the table queues behind it (an outage).' % _lock_what(e))
    if level == 2:
        return ('This migration takes a SHARE lock on %s without a lock_timeout: while it waits behind a long '
                'transaction, every write to the table queues behind it.' % _lock_what(e))
    return ('This migration takes a lock on %s without a lock_timeout: it waits behind long transactions, and '
            'schema changes queue behind it.' % _lock_what(e), 'info')


def _parse_error(e, _ctx):
    return 'The parser cannot read this statement: %s' % e['message']


def _unparsed(e, _ctx):
    return ('The parser only recognises this statement as an opaque %s command, so no rule could check it.'
            % (e['command'] or 'SQL'))


# --- checks added for parity with squawk / strong_migrations (issue 13) ---------------------------------------
def _volatile_default(e, ctx):
    kind = e.get('default')
    if not kind or ctx.is_new(e['table']):
        return None
    col = '%s.%s' % (q(e['table']), q(e['column']))
    if kind in ('volatile', 'serial', 'identity', 'generated'):
        what = {'volatile': 'a volatile DEFAULT (a function PostgreSQL evaluates per row, e.g. gen_random_uuid(), '
                            'random(), clock_timestamp(), nextval(), any user function)',
                'serial': 'a serial type (its DEFAULT nextval() is volatile)',
                'identity': 'GENERATED ... AS IDENTITY (every existing row gets a new value)',
                'generated': 'GENERATED ALWAYS AS (...) STORED (every existing row is computed)'}[kind]
        return ('ADD COLUMN %s with %s rewrites the whole table and its indexes under an ACCESS EXCLUSIVE lock: '
                'reads and writes wait for as long as the table is big.' % (col, what))
    if ctx.version_at_least(11) is False:
        return ('ADD COLUMN %s with a DEFAULT rewrites the whole table under an ACCESS EXCLUSIVE lock on PostgreSQL %d '
                '(a constant default is metadata-only from PostgreSQL 11).' % (col, ctx.pg_version))
    return None


def _set_not_null(e, ctx):
    if ctx.is_new(e['table']):
        return None
    key = (ctx.key(e['table']), e['column'])
    validated_in = ctx.validated.get(key, 'no')
    if validated_in != 'no' and ctx.version_at_least(12) is not False:
        txn = ctx.transaction()
        if validated_in is None or txn is None or validated_in != txn:
            return None   # PG12+: a validated CHECK (col IS NOT NULL) proves it, SET NOT NULL skips the scan
        return ('SET NOT NULL on %s.%s follows its validated CHECK (%s IS NOT NULL) in the same transaction: '
                'PostgreSQL 12+ skips the scan, but the ACCESS EXCLUSIVE lock ADD CONSTRAINT took is held through the '
                'VALIDATE until COMMIT, so reads and writes wait for the whole scan.'
                % (q(e['table']), q(e['column']), e['column']))
    return ('ALTER COLUMN %s SET NOT NULL on %s scans the whole table to check for NULLs while holding an ACCESS '
            'EXCLUSIVE lock: reads and writes wait for as long as the scan takes.' % (q(e['column']), q(e['table'])))


def _drop_not_null(e, ctx):
    if ctx.is_new(e['table']):
        return None
    return ('ALTER COLUMN %s DROP NOT NULL on %s: running code (and readers such as ORMs, reports, replicas) that '
            'assume the column always has a value break on the first NULL, and the change is hard to undo once NULLs '
            'are written.' % (q(e['column']), q(e['table'])))


def _index_constraint(e, ctx):
    if e.get('using_index') or ctx.is_new(e['table']):
        return None
    return ('ADD %s%s on %s builds its index while holding an ACCESS EXCLUSIVE lock: reads and writes wait for the '
            'whole build.' % (e['what'], (' ' + q(e['constraint'])) if e.get('constraint') else '', q(e['table'])))


def _drop_index(e, ctx):
    if e.get('concurrently'):
        return None
    return ('DROP INDEX %s without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on its table: while it waits for '
            'running queries, every new query on the table queues behind it.' % (e.get('index') or ''))


def _reindex(e, ctx):
    if e.get('concurrently'):
        return None
    since = '' if ctx.version_at_least(12) is not False else (
        ' (PostgreSQL %d has no REINDEX CONCURRENTLY: build a new index CONCURRENTLY and drop the old one)'
        % ctx.pg_version)
    return ('REINDEX %s without CONCURRENTLY blocks writes to the table and reads that use the index for the whole '
            'rebuild%s.' % (e.get('target') or '', since))


def _detach(e, ctx):
    if e.get('concurrently') or ctx.is_new(e['table']):
        return None
    if ctx.version_at_least(14) is False:
        return ('DETACH PARTITION %s from %s takes an ACCESS EXCLUSIVE lock on the partitioned table (PostgreSQL %d '
                'has no DETACH ... CONCURRENTLY; it arrives in 14).'
                % (q(e['partition']), q(e['table']), ctx.pg_version), 'info')
    return ('DETACH PARTITION %s from %s without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on the partitioned '
            'table: every query on any partition waits.' % (q(e['partition']), q(e['table'])))


def _enum_ordering(e, ctx):
    if e.get('positioned') or ctx.is_new(e['type']):
        return None
    return ('ALTER TYPE %s ADD VALUE %r without BEFORE/AFTER appends the value: it sorts last in ORDER BY and '
            'comparisons.' % (q(e['type']), e['value']))


def _prefer_bigint(e, ctx):
    base = e.get('base')
    if base not in ('int4', 'int2', 'integer', 'int', 'smallint', 'serial', 'serial4', 'serial2', 'smallserial'):
        return None
    if e.get('how') == 'alter':
        return None   # a change TO int is column-type-rewrite's business
    small = base in ('int2', 'smallint', 'serial2', 'smallserial')
    key = e.get('primary_key') or e.get('serial') or e.get('identity')
    what = 'smallint (max 32,767)' if small else 'integer (max 2,147,483,647)'
    if key:
        return ('%s.%s is a key of type %s: once the sequence passes its maximum, every INSERT fails, and widening the '
                'column later rewrites the table under an ACCESS EXCLUSIVE lock.'
                % (q(e['table']), q(e['column']), what))
    return ('%s.%s is %s: values that outgrow it fail, and widening it later rewrites the table.'
            % (q(e['table']), q(e['column']), what), 'info')


def _prefer_identity(e, ctx):
    if not e.get('serial'):
        return None
    return ('%s.%s is %s: a serial column\'s sequence is owned loosely (grants, dumps, copying the table); '
            'GENERATED BY DEFAULT AS IDENTITY is the standard replacement.' % (q(e['table']), q(e['column']),
                                                                               e['base']))


def _char_column(e, ctx):
    if e.get('base') != 'bpchar':
        return None
    return ('%s.%s is char(n): values are blank-padded to n, comparisons and lengths surprise, and it is no faster '
            'than text.' % (q(e['table']), q(e['column'])))


def _prefer_text(e, ctx):
    if e.get('base') != 'varchar' or not e.get('typmods') or e.get('how') == 'alter':
        return None
    return ('%s.%s is %s: making it longer later is cheap, but shorter needs a rewrite under an ACCESS EXCLUSIVE '
            'lock; text with a CHECK (length(...) <= n) constraint can be changed with NOT VALID.'
            % (q(e['table']), q(e['column']), e['type']))


def _timestamp_tz(e, ctx):
    if e.get('base') not in ('timestamp', 'time'):
        return None
    return ('%s.%s is %s without time zone: it stores the wall-clock text and drops the offset, so values written '
            'from different time zones are not comparable.' % (q(e['table']), q(e['column']), e['type']))


def _identifier_too_long(e, _ctx):
    return ('The identifier %r is %d bytes: PostgreSQL truncates names to 63 bytes (NAMEDATALEN - 1) with a NOTICE '
            'only, so the object gets another name than the migration and the code use, and two long names can '
            'collide.' % (e['name'][:80], e['size']))


def _domain_constraint(e, _ctx):
    if e['how'] == 'alter':
        return ('ALTER DOMAIN %s ADD CONSTRAINT checks every column of every table that uses the domain while holding '
                'a lock on each.' % q(e['domain']))
    return ('CREATE DOMAIN %s with a CHECK: changing that check later validates every column of every table that '
            'uses the domain, under locks, and no tool can do it online.' % q(e['domain']))


def _table_rewrite(e, _ctx):
    tables = ', '.join(map(q, e['tables'])) if e['tables'] else 'every table of the database'
    return ('%s %s rewrites the table(s) under an ACCESS EXCLUSIVE lock: reads and writes wait for as long as the '
            'copy takes, and it needs free disk for a second copy.' % (e['command'], tables))


def _vacuum_full(e, ctx):
    return _table_rewrite(e, ctx) if e['command'] == 'VACUUM FULL' else None


def _cluster(e, ctx):
    return _table_rewrite(e, ctx) if e['command'] == 'CLUSTER' else None


def _lock_table(e, _ctx):
    return ('LOCK TABLE %s IN %s MODE%s: queries that conflict with that lock wait until the transaction ends.'
            % (', '.join(map(q, e['tables'])), e['mode'], ' NOWAIT' if e.get('nowait') else ''))


def _duplicate_assignment(e, _ctx):
    return ('UPDATE %s assigns %s more than once: PostgreSQL refuses the statement ("multiple assignments to same '
            'column").' % (q(e['table']), ', '.join(map(q, e['columns']))))


def _uncommitted(e, _ctx):
    return ('BEGIN on line %d is never committed in this migration: its changes are rolled back when the session '
            'ends, or committed by whatever runs next on the connection.' % e['line'])


def _nesting(e, ctx):
    if ctx.explicit_txn:
        return 'BEGIN inside a transaction that is already open: PostgreSQL ignores it with a WARNING, and the ' \
               'COMMIT that follows commits the outer transaction early.'
    if ctx.wrapped:
        return ('BEGIN in a migration the tool already runs in a transaction: PostgreSQL ignores it with a WARNING, '
                'and the COMMIT after it commits the tool\'s transaction early (the tool\'s history row is then '
                'written in another transaction).')
    return None


def _statement_timeout(e, ctx):
    if ctx.statement_timeout or ctx.statement_timeout_reported or ctx.is_new(e.get('table')):
        return None
    ctx.statement_timeout_reported = True
    return ('This migration takes a lock on %s without a statement_timeout: a statement that runs far longer than '
            'planned keeps the lock until someone cancels it.' % _lock_what(e))


def _drop_constraint(e, ctx):
    if ctx.is_new(e['table']):
        return None
    return ('DROP CONSTRAINT %s on %s: rows that violate it can be written at once, and adding it back later scans '
            'the table (NOT VALID, then VALIDATE) and fails on them.' % (q(e['constraint']), q(e['table'])))


def _robust(e, ctx):
    if ctx.in_transaction():
        return None
    if e.kind == 'alter_action':
        if e.get('robust') or ctx.is_new(e['table']):
            return None
        return ('ALTER TABLE %s runs outside a transaction and without IF [NOT] EXISTS: if the migration fails '
                'after it, running it again fails here.' % q(e['table']))
    if e.get('if_not_exists') or e.get('if_exists'):
        return None
    if e.kind == 'create_index':
        return ('CREATE INDEX %s runs outside a transaction without IF NOT EXISTS: after a failure (an INVALID '
                'index left by CONCURRENTLY) running the migration again fails here.' % q(e.get('index')))
    if e.kind == 'drop_index':
        return ('DROP INDEX %s runs outside a transaction without IF EXISTS: if the migration fails after it, '
                'running it again fails here.' % e.get('index'))
    if e.kind in ('create_table', 'drop_table'):
        return ('%s %s runs outside a transaction without IF %sEXISTS: if the migration fails after it, running it '
                'again fails here.' % ('CREATE TABLE' if e.kind == 'create_table' else 'DROP TABLE', q(e['table']),
                                       'NOT ' if e.kind == 'create_table' else ''))
    if e.kind in ('rename_table', 'rename_column'):
        return ('ALTER TABLE %s RENAME runs outside a transaction without IF EXISTS: if the migration fails after '
                'it, running it again fails here.' % q(e['table']))
    return None


# --- MySQL / MariaDB and SQLite (issue 13) -------------------------------------------------------------------
def parse_mysql_version(text):
    """'8.0.29' -> (8, 0, 29); '10.11' -> (10, 11, 0); '8.0.36-log', '10.6.16-MariaDB' too. None if unreadable."""
    if text is None:
        return None
    parts = []
    for piece in str(text).strip().split('-', 1)[0].split('.')[:3]:
        if not piece.isdigit():
            return None
        parts.append(int(piece))
    if not parts:
        return None
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts)


def mysql_flavour(text):
    """'mariadb' or 'mysql' for a version as the server answers it ('10.11.19-MariaDB-deb12', '8.0.36-log'),
    or as given ('10.11', '8.0.29', '11.4-mariadb'); None when unknown. Without the word MariaDB, a major
    version of 10 or more is MariaDB's (MySQL went from 8.4 to 9)."""
    if text is None:
        return None
    if not isinstance(text, str):
        return 'mariadb' if text and text[0] >= 10 else 'mysql'
    version = parse_mysql_version(text)
    if version is None:
        return None
    if 'mariadb' in text.lower():
        return 'mariadb'
    return 'mariadb' if version[0] >= 10 else 'mysql'


def _mysql_is_mariadb(ctx):
    return ctx.mysql_flavour == 'mariadb'


def _algorithm_copy(e, ctx):
    if e.get('algorithm') != 'COPY' or ctx.is_new(e['table']):
        return None
    return ('ALTER TABLE %s ... ALGORITHM=COPY copies every row into a new table while writes wait (reads too at '
            'the end), for as long as the table is big.' % q(e['table']))


def _lock_option(e, ctx):
    lock = e.get('lock')
    if lock not in ('SHARED', 'EXCLUSIVE') or ctx.is_new(e['table']):
        return None
    if lock == 'EXCLUSIVE':
        return ('ALTER TABLE %s ... LOCK=EXCLUSIVE blocks reads and writes for the whole operation.' % q(e['table']))
    return ('ALTER TABLE %s ... LOCK=SHARED blocks writes for the whole operation.' % q(e['table']), 'warning')


def _optimize(e, _ctx):
    return ('OPTIMIZE TABLE %s rebuilds the table (InnoDB: ALTER TABLE ... FORCE): it needs free disk for a second '
            'copy, replicas lag behind it, and tables with FULLTEXT indexes are copied with writes blocked.'
            % ', '.join(map(q, e['tables'])))


def _charset_convert(e, ctx):
    if ctx.is_new(e['table']):
        return None
    return ('ALTER TABLE %s CONVERT TO CHARACTER SET %s rewrites every text column and copies the table '
            '(ALGORITHM=COPY) with writes blocked, for as long as the table is big.'
            % (q(e['table']), e.get('charset') or ''))


def _add_column_rebuild(e, ctx):
    version = ctx.mysql_version
    if version is None or ctx.is_new(e['table']) or e.get('algorithm') in ('INSTANT', 'COPY'):
        return None
    if _mysql_is_mariadb(ctx):
        if version >= (10, 3, 2):
            return None
        name = 'MariaDB %d.%d' % version[:2]
    else:
        if version >= (8, 0, 29) or (version >= (8, 0, 12) and not e.get('positioned')):
            return None
        name = 'MySQL %d.%d.%d' % version
    return ('ADD COLUMN %s to %s rebuilds the table on %s (instant ADD COLUMN needs MySQL 8.0.12, 8.0.29 for '
            'FIRST/AFTER, or MariaDB 10.3.2): concurrent writes are allowed but it takes as long as a copy.'
            % (q(e['column']), q(e['table']), name))


def _sqlite_unsupported(e, _ctx):
    return ('SQLite has no ALTER TABLE ... %s: the statement fails on %s.' % (e['what'], q(e['table'])))


def _sqlite_rebuild(e, _ctx):
    return ('This migration rebuilds %s (create a new table, copy every row, drop, rename): the copy holds the '
            'database write lock for as long as the table is big, and foreign keys must be off meanwhile '
            '(PRAGMA foreign_keys=OFF before, ON after).' % q(e['table']))


def _foreign_keys_off(e, _ctx):
    return ('PRAGMA foreign_keys=OFF on line %d is not turned back ON in this migration: the connection goes on '
            'without foreign key checks.' % e['line'])


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
         'or add it nullable, backfill in batches, then set NOT NULL (dbops.maintenance.column_ensure with '
         'nullable: false does that step online).', _add_not_null),
    Rule('column-type-rewrite', 'warning', ('postgresql', 'mysql'), ('alter_column_type',), 'column type change',
         'Changing a column type rewrites or copies the whole table while blocking writes (PostgreSQL: reads too).',
         'Add a new column of the new type, backfill it in batches, switch the code, drop the old column later. '
         'On MySQL add ALGORITHM=INPLACE, LOCK=NONE (or INSTANT) so the server refuses rather than copies, or let '
         'dbops.maintenance.column_ensure with method: online run it through pt-online-schema-change.',
         _type_rewrite),
    Rule('index-not-concurrently', 'warning', ('postgresql',), ('create_index',), 'CREATE INDEX without CONCURRENTLY',
         'CREATE INDEX takes a SHARE lock: every INSERT, UPDATE and DELETE on the table waits until the build ends.',
         'CREATE INDEX CONCURRENTLY, in a migration of its own that does not run in a transaction: '
         'dbops.maintenance.index_ensure (state: present) builds it CONCURRENTLY and drops an INVALID leftover.',
         _index_not_concurrently),
    Rule('concurrently-in-transaction', 'error', ('postgresql',), ('create_index', 'drop_index', 'reindex'),
         'CONCURRENTLY inside a transaction',
         'PostgreSQL refuses CREATE/DROP INDEX CONCURRENTLY and REINDEX CONCURRENTLY in a transaction block, so '
         'the migration fails (and may leave the tool\'s history in a failed state).',
         'Put the statement in a migration of its own that runs outside a transaction (dbmate transaction:false, '
         'goose NO TRANSACTION, sqlx -- no-transaction, Flyway executeInTransaction=false, a single-statement '
         'Prisma/golang-migrate file).', _concurrently_in_txn),
    Rule('enum-value-in-transaction', 'error', ('postgresql',), ('enum_add_value', 'enum_value_used'), 'ADD VALUE in a transaction',
         'Before PostgreSQL 12, ALTER TYPE ... ADD VALUE cannot run inside a transaction block, so the migration '
         'fails; from 12 on, the new value cannot be used in the same transaction.',
         'Add the value in a migration of its own that runs outside a transaction (or with dbops.maintenance.'
         'enum_add), and use it in a later one.', _enum_in_txn),
    Rule('set-too-many-members', 'error', ('mysql',), ('enum_column',), 'SET with more than 64 members',
         'A MySQL/MariaDB SET column holds at most 64 members; a longer list fails the statement.',
         'Keep the SET at 64 members or fewer, or store the flags in a child table (one row per flag) or a JSON '
         'column.', _set_too_many),
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
    Rule('constraint-not-valid', 'warning', ('postgresql',), ('add_constraint', 'validate_constraint'),
         'constraint without NOT VALID',
         'Adding a FOREIGN KEY or CHECK scans the whole table to validate it while holding a lock that blocks '
         'writes.',
         'ADD CONSTRAINT ... NOT VALID (instant; new rows are checked), then ALTER TABLE ... VALIDATE CONSTRAINT '
         'in a separate transaction (it does not block writes): dbops.maintenance.constraint_ensure does both.',
         _not_valid),
    Rule('missing-lock-timeout', 'warning', ('postgresql',), ('exclusive_lock', 'share_lock', 'weak_lock'), 'no lock_timeout',
         'A statement that needs an ACCESS EXCLUSIVE lock waits behind any long transaction, and every query on '
         'the table queues behind it: a short DDL becomes an outage.',
         "SET lock_timeout = '2s' (or SET LOCAL in a transaction) at the top of the migration, and retry "
         'the migration when it times out.', _lock_timeout),
    Rule('add-column-volatile-default', 'error', ('postgresql',), ('add_column',), 'ADD COLUMN that rewrites the table',
         'A column whose value differs per row (a volatile DEFAULT, serial, identity, a stored generated column), or '
         'any DEFAULT before PostgreSQL 11, makes ADD COLUMN rewrite the table and its indexes under ACCESS EXCLUSIVE.',
         'Add the column without the default (or with a constant one, metadata-only from PostgreSQL 11), set the '
         'default for new rows with ALTER COLUMN ... SET DEFAULT, and backfill existing rows in batches (UPDATE ... '
         'WHERE id BETWEEN ...); dbops.maintenance.column_ensure adds the column that way.', _volatile_default,
         also=(('squawk', 'adding-field-with-default'), ('strong_migrations', 'add_column_default'),
               ('atlas', 'PG302'), ('bytebase', 'column.default-disallow-volatile'))),
    Rule('set-not-null', 'warning', ('postgresql',), ('set_not_null',), 'SET NOT NULL on an existing column',
         'SET NOT NULL scans every row under an ACCESS EXCLUSIVE lock; from PostgreSQL 12 a validated '
         'CHECK (col IS NOT NULL) lets it skip the scan.',
         'dbops.maintenance.column_ensure with nullable: false does it online: ADD CONSTRAINT CHECK (col IS NOT '
         'NULL) NOT VALID, VALIDATE CONSTRAINT (no write lock), SET NOT NULL (no scan on 12+), each in its own '
         'transaction, then drops the CHECK.', _set_not_null,
         also=(('squawk', 'adding-not-nullable-field'), ('strong_migrations', 'change_column_null'),
               ('atlas', 'MF104'), ('atlas', 'PG303'), ('bytebase', 'statement.disallow-add-not-null'))),
    Rule('add-unique-without-index', 'warning', ('postgresql',), ('add_index_constraint',),
         'ADD UNIQUE / PRIMARY KEY that builds its index',
         'ADD CONSTRAINT ... UNIQUE / PRIMARY KEY / EXCLUDE builds the index while holding an ACCESS EXCLUSIVE lock, '
         'so reads and writes wait for the whole build.',
         'CREATE UNIQUE INDEX CONCURRENTLY first (dbops.maintenance.index_ensure), then ADD CONSTRAINT ... UNIQUE / '
         'PRIMARY KEY USING INDEX (instant); dbops.maintenance.constraint_ensure does both.', _index_constraint,
         also=(('squawk', 'disallowed-unique-constraint'), ('squawk', 'adding-primary-key-constraint'),
               ('strong_migrations', 'add_unique_constraint'), ('atlas', 'MF101'), ('atlas', 'PG104'),
               ('atlas', 'PG105'))),
    Rule('drop-index-not-concurrently', 'warning', ('postgresql',), ('drop_index',), 'DROP INDEX without CONCURRENTLY',
         'DROP INDEX takes an ACCESS EXCLUSIVE lock on the table; waiting for it blocks every later query.',
         'DROP INDEX CONCURRENTLY outside a transaction: dbops.maintenance.index_ensure with state: absent.',
         _drop_index, also=(('squawk', 'require-concurrent-index-deletion'), ('strong_migrations', 'remove_index'),
                            ('atlas', 'PG102'))),
    Rule('reindex-not-concurrently', 'error', ('postgresql',), ('reindex',), 'REINDEX without CONCURRENTLY',
         'REINDEX blocks writes to the table, and reads that use the index, for the whole rebuild.',
         'REINDEX ... CONCURRENTLY (PostgreSQL 12+) outside a transaction; before 12, build a new index with '
         'dbops.maintenance.index_ensure (CONCURRENTLY) and drop the old one.', _reindex,
         also=(('squawk', 'require-concurrent-reindex'),)),
    Rule('detach-partition-not-concurrently', 'warning', ('postgresql',), ('detach_partition',),
         'DETACH PARTITION without CONCURRENTLY',
         'DETACH PARTITION takes an ACCESS EXCLUSIVE lock on the partitioned table: queries on every partition wait.',
         'ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY (PostgreSQL 14+), outside a transaction.', _detach,
         also=(('squawk', 'require-concurrent-partition-detach'),)),
    Rule('enum-value-ordering', 'info', ('postgresql',), ('enum_add_value',), 'ADD VALUE without BEFORE/AFTER',
         'A value added without BEFORE/AFTER sorts after every other value; that matters only when the enum order is '
         'used (ORDER BY, <, >).',
         'Say where it goes: ALTER TYPE ... ADD VALUE ... BEFORE/AFTER ...; dbops.maintenance.enum_add appends on '
         'purpose and is fine when the order does not matter.', _enum_ordering,
         also=(('squawk', 'require-enum-value-ordering'),)),
    Rule('prefer-bigint', 'warning', ('postgresql',), ('column_type',), 'integer or serial key',
         'A 32-bit (or 16-bit) key overflows at 2^31 (2^15); widening it later rewrites the table and every foreign '
         'key to it. Other 32-bit columns are reported as info.',
         'bigint / bigserial, or bigint GENERATED BY DEFAULT AS IDENTITY, from the start.', _prefer_bigint,
         also=(('squawk', 'prefer-bigint-over-int'), ('squawk', 'prefer-bigint-over-smallint'),
               ('bytebase', 'column.auto-increment-must-integer'))),
    Rule('prefer-identity', 'info', ('postgresql',), ('column_type',), 'serial column',
         'serial columns use a sequence the table does not fully own (permissions, dumps, CREATE TABLE LIKE).',
         'bigint GENERATED BY DEFAULT AS IDENTITY (PostgreSQL 10+).', _prefer_identity,
         also=(('squawk', 'prefer-identity'),)),
    Rule('char-column', 'info', ('postgresql',), ('column_type',), 'char(n) column',
         'char(n) pads with blanks and is no faster than text or varchar.',
         'text (with a CHECK on the length if one is needed) or varchar.', _char_column,
         also=(('squawk', 'ban-char-field'), ('bytebase', 'column.type-disallow-list'))),
    Rule('prefer-text-field', 'info', ('postgresql',), ('column_type',), 'varchar(n) column',
         'Shortening a varchar(n) later rewrites the table under ACCESS EXCLUSIVE; a CHECK on length can be changed '
         'online (NOT VALID, then VALIDATE).',
         'text with CHECK (length(col) <= n); dbops.maintenance.constraint_ensure changes such a CHECK online.',
         _prefer_text, also=(('squawk', 'prefer-text-field'), ('bytebase', 'column.maximum-varchar-length'))),
    Rule('timestamp-without-time-zone', 'info', ('postgresql',), ('column_type',), 'timestamp without time zone',
         'timestamp (and time) without time zone drop the UTC offset of what is written.',
         'timestamptz (timestamp with time zone).', _timestamp_tz, also=(('squawk', 'prefer-timestamp-tz'),)),
    Rule('identifier-too-long', 'warning', ('postgresql',), ('identifier_too_long',), 'identifier over 63 bytes',
         'PostgreSQL truncates identifiers longer than 63 bytes (NAMEDATALEN - 1) with only a NOTICE.',
         'Use a name of at most 63 bytes (count bytes, not characters, for non-ASCII names).', _identifier_too_long,
         also=(('squawk', 'identifier-too-long'),)),
    Rule('domain-constraint', 'warning', ('postgresql',), ('domain_constraint',), 'domain with a CHECK',
         'A CHECK on a domain is validated against every column that uses the domain, in every table, when it is '
         'added, and cannot be changed online.',
         'Put the CHECK on the table columns (ADD CONSTRAINT ... NOT VALID, then VALIDATE: '
         'dbops.maintenance.constraint_ensure), or add the domain constraint NOT VALID and VALIDATE it later.',
         _domain_constraint, also=(('squawk', 'ban-create-domain-with-constraint'),
                                   ('squawk', 'ban-alter-domain-with-add-constraint'))),
    Rule('vacuum-full', 'error', ('postgresql',), ('table_rewrite',), 'VACUUM FULL',
         'VACUUM FULL copies the whole table under an ACCESS EXCLUSIVE lock: reads and writes wait for as long as '
         'the table is big, and the copy needs as much free disk again.',
         'pg_repack (or pg_squeeze), which rebuild online, run by an operator outside the migration; plain VACUUM '
         '(no lock on reads/writes) to make the space reusable.', _vacuum_full,
         also=(('squawk', 'prefer-repack (PostgreSQL 19+ only)'),)),
    Rule('cluster', 'error', ('postgresql',), ('table_rewrite',), 'CLUSTER',
         'CLUSTER rewrites the table in index order under an ACCESS EXCLUSIVE lock: reads and writes wait for as '
         'long as the table is big.',
         'pg_repack --order-by (online), run by an operator outside the migration.', _cluster,
         also=(('squawk', 'prefer-repack (PostgreSQL 19+ only)'),)),
    Rule('drop-not-null', 'warning', ('postgresql',), ('drop_not_null',), 'DROP NOT NULL',
         'Code and readers written for a NOT NULL column break on the first NULL; once NULLs are written the '
         'constraint cannot simply be put back.',
         'Make sure every reader handles NULL first (deploy that), then drop NOT NULL; or keep the column NOT NULL '
         'with a default.', _drop_not_null, also=(('squawk', 'ban-drop-not-null'),)),
    Rule('lock-table', 'warning', ('postgresql',), ('lock_table',), 'LOCK TABLE',
         'An explicit LOCK TABLE holds its lock (ACCESS EXCLUSIVE unless a mode is given) until the transaction ends, '
         'and waits behind every running query first.',
         'Let each statement take the lock it needs, with SET lock_timeout; if a lock is truly needed, use the '
         'weakest mode, NOWAIT, and keep the transaction short.', _lock_table),
    Rule('duplicate-assignment', 'error', ('postgresql',), ('duplicate_assignment',), 'column assigned twice',
         'UPDATE ... SET a = 1, a = 2 is refused by PostgreSQL, so the migration fails.',
         'Assign each column once.', _duplicate_assignment, also=(('squawk', 'ban-duplicate-column-assignments'),)),
    Rule('uncommitted-transaction', 'error', ('postgresql',), ('uncommitted',), 'BEGIN without COMMIT',
         'A transaction left open at the end of a migration is rolled back when the session ends (losing the '
         'migration) or committed by whatever runs next.',
         'End every BEGIN with COMMIT in the same file, or let the migration tool manage the transaction.',
         _uncommitted, also=(('squawk', 'ban-uncommitted-transaction'),)),
    Rule('transaction-nesting', 'warning', ('postgresql',), ('begin',), 'BEGIN inside a transaction',
         'PostgreSQL has no nested transactions: a BEGIN inside one is ignored, and its COMMIT ends the outer one.',
         'Remove BEGIN/COMMIT from migrations the tool runs in a transaction (or turn the tool\'s transaction off for '
         'that migration).', _nesting, also=(('squawk', 'transaction-nesting'), ('bytebase', 'statement.disallow-commit'))),
    Rule('missing-statement-timeout', 'info', ('postgresql',), ('exclusive_lock', 'share_lock', 'weak_lock'),
         'no statement_timeout',
         'Without statement_timeout, a statement that holds a lock and runs longer than planned is not stopped.',
         "SET statement_timeout = '...' at the top of the migration (dbops.maintenance modules set both timeouts "
         'for the statements they run).', _statement_timeout, also=(('squawk', 'require-statement-timeout'),)),
    Rule('drop-constraint', 'warning', ('postgresql',), ('drop_constraint',), 'DROP CONSTRAINT',
         'Dropping a constraint lets the data break the rule it enforced; code written for the rule does not expect '
         'that, and re-adding it needs a scan.',
         'Keep the constraint until no code relies on it; to replace it, add the new one first (NOT VALID, then '
         'VALIDATE: dbops.maintenance.constraint_ensure), then drop the old one.', _drop_constraint,
         also=(('squawk', 'ban-drop-constraint'), ('atlas', 'CD101'))),
    Rule('mysql-algorithm-copy', 'error', ('mysql',), ('alter_options',), 'ALGORITHM=COPY',
         'ALGORITHM=COPY makes InnoDB copy the table row by row with writes blocked, for as long as it is big.',
         'ALGORITHM=INSTANT or ALGORITHM=INPLACE, LOCK=NONE (the server refuses when it cannot); when only a copy '
         'will do, dbops.maintenance.column_ensure with method: online (pt-online-schema-change) copies without '
         'blocking writes.', _algorithm_copy, also=(('bytebase', 'statement.disallow-offline-ddl'),)),
    Rule('mysql-lock-option', 'error', ('mysql',), ('alter_options',), 'LOCK=SHARED / LOCK=EXCLUSIVE',
         'LOCK=EXCLUSIVE blocks reads and writes, LOCK=SHARED blocks writes, for the whole ALTER (a warning for '
         'SHARED).',
         'LOCK=NONE with ALGORITHM=INPLACE or INSTANT; or dbops.maintenance.column_ensure with method: online '
         '(pt-online-schema-change).', _lock_option),
    Rule('optimize-table', 'warning', ('mysql',), ('optimize',), 'OPTIMIZE TABLE',
         'OPTIMIZE TABLE rebuilds the whole table: disk for a second copy, replica lag, writes blocked with '
         'FULLTEXT indexes.',
         'Run it (or pt-online-schema-change --alter "ENGINE=InnoDB") as an operator task in a quiet hour, not '
         'from a migration.', _optimize),
    Rule('mysql-charset-convert', 'error', ('mysql',), ('charset_convert',), 'CONVERT TO CHARACTER SET',
         'Converting a table\'s character set rewrites every text column, with ALGORITHM=COPY: writes wait for '
         'the whole copy.',
         'dbops.maintenance.column_ensure with method: online (pt-online-schema-change) for each table; '
         'ALTER TABLE ... CHARACTER SET = ... alone only changes the default for new columns (no copy).',
         _charset_convert),
    Rule('mysql-add-column-rebuild', 'warning', ('mysql',), ('add_column',), 'ADD COLUMN that rebuilds (old server)',
         'Before MySQL 8.0.12 (8.0.29 for FIRST/AFTER) and MariaDB 10.3.2, ADD COLUMN rebuilds the table; only '
         'reported when mysql_version says the server is that old.',
         'Add the column at the end with ALGORITHM=INSTANT on a server that has it, or use '
         'dbops.maintenance.column_ensure with method: online (pt-online-schema-change).', _add_column_rebuild),
    Rule('sqlite-alter-unsupported', 'error', ('sqlite',), ('sqlite_unsupported',), 'ALTER that SQLite cannot do',
         'SQLite\'s ALTER TABLE only renames, adds and drops columns: ALTER COLUMN and ADD/DROP CONSTRAINT fail.',
         'Rebuild the table: PRAGMA foreign_keys=OFF; CREATE TABLE new_t (...); INSERT INTO new_t SELECT ... FROM t; '
         'DROP TABLE t; ALTER TABLE new_t RENAME TO t; PRAGMA foreign_keys=ON (what Prisma and Django generate).',
         _sqlite_unsupported),
    Rule('sqlite-table-rebuild', 'info', ('sqlite',), ('table_rebuild',), 'SQLite table rebuild',
         'A rebuild copies every row while holding the database\'s write lock.',
         'Fine for small tables; for a big one, run it when writers can wait, with foreign keys off around it.',
         _sqlite_rebuild),
    Rule('sqlite-foreign-keys-off', 'warning', ('sqlite',), ('foreign_keys_left_off',), 'foreign_keys left OFF',
         'PRAGMA foreign_keys=OFF lasts for the connection: left off, every later write skips the checks.',
         'End the migration with PRAGMA foreign_keys=ON (and PRAGMA foreign_key_check to find rows the rebuild '
         'broke).', _foreign_keys_off),
    Rule('prefer-robust-statements', 'info', ('postgresql',),
         ('alter_action', 'create_index', 'drop_index', 'create_table', 'drop_table', 'rename_table', 'rename_column'),
         'not re-runnable outside a transaction',
         'A migration that does not run in a transaction and fails part way leaves its first statements applied; '
         'without IF [NOT] EXISTS, running it again fails on them.',
         'Run the migration in a transaction, or write IF NOT EXISTS / IF EXISTS (required for CREATE INDEX '
         'CONCURRENTLY, which cannot run in one); dbops.maintenance.index_ensure and column_ensure are idempotent.',
         _robust, also=(('squawk', 'prefer-robust-stmts'),)),
]

# The other linters that check the rules written before issue 13 (for the docs' rules table).
_ALSO = {
    'parse-error': (('squawk', 'syntax-error'),),
    'drop-table': (('squawk', 'ban-drop-table'), ('atlas', 'DS102'), ('bytebase', 'schema.backward-compatibility')),
    'drop-column': (('squawk', 'ban-drop-column'), ('strong_migrations', 'remove_column'), ('atlas', 'DS103'),
                    ('bytebase', 'column.disallow-drop'), ('bytebase', 'schema.backward-compatibility')),
    'drop-schema': (('squawk', 'ban-drop-database'), ('squawk', 'ban-drop-schema'), ('atlas', 'DS101'),
                    ('bytebase', 'database.drop-empty-database')),
    'truncate': (('squawk', 'ban-truncate-cascade'), ('bytebase', 'statement.disallow-truncate')),
    'delete-without-where': (('bytebase', 'statement.where.require.update-delete'),),
    'update-without-where': (('bytebase', 'statement.where.require.update-delete'),
                             ('strong_migrations', 'backfill (guide)')),
    'add-column-not-null-no-default': (('squawk', 'adding-required-field'), ('atlas', 'MF103'), ('atlas', 'MY101'),
                                       ('bytebase', 'column.add-not-null-require-default')),
    'column-type-rewrite': (('squawk', 'changing-column-type'), ('strong_migrations', 'change_column'),
                            ('atlas', 'PG301'), ('bytebase', 'column.disallow-change-type')),
    'index-not-concurrently': (('squawk', 'require-concurrent-index-creation'), ('strong_migrations', 'add_index'),
                               ('atlas', 'PG101'), ('bytebase', 'index.create-concurrently')),
    'concurrently-in-transaction': (('squawk', 'ban-concurrent-index-creation-in-transaction'),
                                    ('atlas', 'PG103'), ('strong_migrations', 'disable_ddl_transaction!')),
    'enum-change': (('squawk', 'renaming-object'), ('atlas', 'MY110-MY113 (ENUM)'), ('atlas', 'MY120-MY123 (SET)'),
                    ('strong_migrations', 'change_column')),
    'rename-table': (('squawk', 'renaming-table'), ('strong_migrations', 'rename_table'), ('atlas', 'BC101'),
                     ('bytebase', 'schema.backward-compatibility')),
    'rename-column': (('squawk', 'renaming-column'), ('strong_migrations', 'rename_column'), ('atlas', 'BC102'),
                      ('bytebase', 'schema.backward-compatibility')),
    'constraint-not-valid': (('squawk', 'constraint-missing-not-valid'), ('squawk', 'adding-foreign-key-constraint'),
                             ('strong_migrations', 'add_foreign_key / add_check_constraint'),
                             ('atlas', 'PG305 (CHECK)'), ('atlas', 'PG306 (FOREIGN KEY)'),
                             ('bytebase', 'statement.add-check-not-valid / statement.add-foreign-key-not-valid')),
    'missing-lock-timeout': (('squawk', 'require-lock-timeout'), ('strong_migrations', 'lock_timeout (setting)')),
}
for _rule in RULES:
    if not _rule.also and _rule.id in _ALSO:
        _rule.also = _ALSO[_rule.id]

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


# Rules that would report the same thing many times: one finding per statement (the columns of a CREATE TABLE)
# or per source (every DDL statement of a file run outside a transaction), naming the others in its message.
AGGREGATE_PER_STATEMENT = frozenset(('prefer-bigint', 'prefer-identity', 'char-column', 'prefer-text-field',
                                     'timestamp-without-time-zone', 'identifier-too-long'))
AGGREGATE_PER_SOURCE = frozenset(('prefer-robust-statements',))
AGGREGATE = AGGREGATE_PER_STATEMENT | AGGREGATE_PER_SOURCE


def _aggregate_note(rule_id, extra):
    if rule_id in AGGREGATE_PER_SOURCE:
        lines = sorted(set(line for line, _what in extra))
        return (' The same holds for %d more statement(s) of this migration, on line(s) %s.'
                % (len(extra), ', '.join(str(n) for n in lines[:20]) + (' ...' if len(lines) > 20 else '')))
    names = [what for _line, what in extra if what]
    return ' The statement has %d more such column(s)%s.' % (
        len(extra), (': ' + ', '.join(names[:20]) + (' ...' if len(names) > 20 else '')) if names else '')


_BY_KIND = {}


def _rules_by_kind(rules):
    """{event kind: [rules]} of a rule selection, computed once per selection (not once per source)."""
    key = tuple(r.id for r in rules)
    found = _BY_KIND.get(key)
    if found is None:
        by_kind = {}
        for rule in rules:
            for kind in rule.kinds:
                by_kind.setdefault(kind, []).append(rule)
        found = _BY_KIND[key] = (by_kind, 'enum-change' not in key)
    return found


def check_source(statements, ctx, rules):
    """Run the rules over one source's statements. Returns (statement, rule, message) triples."""
    by_kind, track_enums = _rules_by_kind(rules)
    ctx.rebuilds = find_rebuilds(statements, ctx)
    out = []
    new_enum_values = []    # (quoted value, type, line, transaction id) added in a transaction
    check_enum_use = 'enum_value_used' in by_kind

    grouped = {}            # aggregation key -> (index in out, [(line, column) of the findings merged into it])

    def run(stmt, e):
        for rule in by_kind.get(e.kind, ()):
            message = rule.check(e, ctx)
            if not message:
                continue
            if rule.id in AGGREGATE:
                severity = message[1] if isinstance(message, tuple) else rule.severity
                key = (rule.id, severity, id(stmt) if rule.id in AGGREGATE_PER_STATEMENT else None)
                if key in grouped:
                    grouped[key][1].append((stmt.line, e.get('column') or e.get('name')))
                    continue
                grouped[key] = (len(out), [])
            out.append((stmt, rule, message))   # message may be (text, severity)

    for stmt in statements:
        if stmt.error is not None:
            events = [Event('parse_error', message=stmt.error)]
        else:
            events = stmt.events
        for e in events:
            run(stmt, e)
        if new_enum_values and stmt.error is None:
            txn = ctx.transaction()
            for quoted, type_name, line, added_in in new_enum_values:
                if txn is not None and txn == added_in and quoted in stmt.text:
                    run(stmt, Event('enum_value_used', value=quoted[1:-1], type=type_name, line=line))
        # State changes after the checks of the statement.
        for e in events:
            kind = e.kind
            if kind == 'drop_table' and ctx.engine == 'sqlite' and ctx.key(e['table']) in ctx.rebuilds:
                run(stmt, Event('table_rebuild', table=e['table']))
            elif kind == 'foreign_keys':
                ctx.foreign_keys_off = None if e['on'] else stmt
            if kind == 'begin':
                if not ctx.explicit_txn:
                    ctx.txn_id += 1
                    ctx.begin_stmt = stmt
                ctx.explicit_txn = True
            elif kind == 'commit':
                ctx.explicit_txn = False
                ctx.begin_stmt = None
            elif kind == 'create_table':
                ctx.created.add(ctx.key(e['table']))
            elif kind == 'create_type':
                ctx.created.add(ctx.key(e['type']))
            elif kind == 'set_lock_timeout':
                ctx.lock_timeout = True
            elif kind == 'set_statement_timeout':
                ctx.statement_timeout = True
            elif kind == 'add_constraint':
                column = e.get('not_null_of')
                if e['not_valid'] and e.get('constraint'):
                    ctx.not_valid[e['constraint']] = ctx.transaction()
                if column:
                    key = (ctx.key(e['table']), column)
                    if e['not_valid']:
                        ctx.not_null_checks[e.get('constraint')] = key
                    else:
                        ctx.validated[key] = ctx.transaction()
            elif kind == 'validate_constraint':
                key = ctx.not_null_checks.get(e['constraint'])
                if key is not None:
                    ctx.validated[key] = ctx.transaction()
            elif kind == 'create_index' and e.get('concurrently') and e.get('index'):
                ctx.concurrent_indexes.add(e['index'])
            elif kind == 'enum_add_value' and check_enum_use and ctx.transaction() is not None and \
                    not ctx.is_new(e['type']):
                new_enum_values.append(("'%s'" % e['value'].replace("'", "''"), e['type'], stmt.line,
                                        ctx.transaction()))
            elif kind == 'enum_column' and track_enums:
                ctx.enum_columns[(ctx.key(e['table']), (e.get('new') or e['column'] or '').lower())] = list(e['values'])
    for (rule_id, _severity, _stmt), (index, extra) in grouped.items():
        if extra:
            stmt, rule, message = out[index]
            if isinstance(message, tuple):
                message = (message[0] + _aggregate_note(rule_id, extra), message[1])
            else:
                message = message + _aggregate_note(rule_id, extra)
            out[index] = (stmt, rule, message)
    if ctx.foreign_keys_off is not None:
        run(ctx.foreign_keys_off, Event('foreign_keys_left_off', line=ctx.foreign_keys_off.line))
    if ctx.explicit_txn and ctx.begin_stmt is not None and ctx.engine == 'postgresql':
        run(ctx.begin_stmt, Event('uncommitted', line=ctx.begin_stmt.line))
    return out

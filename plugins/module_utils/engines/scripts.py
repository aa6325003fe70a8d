# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running a migration script on an engine, the way a migration tool's driver sends it (migration_apply).

The adapter (engines/<engine>.py) is taken as an argument and only its connection (``db.conn``), its
statement log and its lock-retry loop (``with_lock_retries``) are used; nothing here changes it.

* ``split(text, engine)``: the statements of a script, cut at the semicolons the engine's own lexer sees
  (sqlglot's MySQL tokenizer; SQLite's ``sqlite3.complete_statement``), text between them kept as written.
  PostgreSQL scripts are not cut: the tools send them whole, as one simple-protocol query, which the server
  runs as one implicit transaction.
* ``run_script(db, pieces, transaction, before_sql, inside_sql)``: sends the pieces in order (with
  ``transaction``: inside BEGIN ... COMMIT together with the history statements of the same transaction;
  without: each piece commits on its own). A lock timeout rolls back and retries the whole transaction
  (``db.with_lock_retries``) when nothing of it can have stayed: an explicit transaction, a single
  PostgreSQL query (implicit transaction), or the first statement of a non-transactional script.
  On PostgreSQL a transaction costs two round trips, not four: BEGIN is sent with its first statement and
  COMMIT with its history statements (one simple-protocol query each, run by the server statement after
  statement in the transaction block the BEGIN opened; dbmate's lib/pq takes five: BEGIN, the script,
  the INSERT's Parse and its Bind/Execute, COMMIT).
  Any other error raises ScriptFailed(statement, error, ran) with the statements that did run.
"""

from __future__ import annotations

import sqlite3

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError, LockTimeout

# The drivers and sqlglot are imported when an engine needs them (a PostgreSQL run does not pay for sqlglot's
# or PyMySQL's import, a SQLite run for neither driver's): migration_apply's fixed cost is part of its time.


def _mysql_lexer():
    """(sqlglot's MySQL dialect, TokenType), or None without sqlglot."""
    try:
        from sqlglot.dialects.dialect import Dialect
        from sqlglot.tokens import TokenType
    except ImportError:  # pragma: no cover - depends on the managed host
        return None
    return Dialect.get_or_raise('mysql'), TokenType


# MySQL/MariaDB: ER_LOCK_WAIT_TIMEOUT (lock_wait_timeout / innodb_lock_wait_timeout)
MYSQL_LOCK_WAIT_TIMEOUT = 1205


class ScriptFailed(Exception):
    """A statement of a migration script failed (not a lock timeout that could be retried).

    statement: the statement (or script) that failed; error: the server's message; ran: the statements
    that ran before it (committed unless the script ran in a transaction, which was rolled back).
    """

    def __init__(self, statement, error, ran, rolled_back, lock_timeout=False):
        super().__init__(error)
        self.statement = statement
        self.error = error
        self.ran = list(ran)
        self.rolled_back = rolled_back
        self.lock_timeout = lock_timeout


def _meaningful_mysql(text, lexer):
    return bool(lexer[0].tokenize(text))


def split(text, engine):
    """The statements of a script as the engine's lexer cuts them (comments and layout kept)."""
    if engine == 'postgresql':
        return [text] if text.strip() else []
    if engine == 'mysql':
        lexer = _mysql_lexer()
        if lexer is None:
            raise DbopsError('Splitting a MySQL migration into statements needs sqlglot (pip install sqlglot).')
        tokens = lexer[0].tokenize(text)
        out, start = [], 0
        for tok in tokens:
            if tok.token_type == lexer[1].SEMICOLON:
                piece = text[start:tok.start]
                if piece.strip():
                    out.append(piece.strip())
                start = tok.end + 1
        rest = text[start:]
        if rest.strip() and _meaningful_mysql(rest, lexer):
            out.append(rest.strip())
        return out
    # sqlite: a statement ends at a ';' that sqlite3.complete_statement accepts (so triggers stay whole)
    out, start, i = [], 0, 0
    while True:
        i = text.find(';', i)
        if i < 0:
            break
        piece = text[start:i + 1]
        if sqlite3.complete_statement(piece):
            if _has_sql(piece):
                out.append(piece.strip())
            start = i + 1
        i += 1
    rest = text[start:]
    if _has_sql(rest):
        out.append(rest.strip())
    return out


def _has_sql(text):
    """Whether a piece of SQLite text holds more than whitespace and comments."""
    lines = []
    for line in text.split('\n'):
        s = line.strip()
        if s and not s.startswith('--'):
            lines.append(s)
    rest = ' '.join(lines)
    while '/*' in rest:
        a = rest.index('/*')
        b = rest.find('*/', a + 2)
        rest = rest[:a] + (rest[b + 2:] if b >= 0 else '')
    return bool(rest.strip().strip(';').strip())


# --- one engine's statements ------------------------------------------------------------------

class _Engine:
    def __init__(self, db):
        self.db = db
        self.conn = db.conn

    def watching(self):
        """The adapter's blocker watch while a statement waits (so a lock timeout names its blockers)."""
        watch = getattr(self.db, '_watching_blockers', None)
        if watch is None:
            import contextlib
            return contextlib.nullcontext()
        return watch()


class _Postgres(_Engine):
    def __init__(self, db):
        super().__init__(db)
        import psycopg
        self.error = psycopg.Error
        self.lock_not_available = psycopg.errors.LockNotAvailable

    def run(self, statement):
        try:
            # no parameters: psycopg sends the simple query protocol, so a whole script is one query,
            # as lib/pq, pgx (exec mode simple), node-postgres and quaint send a migration file
            self.conn.execute(statement)
        except self.lock_not_available as e:
            raise LockTimeout(str(e).strip())
        except self.error as e:
            position = getattr(getattr(e, 'diag', None), 'statement_position', None)
            raise _Failed('%s%s' % (str(e).strip(), ' (SQLSTATE %s)' % e.sqlstate if e.sqlstate else ''),
                          statement=statement_at(statement, position))

    def begin(self):
        self.conn.execute('BEGIN')

    def commit(self):
        self.conn.execute('COMMIT')

    # one round trip where the tools take two: BEGIN goes with the transaction's first statement and
    # COMMIT with its history statements, in one simple-protocol query each. The server runs such a query
    # statement after statement, and a BEGIN in it opens the transaction block the rest runs in, as the
    # tool's separate BEGIN does; an error skips the rest of the query (so no COMMIT after a failure).
    def begin_with(self, statement):
        self.run('BEGIN;\n' + statement)

    def commit_with(self, statements):
        self.run(';\n'.join(list(statements) + ['COMMIT']))

    def rollback(self):
        try:
            self.conn.execute('ROLLBACK')
        except self.error:
            pass


class _Mysql(_Engine):
    def __init__(self, db):
        super().__init__(db)
        import pymysql
        self.error = pymysql.MySQLError

    def run(self, statement):
        try:
            with self.conn.cursor() as cur:
                cur.execute(statement)
        except self.error as e:
            code = e.args[0] if e.args else None
            if code == MYSQL_LOCK_WAIT_TIMEOUT:
                raise LockTimeout(str(e))
            raise _Failed('%s (error %s)' % (e.args[1] if len(e.args) > 1 else e, code))

    def begin(self):
        self.conn.begin()

    def commit(self):
        try:
            self.conn.commit()
        except self.error as e:
            raise _Failed(str(e))

    def rollback(self):
        try:
            self.conn.rollback()
        except self.error:
            pass


class _Sqlite(_Engine):
    def run(self, statement):
        try:
            self.conn.execute(statement)
        except sqlite3.OperationalError as e:
            if 'locked' in str(e) or 'busy' in str(e):
                raise LockTimeout(str(e))
            raise _Failed(str(e))
        except (sqlite3.DatabaseError, sqlite3.Warning) as e:
            raise _Failed(str(e))

    def begin(self):
        self.run('BEGIN')

    def commit(self):
        self.run('COMMIT')

    def rollback(self):
        try:
            if self.conn.in_transaction:
                self.conn.execute('ROLLBACK')
        except sqlite3.DatabaseError:
            pass

    # --- a group of migrations in one transaction (migrations/group.py) ---
    # The first word of every statement of a grouped migration is one of these: transaction control, PRAGMA,
    # VACUUM, ATTACH/DETACH and the rest behave differently inside an enclosing transaction.
    GROUP_WORDS = frozenset(('CREATE', 'ALTER', 'DROP', 'INSERT', 'UPDATE', 'DELETE', 'REPLACE'))

    def groupable(self, piece):
        return first_word(piece) in self.GROUP_WORDS

    def begin_group(self):
        """BEGIN IMMEDIATE without waiting (busy timeout 0 around it): when another writer holds the write lock,
        LockTimeout, and the migration runs alone, where the busy timeout and the lock retries apply."""
        statements = begin_group_statements(self.conn)
        self.conn.execute(statements[0])
        try:
            self.conn.execute(statements[1])
        except sqlite3.OperationalError as e:
            raise LockTimeout(str(e))
        finally:
            self.conn.execute(statements[2])
        return statements

    def run_in_savepoint(self, statements):
        for statement in statements:
            self.run(statement)

    def rollback_to_savepoint(self, name):
        self.conn.execute('ROLLBACK TO %s' % name)

    def in_transaction(self):
        return self.conn.in_transaction


def begin_group_statements(conn):
    """SQLite: the statements that open a group, BEGIN IMMEDIATE with a busy timeout of 0 around it."""
    busy = conn.execute('PRAGMA busy_timeout').fetchone()[0]
    return ['PRAGMA busy_timeout = 0', 'BEGIN IMMEDIATE', 'PRAGMA busy_timeout = %d' % int(busy)]


def first_word(piece):
    """The first keyword of a SQLite statement, after leading comments and blanks ('' when none)."""
    i, n = 0, len(piece)
    while i < n:
        if piece[i].isspace():
            i += 1
        elif piece.startswith('--', i):
            j = piece.find('\n', i)
            i = n if j < 0 else j + 1
        elif piece.startswith('/*', i):
            j = piece.find('*/', i + 2)
            i = n if j < 0 else j + 2
        else:
            break
    j = i
    while j < n and (piece[j].isalpha() or piece[j] == '_'):
        j += 1
    return piece[i:j].upper()


class _Failed(Exception):
    def __init__(self, msg, statement=None):
        super().__init__(msg)
        self.statement = statement


Failed = _Failed  # a statement failed (not a lock timeout): what migrations/group.py catches


def statement_at(script, position):
    """The statement of a PostgreSQL script that holds the server's error position (1-based characters),
    cut with pglast's scanner; None when it cannot be told."""
    if not position:
        return None
    try:
        from pglast.parser import split as pg_split
        data = script.encode('utf-8')
        offset = len(script[:int(position) - 1].encode('utf-8'))
        for part in pg_split(script, with_parser=False, only_slices=True):
            if part.start <= offset <= part.stop:
                return data[part.start:part.stop].decode('utf-8', 'replace')
    except Exception:  # pylint: disable=broad-except
        return None
    return None


ENGINES = {'postgresql': _Postgres, 'mysql': _Mysql, 'sqlite': _Sqlite}


def engine_of(db):
    return ENGINES[db.engine](db)


def run_script(db, pieces, transaction, before_sql=(), inside_sql=None, label='migration', inside_fixed=None):
    """Run one migration's pieces. inside_sql: callable() -> statements run after the pieces, in the same
    transaction (history rows the tool writes with the migration), or None. inside_fixed: those statements
    when they are known before the run (they do not hold its duration): on PostgreSQL a one-query migration
    then goes in ONE round trip, BEGIN, the script, its history statements and COMMIT in one simple-protocol
    query (the server runs it statement after statement in the transaction block the BEGIN opens; an error
    skips the rest, so no history row and no COMMIT follow a failure). Returns the statements run."""
    eng = engine_of(db)
    before_sql = list(before_sql)
    inside_sql = inside_sql or (lambda: [])
    ran = []

    if transaction:
        def attempt():
            del ran[:]
            statement = None
            with eng.watching():
                try:
                    if hasattr(eng, 'begin_with') and inside_fixed is not None and len(before_sql + list(pieces)) == 1:
                        first = before_sql + list(pieces)
                        # '\n;\n' ends the script even when its last line is a '--' comment
                        statement = 'BEGIN;\n%s\n;\n%s' % (first[0], ';\n'.join(list(inside_fixed) + ['COMMIT']))
                        eng.run(statement)
                        ran.extend(first + list(inside_fixed))
                    elif hasattr(eng, 'begin_with'):
                        first = before_sql + list(pieces)
                        for n, statement in enumerate(first):
                            if n == 0:
                                eng.begin_with(statement)
                            else:
                                eng.run(statement)
                            ran.append(statement)
                        if not first:
                            eng.begin()
                        inside = list(inside_sql())
                        statement = ';\n'.join(inside + ['COMMIT'])
                        eng.commit_with(inside)
                        ran.extend(inside)
                    else:
                        eng.begin()
                        for statement in before_sql + list(pieces):
                            eng.run(statement)
                            ran.append(statement)
                        for statement in inside_sql():
                            eng.run(statement)
                            ran.append(statement)
                        statement = 'COMMIT'
                        eng.commit()
                except LockTimeout:
                    eng.rollback()
                    raise
                except _Failed as e:
                    eng.rollback()
                    raise ScriptFailed(e.statement or statement, str(e), ran, True)
        try:
            db.with_lock_retries(attempt, label)
        except DbopsError as e:
            raise ScriptFailed(None, str(e), [], True, lock_timeout=True)
        db.queries.extend(ran)
        return ran

    # no transaction: each statement commits on its own (DDL on MySQL does anyway)
    statements = before_sql + list(pieces)
    try:
        for n, statement in enumerate(statements):
            def one(statement=statement):
                with eng.watching():
                    eng.run(statement)
            if n == 0:
                # nothing ran yet: a lock timeout here left nothing behind, so it can be retried
                try:
                    db.with_lock_retries(one, label)
                except DbopsError as e:
                    raise ScriptFailed(statement, str(e), ran, False, lock_timeout=True)
            else:
                try:
                    one()
                except LockTimeout as e:
                    raise ScriptFailed(statement, 'lock timeout (not retried: %d statement(s) of this '
                                       'non-transactional migration already ran and stay): %s' % (len(ran), e),
                                       ran, False, lock_timeout=True)
            ran.append(statement)
        for statement in inside_sql():
            # the history row: one statement that left nothing behind when it timed out, so it is retried
            def row(statement=statement):
                with eng.watching():
                    eng.run(statement)
            try:
                db.with_lock_retries(row, label)
            except DbopsError as e:
                raise ScriptFailed(statement, 'the history row could not be written (%s); the %d statement(s) of '
                                   'this non-transactional migration ran and stay' % (e, len(ran)),
                                   ran, False, lock_timeout=True)
            ran.append(statement)
    except _Failed as e:
        db.queries.extend(ran)
        raise ScriptFailed(e.statement or statement, str(e), ran, False)
    except ScriptFailed:
        db.queries.extend(ran)
        raise
    db.queries.extend(ran)
    return ran


def set_search_path(db, schema):
    """PostgreSQL: make schema the session's first schema (the tools' schema / search_path setting)."""
    from psycopg import sql as pg_sql
    q = pg_sql.SQL('SELECT set_config({}, {}, false)').format(
        pg_sql.Literal('search_path'), pg_sql.Literal(db.render(pg_sql.Identifier(schema))))
    db.conn.execute(q)

# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place that proves what an SQL-valued option is, per engine, before anything runs.

Options that are SQL by design (column_ensure ``default`` and ``using``, db_verify ``queries``) are
read with a real parser: pglast (libpg_query, the PostgreSQL server's own parser) for PostgreSQL,
sqlglot in the ``mysql`` / ``sqlite`` dialect for the others.

* expression(text, engine, what): the text is exactly one value expression - no second statement,
  no comment (a comment could hide the rest of the DDL it is written into, and MySQL runs
  ``/*! ... */``), no alias, no FROM/WHERE/... - or SqlRefused.
* single_statement(text, engine, what): the DDL we built is one statement (a second check of the
  text that is sent).
* readonly_query(text, engine): the query is one SELECT (WITH ... SELECT, a set operation, VALUES;
  SHOW on MySQL/MariaDB) without INTO, FOR UPDATE/SHARE, a data-modifying CTE; returns the
  functions (and PostgreSQL operators) it calls, for the adapter to resolve in the catalog.

Every parse is bounded: text nested deeper than the parser can read is refused with a clear
message (libpg_query stops at its stack limit; sqlglot's RecursionError is caught).
"""

from __future__ import annotations

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError

# pglast is imported when PostgreSQL text is first read (about 40 ms: a module run that reads none does not pay it),
# here for every reader of PostgreSQL text (this file, engines/redact.py, engines/postgresql/locks.py).
pg_ast = pg_enums = pg_parser = pg_visitors = None
try:
    import importlib.util
    HAS_PGLAST = importlib.util.find_spec('pglast') is not None
except (ImportError, ValueError):  # pragma: no cover - depends on the managed host
    HAS_PGLAST = False


def load_pglast():
    """pglast's (ast, enums, parser, visitors) modules, imported on the first call."""
    global pg_ast, pg_enums, pg_parser, pg_visitors  # pylint: disable=global-statement
    if pg_parser is None:
        try:
            from pglast import ast as _ast, enums as _enums, parser as _parser, visitors as _visitors  # pylint: disable=import-outside-toplevel
        except ImportError as e:  # pragma: no cover - depends on the managed host
            raise DbopsError('Reading PostgreSQL SQL needs the Python library pglast on the managed host (%s): '
                             'pip install pglast.' % e)
        pg_ast, pg_enums, pg_visitors, pg_parser = _ast, _enums, _visitors, _parser
    return pg_ast, pg_enums, pg_parser, pg_visitors


# sqlglot is imported when first needed (it is large, and a PostgreSQL run never needs it).
exp = Dialect = TokenType = None


class SqlglotError(Exception):
    """Stands for sqlglot.errors.SqlglotError until sqlglot is loaded."""


def _load_sqlglot():
    global exp, Dialect, SqlglotError, TokenType  # pylint: disable=global-statement
    if exp is None:
        import logging  # pylint: disable=import-outside-toplevel
        from sqlglot import exp as _exp  # pylint: disable=import-outside-toplevel
        from sqlglot.dialects.dialect import Dialect as _Dialect  # pylint: disable=import-outside-toplevel
        from sqlglot.errors import SqlglotError as _SqlglotError  # pylint: disable=import-outside-toplevel,no-name-in-module
        from sqlglot.tokens import TokenType as _TokenType  # pylint: disable=import-outside-toplevel
        logging.getLogger('sqlglot').setLevel(logging.ERROR)
        exp, Dialect, SqlglotError, TokenType = _exp, _Dialect, _SqlglotError, _TokenType


MAX_SQL_OPTION_CHARS = 1000000
NOTHING = 'Nothing was run and nothing was changed.'

# PostgreSQL functions that db_verify's queries may not call even where the catalog says immutable or stable:
# they read server files, act on other sessions, change settings, take locks, wait, or run SQL text of their own.
PG_DENIED_FUNCTIONS = frozenset((
    'pg_read_file', 'pg_read_binary_file', 'pg_stat_file', 'pg_terminate_backend', 'pg_cancel_backend',
    'set_config', 'pg_notify', 'pg_config', 'txid_current', 'txid_current_if_assigned', 'pg_current_xact_id',
    'pg_current_xact_id_if_assigned', 'pg_export_snapshot', 'pg_reload_conf', 'pg_rotate_logfile', 'pg_switch_wal',
    'pg_promote', 'pg_start_backup', 'pg_stop_backup', 'pg_log_backend_memory_contexts', 'ts_stat', 'nextval',
    'setval', 'currval', 'lastval', 'pg_import_system_collations', 'pg_nextoid', 'loread', 'lowrite',
    'pg_describe_object',
))
PG_DENIED_PREFIXES = ('pg_ls_', 'lo_', 'dblink', 'pg_advisory', 'pg_try_advisory', 'pg_sleep', 'pg_logical_',
                      'pg_replication_', 'pg_create_', 'pg_drop_', 'pg_backup_', 'pg_stat_reset', 'pg_wal_replay_',
                      'pg_file_', 'pg_copy_', 'query_to_xml', 'cursor_to_xml', 'table_to_xml', 'schema_to_xml',
                      'database_to_xml', 'pg_read_', 'pg_write_')

# MySQL/MariaDB built-in functions db_verify's queries may not call: locks, waits, files, sequences, state.
MYSQL_DENIED_FUNCTIONS = frozenset((
    'GET_LOCK', 'RELEASE_LOCK', 'RELEASE_ALL_LOCKS', 'IS_FREE_LOCK', 'SLEEP', 'BENCHMARK', 'LOAD_FILE',
    'MASTER_POS_WAIT', 'SOURCE_POS_WAIT', 'MASTER_GTID_WAIT', 'WAIT_FOR_EXECUTED_GTID_SET',
    'WAIT_UNTIL_SQL_THREAD_AFTER_GTIDS', 'NEXTVAL', 'SETVAL', 'LASTVAL', 'LAST_INSERT_ID', 'NAME_CONST',
    'GTID_SUBTRACT', 'SYS_EXEC', 'SYS_EVAL', 'LOAD_DATA', 'COLUMN_CREATE',
))
# MySQL/MariaDB built-ins that sqlglot does not model (it reads them as "anonymous" functions) and that are
# pure: every other anonymous function name is refused, because it may be a UDF (mysql.func) or a stored function.
MYSQL_KNOWN_PURE = frozenset((
    'FIND_IN_SET', 'FIELD', 'ELT', 'INET_ATON', 'INET_NTOA', 'INET6_ATON', 'INET6_NTOA', 'IS_IPV4', 'IS_IPV6',
    'BIN', 'OCT', 'CONV', 'CRC32', 'MD5', 'SHA1', 'SHA2', 'SHA', 'FORMAT', 'LOCATE', 'POSITION', 'INSTR', 'MID',
    'LCASE', 'UCASE', 'SPACE', 'STRCMP', 'SUBSTRING_INDEX', 'CHAR_LENGTH', 'CHARACTER_LENGTH', 'OCTET_LENGTH',
    'BIT_LENGTH', 'BIT_COUNT', 'ORD', 'ASCII', 'QUOTE', 'SOUNDEX', 'EXPORT_SET', 'MAKE_SET', 'INSERT',
    'DATABASE', 'SCHEMA', 'USER', 'CURRENT_USER', 'SESSION_USER', 'SYSTEM_USER', 'VERSION', 'CONNECTION_ID',
    'CHARSET', 'COLLATION', 'COERCIBILITY', 'FOUND_ROWS', 'ROW_COUNT', 'UUID', 'UUID_SHORT', 'IS_USED_LOCK',
    'DAYNAME', 'MONTHNAME', 'DAYOFMONTH', 'DAYOFWEEK', 'DAYOFYEAR', 'WEEKDAY', 'WEEKOFYEAR', 'YEARWEEK',
    'TO_DAYS', 'FROM_DAYS', 'TO_SECONDS', 'SEC_TO_TIME', 'TIME_TO_SEC', 'MAKEDATE', 'MAKETIME', 'PERIOD_ADD',
    'PERIOD_DIFF', 'TIMEDIFF', 'TIMESTAMPADD', 'TIMESTAMPDIFF', 'UTC_DATE', 'UTC_TIME', 'UTC_TIMESTAMP',
    'CURDATE', 'CURTIME', 'SYSDATE', 'NOW', 'LOCALTIME', 'LOCALTIMESTAMP', 'ADDTIME', 'SUBTIME', 'GET_FORMAT',
    'CONVERT_TZ', 'MICROSECOND', 'SECOND', 'MINUTE', 'HOUR', 'QUARTER', 'LAST_DAY', 'STR_TO_DATE',
    'JSON_CONTAINS', 'JSON_CONTAINS_PATH', 'JSON_DEPTH', 'JSON_KEYS', 'JSON_LENGTH', 'JSON_QUOTE', 'JSON_UNQUOTE',
    'JSON_SEARCH', 'JSON_TYPE', 'JSON_VALID', 'JSON_VALUE', 'JSON_OVERLAPS', 'JSON_MERGE', 'JSON_MERGE_PATCH',
    'JSON_MERGE_PRESERVE', 'JSON_INSERT', 'JSON_REPLACE', 'JSON_SET', 'JSON_REMOVE', 'JSON_ARRAY_APPEND',
    'JSON_ARRAY_INSERT', 'JSON_PRETTY', 'JSON_COMPACT', 'JSON_DETAILED', 'JSON_LOOSE', 'JSON_EXISTS',
    'JSON_QUERY', 'JSON_ARRAYAGG', 'JSON_OBJECTAGG', 'REGEXP_INSTR', 'REGEXP_SUBSTR', 'REGEXP_REPLACE',
    'REGEXP_LIKE', 'WEIGHT_STRING', 'COMPRESS', 'UNCOMPRESS', 'UNCOMPRESSED_LENGTH', 'TO_BASE64', 'FROM_BASE64',
    'HEX', 'UNHEX', 'ISNULL', 'INTERVAL', 'GREATEST', 'LEAST', 'IFNULL', 'NVL', 'NVL2', 'DECODE_HISTOGRAM',
    'ANY_VALUE', 'BIT_AND', 'BIT_OR', 'BIT_XOR', 'STD', 'STDDEV', 'STDDEV_POP', 'STDDEV_SAMP', 'VAR_POP',
    'VAR_SAMP', 'VARIANCE', 'GROUP_CONCAT', 'ROW_NUMBER', 'RANK', 'DENSE_RANK', 'PERCENT_RANK', 'CUME_DIST',
    'NTILE', 'LAG', 'LEAD', 'FIRST_VALUE', 'LAST_VALUE', 'NTH_VALUE', 'MEDIAN', 'PERCENTILE_CONT',
    'PERCENTILE_DISC', 'CAST', 'CONVERT', 'BINARY', 'ROUND', 'TRUNCATE', 'CEILING', 'CEIL', 'FLOOR', 'MOD',
    'SIGN', 'PI', 'RADIANS', 'DEGREES', 'COT', 'RAND', 'CHR', 'LPAD', 'RPAD', 'REVERSE', 'REPEAT',
    'DATE_ADD', 'DATE_SUB', 'ADDDATE', 'SUBDATE', 'EXTRACT', 'FROM_UNIXTIME', 'UNIX_TIMESTAMP', 'SUM', 'COUNT',
    'NATURAL_SORT_KEY', 'SFORMAT', 'KDF', 'VALUES',
))

# SQLite functions db_verify's queries may call (the core, date/time, math, JSON and window functions).
SQLITE_ALLOWED_FUNCTIONS = frozenset((
    'abs', 'avg', 'changes', 'char', 'coalesce', 'concat', 'concat_ws', 'count', 'date', 'datetime', 'format',
    'glob', 'group_concat', 'hex', 'ifnull', 'iif', 'instr', 'julianday', 'last_insert_rowid', 'length', 'like',
    'likelihood', 'likely', 'lower', 'ltrim', 'max', 'min', 'nullif', 'octet_length', 'printf', 'quote', 'random',
    'randomblob', 'replace', 'round', 'rtrim', 'sign', 'soundex', 'sqlite_version', 'strftime', 'string_agg',
    'substr', 'substring', 'sum', 'time', 'timediff', 'total', 'total_changes', 'trim', 'typeof', 'unhex',
    'unicode', 'unixepoch', 'unlikely', 'upper', 'zeroblob', 'acos', 'acosh', 'asin', 'asinh', 'atan', 'atan2',
    'atanh', 'ceil', 'ceiling', 'cos', 'cosh', 'degrees', 'exp', 'floor', 'ln', 'log', 'log10', 'log2', 'mod',
    'pi', 'pow', 'power', 'radians', 'sin', 'sinh', 'sqrt', 'tan', 'tanh', 'trunc', 'json', 'jsonb', 'json_array',
    'jsonb_array', 'json_array_length', 'json_error_position', 'json_extract', 'jsonb_extract', 'json_insert',
    'jsonb_insert', 'json_object', 'jsonb_object', 'json_patch', 'jsonb_patch', 'json_remove', 'jsonb_remove',
    'json_replace', 'jsonb_replace', 'json_set', 'jsonb_set', 'json_type', 'json_valid', 'json_quote',
    'json_group_array', 'jsonb_group_array', 'json_group_object', 'jsonb_group_object', 'json_each', 'json_tree',
    'row_number', 'rank', 'dense_rank', 'percent_rank', 'cume_dist', 'ntile', 'lag', 'lead', 'first_value',
    'last_value', 'nth_value', 'regexp',
))


class SqlRefused(DbopsError):
    """An SQL-valued option is not what it must be; nothing was run."""


def _first_line(e):
    text = str(e.args[0]) if getattr(e, 'args', None) else str(e)
    return (text.strip().splitlines() or [type(e).__name__])[0]


def _too_deep(what):
    return SqlRefused('%s is nested too deeply for the SQL parser to read (thousands of parentheses?). Write it '
                      'with less nesting. %s' % (what, NOTHING))


def _check_size(text, what):
    if not isinstance(text, str) or not text.strip():
        raise SqlRefused('%s is empty: give an SQL text. %s' % (what, NOTHING))
    if len(text) > MAX_SQL_OPTION_CHARS:
        raise SqlRefused('%s is %d characters long; SQL-valued options are limited to %d. %s'
                         % (what, len(text), MAX_SQL_OPTION_CHARS, NOTHING))


# --- PostgreSQL --------------------------------------------------------------------------------
# libpg_query refuses nesting deeper than its parser stack (about 10,000 levels: "memory exhausted"), but a chain
# of binary operators (1+1+...+1, a::t::t...) is a tree as deep as it is long, and pglast's conversion of a tree
# deeper than about 20,000 levels overflows the C stack (a segmentation fault, not an error). So a statement with
# more binary operators than this is refused before it reaches pglast.
MAX_PG_BINARY_OPERATORS = 10000
_PG_OPERATORS = frozenset(('ASCII_37', 'ASCII_42', 'ASCII_43', 'ASCII_45', 'ASCII_47', 'ASCII_60', 'ASCII_61',
                           'ASCII_62', 'ASCII_94', 'Op', 'TYPECAST', 'LESS_EQUALS', 'GREATER_EQUALS', 'NOT_EQUALS'))
_PG_NOT_OPERAND = _PG_OPERATORS | {'ASCII_40', 'ASCII_44', 'ASCII_59', 'ASCII_91'}


def pg_too_complex(tokens):
    """(start, end) of the statements (runs of tokens between ';') with more binary operators than the bound."""
    out, count, prev, first = [], 0, 'ASCII_59', None
    for tok in tokens:
        name = tok.name
        if name in ('SQL_COMMENT', 'C_COMMENT'):
            continue
        if first is None:
            first = tok.start
        if name == 'ASCII_59':
            if count > MAX_PG_BINARY_OPERATORS:
                out.append((first, tok.start))
            count, first = 0, None
        elif name in _PG_OPERATORS and prev not in _PG_NOT_OPERAND:
            count += 1
        prev = name
    if count > MAX_PG_BINARY_OPERATORS and first is not None:
        out.append((first, tokens[-1].end + 1))
    return out


def _pg_parse(text, what):
    load_pglast()
    if pg_too_complex(_pg_tokens(text, what)):
        raise _too_deep(what)
    try:
        return pg_parser.parse_sql(text)
    except pg_parser.ParseError as e:
        msg = _first_line(e)
        if 'memory exhausted' in msg or 'stack depth' in msg:
            raise _too_deep(what)
        raise SqlRefused('%s is not valid PostgreSQL: %s. %s' % (what, msg, NOTHING))
    except RecursionError:
        raise _too_deep(what)


def _pg_tokens(text, what):
    load_pglast()
    try:
        return list(pg_parser.scan(text))
    except Exception as e:  # unterminated string, quote or comment
        raise SqlRefused('%s cannot be read as PostgreSQL: %s. %s' % (what, _first_line(e), NOTHING))


SELECT_CLAUSES = ('distinctClause', 'intoClause', 'fromClause', 'whereClause', 'groupClause', 'havingClause',
                  'windowClause', 'valuesLists', 'sortClause', 'limitOffset', 'limitCount', 'lockingClause',
                  'withClause', 'larg', 'rarg')


def _pg_expression(text, what):
    for tok in _pg_tokens(text, what):
        if tok.name in ('SQL_COMMENT', 'C_COMMENT'):
            raise SqlRefused('%s contains a comment (%r); an expression option may not, since a comment could hide '
                             'the rest of the statement it is written into. Remove it. %s'
                             % (what, text[tok.start:tok.end + 1][:60], NOTHING))
        if tok.name == 'ASCII_59':
            raise SqlRefused('%s contains a ";" outside any string: it must be one expression, not statements. %s'
                             % (what, NOTHING))
    stmts = _pg_parse('SELECT ' + text, what)
    node = stmts[0].stmt if len(stmts) == 1 else None
    ok = isinstance(node, pg_ast.SelectStmt) and len(node.targetList or ()) == 1 and \
        all(getattr(node, c, None) in (None, ()) for c in SELECT_CLAUSES) and \
        int(node.op) == int(pg_enums.SetOperation.SETOP_NONE) and node.targetList[0].name is None
    if not ok:
        raise SqlRefused('%s must be exactly one SQL expression (for example 0, \'pending\', now(), amount::numeric); '
                         'PostgreSQL reads %r as something else (several expressions, an alias, a clause or a '
                         'statement). %s' % (what, text[:200], NOTHING))
    return text.strip()


def _pg_walk(node):
    """Every node of a pglast tree, iteratively (pglast's breadth-first Visitor: no recursion, whatever the depth)."""
    found = []

    class Collect(pg_visitors.Visitor):
        def visit(self, ancestors, node):  # pylint: disable=unused-argument
            found.append(node)

    Collect()(node)
    return found


def _pg_readonly(text):
    what = 'The query'
    stmts = _pg_parse(text, what)
    if len(stmts) != 1:
        raise SqlRefused('%s must be exactly one statement; it has %d. %s' % (what, len(stmts), NOTHING))
    top = stmts[0].stmt
    if not isinstance(top, pg_ast.SelectStmt):
        raise SqlRefused('%s is a %s statement; db_verify runs only SELECT (WITH ... SELECT, UNION, VALUES, TABLE). '
                         '%s' % (what, _pg_kind(top), NOTHING))
    functions, operators, types = set(), set(), set()
    for node in _pg_walk(top):
        if isinstance(node, (pg_ast.InsertStmt, pg_ast.UpdateStmt, pg_ast.DeleteStmt,
                             getattr(pg_ast, 'MergeStmt', pg_ast.DeleteStmt))):
            raise SqlRefused('%s contains a data-modifying %s (in a WITH clause); db_verify runs only reading '
                             'queries. %s' % (what, _pg_kind(node), NOTHING))
        if isinstance(node, pg_ast.SelectStmt):
            if node.intoClause is not None:
                raise SqlRefused('%s uses SELECT ... INTO, which creates a table. %s' % (what, NOTHING))
            if node.lockingClause:
                raise SqlRefused('%s takes row locks (FOR UPDATE / FOR SHARE). %s' % (what, NOTHING))
        elif isinstance(node, pg_ast.FuncCall):
            names = tuple(getattr(p, 'sval', str(p)) for p in node.funcname)
            functions.add(names if len(names) > 1 else (None, names[0]))
        elif isinstance(node, pg_ast.A_Expr) and node.name:
            names = tuple(getattr(p, 'sval', str(p)) for p in node.name)
            if names[-1][:1].isalpha():  # BETWEEN [SYMMETRIC]: compares with >= and <=
                operators.update(((None, '>='), (None, '<=')))
            else:
                operators.add(names if len(names) > 1 else (None, names[0]))
        elif isinstance(node, pg_ast.TypeName) and node.names:
            names = tuple(getattr(p, 'sval', str(p)) for p in node.names)
            types.add(names[-2:] if len(names) > 1 else (None, names[0]))
    for _schema, name in functions:
        if pg_function_denied(name):
            raise SqlRefused('%s calls %s(), which db_verify never runs: it reads server files, acts on sessions, '
                             'settings or locks, or waits. %s' % (what, name, NOTHING))
    return dict(functions=sorted(functions, key=str), operators=sorted(operators, key=str),
                types=sorted(types, key=str))


def _pg_kind(node):
    return type(node).__name__.replace('Stmt', '').upper()


def pg_function_denied(name):
    name = (name or '').lower()
    return name in PG_DENIED_FUNCTIONS or name.startswith(PG_DENIED_PREFIXES)


# --- MySQL / SQLite (sqlglot) ------------------------------------------------------------------
def _dialect(engine):
    _load_sqlglot()
    return Dialect.get_or_raise('mysql' if engine == 'mysql' else 'sqlite')


def _glot_tokens(text, engine, what):
    try:
        return _dialect(engine).tokenize(text)
    except SqlglotError as e:
        raise SqlRefused('%s cannot be read as %s SQL: %s. %s'
                         % (what, _engine_name(engine), _first_line(e), NOTHING))
    except RecursionError:
        raise _too_deep(what)


def _glot_parse(text, engine, what):
    try:
        return [s for s in _dialect(engine).parse(text) if s is not None]
    except SqlglotError as e:
        raise SqlRefused('%s is not valid %s SQL (as sqlglot reads it): %s. %s'
                         % (what, _engine_name(engine), _first_line(e), NOTHING))
    except RecursionError:
        raise _too_deep(what)


def _engine_name(engine):
    return {'mysql': 'MySQL/MariaDB', 'sqlite': 'SQLite', 'postgresql': 'PostgreSQL'}.get(engine, engine)


def _glot_no_comment_no_semicolon(text, engine, what):
    for tok in _glot_tokens(text, engine, what):
        if tok.comments:
            raise SqlRefused('%s contains a comment (%r); an expression option may not, since a comment could hide '
                             'the rest of the statement it is written into (and MySQL runs /*! ... */ comments). '
                             'Remove it. %s' % (what, tok.comments[0][:60], NOTHING))
        if tok.token_type == TokenType.SEMICOLON:
            raise SqlRefused('%s contains a ";" outside any string: it must be one expression, not statements. %s'
                             % (what, NOTHING))


def _glot_expression(text, engine, what):
    _glot_no_comment_no_semicolon(text, engine, what)
    stmts = _glot_parse('SELECT ' + text, engine, what)
    node = stmts[0] if len(stmts) == 1 else None
    ok = isinstance(node, exp.Select) and len(node.expressions) == 1 and \
        not isinstance(node.expressions[0], (exp.Alias, exp.Star)) and \
        all(v in (None, [], False) for k, v in node.args.items() if k != 'expressions')
    if not ok:
        raise SqlRefused('%s must be exactly one SQL expression (for example 0, \'pending\', CURRENT_TIMESTAMP); %s '
                         'reads %r as something else (several expressions, an alias, a clause or a statement). %s'
                         % (what, _engine_name(engine), text[:200], NOTHING))
    return text.strip()


def _glot_readonly(text, engine):
    what = 'The query'
    for tok in _glot_tokens(text, engine, what):
        if engine == 'mysql' and any(c.lstrip().startswith('!') for c in tok.comments or ()):
            raise SqlRefused('%s contains a MySQL executable comment (/*! ... */), which the server runs as SQL. %s'
                             % (what, NOTHING))
    stmts = _glot_parse(text, engine, what)
    if len(stmts) != 1:
        raise SqlRefused('%s must be exactly one statement; it has %d. %s' % (what, len(stmts), NOTHING))
    top = stmts[0]
    allowed = (exp.Query,) + ((exp.Show,) if engine == 'mysql' and hasattr(exp, 'Show') else ())
    if not isinstance(top, allowed) or isinstance(top, exp.Command):
        raise SqlRefused('%s is a %s statement; db_verify runs only SELECT (WITH ... SELECT, UNION)%s. %s' % (
            what, type(top).__name__.upper(), ', SHOW' if engine == 'mysql' else '', NOTHING))
    functions = set()
    for node in top.walk(bfs=True):
        if isinstance(node, (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter,
                             exp.Command, exp.Set, exp.Pragma)):
            raise SqlRefused('%s contains a %s statement; db_verify runs only reading queries. %s'
                             % (what, type(node).__name__.upper(), NOTHING))
        if isinstance(node, exp.Select):
            if node.args.get('into') is not None:
                raise SqlRefused('%s uses SELECT ... INTO, which writes (a file, a table or variables). %s'
                                 % (what, NOTHING))
            if node.args.get('locks'):
                raise SqlRefused('%s takes row locks (FOR UPDATE / LOCK IN SHARE MODE). %s' % (what, NOTHING))
        if isinstance(node, exp.Into):
            raise SqlRefused('%s uses INTO, which writes. %s' % (what, NOTHING))
        if isinstance(node, (exp.PropertyEQ, exp.EQ)) and isinstance(node.this, exp.Parameter):
            raise SqlRefused('%s assigns a variable. %s' % (what, NOTHING))
        if isinstance(node, exp.Func):
            anonymous = isinstance(node, exp.Anonymous)
            name = (node.name if anonymous else node.sql_name()).upper()
            if isinstance(node.parent, exp.Dot) or (anonymous and '.' in name):
                raise SqlRefused('%s calls a function of a schema (%s): stored functions are never run by db_verify. '
                                 '%s' % (what, node.parent.sql(dialect=engine)[:80], NOTHING))
            functions.add((name, anonymous))
    if engine == 'mysql':
        for name, anonymous in functions:
            if name in MYSQL_DENIED_FUNCTIONS:
                raise SqlRefused('%s calls %s(), which db_verify never runs: it takes locks, waits, reads files or '
                                 'changes state. %s' % (what, name, NOTHING))
            if anonymous and name not in MYSQL_KNOWN_PURE:
                raise SqlRefused('%s calls %s(), which is not on db_verify\'s list of read-only built-in functions '
                                 '(it may be a stored function or a loadable UDF, which db_verify never runs). Rewrite '
                                 'the check without it. %s' % (what, name, NOTHING))
    if engine == 'sqlite':
        for name, anonymous in functions:
            if anonymous and name.lower() not in SQLITE_ALLOWED_FUNCTIONS:
                raise SqlRefused('%s calls %s(), which is not on db_verify\'s list of SQLite functions that only '
                                 'read. %s' % (what, name.lower(), NOTHING))
    return dict(functions=sorted(n for n, _a in functions))


# --- public API --------------------------------------------------------------------------------
def expression(text, engine, what):
    """The text if it is exactly one SQL expression in engine's dialect; SqlRefused otherwise."""
    _check_size(text, what)
    if engine == 'postgresql':
        return _pg_expression(text, what)
    return _glot_expression(text, engine, what)


def column_type(text, engine, what='type'):
    """The text if it reads as one column type (no comment, no ';', no comma or closing parenthesis outside its own
    parentheses, so it cannot end the column definition and start another action); on PostgreSQL, exactly a type
    (the server's parser reads it as a column definition with no constraint)."""
    _check_size(text, what)
    bad = '%s %r is not valid column type syntax: %%s. Give only the type, e.g. varchar(191). %s' % (
        what, text[:200], NOTHING)
    if engine == 'postgresql':
        tokens = [(t.name, text[t.start:t.end + 1]) for t in _pg_tokens(text, what)]
        comment = any(n in ('SQL_COMMENT', 'C_COMMENT') for n, _v in tokens)
        marks = [v if n.startswith('ASCII_') else n for n, v in tokens]
    else:
        toks = _glot_tokens(text, engine, what)
        comment = any(t.comments for t in toks)
        marks = [{TokenType.L_PAREN: '(', TokenType.R_PAREN: ')', TokenType.COMMA: ',',
                  TokenType.SEMICOLON: ';'}.get(t.token_type, t.token_type.name) for t in toks]
    if comment:
        raise SqlRefused(bad % 'it contains a comment')
    depth = 0
    for m in marks:
        if m == ';':
            raise SqlRefused(bad % 'it contains a ";" outside any string')
        depth += {'(': 1, ')': -1}.get(m, 0)
        if depth < 0:
            raise SqlRefused(bad % 'a ")" closes more than it opened')
        if m == ',' and depth == 0:
            raise SqlRefused(bad % 'a "," outside parentheses would start another action')
    if depth:
        raise SqlRefused(bad % 'unbalanced parentheses')
    if engine == 'postgresql':
        stmts = _pg_parse('CREATE TABLE dbops_type_check (c %s)' % text, what)
        node = stmts[0].stmt if len(stmts) == 1 else None
        cols = getattr(node, 'tableElts', None) or ()
        if not isinstance(node, pg_ast.CreateStmt) or len(cols) != 1 or not isinstance(cols[0], pg_ast.ColumnDef) \
                or cols[0].constraints or cols[0].raw_default is not None:
            raise SqlRefused(bad % 'PostgreSQL reads more than a type in it (a constraint, a default, another column)')
    return text.strip()


def single_statement(text, engine, what='The statement'):
    """Refuse a built statement that the parser reads as more (or less) than one statement."""
    if engine == 'postgresql':
        n = len(_pg_parse(text, what))
    else:
        n = sum(1 for t in _glot_tokens(text, engine, what) if t.token_type == TokenType.SEMICOLON) + 1
    if n != 1:
        raise SqlRefused('%s would be %d statements, not one: %s. %s' % (what, n, text[:300], NOTHING))
    return text


def readonly_query(text, engine):
    """Prove the query is one reading statement; returns dict(functions=[...], operators=[...] (PostgreSQL))."""
    _check_size(text, 'The query')
    if engine == 'postgresql':
        return _pg_readonly(text)
    return _glot_readonly(text, engine)

# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MySQL/MariaDB and SQLite front-end: sqlglot's tokenizer and parser for the dialect.

The source is tokenized once; statements are the token runs between
semicolon tokens, and each is parsed alone, so one bad statement becomes a
parse-error finding and the others are still checked. Comments are read from
the gaps between tokens (the tokenizer guarantees a gap holds only
whitespace and comments). A statement sqlglot only accepts as an opaque
"command" (syntax it does not model) is reported as unparsed-statement,
unless it is one of the few harmless commands the rules have no interest in.
"""

from __future__ import annotations

import logging
import re

from ansible_collections.dbops.maintenance.plugins.module_utils.lint.model import (
    Event, Statement, attach_ignores, line_of, line_starts,
)

try:
    from sqlglot import exp
    from sqlglot.dialects.dialect import Dialect
    from sqlglot.errors import SqlglotError
    from sqlglot.tokens import TokenType
    HAS_SQLGLOT = True
    SQLGLOT_IMPORT_ERROR = None
    # sqlglot logs a warning for every statement it parses as an opaque command.
    logging.getLogger('sqlglot').setLevel(logging.ERROR)
except ImportError as e:  # pragma: no cover - depends on the managed host
    HAS_SQLGLOT = False
    SQLGLOT_IMPORT_ERROR = e

# Opaque commands that change no schema and no data the rules look at.
HARMLESS_COMMANDS = {'LOCK', 'UNLOCK', 'LOCK TABLES', 'UNLOCK TABLES', 'SHOW', 'FLUSH', 'ANALYZE', 'OPTIMIZE',
                     'CHECK', 'EXPLAIN', 'DESCRIBE', 'DESC', 'GRANT', 'REVOKE', 'CALL', 'SAVEPOINT', 'RELEASE',
                     'VACUUM', 'REINDEX', 'PRAGMA', 'SET', 'USE', 'DELIMITER', 'HANDLER', 'DO', 'XA', 'BEGIN',
                     'END', 'START', 'COMMIT', 'ROLLBACK'}
STATEMENT_TYPES = None

_DIALECTS = {}


def _dialect(name):
    if name not in _DIALECTS:
        _DIALECTS[name] = Dialect.get_or_raise(name)
    return _DIALECTS[name]


def _statement_types():
    global STATEMENT_TYPES  # pylint: disable=global-statement
    if STATEMENT_TYPES is None:
        names = ('Create', 'Drop', 'Alter', 'Insert', 'Update', 'Delete', 'Query', 'TruncateTable', 'Set',
                 'Command', 'Use', 'Transaction', 'Commit', 'Rollback', 'Pragma', 'Merge', 'Analyze', 'Grant',
                 'Revoke', 'Comment', 'Describe', 'Show', 'Cache', 'Uncache', 'Refresh', 'LoadData', 'Copy',
                 'Execute', 'Kill', 'Block', 'Values', 'Subquery')
        STATEMENT_TYPES = tuple(getattr(exp, n) for n in names if hasattr(exp, n))
    return STATEMENT_TYPES


def _ident(node):
    if node is None:
        return None
    if isinstance(node, exp.Identifier):
        return node.this
    if isinstance(node, exp.Table):
        return '.'.join(p for p in (node.args.get('db') and node.args['db'].this, node.name) if p)
    if isinstance(node, exp.Column):
        return node.name
    return node.name if hasattr(node, 'name') else str(node)


def _table_of_create(node):
    target = node.this
    if isinstance(target, exp.Schema):
        target = target.this
    return _ident(target)


def _enum_kind(datatype):
    """'ENUM' or 'SET' for a MySQL ENUM/SET type (the two are modelled alike), else None."""
    if datatype is None:
        return None
    if datatype.this == exp.DataType.Type.SET:
        return 'SET'
    if datatype.this in (exp.DataType.Type.ENUM, getattr(exp.DataType.Type, 'ENUM8', None),
                         getattr(exp.DataType.Type, 'ENUM16', None)):
        return 'ENUM'
    return None


def _enum_values(datatype):
    if _enum_kind(datatype) is None:
        return None
    values = []
    for e in datatype.expressions or ():
        if isinstance(e, exp.Literal):
            values.append(e.this)
        elif isinstance(e, exp.DataTypeParam) and isinstance(e.this, exp.Literal):
            values.append(e.this.this)
    return values


def _column_def_facts(coldef, with_type=True):
    kinds = [type(c.args.get('kind')).__name__ for c in coldef.constraints or ()]
    kind = coldef.args.get('kind')
    # an explicit NULL is sqlglot's NotNullColumnConstraint(allow_null=True): not a NOT NULL
    not_null = 'PrimaryKeyColumnConstraint' in kinds or any(
        isinstance(c.args.get('kind'), exp.NotNullColumnConstraint) and not c.args['kind'].args.get('allow_null')
        for c in coldef.constraints or ())
    has_default = any(k in kinds for k in ('DefaultColumnConstraint', 'AutoIncrementColumnConstraint',
                                           'GeneratedAsIdentityColumnConstraint', 'ComputedColumnConstraint'))
    # Printing the type costs as much as parsing it: only for the statements that report it.
    type_text = kind.sql(dialect='mysql') if with_type and kind is not None else ''
    return dict(column=coldef.name, not_null=not_null, has_default=has_default, type=type_text,
                enum=_enum_values(kind), enum_kind=_enum_kind(kind))


def _safe_algorithm(alter):
    """MySQL ALGORITHM=INSTANT, or INPLACE with LOCK=NONE: the server refuses instead of copying."""
    algorithm = lock = None
    for opt in alter.args.get('options') or ():
        name = type(opt).__name__
        value = opt.this.name.upper() if getattr(opt, 'this', None) is not None else ''
        if name == 'AlgorithmProperty':
            algorithm = value
        elif name == 'LockProperty':
            lock = value
    return algorithm == 'INSTANT' or (algorithm == 'INPLACE' and lock == 'NONE')


def statement_events(node, tokens, engine):
    """The Events of one statement parsed by sqlglot. tokens: the statement's tokens."""
    ev = []
    if isinstance(node, exp.Transaction):
        ev.append(Event('begin'))
    elif isinstance(node, (exp.Commit, exp.Rollback)):
        ev.append(Event('commit'))
    elif isinstance(node, exp.Create):
        kind = (node.args.get('kind') or '').upper()
        if kind == 'TABLE':
            table = _table_of_create(node)
            ev.append(Event('create_table', table=table))
            schema = node.this
            if isinstance(schema, exp.Schema):
                for col in schema.expressions or ():
                    if isinstance(col, exp.ColumnDef):
                        facts = _column_def_facts(col, with_type=False)
                        if facts['enum'] is not None:
                            ev.append(Event('enum_column', table=table, column=facts['column'],
                                            values=facts['enum'], how='create', type_kind=facts['enum_kind']))
        elif kind == 'INDEX':
            index = node.this
            ev.append(Event('create_index', table=_ident(index.args.get('table')) if index is not None else None,
                            concurrently=False, index=_ident(index.this) if index is not None else None))
    elif isinstance(node, exp.Drop):
        kind = (node.args.get('kind') or '').upper()
        tables = node.args.get('tables') or ([node.this] if node.this is not None else [])
        if kind == 'TABLE':
            for t in tables:
                ev.append(Event('drop_table', table=_ident(t)))
        elif kind in ('SCHEMA', 'DATABASE'):
            for t in tables:
                name = t.args.get('db').this if isinstance(t, exp.Table) and t.args.get('db') else _ident(t)
                ev.append(Event('drop_schema', schema=name, database=kind == 'DATABASE'))
        elif kind == 'INDEX':
            ev.append(Event('drop_index', concurrently=False))
    elif isinstance(node, exp.TruncateTable):
        ev.append(Event('truncate', tables=[_ident(t) for t in node.expressions or ()]))
    elif isinstance(node, exp.Delete):
        if node.args.get('where') is None:
            ev.append(Event('delete_all', table=_ident(node.this)))
    elif isinstance(node, exp.Update):
        if node.args.get('where') is None:
            ev.append(Event('update_all', table=_ident(node.this)))
    elif isinstance(node, exp.Insert):
        target = node.this
        if isinstance(target, exp.Schema):
            target = target.this
        sources = [_ident(t) for t in node.expression.find_all(exp.Table)] if node.expression is not None else []
        ev.append(Event('insert', table=_ident(target), sources=sources))
    elif isinstance(node, exp.Alter) and (node.args.get('kind') or '').upper() == 'TABLE':
        _alter_events(node, ev, engine)
    elif isinstance(node, exp.Pragma):
        inner = node.this
        if isinstance(inner, exp.EQ) and _ident(inner.this).lower() == 'foreign_keys':
            value = _ident(inner.expression)
            value = str(value).strip("'\"").lower() if value is not None else ''
            ev.append(Event('foreign_keys', on=value in ('on', '1', 'true', 'yes')))
    elif isinstance(node, exp.Command):
        _command_events(node, tokens, ev, engine)
    return ev


def _alter_options(node):
    algorithm = lock = None
    for opt in node.args.get('options') or ():
        name = type(opt).__name__
        value = opt.this.name.upper() if getattr(opt, 'this', None) is not None else ''
        if name == 'AlgorithmProperty':
            algorithm = value
        elif name == 'LockProperty':
            lock = value
    return algorithm, lock


def _alter_events(node, ev, engine='mysql'):
    table = _ident(node.this)
    safe_algorithm = _safe_algorithm(node)
    actions = node.args.get('actions') or []
    if actions:
        ev.append(Event('exclusive_lock', table=table))
    algorithm, lock = _alter_options(node)
    if algorithm or lock:
        ev.append(Event('alter_options', table=table, algorithm=algorithm, lock=lock))
    for action in actions:
        if engine == 'sqlite' and isinstance(action, (exp.AlterColumn, exp.AddConstraint)) or \
                engine == 'sqlite' and isinstance(action, exp.Drop) and \
                (action.args.get('kind') or '').upper() == 'CONSTRAINT':
            what = {'AlterColumn': 'ALTER COLUMN', 'AddConstraint': 'ADD CONSTRAINT'}
            ev.append(Event('sqlite_unsupported', table=table, what=what.get(type(action).__name__, 'DROP CONSTRAINT')))
            continue
        if isinstance(action, exp.ColumnDef):
            facts = _column_def_facts(action)
            position = action.args.get('position')
            ev.append(Event('add_column', table=table, column=facts['column'], not_null=facts['not_null'],
                            has_default=facts['has_default'], type=facts['type'],
                            positioned=position is not None, algorithm=algorithm))
            if facts['enum'] is not None:
                ev.append(Event('enum_column', table=table, column=facts['column'], values=facts['enum'], how='add',
                                type_kind=facts['enum_kind']))
        elif isinstance(action, exp.Drop) and (action.args.get('kind') or '').upper() == 'COLUMN':
            for col in action.args.get('tables') or [action.this]:
                ev.append(Event('drop_column', table=table, column=_ident(col)))
        elif isinstance(action, exp.ModifyColumn):
            coldef = action.this
            facts = _column_def_facts(coldef)
            old = _ident(action.args.get('rename_from'))
            if old and old.lower() != facts['column'].lower():
                ev.append(Event('rename_column', table=table, column=old, new=facts['column']))
            if facts['enum'] is not None:
                ev.append(Event('enum_column', table=table, column=old or facts['column'], values=facts['enum'],
                                how='modify', new=facts['column'], safe_algorithm=safe_algorithm,
                                type_kind=facts['enum_kind']))
            else:
                ev.append(Event('alter_column_type', table=table, column=old or facts['column'], type=facts['type'],
                                using=False, safe_algorithm=safe_algorithm))
        elif isinstance(action, exp.AlterColumn) and action.args.get('dtype') is not None:
            ev.append(Event('alter_column_type', table=table, column=_ident(action.this),
                            type=action.args['dtype'].sql(dialect='mysql'), using=action.args.get('using') is not None,
                            safe_algorithm=safe_algorithm))
        elif isinstance(action, exp.AlterRename):
            ev.append(Event('rename_table', table=table, new=_ident(action.this)))
        elif isinstance(action, exp.RenameColumn):
            ev.append(Event('rename_column', table=table, column=_ident(action.this), new=_ident(action.args.get('to'))))
        elif isinstance(action, exp.AddConstraint):
            for con in action.expressions or ():
                inner = con.expressions if isinstance(con, exp.Constraint) else [con]
                for part in inner:
                    if isinstance(part, exp.ForeignKey):
                        ev.append(Event('add_constraint', table=table, what='FOREIGN KEY', not_valid=False,
                                        constraint=_ident(con.this) if isinstance(con, exp.Constraint) else None))
                    elif isinstance(part, exp.CheckColumnConstraint):
                        ev.append(Event('add_constraint', table=table, what='CHECK', not_valid=False,
                                        constraint=_ident(con.this) if isinstance(con, exp.Constraint) else None))


def _command_events(node, tokens, ev, engine):
    """Opaque commands: RENAME TABLE a TO b [, c TO d] from its tokens; other DDL is unparsed."""
    head = str(node.this or '').upper()
    if len(tokens) == 2 and tokens[1].token_type == TokenType.STRING:
        # The tokenizer keeps the rest of an opaque command as one string: tokenize that too.
        try:
            tokens = tokens[:1] + _dialect('mysql' if engine == 'mysql' else 'sqlite').tokenize(tokens[1].text)
        except SqlglotError:
            pass
    words = [t.text for t in tokens]
    upper = [w.upper() for w in words]
    if upper[:1] == ['OPTIMIZE']:
        names = [w for w, u in zip(words[1:], upper[1:]) if u not in ('TABLE', 'NO_WRITE_TO_BINLOG', 'LOCAL', ',')]
        ev.append(Event('optimize', tables=names))
        return
    if upper[:2] == ['ALTER', 'TABLE'] and 'CONVERT' in upper:
        at = upper.index('CONVERT')
        if upper[at + 1:at + 2] == ['TO']:
            ev.append(Event('charset_convert', table='.'.join(w for w in words[2:at] if w != '.'),
                            charset=words[at + 4] if len(words) > at + 4 else None))
            ev.append(Event('exclusive_lock', table='.'.join(w for w in words[2:at] if w != '.')))
            return
    if upper[:2] == ['RENAME', 'TABLE']:
        i = 2
        while i + 2 < len(words) + 1:
            try:
                to = upper.index('TO', i)
            except ValueError:
                break
            old = '.'.join(w for w in words[i:to] if w != '.')
            end = upper.index(',', to) if ',' in upper[to:] else len(words)
            new = '.'.join(w for w in words[to + 1:end] if w != '.')
            ev.append(Event('rename_table', table=old, new=new))
            i = end + 1
        return
    if head.split(' ', 1)[0] in HARMLESS_COMMANDS or head in HARMLESS_COMMANDS:
        return
    ev.append(Event('unparsed', command=head))


# A CREATE of one of these holds a body whose statements end in ';' inside the one statement.
ROUTINES = {'TRIGGER', 'PROCEDURE', 'FUNCTION', 'EVENT'}
# The words that may sit between CREATE and the routine's keyword (OR REPLACE, TEMP, DEFINER = u@h, AGGREGATE, ...)
_ROUTINE_HEAD_STOP = {TokenType.L_PAREN, TokenType.TABLE, TokenType.INDEX, TokenType.VIEW, TokenType.SELECT} \
    if HAS_SQLGLOT else set()
# MySQL compound statements: these open a block (closed by END [IF|LOOP|...]) when they start a statement.
_MYSQL_BLOCKS = {'IF', 'LOOP', 'WHILE', 'REPEAT', 'FOR'}
_STATEMENT_START = {'BEGIN', 'THEN', 'ELSE', 'DO', 'LOOP', 'REPEAT', 'ROW', ':', ';'}


def routine_kind(chunk):
    """TRIGGER, PROCEDURE, FUNCTION or EVENT when the tokens are a CREATE of one, else None."""
    if not chunk or chunk[0].token_type != TokenType.CREATE:
        return None
    for tok in chunk[1:10]:
        if tok.token_type in _ROUTINE_HEAD_STOP:
            return None
        word = tok.text.upper()
        if word in ROUTINES and tok.token_type not in (TokenType.STRING, TokenType.IDENTIFIER):
            return word
    return None


def _body_depth(tok, prev, nxt, depth, engine):
    """The BEGIN ... END nesting after tok, in the body of a routine (CASE ... END counts too; the IF of
    END IF, the CASE of END CASE open nothing)."""
    tt = tok.token_type
    after_end = prev is not None and prev.token_type == TokenType.END
    if tt == TokenType.BEGIN or tt == TokenType.CASE and not after_end:
        return depth + 1
    if tt == TokenType.END:
        return depth - 1
    if engine == 'mysql' and tt != TokenType.STRING and tok.text.upper() in _MYSQL_BLOCKS and \
            (prev is None or prev.text.upper() in _STATEMENT_START) and \
            not (nxt is not None and nxt.token_type == TokenType.L_PAREN):
        return depth + 1
    return depth


def _split(tokens, engine='mysql', boundaries=(), custom=()):
    """Token runs between statement ends.

    A statement ends at a semicolon token, except inside the BEGIN ... END body of a CREATE TRIGGER (SQLite,
    MySQL) or PROCEDURE/FUNCTION/EVENT (MySQL), where the body's own statements end in ';'; and except in the
    ranges (start, end) of ``custom``, where the mysql client's DELIMITER set another delimiter: there only
    the ``boundaries`` (offsets where that delimiter stood) end statements, as in the client.
    """
    chunks, cur = [], []
    state = {'depth': 0, 'routine': None, 'custom': False}
    bi = ci = 0
    n = len(tokens)

    def flush():
        if cur:
            chunks.append((cur[:], state['routine'], state['custom']))
        del cur[:]
        state.update(depth=0, routine=None, custom=False)

    for i, tok in enumerate(tokens):
        while bi < len(boundaries) and boundaries[bi] <= tok.start:
            flush()
            bi += 1
        while ci < len(custom) and custom[ci][1] <= tok.start:
            ci += 1
        in_custom = ci < len(custom) and custom[ci][0] <= tok.start
        if tok.token_type == TokenType.SEMICOLON and not in_custom and state['depth'] <= 0:
            flush()
            continue
        cur.append(tok)
        state['custom'] = state['custom'] or in_custom
        if state['routine'] is None:
            if len(cur) <= 10 and tok.text.upper() in ROUTINES:
                state['routine'] = routine_kind(cur)
        else:
            state['depth'] = _body_depth(tok, tokens[i - 1] if i else None, tokens[i + 1] if i + 1 < n else None,
                                         state['depth'], engine)
    flush()
    out = []
    for chunk, routine, in_custom in chunks:
        # Only a routine holds ';' inside one statement; one whose body never closes (outside a DELIMITER
        # region) or a run of plain statements between two custom delimiters: each ';' ends a statement.
        closed = routine is not None and (in_custom or _closed(chunk, engine))
        if closed or not any(t.token_type == TokenType.SEMICOLON for t in chunk):
            out.append(chunk)
            continue
        part = []
        for tok in chunk:
            if tok.token_type == TokenType.SEMICOLON:
                if part:
                    out.append(part)
                part = []
            else:
                part.append(tok)
        if part:
            out.append(part)
    return out


def _closed(chunk, engine):
    """Whether the BEGIN ... END blocks of a routine's tokens all close."""
    depth = 0
    for i, tok in enumerate(chunk):
        depth = _body_depth(tok, chunk[i - 1] if i else None, chunk[i + 1] if i + 1 < len(chunk) else None,
                            depth, engine)
    return depth == 0


_DELIMITER_LINE = re.compile(r'^[ \t]*DELIMITER[ \t]+(\S+)[^\n]*', re.I | re.M)
# What a custom delimiter is looked for outside of: strings, quoted names, comments (the mysql client skips them).
_MYSQL_SKIP = re.compile(r"""'[^'\\]*(?:(?:\\.|'')[^'\\]*)*(?:'|\Z)|"[^"\\]*(?:(?:\\.|"")[^"\\]*)*(?:"|\Z)"""
                         r"""|`[^`]*(?:``[^`]*)*(?:`|\Z)|--(?=[ \t\r\n])[^\n]*|\#[^\n]*|/\*.*?(?:\*/|\Z)""", re.S)


def mysql_delimiters(text):
    """(text, boundaries, custom ranges) for the mysql client's DELIMITER command.

    The DELIMITER lines and each custom delimiter are blanked (same length, so offsets and lines stay);
    boundaries: the offsets where a statement ended (a custom delimiter or a DELIMITER line); custom:
    the (start, end) ranges where a delimiter other than ';' was in force.
    """
    if 'delimiter' not in text.lower():
        return text, (), ()
    marks = list(_DELIMITER_LINE.finditer(text))
    if not marks:
        return text, (), ()
    chars = list(text)
    boundaries, custom = [], []
    for k, m in enumerate(marks):
        for j in range(m.start(), m.end()):
            chars[j] = ' '
        boundaries.append(m.start())
        delim = m.group(1)
        end = marks[k + 1].start() if k + 1 < len(marks) else len(text)
        if delim == ';':
            continue
        custom.append((m.end(), end))
        pos = m.end()
        skip = None
        while pos < end:
            hit = text.find(delim, pos, end)
            if hit < 0:
                break
            if skip is None or skip.start() < pos:
                skip = _MYSQL_SKIP.search(text, pos, end)
            if skip is not None and skip.start() < hit:
                pos = max(skip.end(), skip.start() + 1)
                continue
            for j in range(hit, hit + len(delim)):
                chars[j] = ' '
            boundaries.append(hit)
            pos = hit + len(delim)
    return ''.join(chars), tuple(sorted(boundaries)), tuple(custom)


def _gap_comments(text, tokens):
    """(offset, body) of every comment: they sit in the gaps between tokens."""
    out = []
    prev_end = 0
    for tok in tokens + [None]:
        gap_end = tok.start if tok is not None else len(text)
        gap = text[prev_end:gap_end]
        i = 0
        while i < len(gap):
            if gap.startswith('--', i) or gap[i] == '#':
                j = gap.find('\n', i)
                j = len(gap) if j < 0 else j
                out.append((prev_end + i, gap[i + (1 if gap[i] == '#' else 2):j]))
                i = j
            elif gap.startswith('/*', i):
                j = gap.find('*/', i + 2)
                j = len(gap) if j < 0 else j
                out.append((prev_end + i, gap[i + 2:j]))
                i = j + 2
            else:
                i += 1
        if tok is not None:
            prev_end = tok.end + 1
    return out


def parse(text, engine, line_offset=0):
    """Statements of a MySQL or SQLite source."""
    dialect = _dialect('mysql' if engine == 'mysql' else 'sqlite')
    starts = line_starts(text)
    boundaries = custom = ()
    source = text
    if engine == 'mysql':
        text, boundaries, custom = mysql_delimiters(text)
    try:
        tokens = dialect.tokenize(text)
    except SqlglotError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        return [Statement(text.strip(), 1 + line_offset, error='the tokenizer cannot read this text: %s' % msg)]
    placed = []
    parser = dialect.parser()
    for chunk in _split(tokens, engine, boundaries, custom):
        start, end = chunk[0].start, chunk[-1].end + 1
        line = line_of(starts, start) + line_offset
        stmt_text = source[start:end]
        routine = routine_kind(chunk)
        if routine is not None:
            # Its body runs later (per row, per call): nothing in it changes the schema or the data now.
            if not _closed(chunk, engine) or engine == 'sqlite' and chunk[-1].token_type != TokenType.END:
                stmt = Statement(stmt_text, line, error='the BEGIN ... END body of this CREATE %s does not close: '
                                                        'end it with END;' % routine)
            else:
                stmt = Statement(stmt_text, line, [Event('create_routine', what=routine)])
            placed.append((stmt, start, end))
            continue
        try:
            parsed = parser.parse(chunk, text)
            node = parsed[0] if parsed else None
            if node is None or not isinstance(node, _statement_types()) or isinstance(node, exp.Block):
                raise SqlglotError('this is not a statement the %s dialect knows' % engine)
            stmt = Statement(stmt_text, line, statement_events(node, chunk, engine))
        except SqlglotError as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            stmt = Statement(stmt_text, line, error=msg)
        except RecursionError:
            stmt = Statement(stmt_text[:400], line, error='the statement is nested too deeply for the parser to read '
                                                          '(thousands of parentheses?); it was not checked')
        placed.append((stmt, start, end))
    if 'dbops:ignore' in text:
        attach_ignores(placed, _gap_comments(text, tokens), starts)
        for stmt in (p[0] for p in placed):
            stmt.ignores = [(r, why, ln + line_offset) for r, why, ln in stmt.ignores]
    return [p[0] for p in placed]

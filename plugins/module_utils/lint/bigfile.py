# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The linear-time path of migration_lint for big sources (data dumps, seed files).

A big source is cut into statements by one regular-expression scan that knows the dialect's strings, quoted
identifiers, comments and (PostgreSQL) dollar quotes and ``COPY ... FROM stdin`` data blocks, so the cost is
linear in the size of the text. Then:

* ``INSERT [INTO] t [(cols)] VALUES ...`` statements are recognised from their head and become the same
  ``insert`` event the parser would give (a VALUES list names no source table), without being parsed;
* the data of ``COPY ... FROM stdin`` (up to the ``\\.`` line) is skipped, as psql does;
* a statement longer than max_statement_size is not parsed: it is reported (rule too-large);
* every other statement is parsed by the dialect's front-end, in chunks of consecutive statements, with the
  file's line numbers.
"""

from __future__ import annotations

import functools
import re

from ansible_collections.dbops.maintenance.plugins.module_utils.lint.model import Event, Statement

# Sources longer than this take the linear path (the front-ends parse smaller ones whole).
BIG_SOURCE_CHARS = 1 << 20
CHUNK_CHARS = 1 << 18

# One match of these is one statement (up to and with its ';'): the regular-expression engine walks strings,
# quoted identifiers, comments and dollar quotes itself (unrolled loops: no backtracking to speak of), so the cost
# is linear and mostly in C. An unterminated string or comment runs to the end of the text, as in the server.
_STATEMENT_PATTERNS = {
    'postgresql': (
        r"""(?:[^;'"\-/$eE]+|[eE]'[^'\\]*(?:(?:\\.|'')[^'\\]*)*(?:'|\Z)|'[^']*(?:''[^']*)*(?:'|\Z)"""
        r"""|"[^"]*(?:""[^"]*)*(?:"|\Z)|--[^\n]*|/\*.*?(?:\*/|\Z)"""
        r"""|\$(?P<tag>(?:[A-Za-z_\x80-\uffff][A-Za-z_0-9\x80-\uffff]*)?)\$.*?(?:\$(?P=tag)\$|\Z)|[-/$eE])*;?"""),
    'mysql': (
        r"""(?:[^;'"`\-/#]+|'[^'\\]*(?:(?:\\.|'')[^'\\]*)*(?:'|\Z)|"[^"\\]*(?:(?:\\.|"")[^"\\]*)*(?:"|\Z)"""
        r"""|`[^`]*(?:``[^`]*)*(?:`|\Z)|--(?=[ \t\r\n])[^\n]*|\#[^\n]*|/\*.*?(?:\*/|\Z)|[-/])*;?"""),
    'sqlite': (
        r"""(?:[^;'"`\[\-/]+|'[^']*(?:''[^']*)*(?:'|\Z)|"[^"]*(?:""[^"]*)*(?:"|\Z)|`[^`]*(?:``[^`]*)*(?:`|\Z)"""
        r"""|\[[^\]]*(?:\]|\Z)|--[^\n]*|/\*.*?(?:\*/|\Z)|[-/])*;?"""),
}
_NAME = r'(?:"(?:[^"]|"")+"|`(?:[^`]|``)+`|\[[^\]]+\]|[A-Za-z_\x80-\uffff][\w$\x80-\uffff]*)'


class _Patterns:
    """The regular expressions, compiled on first use: most lint runs have no big source, and compiling the
    statement scanners' wide character classes costs about 40 ms of every module run that imports the linter."""

    def __init__(self):
        self.statement = {engine: re.compile(p, re.S) for engine, p in _STATEMENT_PATTERNS.items()}
        self.lead = re.compile(r'(?:\s+|--[^\n]*|/\*.*?\*/|\#[^\n]*)*', re.S)
        self.name = re.compile(_NAME)
        self.insert = re.compile(r'INSERT\s+(?:(?:IGNORE|LOW_PRIORITY|DELAYED|HIGH_PRIORITY|OR\s+\w+)\s+)?'
                                 r'(?:INTO\s+)?(?P<name>%s(?:\s*\.\s*%s)?)\s*(?:\([^()]*\)\s*)?VALUES\b'
                                 % (_NAME, _NAME), re.I)
        self.copy_stdin = re.compile(r'COPY\b[^;]*?\bFROM\s+STDIN\b', re.I)
        self.end_of_copy = re.compile(r'^\\\.[ \t]*$', re.M)
        self.rest_of_line = re.compile(r'[ \t]*(?:--[^\n]*)?\n')


@functools.lru_cache(maxsize=None)
def _re():
    return _Patterns()


def is_big(text, max_statement_size):
    return len(text) > BIG_SOURCE_CHARS or (max_statement_size is not None and len(text) > max_statement_size)


def _unquote(part, engine):
    part = part.strip()
    if part[:1] in '"`[':
        close = {'"': '"', '`': '`', '[': ']'}[part[0]]
        return part[1:-1].replace(close * 2, close)
    return part.lower() if engine == 'postgresql' else part


_TABLES = {}


def _table(name, engine):
    key = (name, engine)
    if key not in _TABLES:
        if len(_TABLES) > 10000:
            _TABLES.clear()
        _TABLES[key] = '.'.join(_unquote(p, engine) for p in _re().name.findall(name))
    return _TABLES[key]


def spans(text, engine):
    """(start, end, kind) of each statement: kind 'sql', or 'copy-data' for the data block of COPY FROM stdin."""
    pats = _re()
    statement = pats.statement[engine]
    pos, n = 0, len(text)
    while pos < n:
        m = statement.match(text, pos)
        end = m.end()
        if end == pos:  # cannot happen (every character matches an alternative); never loop forever
            end = n
        semi = text[end - 1] == ';'
        rest = pats.rest_of_line.match(text, end) if semi else None
        if rest:  # a trailing comment belongs to the statement it ends the line of
            end = rest.end()
        yield pos, end, 'sql'
        head = pats.lead.match(text, pos, end).end()
        pos = end
        if semi and engine == 'postgresql' and pats.copy_stdin.match(text, head, end):
            stop = pats.end_of_copy.search(text, end)
            data_end = stop.end() if stop else n
            yield end, data_end, 'copy-data'
            pos = data_end


def parse(text, engine, parse_chunk, line_offset=0, max_statement_size=None):
    """(statements, too_large, collapsed) of a big source.

    too_large: [(line, size, head)] of the statements too large to parse; collapsed: how many INSERT ... VALUES
    statements were folded into the one before them (a run of inserts into one table is one statement for the
    rules: the first; each would give the same event). parse_chunk(text, line_offset): the dialect front-end."""
    statements, too_large = [], []
    collapsed = 0
    last_insert = None
    chunk_start = chunk_end = None
    chunk_line = line = 1
    counted = 0

    def line_at(offset):
        nonlocal counted, line
        line += text.count('\n', counted, offset)
        counted = offset
        return line

    def flush():
        nonlocal chunk_start
        if chunk_start is not None:
            statements.extend(parse_chunk(text[chunk_start:chunk_end], line_offset + chunk_line - 1))
        chunk_start = None

    pats = _re()
    for start, end, kind in spans(text, engine):
        if kind == 'copy-data':
            flush()  # a chunk is contiguous text: the data is not part of it
            continue
        head = pats.lead.match(text, start, end).end()
        if head >= end:
            continue
        insert = pats.insert.match(text, head, end)
        too_big = max_statement_size is not None and end - head > max_statement_size
        if insert or too_big:
            flush()
            if insert:
                table = _table(insert.group('name'), engine)
                if last_insert == table and statements and statements[-1].events[0].kind == 'insert' \
                        and not statements[-1].ignores:
                    collapsed += 1
                    continue
                last_insert = table
            first = line_at(head) + line_offset
            if insert:
                stmt = Statement(text[head:min(end, head + 400)].rstrip().rstrip(';'), first,
                                 [Event('insert', table=table, sources=[])])
                statements.append(stmt)
            else:
                too_large.append((first, end - head, ' '.join(text[head:head + 80].split())))
            continue
        last_insert = None
        if chunk_start is None:
            chunk_start, chunk_line = start, line_at(start)
        chunk_end = end
        if chunk_end - chunk_start >= CHUNK_CHARS:
            flush()
    flush()
    return statements, too_large, collapsed

# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The dialect-neutral facts a parser front-end extracts from SQL.

A front-end turns the text of one source (a migration file, an SQL string)
into a list of Statement. Each Statement carries the Events the rules look
at (``drop_table``, ``add_column``, ``begin``, ...), so the rules never see
SQL text or a parser's tree and work the same for every dialect.
"""

from __future__ import annotations


class Event:
    """One fact about a statement: ``kind`` plus keyword attributes (table, column, ...)."""

    __slots__ = ('kind', 'attrs')

    def __init__(self, kind, **attrs):
        self.kind = kind
        self.attrs = attrs

    def get(self, key, default=None):
        return self.attrs.get(key, default)

    def __getitem__(self, key):
        return self.attrs[key]

    def __repr__(self):
        return 'Event(%s, %r)' % (self.kind, self.attrs)


class Statement:
    """One statement of a source as the parser read it.

    text: the statement as written; line: its first line in the source file
    (1-based, counting the source's line offset); events: list of Event;
    error: the parser's message when it could not read the statement;
    ignores: list of (rule id or '*', reason, line) from dbops:ignore comments
    that belong to this statement.
    """

    __slots__ = ('text', 'line', 'events', 'error', 'ignores')

    def __init__(self, text, line, events=None, error=None):
        self.text = text
        self.line = line
        self.events = events or []
        self.error = error
        self.ignores = []

    def __repr__(self):
        return 'Statement(line %d, %r, %r)' % (self.line, self.text[:40], self.events)


IGNORE_MARK = 'dbops:ignore'


def parse_ignore(comment):
    """'-- dbops:ignore drop-table,truncate reason text' -> ([rules], reason) or None.

    ``comment`` is the text of one comment, without its delimiters.
    """
    text = comment.strip()
    if not text.startswith(IGNORE_MARK):
        return None
    rest = text[len(IGNORE_MARK):].strip()
    if not rest:
        return [], ''
    parts = rest.split(None, 1)
    rules = [r.strip() for r in parts[0].split(',') if r.strip()]
    reason = parts[1].strip() if len(parts) > 1 else ''
    return rules, reason


def line_starts(text):
    """Offsets at which each line of text starts (for offset -> line)."""
    starts = [0]
    pos = text.find('\n')
    while pos >= 0:
        starts.append(pos + 1)
        pos = text.find('\n', pos + 1)
    return starts


def line_of(starts, offset):
    """1-based line of a character offset, by binary search over line_starts()."""
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid] <= offset:
            lo = mid
        else:
            hi = mid - 1
    return lo + 1


def attach_ignores(statements, comments, starts):
    """Give each statement the dbops:ignore comments that belong to it.

    comments: list of (offset, text) of every comment of the source, in order;
    statements: list of (Statement, start offset, end offset).
    A comment belongs to the statement it is inside of, or to the next
    statement after it; a comment on the line where a statement ends (a
    trailing comment) belongs to that statement.
    """
    if not comments or not statements:
        return
    end_lines = [line_of(starts, max(s_end - 1, s_start)) for _s, s_start, s_end in statements]
    for offset, text in comments:
        parsed = parse_ignore(text)
        if parsed is None:
            continue
        rules, reason = parsed
        line = line_of(starts, offset)
        target = None
        for i, (stmt, _s_start, s_end) in enumerate(statements):
            if s_end <= offset and end_lines[i] == line:
                target = stmt          # trailing comment on the statement's last line
                break
            if s_end > offset:
                target = stmt          # inside the statement, or before it
                break
        if target is None:
            continue
        for rule in rules or ['']:
            target.ignores.append((rule, reason, line))

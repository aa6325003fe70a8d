# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The schema snapshot: what a database's schema is, engine-neutral, and its JSON file.

A snapshot is a set of objects, each one (kind, path) -> attrs:

* kind: one of KINDS (table, column, index, foreign_key, ...);
* path: the object's name as the server stores it (case kept), as a tuple of parts: PostgreSQL
  (schema, table[, column | constraint | index]), MySQL and SQLite (table[, ...]); a foreign key's last
  part is its column list joined by ',' (the key that survives a rename of an auto-named constraint);
* parent: the path of the table it belongs to (None for tables, schemas, enums, sequences, functions);
* attrs: JSON scalars or lists of scalars; the keys compared are compare.COMPARED[kind], the others
  (definition of an index, the column's full spec) are there for the SQL generator.

The file (snapshot_dest) is {"format_version": 1, "engine", "flavour", "version", "database", "taken_at",
"objects": [{"kind", "path", "parent", "attrs"}, ...]}. A snapshot file is input like any other: load()
validates every part of it (size, JSON depth, types, kinds, name lengths) and says what is wrong where.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import time

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError

FORMAT_VERSION = 1
KINDS = ('schema', 'table', 'column', 'primary_key', 'unique', 'index', 'foreign_key', 'check', 'exclusion',
         'enum', 'sequence', 'view', 'trigger', 'function')
ENGINES = ('postgresql', 'mysql', 'sqlite')
MAX_FILE_SIZE = 512 * 1024 * 1024
MAX_NAME = 1024          # one part of a path (server limits are 63/64 characters; generous)
MAX_VALUE = 1024 * 1024  # one string attribute (a view or function definition)
MAX_LIST = 10000
PLAIN = re.compile(r'^[A-Za-z_][A-Za-z0-9_$]*$')
FUNCTION = re.compile(r'^[A-Za-z_][A-Za-z0-9_$]*\([A-Za-z0-9_$ ,."\[\]]*\)$')  # name(argument types)


def quote_part(part):
    """A part of a name for messages: as is when plain, else double-quoted (doubled inside)."""
    return part if PLAIN.match(part) or FUNCTION.match(part) else '"%s"' % part.replace('"', '""')


class Snapshot:
    """The objects of one database's schema."""

    def __init__(self, engine, flavour=None, version=None, database=None, taken_at=None, default_schema=None):
        self.engine = engine
        self.flavour = flavour or engine
        self.version = version
        self.database = database
        self.taken_at = taken_at or time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
        self.default_schema = default_schema  # PostgreSQL: left out of display names ('public')
        self.objects = {}   # (kind, path) -> attrs
        self.parents = {}   # (kind, path) -> parent path or None

    def add(self, kind, path, attrs, parent=None):
        key = (kind, tuple(path))
        self.objects[key] = attrs
        self.parents[key] = tuple(parent) if parent is not None else None

    def display(self, path):
        parts = list(path)
        if self.engine == 'postgresql' and len(parts) > 1 and parts[0] == (self.default_schema or 'public'):
            parts = parts[1:]
        return '.'.join(quote_part(p) for p in parts)

    def without(self, matches):
        """A copy without the objects for which matches(kind, path) is true, nor their children."""
        out = Snapshot(self.engine, self.flavour, self.version, self.database, self.taken_at, self.default_schema)
        gone = set()
        for (kind, path) in self.objects:
            if kind in ('table', 'view') and matches(kind, path):
                gone.add(path)
        for (kind, path), attrs in self.objects.items():
            parent = self.parents[(kind, path)]
            if matches(kind, path) or (parent is not None and parent in gone):
                continue
            out.add(kind, path, attrs, parent)
        return out

    def to_json(self):
        objects = [dict(kind=k, path=list(p), parent=list(self.parents[(k, p)]) if self.parents[(k, p)] else None,
                        attrs=a) for (k, p), a in sorted(self.objects.items(), key=lambda i: (i[0][0], i[0][1]))]
        return dict(format_version=FORMAT_VERSION, engine=self.engine, flavour=self.flavour, version=self.version,
                    database=self.database, taken_at=self.taken_at, default_schema=self.default_schema,
                    objects=objects)

    def counts(self):
        out = {}
        for kind, _path in self.objects:
            out[kind] = out.get(kind, 0) + 1
        return out


# --- the file -------------------------------------------------------------------------------------

class SnapshotInvalid(DbopsError):
    pass


def _bad(where, what, path):
    raise SnapshotInvalid('The snapshot file %s is not a valid schema_diff snapshot: %s: %s. Write it with '
                          'schema_diff snapshot_dest (format_version %d), or fix that part of the file.'
                          % (path, where, what, FORMAT_VERSION))


def _check_value(value, where, path):
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > 2 ** 128:
            _bad(where, 'an integer out of range', path)
        return
    if isinstance(value, float):
        _bad(where, 'a float (attributes are text, integers, booleans or lists of them)', path)
    if isinstance(value, str):
        if len(value) > MAX_VALUE:
            _bad(where, 'a text of %d characters (at most %d)' % (len(value), MAX_VALUE), path)
        if '\x00' in value:
            _bad(where, 'a text with a NUL character', path)
        return
    if isinstance(value, list):
        if len(value) > MAX_LIST:
            _bad(where, 'a list of %d items (at most %d)' % (len(value), MAX_LIST), path)
        for i, v in enumerate(value):
            if isinstance(v, (list, dict)):
                _bad('%s[%d]' % (where, i), 'a nested %s (lists hold text, integers or booleans)'
                     % type(v).__name__, path)
            _check_value(v, '%s[%d]' % (where, i), path)
        return
    _bad(where, 'a %s (attributes are text, integers, booleans or lists of them)' % type(value).__name__, path)


def _check_path(value, where, path):
    if not isinstance(value, list) or not value or len(value) > 4:
        _bad(where, 'must be a list of 1 to 4 names', path)
    for i, part in enumerate(value):
        if not isinstance(part, str) or not part:
            _bad('%s[%d]' % (where, i), 'a name must be a non-empty text', path)
        if len(part) > MAX_NAME or '\x00' in part:
            _bad('%s[%d]' % (where, i), 'a name longer than %d characters or with a NUL character' % MAX_NAME, path)
    return tuple(value)


def from_json(data, path='<snapshot>'):
    """Snapshot from the parsed JSON of a file, every part validated (SnapshotInvalid says where)."""
    if not isinstance(data, dict):
        _bad('top level', 'a %s, not an object' % type(data).__name__, path)
    if data.get('format_version') != FORMAT_VERSION:
        _bad('format_version', '%r, this module reads format_version %d' % (data.get('format_version'),
                                                                            FORMAT_VERSION), path)
    engine = data.get('engine')
    if engine not in ENGINES:
        _bad('engine', '%r is not one of %s' % (engine, ', '.join(ENGINES)), path)
    for key in ('flavour', 'version', 'database', 'taken_at', 'default_schema'):
        v = data.get(key)
        if v is not None and (not isinstance(v, str) or len(v) > MAX_NAME):
            _bad(key, 'must be a text of at most %d characters' % MAX_NAME, path)
    objects = data.get('objects')
    if not isinstance(objects, list):
        _bad('objects', 'must be a list', path)
    snap = Snapshot(engine, data.get('flavour'), data.get('version'), data.get('database'), data.get('taken_at'),
                    data.get('default_schema'))
    for i, obj in enumerate(objects):
        where = 'objects[%d]' % i
        if not isinstance(obj, dict):
            _bad(where, 'a %s, not an object' % type(obj).__name__, path)
        unknown = set(obj) - {'kind', 'path', 'parent', 'attrs'}
        if unknown:
            _bad(where, 'unknown key(s) %s' % ', '.join(sorted(str(k) for k in unknown)), path)
        kind = obj.get('kind')
        if kind not in KINDS:
            _bad(where + '.kind', '%r is not one of %s' % (kind, ', '.join(KINDS)), path)
        opath = _check_path(obj.get('path'), where + '.path', path)
        parent = obj.get('parent')
        if parent is not None:
            parent = _check_path(parent, where + '.parent', path)
        attrs = obj.get('attrs')
        if not isinstance(attrs, dict):
            _bad(where + '.attrs', 'must be an object', path)
        for k, v in attrs.items():
            if not isinstance(k, str) or not re.match(r'^[a-z][a-z0-9_]{0,39}$', k):
                _bad(where + '.attrs', 'attribute name %r (lower-case letters, digits and _)' % (k,), path)
            _check_value(v, '%s.attrs.%s' % (where, k), path)
        if (kind, opath) in snap.objects:
            _bad(where, 'a second %s %s' % (kind, '.'.join(opath)), path)
        snap.add(kind, opath, attrs, parent)
    return snap


def load(path):
    """Read and validate a snapshot file (never through a symlink; at most MAX_FILE_SIZE bytes)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_CLOEXEC', 0))
    except OSError as e:
        raise DbopsError('Cannot read the snapshot file %s: %s%s. Give the path of a file written by schema_diff '
                         'snapshot_dest.' % (path, e.strerror or e, ' (it is a symbolic link, which is not followed)'
                                             if os.path.islink(path) else ''))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DbopsError('The snapshot file %s is not a regular file.' % path)
        if st.st_size > MAX_FILE_SIZE:
            raise DbopsError('The snapshot file %s is %d bytes, more than %d: not read.'
                             % (path, st.st_size, MAX_FILE_SIZE))
        with os.fdopen(fd, 'rb') as f:
            fd = None
            raw = f.read(MAX_FILE_SIZE + 1)
    finally:
        if fd is not None:
            os.close(fd)
    try:
        data = json.loads(raw.decode('utf-8'))
    except UnicodeDecodeError as e:
        raise SnapshotInvalid('The snapshot file %s is not UTF-8 text (%s).' % (path, e))
    except RecursionError:
        raise SnapshotInvalid('The snapshot file %s nests JSON too deeply to be a snapshot.' % path)
    except ValueError as e:
        raise SnapshotInvalid('The snapshot file %s is not JSON: %s.' % (path, e))
    return from_json(data, path)


def write(path, snap):
    """Write the snapshot to path atomically: a new 0600 file beside it (O_EXCL|O_NOFOLLOW), fsync, rename over
    path, fsync of the directory. A symbolic link at path is refused (never followed nor replaced)."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    if os.path.islink(path):
        raise DbopsError('snapshot_dest %s is a symbolic link: refused (it is never followed). Give the path of a '
                         'regular file, or remove the link.' % path)
    if os.path.isdir(path):
        raise DbopsError('snapshot_dest %s is a directory: give a file path.' % path)
    if not os.path.isdir(directory):
        raise DbopsError('The directory of snapshot_dest (%s) does not exist.' % directory)
    tmp = os.path.join(directory, '.dbops-tmp-%d-%s-%s' % (os.getpid(), secrets.token_hex(6), os.path.basename(path)))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_CLOEXEC', 0)
    try:
        fd = os.open(tmp, flags, 0o600)
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            json.dump(snap.to_json(), f, indent=1, sort_keys=True)
            f.write('\n')
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise DbopsError('Cannot write snapshot_dest %s: %s' % (path, e.strerror or e))

# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading backup manifests (<backup>.manifest.json) and checking a backup against its manifest."""

from __future__ import annotations

import json
import os
import re

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import common
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import pipeline as pl


def manifest_path_for(backup_path):
    return backup_path.rstrip('/') + common.MANIFEST_SUFFIX


def read_manifest(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DbopsError('Manifest %s does not exist.' % path)
    except (OSError, ValueError) as e:
        raise DbopsError('Cannot read the manifest %s: %s' % (path, e))
    if not isinstance(data, dict) or data.get('kind') != common.MANIFEST_KIND:
        raise DbopsError('%s is not a dbops.maintenance backup manifest (no "kind": "%s").' % (path, common.MANIFEST_KIND))
    return data


def backup_file_of(manifest_path, manifest):
    return os.path.join(os.path.dirname(os.path.abspath(manifest_path)), manifest['file'])


def list_backups(directory):
    """All this collection's backups in directory: list of (manifest_path, manifest), oldest first.

    Files without a valid manifest of this collection are never returned, so retention never touches them.
    """
    found = []
    try:
        names = os.listdir(directory)
    except OSError:
        return found
    for name in names:
        if not name.endswith(common.MANIFEST_SUFFIX) or name.startswith('.'):
            continue
        path = os.path.join(directory, name)
        try:
            m = read_manifest(path)
            common.parse_iso(m['finished_at'])
        except (DbopsError, KeyError, ValueError, TypeError):
            continue
        if m.get('file') and '/' not in m['file'] and name == m['file'] + common.MANIFEST_SUFFIX:
            found.append((path, m))
    found.sort(key=lambda pm: pm[1]['finished_at'])
    return found


def check_backup_integrity(backup_path, manifest):
    """Raise DbopsError unless the backup on disk has the manifest's size and sha256."""
    if not os.path.exists(backup_path):
        raise DbopsError('The backup %s named by its manifest does not exist.' % backup_path)
    if manifest.get('layout') == 'directory':
        digest, files, _size = pl.sha256_tree(backup_path)
        if digest != manifest.get('sha256'):
            want = manifest.get('files') or {}
            bad = sorted(set(k for k in set(want) | set(files) if want.get(k) != files.get(k)))
            raise DbopsError('The backup %s does not match its manifest: sha256 %s, the manifest says %s '
                             '(files that differ: %s). It was changed or damaged after it was written; it cannot be '
                             'trusted.' % (backup_path, digest, manifest.get('sha256'), ', '.join(bad[:10]) or '?'))
        return digest
    digest = pl.sha256_file(backup_path)
    if digest != manifest.get('sha256'):
        raise DbopsError('The backup %s does not match its manifest: sha256 %s, the manifest says %s (size %d, '
                         'manifest %s). It was changed or damaged after it was written; it cannot be trusted.'
                         % (backup_path, digest, manifest.get('sha256'), os.path.getsize(backup_path),
                            manifest.get('size')))
    return digest


# --------------------------------------------------------------------------
# validation: a manifest is input (it can be edited, or planted beside a backup)
# --------------------------------------------------------------------------

ENGINES = ('postgresql', 'mysql', 'sqlite')
FORMATS = {'postgresql': ('custom', 'directory', 'plain'), 'mysql': ('plain',), 'sqlite': ('sqlite',)}
COMPRESSIONS = ('none', 'gzip', 'lz4', 'zstd')
LAYOUTS = ('file', 'directory')
_SHA256 = re.compile(r'^[0-9a-f]{64}$')
# charset/collation (MySQL), encoding/collate/ctype (PostgreSQL) names: letters, digits and . _ - @ only; the
# value is then looked up in the server's catalog and quoted (never spliced into SQL as text).
_FACT = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$')
FACT_KEYS = {'postgresql': ('encoding', 'collate', 'ctype'), 'mysql': ('charset', 'collation'),
             'sqlite': ('page_size', 'journal_mode')}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def plain_file_name(name):
    """True when name is a plain file name (no directory part, not '.', '..', no NUL/control characters)."""
    return (isinstance(name, str) and name not in ('', '.', '..') and '/' not in name and '\\' not in name
            and not any(ord(ch) < 32 for ch in name))


def validate_manifest(m, mpath):
    """Check every field db_restore uses, before anything reads the backup or touches a database.

    Raises DbopsError naming the field. Returns the manifest (unchanged)."""
    def bad(field, why):
        raise DbopsError('The manifest %s is not valid: %s %s. A manifest is written by db_backup; this one was '
                         'changed or is not one. Nothing was read or changed.' % (mpath, field, why))

    if not _is_int(m.get('manifest_version', 1)):
        bad('manifest_version', 'is not an integer')
    engine = m.get('engine')
    if engine not in ENGINES:
        bad('engine', '%r is not one of %s' % (engine, ', '.join(ENGINES)))
    if m.get('format') not in FORMATS[engine]:
        bad('format', '%r is not one of %s (engine %s)' % (m.get('format'), ', '.join(FORMATS[engine]), engine))
    compression = m.get('compression', 'none')
    if compression not in COMPRESSIONS:
        bad('compression', '%r is not one of %s' % (compression, ', '.join(COMPRESSIONS)))
    layout = m.get('layout', 'file')
    if layout not in LAYOUTS or (layout == 'directory') != (m['format'] == 'directory'):
        bad('layout', '%r does not fit format %s' % (layout, m['format']))
    name = m.get('file')
    if not plain_file_name(name):
        bad('file', '%r is not a plain file name beside the manifest (no "/", no "..")' % (name,))
    path = os.path.join(os.path.dirname(os.path.abspath(mpath)), name)
    if os.path.islink(path):
        bad('file', '%s is a symbolic link; a backup is a file (or directory) of its own' % path)
    if not _is_int(m.get('size')) or m['size'] < 0:
        bad('size', '%r is not a non-negative integer' % (m.get('size'),))
    if not isinstance(m.get('sha256'), str) or not _SHA256.match(m['sha256']):
        bad('sha256', 'is not 64 lower-case hex digits')
    if not isinstance(m.get('database'), str) or not m['database']:
        bad('database', 'is not a name')
    tables = m.get('tables')
    if not isinstance(tables, list) or not all(
            isinstance(t, dict) and isinstance(t.get('name'), str) and t['name']
            and (t.get('rows_estimate') is None or _is_int(t['rows_estimate'])) for t in tables):
        bad('tables', 'is not a list of {name: text, rows_estimate: integer or null}')
    counts = m.get('row_counts')
    if counts is not None and (not isinstance(counts, dict) or not all(
            isinstance(k, str) and _is_int(v) and v >= 0 for k, v in counts.items())):
        bad('row_counts', 'is not a mapping of table name to a non-negative integer')
    files = m.get('files')
    if files is not None and (not isinstance(files, dict) or not all(
            isinstance(k, str) and k and not k.startswith('/') and '..' not in k.split('/')
            and isinstance(v, str) and _SHA256.match(v) for k, v in files.items())):
        bad('files', 'is not a mapping of relative file names to sha256 digests')
    for key in ('schema_only',):
        if key in m and not isinstance(m[key], bool):
            bad(key, 'is not true/false')
    if 'jobs' in m and m['jobs'] is not None and (not _is_int(m['jobs']) or m['jobs'] < 1):
        bad('jobs', 'is not a positive integer')
    if not isinstance(m.get('finished_at'), str):
        bad('finished_at', 'is not a time stamp')
    try:
        common.parse_iso(m['finished_at'])
    except ValueError:
        bad('finished_at', '%r is not a time stamp like 2025-01-01T02:00:00.000000Z' % m['finished_at'])
    tools = m.get('tools', {})
    if not isinstance(tools, dict) or not all(isinstance(v, dict) for v in tools.values()):
        bad('tools', 'is not a mapping of tool name to {path, version}')
    version = (tools.get('pg_dump') or {}).get('version', '')
    if not isinstance(version, str):
        bad('tools.pg_dump.version', 'is not text')
    facts = m.get('database_facts') or {}
    if not isinstance(facts, dict):
        bad('database_facts', 'is not a mapping')
    for key, value in facts.items():
        if key not in FACT_KEYS[engine]:
            bad('database_facts.%s' % key, 'is not a fact of a %s database (%s)' % (engine, ', '.join(FACT_KEYS[engine])))
        if engine == 'sqlite':
            if key == 'page_size' and not _is_int(value):
                bad('database_facts.page_size', 'is not an integer')
            if key == 'journal_mode' and not (isinstance(value, str) and value.isalpha()):
                bad('database_facts.journal_mode', 'is not a journal mode')
            continue
        if value is not None and not (isinstance(value, str) and _FACT.match(value)):
            bad('database_facts.%s' % key, '%r is not a character set, collation or locale name' % (value,))
    return m

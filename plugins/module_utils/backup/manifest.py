# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading backup manifests (<backup>.manifest.json) and checking a backup against its manifest.

(Moved out of backup/common.py, which re-exports these names.)
"""

from __future__ import annotations

import json
import os

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError


def _common():
    # common.py re-exports this module's functions, so it is imported when first needed, not at import time
    from ansible_collections.dbops.maintenance.plugins.module_utils.backup import common
    return common


def manifest_path_for(backup_path):
    return backup_path.rstrip('/') + _common().MANIFEST_SUFFIX


def read_manifest(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DbopsError('Manifest %s does not exist.' % path)
    except (OSError, ValueError) as e:
        raise DbopsError('Cannot read the manifest %s: %s' % (path, e))
    if not isinstance(data, dict) or data.get('kind') != _common().MANIFEST_KIND:
        raise DbopsError('%s is not a dbops.maintenance backup manifest (no "kind": "%s").' % (path, _common().MANIFEST_KIND))
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
        if not name.endswith(_common().MANIFEST_SUFFIX) or name.startswith('.'):
            continue
        path = os.path.join(directory, name)
        try:
            m = read_manifest(path)
            _common().parse_iso(m['finished_at'])
        except (DbopsError, KeyError, ValueError, TypeError):
            continue
        if m.get('file') and '/' not in m['file'] and name == m['file'] + _common().MANIFEST_SUFFIX:
            found.append((path, m))
    found.sort(key=lambda pm: pm[1]['finished_at'])
    return found


def check_backup_integrity(backup_path, manifest):
    """Raise DbopsError unless the backup on disk has the manifest's size and sha256."""
    if not os.path.exists(backup_path):
        raise DbopsError('The backup %s named by its manifest does not exist.' % backup_path)
    if manifest.get('layout') == 'directory':
        digest, files, _size = _common().sha256_tree(backup_path)
        if digest != manifest.get('sha256'):
            want = manifest.get('files') or {}
            bad = sorted(set(k for k in set(want) | set(files) if want.get(k) != files.get(k)))
            raise DbopsError('The backup %s does not match its manifest: sha256 %s, the manifest says %s '
                             '(files that differ: %s). It was changed or damaged after it was written; it cannot be '
                             'trusted.' % (backup_path, digest, manifest.get('sha256'), ', '.join(bad[:10]) or '?'))
        return digest
    digest = _common().sha256_file(backup_path)
    if digest != manifest.get('sha256'):
        raise DbopsError('The backup %s does not match its manifest: sha256 %s, the manifest says %s (size %d, '
                         'manifest %s). It was changed or damaged after it was written; it cannot be trusted.'
                         % (backup_path, digest, manifest.get('sha256'), os.path.getsize(backup_path),
                            manifest.get('size')))
    return digest

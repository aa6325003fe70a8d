# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What db_backup, db_restore and db_clone share, whatever the engine.

* The pipeline (processes, pipes, hashing, fsync, the stall watchdog) is in
  pipeline.py, the file rules (private temporary directory, O_EXCL|O_NOFOLLOW
  0600 files, no-replace renames, dest checks) in files.py, finding the tools
  and their versions in tools.py; all re-exported here.
* Manifests (<backup>.manifest.json) and retention, which only ever looks at
  files that have this collection's manifest.
"""

from __future__ import annotations

import datetime
import os
import re
import signal
import time

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
# The file rules, the tool lookup and the pipeline live in files.py, tools.py and pipeline.py. Their names are
# re-exported here, the one import of the backup/restore/clone runners (`c.X`), until those import them directly.
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.files import (  # noqa: F401 pylint: disable=unused-import
    TMP_PREFIX, PrivateDir, WorkDir, check_dest, cleanup_stale_tmp, create_like, create_private, disk_error_message,
    fsync_dir,
    host_tag, human_size, pid_alive, remove_path, rename_noreplace, replace_json, take_final_name, tmp_name,
    write_json_atomic,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.tools import (  # noqa: F401 pylint: disable=unused-import
    COMPRESSOR_TOOL, VersionProbe, compressor_argv, find_tool, require_tool, resolve_versions, tool_version,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.pipeline import (  # noqa: F401 pylint: disable=unused-import
    CHUNK, F_SETPIPE_SZ, HASH_QUEUE, PIPE_SIZE, STDERR_KEEP, SYNC_EVERY, BackgroundSync, Pipeline, PipelineFailed,
    PipelineStalled, Stage, StreamHasher, describe_rc, fsync_tree, map_threads, run_tool, sha256_file, sha256_tree,
    widen_pipe,
)

MANIFEST_KIND = 'dbops.maintenance/backup'
MANIFEST_VERSION = 1
MANIFEST_SUFFIX = '.manifest.json'

COMPRESSION_EXT = {'none': '', 'gzip': '.gz', 'lz4': '.lz4', 'zstd': '.zst'}


class Interrupted(Exception):
    """SIGTERM/SIGINT/SIGHUP reached the module (Ansible timeout, Ctrl-C): clean up and fail."""


def install_signal_handlers():
    def handler(signum, _frame):
        raise Interrupted('the module received signal %d' % signum)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):  # pragma: no cover - not the main thread
            pass


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------

def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(ts):
    return ts.strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def parse_iso(text):
    return datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=datetime.timezone.utc)


_DURATION = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$')


def parse_duration(value, option):
    """'90', '90s', '30m', '12h', '7d', '2w' -> seconds (float)."""
    if value is None:
        return None
    m = _DURATION.match(str(value).lower())
    if not m:
        raise DbopsError('%s=%r is not a duration: give seconds (e.g. 3600) or a number with a unit '
                         's, m, h, d or w (e.g. 12h, 7d).' % (option, value))
    return float(m.group(1)) * {'': 1, 's': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}[m.group(2)]


def safe_label(text):
    """A file-name-safe label: letters, digits, '.', '_' and '-' (others become '_')."""
    label = re.sub(r'[^A-Za-z0-9._-]+', '_', text).strip('._') or 'backup'
    return label[:100]


def timestamp_name(ts):
    return ts.strftime('%Y%m%dT%H%M%SZ')


# --------------------------------------------------------------------------
# manifests
# --------------------------------------------------------------------------

from ansible_collections.dbops.maintenance.plugins.module_utils.backup.manifest import (  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
    backup_file_of, check_backup_integrity, list_backups, manifest_path_for, read_manifest,
)


def current_size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(r, n)) for r, _d, ns in os.walk(path) for n in ns)
    return os.path.getsize(path)


# --------------------------------------------------------------------------
# retention
# --------------------------------------------------------------------------

def plan_retention(backups, keep_last, keep_days, now, protect=()):
    """Which backups to delete (list of (manifest_path, manifest)), oldest first.

    backups: one label group, oldest first. A backup is kept when it is among the
    newest keep_last, or younger than keep_days; with only one of the two set, that
    one decides. Backups in `protect` (manifest paths) are always kept.
    """
    if keep_last is None and keep_days is None:
        return []
    newest_first = list(reversed(backups))
    delete = []
    for i, (mpath, m) in enumerate(newest_first):
        if mpath in protect:
            continue
        keep = False
        if keep_last is not None and i < keep_last:
            keep = True
        if keep_days is not None and (now - parse_iso(m['finished_at'])).total_seconds() < keep_days * 86400:
            keep = True
        if not keep:
            delete.append((mpath, m))
    return list(reversed(delete))


def apply_retention(directory, to_delete):
    """Delete the manifest first (so nothing claims a half-deleted backup), then the backup."""
    removed = []
    for mpath, m in to_delete:
        backup = os.path.join(directory, m['file'])
        try:
            os.unlink(mpath)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise DbopsError('Retention could not remove %s: %s' % (mpath, e))
        remove_path(backup)
        removed.append(backup)
    if removed:
        fsync_dir(directory)
    return removed


# --------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------

class Progress:
    """Size/throughput while a dump runs: a JSON file in the run's private directory (for `async` polling or
    `watch cat`), updated every `every` seconds, and samples kept for the result. Each update is a new 0600
    file renamed over the old one (files.replace_json), never a write through an existing name."""

    def __init__(self, path, every=2.0, max_samples=30, size_of=None):
        self.path = path
        self.size_of = size_of
        self.every = every
        self.start = time.monotonic()
        self.last = 0.0
        self.samples = []
        self.max_samples = max_samples

    def __call__(self, nbytes):
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.start
        if nbytes is None:
            try:
                nbytes = self.size_of() if self.size_of else 0
            except OSError:
                nbytes = 0
        sample = dict(seconds=round(elapsed, 1), bytes=nbytes, throughput=int(nbytes / elapsed) if elapsed else 0)
        if len(self.samples) >= self.max_samples:
            self.samples = self.samples[::2]
            self.every *= 2
        self.samples.append(sample)
        if self.path:
            human = '%s in %.0fs, %s/s' % (human_size(nbytes), elapsed, human_size(sample['throughput']))
            replace_json(self.path, dict(sample, human=human))

    def remove(self):
        if self.path:
            remove_path(self.path)

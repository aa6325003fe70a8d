# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What db_backup, db_restore and db_clone share, whatever the engine, beside the modules of their own:
the manifest constants, signals, times and durations, labels, retention (which only ever looks at files
that have this collection's manifest) and the progress file.

The pipeline (processes, pipes, hashing, fsync, the stall watchdog) is pipeline.py, the file rules
(private temporary directory, O_EXCL|O_NOFOLLOW 0600 files, no-replace renames, dest checks) files.py,
finding the tools and their versions tools.py, reading and validating manifests manifest.py.
"""

from __future__ import annotations

import datetime
import os
import re
import signal
import time

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.files import (
    fsync_dir, human_size, remove_path, replace_json,
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

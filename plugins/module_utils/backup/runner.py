# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine-independent flow of db_backup, db_restore and db_clone.

backup: check dest (files.check_dest) -> plan (name, tools, reuse, retention) ->
dump into the run's private 0700 directory in dest (files.WorkDir) through the
pipeline (with the stall watchdog) -> every exit code 0 and size > 0 -> fsync ->
verify (checksum, list, restore into a scratch database) -> take the final name
without replacing anything there -> fsync dir -> manifest (private temp + no-replace
rename) -> retention. Anything failing on the way removes the private directory
with everything in it; nothing at the final name, no manifest.
"""

from __future__ import annotations

import os
import secrets
import time

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import common as c
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import files as fl
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import manifest as mf
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import pipeline as pl
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import tools as tl
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.base import Tooling

VERIFY_LEVELS = ['none', 'checksum', 'list', 'restore']
FORMATS = {'postgresql': ['custom', 'directory', 'plain'], 'mysql': ['plain'], 'sqlite': ['sqlite']}
COLLECTION = 'dbops.maintenance'


def scratch_name(prefix, what):
    return '%s%s_%s' % (prefix, what, secrets.token_hex(4))


def compare_counts(want, got):
    """Differences between two {table: rows} maps as a list of strings."""
    problems = []
    for name in sorted(set(want) | set(got)):
        if name not in got:
            problems.append('%s missing after restore' % name)
        elif name not in want:
            problems.append('%s not in the source' % name)
        elif want[name] != got[name]:
            problems.append('%s has %s rows, the source had %s' % (name, got[name], want[name]))
    return problems


# ==========================================================================
# db_backup
# ==========================================================================


class Backup:
    def __init__(self, module, adapter):
        self.module = module
        self.p = module.params
        self.db = adapter
        self.engine = self.p['engine']
        self.tools = Tooling.for_module(module, adapter)
        self.result = dict(changed=False)

    # --- validation ------------------------------------------------------------------
    def options(self):
        p = self.p
        fmt = p['format'] or self.tools.default_format()
        if fmt not in FORMATS[self.engine]:
            raise DbopsError('format %s is not available for %s; use %s.'
                             % (fmt, self.engine, ' or '.join(FORMATS[self.engine])))
        compression = p['compression']
        if p['jobs'] is not None and p['jobs'] > 1 and fmt != 'directory':
            raise DbopsError('jobs > 1 needs format directory (pg_dump dumps tables in parallel only into a '
                             'directory); with format %s use jobs 1.' % fmt)
        if p['jobs'] is not None and p['jobs'] < 1:
            raise DbopsError('jobs must be 1 or more.')
        level = p.get('compression_level')
        if level is not None and not 1 <= level <= 19:
            raise DbopsError('compression_level must be between 1 and 19 (gzip/lz4 take 1-9).')
        for opt in ('keep_last',):
            if p[opt] is not None and p[opt] < 1:
                raise DbopsError('keep_last must be 1 or more (the backup just taken is always kept).')
        keep_days = p['keep_days']
        if keep_days is not None and keep_days <= 0:
            raise DbopsError('keep_days must be more than 0.')
        stall = p.get('stall_timeout')
        if stall is not None and stall < 0:
            raise DbopsError('stall_timeout must be 0 (no watchdog) or more seconds.')
        return dict(format=fmt, compression=compression, compression_level=level, jobs=p['jobs'] or 1,
                    schema_only=p['schema_only'], verify=p['verify'], keep_days=keep_days,
                    reuse_within=c.parse_duration(p['reuse_within'], 'reuse_within'),
                    stall_timeout=300.0 if stall is None else float(stall))

    def where(self, phase):
        """The server and the phase, for the messages of the stall watchdog."""
        return self.tools.where(phase)

    def source_identity(self):
        return self.tools.source_identity()

    def label(self):
        return c.safe_label(self.p['label'] or self.tools.default_label())

    # --- reuse ---------------------------------------------------------------------------
    def find_reusable(self, group, opts, selection, now):
        if not opts['reuse_within']:
            return None
        wanted_tables = sorted(t['name'] for t in selection['tables'])
        for mpath, m in reversed(group):
            age = (now - c.parse_iso(m['finished_at'])).total_seconds()
            if age > opts['reuse_within']:
                break
            if (m.get('engine') != self.engine or m.get('database') != self.source_identity()
                    or m.get('format') != opts['format'] or m.get('compression') != opts['compression']
                    or bool(m.get('schema_only')) != bool(opts['schema_only'])
                    or sorted(t['name'] for t in m.get('tables', [])) != wanted_tables
                    or (m.get('verification') or {}).get('level', 'none') == 'none'
                    or VERIFY_LEVELS.index(m['verification']['level']) < VERIFY_LEVELS.index(opts['verify'])):
                continue
            path = mf.backup_file_of(mpath, m)
            try:
                mf.check_backup_integrity(path, m)
            except DbopsError as e:
                self.module.warn('Not reusing %s: %s' % (path, e))
                continue
            return mpath, m, age
        return None

    # --- the run ---------------------------------------------------------------------------
    def run(self):
        p, module = self.p, self.module
        opts = self.options()
        dest = os.path.abspath(os.path.expanduser(p['dest']))
        # a dangling symlink, a non-directory, a world-writable dest without the sticky bit, or one owned by
        # another user is refused (in check mode too); a missing dest is created 0700 (not in check mode)
        mode = fl.parse_dest_mode(p['dest_mode']) if p.get('dest_mode') is not None else None
        _exists, mode_before = fl.check_dest(dest, create=not module.check_mode, mode=mode)
        if mode_before is not None:
            self.result['dest_mode'] = dict(before=mode_before, after='%04o' % mode)
        if not module.check_mode and not os.access(dest, os.W_OK):
            raise DbopsError('Cannot write into dest %s (permission denied for the module user). Choose a dest it can '
                             'write to.' % dest)
        selection = self.tools.select_tables(p['tables'], p['exclude_tables'])
        label = self.label()
        now = c.utcnow()
        group = [(mp, m) for mp, m in mf.list_backups(dest) if m.get('label') == label]
        self.result.update(server=self.db.server_info(), label=label, dest=dest)

        reuse = self.find_reusable(group, opts, selection, now)
        if reuse:
            mpath, m, age = reuse
            pruned = self.retention(dest, group, opts, now, protect={mpath})
            self.result.update(changed=bool(pruned) or mode_before is not None, reused=True, path=mf.backup_file_of(mpath, m),
                               manifest_path=mpath, manifest=m, size=m['size'], sha256=m['sha256'],
                               duration=0.0, throughput=0, verified=m['verification']['level'], pruned=pruned,
                               msg='Reused the backup taken %.0f seconds ago (reuse_within=%s).'
                                   % (age, p['reuse_within']))
            return self.result

        ext = self.tools.extension(opts['format'], opts['compression'])
        name = '%s-%s%s' % (label, c.timestamp_name(now), ext)
        n = 1
        while os.path.lexists(os.path.join(dest, name)) or os.path.lexists(os.path.join(dest, name + c.MANIFEST_SUFFIX)):
            name = '%s-%s-%d%s' % (label, c.timestamp_name(now), n, ext)
            n += 1
        final = os.path.join(dest, name)
        if module.check_mode:
            if hasattr(self.tools, 'check_options'):
                self.tools.check_options(opts)  # what the dump would refuse (e.g. zstd with pg_dump < 16)
            future = group + [(final + c.MANIFEST_SUFFIX, dict(finished_at=c.iso(now), file=name))]
            would = c.plan_retention(future, p['keep_last'], opts['keep_days'], now,
                                     protect={final + c.MANIFEST_SUFFIX})
            self.result.update(changed=True, reused=False, path=final, manifest_path=final + c.MANIFEST_SUFFIX,
                               pruned=[os.path.join(dest, m['file']) for _mp, m in would],
                               tables=[t['name'] for t in selection['tables']], verified='none',
                               msg='Would back up %s to %s (check mode: nothing written).'
                                   % (self.source_identity(), final))
            tools = self.tools.check_mode_tools()
            if tools:
                self.result['tools'] = tools
            return self.result

        fl.cleanup_stale_tmp(dest)
        manifest = self.take(dest, final, opts, selection, now, label)
        pruned = self.retention(dest, group + [(final + c.MANIFEST_SUFFIX, manifest)], opts, c.utcnow(),
                                protect={final + c.MANIFEST_SUFFIX})
        self.result.update(
            changed=True, reused=False, path=final, manifest_path=final + c.MANIFEST_SUFFIX, manifest=manifest,
            size=manifest['size'], sha256=manifest['sha256'], duration=manifest['duration'],
            throughput=manifest['throughput'], verified=manifest['verification']['level'], pruned=pruned,
            msg='Backed up %s: %s in %.1fs (%s/s), verified: %s.' % (
                self.source_identity(), fl.human_size(manifest['size']), manifest['duration'],
                fl.human_size(manifest['throughput']), manifest['verification']['level']))
        return self.result

    def retention(self, dest, group, opts, now, protect):
        doomed = c.plan_retention(group, self.p['keep_last'], opts['keep_days'], now, protect=protect)
        if not doomed or self.module.check_mode:
            return [os.path.join(dest, m['file']) for _mp, m in doomed]
        return c.apply_retention(dest, doomed)

    def take(self, dest, final, opts, selection, now, label):
        # everything temporary lives in a private 0700 directory with an unpredictable name inside dest
        work = fl.WorkDir(dest)
        try:
            return self._take(work, dest, final, opts, selection, now, label)
        finally:
            work.cleanup()

    def _take(self, work, dest, final, opts, selection, now, label):
        tmp = work.join(os.path.basename(final))
        layout = self.tools.layout(opts['format'])
        progress = c.Progress(work.join('progress.json'), size_of=lambda: c.current_size(tmp))
        snap = None
        started = time.monotonic()
        try:
            want_counts = None
            if self.tools.whole_file:
                sha, size, tools, want_counts = self.take_sqlite(tmp, opts, progress, dest)
                files = None
            else:
                snapshot = None
                if opts['verify'] == 'restore':
                    snap, snapshot = self.tools.export_snapshot()
                plan = self.tools.dump_plan(opts, tmp, selection, snapshot=snapshot)
                pipe = pl.Pipeline(plan['stages'], redact=self.db.redact, progress=progress,
                                   stall_timeout=opts['stall_timeout'], where=self.where('dump'),
                                   watch_path=tmp if plan['writes_dir'] else None)
                if plan['writes_dir']:
                    pipe.run()
                else:
                    self.run_into(pipe, tmp, dest)
                if not pipe.ok:
                    raise self.pipe_failure(pipe, 'The dump of %s' % self.source_identity(), dest)
                tools = tl.resolve_versions(plan['tools'])  # version probes ran while the dump did
                if plan['writes_dir']:
                    pl.fsync_tree(tmp)
                    sha, files, size = pl.sha256_tree(tmp)
                else:
                    sha, files, size = pipe.sha256.hexdigest(), None, pipe.bytes
                if size == 0:
                    raise DbopsError('The dump of %s is empty (0 bytes) although every process exited 0; '
                                     'nothing was kept.' % self.source_identity(), processes=pipe.report())
                if snap is not None:
                    want_counts = self.tools.exact_counts(snap, selection['tables'])
                    snap.close()
                    snap = None
            finished = c.utcnow()
            duration = time.monotonic() - started
            manifest = self.manifest(final, opts, selection, now, finished, duration, sha, size, files, tools,
                                     label, layout)
            if want_counts is not None:
                for name in selection.get('without_data', ()):
                    if name in want_counts:
                        want_counts[name] = 0  # the dump tool writes its structure only (see the manifest)
            manifest['verification'] = self.verify(tmp, manifest, opts['verify'], want_counts)
            if want_counts is not None:
                manifest['row_counts'] = want_counts
            # never onto something planted at the final name (a symlink is neither followed nor replaced)
            fl.take_final_name(tmp, final)
            fl.fsync_dir(dest)
        except BaseException:
            if snap is not None:
                snap.close()
            progress.remove()
            raise
        progress.remove()
        manifest['progress'] = progress.samples
        try:
            fl.write_json_atomic(final + c.MANIFEST_SUFFIX, manifest, replace=False, workdir=work.path)
        except BaseException:
            fl.remove_path(final)  # no backup without its manifest
            raise
        return manifest

    @staticmethod
    def open_tmp(tmp, dest):
        try:
            return fl.create_private(tmp)
        except OSError as e:
            raise DbopsError(fl.disk_error_message(e, dest))

    def run_into(self, pipe, tmp, dest):
        """Run the pipeline into the new private file tmp and fsync it; a disk error names dest."""
        fd = self.open_tmp(tmp, dest)
        try:
            pipe.run_to_file(fd, dest)
            os.fsync(fd)
        except OSError as e:
            raise DbopsError(fl.disk_error_message(e, dest, pipe.bytes))
        finally:
            os.close(fd)

    @staticmethod
    def pipe_failure(pipe, what, dest):
        """The DbopsError of a failed pipeline; a tool that ran out of space says so, with dest's free space."""
        err = pipe.failure(what)
        if any('No space left' in st.stderr for st in pipe.stages):
            err = DbopsError('%s %s' % (err, fl.disk_error_message(OSError(28, 'ENOSPC'), dest)), **err.details)
        return err

    def take_sqlite(self, tmp, opts, progress, dest):
        raw = tmp + '.raw'
        try:
            self.tools.backup_to(raw, schema_only=opts['schema_only'], dest=dest)
            from ansible_collections.dbops.maintenance.plugins.module_utils.backup.sqlite import integrity
            _checks, _names, counts = integrity(raw)
            stages, tools = self.tools.compress_stages(opts)
            pipe = pl.Pipeline(stages, stdin_path=raw, progress=progress, stall_timeout=opts['stall_timeout'],
                               where=self.where('compress'))
            self.run_into(pipe, tmp, dest)
            if not pipe.ok:
                raise self.pipe_failure(pipe, 'Compressing the SQLite backup', dest)
            tools = dict(tl.resolve_versions(tools),
                         sqlite=dict(version=self.db.server_info()['version'], method='online backup API'))
            return pipe.sha256.hexdigest(), pipe.bytes, tools, counts
        except OSError as e:
            raise DbopsError(fl.disk_error_message(e, dest))
        finally:
            fl.remove_path(raw)
            fl.remove_path(raw + '-journal')

    def manifest(self, final, opts, selection, started, finished, duration, sha, size, files, tools, label, layout):
        m = dict(kind=c.MANIFEST_KIND, manifest_version=c.MANIFEST_VERSION, created_by='%s.db_backup' % COLLECTION,
                 file=os.path.basename(final), layout=layout, label=label, engine=self.engine,
                 server=self.db.server_info(), database=self.source_identity(), format=opts['format'],
                 compression=opts['compression'], compression_level=opts['compression_level'], jobs=opts['jobs'],
                 schema_only=bool(opts['schema_only']), size=size, sha256=sha,
                 started_at=c.iso(started), finished_at=c.iso(finished), duration=round(duration, 3),
                 throughput=int(size / duration) if duration > 0 else 0, tools=tools,
                 tables=[dict(name=t['name'], rows_estimate=t.get('rows_estimate')) for t in selection['tables']],
                 tables_selected=[t['name'] for t in selection['include']],
                 tables_excluded=[t['name'] for t in selection['exclude']],
                 database_facts=self.tools.database_facts())
        if selection.get('without_data'):
            m['tables_without_data'] = list(selection['without_data'])
            m['tables_without_data_reason'] = selection.get('without_data_reason')
        if files is not None:
            m['files'] = files
        if m['server'].get('version_full'):
            m['server'] = dict(m['server'])
        return m

    # --- verification ----------------------------------------------------------------------
    def verify(self, path, manifest, level, want_counts):
        done = dict(level='none', checks=[])
        if level == 'none':
            return done
        digest = mf.check_backup_integrity(path, manifest)
        done['checks'].append(dict(check='checksum', sha256=digest, result='re-read from disk, matches'))
        done['level'] = 'checksum'
        if level == 'checksum':
            return done
        if self.tools.whole_file:
            return self.verify_sqlite(path, manifest, level, want_counts, done)
        done['checks'].append(dict(check='list', result=self.tools.verify_list(path, manifest)))
        done['level'] = 'list'
        if level == 'list':
            return done
        done['checks'].append(dict(check='restore', result=self.verify_restore(path, manifest, want_counts)))
        done['level'] = 'restore'
        return done

    def verify_sqlite(self, path, manifest, level, want_counts, done):
        prefix = self.p.get('scratch_prefix') or 'dbops_scratch_'
        scratch = fl.tmp_name(os.path.dirname(path), scratch_name(prefix, 'verify'))
        try:
            self.tools.expand(path, manifest, scratch)
            got = self.tools.verify_expanded(scratch, manifest, want_counts if level == 'restore' else None)
        finally:
            fl.remove_path(scratch)
        done['checks'].append(dict(check='list', result='PRAGMA integrity_check ok'))
        done['level'] = 'list'
        if level == 'restore':
            done['checks'].append(dict(check='restore', result=dict(tables=len(got), row_counts=got)))
            done['level'] = 'restore'
        return done

    def verify_restore(self, path, manifest, want_counts):
        prefix = self.p.get('scratch_prefix') or 'dbops_scratch_'
        name = scratch_name(prefix, 'verify')
        admin = self.tools.admin()
        created = False
        try:
            try:
                self.tools.create_database(admin, name, manifest)
            except DbopsError:
                raise
            except Exception as e:  # pylint: disable=broad-except
                raise DbopsError('verify=restore could not create the scratch database %s: %s. verify=restore needs '
                                 'a login that may create databases (PostgreSQL CREATEDB, MySQL CREATE); use '
                                 'verify=list otherwise. The backup was not kept.'
                                 % (name, self.db.redact(str(e).strip())))
            created = True
            stages, stdin = self.tools.restore_stages(path, manifest, name, jobs=manifest.get('jobs') or 1)
            pipe = pl.Pipeline(stages, redact=self.db.redact, stdin_path=stdin,
                               stall_timeout=self.options()['stall_timeout'],
                               where=self.where('verify=restore into %s' % name),
                               server_busy=lambda: self.tools.scratch_busy(admin, name))
            pipe.run()
            if not pipe.ok:
                err = pipe.failure('verify=restore: restoring the backup into the scratch database %s' % name)
                raise DbopsError('%s verify=restore needs a login that can create databases and recreate every '
                                 'object of the backup with its owner and privileges (a superuser, or the owner of '
                                 'all of them); use verify=list otherwise. The backup was not kept.' % err,
                                 **err.details)
            scratch = self.tools.open_db(name)
            try:
                got_tables = self.tools.tables_of(scratch, name)
                got = self.tools.exact_counts(scratch, got_tables)
            finally:
                scratch.close()
            problems = compare_counts(want_counts or {}, got)
            if problems:
                raise DbopsError('verify=restore: the restored copy differs from the source snapshot: %s%s. The '
                                 'backup was not kept.' % ('; '.join(problems[:20]), self.tools.counts_note))
            return dict(scratch_database=name, tables=len(got), rows=sum(got.values()), row_counts=got)
        finally:
            if created:
                try:
                    self.tools.drop_database(admin, name, force=True)
                except Exception as e:  # pylint: disable=broad-except
                    self.module.warn('Could not drop the scratch database %s: %s' % (name, e))
            admin.close()

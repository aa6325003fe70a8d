#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: report_write
short_description: Write the files of a run's report into one directory, in one step on the controller
version_added: 0.3.0
description:
  - Writes every file of a report (the report role's C(report.json) and C(report.html)) into one directory. It
    runs as an action plugin in the controller's own process, so writing a fleet report costs no module run (the
    report role used three, C(ansible.builtin.file), C(ansible.builtin.copy) and C(ansible.builtin.template)).
    The files are written on the controller, where ansible-playbook runs, whatever the task's host or
    C(delegate_to).
  - The directory is created (with its parents) when missing and given O(directory_mode). It must not be a
    symlink, a file, or writable by every user without the sticky bit.
  - Each file is written to a new temporary file in the directory (created with C(O_EXCL|O_NOFOLLOW), an
    unpredictable name and the final O(mode) from the start), then renamed over the old file, so a reader never
    sees half a report, and a symlink planted at a file's name is replaced, never followed.
  - A file whose content is already the given one is left alone; C(changed) is true only when a file or the
    directory's mode changed. In check mode nothing is written and the result tells what would be.
options:
  path:
    description:
      - The directory to write the files into (an absolute path).
    type: path
    required: true
  files:
    description:
      - File name (a plain name such as C(report.json), made of letters, digits, C(.), C(_) and C(-), no C(/)) to the file's
        content (a string, written as UTF-8). Render a template with the C(ansible.builtin.template) lookup.
    type: dict
    required: true
  mode:
    description:
      - The mode of each file written (octal, as a string). A mode with the write bit for others is refused.
    type: str
    default: '0640'
  directory_mode:
    description:
      - The mode of the directory (octal, as a string). A mode with the write bit for others is refused.
    type: str
    default: '0750'
attributes:
  check_mode:
    support: full
    description: Nothing is written; RV(written) lists the files that would be.
  diff_mode:
    support: none
    description: The files are the run's own output, not state of a managed host; a diff would repeat the report.
  platform:
    support: full
    platforms: posix
    description: Runs on the controller (an action plugin), which is POSIX.
notes:
  - The report role (roles/report) writes each run's report with it.
author:
  - dbops.maintenance engineers (@dbops)
'''

EXAMPLES = r'''
- name: Write a run's report (JSON and a page rendered from a template)
  dbops.maintenance.report_write:
    path: "/var/lib/dbops/reports/{{ run_id }}"
    files:
      report.json: "{{ report | to_nice_json(indent=2) }}\n"
      report.html: "{{ lookup('ansible.builtin.template', 'report.html.j2') }}"
  run_once: true
'''

RETURN = r'''
path:
  description: The directory the files are in.
  returned: always
  type: str
  sample: /var/lib/dbops/reports/20261203T072000Z
written:
  description: The files written (or, in check mode, that would be written), by name.
  returned: always
  type: list
  elements: str
  sample: [report.html, report.json]
unchanged:
  description: The files that already had the given content and were left alone.
  returned: always
  type: list
  elements: str
  sample: []
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dbops.maintenance.plugins.module_utils.report_files import (
    ARGUMENT_SPEC, ReportFilesError, write_report_files,
)


def main():
    # Run as a module only if the action plugin is bypassed: then it writes on the host it runs on.
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = write_report_files(module.params, check_mode=module.check_mode)
    except (ReportFilesError, OSError) as e:
        module.fail_json(msg=str(e))
    module.exit_json(**result)


if __name__ == '__main__':
    main()

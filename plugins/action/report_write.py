# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""report_write, in the controller's process: no module is transferred or started (the module's documentation
is plugins/modules/report_write.py; the writing is module_utils/report_files.py)."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.dbops.maintenance.plugins.module_utils.report_files import (
    ARGUMENT_SPEC, ReportFilesError, write_report_files,
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False  # ansible-core 2.16+: nothing is run on the task's host

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _validation, params = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        try:
            result.update(write_report_files(params, check_mode=bool(self._play_context.check_mode)))
        except ReportFilesError as e:
            raise AnsibleActionFail(str(e))
        except OSError as e:
            raise AnsibleActionFail('Cannot write the report into %s: %s. Nothing more was written.'
                                    % (params.get('path'), e))
        return result

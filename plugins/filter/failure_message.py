# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The message of a failed task, including the messages of a failed loop's items."""

from __future__ import annotations


def failure_message(result, default='unknown error'):
    """What went wrong in ``result`` (``ansible_failed_result``).

    A failed loop's own message is only "One or more items failed": the failed items' messages are
    joined instead. Otherwise the task's ``msg``, else its ``stderr``, else ``default``.
    """
    if not isinstance(result, dict):
        return default
    items = [r.get('msg') for r in result.get('results') or []
             if isinstance(r, dict) and r.get('failed') and r.get('msg')]
    if items:
        return '; '.join(str(m) for m in items)
    for key in ('msg', 'stderr'):
        if result.get(key):
            return str(result[key])
    return default


class FilterModule:
    def filters(self):
        return {'failure_message': failure_message}

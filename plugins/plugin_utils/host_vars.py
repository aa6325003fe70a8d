# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading a host's flat dbops_* variables in a lookup (the connection and backup_options lookups)."""

from __future__ import annotations


def getter(templar, variables):
    """get(name): the host's variable ``name``, templated, or None when the host does not have it."""
    variables = variables or {}

    def get(name):
        if name not in variables:
            return None
        return templar.template(variables[name])

    return get

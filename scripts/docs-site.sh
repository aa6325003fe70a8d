#!/usr/bin/env bash
# Build the collection's documentation site with antsibull-docs and Sphinx, offline:
#
#   bash scripts/docs-site.sh [DEST]      DEST defaults to build/docs-site; the site is DEST/build/html
#   bash scripts/docs-site.sh --lint      antsibull-docs lint-collection-docs (plugin docs, roles' argument
#                                         specs, the RST of README/changelog) on the tree
#
# The site has a page per module, role, filter and lookup (scripts/test.sh, stage docs, checks each one is there).
# No network: antsibull-docs sphinx-init makes the Sphinx project, and its intersphinx extension (which would
# download inventories from docs.python.org and docs.ansible.com) is switched off. The labels of Ansible's own
# docs the generated pages refer to are defined on an orphan page that links to them.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv="${DBOPS_VENV:-$here/.venv}"
[ -x "$venv/bin/antsibull-docs" ] || { echo "docs-site.sh: no antsibull-docs in $venv: run scripts/bootstrap.sh" >&2; exit 1; }
export PATH="$venv/bin:$PATH"
ANSIBLE_COLLECTIONS_PATH=$(bash "$here/scripts/collection-tree.sh")
export ANSIBLE_COLLECTIONS_PATH
coll=dbops.maintenance

if [ "${1:-}" = "--lint" ]; then
  cd "$here"
  exec antsibull-docs lint-collection-docs --plugin-docs .
fi

dest="${1:-$here/build/docs-site}"
rm -rf "$dest"
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
antsibull-docs sphinx-init --use-current --squash-hierarchy --dest-dir "$dest" \
  --project "$coll" --title "$coll" --html-short-title "$coll" --copyright "$coll engineers" "$coll" >/dev/null
cat >> "$dest/conf.py" <<'CONF'

# Offline (scripts/docs-site.sh): no intersphinx, it would download inventories from docs.python.org and
# docs.ansible.com.
extensions = [e for e in extensions if e != 'sphinx.ext.intersphinx']
intersphinx_mapping = {}
CONF
mkdir -p "$dest/rst"
chmod og-w "$dest/rst"  # antsibull-docs wants that directory only writable by itself
(cd "$dest" && antsibull-docs --config-file antsibull-docs.cfg collection --cleanup everything --use-current \
  --squash-hierarchy --dest-dir rst "$coll")
cat > "$dest/rst/ansible_docs_labels.rst" <<'RST'
:orphan:

Ansible documentation
=====================

The generated pages refer to these sections of Ansible's own documentation (this offline build has no
intersphinx).

.. _common_return_values:

Common return values
--------------------

`Return Values <https://docs.ansible.com/projects/ansible/latest/reference_appendices/common_return_values.html>`_
in the Ansible documentation.

.. _ansible_configuration_settings:

Ansible configuration settings
------------------------------

`Ansible Configuration Settings <https://docs.ansible.com/projects/ansible/latest/reference_appendices/config.html>`_
in the Ansible documentation.

.. _action_plugins:

Action plugins
--------------

`Action plugins <https://docs.ansible.com/projects/ansible/latest/plugins/action.html>`_ in the Ansible
documentation (the page of a module that runs as an action plugin, report_write, refers to it).
RST
(cd "$dest" && sphinx-build -M html rst build -c . -W --keep-going -q)
echo "$dest/build/html"

"""scripts/test.sh, stage docs: the docs site has a page for every module, role, filter and lookup.

    python scripts/check_docs_site.py SITE_HTML_DIR ANSIBLE_DOC

The lists come from ansible-doc itself (ANSIBLE_COLLECTIONS_PATH must reach the collection), so a new plugin
without a page fails here.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys


def main():
    site, doc = pathlib.Path(sys.argv[1]), sys.argv[2]
    missing, count = [], 0
    for kind in ("module", "role", "filter", "lookup"):
        out = subprocess.run([doc, "-t", kind, "-l", "-j", "dbops.maintenance"], capture_output=True, text=True,
                             check=True).stdout
        names = sorted(json.loads(out))
        if not names:
            missing.append(f"(no {kind} listed by ansible-doc)")
        for fqcn in names:
            count += 1
            page = site / f"{fqcn.rsplit('.', 1)[1]}_{kind}.html"
            if not page.is_file() or fqcn not in page.read_text(encoding="utf-8"):
                missing.append(str(page))
    print(f"docs site {site}: {count} pages (modules, roles, filters, lookups), each present")
    if missing:
        sys.exit("missing or empty pages: " + ", ".join(missing))


if __name__ == "__main__":
    main()

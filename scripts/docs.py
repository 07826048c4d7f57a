#!/usr/bin/env python3
"""Build the documentation site strictly: ``mkdocs build --strict`` (any warning fails).

``python3 scripts/docs.py [--serve]``; the site goes to a temporary folder (``--site DIR`` keeps
it, e.g. ``--site site``, which is gitignored). ``--serve`` runs ``mkdocs serve`` instead.
"""

from __future__ import annotations

import os
import sys
import tempfile

import _venv


def build_docs(python: str, site: str | None = None) -> None:
    # mkdocs-material prints a banner about its successor on every build; it is not a warning.
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    with tempfile.TemporaryDirectory(prefix="tanx-docs-") as tmp:
        _venv.run([python, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", site or tmp])


if __name__ == "__main__":
    python = _venv.ensure()
    if "--serve" in sys.argv[1:]:
        _venv.run([python, "-m", "mkdocs", "serve"])
    else:
        args = sys.argv[1:]
        build_docs(python, args[args.index("--site") + 1] if "--site" in args else None)
        print("==> docs built", flush=True)

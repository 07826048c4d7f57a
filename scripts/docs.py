#!/usr/bin/env python3
"""Build the documentation site strictly: ``mkdocs build --strict`` (any warning fails).

``python3 scripts/docs.py [--serve]``; the site goes to a temporary folder (``--site DIR`` keeps
it, e.g. ``--site site``, which is gitignored). ``--serve`` runs ``mkdocs serve`` instead.
Run alone, it installs only the ``docs`` extra into ``.venv`` (``scripts/test.py`` installs
``dev``, which includes it); ``--no-install`` uses the current interpreter as it is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import _venv


def build_docs(python: str, site: str | None = None) -> None:
    # mkdocs-material prints a banner about its successor on every build; it is not a warning.
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    with tempfile.TemporaryDirectory(prefix="tanx-docs-") as tmp:
        # Not ``--quiet``: it mutes the warnings ``--strict`` counts, and the build passes with
        # them (mkdocs 1.6). The INFO lines are dropped here instead.
        cmd = [python, "-m", "mkdocs", "build", "--strict", "--site-dir", site or tmp]
        print("==> " + " ".join(cmd[2:]), flush=True)
        result = subprocess.run(
            cmd, cwd=_venv.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for line in result.stdout.splitlines():
            if line.strip() and not line.startswith("INFO "):
                print(line, flush=True)
        if result.returncode != 0:
            sys.exit(result.returncode)


def main(args: list[str]) -> None:
    python = sys.executable if "--no-install" in args else _venv.ensure("docs")
    if "--serve" in args:
        _venv.run([python, "-m", "mkdocs", "serve"])
    else:
        build_docs(python, args[args.index("--site") + 1] if "--site" in args else None)
        print("==> docs built", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

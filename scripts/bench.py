#!/usr/bin/env python3
"""Run the benchmarks (``benchmarks/run.py``) in ``.venv`` with the ``bench`` extra installed.

``python3 scripts/bench.py [benchmarks/run.py options]``: the default scenarios, or those of
``--scenarios`` (``benchmarks/README.md``); each writes its own section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import sys

import _venv

if __name__ == "__main__":
    python = _venv.ensure()  # dev includes bench
    _venv.run([python, str(_venv.ROOT / "benchmarks" / "run.py"), *sys.argv[1:]])

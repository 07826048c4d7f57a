"""A conformance check a real account can run: does the exchange answer in the shapes this
library reads? ``python -m tanx_async.conformance --base-url URL [--record FILE] [--cancel ID]
[--refresh]`` (see ``__main__``; docs/conformance.md)."""

from __future__ import annotations

from ._redact import Redactor
from ._run import NO_SUCH_ORDER, Conformance
from ._shapes import Finding

__all__ = ["NO_SUCH_ORDER", "Conformance", "Finding", "Redactor"]

"""The one place tanx_async imports httpx.

The ecosystem is moving to the ``httpx2`` fork; keeping every import of httpx behind this module
makes that switch a one-line rename.
"""

from __future__ import annotations

import httpx

__all__ = ["httpx"]

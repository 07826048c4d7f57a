"""The library's logger (``tanx_async``). Nothing logged here ever carries a token or a key."""

from __future__ import annotations

import logging

logger = logging.getLogger("tanx_async")

# A library never prints on its own: without logging configured, records go nowhere.
logger.addHandler(logging.NullHandler())

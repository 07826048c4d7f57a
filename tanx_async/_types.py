"""``NOT_GIVEN``: an argument left out, so that ``None`` can mean "none" (as openai's ``NOT_GIVEN``).

``session.with_options(deadline=None)`` removes the deadline; leaving ``deadline`` out keeps the
session's.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["NOT_GIVEN", "NotGiven"]


class NotGiven:
    """The type of ``NOT_GIVEN``, the default of an argument that may also be None::

    def with_options(self, *, deadline: float | NotGiven | None = NOT_GIVEN) -> ...
    """

    __slots__ = ()

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __reduce__(self) -> str:
        return "NOT_GIVEN"  # pickles as the one instance


NOT_GIVEN: Final = NotGiven()

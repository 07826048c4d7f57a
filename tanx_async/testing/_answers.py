"""The shapes and texts of the sandbox's answers: which real shape the next answer takes, and the
invented texts (fixed, or a random sentence per answer).

The tables themselves (the profiles, the invented texts) are in ``_wire.py``; this room holds the
choice and the random streams it draws from, apart from the exchange's own: switching profiles
or texts leaves the orders and tokens a seed generates unchanged.
"""

from __future__ import annotations

import random

from ._wire import INVENTED_TEXTS, PROFILES, TEXTS, Profile, Shape, TextMode, pick_shape, random_sentence

__all__ = ["Answers"]


class Answers:
    """``profile`` and ``texts`` (checked when set), ``legacy_cancel_response`` and
    ``empty_cancel_payload`` (force the ``brine`` / ``ack`` cancel answer whatever the profile):
    ``SandboxExchange`` shows them under the same names and documents them. The ASGI app asks
    ``shape()`` once per answer and ``text(key)`` for each invented text."""

    def __init__(self, seed: int | None, profile: Profile, texts: TextMode) -> None:
        self.profile = profile
        self.texts = texts
        self.legacy_cancel_response = False
        self.empty_cancel_payload = False
        self._shape_rng = random.Random(None if seed is None else f"{seed}:shapes")
        self._text_rng = random.Random(None if seed is None else f"{seed}:texts")

    @property
    def profile(self) -> Profile:
        """The shapes of the answers (see ``SandboxExchange``)."""
        return self._profile

    @profile.setter
    def profile(self, value: Profile) -> None:
        if value not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}; got {value!r}")
        self._profile = value

    @property
    def texts(self) -> TextMode:
        """``"fixed"`` or ``"random"`` invented texts (see ``SandboxExchange``)."""
        return self._texts

    @texts.setter
    def texts(self, value: TextMode) -> None:
        if value not in TEXTS:
            raise ValueError(f"texts must be one of {', '.join(TEXTS)}; got {value!r}")
        self._texts = value

    def shape(self) -> Shape:
        """The shape of the next answer (a fresh draw per answer under ``"mixed"``)."""
        return pick_shape(self._profile, self._shape_rng)

    def text(self, key: str, **values: str) -> str:
        """The invented text ``key`` (see ``INVENTED_TEXTS``), or a random sentence."""
        if self._texts == "random":
            return random_sentence(self._text_rng)
        return INVENTED_TEXTS[key].format(**values)

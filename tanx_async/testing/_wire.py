"""How the sandbox writes its answers: number forms, time offsets, answer profiles, texts.

Sources are tagged: what tanX's docs (docs.tanx.fi) or the official connectors'
fixtures show is reproduced verbatim; what no source shows is marked **invented** (or
**inferred** where it is our reading of a real shape).

- Numbers: decimal strings in Python's float ``repr`` form, the form every real example has:
  ``"450.0"``, ``"1134.0"``, ``"0.0"``, ``"68733.81"``, and float artefacts such as
  ``"0.009000000000000001"`` where a value was computed.
- Times: ISO-8601 with the server's local offset. Real examples show ``+01:00`` and ``+02:00``;
  the sandbox uses the EU summer-time rule (``+02:00`` from the last Sunday of March to the last
  Sunday of October, ``+01:00`` otherwise), which is **inferred** from those two offsets.
- Profiles (``PROFILES``) select among the real shapes of an order answer; ``"mixed"`` picks
  one per answer from a seeded stream.
- Texts: every message the sandbox uses that no source shows is in ``INVENTED_TEXTS``;
  ``texts="random"`` replaces each with a fresh random sentence per answer.
"""

from __future__ import annotations

import functools
import random
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Final, Literal, get_args

__all__ = [
    "INVENTED_TEXTS",
    "PROFILES",
    "TEXTS",
    "Profile",
    "Shape",
    "TextMode",
    "iso",
    "num",
    "random_sentence",
    "server_offset",
]

Profile = Literal["docs", "full", "brine", "ack", "mixed"]
PROFILES: Final[tuple[Profile, ...]] = get_args(Profile)
"""Every accepted ``profile``; ``"mixed"`` varies the others per answer."""
#: The concrete shapes ``"mixed"`` picks from.
CONCRETE: Final[tuple[Profile, ...]] = ("docs", "full", "brine", "ack")
TextMode = Literal["fixed", "random"]
TEXTS: Final[tuple[TextMode, ...]] = get_args(TextMode)

#: Offsets the real examples show (server local time, CET/CEST).
WINTER: Final = timezone(timedelta(hours=1))
SUMMER: Final = timezone(timedelta(hours=2))


def num(value: float | int | Decimal) -> str:
    """A decimal string in the form the real API writes: ``"450.0"``, ``"0.0425"``,
    ``"0.009000000000000001"``: the float's shortest repr, never in exponent form."""
    if isinstance(value, bool):
        raise TypeError(f"not a number: {value!r}")
    text = repr(float(value))
    if "e" in text:  # 1.46e-05: no source shows an exponent
        text = format(Decimal(text), "f")
        text = text if "." in text else text + ".0"
    return text


@functools.lru_cache(maxsize=64)
def _summer_time(year: int) -> tuple[float, float]:
    """Unix start and end of EU summer time in ``year`` (last Sundays of March and October,
    01:00 UTC)."""

    def last_sunday(month: int) -> float:
        day = datetime(year, month + 1, 1, 1, tzinfo=timezone.utc) - timedelta(days=1)
        return (day - timedelta(days=(day.weekday() + 1) % 7)).timestamp()

    return last_sunday(3), last_sunday(10)


def server_offset(ts: float) -> timezone:
    """The server's offset at unix time ``ts``: +02:00 in EU summer time, else +01:00."""
    start, end = _summer_time(time.gmtime(ts).tm_year)
    return SUMMER if start <= ts < end else WINTER


def iso(ts: float, offset: timezone | None = None) -> str:
    """Unix seconds -> ``"2024-05-31T09:02:00+02:00"`` (the server's offset unless given)."""
    return datetime.fromtimestamp(ts, offset or server_offset(ts)).isoformat(timespec="seconds")


class Shape:
    """The shape of one answer: which fields an order carries and how the cancel echo looks.

    - ``docs``: each endpoint as its 2024 documented example: the cancel echo names the order
      ``id`` and carries ``stop_price``/``cancel_reason`` (null); list orders carries them too;
      GET order does not (the documented GET example lacks both) and adds ``trades``.
    - ``full``: ``stop_price`` and ``cancel_reason`` on every endpoint, GET included
      (**inferred**: what a server with the 2024-05 fields would send on GET too).
    - ``brine``: the 2022-23 Brine-era shapes: no ``stop_price``/``cancel_reason`` anywhere, the
      cancel echo names the order ``order_id`` (no ``id``), message "Cancelled Order
      Successfully".
    - ``ack``: the cancel answer's payload is ``{}`` (the Python connector's fixture);
      otherwise as ``docs``.
    """

    __slots__ = ("name", "offset")

    def __init__(self, name: Profile, offset: timezone | None = None) -> None:
        self.name = name
        #: None = the server's offset for each timestamp; mixed answers may force one.
        self.offset = offset

    def order_fields(self, endpoint: Literal["get", "list", "cancel"]) -> bool:
        """Whether orders on ``endpoint`` carry ``stop_price`` and ``cancel_reason``."""
        if self.name == "brine":
            return False
        return self.name == "full" or endpoint != "get"

    @property
    def legacy_cancel(self) -> bool:
        """The Brine-era cancel echo (``order_id``, "Cancelled Order Successfully")."""
        return self.name == "brine"

    @property
    def empty_cancel(self) -> bool:
        """The cancel answer's payload is ``{}``."""
        return self.name == "ack"


def pick_shape(profile: Profile, rng: random.Random) -> Shape:
    """The shape of the next answer under ``profile`` (``mixed`` draws one from ``rng``)."""
    if profile != "mixed":
        return Shape(profile)
    return Shape(rng.choice(CONCRETE), rng.choice((None, WINTER, SUMMER)))


INVENTED_TEXTS: Final[dict[str, str]] = {
    # cancel and get-order refusals: no source documents any of them
    "not_found": "Order not found",
    "already_cancelled": "Order is already cancelled",
    "already_filled": "Order is already filled",
    "already_queued": "Order is already queued for cancellation",
    "not_open": "Order is not open",
    "bad_order_id": "order_id must be a positive integer",
    # request validation (Django REST framework's wording, inferred)
    "bad_side": "please enter a valid side",
    "bad_limit": "limit must be a positive integer",
    "bad_page": "page must be a positive integer",
    "bad_start_time": "start_time must be a positive integer",
    "bad_end_time": "end_time must be a positive integer",
    "bad_order_by": "order_by must be one of asc, desc",
    "address_required": "eth_address: This field is required.",
    "address_invalid": "Enter a valid eth_address.",
    "refresh_required": "refresh: This field is required.",
    "bad_json": "JSON parse error - {detail}",
    "bad_method": 'Method "{method}" not allowed.',
    # injected faults
    "rate_limited": "Too many requests",
    "server_error": "Internal Server Error",  # a Go connector mock's text, not a real answer
    "bad_request": "Bad Request",  # a Go connector mock's text, not a real answer
    "status_error": "Something went wrong, please try again",
}
"""Every text the sandbox uses that no tanX source shows (key -> the fixed text)."""

_WORDS: Final = (
    "amber",
    "basalt",
    "cedar",
    "delta",
    "ember",
    "fjord",
    "granite",
    "harbor",
    "iris",
    "juniper",
    "kelp",
    "lantern",
    "meadow",
    "nectar",
    "onyx",
    "pebble",
    "quartz",
    "river",
    "saffron",
    "tundra",
    "umber",
    "velvet",
    "willow",
    "yarrow",
    "zephyr",
    "bright",
    "calm",
    "distant",
    "early",
    "gentle",
    "hollow",
    "idle",
    "jolly",
    "keen",
    "lively",
    "mellow",
    "narrow",
    "plain",
    "quiet",
    "rapid",
    "silent",
    "tidy",
    "upper",
    "vivid",
    "warm",
    "young",
    "across",
    "beneath",
    "beside",
    "beyond",
    "during",
    "inside",
    "near",
    "over",
    "under",
    "within",
    "carries",
    "finds",
    "follows",
    "holds",
    "keeps",
    "leaves",
    "meets",
    "paints",
    "reads",
    "sings",
    "turns",
    "walks",
)


def random_sentence(rng: random.Random) -> str:
    """A random sentence of 3-9 neutral words (none says queued, cancelled, filled, found...)."""
    words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 9))]
    return " ".join(words).capitalize() + rng.choice((".", "!", ""))

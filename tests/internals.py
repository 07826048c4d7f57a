"""The one place tests reach into tanx_async's private machinery.

Tests import private classes and reach into a session's internals only through here, so that a
move inside the package changes this file and not the tests.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Any

from tanx_async import AsyncTanxSession
from tanx_async import _constants as C
from tanx_async import _constants as constants
from tanx_async import _flow as flow_module
from tanx_async._attempts import Attempts, Response
from tanx_async._auth import Auth, AuthPaths, AuthRequest, jwt_expiry
from tanx_async._batch import Batch
from tanx_async._clock import ExchangeClock
from tanx_async._config import env_proxy
from tanx_async._convert import CancelEcho, structure, structure_order
from tanx_async._deadline import Deadline
from tanx_async._envelope import decode_envelope, is_access_token_error
from tanx_async._errors import APIStatusError, status_error_class
from tanx_async._express import Express
from tanx_async._flow import FlowControl
from tanx_async._httpx import httpx
from tanx_async._lane import Lane
from tanx_async._memory import CancelMemory, RecentIds
from tanx_async._pace import Pacer
from tanx_async._pipeline import Pipeline
from tanx_async._retry import RetryPolicy, is_ambiguous, parse_retry_after
from tanx_async._signer import PrivateKeySigner, random_wallet
from tanx_async._stream import _Buffer, stream_url
from tanx_async._transports import Headers, RawResponse, Sender, TransportName
from tanx_async._transports import _http11 as http11_module
from tanx_async._transports import _said as transport_notices
from tanx_async._transports._channel import Channel
from tanx_async._transports._connection import Connection as _Connection
from tanx_async._transports._deadlines import Deadlines as _Deadlines
from tanx_async._transports._http11 import Origin as _Origin
from tanx_async._transports._http11 import idle_timeout as _idle_timeout
from tanx_async._transports._http11 import request_head
from tanx_async._transports.anyio_sender import AnyioSender
from tanx_async._transports.httpx_sender import HttpxSender
from tanx_async._transports.native import Http11Sender
from tanx_async._validate import order_id as check_order_id
from tanx_async.models import queued_outcome
from tanx_async.orders import _checked_ids as checked_ids

__all__ = [
    "APIStatusError",
    "AnyioSender",
    "Attempts",
    "Auth",
    "AuthPaths",
    "AuthRequest",
    "Batch",
    "C",
    "CancelEcho",
    "CancelMemory",
    "Channel",
    "Deadline",
    "ExchangeClock",
    "Express",
    "FlowControl",
    "Headers",
    "Http11Sender",
    "HttpxSender",
    "Lane",
    "Pacer",
    "Pipeline",
    "PrivateKeySigner",
    "RawResponse",
    "RecentIds",
    "Response",
    "RetryPolicy",
    "Sender",
    "TransportName",
    "_Buffer",
    "_Connection",
    "_Deadlines",
    "_Origin",
    "_idle_timeout",
    "auth_of",
    "cancel_memory_of",
    "check_order_id",
    "checked_ids",
    "constants",
    "decode_envelope",
    "env_proxy",
    "flow_module",
    "http11_module",
    "httpx",
    "idle_connections",
    "in_use",
    "is_access_token_error",
    "is_ambiguous",
    "jwt_expiry",
    "keeper_of",
    "learn_clock",
    "parse_retry_after",
    "queued_outcome",
    "random_wallet",
    "request_head",
    "sender_of",
    "shares_pipeline",
    "start_transport",
    "status_error_class",
    "stream_url",
    "structure",
    "structure_order",
    "transport_notices",
    "use_anyio_transport",
]


def start_transport(session: AsyncTanxSession) -> Any:
    """Build the session's transport now (as its first request would) and return it."""
    sender, _ = session._pipeline.start(session._timeout)
    return sender


def sender_of(session: AsyncTanxSession) -> Any:
    """The transport the session built (None before first use or after close)."""
    return session._pipeline.sender


def in_use(session: AsyncTanxSession) -> int:
    """Connections the session's transport has checked out now (0 before first use)."""
    sender = sender_of(session)
    return 0 if sender is None else int(sender.connections_in_use())


def auth_of(session: AsyncTanxSession) -> Auth:
    """The session's token holder."""
    return session._pipeline.auth


def shares_pipeline(a: AsyncTanxSession, b: AsyncTanxSession) -> bool:
    """Whether two sessions share one pool and one set of tokens (a ``with_options`` view)."""
    return a._pipeline is b._pipeline


def keeper_of(session: AsyncTanxSession) -> Any:
    """The keep-warm task of the session's built-in transport (None when it has none)."""
    sender = sender_of(session)
    return getattr(sender, "_keeper", None)


def idle_connections(sender: Http11Sender) -> int:
    """Connections the native pool holds idle, ready for the next request."""
    return sum(len(idle) for idle in sender._idle.values())


def cancel_memory_of(session: AsyncTanxSession) -> Any:
    """The session's memory of its recent 2xx cancels (evidence for later refusals)."""
    return session.orders._cancels


def learn_clock(session: AsyncTanxSession, offset: float = 0.0) -> ExchangeClock:
    """As if an answer's ``Date`` header had shown the exchange's clock ``offset`` seconds off
    this machine's (a mocked exchange sends none, so expiry would only be judged on a 401)."""
    clock = auth_of(session).clock
    clock.observe({"date": formatdate(time.time() + offset, usegmt=True)}, 0.0)
    return clock


async def use_anyio_transport(session: AsyncTanxSession) -> AnyioSender:
    """Give the session the anyio transport (the default under trio) under asyncio too, before
    its first request, and return it."""
    pipeline = session._pipeline
    pipeline.start(session._timeout)  # the limiter (and a native sender, replaced unused)
    unused = pipeline.sender
    sender = AnyioSender(
        limits=pipeline.limits,
        verify=pipeline.verify,
        max_response_bytes=pipeline.max_response_bytes,
        trust_env=pipeline.trust_env,
    )
    pipeline.sender, pipeline.immediate_sender = sender, None
    if unused is not None:
        await unused.aclose()
    return sender

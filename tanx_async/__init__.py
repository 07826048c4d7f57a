"""tanx-async: an async client for the tanX exchange, built to pull orders off the book fast.

async with AsyncTanxSession(access_token=..., refresh_token=...) as session:
    outcomes = await session.orders.cancel_many(order_ids, concurrency=64)
"""

from __future__ import annotations

from ._auth import AuthPaths, Signer
from ._deadman import DeadManSwitch
from ._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BatchInterruptedError,
    BatchTimeoutError,
    CancelNotConfirmedError,
    CancelOutcomeUnknownError,
    EventLoopMismatchError,
    InternalServerError,
    InvalidOrderIdError,
    MissingDependencyError,
    NotAuthenticatedError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
    ResponseValidationError,
    SessionClosedError,
    StreamError,
    StreamRefusedError,
    TanxError,
)
from ._iterate import CancelIterator
from ._session import AsyncTanxSession
from ._signer import PrivateKeySigner
from ._stream import OrderStream
from ._types import NOT_GIVEN, NotGiven
from .events import RequestEvent
from .fleet import Fleet
from .models import (
    CancelOutcome,
    CancelStatus,
    Order,
    OrderState,
    OrderType,
    OrderUpdate,
    Side,
    StreamEvent,
    StreamGap,
    TokenPair,
    Trade,
    TradeUpdate,
)

__version__ = "0.1.0"

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncTanxSession",
    "AuthPaths",
    "AuthenticationError",
    "BadRequestError",
    "BatchInterruptedError",
    "BatchTimeoutError",
    "CancelIterator",
    "CancelNotConfirmedError",
    "CancelOutcome",
    "CancelOutcomeUnknownError",
    "CancelStatus",
    "DeadManSwitch",
    "EventLoopMismatchError",
    "Fleet",
    "InternalServerError",
    "InvalidOrderIdError",
    "MissingDependencyError",
    "NotAuthenticatedError",
    "NotFoundError",
    "NotGiven",
    "Order",
    "OrderState",
    "OrderStream",
    "OrderType",
    "OrderUpdate",
    "PermissionDeniedError",
    "PrivateKeySigner",
    "RateLimitError",
    "RequestEvent",
    "ResponseTooLargeError",
    "ResponseValidationError",
    "SessionClosedError",
    "Side",
    "Signer",
    "StreamError",
    "StreamEvent",
    "StreamGap",
    "StreamRefusedError",
    "TanxError",
    "TokenPair",
    "Trade",
    "TradeUpdate",
    "__version__",
]

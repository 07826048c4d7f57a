"""``python -m tanx_async.conformance``: check a real exchange against the shapes this library reads.

Read-only: it lists orders, gets one of them, asks the cancel endpoint about an id that cannot
exist (a refusal is the expected answer), watches the private stream for a few seconds; it
cancels a real order only when ``--cancel ID`` names one, and refreshes the tokens only with
``--refresh`` (the new pair goes to the CLI's token cache). Tokens come from the CLI's
environment variables (``TANX_ACCESS_TOKEN``, ``TANX_REFRESH_TOKEN``, or ``TANX_PRIVATE_KEY`` with
``TANX_ETH_ADDRESS``) and the CLI's token cache. Prints a report and exits 0 when every answer
matched, 1 when one deviated (2: usage error).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import IO

import anyio

from .._config import resolve_base_url
from ..cli._args import ENV_BASE_URL, Credentials, UsageError, credentials_from_env
from ..cli._tokens import TokenCache, identity_key, open_store
from ..models import TokenPair
from ._redact import Redactor
from ._run import Conformance
from ._shapes import Finding

__all__ = ["main", "report"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tanx_async.conformance",
        description=(
            "Check an exchange's answers against the shapes tanx-async reads (read-only unless "
            "--cancel or --refresh). Exit 0: everything matched; 1: a deviation; 2: usage error."
        ),
    )
    parser.add_argument(
        "--base-url", default=None, help=f"the exchange's base URL (default: ${ENV_BASE_URL}, else mainnet)"
    )
    parser.add_argument(
        "--record",
        metavar="FILE",
        default=None,
        help="write each exchange as a JSON line, every token, signature and address redacted",
    )
    parser.add_argument(
        "--cancel",
        metavar="ID",
        type=_order_id,
        default=None,
        help="also cancel this real order (nothing is cancelled without it)",
    )
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="also refresh the tokens (rotates them: the new pair goes to the token cache)",
    )
    parser.add_argument(
        "--stream-seconds",
        type=float,
        default=3.0,
        help="seconds to watch the private stream (0: skip it; default: %(default)s)",
    )
    parser.add_argument(
        "--no-token-cache", action="store_true", help="neither read nor write the token cache"
    )
    parser.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow plain http:// to a host that is not loopback",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per request (default: %(default)s)"
    )
    return parser


def _order_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an order id, got {text!r}") from None
    if not 0 < value < 2**63:
        raise argparse.ArgumentTypeError(f"expected an order id from 1 to 2**63-1, got {value}")
    return value


def report(findings: Sequence[Finding], out: IO[str]) -> int:
    """Print the findings; the exit status (0: all matched, 1: a deviation)."""
    deviations = [f for f in findings if not f.ok]
    for finding in findings:
        print(finding.line(), file=out)
    matched = sum(1 for f in findings if f.ok)
    print(f"\n{matched} matched, {len(deviations)} deviation(s)", file=out)
    return 1 if deviations else 0


async def _tokens(base_url: str, creds: Credentials, cache: TokenCache | None) -> tuple[str, str | None]:
    """An access token (and the refresh token): as given, or from a wallet login."""
    if creds.access_token is not None:
        return creds.access_token, creds.refresh_token
    if creds.private_key is None:
        raise UsageError(
            "the check needs TANX_ACCESS_TOKEN (a refresh token alone would have to be rotated: "
            "pass --refresh with both), or TANX_PRIVATE_KEY and TANX_ETH_ADDRESS to log in"
        )
    from .._session import AsyncTanxSession

    async with AsyncTanxSession(
        base_url=base_url,
        private_key=creds.private_key,
        eth_address=creds.eth_address,
        on_tokens=cache.save if cache else None,
        allow_insecure_http=True,
    ) as session:
        pair = await session.login()
    return pair.access, pair.refresh


async def _main(
    args: argparse.Namespace, env: Mapping[str, str], record: IO[str] | None, out: IO[str], err: IO[str]
) -> int:
    base_url = args.base_url or env.get(ENV_BASE_URL) or None
    try:
        url = resolve_base_url(base_url, None, allow_insecure_http=args.allow_insecure_http)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc).replace("base_url", "--base-url")) from None
    creds = credentials_from_env(env)
    cache: TokenCache | None = None
    if not args.no_token_cache:
        key = identity_key(url, creds)
        if key is not None:
            cache = TokenCache(open_store(), key, lambda text: print(text, file=err))
            creds = cache.apply(creds)
    access, refresh = await _tokens(url, creds, cache)
    redactor = Redactor([access, refresh, creds.refresh_token, creds.private_key, creds.eth_address])

    def saved(new_access: str, new_refresh: str) -> None:
        if cache is not None:
            cache.save(TokenPair(access=new_access, refresh=new_refresh))

    check = Conformance(
        url,
        access,
        refresh_token=refresh,
        record=record,
        redactor=redactor,
        allow_insecure_http=args.allow_insecure_http,
        timeout=args.timeout,
        on_tokens=saved if cache is not None else None,
    )
    print(f"conformance check of {url}", file=out)
    findings = await check.run(
        cancel_id=args.cancel, refresh=args.refresh, stream_seconds=args.stream_seconds
    )
    return report(findings, out)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.stream_seconds < 0 or args.timeout <= 0:
        parser.error("--stream-seconds must be >= 0 and --timeout > 0")
    try:
        with contextlib.ExitStack() as stack:
            record = stack.enter_context(open(args.record, "w", encoding="utf-8")) if args.record else None
            return anyio.run(_main, args, os.environ if env is None else env, record, sys.stdout, sys.stderr)
    except UsageError as exc:
        print(f"python -m tanx_async.conformance: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"python -m tanx_async.conformance: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

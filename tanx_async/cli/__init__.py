"""The ``tanx-async`` command line: cancel orders, list them, log in, run the demo.

Credentials come from the environment only (a key or token in argv shows up in ``ps``):
``TANX_ACCESS_TOKEN`` (+ ``TANX_REFRESH_TOKEN``), or ``TANX_PRIVATE_KEY`` + ``TANX_ETH_ADDRESS``.
Output is a table (rich when installed and stdout is a terminal, plain text otherwise) or, with
``--json``, JSON lines for scripts. Exit codes: 0 ok, 1 some cancel was not ok, 2 usage or
credentials, 3 an API error, 130 interrupted.

Modules, each importing only those below it: ``_args`` (parsing, credentials, exit codes),
``_output`` (tables, JSON lines, progress), ``_tokens`` (the token cache), ``_waiting`` (the
"waiting for the exchange" line on a terminal), ``_commands`` (the exchange commands and
``logout``), ``_demo`` (``tanx-async demo``), and this one (``main``: parse, dispatch, map errors
to exit codes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Mapping

from .._errors import APIError, InvalidOrderIdError, MissingDependencyError, NotAuthenticatedError, TanxError
from ._args import (
    EXIT_API,
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    build_parser,
    check_options,
)
from ._commands import run_command
from ._output import Output

__all__ = ["main"]


async def _run(args: argparse.Namespace, out: Output, env: Mapping[str, str]) -> int:
    if args.command == "demo":
        # Imported on demand: the demo pulls in the sandbox exchange, which no other command needs.
        from ._demo import run_from_cli

        return await run_from_cli(args, out)
    return await run_command(args, out, env)


def _configure_logging(verbose: bool) -> None:
    if verbose:
        logging.basicConfig(
            level=logging.DEBUG,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse printed it)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    _configure_logging(args.verbose)
    out = Output(json_mode=args.json, stdout=sys.stdout, stderr=sys.stderr)
    try:
        check_options(args, os.environ)
        return asyncio.run(_run(args, out, os.environ))
    except KeyboardInterrupt:
        out.note("interrupted")
        return EXIT_INTERRUPTED
    except UsageError as exc:
        out.note(f"tanx-async: error: {exc}")
        return EXIT_USAGE
    except (NotAuthenticatedError, MissingDependencyError, InvalidOrderIdError) as exc:
        out.note(f"tanx-async: error: {exc}")
        return EXIT_USAGE
    except APIError as exc:
        out.note(f"tanx-async: API error: {type(exc).__name__}: {exc}")
        return EXIT_API
    except TanxError as exc:
        out.note(f"tanx-async: error: {type(exc).__name__}: {exc}")
        return EXIT_API
    except BrokenPipeError:
        # `tanx-async orders --json | head`: the reader left; not worth a traceback. Point stdout
        # at /dev/null so the interpreter's final flush does not fail again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE

"""The ``tanx-async`` command line: cancel orders, list them, log in, run the demo, guard a fleet.

Credentials come from the environment only (a key or token in argv shows up in ``ps``):
``TANX_ACCESS_TOKEN`` (+ ``TANX_REFRESH_TOKEN``), or ``TANX_PRIVATE_KEY`` + ``TANX_ETH_ADDRESS``.
Output is a table (rich when installed and stdout is a terminal, plain text otherwise) or, with
``--json``, JSON lines for scripts. Exit codes: 0 ok, 1 some cancel was not ok, 2 usage or
credentials, 3 an API error (a refused token included, whatever the command), 130 interrupted
(Ctrl-C, SIGINT), 143 stopped by SIGTERM (a supervisor): both end the same way, with
``interrupted`` on stderr.

Modules, each importing only those below it: ``_args`` (parsing, credentials, exit codes),
``_output`` (tables, JSON lines, progress), ``_tokens`` (the token cache), ``_waiting`` (the
"waiting for the exchange" line on a terminal), ``_commands`` (the exchange commands and
``logout``), ``_demo`` (``tanx-async demo``), ``_guard`` (``tanx-async guard``), and this one
(``main``: parse, dispatch, map errors to exit codes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping

from .._errors import APIError, InvalidOrderIdError, MissingDependencyError, NotAuthenticatedError, TanxError
from ._args import (
    EXIT_API,
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
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
    if args.command == "guard":
        from ._guard import cmd_guard  # (the guard's modules: only this command needs them)

        return await cmd_guard(args, out)
    return await run_command(args, out, env)


class _Stopped(Exception):
    """The command was interrupted (SIGINT: Ctrl-C) or stopped (SIGTERM); ``code`` is its exit
    code. Both reach ``main`` as this one exception, handled in one place."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@contextlib.contextmanager
def _sigterm_cancels(task: asyncio.Task[int], stopped: list[int]) -> Iterator[None]:
    """While the command runs, SIGTERM cancels its task, as ``asyncio.run`` does for SIGINT: the
    same cancellation winds the command up (in-flight requests, the session) either way."""

    def on_sigterm() -> None:
        stopped.append(signal.SIGTERM)
        task.cancel()

    undo = _on_sigterm(task.get_loop(), on_sigterm)
    try:
        yield
    finally:
        if undo is not None:
            undo()


def _on_sigterm(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> Callable[[], object] | None:
    """Run ``callback`` on the loop at SIGTERM; returns how to undo that (None: nothing done)."""
    try:
        loop.add_signal_handler(signal.SIGTERM, callback)
    except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
        pass
    else:
        return lambda: loop.remove_signal_handler(signal.SIGTERM)
    try:
        previous = signal.signal(signal.SIGTERM, lambda *_: loop.call_soon_threadsafe(callback))
    except ValueError:  # not the main thread: signals are not ours to handle
        return None
    return lambda: signal.signal(signal.SIGTERM, previous)


def _run_until_stopped(args: argparse.Namespace, out: Output, env: Mapping[str, str]) -> int:
    """Run the command on a new event loop; ``_Stopped`` when SIGINT or SIGTERM ended it."""
    stopped: list[int] = []

    async def command() -> int:
        task = asyncio.current_task()
        assert task is not None
        with _sigterm_cancels(task, stopped):
            return await _run(args, out, env)

    try:
        return asyncio.run(command())
    except KeyboardInterrupt:  # SIGINT: asyncio.run cancelled the task, then raised this
        raise _Stopped(EXIT_INTERRUPTED) from None
    except asyncio.CancelledError:
        if stopped:
            raise _Stopped(EXIT_TERMINATED) from None
        raise


def _configure_logging(verbose: bool) -> None:
    """``-v``: the library's own log (the ``tanx_async`` logger) at DEBUG on stderr. Not the root
    logger: other libraries' debug chatter (asyncio's "Using selector") stays out."""
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        library = logging.getLogger("tanx_async")
        library.addHandler(handler)
        library.setLevel(logging.DEBUG)


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
        return _run_until_stopped(args, out, os.environ)
    except (_Stopped, KeyboardInterrupt) as stopped:  # the one place an interrupted command ends
        out.note("interrupted")
        return stopped.code if isinstance(stopped, _Stopped) else EXIT_INTERRUPTED
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

"""The dead man's switch, guarded side: ``session.orders.dead_man_switch()``.

tanX has no server-side "cancel all after N seconds without a heartbeat"; this is a client-side
one. Arming it starts a watchdog in a separate OS process (``python -m tanx_async._watchdog``,
in a new session so that a Ctrl-C or a signal to the bot's process group does not reach it) and
hands it, over its stdin pipe only (never argv or the environment), the session's tokens and what
it covers. While the block runs:

- a thread asks the session's event loop, ``timeout / DEADMAN_BEATS_PER_TIMEOUT`` apart, to write
  a heartbeat: the write itself runs on the loop, so a stalled loop (a blocking call, a swapped-out
  host) sends none;
- every new token pair (a refresh, a login) is handed over as the session stores it (a listener
  on its ``Auth``).

The watchdog cancels everything the switch covers (``_sweep``) when no heartbeat came for
``timeout`` seconds or its pipe closed (the bot killed, SIGKILL included, or crashed), then exits.
Leaving the block by an exception (cancellation included) sweeps from the session itself, within
``deadline``, before the exception goes on; a clear sweep then disarms the watchdog, anything less
hands over to it (its pipe is closed: it sweeps too). Leaving normally disarms it (``DISARM``),
and it exits without cancelling. One switch per session at a time.

With a ``redis://`` fleet, arming also stores the switch and a heartbeat key with a TTL of
``timeout`` in the fleet's Redis (``_remote_switch``), refreshed by a second thread the same way
(the refresh runs on the loop), for ``tanx-async guard`` on another machine (``_guard``): the one
way to cover a dead host, a frozen VM or a cut link. The session's pair is offered to the fleet
first (``FleetLink.offer``): the guard cancels with the fleet's pair. A clean leave removes the
switch from the fleet; an exception that leaves something open lets the key expire (the guard
sweeps what is left). ``local=False`` arms the fleet side alone, without a watchdog process.

Protocol (one JSON object per line, parent to watchdog): ``ARM`` (first: the configuration and
the tokens), ``HEARTBEAT``, ``TOKENS``, ``DISARM``. The watchdog answers on its stdout with plain
lines: ``ready``, ``fired <reason>``, ``disarmed``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import site
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from . import _constants as C
from . import _validate as V
from ._errors import NotAuthenticatedError, SessionClosedError, TanxError
from ._remote_switch import Armed, RemoteSwitch, new_switch_id
from ._sweep import sweep

if TYPE_CHECKING:
    from types import TracebackType

    from ._session import AsyncTanxSession
    from .fleet import Fleet
    from .models import TokenPair

__all__ = ["DeadManSwitch", "message"]

log = logging.getLogger("tanx_async.deadman")

#: The sessions (by their shared pipeline) with a switch armed now: never two watchdogs for one.
_ARMED: set[int] = set()
#: Environment variables the watchdog never inherits (it gets its tokens over the pipe only).
_SECRET_ENV = ("TANX_ACCESS_TOKEN", "TANX_REFRESH_TOKEN", "TANX_PRIVATE_KEY")
#: A write to a pipe up to this size is atomic (POSIX): a heartbeat is never half-written.
_PIPE_BUF = 4096


def _site_dirs() -> set[str]:
    """Where installed packages live (the child's ``sys.path`` has them already)."""
    paths = sysconfig.get_paths()
    dirs = {paths["purelib"], paths["platlib"], site.getusersitepackages()}
    with contextlib.suppress(AttributeError):  # (a virtualenv's old site.py lacks it)
        dirs.update(site.getsitepackages())
    return {str(Path(d).resolve()) for d in dirs}


def message(kind: str, **fields: Any) -> bytes:
    """One protocol line."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":")).encode() + b"\n"


class DeadManSwitch:
    """An armed-while-inside dead man's switch (``session.orders.dead_man_switch()``).

    ``async with session.orders.dead_man_switch(timeout=2.0) as switch:``. ``switch.pid`` is the
    watchdog's process id while armed; ``switch.fired`` becomes True once the watchdog said it
    fired (the session's loop stalled past ``timeout``, say): it is then cancelling every order it
    covers and exits, and the orders placed after that are not guarded."""

    def __init__(
        self,
        session: AsyncTanxSession,
        *,
        timeout: float,
        markets: Iterable[str] | None,
        deadline: float,
        log_file: str | os.PathLike[str] | None,
        local: bool = True,
    ) -> None:
        self._session = session
        self._timeout = V.seconds("timeout", timeout)
        if markets is not None and isinstance(markets, str):
            raise TypeError("markets must be a collection of market names, such as ['btcusdc']")
        self._markets = None if markets is None else frozenset(V.market_name(m) for m in markets)
        if self._markets is not None and not self._markets:
            raise ValueError("markets must name at least one market (None: every market of the account)")
        self._deadline = V.seconds("deadline", deadline)
        self._log_file = None if log_file is None else Path(log_file)
        self._process: subprocess.Popen[bytes] | None = None
        self._to: int | None = None  # our end of the watchdog's stdin
        self._from: int | None = None  # our end of the watchdog's stdout
        self._heard = b""
        self._fired: str | None = None
        self._disarmed = False  # the watchdog confirmed a DISARM
        self._lost = False
        self._used = False
        self._stop = threading.Event()
        self._key = id(session._pipeline)
        if not isinstance(local, bool):
            raise TypeError(f"local must be True or False, got {type(local).__name__}")
        self._local = local
        link = session._pipeline.fleet
        #: The fleet whose Redis carries the heartbeat key a guard watches (``_remote_switch``).
        self._fleet = link.fleet if link is not None and link.fleet.scheme != "file" else None
        if not local and self._fleet is None:
            raise ValueError(
                "local=False leaves the switch to a guard on another machine: the session needs a "
                "redis:// fleet (AsyncTanxSession(..., fleet=Fleet('redis://host:port/db')))"
            )
        self._remote: RemoteSwitch | None = None

    def __repr__(self) -> str:
        covers = "every market" if self._markets is None else ",".join(sorted(self._markets))
        state = f"armed, watchdog pid {self.pid}" if self._to is not None else "not armed"
        if self._remote is not None and self._remote.guarded:
            state += f", heartbeat in {self._remote.fleet.where} as {self._remote.armed.id}"
        return f"<DeadManSwitch timeout={self._timeout:g}s {covers} {state}>"

    @property
    def pid(self) -> int | None:
        """The watchdog's process id (None before arming)."""
        return None if self._process is None else self._process.pid

    @property
    def switch_id(self) -> str | None:
        """The switch's id in the fleet's Redis (None: no heartbeat key, no redis:// fleet)."""
        return None if self._remote is None or not self._remote.guarded else self._remote.armed.id

    @property
    def fired(self) -> bool:
        """The watchdog said it fired, or a guard claimed the switch (learnt from its next
        heartbeat): it cancels every order the switch covers."""
        self._listen()
        return self._fired is not None or (self._remote is not None and self._remote.claimed)

    # -- arming -----------------------------------------------------------------------------

    async def __aenter__(self) -> DeadManSwitch:
        session = self._session
        if self._used:
            raise RuntimeError("a DeadManSwitch arms once: call session.orders.dead_man_switch() again")
        if session.closed:
            raise SessionClosedError("this AsyncTanxSession is closed")
        if self._key in _ARMED:
            raise RuntimeError("a dead man's switch is already armed for this session")
        self._used = True
        _ARMED.add(self._key)
        try:
            if session.tokens is None:
                if session._pipeline.auth.signer is None:
                    raise NotAuthenticatedError(
                        "the dead man's switch hands the session's tokens to its watchdog: "
                        "pass access_token/refresh_token or a signer"
                    )
                await session.login()
            await self._start()
        except BaseException:
            self._close(kill=True)
            if self._remote is not None:
                await self._remote.aclose()
            _ARMED.discard(self._key)
            raise
        return self

    async def _start(self) -> None:
        if self._local:
            await self._start_local()
        if self._fleet is not None:
            await self._start_remote(self._fleet)
        token = anyio.lowlevel.current_token()
        if self._local:
            threading.Thread(
                target=self._beat_loop, args=(token,), name=f"tanx-deadman-{self.pid}", daemon=True
            ).start()
        if self._remote is not None and self._remote.guarded:
            threading.Thread(
                target=self._remote_loop, args=(self._remote, token), name="tanx-deadman-remote", daemon=True
            ).start()
        covers = "every market" if self._markets is None else ", ".join(sorted(self._markets))
        log.info(
            "dead man's switch armed: %s, timeout %g s, covering %s",
            " and ".join(
                what
                for what in (
                    f"watchdog pid {self.pid}" if self._local else "",
                    f"heartbeat key {self.switch_id} in the fleet {self._fleet.where}"
                    if self._fleet is not None and self.switch_id is not None
                    else "",
                )
                if what
            ),
            self._timeout,
            covers,
        )

    async def _start_local(self) -> None:
        self._process, self._to, self._from = await anyio.to_thread.run_sync(self._spawn)
        # From reading the tokens to listening for new ones, no await: no rotation slips between.
        tokens = self._session.tokens
        if tokens is None:
            raise NotAuthenticatedError("the session lost its tokens while the watchdog started")
        self._write(self._arm_message(tokens), blocking=True)
        auth = self._session._pipeline.auth
        auth.listeners.append(self._on_tokens)
        try:
            await self._until_ready()
        except BaseException:
            auth.listeners.remove(self._on_tokens)
            raise

    async def _start_remote(self, fleet: Fleet) -> None:
        """The heartbeat key in the fleet's Redis, for a guard on another machine. It cancels with
        the fleet's token pair for this identity: the session's is offered first (``offer``).
        Without a pair there, or without an answer: ``local=False`` raises (nothing would guard);
        otherwise an ERROR says the switch is local only."""
        link = self._session._pipeline.fleet
        assert link is not None
        why = None
        if link.key is None:
            why = "the session has no refresh token or signer, so the fleet keeps no token pair for a guard"
        elif not await link.offer():
            why = f"the fleet {fleet.where} neither holds nor took a token pair for it (it did not answer?)"
        else:
            armed = Armed(
                id=new_switch_id(),
                base_url=self._session.base_url,
                identity=link.key,
                markets=None if self._markets is None else tuple(sorted(self._markets)),
                timeout=self._timeout,
                deadline=self._deadline,
                host=socket.gethostname(),
                pid=os.getpid(),
                armed_at=time.time(),
                local=self._local,
                allow_insecure_http=self._session.base_url.startswith("http://"),
            )
            self._remote = RemoteSwitch(fleet, armed)
            try:
                await self._remote.arm()
            except Exception as exc:
                why = f"the fleet {fleet.where} did not store its heartbeat ({type(exc).__name__})"
        if why is None:
            return
        if not self._local:
            raise TanxError(f"the dead man's switch could not be armed for a guard: {why}")
        log.error("the dead man's switch is NOT covered by a guard on another machine: %s", why)

    def _remote_loop(self, remote: RemoteSwitch, token: anyio.lowlevel.EventLoopToken) -> None:
        """A thread: every interval, the loop itself refreshes the heartbeat key (a stalled loop,
        a dead host or a cut link lets it expire). One call at a time, each bounded."""
        interval = self._timeout / C.DEADMAN_BEATS_PER_TIMEOUT
        while not self._stop.wait(interval):
            try:
                anyio.from_thread.run(remote.beat, token=token)
            except Exception:  # the loop is closed or gone: nothing beats any more
                return

    def _spawn(self) -> tuple[subprocess.Popen[bytes], int, int]:
        env = {k: v for k, v in os.environ.items() if k not in _SECRET_ENV}
        here = str(Path(__file__).resolve().parents[1])  # the directory holding this tanx_async
        if here not in _site_dirs():  # a checkout: the child finds this tanx_async too
            env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        log_file: IO[bytes] | None = None
        try:
            if self._log_file is not None:
                log_file = open(self._log_file, "ab")  # noqa: SIM115 - handed to the child, closed below
            process = subprocess.Popen(
                [sys.executable, "-m", "tanx_async._watchdog"],
                stdin=stdin_r,
                stdout=stdout_w,
                stderr=log_file,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except BaseException:
            for fd in (stdin_w, stdout_r):
                os.close(fd)
            raise
        finally:
            for fd in (stdin_r, stdout_w):
                os.close(fd)
            if log_file is not None:
                log_file.close()
        os.set_blocking(stdout_r, False)
        return process, stdin_w, stdout_r

    def _arm_message(self, tokens: TokenPair) -> bytes:
        pipeline = self._session._pipeline
        verify = pipeline.verify
        if not isinstance(verify, bool):
            log.warning(
                "the watchdog verifies TLS with the default certificates (an SSLContext cannot cross)"
            )
            verify = True
        return message(
            "ARM",
            base_url=self._session.base_url,
            # (a plain-http base URL was allowed, or the session would not exist)
            allow_insecure_http=self._session.base_url.startswith("http://"),
            trust_env=bool(pipeline.trust_env),
            verify=verify,
            timeout=self._timeout,
            deadline=self._deadline,
            markets=None if self._markets is None else sorted(self._markets),
            parent=os.getpid(),
            access=tokens.access,
            refresh=tokens.refresh,
        )

    async def _until_ready(self) -> None:
        process = self._process
        assert process is not None
        until = time.monotonic() + C.DEADMAN_START_TIMEOUT
        while not self._listen(b"ready"):
            code = process.poll()
            if code is not None:
                raise TanxError(
                    f"the dead man's switch's watchdog exited with {code} before it was ready "
                    f"(its log: {self._log_file or 'stderr'})"
                )
            if time.monotonic() > until:
                raise TanxError(
                    f"the dead man's switch's watchdog was not ready within {C.DEADMAN_START_TIMEOUT:g} s"
                )
            await anyio.sleep(0.02)

    # -- while armed ---------------------------------------------------------------------------

    def _beat_loop(self, token: anyio.lowlevel.EventLoopToken) -> None:
        """A thread: every interval, the loop itself writes the heartbeat (nothing when stalled)."""
        interval = self._timeout / C.DEADMAN_BEATS_PER_TIMEOUT
        while not self._stop.wait(interval):
            try:
                anyio.from_thread.run_sync(self._beat, token=token)
            except Exception:  # the loop is closed or gone: nothing beats any more
                return

    def _beat(self) -> None:
        if self._stop.is_set() or self._listen():
            return  # (a watchdog that fired reads no more: it cancels, then exits)
        self._write(message("HEARTBEAT"))

    def _on_tokens(self, tokens: TokenPair) -> None:
        self._write(message("TOKENS", access=tokens.access, refresh=tokens.refresh))

    def _write(self, line: bytes, *, blocking: bool = False) -> bool:
        fd = self._to
        if fd is None or self._lost:
            return False
        try:
            if blocking or len(line) > _PIPE_BUF:
                os.set_blocking(fd, True)
                try:
                    os.write(fd, line)  # a few KiB into an empty pipe: it does not block
                finally:
                    os.set_blocking(fd, False)
            else:
                os.write(fd, line)
        except BlockingIOError:
            log.warning("the dead man's switch's watchdog is not reading its pipe: a message was dropped")
            return False
        except OSError:
            self._lost = True
            code = None if self._process is None else self._process.poll()
            if not self._listen():
                log.error(
                    "the dead man's switch's watchdog (pid %s) is gone (exit code %s): orders are NOT guarded",
                    self.pid,
                    code,
                )
            return False
        return True

    def _listen(self, wanted: bytes | None = None) -> bool:
        """Read what the watchdog said (never blocks); True when it said ``wanted`` (or, with
        ``wanted`` None, when it fired)."""
        fd = self._from
        if fd is not None:
            with contextlib.suppress(BlockingIOError, OSError):
                while chunk := os.read(fd, 4096):
                    self._heard += chunk
            while b"\n" in self._heard:
                line, self._heard = self._heard.split(b"\n", 1)
                self._hear(line.decode("utf-8", "replace").strip())
                if wanted is not None and line.strip() == wanted:
                    return True
        return wanted is None and self._fired is not None

    def _hear(self, line: str) -> None:
        if line == "disarmed":
            self._disarmed = True
        elif line.startswith("fired") and self._fired is None:
            self._fired = line[len("fired") :].strip() or "fired"
            log.error(
                "the dead man's switch FIRED (%s): its watchdog (pid %s) cancels every order it covers; "
                "orders placed from now on are not guarded",
                self._fired,
                self.pid,
            )

    # -- leaving ------------------------------------------------------------------------------

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            with anyio.CancelScope(shield=True):
                if exc is None:
                    self._stop.set()
                    await self._disarm()
                else:
                    await self._leave_by(exc)
        finally:
            with contextlib.suppress(ValueError):
                self._session._pipeline.auth.listeners.remove(self._on_tokens)
            if self._remote is not None:
                await self._remote.aclose()
            _ARMED.discard(self._key)
        # The exception (if any) goes on: never swallowed.

    async def _leave_by(self, exc: BaseException) -> None:
        """Sweep from the session (heartbeats go on meanwhile: the watchdog stays quiet while the
        loop runs), then disarm when nothing covered is open, else hand over to the watchdog."""
        log.warning(
            "leaving the dead man's switch's block by %s: cancelling every order it covers",
            type(exc).__name__,
        )
        result = None
        if not self._session.closed:
            with anyio.move_on_after(self._deadline + C.DEADMAN_VERIFY + 1.0):
                result = await sweep(self._session, self._markets, self._deadline, "session")
        self._stop.set()
        if result is not None and result.clear and not self.fired:
            await self._disarm()
            return
        if result is not None and result.clear:
            log.warning("nothing the switch covers is open, but it had fired: it finishes on its own")
        else:
            log.error("the session's own cancelling did not leave the account clear")
        remote = self._remote
        guard = remote is not None and remote.guarded and not remote.claimed
        if guard and remote is not None:
            log.error(
                "its heartbeat key %s is left to expire: a guard of the fleet %s cancels what is left "
                "(%g s from the last heartbeat)",
                remote.armed.id,
                remote.fleet.where,
                self._timeout,
            )
        process = self._process
        if process is not None and process.poll() is None:
            log.error("its watchdog (pid %s) cancels what is left, then exits", process.pid)
        elif remote is not None and remote.claimed:
            log.error(
                "a guard of the fleet %s claimed the switch: it cancels what is left", remote.fleet.where
            )
        elif not guard:
            log.error("its watchdog is gone: CHECK THE ACCOUNT")
        self._hand_over()

    async def _disarm(self) -> None:
        if self._remote is not None:
            await self._remote.disarm()
        process = self._process
        if process is None:
            return
        sent = self._write(message("DISARM"))
        self._close_pipe_to()
        until = time.monotonic() + C.DEADMAN_STOP_TIMEOUT
        while process.poll() is None:
            if self._listen():
                self._hand_over()  # it fired before the disarm: it finishes its cancelling, then exits
                return
            if time.monotonic() > until:
                log.warning("the disarmed watchdog (pid %s) did not exit: killed", process.pid)
                self._close(kill=True)
                return
            await anyio.sleep(0.02)
        self._listen()
        if self._disarmed:
            log.info(
                "dead man's switch disarmed: its watchdog (pid %s) exited without cancelling", process.pid
            )
        elif self._fired is None and sent:
            log.warning(
                "the dead man's switch's watchdog (pid %s) exited with %s without confirming the disarm",
                process.pid,
                process.returncode,
            )
        self._close(kill=False)

    def _hand_over(self) -> None:
        """Close the pipe (the watchdog fires at once on that, if it has not already) and let it
        finish on its own: it exits once done; a thread reaps it."""
        self._close_pipe_to()
        process = self._process
        if process is not None:
            threading.Thread(
                target=process.wait, name=f"tanx-deadman-reap-{process.pid}", daemon=True
            ).start()
        if self._from is not None:
            os.close(self._from)
            self._from = None

    def _close_pipe_to(self) -> None:
        if self._to is not None:
            os.close(self._to)
            self._to = None

    def _close(self, *, kill: bool) -> None:
        self._stop.set()
        process = self._process
        if kill and process is not None and process.poll() is None:
            process.kill()
        self._close_pipe_to()
        if self._from is not None:
            os.close(self._from)
            self._from = None
        if process is not None and (kill or process.poll() is not None):
            process.wait()

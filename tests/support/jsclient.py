"""Drive ``tests/js/client.mjs`` (matrix-js-sdk + Rust crypto) from async tests.

::

    JsClient.start(...) --spawn--> node client.mjs --stdout JSON lines--> _read_stdout()
          |                                                          |  every line kept
          |  command({"cmd": ...}) --stdin JSON line-->              v  in self.events
          '-- wait_for("message", predicate) <--- scans self.events, then waits for more

Every line is kept, so ``wait_for`` also finds an event that arrived before it was called.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import shutil
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

logger = logging.getLogger(__name__)

JS_DIR = Path(__file__).resolve().parent.parent / "js"
SCRIPT = JS_DIR / "client.mjs"

Event = dict[str, Any]
Predicate = Callable[[Event], bool]

IsolationMode = Literal["all", "only_signed"]
"""The crypto's device isolation mode (MSC4153): ``"all"`` shares room keys with every device
in the room (the default); ``"only_signed"`` only with devices cross-signed by their owner,
and decrypts only messages from such devices (Element's "exclude insecure devices")."""


@dataclass(frozen=True)
class SentMessage:
    """A message the client sent: its event id and the megolm session that encrypted it."""

    event_id: str
    session_id: str | None


class JsClientError(RuntimeError):
    """The node client failed, exited, or did not produce what was awaited."""


class JsClient:
    """One matrix-js-sdk client in a node child process."""

    def __init__(self, process: asyncio.subprocess.Process, user_id: str) -> None:
        self.process = process
        self.user_id = user_id
        self.events: list[Event] = []
        self._changed = asyncio.Condition()
        self._stderr: deque[str] = deque(maxlen=40)
        self._ids = itertools.count(1)
        self._readers = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]

    @classmethod
    async def start(
        cls,
        homeserver: str,
        user_id: str,
        password: str,
        auto_join: bool = True,
        timeout: float = 60,  # noqa: ASYNC109 (as in wait_for)
    ) -> Self:
        """Log in, start crypto and sync; return once the client reports "ready"."""
        node = shutil.which("node")
        if node is None:
            raise JsClientError("node is not on PATH")
        if not (JS_DIR / "node_modules").is_dir():
            raise JsClientError(
                f"{JS_DIR / 'node_modules'} is missing: run `npm ci --prefix tests/js`"
            )
        argv = [str(SCRIPT), "--homeserver", homeserver, "--user", user_id]
        argv += ["--password", password]
        if auto_join:
            argv.append("--auto-join")
        process = await asyncio.create_subprocess_exec(
            node,
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # Large lines (full decrypted content) exceed the default 64 KiB limit.
            limit=16 * 1024 * 1024,
        )
        client = cls(process, user_id)
        try:
            ready = await client.wait_for("ready", timeout=timeout)
        except BaseException:
            await client.close()
            raise
        client.user_id = ready["userId"]
        return client

    @property
    def device_id(self) -> str:
        """The device id from the "ready" event."""
        for event in self.events:
            if event.get("event") == "ready":
                return str(event["deviceId"])
        raise JsClientError("client is not ready")

    async def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            try:
                event = json.loads(raw)
            except json.JSONDecodeError:
                logger.warning("%s: not a JSON line on stdout: %r", self.user_id, raw[:200])
                continue
            if event.get("event") == "error":
                logger.warning("%s: %s", self.user_id, event.get("message"))
            async with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        async with self._changed:  # wake waiters so they see that the process is gone
            self._changed.notify_all()

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            self._stderr.append(line)
            logger.debug("%s stderr: %s", self.user_id, line)

    def _find(self, event: str, predicate: Predicate | None) -> Event | None:
        for seen in self.events:
            if seen.get("event") == event and (predicate is None or predicate(seen)):
                return seen
        return None

    def _failure(self, what: str) -> JsClientError:
        stderr = "\n".join(self._stderr) or "(no stderr)"
        errors = [e["message"] for e in self.events if e.get("event") == "error"]
        return JsClientError(
            f"{self.user_id}: {what}\nerrors: {errors}\n--- stderr tail ---\n{stderr}"
        )

    async def wait_for(
        self,
        event: str,
        predicate: Predicate | None = None,
        # An own timeout, not the caller's asyncio.timeout: the error then says which
        # event was missing and shows the client's stderr.
        timeout: float = 60,  # noqa: ASYNC109
    ) -> Event:
        """The first line of kind ``event`` (matching ``predicate``), seen before or after now."""

        def found_or_exited() -> bool:
            return self._find(event, predicate) is not None or self._stdout_closed()

        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(found_or_exited)
        except TimeoutError:
            raise self._failure(f"no {event!r} within {timeout:.0f}s") from None
        found = self._find(event, predicate)
        if found is None:
            # stdout closed: let the process exit and the stderr reader drain, for the report.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self.process.wait()
                    await self._readers[1]
            raise self._failure(f"exited ({self.process.returncode}) before {event!r}")
        return found

    def _stdout_closed(self) -> bool:
        return self._readers[0].done()

    async def command(self, cmd: dict[str, Any], timeout: float = 60) -> Event:  # noqa: ASYNC109
        """Send one command and return its result; raise if the client reports a failure."""
        command_id = next(self._ids)
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({**cmd, "id": command_id}).encode() + b"\n")
        await self.process.stdin.drain()
        result = await self.wait_for("result", lambda e: e.get("id") == command_id, timeout)
        if not result.get("ok"):
            raise self._failure(f"command {cmd.get('cmd')!r} failed: {result.get('error')}")
        return result

    async def send(self, room_id: str, body: str) -> str:
        """Send an m.text message (encrypted if the room is); return its event id."""
        return (await self.send_message(room_id, body)).event_id

    async def send_message(self, room_id: str, body: str) -> SentMessage:
        """Send an m.text message; return its event id and megolm session id (None when
        the room is not encrypted)."""
        result = await self.command({"cmd": "send", "roomId": room_id, "body": body})
        session = result.get("sessionId")
        return SentMessage(str(result["eventId"]), str(session) if session else None)

    async def delay_room_keys(self, seconds: float) -> None:
        """Hold this client's encrypted to-device messages (the room keys it shares) for
        ``seconds`` after the SDK believes them sent, so its next room event reaches others
        before its key does; 0 stops delaying."""
        await self.command({"cmd": "delay_room_keys", "ms": round(seconds * 1000)})

    async def set_isolation_mode(self, mode: IsolationMode) -> None:
        """Change who gets this client's room keys from its next message on (and whose
        messages it decrypts): see :data:`IsolationMode`. ``"only_signed"`` withholds keys
        from devices that are not cross-signed, such as the bridge's bot and ghosts."""
        await self.command({"cmd": "set_isolation_mode", "mode": mode})

    async def send_file(
        self,
        room_id: str,
        name: str,
        mimetype: str,
        data: bytes,
        msgtype: str | None = None,
    ) -> str:
        """Send ``data`` as an encrypted attachment (m.image for image/*, else m.file).

        The client encrypts the bytes (AES-256-CTR, as Element does), uploads the ciphertext
        and sends an m.room.message whose ``file`` holds the mxc URI and the key; return its
        event id.
        """
        cmd: dict[str, Any] = {
            "cmd": "send_file",
            "roomId": room_id,
            "name": name,
            "mimetype": mimetype,
            "dataBase64": base64.b64encode(data).decode("ascii"),
        }
        if msgtype is not None:
            cmd["msgtype"] = msgtype
        result = await self.command(cmd)
        return str(result["eventId"])

    async def fetch_file(self, file: dict[str, Any]) -> bytes:
        """Download and decrypt an attachment: ``file`` is a message's ``content["file"]``.

        Raises :class:`JsClientError` if the download fails or the ciphertext's sha256 is not
        the one in ``file``.
        """
        result = await self.command({"cmd": "fetch_file", "file": file})
        return _decoded(result)

    async def fetch_url(self, mxc: str) -> bytes:
        """Download the bytes behind an mxc URI as they are (an unencrypted ``url``)."""
        result = await self.command({"cmd": "fetch_file", "url": mxc})
        return _decoded(result)

    async def close(self, timeout: float = 15) -> None:  # noqa: ASYNC109
        """Ask the client to stop; kill it if it does not exit in time."""
        if self.process.returncode is None:
            with contextlib.suppress(ConnectionError):
                assert self.process.stdin is not None
                self.process.stdin.write(b'{"id": 0, "cmd": "stop"}\n')
                await self.process.stdin.drain()
                self.process.stdin.close()
            try:
                async with asyncio.timeout(timeout):
                    await self.process.wait()
            except TimeoutError:
                logger.warning("%s: node client did not stop; killing it", self.user_id)
                self.process.kill()
                await self.process.wait()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


def _decoded(result: Event) -> bytes:
    data = base64.b64decode(str(result["dataBase64"]), validate=True)
    if len(data) != result["size"]:
        raise JsClientError(f"fetch_file: got {len(data)} bytes, client said {result['size']}")
    return data

"""Stdlib JSON-RPC 2.0 over NDJSON client for Backlot's socket API, shared by the Blender addon and the CLI.

All network I/O runs on one background thread (a ``selectors`` loop); other threads talk to it through
an outbox and read what arrives from ``drain()``, so a caller such as Blender's UI timer never waits on
the network. ``call()`` is the blocking form for scripts and the command line. Stdlib only: Blender
bundles its own Python, so the backoff here is hand-written rather than tenacity's. The errors, codes
and message types live in ``protocol`` and are re-exported here.
"""
from __future__ import annotations

import collections
import itertools
import json
import os
import selectors
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .protocol import (BUSY, CONNECTED, CONNECTING, DEFAULT_HOST, DEFAULT_PORT, DISCONNECTED, INTERNAL_ERROR,
                       INVALID_PARAMS, INVALID_REQUEST, MAX_LINE, METHOD_NOT_FOUND, NO_BACKEND, NOT_CONNECTED,
                       PARSE_ERROR, PROTOCOL, STOPPED, TIMED_OUT, TOO_LARGE, UNAUTHORIZED, UNAUTHORIZED_STATE,
                       UNKNOWN_JOB, Backoff, CallTimeout, ClientError, Message, NotConnected, Notification, Reply,
                       RpcError, StateChanged, Unauthorized, encode, rpc_error)

__all__ = ["ApiClient", "Backoff", "CallTimeout", "ClientError", "Message", "NotConnected", "Notification", "Reply",
           "RpcError", "StateChanged", "Unauthorized", "rpc_error", "PROTOCOL", "DEFAULT_HOST", "DEFAULT_PORT",
           "PARSE_ERROR", "INVALID_REQUEST", "METHOD_NOT_FOUND", "INVALID_PARAMS", "INTERNAL_ERROR", "UNAUTHORIZED",
           "NO_BACKEND", "UNKNOWN_JOB", "TOO_LARGE", "BUSY", "NOT_CONNECTED", "TIMED_OUT", "MAX_LINE", "STOPPED",
           "CONNECTING", "CONNECTED", "DISCONNECTED", "UNAUTHORIZED_STATE", "config_dir"]


def config_dir(home: str | None = None) -> Path:
    """Backlot's config folder: ``<home>/config`` (``home`` or BACKLOT_HOME), else the platform's user config folder.

    The same folders ``platformdirs.user_config_path("backlot")`` gives the instance; this client is stdlib-only.
    """
    home = home or os.environ.get("BACKLOT_HOME")
    if home:
        return Path(home).expanduser().resolve() / "config"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "backlot" / "backlot"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "backlot"
    return Path(os.environ.get("XDG_CONFIG_HOME", "").strip() or Path.home() / ".config") / "backlot"


class _Pending:
    def __init__(self, method: str, tag: Any, deadline: float, sync: bool) -> None:
        self.method, self.tag, self.deadline = method, tag, deadline
        self.done = threading.Event() if sync else None
        self.result: Any = None
        self.error: ClientError | None = None


class ApiClient:
    """A connection to Backlot's socket API that reconnects by itself and never blocks its callers."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, token: str | None = None,
                 token_file: str | Path | None = None, client_name: str = "backlot-client",
                 topics: list[str] | None = None, reconnect: bool = True, connect_timeout: float = 2.0,
                 call_timeout: float = 30.0, backoff: Backoff | None = None, inbox_size: int = 10000) -> None:
        self.host, self.port = host, int(port)
        self._token, self._token_file = token, (Path(token_file).expanduser() if token_file else None)
        self.client_name = client_name
        self.topics = list(topics or [])
        self.reconnect, self.connect_timeout, self.call_timeout = reconnect, connect_timeout, call_timeout
        self.backoff = backoff or Backoff()
        self.inbox: collections.deque[Message] = collections.deque(maxlen=inbox_size)
        self.dropped = 0  # messages lost because nobody drained a full inbox
        self.state, self.message = STOPPED, ""
        self.server_info: Any = None
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._outbox: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._retry_now = threading.Event()
        self._connected = threading.Event()
        self._arrived = threading.Event()
        self._settled = threading.Event()  # set once a connect attempt has succeeded or failed
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> "ApiClient":
        """Start the network thread (connects, says hello, subscribes to ``topics``); returns at once."""
        if self._thread is None:
            self._set_state(CONNECTING, "")
            self._thread = threading.Thread(target=self._run, name=f"backlot-api-{self.host}:{self.port}",
                                            daemon=True)
            self._thread.start()
        return self

    def connect(self, timeout: float = 5.0) -> "ApiClient":
        """Start and wait until the hello succeeded; raises NotConnected or Unauthorized."""
        self.start()
        deadline = time.monotonic() + timeout
        while not self._connected.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
            if self.state == UNAUTHORIZED_STATE:
                raise Unauthorized(self.message)
            if (not self.reconnect and self._settled.is_set()) or time.monotonic() >= deadline:
                raise NotConnected(self.message or f"Backlot is not running at {self.host}:{self.port}.")
        return self

    def close(self, timeout: float = 2.0) -> None:
        """Stop the network thread and fail every outstanding call."""
        self._stop.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None
        for sock in (self._wake_r, self._wake_w):
            sock.close()
        self._set_state(STOPPED, "")

    def __enter__(self) -> "ApiClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def retry_now(self) -> None:
        """Skip the current backoff wait (e.g. the user pressed Connect)."""
        self._retry_now.set()
        self._wake()

    @property
    def connected(self) -> bool:
        """True after a successful hello until the connection drops."""
        return self._connected.is_set()

    # ---- calls -----------------------------------------------------------------------------------------
    def call(self, method: str, params: Any = None, timeout: float | None = None) -> Any:
        """Send a request and wait for its result; raises RpcError, NotConnected or CallTimeout."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("call() from the network thread would deadlock")
        pending, req_id = self._send(method, params, None, timeout, sync=True)
        assert pending.done is not None
        if not pending.done.wait((timeout or self.call_timeout) + 1.0):
            with self._lock:
                self._pending.pop(req_id, None)
            raise CallTimeout(f"Backlot did not answer {method} in time.")
        if pending.error is not None:
            raise pending.error
        return pending.result

    def call_async(self, method: str, params: Any = None, tag: Any = None, timeout: float | None = None) -> int:
        """Send a request without waiting; its Reply (with ``tag``) arrives through ``drain()``."""
        return self._send(method, params, tag, timeout, sync=False)[1]

    def drain(self, limit: int = 1000) -> list[Message]:
        """Up to ``limit`` messages that arrived since the last drain, oldest first; never blocks."""
        out: list[Message] = []
        popleft = self.inbox.popleft
        try:
            while len(out) < limit:
                out.append(popleft())
        except IndexError:
            pass
        return out

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a message is waiting (True) or ``timeout`` passes (False); takes nothing."""
        if self.inbox:
            return True
        self._arrived.clear()
        return bool(self.inbox) or self._arrived.wait(timeout)

    def next_message(self, timeout: float | None = None) -> Message | None:
        """The oldest message, waiting up to ``timeout`` seconds for one (None: forever); None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return self.inbox.popleft()
            except IndexError:
                pass
            self._arrived.clear()
            if self.inbox:
                continue
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self._arrived.wait(left)

    def _send(self, method: str, params: Any, tag: Any, timeout: float | None, sync: bool) -> tuple[_Pending, int]:
        req_id = next(self._ids)
        pending = _Pending(method, tag, time.monotonic() + (timeout or self.call_timeout), sync)
        if not self._connected.is_set():
            self._finish(req_id, pending, error=NotConnected(self.message or "Backlot is not connected."))
            return pending, req_id
        line = encode({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params if params is not None else {}})
        with self._lock:
            self._pending[req_id] = pending
            self._outbox.append(line)
        self._wake()
        return pending, req_id

    def _finish(self, req_id: int, pending: _Pending, result: Any = None, error: ClientError | None = None) -> None:
        pending.result, pending.error = result, error
        if pending.done is not None:
            pending.done.set()
        else:
            self._put(Reply(req_id, pending.method, pending.tag, result, error))

    def _put(self, msg: Message) -> None:
        if len(self.inbox) == self.inbox.maxlen:
            self.dropped += 1
        self.inbox.append(msg)
        self._arrived.set()

    def _set_state(self, state: str, message: str) -> None:
        if (state, message) != (self.state, self.message):
            self.state, self.message = state, message
            self._put(StateChanged(state, message))

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # buffer full (a wake-up is pending anyway) or closed
            pass

    # ---- network thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._session()
            except Unauthorized as err:
                self._drop_connection(UNAUTHORIZED_STATE, f"Backlot refused the token ({err.message}).")
                return  # retrying the same token is pointless; connect again after fixing it
            except (OSError, ClientError, ValueError) as err:
                self._drop_connection(DISCONNECTED, _describe(err, self.host, self.port))
            except Exception as err:  # a bug here must not kill the thread silently  # noqa: BLE001
                import logging  # here only: the command line's thin client imports no more than it uses

                logging.getLogger(__name__).exception("backlot API client failed")
                self._drop_connection(DISCONNECTED, _describe(err, self.host, self.port))
            self._settled.set()
            if self._stop.is_set() or not self.reconnect:
                return
            delay = self.backoff.next()
            self._retry_now.clear()
            self._interruptible_sleep(delay)
            if not self._stop.is_set():
                self._set_state(CONNECTING, self.message)

    def _interruptible_sleep(self, delay: float) -> None:
        deadline = time.monotonic() + delay
        while not self._stop.is_set() and not self._retry_now.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, 0.1))

    def _drop_connection(self, state: str, message: str) -> None:
        self._connected.clear()
        with self._lock:
            pending, self._pending = self._pending, {}
            self._outbox.clear()
        for req_id, p in pending.items():
            self._finish(req_id, p, error=NotConnected(message))
        self._set_state(state, message)

    def _token_text(self) -> str:
        if self._token:
            return self._token
        if self._token_file is None:
            raise NotConnected("No token set; paste Backlot's token or choose its token file.")
        try:
            return self._token_file.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise NotConnected(f"Cannot read the token file {self._token_file}.") from err

    def _session(self) -> None:
        token = self._token_text()
        with socket.create_connection((self.host, self.port), timeout=self.connect_timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            with selectors.DefaultSelector() as sel:
                sel.register(sock, selectors.EVENT_READ)
                sel.register(self._wake_r, selectors.EVENT_READ)
                hello_id = next(self._ids)
                out = bytearray(encode({"jsonrpc": "2.0", "id": hello_id, "method": "session.hello",
                                         "params": {"token": token, "client": self.client_name, "protocol": PROTOCOL}}))
                self._loop(sock, sel, out, hello_id)

    def _loop(self, sock: socket.socket, sel: selectors.BaseSelector, out: bytearray, hello_id: int) -> None:
        buf = bytearray()
        handshake: int | None = hello_id
        while not self._stop.is_set():
            if self._connected.is_set():
                with self._lock:
                    while self._outbox:
                        out += self._outbox.popleft()
            sel.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0))
            for key, events in sel.select(timeout=0.25):
                if key.fileobj is self._wake_r:
                    try:
                        self._wake_r.recv(4096)
                    except BlockingIOError:
                        pass
                    continue
                if events & selectors.EVENT_WRITE and out:
                    del out[:sock.send(out)]
                if events & selectors.EVENT_READ:
                    chunk = sock.recv(262144)
                    if not chunk:
                        raise NotConnected("Backlot closed the connection.")
                    buf += chunk
                    handshake = self._lines(buf, handshake, out)
            self._expire()

    def _lines(self, buf: bytearray, handshake: int | None, out: bytearray) -> int | None:
        while (end := buf.find(b"\n")) >= 0:
            raw = bytes(buf[:end])
            del buf[:end + 1]
            if raw.strip():
                handshake = self._receive(json.loads(raw), handshake, out)
        if len(buf) > MAX_LINE:
            raise NotConnected("Backlot sent a message larger than the client accepts.")
        return handshake

    def _receive(self, msg: Any, handshake: int | None, out: bytearray) -> int | None:
        if not isinstance(msg, dict):
            return handshake
        if "method" in msg and "id" not in msg:
            self._put(Notification(str(msg["method"]), msg.get("params")))
            return handshake
        msg_id = msg.get("id")
        if handshake is not None and msg_id == handshake:
            if "error" in msg:
                raise rpc_error(msg["error"])
            self.server_info = msg.get("result")
            if self.topics:  # the subscription goes out before any queued call
                sub_id = next(self._ids)
                with self._lock:
                    self._pending[sub_id] = _Pending("events.subscribe", None,
                                                     time.monotonic() + self.call_timeout, False)
                out += encode({"jsonrpc": "2.0", "id": sub_id, "method": "events.subscribe",
                                "params": {"topics": self.topics}})
            self.backoff.reset()
            self._connected.set()
            self._settled.set()
            self._set_state(CONNECTED, f"Connected to Backlot at {self.host}:{self.port}.")
            return None
        if not isinstance(msg_id, int):
            return handshake
        with self._lock:
            pending = self._pending.pop(msg_id, None)
        if pending is not None:
            if "error" in msg:
                self._finish(msg_id, pending, error=rpc_error(msg["error"] or {}))
            else:
                self._finish(msg_id, pending, result=msg.get("result"))
        return handshake

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            late = [(i, p) for i, p in self._pending.items() if p.deadline < now]
            for req_id, _ in late:
                del self._pending[req_id]
        for req_id, p in late:
            self._finish(req_id, p, error=CallTimeout(f"Backlot did not answer {p.method} in time."))


def _describe(err: Exception, host: str, port: int) -> str:
    if isinstance(err, ClientError):
        return err.message
    if isinstance(err, ConnectionRefusedError):
        return f"Backlot is not running at {host}:{port}."
    if isinstance(err, ValueError):
        return "Backlot sent a message that is not valid JSON."
    return f"Cannot reach Backlot at {host}:{port} ({err.__class__.__name__})."

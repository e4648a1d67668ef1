"""One pooled aiohttp session per service: created lazily inside the loop, recreated after a failure."""
from __future__ import annotations

import asyncio
import logging

import aiohttp

log = logging.getLogger(__name__)


class ConnectionPool:
    """Keeps one keep-alive ``ClientSession`` per service id; ``close()`` leaves none open."""

    def __init__(self, limit_per_service: int = 32, keepalive: float = 30.0) -> None:
        self.limit = limit_per_service
        self.keepalive = keepalive
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._closed = False
        self.created = 0  # sessions made so far (a reconnect makes a new one)

    def session(self, service_id: str) -> aiohttp.ClientSession:
        """The service's session, made now if there is none (call from inside the running loop)."""
        if self._closed:
            raise RuntimeError("connection pool is closed")
        asyncio.get_running_loop()  # a session made outside the loop would bind to the wrong one
        s = self._sessions.get(service_id)
        if s is None or s.closed:
            connector = aiohttp.TCPConnector(limit=self.limit, keepalive_timeout=self.keepalive,
                                             enable_cleanup_closed=True)
            s = aiohttp.ClientSession(connector=connector, raise_for_status=False,
                                      timeout=aiohttp.ClientTimeout(total=30, sock_connect=2))
            self._sessions[service_id] = s
            self.created += 1
        return s

    async def invalidate(self, service_id: str) -> None:
        """Close a service's session after a broken connection; the next request gets a fresh one."""
        s = self._sessions.pop(service_id, None)
        if s is not None and not s.closed:
            await s.close()

    @property
    def open_sessions(self) -> int:
        """Sessions currently open."""
        return sum(1 for s in self._sessions.values() if not s.closed)

    async def close(self) -> None:
        """Close every session; the pool refuses new ones afterwards."""
        self._closed = True
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(s.close() for s in sessions if not s.closed), return_exceptions=True)

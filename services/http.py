"""The one place the core sends HTTP: explicit timeouts, a body size cap, errors translated ``from err``."""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from backlot.services.errors import BacklotError, ErrorClass, ServiceError, classify_status, translate

DEFAULT_MAX_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Reply:
    """A finished HTTP exchange."""

    status: int
    body: bytes
    content_type: str
    latency_ms: float

    def json(self, service: str | None = None) -> Any:
        """The body as JSON, or a BAD_RESPONSE ServiceError saying what came instead."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as err:
            looks = "an HTML page" if self.body.lstrip()[:1] == b"<" else "something that is not JSON"
            raise ServiceError(f"answered with {looks} where JSON was expected", ErrorClass.BAD_RESPONSE,
                               service=service, status=self.status) from err


async def request(session: aiohttp.ClientSession, method: str, url: str, *, timeout: aiohttp.ClientTimeout,
                  service: str | None = None, json_body: Any = None, headers: dict[str, str] | None = None,
                  max_bytes: int = DEFAULT_MAX_BYTES, allow_redirects: bool = False, data: Any = None,
                  params: dict[str, str] | None = None) -> Reply:
    """Send one request and read at most ``max_bytes``; transport failures become ServiceError."""
    start = time.perf_counter()
    try:
        async with session.request(method, url, json=json_body, headers=headers, timeout=timeout,
                                   allow_redirects=allow_redirects, data=data, params=params) as resp:
            declared = resp.content_length
            if declared is not None and declared > max_bytes:
                raise ServiceError(f"answer too large ({declared} bytes)", ErrorClass.BAD_RESPONSE,
                                   service=service, status=resp.status)
            chunks, size = [], 0
            async for chunk in resp.content.iter_chunked(1 << 16):  # read() may return less than asked
                size += len(chunk)
                if size > max_bytes:
                    raise ServiceError(f"answer too large (over {max_bytes} bytes)", ErrorClass.BAD_RESPONSE,
                                       service=service, status=resp.status)
                chunks.append(chunk)
            body = b"".join(chunks)
            return Reply(resp.status, body, resp.headers.get("Content-Type", ""),
                         (time.perf_counter() - start) * 1000)
    except ServiceError:
        raise
    except (aiohttp.ClientError, OSError, TimeoutError) as err:
        raise translate(err, service) from err


async def get_json(session: aiohttp.ClientSession, url: str, *, timeout: aiohttp.ClientTimeout,
                   service: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[Any, Reply]:
    """GET a JSON document; a non-2xx answer is a ServiceError classed by its status."""
    reply = await request(session, "GET", url, timeout=timeout, service=service, max_bytes=max_bytes)
    if not 200 <= reply.status < 300:
        raise ServiceError(f"HTTP {reply.status} from {url}", classify_status(reply.status), service=service,
                           status=reply.status)
    return reply.json(service), reply


async def download(session: aiohttp.ClientSession, url: str, target: Path, *, timeout: aiohttp.ClientTimeout,
                   service: str | None = None, params: dict[str, str] | None = None,
                   headers: dict[str, str] | None = None, max_bytes: int = 16 * 1024**3) -> int:
    """Stream a file to ``target`` (written to a temp name, then renamed: no half files); returns its size."""
    part = target.with_name(target.name + ".part")
    size = 0
    try:
        async with session.get(url, params=params, headers=headers, timeout=timeout) as resp:
            if resp.status != 200:
                raise ServiceError(f"download of {target.name} answered HTTP {resp.status}",
                                   classify_status(resp.status), service=service, status=resp.status)
            fh = await asyncio.to_thread(part.open, "wb")
            try:
                async for chunk in resp.content.iter_chunked(1 << 18):
                    size += len(chunk)
                    if size > max_bytes:
                        raise ServiceError(f"download of {target.name} is larger than {max_bytes} bytes",
                                           ErrorClass.BAD_RESPONSE, service=service)
                    await asyncio.to_thread(fh.write, chunk)  # disk writes stay off the event loop
            finally:
                await asyncio.to_thread(fh.close)
        part.replace(target)
        return size
    except ServiceError:
        part.unlink(missing_ok=True)
        raise
    except (aiohttp.ClientError, OSError, TimeoutError) as err:
        part.unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, (ConnectionError, TimeoutError)) and err.errno is not None:
            raise BacklotError(f"cannot write {target}: {err.strerror}") from err
        raise translate(err, service) from err

"""Discovery: probe (host, port) candidates concurrently under one budget and keep the service registry."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import aiohttp

from backlot.services.backends import registry
from backlot.services.backends.spec import Identity, ProbeContext
from backlot.services.config import Settings
from backlot.services.errors import ServiceError
from backlot.services.text import one_line
from backlot.services.events import DiscoveryFinished, EventBus, ServiceDiscovered, ServiceForgotten, ServiceUpdated
from backlot.services.models import FoundBy, ServiceRecord

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Candidate:
    """One base URL to probe and why."""

    host: str
    port: int
    found_by: FoundBy
    scheme: str = "http"
    source: str = ""  # an explicit URL as the user wrote it (reported back when nothing answers there)

    @property
    def base_url(self) -> str:
        """``scheme://host:port``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class DiscoveryResult:
    """What one round found, and how long it took."""

    records: tuple[ServiceRecord, ...]
    duration_ms: float
    candidates: int
    timed_out: tuple[str, ...]
    unanswered: tuple[tuple[str, str], ...] = ()  # (explicit URL as given, why nothing of ours was found there)


def _norm_host(host: str) -> str:
    # Probing "localhost" can try ::1 then 127.0.0.1; one address keeps the probe count and time down.
    return "127.0.0.1" if host.lower() in ("localhost", "") else host


def url_candidate(raw: str) -> Candidate:
    """The candidate for an explicit URL (``host:port`` alone means http); ValueError says why it is malformed."""
    try:
        parts = urlsplit(raw if "://" in raw else f"http://{raw}")
        port = parts.port
    except ValueError as err:  # a port that is not a number or out of range
        raise ValueError(f"malformed URL: {str(err).lower()}") from err
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"malformed URL: the scheme must be http or https, not {parts.scheme}")
    if not parts.hostname:
        raise ValueError("malformed URL: no host")
    if any(c.isspace() for c in parts.hostname):
        raise ValueError("malformed URL: the host has spaces in it")
    host = _norm_host(parts.hostname)
    return Candidate(host, port or (443 if parts.scheme == "https" else 80), FoundBy.CONFIGURED_URL, parts.scheme, raw)


def malformed_urls(settings: Settings, urls: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Explicit URLs (settings and ``urls``) that cannot be probed, each with the reason."""
    bad = []
    for raw in [*settings.urls, *urls]:
        try:
            url_candidate(raw)
        except ValueError as err:
            bad.append((raw, str(err)))
    return bad


def candidates(settings: Settings, hosts: Iterable[str] = (), urls: Iterable[str] = ()) -> list[Candidate]:
    """Every (host, port) to probe: localhost and configured hosts × default and custom ports, plus URLs."""
    out: dict[tuple[str, int], Candidate] = {}
    for raw in [*settings.urls, *urls]:
        try:
            cand = url_candidate(raw)
        except ValueError:
            continue  # reported by malformed_urls
        out[(cand.host, cand.port)] = cand
    for entry in settings.launch.values():  # what Backlot launches, wherever the entry says it listens
        out.setdefault((entry.address, entry.port), Candidate(entry.address, entry.port,
                                                              FoundBy.STANDIN if entry.demo else FoundBy.CONFIGURED_URL))
    for raw in settings.standins.values():
        parts = urlsplit(raw)
        if parts.hostname and parts.port:
            out.setdefault((_norm_host(parts.hostname), parts.port),
                           Candidate(_norm_host(parts.hostname), parts.port, FoundBy.STANDIN))
    all_hosts = dict.fromkeys(_norm_host(h) for h in ["127.0.0.1", *settings.hosts, *hosts])
    custom = sorted({p for ports in settings.ports.values() for p in ports})
    defaults = (sorted({p for ports in registry.default_ports().values() for p in ports})
                if settings.scan_default_ports else [])
    for host in all_hosts:
        for port in custom:
            out.setdefault((host, port), Candidate(host, port, FoundBy.CUSTOM_PORT))
        for port in defaults:
            out.setdefault((host, port), Candidate(host, port, FoundBy.DEFAULT_PORT))
    return list(out.values())


async def probe(session: aiohttp.ClientSession, cand: Candidate, timeout: aiohttp.ClientTimeout) -> ServiceRecord | None:
    """Fingerprint one candidate; None if nothing of ours answers there."""
    found = await probe_explained(session, cand, timeout)
    return found if isinstance(found, ServiceRecord) else None


async def probe_explained(session: aiohttp.ClientSession, cand: Candidate,
                          timeout: aiohttp.ClientTimeout) -> ServiceRecord | str:
    """Fingerprint one candidate; when nothing of ours is there, why not (one sentence)."""
    try:
        ident = await identify(session, cand.base_url, timeout)
    except ServiceError as err:
        log.debug("probe %s: %s", cand.base_url, err)
        return one_line(str(err))
    if ident is None:
        return "something answered, but not a service Backlot knows"
    return ServiceRecord(kind=ident.kind, host=cand.host, port=cand.port, base_url=cand.base_url,
                         protocol=ident.protocol, version=ident.version, title=ident.title, found_by=cand.found_by,
                         usable=ident.usable, hint=ident.hint,
                         capabilities=registry.capabilities(ident.kind) if ident.usable else (),
                         details=ident.details)


async def identify(session: aiohttp.ClientSession, base: str, timeout: aiohttp.ClientTimeout) -> Identity | None:
    """Try every kind's fingerprints in order; None when something answers but is none of ours.

    A connection failure (refused, timeout, unreachable) propagates as ServiceError so the caller
    stops probing that port at once.
    """
    ctx = ProbeContext(session, base, timeout, registry.specs())
    for fp in registry.fingerprints():
        found = await fp.probe(ctx)
        if found is not None:
            return found
    return None


async def scan(cands: list[Candidate], budget: float, connect_timeout: float,
               session: aiohttp.ClientSession | None = None) -> DiscoveryResult:
    """Probe all candidates at once; whatever has not answered when the budget runs out is dropped."""
    start = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=budget, sock_connect=connect_timeout, sock_read=budget)
    own = session is None
    if session is None:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128, force_close=True))
    try:
        tasks = {asyncio.create_task(probe_explained(session, c, timeout), name=f"probe {c.base_url}"): c
                 for c in cands}
        done, pending = await asyncio.wait(tasks, timeout=budget) if tasks else (set(), set())
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    finally:
        if own:
            await session.close()
    records = tuple(r for t in done if isinstance(r := t.result(), ServiceRecord))
    late = tuple(tasks[t].base_url for t in pending)
    why = {tasks[t]: r for t in done if isinstance(r := t.result(), str)}
    why.update((tasks[t], f"no answer within the {budget:g} s discovery budget") for t in pending)
    unanswered = tuple((c.source, why[c]) for c in cands if c.source and c in why)
    return DiscoveryResult(records, (time.perf_counter() - start) * 1000, len(cands), late, unanswered)


class Discovery:
    """Runs discovery rounds and keeps the registry of known services, publishing changes on the bus."""

    def __init__(self, settings: Settings, bus: EventBus) -> None:
        self.settings = settings
        self.bus = bus
        self.services: dict[str, ServiceRecord] = {}
        self._lock = asyncio.Lock()

    async def run(self, hosts: Iterable[str] = (), urls: Iterable[str] = (), budget: float | None = None) -> DiscoveryResult:
        """One discovery round; records are merged into the registry."""
        async with self._lock:
            cands = candidates(self.settings, hosts, urls)
            result = await scan(cands, budget or self.settings.discovery_budget, self.settings.connect_timeout)
            result = replace(result, unanswered=(*malformed_urls(self.settings, urls), *result.unanswered))
            self._merge(result.records)
            log.info("discovery: %d service(s) in %.0f ms over %d candidates%s", len(result.records),
                     result.duration_ms, result.candidates,
                     f" ({len(result.timed_out)} did not answer in time)" if result.timed_out else "")
            for url, why in result.unanswered:
                log.debug("discovery: nothing found at %s: %s", url, why)  # DiscoveryFinished carries these
            self.bus.publish(DiscoveryFinished(tuple(r.id for r in result.records), result.duration_ms, result.candidates,
                                               result.unanswered))
            return result

    def forget(self, service_id: str) -> bool:
        """Drop a service from the registry (the user's "forget"), publishing ``ServiceForgotten``."""
        if self.services.pop(service_id, None) is None:
            return False
        self.bus.publish(ServiceForgotten(service_id))
        return True

    def _merge(self, found: Iterable[ServiceRecord]) -> None:
        # Records are frozen: every change stores a new record, so what was published never changes after.
        now = time.time()
        found = list(found)
        seen_ids = {r.id for r in found}
        vanished = {sid: r for sid, r in self.services.items() if sid not in seen_ids}
        for rec in found:
            old = self.services.get(rec.id)
            if old is None:
                moved = next((v for v in vanished.values() if v.kind == rec.kind and v.host == rec.host
                              and v.present), None)
                if moved is not None:  # same kind on the same host, new port: the same service moved
                    del vanished[moved.id]
                    del self.services[moved.id]
                    rec = replace(rec, first_seen=moved.first_seen, details={**rec.details, "previous_id": moved.id})
                    self.services[rec.id] = rec
                    self.bus.publish(ServiceUpdated(rec, (f"moved from port {moved.port}",)))
                    continue
                self.services[rec.id] = rec
                self.bus.publish(ServiceDiscovered(rec))
                continue
            changes = tuple(f for f in ("version", "protocol", "title", "usable") if getattr(old, f) != getattr(rec, f))
            if not old.present:
                changes += ("back",)
            new = replace(old, version=rec.version, protocol=rec.protocol, title=rec.title, usable=rec.usable,
                          hint=rec.hint, capabilities=rec.capabilities, details=rec.details, last_seen=now, present=True)
            self.services[rec.id] = new
            if changes:
                self.bus.publish(ServiceUpdated(new, changes))
        for rec in vanished.values():
            if rec.present:
                gone = self.services[rec.id] = replace(rec, present=False)
                self.bus.publish(ServiceUpdated(gone, ("vanished",)))

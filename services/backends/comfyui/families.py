"""Which model family a checkpoint belongs to (SDXL, SD 1.5, Flux, …): from its safetensors metadata, else its name.

A built-in template made for one family can run on any checkpoint of that family; when a server
lacks the template's default, Backlot uses the server's one checkpoint of the right family (and
refuses when it has none or several, rather than guess).
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote

import aiohttp

from backlot.services.errors import ServiceError
from backlot.services.http import get_json

TITLES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL", "sd3": "SD3", "flux": "Flux"}
# safetensors ``__metadata__`` keys that name the architecture: the model spec (Stability), kohya's trainer.
_META_KEYS = ("modelspec.architecture", "ss_base_model_version")
# Checked in order: "stable-diffusion-xl-v1-base" is SDXL, not SD 1.x.
_META = ((re.compile(r"flux"), "flux"), (re.compile(r"v3|sd3"), "sd3"), (re.compile(r"xl"), "sdxl"),
         (re.compile(r"v2"), "sd2"), (re.compile(r"v1"), "sd1"))
# File-name conventions, checked in order: the first that matches names the family.
_NAMES = ((re.compile(r"flux"), "flux"),
          (re.compile(r"sd3|sd_3|stable[-_ ]?diffusion[-_ ]?3"), "sd3"),
          (re.compile(r"xl|pony|illustrious|noobai|playground[-_ ]?v2"), "sdxl"),
          (re.compile(r"v2-[01]|v2_[01]|sd2|sd_2|768-v"), "sd2"),
          (re.compile(r"v1-[45]|v1\.[45]|v1_5|sd15|sd_15|sd1\.5|sd-1|realisticvision|dreamshaper_[5-8]\b|deliberate|"
                      r"anything-v[345]|counterfeit"), "sd1"))
METADATA_LOOKUPS = 64  # at most this many /view_metadata reads per server and refresh
_from_metadata: dict[tuple[str, str, str], str | None] = {}  # (server, folder, file) -> its family, None: none


def title(family: str) -> str:
    """A family as people write it: "sdxl" -> "SDXL"."""
    return TITLES.get(family, family)


def family_of_name(filename: str) -> str | None:
    """The family a checkpoint's file name says, or None when it says none."""
    low = filename.lower()
    return next((fam for pattern, fam in _NAMES if pattern.search(low)), None)


def family_of_metadata(meta: Mapping[str, object]) -> str | None:
    """The family a safetensors ``__metadata__`` names (``modelspec.architecture``, ``ss_base_model_version``)."""
    for key in _META_KEYS:
        value = meta.get(key)
        if isinstance(value, str) and value:
            low = value.lower()
            return next((fam for pattern, fam in _META if pattern.search(low)), None)
    return None


async def families(session: aiohttp.ClientSession, base_url: str, folder: str, names: Iterable[str],
                   timeout: aiohttp.ClientTimeout, service: str = "", *, fresh: bool = False) -> dict[str, str]:
    """File -> family for the files whose family is known: by name, else by ``GET /view_metadata/{folder}``.

    What a server's metadata said is remembered, so a job does not ask again what the inventory read;
    ``fresh`` (the inventory's refresh) asks again.
    """
    out: dict[str, str] = {}
    unknown: list[str] = []
    for name in names:
        fam = family_of_name(name)
        key = (base_url, folder, name)
        if fam is not None:
            out[name] = fam
        elif key in _from_metadata and not fresh:
            if (known := _from_metadata[key]) is not None:
                out[name] = known
        elif name.endswith(".safetensors"):
            unknown.append(name)
    gate = asyncio.Semaphore(4)

    async def read(name: str) -> None:
        async with gate:
            try:
                meta, _ = await get_json(session, f"{base_url}/view_metadata/{folder}?filename={quote(name)}",
                                         timeout=timeout, service=service, max_bytes=1024 * 1024)
            except ServiceError as err:
                if err.status == 404:  # no metadata in the file: the family stays unknown
                    _from_metadata[(base_url, folder, name)] = None
                return
            fam = family_of_metadata(meta) if isinstance(meta, dict) else None
            _from_metadata[(base_url, folder, name)] = fam
            if fam is not None:
                out[name] = fam

    await asyncio.gather(*(read(n) for n in sorted(unknown)[:METADATA_LOOKUPS]))
    return out


def only_one(family: str, names: Iterable[str], known: Mapping[str, str]) -> tuple[str | None, list[str]]:
    """The one file of ``family`` among ``names`` (else None) and every file of that family."""
    same = sorted(n for n in names if known.get(n) == family)
    return (same[0] if len(same) == 1 else None), same

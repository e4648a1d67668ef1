"""LiteLLM loading, provider names and API keys: presence without network, and an on-demand zero-token check.

Keys are handed to litellm or put in one request header, never logged or put in a message.
"""
from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

import aiohttp
from pydantic import SecretStr

from backlot.services.errors import ErrorClass, ServiceError
from backlot.services.http import request

log = logging.getLogger(__name__)

# Providers whose key can be checked with a Bearer ``GET {base}/models`` (OpenAI's API shape).
KNOWN_BASES: dict[str, str] = {"openai": "https://api.openai.com/v1"}
KNOWN_ENV: dict[str, str] = {"openai": "OPENAI_API_KEY"}  # where their key is read from the environment
CHECK_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=5)
# Bare model names litellm routes to a provider without a "provider/" prefix (the common ones).
_BARE_PREFIXES = (("gpt-", "openai"), ("chatgpt-", "openai"), ("o1", "openai"), ("o3", "openai"),
                  ("o4", "openai"), ("claude-", "anthropic"))

# Modules litellm imports inside its first call (on the loop); imported ahead in the loader thread.
_LAZY_MODULES = ("litellm.proxy._types", "litellm.proxy.spend_tracking.savings")

_litellm: ModuleType | None = None


def import_litellm() -> ModuleType:
    """Import and configure litellm; blocking (~8 s, ~200 MB), so call it through ``load_litellm``."""
    global _litellm
    if _litellm is None:
        # Without this litellm downloads its cost map at import and leaves a retry thread behind.
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        module = importlib.import_module("litellm")
        setattr(module, "suppress_debug_info", True)  # silences its "Give Feedback" banner on errors
        _logs_to_stderr()
        _warm_up(module)
        _litellm = module
    return _litellm


def _logs_to_stderr() -> None:
    """litellm's loggers write to stdout; stdout belongs to the command's output (``--json``), so move them."""
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                handler.setStream(sys.stderr)


def _warm_up(module: ModuleType) -> None:
    """Do here, off the loop, what litellm otherwise does lazily inside the first call on the loop.

    Measured: without it the first streamed reply stalls the event loop for 0.5-0.75 s (the tokenizer
    load and one slow module import); with it, under 0.1 s. Best effort: names can move between versions.
    """
    try:
        module.token_counter(model="gpt-3.5-turbo", text="warm up")
    except Exception as err:  # noqa: BLE001 - only a speed-up
        log.debug("litellm tokenizer warm-up failed: %s", type(err).__name__)
    for name in _LAZY_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            log.debug("litellm warm-up: no module %s", name)


async def load_litellm() -> ModuleType:
    """litellm, imported on first use in a worker thread so the event loop (and the GUI) never waits."""
    if _litellm is not None:
        return _litellm
    return await asyncio.to_thread(import_litellm)


def litellm_loaded() -> ModuleType | None:
    """litellm when something already imported it, else None (never imports)."""
    return _litellm


def provider_of(model: str) -> str:
    """The provider of a LiteLLM model name (``anthropic/claude-x`` -> anthropic, ``gpt-4o`` -> openai).

    Decided without litellm so a backend can be built before the slow import; "unknown" when unsure.
    """
    if "/" in model:
        return model.split("/", 1)[0]
    for prefix, provider in _BARE_PREFIXES:
        if model.startswith(prefix):
            return provider
    return "unknown"


def environment_key(provider: str) -> str:
    """The key the environment holds for a provider whose check is known ("" when none)."""
    var = KNOWN_ENV.get(provider)
    return os.environ.get(var, "") if var else ""


def configured_key(keys: Mapping[str, SecretStr] | None, name: str) -> SecretStr | None:
    """The non-empty key Backlot's settings hold under ``name``, if any."""
    key = (keys or {}).get(name)
    return key if key is not None and key.get_secret_value() else None


async def key_status(models: Iterable[str], keys: Mapping[str, SecretStr] | None = None) -> dict[str, dict[str, Any]]:
    """Per provider: ``{"present": bool, "missing": [env var names]}``; no network is used.

    A key set in Backlot's settings (``llm_keys[provider]``) counts as present, as does the environment.
    """
    return _status(await load_litellm(), models, keys)


def key_status_now(models: Iterable[str], keys: Mapping[str, SecretStr] | None = None) -> dict[str, dict[str, Any]]:
    """``key_status`` without waiting for litellm: its answer once loaded, else Backlot's settings and the
    environment variables of the providers a check is known for (``KNOWN_ENV``)."""
    return _status(litellm_loaded(), models, keys)


def _status(litellm: ModuleType | None, models: Iterable[str],
            keys: Mapping[str, SecretStr] | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for model in models:
        provider = provider_of(model)
        if litellm is None:
            var = KNOWN_ENV.get(provider)
            env: dict[str, Any] = {"keys_in_environment": bool(var and os.environ.get(var)),
                                   "missing_keys": [var] if var else []}
        else:
            try:
                env = litellm.validate_environment(model=model)
            except Exception as err:  # noqa: BLE001 - an odd model name must not hide the other providers
                log.debug("validate_environment failed for %s: %s", model, type(err).__name__)
                env = {"keys_in_environment": False, "missing_keys": []}
        present = bool(env.get("keys_in_environment")) or configured_key(keys, provider) is not None
        entry = out.setdefault(provider, {"present": True, "missing": []})
        entry["present"] = entry["present"] and present
        if not present:
            entry["missing"] += [k for k in env.get("missing_keys", []) if k not in entry["missing"]]
    return out


def api_base_for(provider_or_base: str) -> str:
    """The API base a key check talks to: an explicit ``http(s)://`` base, or a known provider's."""
    if provider_or_base.startswith(("http://", "https://")):
        return provider_or_base.rstrip("/")
    try:
        return KNOWN_BASES[provider_or_base]
    except KeyError:
        raise ValueError(f"no key check is known for {provider_or_base!r}; give its API base URL instead") from None


async def check_key(provider_or_base: str, key: SecretStr | str, *, session: aiohttp.ClientSession,
                    timeout: aiohttp.ClientTimeout = CHECK_TIMEOUT) -> str:
    """Zero-token key check by ``GET {api_base}/models``: "valid", "invalid key", "unreachable" or "unexpected HTTP N".

    Never uses litellm's ``check_valid_key``: it spends tokens and cannot tell a bad key from no network.
    """
    base = api_base_for(provider_or_base)
    secret = key.get_secret_value() if isinstance(key, SecretStr) else key
    try:
        reply = await request(session, "GET", base + "/models", timeout=timeout,
                              headers={"Authorization": f"Bearer {secret}"}, max_bytes=2 * 1024 * 1024)
    except ServiceError as err:
        if err.status == 200:
            return "valid"  # answered, just with a list over our size cap
        if err.error_class in (ErrorClass.REFUSED, ErrorClass.UNREACHABLE, ErrorClass.TIMEOUT, ErrorClass.RESET):
            log.info("key check: %s unreachable (%s)", base, err)
            return "unreachable"
        return f"unexpected answer: {err}"
    if reply.status == 200:
        return "valid"
    if reply.status in (401, 403):
        return "invalid key"
    return f"unexpected HTTP {reply.status}"

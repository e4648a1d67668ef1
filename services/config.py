"""Settings: defaults < user TOML < demo stand-ins < ``.env`` < ``BACKLOT_*`` environment < CLI flags.

``BACKLOT_HOME`` (or ``--home DIR``) puts config, data and the API token in one folder; otherwise
they live in the platform's user config and data folders. A bad setting raises ``ConfigError``
with one sentence naming where it came from, the key and what was expected; nothing starts
half-configured.
"""
from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from backlot.services.backends import registry
from backlot.services.launch.entry import LaunchEntry, check_name
from backlot.services.paths import Paths
from backlot.services.tasks import DEFAULT_VRAM_GIB, TASKS

ENV_PREFIX = "BACKLOT_"
# BACKLOT_* variables that are read elsewhere, not settings.
NON_SETTING_ENV = {"BACKLOT_HOME", "BACKLOT_GRADIO3_PYTHON"}


class ConfigError(Exception):
    """A configuration problem, phrased as one sentence for the user (exit code 2)."""


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything a user can configure; see docs/settings.md."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid",
                                      validate_default=True)

    hosts: Annotated[list[str], NoDecode] = Field(default_factory=list,
                                                  description="hosts to scan besides localhost")
    ports: dict[str, Annotated[list[Annotated[int, Field(ge=1, le=65535)]], NoDecode]] = Field(
        default_factory=dict, description="extra ports to probe, per backend kind")
    urls: Annotated[list[str], NoDecode] = Field(default_factory=list,
                                                 description="service URLs always probed (kind found by probing)")
    standins: dict[str, str] = Field(default_factory=dict, description="stand-in URLs written by `backlot demo`")
    scan_default_ports: bool = Field(True, description="probe the backends' usual ports (off: only ports and URLs you list)")
    discovery_budget: float = Field(2.0, gt=0, le=60, description="seconds one discovery may take in all")
    discovery_interval: float = Field(300.0, ge=5, description="seconds between background discoveries")
    connect_timeout: float = Field(0.5, gt=0, le=30, description="seconds to wait for one probe's connection")
    health_interval: float = Field(30.0, ge=0.2, description="seconds between health checks")
    health_interval_visible: float = Field(2.0, ge=0.2, description="health interval while the dashboard shows")
    health_timeout: float = Field(5.0, gt=0, le=120, description="seconds one health check may take")
    reconnect_backoff_base: float = Field(1.0, gt=0, description="first reconnect delay in seconds (doubles)")
    reconnect_backoff_max: float = Field(60.0, gt=0, description="cap on the reconnect delay in seconds")
    breaker_threshold: int = Field(3, ge=1, description="outage failures in a row that open a service's breaker")
    degraded_latency_ms: float = Field(1500.0, gt=0, description="slower than this counts as degraded")
    degraded_error_rate: float = Field(0.2, ge=0, le=1, description="error share above which a service is degraded")
    api_host: str = Field("127.0.0.1", description="socket API interface (loopback unless you mean it)")
    api_port: int = Field(8770, ge=0, le=65535, description="socket API port")
    data_dir: Path | None = Field(None, description="job database and outputs (default: under the home)")
    output_dir: Path | None = Field(None, description="where job outputs are copied (default: data_dir/outputs)")
    llm_models: Annotated[list[str], NoDecode] = Field(default_factory=list, description="LiteLLM model names")
    llm_keys: dict[str, SecretStr] = Field(default_factory=dict, description="API keys per LLM provider")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    task_backends: dict[str, list[str]] = Field(
        default_factory=lambda: registry.default_task_backends(TASKS),
        description="backend kinds per task, first choice first")
    vram_estimates_gib: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_VRAM_GIB), description="VRAM a task needs until Backlot has learned it")
    vram_learn_min_samples: int = Field(3, ge=1, description="finished jobs needed before a learned VRAM peak is used")
    job_concurrency: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=registry.default_concurrency, description="jobs Backlot sends to one backend at a time")
    workflow_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="more folders of ComfyUI workflows (API format + .bindings.json) beside "
        "<config dir>/workflows; a later folder's workflow wins over a built-in of the same name")
    rvc_voice: str | None = Field(None, description="RVC voice (.pth) used when a job names none")
    comfyui_checkpoints: dict[str, str] = Field(
        default_factory=dict, description="checkpoint per ComfyUI template when a job names none (`text_to_image = ...`)")
    wan2gp_model: str | None = Field(None, description="Wan2GP model_type used when a job names none")
    max_attempts: int = Field(3, ge=1, le=10, description="backends one job may be tried on")
    watchdog_seconds: float = Field(600.0, gt=0, description="no progress for this long: interrupt and fail over")

    launch: dict[str, LaunchEntry] = Field(
        default_factory=dict, description="backends Backlot starts, by name (`[launch.comfyui]`; see docs/launching.md)")
    console_lines: int = Field(2000, ge=50, le=200000, description="console lines kept per launched backend")
    orphans: Literal["adopt", "stop"] = Field(
        "adopt", description="a backend an earlier Backlot launched that still runs: adopt it, or stop it")
    crash_loop_exits: int = Field(3, ge=1, le=100, description="exits within crash_loop_seconds that stop restarts")
    crash_loop_seconds: float = Field(120.0, gt=0, description="the window crash_loop_exits counts in")

    _paths: Paths | None = None

    @field_validator("launch", mode="after")
    @classmethod
    def _launch_names(cls, value: dict[str, LaunchEntry]) -> dict[str, LaunchEntry]:
        known = registry.kinds()
        for name, entry in value.items():
            check_name(name)
            if entry.kind not in known:
                raise ValueError(f"launch entry {name!r}: unknown kind {entry.kind!r}; known kinds: {', '.join(known)}")
        ports: dict[tuple[str, int], str] = {}
        for name, entry in value.items():
            other = ports.setdefault((entry.url, entry.port), name)
            if other != name:
                raise ValueError(f"launch entries {other!r} and {name!r} both use port {entry.port}")
        return value

    @field_validator("hosts", "urls", "llm_models", "workflow_dirs", mode="before")
    @classmethod
    def _comma_lists(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("ports", mode="before")
    @classmethod
    def _comma_ports(cls, value: Any) -> Any:
        if isinstance(value, str):
            import json

            value = json.loads(value)
        if isinstance(value, Mapping):
            return {k: _split_commas(v) if not isinstance(v, int) else [v] for k, v in value.items()}
        return value

    @field_validator("task_backends", "vram_estimates_gib", "job_concurrency", mode="after")
    @classmethod
    def _over_defaults(cls, value: dict[str, Any], info: Any) -> dict[str, Any]:
        # A user table changes the tasks or kinds it names and keeps the defaults for the rest.
        tables: dict[str, dict[str, Any]] = {"task_backends": registry.default_task_backends(TASKS),
                                             "vram_estimates_gib": dict(DEFAULT_VRAM_GIB),
                                             "job_concurrency": registry.default_concurrency()}
        defaults = tables[info.field_name]
        return {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in defaults.items()}, **value}

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def paths(self) -> Paths:
        """Resolved folders (set by ``load_settings``)."""
        return self._paths or Paths.resolve(None)

    def backend_options(self) -> dict[str, Any]:
        """The settings as plain values for the backend kinds, with the config folder (user workflows live there)
        and the data folder."""
        return {**self.model_dump(), "config_dir": str(self.paths.config_dir), "data_path": str(self.data_path)}

    @property
    def data_path(self) -> Path:
        """The data folder actually used."""
        return self.data_dir or self.paths.data_dir

    @property
    def output_path(self) -> Path:
        """The output folder actually used."""
        return self.output_dir or self.data_path / "outputs"


def _sources(paths: Paths, cwd: Path, env: Mapping[str, str], cli: dict[str, Any]) -> list[tuple[str, PydanticBaseSettingsSource]]:
    """Every source, highest precedence first, with the name an error message uses for it."""
    from pydantic_settings import InitSettingsSource

    dotenv = cwd / ".env"
    return [
        ("the command line", InitSettingsSource(Settings, cli)),
        ("the environment", _EnvSource(Settings, env)),
        (str(dotenv), _EnvSource(Settings, _dotenv_backlot(dotenv))),
        (str(paths.standins_file), TomlConfigSettingsSource(Settings, toml_file=paths.standins_file)),
        (str(paths.config_file), TomlConfigSettingsSource(Settings, toml_file=paths.config_file)),
    ]


class _EnvSource(EnvSettingsSource):
    """The environment source, reading an explicit mapping so tests and callers can pass one."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._explicit = {k.lower(): v for k, v in env.items()}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._explicit


def _dotenv_backlot(path: Path) -> dict[str, str]:
    """The ``BACKLOT_*`` lines of a ``.env``; a project's other keys (``OPENAI_API_KEY`` …) are not ours."""
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    values = dotenv_values(path)
    return {k: v for k, v in values.items() if k.upper().startswith(ENV_PREFIX) and v is not None}


def _check_readable(paths: Paths, cwd: Path) -> None:
    for path in (paths.config_file, paths.standins_file, cwd / ".env"):
        if not path.exists():
            continue
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from err
        if path.suffix == ".toml":
            try:
                tomllib.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
                raise ConfigError(f"config file {path} is not valid TOML: {err}") from err


def _unknown_env(env: Mapping[str, str], where: str = "the environment") -> None:
    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    for key in env:
        if not key.upper().startswith(ENV_PREFIX) or key.upper() in NON_SETTING_ENV:
            continue
        base = key.upper().split("__", 1)[0]
        if base not in fields and where == "the environment":
            raise ConfigError(f"the environment sets {key}, which is not a Backlot setting "
                              f"(known: {', '.join(sorted(fields))})")
        if base not in fields:
            raise ConfigError(f"{where}: unknown setting '{key}' (known settings: {', '.join(sorted(fields))})")


def _describe(err: dict[str, Any], sources: list[tuple[str, PydanticBaseSettingsSource]]) -> str:
    loc = [str(p) for p in err["loc"] if p != "[key]"]
    top = loc[0] if loc else "?"
    origin = "the defaults"
    for name, source in sources:
        try:
            if top in source():
                origin = name
                break
        except Exception:  # a source that fails here has already been reported by its own check
            continue
    key = ".".join(loc)
    if origin == "the environment" or origin.endswith(".env"):
        key = ENV_PREFIX + "__".join(loc[:2]).upper() if not key.upper().startswith(ENV_PREFIX) else key.upper()
    # keys, and launch entries (their environment may hold keys, and the sentence names the problem already)
    secret = top in ("llm_keys", "launch") and (top == "llm_keys" or len(loc) < 3 or loc[2] == "env")
    got = "" if secret or err["type"] in ("missing", "extra_forbidden", "unknown_key") else f" (got {err.get('input')!r})"
    if err["type"] == "extra_forbidden":
        known = ", ".join(sorted(Settings.model_fields))
        return f"{origin}: unknown setting '{key}' (known settings: {known})"
    msg = err["msg"][0].lower() + err["msg"][1:]
    return f"{origin}: setting '{key}' {msg.replace('input should be', 'should be')}{got}"


def load_settings(home: str | os.PathLike[str] | None = None, cli: dict[str, Any] | None = None,
                  env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Load and validate every layer; raise ConfigError with one sentence on the first problem."""
    env = dict(os.environ if env is None else env)
    cwd = Path.cwd() if cwd is None else cwd
    paths = Paths.resolve(home if home is not None else env.get("BACKLOT_HOME"))
    cli = {k: v for k, v in (cli or {}).items() if v is not None}
    _check_readable(paths, cwd)
    _unknown_env(env)
    _unknown_env(_dotenv_backlot(cwd / ".env"), str(cwd / ".env"))
    sources = _sources(paths, cwd, env, cli)

    class _Layered(Settings):
        @classmethod
        def settings_customise_sources(cls, settings_cls: type[BaseSettings], *args: Any, **kwargs: Any
                                       ) -> tuple[PydanticBaseSettingsSource, ...]:
            return tuple(source for _, source in sources)

    try:
        layered = _Layered()
    except ValidationError as err:
        raise ConfigError(_describe(dict(err.errors()[0]), sources)) from None
    except SettingsError as err:  # a complex value (list/dict) in the environment or .env that is not JSON
        field = re.search(r'field "([^"]+)"', str(err))
        name = ENV_PREFIX + (field.group(1).upper() if field else "?")
        raise ConfigError(f"{name} could not be parsed: a list or table setting given as one variable must be "
                          'JSON (e.g. {"openai": "..."}) or set per key with __ (e.g. ' + name + "__OPENAI)") from None
    settings = Settings.model_construct(**{k: getattr(layered, k) for k in Settings.model_fields})
    _check_tables(settings, sources)
    settings._paths = paths
    return settings


def _check_tables(settings: Settings, sources: list[tuple[str, PydanticBaseSettingsSource]]) -> None:
    """Tables keyed by backend kind or task accept only known kinds and tasks (the registry decides which)."""
    kinds = registry.kinds()
    checks: list[tuple[str, Any, tuple[str, ...], str]] = [
        ("ports", settings.ports, kinds, "a backend kind"),
        ("job_concurrency", settings.job_concurrency, kinds, "a backend kind"),
        ("task_backends", settings.task_backends, TASKS, "a task"),
        ("vram_estimates_gib", settings.vram_estimates_gib, TASKS, "a task"),
    ]
    for field_name, table, valid, what in checks:
        for key in table:
            if key not in valid:
                known = ", ".join(repr(v) for v in valid)
                raise ConfigError(_describe({"loc": (field_name, key), "type": "unknown_key", "input": key,
                                             "msg": f"is not {what} (valid: {known})"}, sources))
    for task, wanted in settings.task_backends.items():
        for kind in wanted:
            if kind not in kinds:
                raise ConfigError(_describe({"loc": ("task_backends", task), "type": "unknown_kind", "input": kind,
                                             "msg": f"should list backend kinds ({', '.join(kinds)})"}, sources))


def record_standins(paths: Paths, urls: Mapping[str, str]) -> None:
    """Write the demo's stand-in URLs where every later command with the same home will find them."""
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# Written by `backlot demo`; removed when it stops.", "[standins]"]
    lines += [f'"{kind}" = "{url}"' for kind, url in sorted(urls.items())]
    tmp = paths.standins_file.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(paths.standins_file)


def forget_standins(paths: Paths) -> None:
    """Remove the demo's record (the stand-ins are gone)."""
    paths.standins_file.unlink(missing_ok=True)

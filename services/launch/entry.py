"""A launch entry: how to start one backend, where it listens, and what to do when it exits."""
from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Environment keys whose values are secrets: never shown in a console, a view or an error.
SECRET_KEY = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.IGNORECASE)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class StartWhen(str, Enum):
    """When an entry starts: with Backlot, or only when asked."""

    WITH_BACKLOT = "with-backlot"
    ON_DEMAND = "on-demand"


class RestartPolicy(str, Enum):
    """What happens when the process exits without being asked to."""

    ON_CRASH = "on-crash"
    NEVER = "never"


class LaunchEntry(BaseModel):
    """One backend Backlot can start (``[launch.NAME]`` in config.toml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(description="backend kind: comfyui, wan2gp, rvc, audioldm, llm")
    command: list[str] = Field(min_length=1, description="the program and its arguments (argv, no shell)")
    cwd: Path | None = Field(None, description="working folder (default: the program's folder)")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment variables")
    host: str = Field("127.0.0.1", description="where the backend listens")
    port: int = Field(ge=1, le=65535, description="the port it listens on (in the command too)")
    start: StartWhen = Field(StartWhen.ON_DEMAND, description="with-backlot or on-demand")
    restart: RestartPolicy = Field(RestartPolicy.ON_CRASH, description="on-crash (with backoff) or never")
    keep_running: bool = Field(False, description="leave it running when Backlot closes (adopted next time)")
    ready_timeout: float = Field(180.0, gt=0, le=3600, description="seconds a start may take to answer")
    stop_grace: float = Field(10.0, gt=0, le=300, description="seconds between SIGTERM and SIGKILL on stop")
    demo: bool = Field(False, description="a built-in stand-in started by the demo")

    @field_validator("command")
    @classmethod
    def _program(cls, value: list[str]) -> list[str]:
        if not value or not value[0].strip():
            raise ValueError("the command needs a program to run")
        return value

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        return value.strip().lower()

    @property
    def address(self) -> str:
        """The host to reach it at (listening on every interface or on localhost: 127.0.0.1, as discovery says)."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "localhost", "") else self.host

    @property
    def url(self) -> str:
        """The base URL it answers on once started."""
        return f"http://{self.address}:{self.port}"

    @property
    def service_id(self) -> str:
        """The id discovery gives the service it becomes (``kind@host:port``)."""
        return f"{self.kind}@{self.address}:{self.port}"

    def secrets(self) -> list[str]:
        """Values of its environment that must never be shown."""
        return [v for k, v in self.env.items() if SECRET_KEY.search(k) and len(v) >= 4]

    def shown_command(self) -> str:
        """The command as one line for people (quoted where needed)."""
        import shlex

        return shlex.join(self.command)


def check_name(name: str) -> str:
    """A launch entry's name as given, or ValueError saying what a name may be."""
    if not NAME.match(name):
        raise ValueError(f"{name!r} is not a usable name: use letters, digits, '-', '_' or '.', at most 64")
    return name


LaunchStateName = Literal["stopped", "starting", "running", "stopping", "restarting", "failed", "blocked"]

"""Plain types of the Gradio transport: its error, timeouts, components, endpoints and call results."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from backlot.services.backends.base import FailureCode, JobStatus, failed, failure_for
from backlot.services.errors import BacklotError, ServiceError

FILE_TYPES = frozenset({"audio", "video", "file", "image", "model3d", "gallery", "uploadbutton", "imageeditor",
                        "files"})


class GradioError(BacklotError):
    """A Gradio call failed: ``failure`` says how, the message says it in a sentence."""

    def __init__(self, message: str, failure: FailureCode, **detail: Any) -> None:
        super().__init__(message)
        self.failure = failure
        self.detail = detail

    @classmethod
    def of(cls, err: ServiceError, doing: str, failure: FailureCode | None = None) -> GradioError:
        """Wrap a transport error, saying what was being done."""
        return cls(f"{err} while {doing}", failure or failure_for(err), error_class=err.error_class.value)

    def status(self) -> JobStatus:
        """This error as a FAILED status."""
        return failed(str(self), self.failure, **self.detail)


@dataclass(frozen=True)
class GradioTimeouts:
    """Seconds allowed for each kind of exchange (a generation can take minutes; a probe must not)."""

    connect: float = 3.0
    config: float = 10.0
    call: float = 900.0
    upload: float = 120.0
    download: float = 120.0
    poll: float = 0.1  # how often a gradio_client job's status is read

    def client(self, total: float) -> aiohttp.ClientTimeout:
        """An aiohttp timeout with this connect limit."""
        return aiohttp.ClientTimeout(total=total, sock_connect=self.connect)


def _choice_value(choice: Any) -> Any:
    # Gradio 3.50+ sends choices as [label, value] pairs; older ones as bare values.
    return choice[1] if isinstance(choice, (list, tuple)) and len(choice) == 2 else choice


@dataclass(frozen=True)
class Component:
    """One component of a Gradio app as ``/config`` describes it."""

    id: int
    type: str
    label: str
    props: dict[str, Any]

    @property
    def default(self) -> Any:
        """The value the browser would send untouched."""
        return self.props.get("value")

    @property
    def choices(self) -> list[Any]:
        """Values a dropdown or radio offers."""
        raw = self.props.get("choices") or []
        return [_choice_value(c) for c in raw] if isinstance(raw, list) else []

    def number(self, key: str) -> float | None:
        """A numeric prop (``minimum``, ``maximum``, ``step``), or None."""
        value = self.props.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def mentions(self, *words: str) -> bool:
        """True when the label contains any of the words (case-insensitive)."""
        label = self.label.lower()
        return any(w in label for w in words)


@dataclass(frozen=True)
class Endpoint:
    """One event handler: how to call it and the components it reads and writes."""

    fn_index: int
    api_name: str | None
    inputs: tuple[Component, ...]
    outputs: tuple[Component, ...]

    @property
    def name(self) -> str:
        """How to name it in a message."""
        return self.api_name or f"fn_index {self.fn_index}"

    def defaults(self) -> list[Any]:
        """The inputs' default values, in order."""
        return [c.default for c in self.inputs]

    def find(self, predicate: Callable[[Component], bool]) -> int | None:
        """Position of the first input matching ``predicate``."""
        return next((i for i, c in enumerate(self.inputs) if predicate(c)), None)


def endpoints_of(config: dict[str, Any]) -> list[Endpoint]:
    """Every dependency of a config as an Endpoint (Gradio 3: fn_index = position; 4+: the ``id``)."""
    comps: dict[Any, Component] = {}
    for c in config.get("components", []):
        if isinstance(c, dict) and "id" in c:
            raw = c.get("props")
            props: dict[str, Any] = raw if isinstance(raw, dict) else {}
            comps[c["id"]] = Component(int(c["id"]), str(c.get("type", "")), str(props.get("label") or ""), props)

    def resolve(ids: Any) -> tuple[Component, ...]:
        return tuple(comps.get(i, Component(int(i), "", "", {})) for i in ids if isinstance(i, int)) \
            if isinstance(ids, list) else ()

    found = []
    for position, dep in enumerate(config.get("dependencies", [])):
        if not isinstance(dep, dict):
            continue
        name = dep.get("api_name")
        found.append(Endpoint(int(dep.get("id", position)), name if isinstance(name, str) and name else None,
                              resolve(dep.get("inputs")), resolve(dep.get("outputs"))))
    return found


@dataclass(frozen=True)
class LocalFile:
    """A local file given as a file input: uploaded first (3.x) or handed to gradio_client (4+)."""

    path: Path


@dataclass(frozen=True)
class CallResult:
    """What an endpoint returned, one value per output; files are local Paths in the job's folder."""

    values: list[Any]
    remote_ref: str

    def files(self) -> list[Path]:
        """Every local file among the values, in output order."""
        found: list[Path] = []

        def walk(v: Any) -> None:
            if isinstance(v, Path):
                found.append(v)
            elif isinstance(v, (list, tuple)):
                for x in v:
                    walk(x)
            elif isinstance(v, dict):
                for x in v.values():
                    walk(x)
        walk(self.values)
        return found


def file_ref(server_path: str) -> dict[str, Any]:
    """The Gradio 3 value of a file already uploaded to the server."""
    return {"name": server_path, "data": None, "is_file": True}

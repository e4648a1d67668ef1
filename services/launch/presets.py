""""Add from a folder": a checkout of ComfyUI, Wan2GP, RVC or AudioLDM, or a llama.cpp or Ollama folder,
made into a launch entry with that folder's own Python, the right flags and a free port."""
from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from backlot.services.launch.entry import LaunchEntry
from backlot.services.launch.process import free_port, python_of

KINDS = ("comfyui", "wan2gp", "rvc", "audioldm", "llama.cpp", "ollama")


class PresetError(ValueError):
    """The folder is not something Backlot knows how to start (one sentence, with what it looked for)."""


@dataclass(frozen=True)
class Preset:
    """A suggested entry: its name and the entry, and a note for the user (which Python, which model)."""

    name: str
    entry: LaunchEntry
    note: str = ""


def _has_nvidia() -> bool:
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


def detect(folder: Path) -> str | None:
    """Which kind of checkout ``folder`` is, or None."""
    if (folder / "main.py").is_file() and ((folder / "comfy").is_dir() or (folder / "nodes.py").is_file()):
        return "comfyui"
    if (folder / "wgp.py").is_file():
        return "wan2gp"
    if (folder / "infer-web.py").is_file():
        return "rvc"
    if (folder / "app.py").is_file() and (folder / "audioldm").is_dir():
        return "audioldm"
    if _llama_server(folder) is not None:
        return "llama.cpp"
    if _exe(folder / "ollama") is not None:
        return "ollama"
    return None


def _exe(path: Path) -> Path | None:
    for cand in (path, path.with_suffix(".exe")):
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def _llama_server(folder: Path) -> Path | None:
    for sub in ("", "build/bin", "bin"):
        found = _exe(folder / sub / "llama-server")
        if found is not None:
            return found
    return None


def from_folder(folder: Path | str, port: int | None = None, kind: str | None = None,
                taken: set[str] | frozenset[str] = frozenset()) -> Preset:
    """The entry for a checkout; PresetError when the folder is none Backlot knows (or has no Python)."""
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise PresetError(f"{folder} is not a folder")
    found = kind or detect(folder)
    if found is None:
        raise PresetError(f"{folder} is not a ComfyUI, Wan2GP, RVC or AudioLDM checkout, nor a llama.cpp or Ollama "
                          "folder (looked for main.py with comfy/, wgp.py, infer-web.py, app.py with audioldm/, "
                          "llama-server, ollama)")
    if found not in KINDS:
        raise PresetError(f"unknown kind {found!r}; choose one of {', '.join(KINDS)}")
    port = port or free_port()
    builder = {"comfyui": _comfyui, "wan2gp": _wan2gp, "rvc": _rvc, "audioldm": _audioldm,
               "llama.cpp": _llama, "ollama": _ollama}[found]
    name, entry, note = builder(folder, port)
    base, n = name, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return Preset(name, entry, note)


def _python(folder: Path) -> tuple[str, str]:
    py = python_of(folder)
    if py is not None:
        return str(py), f"runs with {py}"
    return sys.executable if not getattr(sys, "frozen", False) else "python3", (
        f"no venv or embedded Python found in {folder} or beside it: runs with {sys.executable}; "
        "edit the command if the backend has its own environment")


def _comfyui(folder: Path, port: int) -> tuple[str, LaunchEntry, str]:
    py, note = _python(folder)
    cmd = [py, "main.py", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch"]
    if sys.platform != "darwin" and not _has_nvidia():
        cmd.append("--cpu")
        note += "; no NVIDIA GPU here, so --cpu"
    return "comfyui", LaunchEntry(kind="comfyui", command=cmd, cwd=folder, port=port, ready_timeout=180), note


def _wan2gp(folder: Path, port: int) -> tuple[str, LaunchEntry, str]:
    py, note = _python(folder)
    cmd = [py, "wgp.py", "--mcp", "--mcp-transport", "streamable-http", "--mcp-host", "127.0.0.1",
           "--mcp-port", str(port)]
    return "wan2gp", LaunchEntry(kind="wan2gp", command=cmd, cwd=folder, port=port, ready_timeout=300), note


def _rvc(folder: Path, port: int) -> tuple[str, LaunchEntry, str]:
    py, note = _python(folder)
    cmd = [py, "infer-web.py", "--port", str(port), "--noautoopen"]
    return "rvc", LaunchEntry(kind="rvc", command=cmd, cwd=folder, port=port, ready_timeout=180), note


def _audioldm(folder: Path, port: int) -> tuple[str, LaunchEntry, str]:
    py, note = _python(folder)
    env = {"GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    return "audioldm", LaunchEntry(kind="audioldm", command=[py, "app.py"], cwd=folder, env=env, port=port,
                                   ready_timeout=300), note


def _llama(folder: Path, port: int) -> tuple[str, LaunchEntry, str]:
    server = _llama_server(folder)
    assert server is not None
    models = sorted(p for pattern in ("*.gguf", "models/*.gguf") for p in folder.glob(pattern))
    if not models:
        raise PresetError(f"{folder} has llama-server but no .gguf model beside it or in models/; "
                          "add one, or add the entry by hand with -m MODEL")
    cmd = [str(server), "-m", str(models[0]), "--host", "127.0.0.1", "--port", str(port)]
    note = f"serves {models[0].name}" + (f" ({len(models) - 1} other model(s) in the folder)" if len(models) > 1 else "")
    return "llama-server", LaunchEntry(kind="llm", command=cmd, cwd=folder, port=port, ready_timeout=300), note


def _ollama(folder: Path, port: int) -> tuple[str, LaunchEntry, str]:
    exe = _exe(folder / "ollama")
    assert exe is not None
    entry = LaunchEntry(kind="llm", command=[str(exe), "serve"], cwd=folder, env={"OLLAMA_HOST": f"127.0.0.1:{port}"},
                        port=port, ready_timeout=60)
    return "ollama", entry, "Ollama's models are the ones `ollama pull` fetched"


def with_mcp(entry: LaunchEntry) -> LaunchEntry:
    """A Wan2GP web-UI entry changed to run its MCP server on the same port (the degraded card's fix)."""
    cmd, skip = [], False
    for arg in entry.command:
        if skip:
            skip = False
            continue
        if arg in ("--server-port", "--server-name", "--mcp-port", "--mcp-host", "--mcp-transport"):
            skip = True
            continue
        if arg in ("--mcp", "--listen", "--open-browser") or arg.startswith(("--server-port=", "--server-name=",
                                                                               "--mcp-port=", "--mcp-host=",
                                                                               "--mcp-transport=")):
            continue
        cmd.append(arg)
    cmd += ["--mcp", "--mcp-transport", "streamable-http", "--mcp-host", "127.0.0.1", "--mcp-port", str(entry.port)]
    return entry.model_copy(update={"command": cmd, "kind": "wan2gp"})

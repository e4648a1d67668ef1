"""Launch entries saved from the window: ``[launch.NAME]`` tables written with the user's comments kept, and
applied to the running core's settings (no Qt)."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from backlot.app.config_writer import ConfigWriteError, apply_changes, launch_values, write_config
from backlot.services.application.settings_apply import apply
from backlot.services.config import load_settings
from backlot.services.launch.entry import LaunchEntry

COMFY = {"kind": "comfyui", "command": ["/opt/ComfyUI/venv/bin/python", "main.py", "--port", "8188"],
         "cwd": "/opt/ComfyUI", "port": 8188, "start": "with-backlot", "restart": "on-crash", "keep_running": False}


def test_launch_tables_keep_the_users_comments_and_only_what_differs_from_the_defaults() -> None:
    text = ("# my studio\n\n[launch.comfyui]\n# the big box\nkind = \"comfyui\"\ncommand = [\"python\", \"main.py\"]\n"
            "port = 8188\nready_timeout = 600.0  # it loads a lot\n")
    ollama = LaunchEntry(kind="llm", command=["/usr/bin/ollama", "serve"], port=11500,
                         env={"OLLAMA_HOST": "127.0.0.1:11500"})
    comfy = LaunchEntry.model_validate({**COMFY, "ready_timeout": 600.0})
    new = apply_changes(text, {"launch": {"comfyui": launch_values(comfy), "ollama": launch_values(ollama)}})
    assert "# my studio" in new and "# the big box" in new and "# it loads a lot" in new
    assert "[launch]\n" not in new  # the entries' own tables only
    saved = tomllib.loads(new)["launch"]
    assert saved["comfyui"] == {**{k: v for k, v in COMFY.items() if k not in ("restart", "keep_running")},
                                "ready_timeout": 600.0}  # the defaults are left out
    assert saved["ollama"]["env"] == {"OLLAMA_HOST": "127.0.0.1:11500"} and "stop_grace" not in saved["ollama"]
    assert saved["ollama"]["start"] == "on-demand"  # when it starts is always said
    assert LaunchEntry.model_validate(saved["ollama"]) == ollama
    gone = tomllib.loads(apply_changes(new, {"launch": {"comfyui": None, "ollama": None}}))
    assert "launch" not in gone


def test_a_launch_entry_that_would_not_load_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("# mine\n", encoding="utf-8")
    clash = {**COMFY, "command": ["python", "other.py"]}
    with pytest.raises(ConfigWriteError, match="port 8188"):
        write_config(path, {"launch": {"comfyui": COMFY, "other": clash}})
    assert path.read_text(encoding="utf-8") == "# mine\n"
    write_config(path, {"launch": {"wan2gp": {"kind": "wan2gp", "command": ["python", "wgp.py"], "port": 7860,
                                              "env": {"HF_TOKEN": "hf_secret_value"}}}})
    assert path.stat().st_mode & 0o077 == 0  # a secret in an entry's environment: owner only


def test_saved_entries_apply_to_the_running_settings_and_new_ones_that_start_with_backlot_are_named() -> None:
    settings = load_settings()
    settings.launch = {"old": LaunchEntry.model_validate({**COMFY, "port": 8190, "start": "on-demand"})}
    applied = apply(settings, {"launch": {"comfyui": COMFY, "old": None,
                                          "rvc": {"kind": "rvc", "command": ["python", "infer-web.py"], "port": 7865}}})
    assert sorted(settings.launch) == ["comfyui", "rvc"] and applied.relaunch and not applied.restart
    assert applied.launch_started == ("comfyui",)  # rvc starts on demand
    with pytest.raises(ValueError, match="launch entry 'bad': port"):
        apply(settings, {"launch": {"bad": {**COMFY, "port": 70000}}})
    assert sorted(settings.launch) == ["comfyui", "rvc"]  # refused whole: nothing half-applied

"""One front door: the socket API (Blender addon, command line) and the window reach the same use cases once each."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import asyncio  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from backlot.app.console_controller import ConsoleController  # noqa: E402
from backlot.blender_addon.client import ApiClient, ClientError  # noqa: E402
from backlot.services.config import load_settings  # noqa: E402
from backlot.services.control import ControlCenter  # noqa: E402
from tests.test_cli_client import backlot, env_for  # noqa: E402
from tests.test_console_live import qloop, run  # noqa: E402, F401 - fixture
from tests.test_workflows import _ui  # noqa: E402

BUILT_IN = Path(__file__).resolve().parents[1] / "resources" / "workflows"


def _spy(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, calls: list[tuple[str, ...]]) -> None:
    real = getattr(owner, name)

    async def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append((name, *(str(a) for a in args[:2]), str(kwargs.get("client", ""))))
        return await real(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)


def test_a_prompt_from_the_addon_and_from_the_window_takes_the_same_submit_once(
        qloop: Any, qtbot: Any, backlot_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []

    async def scenario() -> None:
        settings = load_settings(cli={"scan_default_ports": False, "discovery_budget": 0.5})
        center = ControlCenter(settings, serve_api=True)
        await center.start()
        console = ConsoleController.build_console(center)
        qtbot.addWidget(console)
        controller = ConsoleController(center, console)
        _spy(monkeypatch, center.application, "submit", calls)
        _spy(monkeypatch, center.jobs, "submit", calls)
        try:
            assert center.api is not None

            def from_blender() -> str:  # the addon's own stdlib client, as the command line uses it too
                with ApiClient(center.api.host, center.api.port, token_file=settings.paths.token_file,
                               client_name="blender", reconnect=False).connect(timeout=5) as client:
                    try:
                        return str(client.call("jobs.submit", {"task": "text", "prompt": "from blender"})["id"])
                    except ClientError as err:
                        return err.message

            said = await asyncio.to_thread(from_blender)
            await controller._submit("text", "from the window", {}, [], "auto")
            assert said  # accepted (an id) or refused with a sentence: either way it went through the use case
        finally:
            await controller.close()
            await center.stop()

    run(qloop, scenario())
    # each prompt: the application's submit once, then the job manager's once; nothing else submits
    assert calls == [("submit", "text", "from blender", "blender"), ("submit", "text", "from blender", "blender"),
                     ("submit", "text", "from the window", "window"), ("submit", "text", "from the window", "window")]


def test_key_presence_comes_from_the_core(backlot_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    center = ControlCenter(load_settings(cli={"llm_models": ["openai/gpt-4o-mini"]}))
    app = center.application
    assert "openai" in app.key_providers()
    (none,) = app.key_presence(["openai"])
    assert not none.present and "OPENAI_API_KEY" in none.missing and none.sentence().startswith("○ no key")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    (env,) = app.key_presence(["openai"])
    assert env.where == "environment" and "sk-from-env" not in env.sentence()
    center = ControlCenter(load_settings(cli={"llm_keys": {"openai": "sk-in-settings"}}))
    (mine,) = center.application.key_presence(["openai"])
    assert mine.where == "settings" and mine.sentence() == "● key set in Backlot's settings"


@pytest.mark.slow
def test_workflow_import_from_the_command_line_runs_in_the_instance_when_one_serves(backlot_home: Path,
                                                                                    tmp_path: Path) -> None:
    # the instance starts from this checkout (a venv's editable install may point at another one)
    env = {**env_for(backlot_home, "http://127.0.0.1:9"), "PYTHONPATH": str(BUILT_IN.parents[1])}
    started = backlot(env, "submit", "--task", "sound_effects", "--prompt", "rain")  # starts the instance
    assert "started Backlot in the background" in started.stderr, started.stderr
    try:
        ui = tmp_path / "castle.json"
        ui.write_text(json.dumps(_ui()))
        refused = backlot(env, "workflows", "import", str(ui))
        assert refused.returncode == 2
        # the instance's sentence: it knows no ComfyUI (in this process a discovery would have been run instead)
        assert "no ComfyUI is running to convert it" in refused.stderr, refused.stderr
        flow = tmp_path / "flow.json"
        shutil.copy(BUILT_IN / "standin_image.json", flow)
        done = backlot(env, "workflows", "import", str(flow), "--name", "my_look", "--json")
        assert done.returncode == 0, done.stderr
        made = json.loads(done.stdout)
        assert made["name"] == "my_look" and made["task"] == "text_to_image" and Path(made["workflow"]).is_file()
        listed = backlot(env, "workflows", "list", "--json")
        assert "my_look" in [w["name"] for w in json.loads(listed.stdout)["workflows"]]
    finally:
        backlot(env, "stop")

"""Refusals read the same to a person and a script: one sentence on stderr, and with --json a line on stdout."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from test_cli_client import backlot, env_for

ROOT = Path(__file__).resolve().parent.parent
BUILT_IN = ROOT / "resources" / "workflows"


def _refusal(done: Any, code: int) -> str:
    """The refusal's sentence, checked on both streams."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(line) == {"error", "exit"} and line["exit"] == code
    assert done.stderr.strip().splitlines()[-1] == f"backlot: {line['error']}"
    return str(line["error"])


def test_not_running_no_backend_and_bad_input_refuse_on_stdout_too(standin: Any, backlot_home: Path) -> None:
    sp = standin("comfyui", speed=10)
    env = env_for(backlot_home, sp.url)
    assert "not running" in _refusal(backlot(env, "status", "--json"), 4)
    said = _refusal(backlot(env, "submit", "--task", "sound_effects", "--prompt", "rain", "--param", "duration=x",
                            "--json"), 2)  # refused before an instance is asked
    assert "duration" in said
    try:  # the instance starts for this submit; only a ComfyUI runs, and it makes no sound
        said = _refusal(backlot(env, "submit", "--task", "sound_effects", "--prompt", "rain", "--json"), 3)
        assert "sound_effects" in said
        for blank in (["--prompt", " "], []):  # the instance refuses it: nothing is run with an empty prompt
            said = _refusal(backlot(env, "submit", "--task", "text_to_image", *blank, "--json"), 2)
            assert said == "text_to_image needs a prompt (what to make), and the prompt is empty"
        assert json.loads(backlot(env, "jobs", "--json").stdout) == []
    finally:
        backlot(env, "stop")


def test_import_refuses_a_taken_name_unless_forced(backlot_home: Path, tmp_path: Path) -> None:
    env = env_for(backlot_home, "http://127.0.0.1:9")
    flow = tmp_path / "flow.json"
    shutil.copy(BUILT_IN / "standin_image.json", flow)
    first = backlot(env, "workflows", "import", str(flow), "--name", "my_look", "--json")
    assert first.returncode == 0, first.stderr
    made = json.loads(first.stdout)
    assert made["name"] == "my_look" and Path(made["workflow"]).is_file() and made["task"] == "text_to_image"
    before = Path(made["workflow"]).read_text()
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**json.loads(flow.read_text()), "99": {"class_type": "PreviewImage",
                                                                        "inputs": {"images": ["1", 0]}}}))
    said = _refusal(backlot(env, "workflows", "import", str(other), "--name", "my_look", "--json"), 2)
    assert made["workflow"] in said and "--force" in said
    assert Path(made["workflow"]).read_text() == before  # nothing replaced
    forced = backlot(env, "workflows", "import", str(other), "--name", "my_look", "--force")
    assert forced.returncode == 0, forced.stderr
    assert '"99"' in Path(made["workflow"]).read_text()

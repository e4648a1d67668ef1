"""Each kind reads its settings typed, from the same config.toml keys, with defaults where a key is not set."""
from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from backlot.services.backends import registry
from backlot.services.backends.comfyui.options import ComfyUIOptions
from backlot.services.backends.llm.options import LlmOptions
from backlot.services.backends.rvc.options import RvcOptions
from backlot.services.backends.wan2gp.options import Wan2gpOptions
from backlot.services.config import load_settings
from backlot.services.models import ServiceKind, ServiceRecord


def test_the_settings_file_keys_reach_each_kind_typed(backlot_home: Path, tmp_path: Path) -> None:
    config = backlot_home / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.toml").write_text(f"""
rvc_voice = "narrator.pth"
wan2gp_model = "t2v_1.3B"
workflow_dirs = ["{tmp_path.as_posix()}/flows"]
llm_models = ["gpt-4o-mini"]
[comfyui_checkpoints]
text_to_image = "juggernaut_xl.safetensors"
[llm_keys]
openai = "sk-test"
""", encoding="utf-8")
    settings = load_settings()
    options = settings.backend_options()
    comfy = ComfyUIOptions.of(options)
    assert comfy.checkpoints == {"text_to_image": "juggernaut_xl.safetensors"}
    assert comfy.workflow_dirs == (tmp_path / "flows",)
    assert comfy.config_dir == settings.paths.config_dir and comfy.data_path == settings.data_path
    llm = LlmOptions.of(options)
    assert llm.models == ("gpt-4o-mini",) and isinstance(llm.keys["openai"], SecretStr)
    assert llm.keys["openai"].get_secret_value() == "sk-test"
    assert RvcOptions.of(options).voice == "narrator.pth"
    assert Wan2gpOptions.of(options).model == "t2v_1.3B"


def test_a_key_not_set_keeps_its_default(backlot_home: Path) -> None:
    options = load_settings().backend_options()
    assert ComfyUIOptions.of(options).checkpoints == {} and ComfyUIOptions.of({}) == ComfyUIOptions()
    assert LlmOptions.of(options) == LlmOptions() and RvcOptions.of(options).voice is None
    assert Wan2gpOptions.of({"wan2gp_model": None}).model is None


def test_the_adapter_gets_the_typed_setting() -> None:
    rec = ServiceRecord(ServiceKind("rvc"), "127.0.0.1", 5050, "http://127.0.0.1:5050", "gradio")
    backend = registry.create_adapter(rec, lambda: None, {"rvc_voice": "narrator.pth"})  # type: ignore[arg-type,return-value]
    assert getattr(backend, "default_voice", None) == "narrator.pth"

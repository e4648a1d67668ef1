"""Settings layering and the one-sentence errors for bad configuration."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backlot.services.config import ConfigError, Paths, forget_standins, load_settings, record_standins

ROOT = Path(__file__).resolve().parent.parent



@pytest.fixture(autouse=True)
def _layering_from_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests check where each value comes from: no port override from the test harness."""
    monkeypatch.delenv("BACKLOT_API_PORT", raising=False)

def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_and_home_layout(backlot_home: Path) -> None:
    s = load_settings()
    assert s.paths.config_dir == backlot_home.resolve() / "config"
    assert s.data_path == backlot_home.resolve() / "data"
    assert s.output_path == backlot_home.resolve() / "data" / "outputs"
    assert s.paths.token_file.parent == s.paths.config_dir
    assert (s.api_host, s.api_port, s.discovery_budget, s.health_interval) == ("127.0.0.1", 8770, 2.0, 30.0)


def test_layers_in_order_toml_dotenv_env_cli(backlot_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(backlot_home / "config" / "config.toml",
          'api_port = 9001\ndiscovery_budget = 1.5\nhosts = ["gpu-box"]\n[ports]\ncomfyui = [8288]\n')
    assert load_settings().api_port == 9001
    write(tmp_path / ".env", "BACKLOT_API_PORT=9002\nBACKLOT_HEALTH_INTERVAL=12\n")
    s = load_settings()
    assert (s.api_port, s.health_interval, s.discovery_budget, s.hosts, s.ports) == (
        9002, 12.0, 1.5, ["gpu-box"], {"comfyui": [8288]})
    monkeypatch.setenv("BACKLOT_API_PORT", "9003")
    monkeypatch.setenv("BACKLOT_URLS", "http://a:1, http://b:2")
    monkeypatch.setenv("BACKLOT_PORTS__RVC", "7866,7867")
    s = load_settings()
    assert (s.api_port, s.urls, s.ports["rvc"]) == (9003, ["http://a:1", "http://b:2"], [7866, 7867])
    assert load_settings(cli={"api_port": 9004, "discovery_budget": None}).api_port == 9004


def test_home_argument_beats_environment(tmp_path: Path) -> None:
    other = tmp_path / "other-home"
    write(other / "config" / "config.toml", "api_port = 9100\n")
    assert load_settings(home=other).api_port == 9100


def test_secrets_are_masked_everywhere(backlot_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKLOT_LLM_KEYS__OPENAI", "sk-very-secret-123")
    s = load_settings()
    assert s.llm_keys["openai"].get_secret_value() == "sk-very-secret-123"
    assert "sk-very-secret-123" not in repr(s) and "sk-very-secret-123" not in str(s.model_dump())
    monkeypatch.setenv("BACKLOT_LLM_KEYS", "sk-not-json-secret")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "sk-not-json-secret" not in str(err.value) and "BACKLOT_LLM_KEYS" in str(err.value)


@pytest.mark.parametrize(("toml", "expected"), [
    ("api_port = 'abc'\n", ["config.toml", "'api_port'", "integer", "'abc'"]),
    ("bogus_key = 1\n", ["config.toml", "unknown setting 'bogus_key'"]),
    ("discovery_budget = -1\n", ["config.toml", "'discovery_budget'", "greater than 0"]),
    ("[ports]\nflux = [1]\n", ["config.toml", "'ports.flux'", "comfyui"]),
    ("api_port = \n", ["config.toml", "not valid TOML"]),
    ("[llm_keys]\nopenai = 5\n", ["config.toml", "'llm_keys.openai'", "string"]),
    ("[launch.comfy]\nkind = 'forge'\ncommand = ['python']\nport = 8188\n",
     ["config.toml", "launch entry 'comfy': unknown kind 'forge'", "comfyui"]),
    ("[launch.comfy]\nkind = 'comfyui'\ncommand = []\nport = 8188\n", ["'launch.comfy.command'", "at least 1"]),
    ("[launch.a]\nkind = 'comfyui'\ncommand = ['x']\nport = 8188\n[launch.b]\nkind = 'llm'\ncommand = ['y']\n"
     "port = 8188\n", ["launch entries 'a' and 'b' both use port 8188"]),
    ("[launch.'my comfy']\nkind = 'comfyui'\ncommand = ['x']\nport = 8188\n", ["'my comfy' is not a usable name"]),
])
def test_bad_toml_is_one_clear_sentence(backlot_home: Path, toml: str, expected: list[str]) -> None:
    write(backlot_home / "config" / "config.toml", toml)
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert "\n" not in message
    for part in expected:
        assert part in message


def test_a_bad_launch_entry_never_echoes_its_environment(backlot_home: Path) -> None:
    write(backlot_home / "config" / "config.toml", "[launch.llm]\nkind = 'forge'\ncommand = ['x']\nport = 9\n"
                                                   "[launch.llm.env]\nOPENAI_API_KEY = 'sk-leak-me-not'\n")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "unknown kind 'forge'" in str(err.value) and "sk-leak-me-not" not in str(err.value)


def test_bad_environment_and_dotenv(backlot_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKLOT_API_PROT", "1")
    with pytest.raises(ConfigError, match="BACKLOT_API_PROT, which is not a Backlot setting"):
        load_settings()
    monkeypatch.delenv("BACKLOT_API_PROT")
    monkeypatch.setenv("BACKLOT_HEALTH_INTERVAL", "soon")
    with pytest.raises(ConfigError, match=r"the environment: setting 'BACKLOT_HEALTH_INTERVAL' should be a valid number"):
        load_settings()
    monkeypatch.delenv("BACKLOT_HEALTH_INTERVAL")
    write(tmp_path / ".env", "BACKLOT_NOPE=1\n")
    with pytest.raises(ConfigError, match=r"\.env: unknown setting 'BACKLOT_NOPE'"):
        load_settings()


def test_unreadable_config_file(backlot_home: Path) -> None:
    (backlot_home / "config" / "config.toml").mkdir(parents=True)  # a folder where the file should be
    with pytest.raises(ConfigError, match="cannot read config file .*config.toml"):
        load_settings()
    (backlot_home / "config" / "config.toml").rmdir()
    (backlot_home / "config" / "config.toml").write_bytes(b"api_port = 1\n\xff\xfe")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings()


def test_standins_record_is_a_layer_and_is_removed(backlot_home: Path) -> None:
    paths = Paths.resolve(backlot_home)
    record_standins(paths, {"comfyui": "http://127.0.0.1:5555", "llm": "http://127.0.0.1:5556"})
    assert load_settings().standins == {"comfyui": "http://127.0.0.1:5555", "llm": "http://127.0.0.1:5556"}
    forget_standins(paths)
    assert load_settings().standins == {}


def test_cli_exits_2_with_the_sentence_and_never_starts(backlot_home: Path) -> None:
    write(backlot_home / "config" / "config.toml", "api_port = 'abc'\n[llm_keys]\nopenai = 'sk-leak-me-not'\n")
    env = {**os.environ, "BACKLOT_HOME": str(backlot_home)}
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "demo", "--headless"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("backlot: configuration error: ") and "config.toml" in done.stderr
    assert "api_port" in done.stderr and "sk-leak-me-not" not in done.stderr
    assert not (backlot_home / "config" / "standins.toml").exists()

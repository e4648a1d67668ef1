"""The RVC stand-in's process-wide voice model: RVC's ``VC`` class (get_vc, vc_single, vc_multi) imitated."""
from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from backlot.standins.gradio3 import _voice

log = logging.getLogger(__name__)

# Simulated seconds of work per second of input audio, by stage (what RVC reports as npy / f0 / infer).
_NPY_COST, _INFER_COST, _BASE_COST = 0.03, 0.08, 0.05
_F0_COST = {"pm": 0.02, "harvest": 0.3, "crepe": 0.15, "rmvpe": 0.05, "fcpe": 0.04}

Update = dict[str, Any]


def _clean_path(text: str) -> str:
    # RVC strips what users paste around paths: spaces, quotes and newlines.
    return text.strip(" ").strip('"').strip("\n").strip('"').strip(" ")


class VoiceEngine:
    """One voice loaded for the whole process, as in RVC WebUI; conversion really transforms audio."""

    def __init__(self, root: Path, speed: float) -> None:
        self.root = root
        self.speed = speed
        self.weight_root = root / "assets" / "weights"
        self.index_root = root / "logs"
        self._lock = threading.Lock()
        self._voice: _voice.Voice | None = None
        self._install_defaults()

    def _install_defaults(self) -> None:
        """Give a fresh data folder a few voices and their feature indexes, like a user's RVC install."""
        self.weight_root.mkdir(parents=True, exist_ok=True)
        self.index_root.mkdir(parents=True, exist_ok=True)
        for voice in _voice.DEFAULT_VOICES:
            pth = self.weight_root / voice.name
            if not pth.exists():
                voice.dump(pth)
            stem = voice.name.removesuffix(".pth")
            index = self.index_root / stem / f"added_IVF256_Flat_nprobe_1_{stem}_{voice.version}.index"
            if not index.exists():
                index.parent.mkdir(parents=True, exist_ok=True)
                index.write_bytes(b"standin-faiss-index\n")

    def names(self) -> list[str]:
        """Voice checkpoints in assets/weights."""
        return sorted(p.name for p in self.weight_root.glob("*.pth"))

    def index_paths(self) -> list[str]:
        """Feature indexes under logs/, skipping the 'trained' intermediates as RVC does."""
        return sorted(str(p) for p in self.index_root.rglob("*.index") if "trained" not in p.name)

    def change_choices(self) -> tuple[Update, Update]:
        """The refresh button: new voice and index lists."""
        return ({"choices": self.names(), "__type__": "update"},
                {"choices": self.index_paths(), "__type__": "update"})

    def index_for(self, sid: str) -> str:
        """RVC's get_index_path_from_model: the first index whose path mentions the voice's name."""
        stem = sid.split(".")[0]
        return next((p for p in self.index_paths() if stem in p), "")

    def get_vc(self, sid: str | None, *to_return_protect: float) -> tuple[Any, ...] | Update:
        """Load (or with an empty name unload) the process-wide voice; 5 updates like RVC's get_vc."""
        log.info("Get sid: %s", sid)
        p0 = to_return_protect[0] if to_return_protect else 0.5
        p1 = to_return_protect[1] if len(to_return_protect) > 1 else 0.33
        if not sid:
            with self._lock:
                self._voice = None
            return ({"visible": False, "__type__": "update"},
                    {"visible": True, "value": p0, "__type__": "update"},
                    {"visible": True, "value": p1, "__type__": "update"}, "", "")
        path = self.weight_root / sid
        if not path.is_file():
            raise FileNotFoundError(f"[Errno 2] No such file or directory: '{path}'")
        voice = _voice.Voice.load(path)
        with self._lock:
            self._voice = voice
        # Loading a checkpoint takes a moment on the real app too.
        time.sleep(0.2 / self.speed)
        protect0 = {"visible": voice.if_f0 != 0, "value": p0 if voice.if_f0 != 0 else 0.5, "__type__": "update"}
        protect1 = {"visible": voice.if_f0 != 0, "value": p1 if voice.if_f0 != 0 else 0.33, "__type__": "update"}
        index = {"value": self.index_for(sid), "__type__": "update"}
        log.info("Select index: %s", index["value"])
        speaker = {"visible": True, "maximum": voice.n_spk, "__type__": "update"}
        return (speaker, protect0, protect1, index, index) if to_return_protect else speaker

    def _work(self, seconds: float, f0_method: str) -> list[float]:
        """Spend simulated time proportional to the audio, return it split like RVC's timings."""
        times = [_NPY_COST * seconds, _F0_COST.get(f0_method, 0.05) * seconds, _BASE_COST + _INFER_COST * seconds]
        times = [t / self.speed for t in times]
        time.sleep(sum(times))
        return times

    def vc_single(self, sid: float, input_audio_path: str | None, f0_up_key: float, f0_file: Any,
                  f0_method: str, file_index: str | None, file_index2: str | None, index_rate: float,
                  filter_radius: float, resample_sr: float, rms_mix_rate: float,
                  protect: float) -> tuple[str, tuple[int, np.ndarray] | None]:
        """Convert one file (a path on this machine): (info text, (rate, int16 samples)) like RVC."""
        if not input_audio_path:
            return "You need to upload an audio", None
        try:
            f0_up_key = int(f0_up_key or 0)
            path = _clean_path(str(input_audio_path))
            try:
                rate, samples = _voice.read_audio(path)
            except Exception as err:
                raise RuntimeError(f"Failed to load audio: {err}") from err
            with self._lock:
                voice = self._voice
            if voice is None:
                # What the real app hits when no voice was chosen: its pipeline is still None.
                raise AttributeError("'NoneType' object has no attribute 'pipeline'")
            if file_index:
                file_index = _clean_path(file_index).replace("trained", "added")
            elif file_index2:
                file_index = file_index2
            else:
                file_index = ""
            use_index = bool(file_index) and Path(file_index).exists() and float(index_rate or 0) > 0
            resample_sr = int(resample_sr or 0)
            tgt_sr = resample_sr if voice.tgt_sr != resample_sr >= 16000 else voice.tgt_sr
            times = self._work(len(samples) / rate, f0_method)
            audio_opt = _voice.convert(samples, rate, voice, f0_up_key, tgt_sr, sid=int(sid or 0),
                                       index_rate=float(index_rate) if use_index else 0.0,
                                       rms_mix_rate=float(1.0 if rms_mix_rate is None else rms_mix_rate))
            index_info = "Index:\n%s." % file_index if file_index and Path(file_index).exists() else "Index not used."
            return ("Success.\n%s\nTime:\nnpy: %.2fs, f0: %.2fs, infer: %.2fs." % (index_info, *times),
                    (tgt_sr, audio_opt))
        except Exception:
            info = traceback.format_exc()
            log.warning("%s", info)
            return info, None

    def vc_multi(self, sid: float, dir_path: str, opt_root: str, paths: list[Any] | None, f0_up_key: float,
                 f0_method: str, file_index: str, file_index2: str, index_rate: float, filter_radius: float,
                 resample_sr: float, rms_mix_rate: float, protect: float, format1: str) -> Iterator[str]:
        """Batch conversion into ``opt_root`` (relative to the data folder), reporting file by file."""
        try:
            dir_path, opt_root = _clean_path(dir_path or ""), _clean_path(opt_root or "opt")
            out_dir = Path(opt_root) if Path(opt_root).is_absolute() else self.root / opt_root
            out_dir.mkdir(parents=True, exist_ok=True)
            if dir_path:
                inputs = sorted(str(p) for p in Path(dir_path).iterdir())
            else:
                inputs = [getattr(p, "name", p) for p in paths or []]
            infos: list[str] = []
            for path in inputs:
                info, opt = self.vc_single(sid, path, f0_up_key, None, f0_method, file_index, file_index2,
                                           index_rate, filter_radius, resample_sr, rms_mix_rate, protect)
                if "Success" in info and opt is not None:
                    try:
                        _write_audio(out_dir / f"{Path(path).name}.{format1}", *opt)
                    except Exception:
                        info += traceback.format_exc()
                infos.append("%s->%s" % (Path(path).name, info))
                yield "\n".join(infos)
            yield "\n".join(infos)
        except Exception:
            yield traceback.format_exc()


def _write_audio(path: Path, rate: int, samples: np.ndarray) -> None:
    """Write int16 mono samples as wav, or flac/mp3/m4a through PyAV's bundled FFmpeg."""
    if path.suffix == ".wav":
        _voice.write_wav(path, rate, samples)
        return
    import av  # only the batch tab's compressed formats need it

    codec = {".flac": "flac", ".mp3": "libmp3lame", ".m4a": "aac"}[path.suffix]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)

"""Signal processing behind the RVC stand-in: WAV I/O, pitch shift and a per-voice timbre (numpy only)."""
from __future__ import annotations

import hashlib
import json
import struct
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# RVC converts at 16 kHz internally (HuBERT's rate) and synthesises at the model's rate.
WORK_SR = 16000
_N_FFT = 1024
_HOP = 256


@dataclass(frozen=True)
class Voice:
    """A stand-in voice model: what a real .pth checkpoint tells RVC, plus the timbre we imitate."""

    name: str
    tgt_sr: int = 40000
    n_spk: int = 109
    version: str = "v2"
    if_f0: int = 1
    formant_hz: float = 1200.0
    formant_gain: float = 1.5
    cutoff_hz: float = 7000.0
    drive: float = 1.8

    def dump(self, path: Path) -> None:
        """Write this voice as the stand-in's checkpoint file (JSON in a .pth, since no torch here)."""
        path.write_text(json.dumps({"standin_rvc_voice": asdict(self)}, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Voice:
        """Read a checkpoint; any other .pth gets a timbre derived from its name."""
        try:
            fields = json.loads(path.read_text(encoding="utf-8"))["standin_rvc_voice"]
            return cls(**{**fields, "name": path.name})
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
            digest = hashlib.sha256(path.name.encode()).digest()
            return cls(name=path.name, tgt_sr=(32000, 40000, 48000)[digest[0] % 3],
                       formant_hz=700.0 + 12.0 * digest[1], cutoff_hz=4500.0 + 20.0 * digest[2],
                       drive=1.2 + digest[3] / 255.0)


DEFAULT_VOICES = (
    Voice("aria-v2-40k.pth", 40000, formant_hz=1500.0, formant_gain=1.8, cutoff_hz=8000.0, drive=1.6),
    Voice("bruno-v2-48k.pth", 48000, formant_hz=650.0, formant_gain=1.4, cutoff_hz=5000.0, drive=2.2),
    Voice("chorus-v1-40k.pth", 40000, n_spk=4, version="v1", formant_hz=1000.0, cutoff_hz=6500.0),
)


def read_wav(path: str | Path) -> tuple[int, np.ndarray]:
    """Decode a PCM (8/16/24/32-bit) or float WAV to (rate, mono float32 in [-1, 1])."""
    raw = Path(path).read_bytes()
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise ValueError(f"{path} is not a WAV file")
    pos, fmt, pcm = 12, None, None
    while pos + 8 <= len(raw):
        cid, size = raw[pos:pos + 4], int.from_bytes(raw[pos + 4:pos + 8], "little")
        body = raw[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag is in the GUID
                tag = int.from_bytes(body[24:26], "little")
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            pcm = body
        pos += 8 + size + (size & 1)
    if fmt is None or pcm is None:
        raise ValueError(f"{path}: WAV without fmt or data chunk")
    tag, channels, rate, bits = fmt
    width = bits // 8
    pcm = pcm[:len(pcm) - len(pcm) % (width * channels)]
    if tag == 3 and width in (4, 8):
        samples = np.frombuffer(pcm, dtype="<f4" if width == 4 else "<f8").astype(np.float32)
    elif tag == 1 and width == 1:
        samples = (np.frombuffer(pcm, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif tag == 1 and width == 2:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    elif tag == 1 and width == 3:
        b = np.frombuffer(pcm, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8  # sign-extend 24 bits
        samples = ints.astype(np.float32) / 8388608.0
    elif tag == 1 and width == 4:
        samples = np.frombuffer(pcm, dtype="<i4").astype(np.float32) / 2147483648.0
    else:
        raise ValueError(f"{path}: unsupported WAV encoding (format {tag}, {bits} bits)")
    return int(rate), samples.reshape(-1, channels).mean(axis=1)


def read_audio(path: str | Path) -> tuple[int, np.ndarray]:
    """Any audio file as (rate, mono float32): WAV directly, other formats through PyAV's FFmpeg (as RVC's loader)."""
    try:
        return read_wav(path)
    except ValueError:
        if not Path(path).is_file():
            raise
    import av  # only for non-WAV input

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        to_mono = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = [out.to_ndarray().reshape(-1) for frame in container.decode(stream) for out in to_mono.resample(frame)]
        chunks += [out.to_ndarray().reshape(-1) for out in to_mono.resample(None)]
    if not chunks:
        raise ValueError(f"{path}: no audio")
    return int(rate), np.concatenate(chunks).astype(np.float32)


def write_wav(path: str | Path, rate: int, samples: np.ndarray) -> None:
    """Write mono int16 samples as a WAV file."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())


def resample(x: np.ndarray, n_out: int) -> np.ndarray:
    """Band-limited resampling to exactly ``n_out`` samples (FFT zero-padding or truncation)."""
    n_in = len(x)
    if n_out == n_in or n_in == 0:
        return x.astype(np.float32, copy=True)
    spec = np.fft.rfft(x)
    bins = n_out // 2 + 1
    out = np.zeros(bins, dtype=complex)
    keep = min(bins, len(spec))
    out[:keep] = spec[:keep]
    return (np.fft.irfft(out, n_out) * (n_out / n_in)).astype(np.float32)


def _stft(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    padded = np.pad(x, (_N_FFT // 2, _N_FFT))
    n_frames = 1 + (len(padded) - _N_FFT) // _HOP
    idx = np.arange(_N_FFT)[None, :] + _HOP * np.arange(n_frames)[:, None]
    return np.fft.rfft(padded[idx] * window, axis=1)


def time_stretch(x: np.ndarray, factor: float) -> np.ndarray:
    """Phase-vocoder stretch to ``factor`` times the length, keeping the pitch."""
    window = np.hanning(_N_FFT + 1)[:-1]
    spec = _stft(x, window)
    mags, phases = np.abs(spec), np.angle(spec)
    steps = np.arange(0, spec.shape[0] - 1, 1.0 / factor)
    i = steps.astype(int)
    frac = (steps - i)[:, None]
    omega = 2 * np.pi * _HOP * np.arange(spec.shape[1]) / _N_FFT
    mag = (1 - frac) * mags[i] + frac * mags[i + 1]
    # Each output frame advances its phase by the measured instantaneous frequency of the input.
    dphi = phases[i + 1] - phases[i] - omega
    dphi -= 2 * np.pi * np.round(dphi / (2 * np.pi))
    phase = np.vstack([phases[:1], phases[0] + np.cumsum(omega + dphi, axis=0)[:-1]])
    frames = np.fft.irfft(mag * np.exp(1j * phase), _N_FFT, axis=1) * window
    out = np.zeros(_HOP * (len(frames) - 1) + _N_FFT)
    norm = np.zeros_like(out)
    for k, frame in enumerate(frames):
        out[k * _HOP:k * _HOP + _N_FFT] += frame
        norm[k * _HOP:k * _HOP + _N_FFT] += window ** 2
    out = out / np.maximum(norm, 1e-8)
    start = _N_FFT // 2
    return out[start:start + int(round(len(x) * factor))].astype(np.float32)


def _timbre(y: np.ndarray, sr: int, voice: Voice, sid: int, index_rate: float) -> np.ndarray:
    """Saturate (adds harmonics) and shape the spectrum with the voice's formant and cutoff."""
    drive = voice.drive * (1.0 + 0.3 * index_rate)
    peak = float(np.max(np.abs(y))) or 1.0
    y = np.tanh(drive * y / peak) / np.tanh(drive) * peak
    freqs = np.fft.rfftfreq(len(y), 1.0 / sr)
    formant = voice.formant_hz * (1.0 + 0.02 * (sid % 8))
    gain = (1.0 + (voice.formant_gain - 1.0) * np.exp(-(((freqs - formant) / (0.4 * formant)) ** 2)))
    gain /= np.sqrt(1.0 + (freqs / voice.cutoff_hz) ** 4)
    return np.fft.irfft(np.fft.rfft(y) * gain, len(y)).astype(np.float32)


def _mix_rms(src: np.ndarray, src_sr: int, out: np.ndarray, out_sr: int, rate: float) -> np.ndarray:
    """RVC's change_rms: blend the output's loudness envelope towards the input's (rate 1 = keep output)."""
    if rate >= 1.0:
        return out

    def envelope(x: np.ndarray, sr: int) -> np.ndarray:
        block = max(1, sr // 4)
        n = max(1, len(x) // block)
        rms = np.sqrt(np.mean(x[:n * block].reshape(n, block) ** 2, axis=1)) if len(x) >= block else \
            np.array([np.sqrt(np.mean(x ** 2))])
        return np.interp(np.linspace(0, len(rms) - 1, len(out)), np.arange(len(rms)), rms) + 1e-6

    return (out * envelope(src, src_sr) ** (1 - rate) * envelope(out, out_sr) ** (rate - 1)).astype(np.float32)


def convert(samples: np.ndarray, rate: int, voice: Voice, semitones: float, out_sr: int, sid: int = 0,
            index_rate: float = 0.0, rms_mix_rate: float = 1.0) -> np.ndarray:
    """Convert mono float audio: pitch shift by ``semitones``, apply the voice; int16 at ``out_sr``."""
    if len(samples) == 0:
        raise ValueError("the input audio is empty")
    peak = float(np.abs(samples).max()) / 0.95
    if peak > 1:
        samples = samples / peak
    x16 = resample(samples, max(1, int(round(len(samples) * WORK_SR / rate))))
    n_out = max(1, int(round(len(x16) * out_sr / WORK_SR)))
    ratio = 2.0 ** (semitones / 12.0)
    # Stretch by the pitch ratio, then squeeze back to the original duration: the pitch moves by ratio.
    stretched = time_stretch(x16, ratio) if abs(ratio - 1.0) > 1e-6 and len(x16) > 1 else x16
    y = resample(stretched, n_out)
    y = _timbre(y, out_sr, voice, sid, index_rate)
    y = _mix_rms(x16, WORK_SR, y, out_sr, rms_mix_rate)
    top = float(np.abs(y).max()) / 0.99
    if top > 1:
        y = y / top
    return np.clip(y * 32768.0, -32768, 32767).astype(np.int16)

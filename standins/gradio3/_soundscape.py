"""Procedural "text-to-audio" for the AudioLDM stand-in: deterministic sound layers chosen by the prompt's words."""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

import numpy as np

SR = 16000
Rng = np.random.Generator
Layer = Callable[[Rng, int], np.ndarray]


def _noise(rng: Rng, n: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """White noise shaped in the frequency domain, unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n)) * gain(np.fft.rfftfreq(n, 1.0 / SR))
    out = np.fft.irfft(spec, n)
    return out / (np.sqrt(np.mean(out ** 2)) + 1e-9)


def _mix(*parts: np.ndarray) -> np.ndarray:
    """Sum grains of different lengths."""
    out = np.zeros(max(len(p) for p in parts))
    for p in parts:
        out[:len(p)] += p
    return out


def _band(lo: float, hi: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda f: 1.0 / np.sqrt(1 + (lo / np.maximum(f, 1.0)) ** 4) / np.sqrt(1 + (f / hi) ** 4)


def _drift(rng: Rng, n: int, points: int, lo: float, hi: float) -> np.ndarray:
    """A slow random envelope between lo and hi (gusts, swells)."""
    ctrl = rng.uniform(lo, hi, points + 2)
    return np.interp(np.arange(n), np.linspace(0, n - 1, len(ctrl)), ctrl)


def _scatter(rng: Rng, n: int, per_second: float, grain: Callable[[Rng], np.ndarray],
             jitter: float = 1.0) -> np.ndarray:
    """Add grains at onsets: random (jitter 1) or regular with some jitter (jitter < 1)."""
    out = np.zeros(n)
    period = SR / per_second
    onset = rng.uniform(0, period)
    while onset < n:
        g = grain(rng)
        i = int(onset)
        out[i:i + len(g)] += g[:n - i]
        # jitter 0: a steady beat (footsteps); 1: a Poisson process (rain drops).
        onset += period * (1 - jitter) + (rng.exponential(period) * jitter if jitter else 0.0)
    return out


def _decay(rng: Rng, seconds: float, tau: float, freq: float | None = None,
           noise_band: tuple[float, float] | None = None) -> np.ndarray:
    """An exponentially decaying grain: a sine at ``freq``, else band-limited noise."""
    m = max(1, int(seconds * SR))
    t = np.arange(m) / SR
    body = np.sin(2 * np.pi * freq * t) if freq else _noise(rng, m, _band(*(noise_band or (50, 8000))))
    return body * np.exp(-t / tau)


def _tone(freq: float, seconds: float, harmonics: int = 4, tau: float = 0.8) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    wave = sum(np.sin(2 * np.pi * freq * k * t) / k ** 1.5 for k in range(1, harmonics + 1))
    return wave * np.exp(-t / tau) * np.minimum(1, t * 200)


def _rain(rng: Rng, n: int) -> np.ndarray:
    hiss = 0.4 * _noise(rng, n, _band(1500, 7000))
    drops = _scatter(rng, n, 120, lambda r: _decay(r, 0.02, 0.004, freq=r.uniform(2000, 5000)) * r.uniform(0.3, 1.5))
    return hiss + drops


def _wind(rng: Rng, n: int) -> np.ndarray:
    return _noise(rng, n, _band(80, 700)) * _drift(rng, n, max(2, n // SR), 0.15, 1.0)


def _footsteps(rng: Rng, n: int) -> np.ndarray:
    def step(r: Rng) -> np.ndarray:
        return _mix(_decay(r, 0.18, 0.035, noise_band=(40, 400)) * 2.5, _decay(r, 0.02, 0.003, noise_band=(1000, 6000)))
    return _scatter(rng, n, 1.8, step, jitter=0.1)


def _thunder(rng: Rng, n: int) -> np.ndarray:
    return _scatter(rng, n, 0.35, lambda r: _decay(r, 3.0, 0.9, noise_band=(20, 160)) * r.uniform(1.5, 3.0), 0.5)


def _water(rng: Rng, n: int) -> np.ndarray:
    bubbles = _scatter(rng, n, 25, lambda r: _decay(r, 0.04, 0.01, freq=r.uniform(400, 1500)) * 0.6)
    return _noise(rng, n, _band(300, 3000)) * _drift(rng, n, max(2, n // (SR // 2)), 0.4, 1.0) * 0.6 + bubbles


def _knock(rng: Rng, n: int) -> np.ndarray:
    pitch = rng.uniform(700, 1500)
    return _scatter(rng, n, 2.5, lambda r: _mix(_decay(r, 0.12, 0.02, freq=pitch) * 2, _decay(r, 0.01, 0.002)), 0.15)


def _speech(rng: Rng, n: int) -> np.ndarray:
    t = np.arange(n) / SR
    f0 = rng.uniform(100, 220) * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t))
    buzz = np.sign(np.sin(2 * np.pi * np.cumsum(f0) / SR)) * 0.3
    syllables = np.abs(np.sin(2 * np.pi * rng.uniform(3, 5) * t)) * _drift(rng, n, max(2, n // SR), 0.0, 1.0)
    return np.convolve(buzz, np.hanning(12) / 6, mode="same") * syllables


def _music(rng: Rng, n: int) -> np.ndarray:
    scale = 220.0 * 2 ** (np.array([0, 2, 4, 7, 9, 12, 14]) / 12)
    return _scatter(rng, n, 2.0, lambda r: _tone(float(r.choice(scale)), 1.5), jitter=0.05)


def _birds(rng: Rng, n: int) -> np.ndarray:
    def chirp(r: Rng) -> np.ndarray:
        m = int(r.uniform(0.05, 0.15) * SR)
        f = np.linspace(r.uniform(2000, 4000), r.uniform(3500, 6500), m)
        return np.sin(2 * np.pi * np.cumsum(f) / SR) * np.hanning(m)
    return _scatter(rng, n, 4, chirp)


def _engine(rng: Rng, n: int) -> np.ndarray:
    t = np.arange(n) / SR
    base = rng.uniform(35, 60)
    return sum(np.sin(2 * np.pi * base * k * t) / k for k in range(1, 8)) * 0.5 + 0.3 * _noise(rng, n, _band(30, 400))


def _dog(rng: Rng, n: int) -> np.ndarray:
    return _scatter(rng, n, 1.2, lambda r: _tone(r.uniform(350, 600), 0.2, harmonics=6, tau=0.08) * 2, 0.4)


# Words of the prompt that select each layer.
RECIPES: dict[str, tuple[tuple[str, ...], Layer]] = {
    "rain": (("rain", "raining", "rainy", "drizzle", "storm", "downpour"), _rain),
    "wind": (("wind", "windy", "breeze", "gust", "gusts", "blowing"), _wind),
    "footsteps": (("footstep", "footsteps", "steps", "walking", "walks", "running", "walk"), _footsteps),
    "thunder": (("thunder", "thunderstorm", "lightning", "storm", "rumble"), _thunder),
    "water": (("water", "stream", "river", "pouring", "waves", "ocean", "sea", "splash"), _water),
    "knock": (("hammer", "knock", "knocking", "tapping", "wooden", "wood", "door"), _knock),
    "speech": (("speaking", "speech", "talking", "man", "woman", "female", "male", "voice", "people"), _speech),
    "music": (("music", "piano", "bell", "bells", "singing", "bowl", "melody", "guitar", "ambient"), _music),
    "birds": (("bird", "birds", "chirping", "tweeting", "forest"), _birds),
    "engine": (("engine", "car", "motor", "traffic", "vehicle", "truck"), _engine),
    "dog": (("dog", "bark", "barking", "dogs"), _dog),
}


def layers_for(text: str) -> list[str]:
    """Names of the layers a prompt selects (empty: a generic texture)."""
    words = set(re.findall(r"[a-z]+", text.lower()))
    return [name for name, (keys, _) in RECIPES.items() if words.intersection(keys)]


def synthesize(text: str, seed: int, duration: float, guidance_scale: float = 2.5, model_name: str = "") -> np.ndarray:
    """Deterministic float32 audio at 16 kHz for a prompt and seed (same text+seed+model, same audio)."""
    digest = hashlib.sha256(f"{model_name}|{int(seed)}|{text.strip().lower()}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    n = max(1, int(round(duration * SR)))
    bed = _noise(rng, n, lambda f: 1.0 / np.sqrt(np.maximum(f, 20.0)))
    names = layers_for(text)
    if names:
        fg = sum(RECIPES[name][1](rng, n) for name in names)
    else:
        tone = np.resize(_tone(float(rng.uniform(110, 660)), n / SR, harmonics=5, tau=duration / 2), n)
        fg = tone + _noise(rng, n, _band(rng.uniform(100, 800), rng.uniform(1500, 6000))) * _drift(rng, n, 4, 0.1, 0.8)
    fg = np.asarray(fg, dtype=np.float64)
    fg /= np.sqrt(np.mean(fg ** 2)) + 1e-9
    # Higher guidance: the prompt's layers stand out more from the background bed.
    weight = 0.4 + 0.12 * float(np.clip(guidance_scale, 0, 5))
    out = weight * fg + (1 - weight) * 0.3 * bed
    fade = min(n // 2, int(0.02 * SR))
    if fade:
        ramp = np.linspace(0, 1, fade)
        out[:fade] *= ramp
        out[-fade:] *= ramp[::-1]
    return (out / (np.abs(out).max() + 1e-9) * 0.9).astype(np.float32)

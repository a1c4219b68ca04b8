"""Parity of the Wav2Lip / RADIO log-mel (numpy and jax) against a librosa implementation of the recipe."""

import pickle
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest
import scipy.signal

from talking_heads.audio import mel

REPO_ROOT = Path(__file__).resolve().parents[2]


def _speechlike(seed: int, seconds: float = 2.0, sample_rate: int = 16000) -> np.ndarray:
  """Chirp + 140 Hz vowel-like harmonic stack with tremolo + white noise, float64."""
  rng = np.random.default_rng(seed)
  n = int(seconds * sample_rate) + int(rng.integers(0, 200))
  t = np.arange(n) / sample_rate
  f0 = 120.0 + 40.0 * rng.random()
  chirp = 0.3 * scipy.signal.chirp(t, 100.0, t[-1], 6000.0)
  vowel = sum(0.2 / k * np.sin(2 * np.pi * f0 * k * t + rng.random()) for k in range(1, 25))
  vowel = vowel * (1.0 + 0.5 * np.sin(2 * np.pi * 3.0 * t))
  return chirp + vowel + 0.01 * rng.standard_normal(n)


def _librosa_recipe(audio: np.ndarray, config: mel.MelConfig) -> np.ndarray:
  """Wav2Lip audio.melspectrogram written against librosa (reflect padding as in librosa 0.7)."""
  emphasised = scipy.signal.lfilter([1.0, -config.preemphasis], [1.0], audio)
  stft = librosa.stft(y=emphasised, n_fft=config.n_fft, hop_length=config.hop_length,
                      win_length=config.win_length, pad_mode="reflect")
  basis = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels,
                              fmin=config.fmin, fmax=config.fmax)
  db = 20.0 * np.log10(np.maximum(1e-5, basis @ np.abs(stft))) - config.ref_level_db
  return np.clip(8.0 * (db + 100.0) / 100.0 - 4.0, -4.0, 4.0)


@pytest.fixture(scope="module")
def signals():
  return [_speechlike(seed) for seed in range(2)]


@pytest.mark.parametrize("config", [mel.WAV2LIP_MEL, mel.RADIO_MEL], ids=["wav2lip", "radio"])
def test_numpy_matches_librosa_recipe(signals, config):
  for audio in signals:
    ours = mel.mel_spectrogram(audio, config)
    ref = _librosa_recipe(audio, config)
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape == (80, 1 + audio.shape[0] // config.hop_length)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
    # Not a trivially flat output: the test signal spans a wide range of levels.
    assert ref.max() - ref.min() > 4.0


@pytest.mark.parametrize("config", [mel.WAV2LIP_MEL, mel.RADIO_MEL], ids=["wav2lip", "radio"])
def test_jax_matches_numpy_and_librosa(signals, config):
  n = min(s.shape[0] for s in signals)
  batch = np.stack([s[:n] for s in signals]).astype(np.float32)
  out = np.asarray(mel.mel_spectrogram_jax(jnp.asarray(batch), config))
  assert out.shape == (2, 80, config.num_frames(n)) and out.dtype == np.float32
  for b in range(2):
    np.testing.assert_allclose(out[b], mel.mel_spectrogram(batch[b], config), atol=1e-4, rtol=0)
    np.testing.assert_allclose(out[b], _librosa_recipe(batch[b].astype(np.float64), config), atol=1e-4, rtol=0)


def test_jax_composes_inside_jit(signals):
  audio = jnp.asarray(signals[0][None, :16000], jnp.float32)
  expected = mel.mel_spectrogram(signals[0][:16000])
  # First use inside an outer trace must not cache anything trace-bound for later eager calls.
  mel._jax_mel_fn.cache_clear()  # pylint: disable=protected-access
  summed = jax.jit(lambda a: mel.mel_spectrogram_jax(a).sum())(audio)
  np.testing.assert_allclose(summed, expected.sum(), rtol=1e-5)
  np.testing.assert_allclose(mel.mel_spectrogram_jax(audio)[0], expected, atol=1e-4)


def test_filterbank_matches_librosa():
  for config in (mel.WAV2LIP_MEL, mel.RADIO_MEL):
    ours = mel.slaney_mel_filterbank(sample_rate=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels,
                                     fmin=config.fmin, fmax=config.fmax)
    ref = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.fmin,
                              fmax=config.fmax, dtype=np.float64)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-14)


def test_orientation_and_frame_count():
  audio = _speechlike(3, seconds=0.5)[:8001]
  m = mel.mel_spectrogram(audio)
  tm = mel.mel_spectrogram_time_major(audio)
  assert m.shape == (80, 41)  # 1 + 8001 // 200
  assert tm.shape == (41, 80) and tm.flags.c_contiguous
  np.testing.assert_array_equal(tm, m.T)
  assert mel.WAV2LIP_MEL.frames_per_second == 80.0 and mel.RADIO_MEL.frames_per_second == 100.0
  assert mel.RADIO_MEL.num_frames(16000) == 101


@pytest.mark.parametrize("config", [mel.WAV2LIP_MEL, mel.RADIO_MEL], ids=["wav2lip", "radio"])
def test_spectra_in_blocks_are_the_spectra_at_once(signals, config, monkeypatch):
  """The spectra are computed a block of frames at a time (bounded memory for long audio)."""
  whole = mel.mel_spectrogram(signals[0], config)
  monkeypatch.setattr(mel, "_STFT_BLOCK", 7)
  np.testing.assert_array_equal(mel.mel_spectrogram(signals[0], config), whole)


def test_silence_is_floor_and_int16_is_scaled():
  np.testing.assert_array_equal(mel.mel_spectrogram(np.zeros(4000)), -4.0)
  audio = (_speechlike(4, seconds=0.5) * 8000).astype(np.int16)
  np.testing.assert_allclose(mel.mel_spectrogram(audio), mel.mel_spectrogram(audio / 32768.0), atol=1e-6)
  np.testing.assert_allclose(mel.mel_spectrogram_jax(jnp.asarray(audio[None])), mel.mel_spectrogram(audio)[None],
                             atol=1e-4)


def test_bad_input_errors():
  with pytest.raises(ValueError, match="clipA.*1-D"):
    mel.mel_spectrogram(np.zeros((2, 4000)), clip_id="clipA")
  with pytest.raises(ValueError, match="clipB.*400"):
    mel.mel_spectrogram(np.zeros(400), clip_id="clipB")
  bad = np.zeros(4000)
  bad[17] = np.nan
  with pytest.raises(ValueError, match="clipC.*index 17"):
    mel.mel_spectrogram(bad, clip_id="clipC")
  with pytest.raises(ValueError, match=r"\[B, N\]"):
    mel.mel_spectrogram_jax(jnp.zeros(4000))
  with pytest.raises(ValueError, match="win_length"):
    mel.MelConfig(win_length=1000)
  with pytest.raises(ValueError, match="fmax"):
    mel.MelConfig(fmax=9000.0)


def test_config_is_picklable_and_hashable():
  assert pickle.loads(pickle.dumps(mel.RADIO_MEL)) == mel.RADIO_MEL
  assert hash(mel.WAV2LIP_MEL) != hash(mel.RADIO_MEL)
  assert mel.WAV2LIP_MEL.window_spec(16).mel_frames_per_video_frame == 3.2


def test_numpy_path_imports_neither_jax_nor_librosa():
  code = ("import sys, numpy as np; from talking_heads.audio import mel, mfcc, windows; "
          "mel.mel_spectrogram(np.ones(4000)); mfcc.mfcc(np.ones(4000)); "
          "bad = [m for m in ('jax', 'librosa', 'numba') if m in sys.modules]; assert not bad, bad")
  subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, timeout=60)

"""Parity of the syncnet_python MFCC against python_speech_features (the test-only reference)."""

import numpy as np
import pytest
import python_speech_features as psf
import scipy.signal

from talking_heads.audio import mfcc


def _speech_int16(seed: int, num_samples: int) -> np.ndarray:
  """Vowel-like harmonics + chirp + noise as int16 PCM, the form syncnet_python reads from wav."""
  rng = np.random.default_rng(seed)
  t = np.arange(num_samples) / 16000.0
  signal = sum(0.15 / k * np.sin(2 * np.pi * 130.0 * k * t + rng.random()) for k in range(1, 20))
  signal = signal + 0.2 * scipy.signal.chirp(t, 200.0, max(t[-1], 1e-3), 5000.0)
  signal = signal + 0.02 * rng.standard_normal(num_samples)
  return np.round(signal / np.abs(signal).max() * 20000).astype(np.int16)


def _syncnet_reference(audio: np.ndarray, **kwargs) -> np.ndarray:
  # syncnet_python: numpy.stack([numpy.array(i) for i in zip(*python_speech_features.mfcc(audio, sample_rate))])
  return np.stack([np.array(row) for row in zip(*psf.mfcc(audio, 16000, **kwargs))])


@pytest.mark.parametrize("num_samples", [200, 400, 401, 560, 561, 16000, 33333])
def test_matches_python_speech_features(num_samples):
  audio = _speech_int16(num_samples, num_samples)
  ours = mfcc.mfcc(audio)
  ref = _syncnet_reference(audio)
  assert ours.shape == ref.shape == (13, mfcc.SYNCNET_MFCC.num_frames(num_samples))
  np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9)


def test_frame_counts_hand_computed():
  config = mfcc.SYNCNET_MFCC
  assert (config.win_length, config.hop_length) == (400, 160)
  # 1 frame up to 400 samples, then 1 + ceil((N - 400) / 160).
  assert [config.num_frames(n) for n in (1, 400, 401, 560, 561, 16000)] == [1, 1, 2, 2, 3, 99]


def test_filterbank_matches_reference():
  np.testing.assert_allclose(mfcc.mfcc_filterbank(), psf.get_filterbanks(26, 512, 16000, 0, 8000), rtol=0, atol=1e-12)
  # Many filters over few bins gives empty/degenerate triangles: the zero-width edge cases.
  config = mfcc.MfccConfig(num_filters=64, n_fft=512, num_cepstra=13)
  np.testing.assert_allclose(mfcc.mfcc_filterbank(config), psf.get_filterbanks(64, 512, 16000, 0, 8000), atol=1e-12)


def test_non_default_settings_match_reference():
  audio = _speech_int16(7, 12345).astype(np.float64) / 32768.0
  config = mfcc.MfccConfig(num_cepstra=20, num_filters=40, n_fft=1024, low_freq=50.0, high_freq=7000.0,
                           preemphasis=0.0, cep_lifter=0, append_energy=False, win_length_s=0.05, hop_length_s=0.0125)
  ref = _syncnet_reference(audio, winlen=0.05, winstep=0.0125, numcep=20, nfilt=40, nfft=1024, lowfreq=50.0,
                           highfreq=7000.0, preemph=0.0, ceplifter=0, appendEnergy=False)
  np.testing.assert_allclose(mfcc.mfcc(audio, config), ref, rtol=1e-9, atol=1e-9)


def test_silence_uses_eps_floor_like_reference():
  silence = np.zeros(1600, dtype=np.int16)
  ours = mfcc.mfcc(silence)
  np.testing.assert_allclose(ours, _syncnet_reference(silence), rtol=1e-12, atol=1e-9)
  np.testing.assert_allclose(ours[0], np.log(np.finfo(np.float64).eps))


def test_scale_moves_only_energy_coefficient():
  audio = _speech_int16(3, 8000)
  unscaled, scaled = mfcc.mfcc(audio), mfcc.mfcc(audio / 32768.0)
  np.testing.assert_allclose(unscaled[1:], scaled[1:], atol=1e-8)
  np.testing.assert_allclose(unscaled[0] - scaled[0], 2 * np.log(32768.0), rtol=1e-9)


def test_bad_input_errors():
  with pytest.raises(ValueError, match="clipA.*1-D"):
    mfcc.mfcc(np.zeros((2, 1000)), clip_id="clipA")
  with pytest.raises(ValueError, match="clipB"):
    mfcc.mfcc(np.array([]), clip_id="clipB")
  bad = np.ones(1000)
  bad[5] = np.inf
  with pytest.raises(ValueError, match="clipC.*index 5"):
    mfcc.mfcc(bad, clip_id="clipC")
  with pytest.raises(ValueError, match="exceeds n_fft"):
    mfcc.MfccConfig(n_fft=256)

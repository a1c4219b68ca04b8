"""Tests for talking_heads.io.audio: loading, resampling and writing audio."""

import os

import librosa
import numpy as np
import pytest
import soundfile as sf

from talking_heads.io import audio as audio_io


def _sine(freq: float, sample_rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
  t = np.arange(int(round(seconds * sample_rate))) / sample_rate
  return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _encode(path, audio: np.ndarray, sample_rate: int, channels: int, codec: list[str]):
  """Encodes interleaved float32 audio with ffmpeg into `path` (container from the suffix)."""
  audio_io.run_ffmpeg(
      ["-y", "-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels), "-i", "pipe:0",
       *codec, path], path, "test encode", input_bytes=audio.astype("<f4").tobytes())


def test_load_wav_matches_pcm_values(tmp_path):
  pcm = np.array([0, 1, -1, 16384, -16384, 32767, -32768, 1234], np.int16)
  path = tmp_path / "a.wav"
  sf.write(path, pcm, 16000, subtype="PCM_16")
  loaded = audio_io.load_audio(path)
  assert loaded.dtype == np.float32
  np.testing.assert_array_equal(loaded, pcm.astype(np.float32) / 32768)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # audioread, imported by librosa.load
def test_load_stereo_wav_downmixes_and_resamples(tmp_path):
  left = _sine(440, 44100, 1.0)
  stereo = np.stack([left, 0.5 * left], axis=1)
  path = tmp_path / "stereo.wav"
  sf.write(path, stereo, 44100, subtype="FLOAT")
  loaded = audio_io.load_audio(path, sample_rate=16000)
  expected = 0.75 * _sine(440, 16000, 1.0)
  assert loaded.shape == expected.shape
  # Away from the filter's edge transients the resampled sine is the analytic one.
  np.testing.assert_allclose(loaded[200:-200], expected[200:-200], atol=2e-3)
  reference = librosa.load(path, sr=16000, mono=True)[0]
  np.testing.assert_allclose(loaded, reference, atol=1e-5)


def test_load_flac_same_as_wav(tmp_path):
  audio = _sine(300, 16000, 0.5)
  sf.write(tmp_path / "a.flac", audio, 16000, subtype="PCM_16")
  sf.write(tmp_path / "a.wav", audio, 16000, subtype="PCM_16")
  # libsndfile quantises FLAC and WAV slightly differently: within one 16-bit step.
  for name in ("a.flac", "a.wav"):
    np.testing.assert_allclose(audio_io.load_audio(tmp_path / name), audio, atol=1.01 / 32768)


def test_load_from_container_with_ffmpeg_downmix_and_resample(tmp_path):
  # Lossless FLAC in Matroska at 48 kHz stereo goes through ffmpeg's downmix and resampler;
  # the downmix must average the channels, as the soundfile path does.
  sine = _sine(440, 48000, 1.0, amplitude=0.8)
  path = tmp_path / "a.mkv"
  _encode(path, np.stack([sine, 0.5 * sine], axis=1), 48000, 2, ["-c:a", "flac"])
  loaded = audio_io.load_audio(path, sample_rate=16000)
  expected = _sine(440, 16000, 1.0, amplitude=0.6)
  assert abs(len(loaded) - len(expected)) <= 1
  n = min(len(loaded), len(expected))
  np.testing.assert_allclose(loaded[200:n - 200], expected[200:n - 200], atol=3e-3)


def test_load_from_lossy_container_correlates(tmp_path):
  rng = np.random.default_rng(0)
  t = np.arange(16000) / 16000
  speechlike = (0.3 * np.sin(2 * np.pi * 200 * t) * np.sin(2 * np.pi * 3 * t)
                + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
  path = tmp_path / "a.m4a"
  _encode(path, speechlike, 16000, 1, ["-c:a", "aac", "-b:a", "64k"])
  loaded = audio_io.load_audio(path)
  n = min(len(loaded), len(speechlike))
  assert abs(len(loaded) - len(speechlike)) < 1024  # at most one AAC frame of padding
  assert np.corrcoef(loaded[:n], speechlike[:n])[0, 1] > 0.95
  assert np.all(np.abs(loaded) <= 1.0)


def test_silent_audio_is_returned_not_rejected(tmp_path):
  path = tmp_path / "silent.wav"
  sf.write(path, np.zeros(800, np.float32), 16000)
  np.testing.assert_array_equal(audio_io.load_audio(path), np.zeros(800, np.float32))


def test_no_audio_stream_raises_no_audio_error(tmp_path):
  path = tmp_path / "video_only.mp4"
  audio_io.run_ffmpeg(["-y", "-f", "lavfi", "-i", "testsrc=size=32x32:rate=25", "-t", "0.2",
                       "-c:v", "libx264", "-pix_fmt", "yuv420p", path], path, "test encode")
  with pytest.raises(audio_io.NoAudioError, match="video_only.mp4.*no audio stream"):
    audio_io.load_audio(path)


@pytest.mark.parametrize("name", ["junk.mp4", "junk.wav"])
def test_non_media_file_raises_media_error(tmp_path, name):
  path = tmp_path / name
  path.write_text("this is not audio\n" * 20)
  with pytest.raises(audio_io.MediaError, match=f"{name}: cannot decode audio") as info:
    audio_io.load_audio(path)
  assert not isinstance(info.value, audio_io.NoAudioError)
  assert "Invalid data" in info.value.log


def test_missing_file_raises_file_not_found(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.wav: does not exist"):
    audio_io.load_audio(tmp_path / "nope.wav")


def test_resample_sine_and_length():
  audio = _sine(1000, 22050, 1.0)
  out = audio_io.resample(audio, 22050, 16000)
  assert out.dtype == np.float32 and out.shape == (16000,)
  np.testing.assert_allclose(out[200:-200], _sine(1000, 16000, 1.0)[200:-200], atol=2e-3)
  same = audio_io.resample(audio, 22050, 22050)
  np.testing.assert_array_equal(same, audio)
  stereo = audio_io.resample(np.stack([audio, -audio], axis=1), 22050, 16000)
  np.testing.assert_allclose(stereo[:, 0], -stereo[:, 1], atol=1e-6)


@pytest.mark.parametrize("orig,target", [(0, 16000), (16000, -1), (16000.5, 16000)])
def test_resample_rejects_bad_rates(orig, target):
  with pytest.raises(ValueError, match="positive integer"):
    audio_io.resample(np.zeros(10, np.float32), orig, target)


def test_write_wav_round_trip_quantisation_and_clipping(tmp_path):
  rng = np.random.default_rng(1)
  audio = rng.uniform(-0.9, 0.9, 4000).astype(np.float32)
  audio[:2] = [1.7, -3.0]  # out of range: clipped rather than wrapped around
  path = audio_io.write_wav(tmp_path / "sub" / "out.wav", audio)
  info = sf.info(path)
  assert (info.samplerate, info.subtype, info.channels) == (16000, "PCM_16", 1)
  loaded = audio_io.load_audio(path)
  np.testing.assert_allclose(loaded[2:], audio[2:], atol=1 / 32768 + 1e-7)
  assert loaded[0] > 0.999 and loaded[1] == -1.0
  assert os.listdir(tmp_path / "sub") == ["out.wav"]  # no temporary file left behind


def test_write_wav_rejects_bad_input(tmp_path):
  with pytest.raises(ValueError, match="bad.wav: audio must be a float array"):
    audio_io.write_wav(tmp_path / "bad.wav", np.zeros(10, np.int16))
  with pytest.raises(ValueError, match="bad.wav: audio contains NaN"):
    audio_io.write_wav(tmp_path / "bad.wav", np.array([0.0, np.nan], np.float32))
  assert not list(tmp_path.iterdir())

"""Mel-window alignment (Wav2Lip, RADIO, syncnet_python), sample/frame maths and input checks."""

import pickle

import numpy as np
import pytest

from talking_heads.audio import mel
from talking_heads.audio import windows as w


def _wav2lip_inference_loop(num_mel_frames: int, fps: float = 25.0, step: int = 16) -> list[int]:
  """Scalar replica of Wav2Lip inference.py's chunking loop (float multiplier as in the original)."""
  starts, i, multiplier = [], 0, 80.0 / fps
  while True:
    start = int(i * multiplier)
    if start + step > num_mel_frames:
      starts.append(num_mel_frames - step)
      return starts
    starts.append(start)
    i += 1


def test_wav2lip_starts_hand_computed():
  np.testing.assert_array_equal(w.window_starts(np.arange(11)), [0, 3, 6, 9, 12, 16, 19, 22, 25, 28, 32])
  assert w.WAV2LIP_WINDOWS.mel_frames_per_video_frame == 3.2
  assert w.WAV2LIP_WINDOWS.window == 16 and w.WAV2LIP_WINDOWS.mel_fps == 80.0


def test_wav2lip_starts_equal_reference_float_formula():
  frames = np.arange(20000)
  reference = [int(80.0 * (f / 25.0)) for f in frames]  # Wav2Lip crop_audio_window
  np.testing.assert_array_equal(w.window_starts(frames), reference)
  # Any shape in, same shape out.
  np.testing.assert_array_equal(w.window_starts(frames[:12].reshape(3, 4)), np.reshape(reference[:12], (3, 4)))


def test_per_frame_training_windows_shift_back_one_frame():
  np.testing.assert_array_equal(w.window_starts([1, 2, 3, 6], shift=-1), [0, 3, 6, 16])
  with pytest.raises(ValueError, match="vid7.*video frame 0"):
    w.window_starts([3, 0, 2], shift=-1, clip_id="vid7")


def test_radio_and_syncnet_rates():
  frames = np.arange(1000)
  np.testing.assert_array_equal(w.window_starts(frames, w.RADIO_WINDOWS), 4 * frames)
  np.testing.assert_array_equal(w.window_starts(frames, w.SYNCNET_MFCC_WINDOWS), 4 * frames)
  assert w.RADIO_WINDOWS.mel_frames_per_video_frame == 4.0
  # The float form Wav2Lip uses would be off by one here at 100 frames/s.
  assert int(100.0 * (29 / 25.0)) == 115 and w.window_starts(29, w.RADIO_WINDOWS) == 116
  assert mel.RADIO_MEL.window_spec(20) == w.RADIO_WINDOWS
  assert mel.WAV2LIP_MEL.window_spec(16) == w.WAV2LIP_WINDOWS
  assert pickle.loads(pickle.dumps(w.RADIO_WINDOWS)) == w.RADIO_WINDOWS  # grain workers receive specs pickled


def test_inference_chunks_hand_computed():
  # 1 s of audio: 16000 samples -> 81 mel frames; chunks 0..20 fit (int(3.2 * 20) = 64), then the tail 65.
  starts = w.inference_chunk_starts(mel.WAV2LIP_MEL.num_frames(16000))
  np.testing.assert_array_equal(starts[:6], [0, 3, 6, 9, 12, 16])
  assert starts[-2:].tolist() == [64, 65] and len(starts) == 22
  np.testing.assert_array_equal(w.inference_chunk_starts(20), [0, 3, 4])
  np.testing.assert_array_equal(w.inference_chunk_starts(16), [0, 0])


def test_inference_chunks_equal_reference_loop():
  for num_mel in range(16, 700):
    np.testing.assert_array_equal(w.inference_chunk_starts(num_mel), _wav2lip_inference_loop(num_mel), err_msg=num_mel)


def test_inference_too_short_audio():
  with pytest.raises(ValueError, match="talk3.*15 mel frames"):
    w.inference_chunk_starts(15, clip_id="talk3")


def test_slice_windows_content_and_layout():
  mel_tm = np.arange(50)[:, None] * np.ones((1, 80))  # [F, M], value = mel frame index
  out = w.slice_windows(mel_tm, [[0, 2], [5, 10]])
  assert out.shape == (2, 2, 16, 80)
  np.testing.assert_array_equal(out[1, 0, :, 7], np.arange(16, 32))  # frame 5 -> [16, 32)
  np.testing.assert_array_equal(out[1, 1, :, 0], np.arange(32, 48))  # frame 10 -> [32, 48)


def test_too_short_audio_names_clip_and_frame():
  with pytest.raises(ValueError, match=r"clip_9: audio too short: video frame 11 needs mel frames \[35, 51\)"):
    w.check_windows_fit(50, [3, 11, 4], clip_id="clip_9")
  with pytest.raises(ValueError, match="clip_9"):
    w.slice_windows(np.zeros((20, 80)), [2], clip_id="clip_9")


def test_sync_windows_fit_audio_of_matching_length():
  # Audio exactly as long as T frames always covers the last 5-frame sync window (frame T - 5).
  for num_frames in range(5, 300):
    num_mel = mel.WAV2LIP_MEL.num_frames(num_frames * w.SAMPLES_PER_FRAME)
    w.check_windows_fit(num_mel, np.arange(num_frames - 4))
    num_mel = mel.RADIO_MEL.num_frames(num_frames * w.SAMPLES_PER_FRAME)
    w.check_windows_fit(num_mel, np.arange(num_frames - 4), w.RADIO_WINDOWS)


def test_frames_samples_round_trip():
  assert w.SAMPLES_PER_FRAME == 640
  np.testing.assert_array_equal(w.frames_to_samples([0, 1, 25]), [0, 640, 16000])
  np.testing.assert_array_equal(w.samples_to_frames([0, 639, 640, 1279, 16000]), [0, 0, 1, 1, 25])
  frames = np.arange(1000)
  np.testing.assert_array_equal(w.samples_to_frames(w.frames_to_samples(frames) + 639), frames)
  with pytest.raises(ValueError, match="30 fps"):
    w.frames_to_samples(3, fps=30)


def test_fit_audio_to_frames():
  audio = np.arange(1000, dtype=np.float32)
  np.testing.assert_array_equal(w.fit_audio_to_frames(audio, 1), audio[:640])
  padded = w.fit_audio_to_frames(audio, 2)
  assert padded.shape == (1280,) and padded.dtype == np.float32
  np.testing.assert_array_equal(padded[1000:], 0)
  with pytest.raises(ValueError, match="clipX: audio has 1000 samples.*3 frames"):
    w.fit_audio_to_frames(audio, 3, clip_id="clipX")


def test_check_sample_rate():
  w.check_sample_rate(16000)
  with pytest.raises(ValueError, match="interview.wav: sample rate is 44100 Hz but 16000 Hz"):
    w.check_sample_rate(44100, clip_id="interview.wav")


def test_silence_detection():
  t = np.arange(16000) / 16000
  tone = np.sin(2 * np.pi * 440 * t)  # RMS -3.0 dBFS
  np.testing.assert_allclose(w.rms_db(tone), 20 * np.log10(np.sqrt(0.5)), atol=1e-6)
  assert not w.is_silent(tone, threshold_db=-60.0)
  assert w.is_silent(tone * 10 ** (-70 / 20), threshold_db=-60.0)
  assert not w.is_silent(tone * 10 ** (-50 / 20), threshold_db=-60.0)
  assert w.is_silent(np.zeros(100, dtype=np.int16))
  np.testing.assert_array_equal(w.is_silent(np.stack([tone, 1e-5 * tone])), [False, True])
  with pytest.raises(w.SilentAudioError, match="take2.*silent"):
    w.check_not_silent(np.zeros(16000), clip_id="take2")
  w.check_not_silent(tone)


def test_as_float_audio():
  np.testing.assert_array_equal(w.as_float_audio(np.array([-32768, 0, 16384], np.int16)), [-1.0, 0.0, 0.5])
  with pytest.raises(ValueError, match="unsigned|dtype uint8"):
    w.as_float_audio(np.array([1, 2], np.uint8))
  with pytest.raises(ValueError, match="a.wav.*index 1"):
    w.as_float_audio(np.array([0.0, np.nan]), clip_id="a.wav")
  with pytest.raises(ValueError, match="must be a positive integer"):
    w.MelWindowSpec(sample_rate=16000, hop_length=0, window=16)

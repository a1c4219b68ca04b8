"""Tests for talking_heads.io.video: probe, decode, encode and mux with the bundled ffmpeg."""

import base64
import os
import re

import numpy as np
import pytest
import soundfile as sf

from talking_heads.io import audio as audio_io
from talking_heads.io import video


def _smooth_frames(num_frames: int, height: int, width: int) -> np.ndarray:
  """Gradients that drift over time: H.264 reproduces them within a few grey levels."""
  yy, xx = np.mgrid[:height, :width]
  frames = [np.stack([(2 * xx + 3 * t) % 200 + 20, (2 * yy + t) % 200 + 20,
                      np.full_like(xx, 60 + 2 * t)], axis=-1) for t in range(num_frames)]
  return np.asarray(frames, np.uint8)


def _speechlike(num_samples: int, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  t = np.arange(num_samples) / 16000
  envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
  tone = 0.3 * np.sin(2 * np.pi * 180 * t) + 0.15 * np.sin(2 * np.pi * 1100 * t)
  return (envelope * tone + 0.02 * rng.standard_normal(num_samples)).astype(np.float32)


def _best_correlation(reference: np.ndarray, decoded: np.ndarray, max_lag: int = 2048):
  """Highest correlation over lags (an encoder delay), and the lag."""
  best = (-1.0, 0)
  for lag in range(-max_lag, max_lag + 1, 8):
    x = reference[max(0, -lag):]
    y = decoded[max(0, lag):]
    n = min(len(x), len(y))
    best = max(best, (float(np.corrcoef(x[:n], y[:n])[0, 1]), lag))
  return best


@pytest.fixture(scope="module")
def clip_with_audio(tmp_path_factory):
  frames = _smooth_frames(50, 48, 64)
  audio = _speechlike(640 * 50)
  path = tmp_path_factory.mktemp("av") / "talk.mp4"
  video.write_video_with_audio(path, frames, audio, fps=25, sample_rate=16000)
  return path, frames, audio


def test_write_read_round_trip(tmp_path):
  frames = _smooth_frames(30, 48, 64)
  path = video.write_video(tmp_path / "out" / "v.mp4", frames, fps=25)
  decoded, fps = video.read_video(path)
  assert fps == 25.0
  assert decoded.shape == frames.shape and decoded.dtype == np.uint8
  error = np.abs(decoded.astype(np.int32) - frames)
  assert error.mean() < 3.0 and np.percentile(error, 99) < 12
  assert os.listdir(tmp_path / "out") == ["v.mp4"]  # the temporary file was renamed
  streamed = list(video.iter_frames(path))
  np.testing.assert_array_equal(np.stack(streamed), decoded)


def test_probe(tmp_path, clip_with_audio):
  path, _, _ = clip_with_audio
  info = video.probe(path)
  assert (info.width, info.height, info.fps) == (64, 48, 25.0)
  assert info.has_audio and info.audio_sample_rate == 16000
  assert info.duration == pytest.approx(2.0, abs=0.1) and info.num_frames == 50
  silent = video.write_video(tmp_path / "silent.mp4", _smooth_frames(5, 16, 16), fps=12.5)
  info = video.probe(silent)
  assert not info.has_audio and info.audio_sample_rate is None and info.fps == 12.5


def test_ntsc_rate_is_exact(tmp_path):
  path = video.write_video(tmp_path / "ntsc.mp4", _smooth_frames(6, 16, 16), fps=30000 / 1001)
  assert video.probe(path).fps == 30000 / 1001


def test_odd_size_is_padded_by_edge_replication(tmp_path):
  frames = _smooth_frames(4, 33, 47)
  decoded, _ = video.read_video(video.write_video(tmp_path / "odd.mp4", frames))
  assert decoded.shape == (4, 34, 48, 3)
  assert np.abs(decoded[:, :33, :47].astype(np.int32) - frames).mean() < 3.0
  assert np.abs(decoded[:, 33, :47].astype(np.int32) - frames[:, 32]).mean() < 4.0


def test_read_resamples_frame_rate(tmp_path):
  frames = _smooth_frames(50, 32, 32)
  path = video.write_video(tmp_path / "ramp.mp4", frames, fps=25)
  native, _ = video.read_video(path)
  decoded, fps = video.read_video(path, fps=10)
  assert fps == 10.0 and decoded.shape == (20, 32, 32, 3)
  # Each output frame is one decoded source frame (dropped or repeated, never blended) from
  # near time i / 10 s, in order.
  distances = np.abs(decoded[:, None].astype(np.int32) - native[None]).sum(axis=(2, 3, 4))
  assert np.all(distances.min(axis=1) == 0)
  source_index = distances.argmin(axis=1)
  assert np.all(np.abs(source_index - 2.5 * np.arange(20)) <= 1.5)
  assert np.all(np.diff(source_index) > 0)
  up, _ = video.read_video(path, fps=50)
  assert len(up) == 100


def test_rotation_metadata_is_applied(tmp_path):
  frames = _smooth_frames(3, 32, 48)
  plain = video.write_video(tmp_path / "plain.mp4", frames)
  rotated = tmp_path / "rotated.mp4"
  audio_io.run_ffmpeg(["-y", "-display_rotation", "90", "-i", plain, "-c", "copy", rotated],
                      rotated, "test remux")
  info = video.probe(rotated)
  assert (info.rotation, info.width, info.height) == (90, 32, 48)
  decoded, _ = video.read_video(rotated)
  assert decoded.shape == (3, 48, 32, 3)
  expected = np.rot90(frames, k=1, axes=(1, 2))  # 90 degrees counter-clockwise
  assert np.abs(decoded.astype(np.int32) - expected).mean() < 3.0


def test_mux_then_extract_audio(clip_with_audio):
  path, frames, audio = clip_with_audio
  decoded_frames, fps, decoded_audio = video.read_video_with_audio(path)
  assert fps == 25.0 and decoded_frames.shape == frames.shape
  assert decoded_audio.dtype == np.float32
  assert abs(len(decoded_audio) - len(audio)) < 1024  # at most one AAC frame
  correlation, lag = _best_correlation(audio, decoded_audio)
  assert correlation > 0.9, (correlation, lag)
  np.testing.assert_allclose(audio_io.load_audio(path), decoded_audio)


def test_truncated_file_raises(tmp_path, clip_with_audio):
  path, frames, audio = clip_with_audio
  data = path.read_bytes()
  truncated = tmp_path / "truncated.mp4"
  truncated.write_bytes(data[:len(data) // 2])  # header (moov) intact, media data cut
  with pytest.raises(video.VideoError, match="truncated.mp4: decode error after"):
    video.read_video(truncated)
  partial, _ = video.read_video(truncated, strict=False)
  assert 0 < len(partial) < len(frames)
  with pytest.raises(audio_io.MediaError, match="truncated.mp4: cannot decode audio"):
    audio_io.load_audio(truncated)
  assert 0 < len(audio_io.load_audio(truncated, strict=False)) < len(audio)
  header_cut = tmp_path / "header_cut.mp4"
  header_cut.write_bytes(data[:200])
  with pytest.raises(video.VideoError, match="header_cut.mp4: no video or audio stream"):
    video.read_video(header_cut)


def test_non_video_files_raise(tmp_path):
  text = tmp_path / "notes.mp4"
  text.write_text("not a video\n" * 50)
  with pytest.raises(video.VideoError, match="notes.mp4: not a readable media file"):
    video.probe(text)
  wav = tmp_path / "speech.wav"
  sf.write(wav, _speechlike(1600), 16000)
  with pytest.raises(video.VideoError, match="speech.wav: has no video stream"):
    video.read_video(wav)


def test_missing_file_raises(tmp_path):
  with pytest.raises(FileNotFoundError, match="missing.mp4: does not exist"):
    video.read_video(tmp_path / "missing.mp4")
  with pytest.raises(FileNotFoundError, match="is a directory"):
    video.probe(tmp_path)


def test_video_without_audio_raises_no_audio_error(tmp_path):
  path = video.write_video(tmp_path / "mute.mp4", _smooth_frames(5, 16, 16))
  with pytest.raises(video.NoAudioError, match="mute.mp4: has no audio stream"):
    video.read_video_with_audio(path)
  with pytest.raises(audio_io.NoAudioError, match="mute.mp4"):
    audio_io.load_audio(path)


def test_write_rejects_bad_input_and_leaves_nothing(tmp_path):
  with pytest.raises(ValueError, match="bad.mp4: frames must be uint8"):
    video.write_video(tmp_path / "bad.mp4", np.zeros((2, 16, 16, 3), np.float32))
  with pytest.raises(ValueError, match="bad.mp4: frames must be uint8"):
    video.write_video(tmp_path / "bad.mp4", np.zeros((16, 16, 3), np.uint8))
  with pytest.raises(ValueError, match="fps must be"):
    video.write_video(tmp_path / "bad.mp4", np.zeros((2, 16, 16, 3), np.uint8), fps=0)
  with pytest.raises(ValueError, match="bad.mp4: audio must be mono"):
    video.write_video_with_audio(tmp_path / "bad.mp4", np.zeros((2, 16, 16, 3), np.uint8),
                                 np.zeros((1280, 2), np.float32))
  with pytest.raises(video.MediaError, match="bad.mp4: cannot encode video"):
    video.write_video(tmp_path / "bad.mp4", np.zeros((2, 16, 16, 3), np.uint8), crf=-5)
  assert not list(tmp_path.iterdir())


def test_iter_frames_can_stop_early(clip_with_audio):
  path, frames, _ = clip_with_audio
  iterator = video.iter_frames(path)
  first = next(iterator)
  iterator.close()  # kills ffmpeg without error
  assert first.shape == frames.shape[1:] and not first.flags.writeable


def test_writer_streams_batches_into_the_same_mp4(tmp_path):
  frames = _smooth_frames(30, 47, 64)                        # odd height: padded per batch
  audio = _speechlike(640 * 30)
  whole = video.write_video_with_audio(tmp_path / "whole.mp4", frames, audio)
  with video.VideoWriter(tmp_path / "streamed.mp4", fps=25, audio=audio) as writer:
    for start in range(0, 30, 7):
      writer.write(frames[start:start + 7])
  assert writer.num_frames == 30 and writer.frame_size == (47, 64)
  np.testing.assert_array_equal(video.read_video(tmp_path / "streamed.mp4")[0],
                                video.read_video(whole)[0])
  assert video.probe(tmp_path / "streamed.mp4").has_audio
  assert sorted(os.listdir(tmp_path)) == ["streamed.mp4", "whole.mp4"]


def test_audio_ending_inside_the_last_frame_keeps_that_frame(tmp_path):
  """ceil(seconds x fps) frames for 30.5 frames of audio: all 31 frames stay in the mp4."""
  frames = _smooth_frames(31, 32, 32)
  path = video.write_video_with_audio(tmp_path / "v.mp4", frames, _speechlike(640 * 30 + 320))
  decoded, _ = video.read_video(path)
  assert decoded.shape[0] == 31 and video.probe(path).has_audio
  # Audio short by whole frames still ends the video (the shorter stream).
  short = video.write_video_with_audio(tmp_path / "short.mp4", frames, _speechlike(640 * 25))
  assert video.read_video(short)[0].shape[0] <= 26


def test_writer_failure_leaves_no_partial_file(tmp_path):
  frames = _smooth_frames(10, 32, 32)
  old = video.write_video(tmp_path / "out.mp4", frames[:3])
  before = old.read_bytes()
  with pytest.raises(RuntimeError, match="generation failed"):
    with video.VideoWriter(tmp_path / "out.mp4", audio=_speechlike(6400)) as writer:
      writer.write(frames)
      raise RuntimeError("generation failed")
  assert old.read_bytes() == before                         # the old file is untouched
  with pytest.raises(video.MediaError, match=r"new.mp4: cannot encode video"):
    with video.VideoWriter(tmp_path / "new.mp4", crf=-5) as writer:
      writer.write(frames)
  with pytest.raises(ValueError, match="new.mp4: frames of 16x32 after frames of 32x32"):
    with video.VideoWriter(tmp_path / "new.mp4") as writer:
      writer.write(frames)
      writer.write(frames[:, :16])
  with pytest.raises(ValueError, match="new.mp4: no frames to write"):
    with video.VideoWriter(tmp_path / "new.mp4"):
      pass
  with pytest.raises(IsADirectoryError, match="is a directory"):
    video.VideoWriter(tmp_path)
  assert os.listdir(tmp_path) == ["out.mp4"]                # no temporary folder either


def test_written_files_follow_the_umask(tmp_path):
  previous = os.umask(0o027)
  try:
    path = video.write_video(tmp_path / "v.mp4", _smooth_frames(2, 16, 16))
    muxed = video.mux_audio(path, _speechlike(1280), tmp_path / "m.mp4")
  finally:
    os.umask(previous)
  assert path.stat().st_mode & 0o777 == 0o640 and muxed.stat().st_mode & 0o777 == 0o640


def test_frame_file_reads_frames_back_by_index():
  frames = _smooth_frames(6, 8, 10)
  stored = video.FrameFile(iter(frames))
  assert stored.shape == (6, 8, 10, 3) and len(stored) == 6 and stored.dtype == np.uint8
  np.testing.assert_array_equal(stored[4], frames[4])
  np.testing.assert_array_equal(stored[-1], frames[-1])
  np.testing.assert_array_equal(stored[1:4], frames[1:4])
  np.testing.assert_array_equal(stored[np.array([5, 0, 5])], frames[[5, 0, 5]])
  np.testing.assert_array_equal(np.asarray(stored), frames)
  stored.close()
  with pytest.raises(ValueError, match=r"frame 2 is uint8 \(8, 9, 3\); expected uint8 \(8, 10, 3\)"):
    video.FrameFile([frames[0], frames[1], frames[2, :, :9]])
  with pytest.raises(ValueError, match="no frames"):
    video.FrameFile([])


def test_html_video_inlines_the_mp4_with_controls(clip_with_audio):
  """The data URL decodes back to the file's bytes (sound track included); a missing file is an
  error naming it."""
  path, _, _ = clip_with_audio
  element = video.html_video(path, width=256)
  assert element.startswith("<video controls") and element.endswith("></video>")
  assert 'width="256"' in element and 'title="talk.mp4"' in element
  payload = re.search(r'src="data:video/mp4;base64,([A-Za-z0-9+/=]+)"', element).group(1)
  assert base64.b64decode(payload) == path.read_bytes()
  with pytest.raises(FileNotFoundError, match="missing.mp4"):
    video.html_video(path.parent / "missing.mp4")

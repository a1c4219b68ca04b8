"""Tests for real-video ingestion (data/ingest.py) on small synthetic videos made here."""

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest
from scipy import signal
from skimage import data

from data import ingest as ingest_lib
from talking_heads.audio import mel
from talking_heads.face import crop
from talking_heads.face import detect
from talking_heads.io import audio as audio_io
from talking_heads.io import dataset as dataset_io
from talking_heads.io import video as video_io
from talking_heads.pipelines import base as pipelines_base

REPO = pathlib.Path(__file__).resolve().parents[2]
SIZE = 96  # side of the test videos
NUM_FRAMES = 30
# The astronaut's face in skimage.data.astronaut(), and the moving window the videos show.
FACE = np.array([177.0, 66.0, 272.0, 161.0])
WINDOW = 230
SCALE = SIZE / WINDOW


def _window_origin(t):
  return 110.0 + 6.0 * np.sin(2 * np.pi * t / NUM_FRAMES), 5.0 + 3.0 * np.cos(2 * np.pi * t / 20)


def face_frames():
  """[T, 96, 96, 3] frames of the astronaut's head drifting a few pixels; known face boxes."""
  image = data.astronaut()
  frames, boxes = [], []
  for t in range(NUM_FRAMES):
    x0, y0 = _window_origin(t)
    # Affine crop with sub-pixel origin, shrunk to SIZE.
    m = np.float32([[SCALE, 0, -x0 * SCALE], [0, SCALE, -y0 * SCALE]])
    frames.append(cv2.warpAffine(cv2.GaussianBlur(image, (0, 0), 1.0), m, (SIZE, SIZE),
                                 flags=cv2.INTER_AREA))
    boxes.append((FACE - [x0, y0, x0, y0]) * SCALE)
  return np.stack(frames), np.stack(boxes)


def speech_like(num_samples, seed=0):
  """A voiced, syllable-modulated signal (harmonics of a wobbling pitch) with a little noise."""
  rng = np.random.default_rng(seed)
  t = np.arange(num_samples) / 16000.0
  f0 = 140.0 + 20.0 * np.sin(2 * np.pi * 1.3 * t)
  phase = 2 * np.pi * np.cumsum(f0) / 16000.0
  voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
  envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
  return (0.2 * envelope * voiced + 0.005 * rng.normal(size=num_samples)).astype(np.float32)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
  root = tmp_path_factory.mktemp("videos")
  frames, boxes = face_frames()
  audio = speech_like(NUM_FRAMES * 640)
  good = video_io.write_video_with_audio(root / "talk.mp4", frames, audio)
  rng = np.random.default_rng(1)
  texture = cv2.GaussianBlur(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), (0, 0), 3)
  faceless = np.stack([np.roll(texture, t, axis=1) for t in range(NUM_FRAMES)])
  video_io.write_video_with_audio(root / "wall.mp4", faceless, audio)
  # The face leaves for frames 15-19: two clips. In "brief.mp4" it shows for 6 frames only.
  gap = np.arange(NUM_FRAMES)[:, None, None, None]
  video_io.write_video_with_audio(root / "away.mp4",
                                  np.where((gap >= 15) & (gap < 20), faceless, frames), audio)
  video_io.write_video_with_audio(root / "brief.mp4", np.where(gap < 6, frames, faceless), audio)
  video_io.write_video_with_audio(root / "hush.mp4", frames, np.zeros_like(audio))
  video_io.write_video(root / "mute.mp4", frames)
  blob = good.read_bytes()
  (root / "cut.mp4").write_bytes(blob[:len(blob) * 6 // 10])
  (root / "notes.mp4").write_text("this is not a video\n")
  audio_io.write_wav(root / "voice.wav", audio)
  return {"root": root, "good": good, "frames": frames, "boxes": boxes, "audio": audio}


def _config(**kwargs):
  return ingest_lib.IngestConfig(**{"size": 64, "min_frames": 10, "detect_every": 4,
                                    "smooth": 3, "pads": (0, 0, 0, 0), **kwargs})


@pytest.fixture(scope="module")
def batch(videos, tmp_path_factory):
  root = videos["root"]
  out = tmp_path_factory.mktemp("dataset")
  inputs = [str(root / name) for name in (
      "talk.mp4", "away.mp4", "wall.mp4", "brief.mp4", "hush.mp4", "mute.mp4", "cut.mp4",
      "notes.mp4", "voice.wav", "gone.mp4", "*.nomatch")]
  lines = []
  summary = ingest_lib.ingest(inputs, out, _config(), log=lines.append)
  return {"inputs": inputs, "out": out, "summary": summary, "log": "\n".join(lines)}


def _entry(summary, name):
  (entry,) = [e for e in summary["videos"] if os.path.basename(e["path"]) == name]
  return entry


def _best_correlation(a, b, max_lag=2048):
  """Correlation coefficient of a and b at the lag (up to max_lag samples) that aligns them."""
  n = min(len(a), len(b))
  a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
  xc = signal.correlate(b, a, mode="full", method="fft")
  lags = signal.correlation_lags(n, n, mode="full")
  window = np.abs(lags) <= max_lag
  lag = int(lags[window][np.argmax(xc[window])])
  x, y = (a[:n - lag], b[lag:]) if lag >= 0 else (a[-lag:], b[:n + lag])
  return float(np.corrcoef(x, y)[0, 1])


def test_detection_finds_face_in_test_video(videos):
  track = detect.track_faces(videos["frames"], detect.make_detector("haar"), detect_every=4)
  assert track.found.all()
  iou = [detect.box_iou(b, k)[0, 0] for b, k in zip(track.boxes, videos["boxes"])]
  assert min(iou) > 0.5


def test_ingest_recovers_face_crop_and_audio(videos, batch):
  entry = _entry(batch["summary"], "talk.mp4")
  assert entry["status"] == "kept", entry
  assert entry["frames"] == NUM_FRAMES and entry["face_frames"] == NUM_FRAMES
  ds = dataset_io.Dataset(batch["out"])
  ds.validate(full=True)
  clip = ds.clip(entry["clips"][0]["id"])
  assert clip.num_frames == NUM_FRAMES and clip.frames.shape == (NUM_FRAMES, 64, 64, 3)
  assert clip.split in ("train", "val", "test")
  # The crop window sits on the known face box.
  x0, y0, side = entry["clips"][0]["median_crop_window"]
  known = np.median(videos["boxes"], axis=0)
  assert detect.box_iou([x0, y0, x0 + side, y0 + side], known)[0, 0] > 0.5
  # The crop shows the face: it matches a crop of the source frame at the known box.
  for t in (0, NUM_FRAMES // 2):
    expected = crop.crop_face(videos["frames"][t], videos["boxes"][t], 64).astype(np.float64)
    got = np.asarray(clip.frames[t], np.float64)
    assert np.corrcoef(expected.ravel(), got.ravel())[0, 1] > 0.8
  # The audio is the original track (after an AAC round trip), aligned with the frames.
  audio = np.asarray(clip.audio)
  assert abs(audio.size - 640 * clip.num_frames) < 640
  assert _best_correlation(videos["audio"], audio) > 0.9
  # The manifest says whether landmarks and face parameters are real.
  landmarker, _ = detect.load_landmark_detector()
  assert ds.generator["landmarks"] == ("dlib-68" if landmarker else "none")
  if landmarker is None:
    assert not np.any(clip.landmarks) and "zeros" in ds.provenance["placeholders"]
  else:
    assert entry["clips"][0]["fit_error_px"] < 5.0


def test_bad_files_are_reported_not_fatal(batch):
  summary = batch["summary"]
  reasons = {os.path.basename(e["path"]): e["reason"] for e in summary["videos"]}
  assert reasons == {"talk.mp4": None, "away.mp4": None, "wall.mp4": "no_face",
                     "brief.mp4": "too_short", "hush.mp4": "silent_audio",
                     "mute.mp4": "no_audio", "cut.mp4": "truncated", "notes.mp4": "unreadable",
                     "voice.wav": "not_video", "gone.mp4": "missing", "*.nomatch": "missing"}
  for entry in summary["videos"]:
    if entry["status"] == "skipped":
      assert entry["reason"] in ingest_lib.SKIP_REASONS and entry["message"]
  assert "cut.mp4" in _entry(summary, "cut.mp4")["message"]
  assert _entry(summary, "wall.mp4")["frames"] == NUM_FRAMES
  assert summary["totals"]["skipped_by_reason"] == {
      "no_face": 1, "too_short": 1, "silent_audio": 1, "no_audio": 1, "truncated": 1,
      "unreadable": 1, "not_video": 1, "missing": 2}
  on_disk = json.loads((batch["out"] / ingest_lib.SUMMARY_FILE).read_text())
  assert on_disk["totals"] == summary["totals"]
  assert "skipped [no_face]" in batch["log"] and "2 of 11 video(s) kept" in batch["log"]


def test_faceless_frames_are_excluded(batch):
  away = _entry(batch["summary"], "away.mp4")
  assert away["frames_without_face"] == [[15, 20]]
  assert [(c["start_frame"], c["end_frame"]) for c in away["clips"]] == [(0, 15), (20, 30)]
  ds = dataset_io.Dataset(batch["out"])
  assert [ds.clip(c["id"]).num_frames for c in away["clips"]] == [15, 10]
  brief = _entry(batch["summary"], "brief.mp4")
  assert brief["dropped_runs"] == [[0, 6]] and brief["frames_without_face"] == [[6, 30]]


def test_rerun_does_not_redo_finished_videos(batch, monkeypatch):
  manifest = (batch["out"] / "manifest.json").read_text()

  def must_not_run(path, *args, **kwargs):
    raise AssertionError(f"{path} was processed again")

  monkeypatch.setattr(ingest_lib, "ingest_video", must_not_run)
  summary = ingest_lib.ingest(batch["inputs"], batch["out"], _config(), log=lambda _: None)
  by_name = {os.path.basename(e["path"]): e for e in summary["videos"]}
  for name in ("talk.mp4", "away.mp4", "wall.mp4", "brief.mp4", "hush.mp4", "mute.mp4",
               "cut.mp4", "notes.mp4", "voice.wav"):
    assert by_name[name]["resumed"], by_name[name]
    first = _entry(batch["summary"], name)
    assert (by_name[name]["status"], by_name[name]["reason"]) == (first["status"], first["reason"])
  # Missing files are looked for again (here the patched ingest_video reports the retry).
  assert "gone.mp4 was processed again" in by_name["gone.mp4"]["message"]
  assert summary["totals"]["resumed"] == 9
  assert json.loads((batch["out"] / "manifest.json").read_text())["clips"] == \
      json.loads(manifest)["clips"]


def test_changed_settings_are_refused(batch):
  with pytest.raises(dataset_io.DatasetError, match="cannot append"):
    ingest_lib.ingest(batch["inputs"][:1], batch["out"], _config(pads=(0, 5, 0, 0)),
                      log=lambda _: None)


def test_expand_paths(videos, tmp_path):
  root = videos["root"]
  paths, unmatched = ingest_lib.expand_paths([str(root), str(root / "*.wav"), str(root / "x*")])
  names = [p.name for p in paths]
  # Directories yield video files only (no .wav/.txt); globs and named files yield anything.
  assert names == ["away.mp4", "brief.mp4", "cut.mp4", "hush.mp4", "mute.mp4", "notes.mp4",
                   "talk.mp4", "wall.mp4", "voice.wav"]
  assert unmatched == [str(root / "x*")]


def test_split_is_deterministic():
  config = ingest_lib.IngestConfig(val_fraction=0.2, test_fraction=0.2)
  hashes = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(300)]
  splits = [ingest_lib.assign_split(h, config) for h in hashes]
  assert splits == [ingest_lib.assign_split(h, config) for h in hashes]
  counts = {s: splits.count(s) for s in ("train", "val", "test")}
  assert 40 < counts["val"] < 80 and 40 < counts["test"] < 80
  assert ingest_lib.assign_split(hashes[0], ingest_lib.IngestConfig(split="heldout")) == "heldout"


def test_command_line(videos, tmp_path):
  out = tmp_path / "cli"
  cmd = [sys.executable, "-m", "data.ingest", "--videos", str(videos["good"]),
         str(videos["root"] / "notes.mp4"), f"--out={out}", "--size=64", "--min_frames=10",
         "--pads=0,4,0,0", "--detect_every=3", "--split=test", "--nolandmarks"]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr
  assert "skipped [unreadable]" in proc.stdout
  summary = json.loads((out / ingest_lib.SUMMARY_FILE).read_text())
  assert summary["totals"]["kept"] == 1 and summary["config"]["pads"] == [0, 4, 0, 0]
  ds = dataset_io.Dataset(out)
  assert ds.splits() == ["test"] and ds.generator["landmarks"] == "none"
  # The training pipelines' mel features are there: no full-clip mels computed per sample.
  assert summary["features_written"] == 2 * len(ds)
  for config in (mel.WAV2LIP_MEL, mel.RADIO_MEL):
    assert pipelines_base.warn_missing_features(out, ds.clips(), config) == 0


def test_align_gives_ffhq_aligned_crops(videos, tmp_path, monkeypatch):
  """With --align, crops are warped by the FFHQ similarity of the (smoothed) landmarks: the
  stored landmarks sit at the canonical place and the crop matches the astronaut photo aligned
  directly from her hand-measured landmarks."""
  from talking_heads.face import align
  from talking_heads.face import render

  originals = videos["frames"].astype(np.float32)

  def landmarker(frame, box):  # her true landmarks in the written frame the decoded one is
    t = int(np.argmin(((originals - frame) ** 2).mean(axis=(1, 2, 3))))
    return (render.ASTRONAUT_LANDMARKS - _window_origin(t)) * SCALE

  monkeypatch.setattr(ingest_lib.detect_lib, "load_landmark_detector",
                      lambda path=None: (landmarker, "fake"))
  out = tmp_path / "aligned"
  summary = ingest_lib.ingest([str(videos["good"])], out, _config(align=True), log=lambda m: None)
  assert summary["totals"]["kept"] == 1
  ds = dataset_io.Dataset(out)
  assert ds.generator["crops"].startswith("ffhq-aligned")
  (clip,) = ds.clips()
  landmarks = np.asarray(clip.landmarks)
  np.testing.assert_allclose(align.ffhq_matrix(landmarks.mean(0), 64), [[1, 0, 0], [0, 1, 0]],
                             atol=0.01)
  photo = cv2.GaussianBlur(data.astronaut(), (0, 0), 1.0)
  expected = align.warp_image(photo, align.ffhq_matrix(render.ASTRONAUT_LANDMARKS, 64), 64)
  error = np.abs(clip.frames[15].astype(int) - expected).mean()
  assert error < 5.0
  with pytest.raises(ValueError, match="needs landmarks"):
    ingest_lib.ingest([str(videos["good"])], tmp_path / "x", _config(align=True, landmarks=False),
                      log=lambda m: None)

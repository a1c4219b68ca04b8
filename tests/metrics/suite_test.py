"""The video scorer: per-frame metric table, alignment, LSE, VideoScorer against direct
computations, FID accumulation and table formatting."""

import numpy as np
import pytest
from skimage import data as skdata

from talking_heads.metrics import fid as fid_lib
from talking_heads.metrics import image
from talking_heads.metrics import landmarks
from talking_heads.metrics import suite
from talking_heads.metrics import sync_experts
from talking_heads.metrics import temporal


class MeanExpert:
  """A sync expert embedding 5-frame windows by their mean colours and 0.2 s audio windows by
  per-frame statistics (enough to give finite, input-dependent LSE values)."""
  name = "mean colours"
  comparable_with_papers = False
  crop_size = 16

  def embed_video(self, frames, num_windows=None, *, clip_id="clip"):
    means = frames.reshape(frames.shape[0], -1, 3).mean(axis=1) / 255.0
    n = num_windows or frames.shape[0] - 5
    return np.stack([means[v:v + 5].ravel() for v in range(n)])

  def embed_audio(self, audio, num_windows=None, *, clip_id="clip"):
    t = audio.shape[0] // 640
    chunks = audio[:t * 640].reshape(t, 640)
    stats = np.stack([chunks.mean(axis=1), chunks.std(axis=1), chunks.max(axis=1)], axis=1)
    n = num_windows or t - 5
    return np.stack([stats[v:v + 5].ravel() for v in range(n)])

  def describe(self):
    return {"name": self.name, "comparable_with_papers": False}


BASE_LANDMARKS = np.random.default_rng(5).uniform(10, 60, (68, 2))


def fake_landmarks(frames):
  """[T, H, W, 3] -> [T, 68, 2]: fixed points scaled and moved by the frames' mean colours."""
  means = frames.reshape(frames.shape[0], -1, 3).astype(np.float64).mean(axis=1) / 255.0
  scale = 0.5 + means[:, :1, None]
  return (BASE_LANDMARKS[None] * scale + 20 * means[:, None, 1:]).astype(np.float32)


def floats(values):
  return {k: float(v) for k, v in values.items()}


def noisy_copy(frames, rng, amplitude=30):
  noise = rng.integers(-amplitude, amplitude + 1, frames.shape)
  return np.clip(frames.astype(np.int16) + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def clip():
  """Reference frames [12, 32, 32, 3], a noisy generated copy and 12 frames of audio."""
  rng = np.random.default_rng(0)
  reference = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
  return reference, noisy_copy(reference, rng), rng.normal(size=12 * 640).astype(np.float32)


# ------------------------------------------------------------------------------ frame metrics


def test_frame_metrics_are_chunked_per_frame_values():
  rng = np.random.default_rng(1)
  a = rng.integers(0, 256, (70, 24, 24, 3), dtype=np.uint8)  # 3 chunks of CHUNK = 32
  b = noisy_copy(a, rng)
  table = suite.frame_metrics(["psnr", "psnr_lower_half", "ssim", "ms_ssim", "lpips"])
  assert list(table) == ["psnr", "psnr_lower_half", "ssim_wang", "ssim_skimage", "ms_ssim"]
  assert set(table) <= set(suite.HIGHER_IS_BETTER) and not suite.HIGHER_IS_BETTER["lpips"]
  values = table["psnr"](a, b)
  assert values.shape == (70,) and values.dtype == np.float64
  np.testing.assert_array_equal(values, np.asarray(image.psnr(a, b, data_range=255.0), np.float64))
  np.testing.assert_array_equal(table["psnr_lower_half"](a, b),
                                np.asarray(image.psnr(a[:, 12:], b[:, 12:], data_range=255.0)))
  np.testing.assert_allclose(table["ssim_wang"](a, b), image.ssim_wang(a, b, data_range=255.0),
                             rtol=1e-6)
  with pytest.raises(ValueError, match="ms_ssim: images of 24x24 are smaller"):
    table["ms_ssim"](a, b)


def test_frame_score_common_length_or_sliding():
  rng = np.random.default_rng(2)
  reference = rng.integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
  generated = noisy_copy(reference[3:8], rng, amplitude=4)
  psnr = suite.frame_metrics(["psnr"])["psnr"]
  common, window = suite.frame_score(psnr, generated, reference, higher_is_better=True,
                                     sliding=False)
  assert window is None and common == pytest.approx(np.mean(psnr(generated, reference[:5])))
  best, window = suite.frame_score(psnr, generated, reference, higher_is_better=True, sliding=True)
  assert window == 3 and best == pytest.approx(np.mean(psnr(generated, reference[3:8])))
  # A longer generated clip is never slid: its first frames meet the whole reference.
  longer = np.concatenate([reference, reference[:2]])
  assert suite.frame_score(psnr, longer, reference, higher_is_better=True,
                           sliding=True) == (float("inf"), None)


def test_align_notes_what_it_compares():
  rng = np.random.default_rng(3)
  reference = rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
  assert suite.align(reference, reference, sliding=True) == suite.Alignment(12, 0, False, ())
  common = suite.align(reference[3:10], reference, sliding=False)
  assert (common.frames, common.start, common.slide) == (7, 0, False)
  assert "used the first 7 of both" in common.notes[0]
  slid = suite.align(reference[3:10], reference, sliding=True)
  assert (slid.frames, slid.start, slid.slide) == (7, 3, True)
  g, r = slid.pair(reference[3:10], reference)
  np.testing.assert_array_equal(g, r)
  mismatched = suite.align(reference[:4, :8], reference, sliding=True)
  assert not mismatched.slide and "sliding window not found" in mismatched.notes[0]


# ------------------------------------------------------------------------------ LSE


def test_video_lse_on_face_crops_matches_score_clip(clip):
  _, generated, audio = clip
  expert = MeanExpert()
  direct = sync_experts.score_clip(expert, generated, audio, clip_id="c")
  assert suite.video_lse(expert, generated, audio, clip_id="c") == {
      "lse_c": direct.confidence, "lse_d": direct.distance, "av_offset": direct.offset,
      "lse_windows": direct.num_windows}


def test_video_lse_runs_the_face_track_pipeline_on_full_frames():
  image_ = skdata.astronaut()[::2, ::2]  # 256 px, face about 45 px
  frames = np.stack([np.roll(image_, t, axis=1) for t in range(10)])
  audio = (0.1 * np.sin(np.arange(10 * 640) / 7.0)).astype(np.float32)
  settings = sync_experts.CropSettings(min_track=5, min_face_size=30)
  values = suite.video_lse(MeanExpert(), frames, audio, clip_id="talk", crop=settings)
  assert values["lse_tracks"] == 1 and values["lse_windows"] == 5
  assert isinstance(values["lse_c"], float)
  with pytest.raises(ValueError, match="talk: no face track for LSE"):
    suite.video_lse(MeanExpert(), frames, audio, clip_id="talk", crop=sync_experts.CropSettings())


# ------------------------------------------------------------------------------ VideoScorer


def test_video_scorer_matches_direct_computations(clip):
  reference, generated, audio = clip
  expert = MeanExpert()
  scorer = suite.VideoScorer(
      ("landmark_jitter", "flicker_error", "flicker", "lmd", "lse", "psnr_lower_half", "psnr"),
      expert=expert, landmarks=fake_landmarks)
  scores = scorer.score(generated, reference, audio, clip_id="c")
  sync = sync_experts.score_clip(expert, generated, audio)
  gl, rl = fake_landmarks(generated), fake_landmarks(reference)
  assert list(scores) == ["psnr", "psnr_lower_half", "lse_c", "lse_d", "lmd", "flicker",
                          "flicker_error", "landmark_jitter"]
  assert scores == pytest.approx(floats({
      "psnr": np.mean(image.psnr(generated, reference, data_range=255.0)),
      "psnr_lower_half": np.mean(image.psnr(generated[:, 16:], reference[:, 16:],
                                            data_range=255.0)),
      "lse_c": sync.confidence, "lse_d": sync.distance,
      "lmd": landmarks.lmd(gl, rl, reduction="sum"),
      "flicker": temporal.flicker(generated),
      "flicker_error": temporal.flicker_error(generated, reference),
      "landmark_jitter": landmarks.landmark_jitter(gl)}), rel=1e-6)
  variants = suite.VideoScorer(("lmd",), landmarks=fake_landmarks, lmd=landmarks.LMD_VARIANTS)
  assert variants.score(generated, reference) == pytest.approx(
      {k: float(f(gl, rl)) for k, f in landmarks.LMD_VARIANTS.items()})


def test_sliding_scorer_finds_the_shifted_copy():
  rng = np.random.default_rng(4)
  reference = rng.integers(0, 256, (14, 32, 32, 3), dtype=np.uint8)
  generated = noisy_copy(reference[5:11], rng, amplitude=6)  # 6 frames, starting at frame 5
  metrics = ("psnr", "psnr_lower_half", "flicker_error", "lmd")
  slid = suite.VideoScorer(metrics, landmarks=fake_landmarks, sliding=True).score(
      generated, reference)
  window = reference[5:11]
  assert slid == pytest.approx(floats({
      "psnr": np.mean(image.psnr(generated, window, data_range=255.0)),
      "psnr_lower_half": np.mean(image.psnr(generated[:, 16:], window[:, 16:], data_range=255.0)),
      "flicker_error": temporal.flicker_error(generated, window),
      "lmd": landmarks.lmd(fake_landmarks(generated), fake_landmarks(window), reduction="sum")}))
  first = suite.VideoScorer(metrics, landmarks=fake_landmarks).score(generated, reference)
  assert first["psnr"] == pytest.approx(
      np.mean(image.psnr(generated, reference[:6], data_range=255.0)))
  assert slid["psnr"] > first["psnr"] + 10 and slid["flicker_error"] < first["flicker_error"]


def test_video_scorer_says_what_is_missing(clip):
  reference, generated, _ = clip
  with pytest.raises(ValueError, match="unknown metrics"):
    suite.VideoScorer(("psnr", "sharpness"))
  with pytest.raises(ValueError, match="lse needs a sync expert"):
    suite.VideoScorer(("lse",))
  with pytest.raises(ValueError, match="landmark_jitter needs a landmark function"):
    suite.VideoScorer(("landmark_jitter",))
  with pytest.raises(ValueError, match="lpips needs LPIPS weights"):
    suite.VideoScorer(("lpips",))
  with pytest.raises(ValueError, match="need a reference"):
    suite.VideoScorer(("flicker", "psnr")).score(generated)
  with pytest.raises(ValueError, match="lse needs the driving audio"):
    suite.VideoScorer(("lse",), expert=MeanExpert()).score(generated, reference)
  assert suite.VideoScorer(("flicker",)).score(generated) == pytest.approx(
      {"flicker": float(temporal.flicker(generated))})


# ------------------------------------------------------------------------------ FID, formatting


class PixelFeatures:
  """A stand-in Inception: the first 16 pixel values, tiled to 2048 features."""

  def __call__(self, images):
    flat = images.reshape(images.shape[0], -1)[:, :16].astype(np.float64) / 255.0
    return np.tile(flat, (1, 2048 // 16)) + 1e-3 * np.arange(2048)


def test_fid_accumulates_over_clips_or_says_unavailable():
  rng = np.random.default_rng(6)
  generated = [rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8) for _ in range(3)]
  reference = [rng.integers(0, 256, (25, 8, 8, 3), dtype=np.uint8) for _ in range(3)]
  accumulator = suite.FidAccumulator(PixelFeatures())
  for g, r in zip(generated, reference):
    accumulator.add(g, r)
  stats = fid_lib.FeatureStatistics(), fid_lib.FeatureStatistics()
  stats[0].update(PixelFeatures()(np.concatenate(generated)))
  stats[1].update(PixelFeatures()(np.concatenate(reference)))
  assert accumulator.value() == pytest.approx(fid_lib.fid(*stats), rel=1e-6)

  missing = suite.FidAccumulator(None, "unavailable: pt_inception missing")
  missing.add(generated[0], reference[0])
  assert missing.value() == "unavailable: pt_inception missing"
  assert suite.FidAccumulator(None).value().startswith("unavailable: ")


def test_format_value():
  assert suite.format_value(31.41592) == "31.416"
  assert suite.format_value(0.5, digits=4) == "0.5000"
  assert suite.format_value(12) == "12" and suite.format_value("-") == "-"
  assert suite.format_value("unavailable: x") == "unavailable: x"

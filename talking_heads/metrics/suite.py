"""The scorer of generated talking-head videos, shared by the evaluation CLI and the papers' tables.

Dimension legend: T frames, H height, W width, P = 68 landmarks, S audio samples (16 kHz mono).

  * `frame_metrics`: the per-frame full-reference metrics (psnr, psnr_lower_half, ssim_wang,
    ssim_skimage, ms_ssim, lpips), each evaluated `CHUNK` frames per jitted call;
    `HIGHER_IS_BETTER` says which way each one improves.
  * `frame_score`: a per-frame metric's mean over a clip: over the common length, or with LaDTalk's
    sliding evaluation (`metrics.sliding`) the best window of a shorter generated clip.
  * `align`: which frames of a pair the other paired metrics compare (the PSNR-best window when
    sliding, else the common length), with notes saying so.
  * `video_lse`: LSE-C / LSE-D (and AV offset) of a video, on its frames as they are (face crops)
    or on syncnet_python's face tracks.
  * `VideoScorer`: the requested metrics of one generated clip against its reference and audio,
    as a flat dict; `FidAccumulator`: FID over many clips.
  * `format_value`: numbers for markdown tables.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from talking_heads.face import detect as detect_lib
from talking_heads.metrics import fid as fid_lib
from talking_heads.metrics import image as image_lib
from talking_heads.metrics import landmarks as landmarks_lib
from talking_heads.metrics import lpips as lpips_lib
from talking_heads.metrics import sliding as sliding_lib
from talking_heads.metrics import sync_experts
from talking_heads.metrics import temporal as temporal_lib

CHUNK = 32  # frames per jitted metric call
HIGHER_IS_BETTER = {"psnr": True, "psnr_lower_half": True, "ssim_wang": True,
                    "ssim_skimage": True, "ms_ssim": True, "lpips": False}
FrameMetric = Callable[[np.ndarray, np.ndarray], np.ndarray]  # [T, H, W, 3] x 2 -> [T] float64
LandmarkFn = Callable[[np.ndarray], np.ndarray]  # frames [T, H, W, 3] -> landmarks [T, P, 2]
LmdFn = Callable[[np.ndarray, np.ndarray], Any]  # landmarks [T, P, 2] x 2 -> scalar
ATVGNET_LMD: Mapping[str, LmdFn] = types.MappingProxyType(
    {"lmd": functools.partial(landmarks_lib.lmd, reduction="sum")})


def per_frame(metric: Callable[[np.ndarray, np.ndarray], Any], generated: np.ndarray,
              reference: np.ndarray) -> np.ndarray:
  """Per-frame values [T] float64 of a jitted image metric, `CHUNK` frames per call."""
  return np.concatenate([np.asarray(metric(generated[s:s + CHUNK], reference[s:s + CHUNK]),
                                    np.float64)
                         for s in range(0, generated.shape[0], CHUNK)])


def lower_half(frames: np.ndarray) -> np.ndarray:
  """[T, H, W, 3] -> [T, H - H/2, W, 3]: the mouth half of face crops (where Wav2Lip paints)."""
  return frames[:, frames.shape[1] // 2:]


def _psnr(generated: np.ndarray, reference: np.ndarray) -> Any:
  return image_lib.psnr(generated, reference, data_range=255.0)


def frame_metrics(requested: Iterable[str], lpips_variables: Any = None, lpips_net: str = "alex"
                  ) -> dict[str, FrameMetric]:
  """Per-frame full-reference metrics of uint8 frames by output key.

  Args:
    requested: names among psnr, psnr_lower_half, ssim (gives ssim_wang and ssim_skimage),
      ms_ssim and lpips; others are ignored.
    lpips_variables: LPIPS weights; without them "lpips" is left out.
    lpips_net: the LPIPS backbone of `lpips_variables`.
  """
  requested = set(requested)
  out: dict[str, Callable[[np.ndarray, np.ndarray], Any]] = {}
  if "psnr" in requested:
    out["psnr"] = _psnr
  if "psnr_lower_half" in requested:
    out["psnr_lower_half"] = lambda g, r: _psnr(lower_half(g), lower_half(r))
  if "ssim" in requested:
    out["ssim_wang"] = functools.partial(image_lib.ssim_wang, data_range=255.0)
    out["ssim_skimage"] = functools.partial(image_lib.ssim_skimage, data_range=255.0)
  if "ms_ssim" in requested:
    out["ms_ssim"] = functools.partial(image_lib.ms_ssim, data_range=255.0)
  if "lpips" in requested and lpips_variables is not None:
    out["lpips"] = lambda g, r: lpips_lib.lpips_distance(
        lpips_variables, np.asarray(g, np.float32) / 255.0, np.asarray(r, np.float32) / 255.0,
        net=lpips_net, normalize=True)
  return {k: functools.partial(per_frame, f) for k, f in out.items()}


def frame_score(metric: FrameMetric, generated: np.ndarray, reference: np.ndarray, *,
                higher_is_better: bool, sliding: bool) -> tuple[float, int | None]:
  """(score, window start or None) of a per-frame metric over a generated [T, ...] / reference
  [T', ...] pair: the mean over the first min(T, T') frames of both, or, when `sliding` and
  T < T', the best mean over the reference windows the generated clip slides along (LaDTalk)."""
  n = min(generated.shape[0], reference.shape[0])
  if sliding and n < reference.shape[0]:
    result = sliding_lib.sliding_frame_metric(metric, generated, reference,
                                              higher_is_better=higher_is_better)
    return result.best, result.best_offset
  return float(np.mean(metric(generated[:n], reference[:n]))), None


@dataclasses.dataclass(frozen=True)
class Alignment:
  """The frames a paired (non-per-frame) metric compares: generated[:frames] with
  reference[start:start + frames].

  Attributes:
    frames: the compared length.
    start: reference frame of the window.
    slide: per-frame metrics slide along the reference (`frame_score(sliding=True)`).
    notes: what was done when the lengths differ.
  """
  frames: int
  start: int
  slide: bool
  notes: tuple[str, ...]

  def pair(self, generated: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return generated[:self.frames], reference[self.start:self.start + self.frames]


def align(generated: np.ndarray, reference: np.ndarray, *, sliding: bool) -> Alignment:
  """How a generated [T, ...] / reference [T', ...] pair lines up: as is for T = T'; with
  `sliding` and T < T', the window where the generated clip's PSNR is best; else the first
  min(T, T') frames of both."""
  num_generated, num_reference = generated.shape[0], reference.shape[0]
  if num_generated == num_reference:
    return Alignment(num_generated, 0, False, ())
  if sliding and num_generated < num_reference:
    try:
      window = sliding_lib.sliding_frame_metric(frame_metrics(["psnr"])["psnr"], generated,
                                                reference, higher_is_better=True).best_offset
    except ValueError as e:  # e.g. frame sizes differ: no PSNR window to pick
      return Alignment(num_generated, 0, False, (
          f"sliding window not found ({e}); used the first {num_generated} frames of both",))
    return Alignment(num_generated, window, True, (
        f"generated {num_generated} frames slid along the reference's {num_reference}; fid, lmd "
        f"and flicker_error use the PSNR-best window at reference frame {window}",))
  n = min(num_generated, num_reference)
  return Alignment(n, 0, False, (f"lengths differ (generated {num_generated}, reference "
                                 f"{num_reference} frames): used the first {n} of both",))


class Landmarker:
  """68-point landmarks [T, P, 2] of full frames: Haar face track + dlib's shape predictor, if
  installed (else calls raise LookupError with "unavailable: ...")."""

  def __init__(self):
    self.detector, self.description = detect_lib.load_landmark_detector()
    self._faces = None

  def __call__(self, frames: np.ndarray) -> np.ndarray:
    if self.detector is None:
      raise LookupError(f"unavailable: no 68-point landmark model ({self.description})")
    self._faces = self._faces or detect_lib.make_detector("haar")
    track = detect_lib.track_faces(frames, self._faces)
    return self.detector.track(frames, track.boxes)


def video_lse(expert: sync_experts.SyncExpert, frames: np.ndarray, audio: np.ndarray, *,
              clip_id: str, crop: sync_experts.CropSettings | None = None) -> dict[str, Any]:
  """LSE of frames [T, H, W, 3] uint8 driven by audio [S]: lse_c, lse_d, av_offset, lse_windows.

  With `crop` None the frames are scored as they are (face crops); else syncnet_python's face
  tracks are cropped with these settings and scored one by one: lse_c and lse_d are their means,
  av_offset the list of their offsets, lse_tracks their number.
  """
  if crop is None:
    score = sync_experts.score_clip(expert, frames, audio, clip_id=clip_id)
    return {"lse_c": score.confidence, "lse_d": score.distance, "av_offset": score.offset,
            "lse_windows": score.num_windows}
  tracks = sync_experts.face_track_crops(frames, audio, expert.crop_size, settings=crop)
  if not tracks:
    raise ValueError(f"{clip_id}: no face track for LSE (Haar detector; tracks need more than "
                     f"{crop.min_track} detections and faces over {crop.min_face_size:g} px: see "
                     "--crop-min-track / --crop-min-face, or --lse-crop=none for face crops)")
  scores = [sync_experts.score_clip(expert, t.frames, t.audio,
                                    clip_id=f"{clip_id} track {int(t.track.frames[0])}")
            for t in tracks]
  return {"lse_c": float(np.mean([s.confidence for s in scores])),
          "lse_d": float(np.mean([s.distance for s in scores])),
          "av_offset": [s.offset for s in scores], "lse_tracks": len(scores),
          "lse_windows": int(sum(s.num_windows for s in scores))}


VIDEO_METRICS = ("psnr", "psnr_lower_half", "ssim", "ms_ssim", "lpips", "lse", "lmd", "flicker",
                 "flicker_error", "landmark_jitter")
_PAIRED = ("psnr", "psnr_lower_half", "ssim", "ms_ssim", "lpips", "lmd", "flicker_error")


class VideoScorer:
  """The requested metrics of one generated clip (uint8 frames [T, H, W, 3]) against its
  reference frames [T', H, W, 3] and driving audio [S], as a flat dict of floats.

  Keys, in `VIDEO_METRICS` order: psnr, psnr_lower_half, ssim_wang / ssim_skimage, ms_ssim,
  lpips (`frame_metrics`; each slides on its own with `sliding`); lse_c, lse_d (`video_lse` on the
  frames as they are, or on face tracks with `crop`); the keys of `lmd` (landmarks of both clips);
  flicker; flicker_error; landmark_jitter (of the generated landmarks); with a `second_expert`,
  lse_c_second and lse_d_second after lse_d. LMD and flicker_error compare the frames `align`
  picks (the PSNR-best window when sliding).
  """

  def __init__(self, metrics: Sequence[str], *, expert: sync_experts.SyncExpert | None = None,
               landmarks: LandmarkFn | None = None, lmd: Mapping[str, LmdFn] = ATVGNET_LMD,
               sliding: bool = False, crop: sync_experts.CropSettings | None = None,
               lpips_variables: Any = None, lpips_net: str = "alex",
               second_expert: sync_experts.SyncExpert | None = None):
    """Checks that each requested metric has what it needs.

    Args:
      metrics: names from `VIDEO_METRICS`.
      expert: the sync expert, for "lse".
      landmarks: frames -> landmarks [T, P, 2] (e.g. a face regressor's
        `lambda f: predict(f)["landmarks"]`), for "lmd" and "landmark_jitter".
      lmd: the LMD variants to report, by key (default: ATVGnet's sum over the mouth, "lmd";
        `landmarks.LMD_VARIANTS` for the four named ones).
      sliding: LaDTalk's sliding evaluation for clips shorter than their reference.
      crop: face-track settings for LSE on full frames (None: the frames are face crops).
      lpips_variables, lpips_net: LPIPS weights and backbone, for "lpips".
      second_expert: with "lse", a second sync expert whose scores are added as lse_c_second
        and lse_d_second (to report the two experts' agreement).
    """
    unknown = sorted(set(metrics) - set(VIDEO_METRICS))
    if unknown:
      raise ValueError(f"VideoScorer: unknown metrics {unknown}; choose from {VIDEO_METRICS}")
    needs = {"lse": (expert, "a sync expert"), "lmd": (landmarks, "a landmark function"),
             "landmark_jitter": (landmarks, "a landmark function"),
             "lpips": (lpips_variables, "LPIPS weights")}
    for name, (given, what) in needs.items():
      if name in metrics and given is None:
        raise ValueError(f"VideoScorer: {name} needs {what}")
    self.metrics = tuple(m for m in VIDEO_METRICS if m in metrics)
    self.expert, self.landmarks, self.lmd = expert, landmarks, lmd
    self.second_expert = second_expert
    self.sliding, self.crop = sliding, crop
    self._frame_metrics = frame_metrics(self.metrics, lpips_variables, lpips_net)

  def score(self, generated: np.ndarray, reference: np.ndarray | None = None,
            audio: np.ndarray | None = None, *, clip_id: str = "clip") -> dict[str, Any]:
    """The requested metrics of `generated`; `reference` and `audio` when a metric needs them."""
    if reference is None and set(self.metrics) & set(_PAIRED):
      raise ValueError(f"{clip_id}: {sorted(set(self.metrics) & set(_PAIRED))} need a reference")
    if audio is None and "lse" in self.metrics:
      raise ValueError(f"{clip_id}: lse needs the driving audio")
    out: dict[str, Any] = {}
    for key, metric in self._frame_metrics.items():
      out[key], _ = frame_score(metric, generated, reference, sliding=self.sliding,
                                higher_is_better=HIGHER_IS_BETTER[key])
    if "lse" in self.metrics:
      sync = video_lse(self.expert, generated, audio, clip_id=clip_id, crop=self.crop)
      out.update(lse_c=sync["lse_c"], lse_d=sync["lse_d"])
      if self.second_expert is not None:
        sync = video_lse(self.second_expert, generated, audio, clip_id=clip_id, crop=self.crop)
        out.update(lse_c_second=sync["lse_c"], lse_d_second=sync["lse_d"])
    if set(self.metrics) & {"lmd", "flicker_error"}:
      g, r = align(generated, reference, sliding=self.sliding).pair(generated, reference)
    if set(self.metrics) & {"lmd", "landmark_jitter"}:
      generated_landmarks = self.landmarks(generated)
    if "lmd" in self.metrics:
      gl = generated_landmarks if g.shape[0] == generated.shape[0] else self.landmarks(g)
      rl = self.landmarks(r)
      out.update({key: float(fn(gl, rl)) for key, fn in self.lmd.items()})
    if "flicker" in self.metrics:
      out["flicker"] = float(temporal_lib.flicker(generated))
    if "flicker_error" in self.metrics:
      out["flicker_error"] = float(temporal_lib.flicker_error(g, r))
    if "landmark_jitter" in self.metrics:
      out["landmark_jitter"] = float(landmarks_lib.landmark_jitter(generated_landmarks))
    return out


class FidAccumulator:
  """FID between the generated and the reference frames of many clips, streamed through an
  Inception feature extractor; without one, `value` is the `unavailable` text."""

  def __init__(self, extractor: fid_lib.InceptionFeatureExtractor | None,
               unavailable: str = "unavailable: no Inception feature extractor (FID weights)"):
    self.extractor, self.unavailable = extractor, unavailable
    self.generated, self.reference = fid_lib.FeatureStatistics(), fid_lib.FeatureStatistics()

  def add(self, generated: np.ndarray, reference: np.ndarray) -> None:
    """Adds one clip's frames [T, H, W, 3] and its reference's [T', H, W, 3] (nothing without
    an extractor)."""
    if self.extractor is None:
      return
    features = self.extractor(generated), self.extractor(reference)
    self.generated.update(features[0])
    self.reference.update(features[1])

  def value(self) -> float | str:
    """FID over the clips added so far, or the `unavailable` text."""
    if self.extractor is None:
      return self.unavailable
    return fid_lib.fid(self.generated, self.reference)


def format_value(value: Any, digits: int = 3) -> str:
  """A table cell: floats with `digits` decimals, anything else (text, ints) as str()."""
  return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

"""LSE-D / LSE-C and the audio-visual offset, exactly as syncnet_python scores a clip.

Dimension legend: N start frames scored, D embedding width, K = 2 * vshift + 1 offsets (31).

syncnet_python (`SyncNetInstance.evaluate`, also Wav2Lip's `evaluation/scores_LSE` copy):
  * min_length = min(video frames, floor(audio samples / 640)); lastframe = min_length - 5;
    the start frames scored are v = 0 .. lastframe - 1 (so N = min_length - 5; the last full
    5-frame window is not used, as in the reference).
  * per start frame v a video embedding (frames v .. v+4) and an audio embedding (0.2 s from the
    same time); here they come from a `talking_heads.metrics.sync_experts` expert.
  * the audio embeddings are zero-padded by vshift = 15 rows on both sides; for each v the
    distance to the padded rows v .. v + 2 vshift, i.e. to audio frames v - 15 .. v + 15, with
    PyTorch's `pairwise_distance` (||x - y + 1e-6||_2): the distance curve [N, 31]. Rows that fall
    in the padding are distances to a zero vector and count in the mean, as in the reference.
  * mdist [31] = mean over frames; LSE-D = min(mdist); LSE-C = median(mdist) - min(mdist);
    AV offset = vshift - argmin(mdist) (first minimum on ties).
  * per-frame confidence: median(mdist) - distance at the best offset, median-filtered over 9
    frames (scipy.signal.medfilt, zero padded) -- syncnet_python's `fconfm`.
Offset sign: a positive offset k means the audio embedding of frame v - k matches video frame v,
i.e. the audio runs k frames ahead of (leads) the video; it is recovered as k when the audio
track is advanced by k frames (the content of frame v + k played at frame v).

Clips shorter than 6 frames (or 6 * 640 samples) have no start frame to score: syncnet_python
then fails deep inside; here `ClipTooShortError` names the clip and its lengths.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

VSHIFT = 15
WINDOW_FRAMES = 5
SAMPLES_PER_FRAME = 640  # 16 kHz audio, 25 fps video
PAIRWISE_EPS = 1e-6  # torch.nn.functional.pairwise_distance default
FRAME_CONF_KERNEL = 9


def medfilt(x: npt.ArrayLike, kernel_size: int) -> np.ndarray:
  """scipy.signal.medfilt of a 1-D signal (zero padded at both ends), without its warning for
  signals shorter than the kernel."""
  if kernel_size < 1 or kernel_size % 2 == 0:
    raise ValueError(f"medfilt: kernel_size must be odd and positive, got {kernel_size}")
  x = np.asarray(x, np.float64)
  padded = np.pad(x, kernel_size // 2)
  return np.median(np.lib.stride_tricks.sliding_window_view(padded, kernel_size), axis=-1)


class ClipTooShortError(ValueError):
  """A clip has too few frames or audio samples for one scored window."""


def min_length(num_frames: int, num_samples: int) -> int:
  """syncnet_python's min_length: min(frames, floor(samples / 640))."""
  return min(int(num_frames), int(num_samples) // SAMPLES_PER_FRAME)


def num_windows(num_frames: int, num_samples: int, *, clip_id: str = "clip") -> int:
  """N = lastframe = min_length - 5, the number of start frames scored.

  Raises:
    ClipTooShortError: N < 1 (fewer than 6 frames or 6 * 640 audio samples).
  """
  n = min_length(num_frames, num_samples) - WINDOW_FRAMES
  if n < 1:
    raise ClipTooShortError(
        f"{clip_id}: too short for LSE: {num_frames} video frames and {num_samples} audio samples "
        f"give min_length {min_length(num_frames, num_samples)}; syncnet_python needs at least "
        f"{WINDOW_FRAMES + 1} frames of both (0.24 s at 25 fps)")
  return n


@dataclasses.dataclass(frozen=True)
class SyncScore:
  """syncnet_python's result for one clip.

  Attributes:
    offset: AV offset in frames (vshift - argmin; sign in the module docstring).
    confidence: LSE-C = median(mdist) - min(mdist).
    distance: LSE-D = min(mdist).
    mean_distances: mdist [K], the mean distance at offsets -vshift .. vshift of the audio frame
      relative to the video frame (index j is audio frame v + j - vshift).
    frame_confidence: [N] per-frame confidence at the best offset, median-filtered (`fconfm`).
    num_windows: N.
  """
  offset: int
  confidence: float
  distance: float
  mean_distances: np.ndarray
  frame_confidence: np.ndarray
  num_windows: int

  def to_dict(self) -> dict[str, object]:
    """JSON-friendly summary (without the per-frame curve)."""
    return {"lse_d": self.distance, "lse_c": self.confidence, "av_offset": self.offset,
            "num_windows": self.num_windows, "mean_distances": self.mean_distances.tolist()}


def _check_embeddings(video: npt.ArrayLike, audio: npt.ArrayLike,
                      clip_id: str) -> tuple[np.ndarray, np.ndarray]:
  video = np.asarray(video, np.float64)
  audio = np.asarray(audio, np.float64)
  if video.ndim != 2 or audio.ndim != 2 or video.shape != audio.shape:
    raise ValueError(f"{clip_id}: expected video and audio embeddings of one shape [N, D], got "
                     f"{video.shape} and {audio.shape}")
  if video.shape[0] < 1:
    raise ClipTooShortError(f"{clip_id}: no start frames to score (N = 0)")
  for name, x in (("video", video), ("audio", audio)):
    if not np.isfinite(x).all():
      row = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
      raise ValueError(f"{clip_id}: {name} embedding of start frame {row} is not finite")
  return video, audio


def distance_curve(video: npt.ArrayLike, audio: npt.ArrayLike, *, vshift: int = VSHIFT,
                   clip_id: str = "clip") -> np.ndarray:
  """syncnet_python's `calc_pdist`: distances [N, 2 vshift + 1] float64.

  Entry [v, j] = ||video[v] - audio[v + j - vshift] + 1e-6||, with audio rows outside 0..N-1
  taken as zero vectors.
  """
  if vshift < 0:
    raise ValueError(f"vshift must be >= 0, got {vshift}")
  video, audio = _check_embeddings(video, audio, clip_id)
  n, d = video.shape
  padded = np.concatenate([np.zeros((vshift, d)), audio, np.zeros((vshift, d))])  # [N + 2 vshift, D]
  # One offset at a time keeps memory at O(N D) for long clips.
  return np.stack([np.linalg.norm(video - padded[j:j + n] + PAIRWISE_EPS, axis=1)
                   for j in range(2 * vshift + 1)], axis=1)


def score_distances(dists: npt.ArrayLike, *, vshift: int = VSHIFT) -> SyncScore:
  """Offset, LSE-C and LSE-D from a distance curve [N, 2 vshift + 1]."""
  dists = np.asarray(dists, np.float64)
  if dists.ndim != 2 or dists.shape[1] != 2 * vshift + 1 or dists.shape[0] < 1:
    raise ValueError(f"expected a distance curve [N >= 1, {2 * vshift + 1}], got {dists.shape}")
  mdist = dists.mean(axis=0)  # [K]
  minidx = int(np.argmin(mdist))
  minval = float(mdist[minidx])
  median = float(np.median(mdist))
  frame_conf = medfilt(median - dists[:, minidx], FRAME_CONF_KERNEL)
  return SyncScore(offset=vshift - minidx, confidence=median - minval, distance=minval,
                   mean_distances=mdist, frame_confidence=frame_conf, num_windows=dists.shape[0])


def sync_score(video: npt.ArrayLike, audio: npt.ArrayLike, *, vshift: int = VSHIFT,
               clip_id: str = "clip") -> SyncScore:
  """LSE-D, LSE-C and AV offset from per-start-frame embeddings video [N, D] and audio [N, D]."""
  return score_distances(distance_curve(video, audio, vshift=vshift, clip_id=clip_id), vshift=vshift)


@dataclasses.dataclass(frozen=True)
class LseSummary:
  """LSE over a set of clips as Wav2Lip's `scores_LSE` reports it: means over clips.

  Attributes:
    lse_d: mean LSE-D.
    lse_c: mean LSE-C.
    num_clips: clips scored.
    offsets: AV offset of each clip.
  """
  lse_d: float
  lse_c: float
  num_clips: int
  offsets: tuple[int, ...]


def summarise(scores: list[SyncScore]) -> LseSummary:
  """Means of LSE-D and LSE-C over clips (ValueError for an empty list)."""
  if not scores:
    raise ValueError("no clip was scored: LSE needs at least one clip")
  return LseSummary(lse_d=float(np.mean([s.distance for s in scores])),
                    lse_c=float(np.mean([s.confidence for s in scores])),
                    num_clips=len(scores), offsets=tuple(s.offset for s in scores))

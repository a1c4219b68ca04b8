"""Lip-sync experts that embed clips for LSE, and syncnet_python's face-crop procedure.

Dimension legend: T video frames, H, W frame size, S crop side, N start frames scored (one
5-frame window each), D embedding width, L frames of a face track.

An expert (`SyncExpert`) turns a clip into per-start-frame embeddings as syncnet_python does:
row v of `embed_video` encodes frames v .. v+4 and row v of `embed_audio` the 0.2 s of audio
starting at frame v. Without `num_windows` each side returns syncnet_python's count for its own
length (T - 5 for video, floor(samples / 640) - 5 for audio); `score_clip` uses the common N.

Experts:
  `SyncNetSExpert`: syncnet_python's official network S (`syncnet_v2.model`, converted by
    `pretrained.syncnet.load_syncnet_s`; `experiments.evaluate.load_s_expert` finds it in a
    weights folder), the scorer behind every published LSE-C/LSE-D; the only expert whose
    numbers are comparable with papers.
    Lips: each 5-frame window of face crops resized to 224x224 (cv2 bilinear, as Wav2Lip's
    copy of the scorer), BGR, raw 0..255 floats. Audio: the float signal scaled to int16 (as
    ffmpeg writes the scorer's wav: round(32768 x), clipped), `audio.mfcc` with
    python_speech_features' defaults, columns 4v .. 4v+19. Batches of 20, jitted.
    The same class scores with S's architecture trained here (the independent evaluation
    expert, stage `syncnet_eval`, loaded by the experts' `sync_expert.independent_expert`):
    then the lips are resized to its smaller `lip_size` as its training pipeline resized them,
    and it reports itself as not comparable with papers.
  `TrainedSyncNetExpert`: a Wav2Lip SyncNet_color trained here (its variables restored from a
    `syncnet` workdir by the experts' loader). Inputs exactly as it trained: frames resized to its image size
    (96), lower halves of 5-frame windows, BGR / 255 if its config says so; Wav2Lip mel windows
    of 16 frames starting at int(3.2 v). Its embeddings are L2-normalised, so its distances
    live on another scale than S's: NOT comparable with papers, reported as such.

Face crops. Clips in the dataset format are already face crops and are scored as they are
(Wav2Lip scores LRS2's face crops the same way, resized to 224 without detection). Full frames
go through `face_track_crops`, syncnet_python's `run_pipeline.py` procedure, with one
substitution: our face detector (OpenCV Haar by default) replaces S3FD (conf 0.9 at scale 0.25),
and the whole video counts as one scene (no PySceneDetect). Then as the reference:
  * tracks: a track grows frame by frame with a detection whose IoU with its last box exceeds
    0.5, at most 25 frames after that box (one detection per frame per track); a track is kept
    when it has more than `min_track` (100) detections and, after linear interpolation of its
    boxes over the frames it spans, a mean box width or height above `min_face_size` (100 px);
  * per frame s = max(w, h) / 2 and the box centre, each median-filtered over 13 frames
    (scipy.signal.medfilt, zero padded at the track's ends, as the reference);
  * the frame is padded by int(s (1 + 2 crop_scale)) pixels of value 110 on every side and rows
    [cy - s, cy + (1 + 2 crop_scale) s), columns [cx - (1 + crop_scale) s, cx + (1 + crop_scale) s)
    are cut (crop_scale 0.4: 2.8 s square, the face in its upper part), indices truncated by
    int() after adding the padding; resized to S (224 for S, the expert's size otherwise);
  * the track's audio is the span of its frames, samples [640 first, 640 (last + 1)).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from talking_heads.audio import mel as mel_lib
from talking_heads.audio import mfcc as mfcc_lib
from talking_heads.audio import windows as windows_lib
from talking_heads.face import detect as detect_lib
from talking_heads.io import audio as audio_io
from talking_heads.metrics import lse
from talking_heads.models import syncnet as syncnet_lib
from talking_heads.pipelines import base as pipeline_base

S_CROP_SIZE = 224
S_BATCH_SIZE = 20
MFCC_FRAMES_PER_VIDEO_FRAME = 4  # 100 MFCC frames/s at 25 fps
MFCC_WINDOW = 20


@runtime_checkable
class SyncExpert(Protocol):
  """Embeds 5-frame windows of face crops and 0.2 s audio windows, one row per start frame."""

  name: str
  comparable_with_papers: bool
  crop_size: int

  def embed_video(self, frames: np.ndarray, num_windows: int | None = None, *,
                  clip_id: str = "clip") -> np.ndarray:
    """Face crops uint8 RGB [T, H, W, 3] -> [N, D] (N = T - 5 when `num_windows` is None)."""

  def embed_audio(self, audio: np.ndarray, num_windows: int | None = None, *,
                  clip_id: str = "clip") -> np.ndarray:
    """16 kHz mono audio [samples] -> [N, D] (N = floor(samples / 640) - 5 when None)."""

  def describe(self) -> dict[str, Any]:
    """What the expert is, for reports: name, source, comparable_with_papers."""


def _check_frames(frames: np.ndarray, clip_id: str) -> np.ndarray:
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f"{clip_id}: expected RGB uint8 face crops [T, H, W, 3], got dtype "
                     f"{frames.dtype} and shape {frames.shape}")
  return frames


def _check_audio(audio: np.ndarray, clip_id: str) -> np.ndarray:
  audio = np.asarray(audio)
  if audio.ndim != 1 or not (np.issubdtype(audio.dtype, np.floating) or audio.dtype == np.int16):
    raise ValueError(f"{clip_id}: expected mono 16 kHz audio [samples] (float in [-1, 1] or "
                     f"int16), got dtype {audio.dtype} and shape {audio.shape}")
  if np.issubdtype(audio.dtype, np.floating) and not np.isfinite(audio).all():
    raise ValueError(f"{clip_id}: audio sample {int(np.flatnonzero(~np.isfinite(audio))[0])} is "
                     "not finite")
  return audio


def _resolve_windows(available: int, requested: int | None, what: str, clip_id: str) -> int:
  if requested is None:
    requested = available
  if requested < 1:
    raise lse.ClipTooShortError(f"{clip_id}: {what} gives no 5-frame window to score "
                                f"({available} available)")
  if requested > available:
    raise ValueError(f"{clip_id}: {requested} windows requested but the {what} only has "
                     f"{available}")
  return requested


def video_windows_available(num_frames: int) -> int:
  """syncnet_python's window count for a video alone: T - 5 (lastframe with ample audio)."""
  return num_frames - lse.WINDOW_FRAMES


def audio_windows_available(num_samples: int) -> int:
  """syncnet_python's window count for audio alone: floor(samples / 640) - 5."""
  return num_samples // lse.SAMPLES_PER_FRAME - lse.WINDOW_FRAMES


def frame_windows(frames: np.ndarray, starts: np.ndarray) -> np.ndarray:
  """[T, ...] -> [len(starts), 5, ...]: frames v .. v+4 for each start v."""
  return frames[np.asarray(starts)[:, None] + np.arange(lse.WINDOW_FRAMES)]


def _pad_batch(chunk: np.ndarray, batch_size: int) -> np.ndarray:
  if chunk.shape[0] == batch_size:
    return chunk
  return np.concatenate([chunk, np.zeros((batch_size - chunk.shape[0],) + chunk.shape[1:], chunk.dtype)])


def _batched(fn: Callable[[jax.Array], jax.Array], inputs: np.ndarray, batch_size: int) -> np.ndarray:
  """Applies `fn` to fixed-size batches (the last one zero-padded), so it compiles once."""
  out = []
  for start in range(0, inputs.shape[0], batch_size):
    chunk = inputs[start:start + batch_size]
    out.append(np.asarray(fn(jnp.asarray(_pad_batch(chunk, batch_size))))[:chunk.shape[0]])
  return np.concatenate(out)


def _batched_windows(fn: Callable[[jax.Array], jax.Array], frames: np.ndarray, num_windows: int,
                     batch_size: int) -> np.ndarray:
  """`fn` over the 5-frame windows [B, 5, ...] of start frames 0 .. num_windows - 1, gathered per
  batch so that only one batch of windows is ever in memory."""
  out = []
  for start in range(0, num_windows, batch_size):
    windows = frame_windows(frames, np.arange(start, min(num_windows, start + batch_size)))
    out.append(np.asarray(fn(jnp.asarray(_pad_batch(windows, batch_size))))[:windows.shape[0]])
  return np.concatenate(out)


def syncnet_mfcc_windows(audio: np.ndarray, num_windows: int | None = None, *,
                         clip_id: str = "clip") -> np.ndarray:
  """syncnet_python's audio input: MFCC columns 4v .. 4v+19 -> [N, 13, 20, 1] float32."""
  audio = audio_io.to_int16(_check_audio(audio, clip_id))
  n = _resolve_windows(audio_windows_available(audio.shape[0]), num_windows, "audio", clip_id)
  cepstra = mfcc_lib.mfcc(audio, mfcc_lib.SYNCNET_MFCC, clip_id=clip_id).astype(np.float32)  # [13, F]
  columns = MFCC_FRAMES_PER_VIDEO_FRAME * np.arange(n)[:, None] + np.arange(MFCC_WINDOW)  # [N, 20]
  if columns.max() >= cepstra.shape[1]:
    raise ValueError(f"{clip_id}: audio has {cepstra.shape[1]} MFCC frames, window {n - 1} needs "
                     f"{columns.max() + 1}")
  return np.ascontiguousarray(cepstra[:, columns].transpose(1, 0, 2)[..., None])  # [N, 13, 20, 1]


def resize_frames_bilinear(frames: np.ndarray, size: int) -> np.ndarray:
  """[T, H, W, 3] -> [T, size, size, 3] with cv2.resize's default (bilinear), as the scorer."""
  if frames.shape[1:3] == (size, size):
    return frames
  return np.stack([cv2.resize(np.ascontiguousarray(f), (size, size)) for f in frames])


class SyncNetSExpert:
  """syncnet_python's network S (see the module docstring): the official weights by default, or
  S's architecture trained here (`name`, `comparable_with_papers=False`, a smaller `model` and
  the resize it trained with, e.g. `pipelines.base.resize_frames`)."""

  def __init__(self, variables: dict[str, Any], *, source: str = "given variables",
               batch_size: int = S_BATCH_SIZE, model: syncnet_lib.SyncNetS | None = None,
               name: str = "syncnet_python S (official syncnet_v2.model)",
               comparable_with_papers: bool = True,
               resize: Callable[[np.ndarray, int], np.ndarray] | None = None):
    self.source = source
    self.batch_size = batch_size
    self.name = name
    self.comparable_with_papers = comparable_with_papers
    model = model or syncnet_lib.SyncNetS()
    self.crop_size = model.lip_size
    self._resize = resize or resize_frames_bilinear
    self._variables = jax.device_put(variables)
    self._lip = jax.jit(lambda v, x: model.apply(v, x.astype(jnp.float32),
                                                 method=syncnet_lib.SyncNetS.forward_lip))
    self._aud = jax.jit(lambda v, x: model.apply(v, x, method=syncnet_lib.SyncNetS.forward_aud))

  def describe(self) -> dict[str, Any]:
    return {"name": self.name, "source": self.source,
            "comparable_with_papers": self.comparable_with_papers}

  def embed_video(self, frames: np.ndarray, num_windows: int | None = None, *,
                  clip_id: str = "clip") -> np.ndarray:
    frames = _check_frames(frames, clip_id)
    n = _resolve_windows(video_windows_available(frames.shape[0]), num_windows, "video", clip_id)
    # BGR (the reference reads frames with OpenCV); cast to raw 0..255 floats inside the jit.
    lips = np.ascontiguousarray(
        self._resize(frames[:n + lse.WINDOW_FRAMES - 1], self.crop_size)[..., ::-1])
    return _batched_windows(lambda x: self._lip(self._variables, x), lips, n, self.batch_size)

  def embed_audio(self, audio: np.ndarray, num_windows: int | None = None, *,
                  clip_id: str = "clip") -> np.ndarray:
    windows = syncnet_mfcc_windows(audio, num_windows, clip_id=clip_id)
    return _batched(lambda x: self._aud(self._variables, x), windows, self.batch_size)


class TrainedSyncNetExpert:
  """A SyncNet_color trained here (see the module docstring); not comparable with papers."""

  comparable_with_papers = False

  def __init__(self, variables: dict[str, Any], *, width: float, image_size: int, bgr: bool,
               source: str, batch_size: int = 64):
    self.crop_size = image_size
    self.bgr = bgr
    self.source = source
    self.batch_size = batch_size
    self.name = f"SyncNet_color trained here ({source})"
    model = syncnet_lib.SyncNetColor(width=width)
    self._variables = jax.device_put(jax.device_get(variables))

    def faces(v, windows):  # windows uint8 [B, 5, S, S, 3]
      x = syncnet_lib.stack_lower_halves(windows, to_bgr=bgr)
      return model.apply(v, x, use_running_average=True, method=syncnet_lib.SyncNetColor.encode_faces)

    def mels(v, x):  # x [B, 80, 16]
      return model.apply(v, x[..., None], use_running_average=True,
                         method=syncnet_lib.SyncNetColor.encode_audio)

    self._faces = jax.jit(faces)
    self._mels = jax.jit(mels)

  def describe(self) -> dict[str, Any]:
    return {"name": self.name, "source": self.source, "comparable_with_papers": False}

  def embed_video(self, frames: np.ndarray, num_windows: int | None = None, *,
                  clip_id: str = "clip") -> np.ndarray:
    frames = _check_frames(frames, clip_id)
    n = _resolve_windows(video_windows_available(frames.shape[0]), num_windows, "video", clip_id)
    frames = pipeline_base.resize_frames(frames[:n + lse.WINDOW_FRAMES - 1], self.crop_size)
    return _batched_windows(lambda x: self._faces(self._variables, x), frames, n, self.batch_size)

  def embed_audio(self, audio: np.ndarray, num_windows: int | None = None, *,
                  clip_id: str = "clip") -> np.ndarray:
    audio = _check_audio(audio, clip_id)
    n = _resolve_windows(audio_windows_available(audio.shape[0]), num_windows, "audio", clip_id)
    mel = mel_lib.mel_spectrogram_time_major(audio, mel_lib.WAV2LIP_MEL, clip_id=clip_id)  # [F, 80]
    windows = windows_lib.slice_windows(mel, np.arange(n), windows_lib.WAV2LIP_WINDOWS,
                                        clip_id=clip_id)                          # [N, 16, 80]
    return _batched(lambda x: self._mels(self._variables, x),
                    np.ascontiguousarray(windows.transpose(0, 2, 1)), self.batch_size)


def score_clip(expert: SyncExpert, frames: np.ndarray, audio: np.ndarray, *,
               clip_id: str = "clip", vshift: int = lse.VSHIFT) -> lse.SyncScore:
  """syncnet_python's evaluation of one clip of face crops [T, H, W, 3] with 16 kHz audio.

  Raises:
    lse.ClipTooShortError: fewer than 6 frames or 6 * 640 audio samples.
  """
  frames = _check_frames(frames, clip_id)
  audio = _check_audio(audio, clip_id)
  n = lse.num_windows(frames.shape[0], audio.shape[0], clip_id=clip_id)
  video = expert.embed_video(frames, n, clip_id=clip_id)
  sound = expert.embed_audio(audio, n, clip_id=clip_id)
  return lse.sync_score(video, sound, vshift=vshift, clip_id=clip_id)


# ------------------------------------------------------------------------ face-crop pipeline


@dataclasses.dataclass(frozen=True)
class CropSettings:
  """syncnet_python `run_pipeline.py` settings (its defaults).

  Attributes:
    crop_scale: enlargement of the crop around the box (0.4).
    smoothing_kernel: median filter over frames for box size and centre (13, odd).
    iou_threshold: a detection joins a track when its IoU with the track's last box exceeds this.
    max_missed: frames a track may go without a detection (`num_failed_det`, 25).
    min_track: a track needs more than this many detections (100).
    min_face_size: a track's mean box width or height must exceed this, in pixels (100).
    border_value: value of the padding around the frame (110).
    detect_size: longest frame side the detector sees (None: full resolution).
  """
  crop_scale: float = 0.4
  smoothing_kernel: int = 13
  iou_threshold: float = 0.5
  max_missed: int = 25
  min_track: int = 100
  min_face_size: float = 100.0
  border_value: int = 110
  detect_size: int | None = None

  def __post_init__(self):
    if self.smoothing_kernel < 1 or self.smoothing_kernel % 2 == 0:
      raise ValueError(f"CropSettings.smoothing_kernel must be odd and positive, got "
                       f"{self.smoothing_kernel}")
    if self.crop_scale < 0 or self.max_missed < 0 or self.min_track < 0:
      raise ValueError(f"CropSettings: crop_scale, max_missed and min_track must be >= 0, got "
                       f"{self.crop_scale}, {self.max_missed}, {self.min_track}")


@dataclasses.dataclass(frozen=True)
class FaceTrack:
  """One tracked face.

  Attributes:
    frames: [L] consecutive frame indices the track spans.
    boxes: [L, 4] float64 (x0, y0, x1, y1), linearly interpolated between detections.
  """
  frames: np.ndarray
  boxes: np.ndarray

  @property
  def audio_span(self) -> tuple[int, int]:
    """Audio samples [start, stop) of the track's frames (640 per frame)."""
    return (int(self.frames[0]) * lse.SAMPLES_PER_FRAME,
            (int(self.frames[-1]) + 1) * lse.SAMPLES_PER_FRAME)


def detect_faces(frames: np.ndarray, detector: detect_lib.FaceDetector | None = None,
                 detect_size: int | None = None) -> list[np.ndarray]:
  """Boxes [n_t, 4] of every face in every frame of [T, H, W, 3] (Haar detector by default)."""
  frames = _check_frames(frames, "frames")
  detector = detector or detect_lib.make_detector("haar")
  return [detect_lib.detect_scaled(detector, frame, detect_size) for frame in frames]


def build_tracks(detections: Sequence[np.ndarray], settings: CropSettings = CropSettings()
                 ) -> list[FaceTrack]:
  """syncnet_python's `track_shot` over per-frame detections [n_t, 4] (module docstring)."""
  remaining = [list(np.asarray(d, np.float64).reshape(-1, 4)) for d in detections]
  tracks = []
  while True:
    frames, boxes = [], []
    for t, faces in enumerate(remaining):
      if frames and t - frames[-1] > settings.max_missed:
        break
      for k, box in enumerate(faces):
        if not frames or detect_lib.box_iou(box, boxes[-1])[0, 0] > settings.iou_threshold:
          frames.append(t)
          boxes.append(box)
          del faces[k]
          break
    if not frames:
      return tracks
    if len(frames) <= settings.min_track:
      continue
    span = np.arange(frames[0], frames[-1] + 1)
    boxes = np.asarray(boxes)
    dense = np.stack([np.interp(span, frames, boxes[:, i]) for i in range(4)], axis=1)  # [L, 4]
    size = max(np.mean(dense[:, 2] - dense[:, 0]), np.mean(dense[:, 3] - dense[:, 1]))
    if size > settings.min_face_size:
      tracks.append(FaceTrack(span, dense))


def crop_track(frames: np.ndarray, track: FaceTrack, size: int,
               settings: CropSettings = CropSettings()) -> np.ndarray:
  """syncnet_python's `crop_video`: the track's face crops [L, size, size, 3]."""
  frames = _check_frames(frames, "frames")
  boxes = track.boxes
  kernel = settings.smoothing_kernel
  half = lse.medfilt(np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2, kernel)
  cy = lse.medfilt((boxes[:, 1] + boxes[:, 3]) / 2, kernel)
  cx = lse.medfilt((boxes[:, 0] + boxes[:, 2]) / 2, kernel)
  cs = settings.crop_scale
  out = np.empty((len(track.frames), size, size, 3), np.uint8)
  for i, t in enumerate(track.frames):
    bs = half[i]
    pad = int(bs * (1 + 2 * cs))
    padded = np.pad(frames[t], ((pad, pad), (pad, pad), (0, 0)), constant_values=settings.border_value)
    my, mx = cy[i] + pad, cx[i] + pad
    face = padded[int(my - bs):int(my + bs * (1 + 2 * cs)),
                  int(mx - bs * (1 + cs)):int(mx + bs * (1 + cs))]
    if face.size == 0:
      raise ValueError(f"frame {int(t)}: empty face crop (box half-size {bs:.2f} px)")
    out[i] = cv2.resize(np.ascontiguousarray(face), (size, size))
  return out


@dataclasses.dataclass(frozen=True)
class TrackCrop:
  """Face crops of one track and the matching audio.

  Attributes:
    track: the face track.
    frames: [L, S, S, 3] uint8 RGB crops.
    audio: the audio of the track's frames (None when no audio was given).
  """
  track: FaceTrack
  frames: np.ndarray
  audio: np.ndarray | None


def face_track_crops(frames: np.ndarray, audio: np.ndarray | None, size: int, *,
                     detector: detect_lib.FaceDetector | None = None,
                     settings: CropSettings = CropSettings()) -> list[TrackCrop]:
  """Full frames [T, H, W, 3] at 25 fps -> the crops of every kept face track (may be empty)."""
  tracks = build_tracks(detect_faces(frames, detector, settings.detect_size), settings)
  out = []
  for track in tracks:
    start, stop = track.audio_span
    out.append(TrackCrop(track, crop_track(frames, track, size, settings),
                         None if audio is None else np.asarray(audio)[start:stop]))
  return out

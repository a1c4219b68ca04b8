"""T-frame clips with aligned mel windows, lower-half masks and random references (Wav2Lip, RADIO).

Index space: every start f of a T-frame window whose mel windows all lie inside the clip's audio
(starts whose audio is too short are left out; clips with none are skipped with a warning).
Sample (S = image_size or the dataset's, M mel bins, W mel frames per window):

  frames            uint8   [T, S, S, 3]  target frames f .. f+T-1 (ground truth)
  masked            uint8   [T, S, S, 3]  the same with rows S//2 .. S-1 zeroed (Wav2Lip's input)
  reference         uint8   [T, S, S, 3]  reference frames of the same clip (see below)
  reference_frames  int32   [T]           their frame indices
  mel               float32 [M, W]        the window of frame f (SyncNet's audio for the T frames)
  indiv_mels        float32 [T, M, W]     per-frame windows, frame j using frame j + frame_shift's
  audio_features    float32 [T, A]        with audio_features=NAME: cached features of frames
                                          f .. f+T-1 (`pipelines.base.audio_feature_path`)
  clip, start       int32   []            clip position in the split, f
  valid             bool    []            eval variant only: False for padding entries

Windows follow `talking_heads.audio.windows` (video frame f's window starts at mel frame
floor(f * mel_fps / fps)). Wav2Lip: 80 mel frames/s, W = 16, frame_shift -1 (its generator pairs
frame j with frame j-1's window, so f >= 1). RADIO: 100 mel frames/s, W = 20 (0.2 s); the paper
names no shift, and we keep Wav2Lip's -1 since RADIO trains on Wav2Lip's data layout.

References: "window" (Wav2Lip) takes T consecutive frames starting at a random other start;
"independent" (RADIO's randomly chosen reference frames) draws each of the T frames uniformly
from the frames outside the target window.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import grain
import numpy as np

from talking_heads.audio import mel as mel_lib
from talking_heads.audio import windows
from talking_heads.io import dataset as dataset_lib
from talking_heads.pipelines import base

REFERENCE_MODES = ("window", "independent")


@dataclasses.dataclass(frozen=True)
class AudioSpec:
  """Which mel and which windows a pipeline cuts for its frames.

  Attributes:
    mel: the log-mel recipe (its hop and rate must match `windows`).
    windows: window length and alignment to video frames.
    frame_shift: per-frame windows use frame j + frame_shift's window.
  """
  mel: mel_lib.MelConfig
  windows: windows.MelWindowSpec
  frame_shift: int = -1

  def __post_init__(self):
    if (self.mel.sample_rate, self.mel.hop_length) != (self.windows.sample_rate,
                                                       self.windows.hop_length):
      raise ValueError(f"AudioSpec: mel ({self.mel.sample_rate} Hz, hop {self.mel.hop_length}) "
                       f"and windows ({self.windows.sample_rate} Hz, hop "
                       f"{self.windows.hop_length}) disagree")
    if self.frame_shift > 0:
      raise ValueError(f"AudioSpec.frame_shift must be <= 0, got {self.frame_shift}")


WAV2LIP_AUDIO = AudioSpec(mel_lib.WAV2LIP_MEL, windows.WAV2LIP_WINDOWS, frame_shift=-1)
RADIO_AUDIO = AudioSpec(mel_lib.RADIO_MEL, windows.RADIO_WINDOWS, frame_shift=-1)


def check_audio_spec(root: str | os.PathLike, data: dataset_lib.Dataset, spec: AudioSpec) -> None:
  """ValueError unless the dataset's sample rate and fps are the spec's."""
  if (data.sample_rate, data.fps) != (spec.mel.sample_rate, spec.windows.fps):
    raise ValueError(f"dataset {root}: {data.sample_rate} Hz at {data.fps} fps, but the audio spec "
                     f"needs {spec.mel.sample_rate} Hz at {spec.windows.fps} fps")


def windows_fit(starts: np.ndarray, num_mel_frames: int, spec: windows.MelWindowSpec) -> np.ndarray:
  """Bool per video frame in `starts` (any ints, negatives never fit): its window lies in the mel."""
  starts = np.asarray(starts, np.int64)
  first = windows.window_starts(np.maximum(starts, 0), spec)
  return (starts >= 0) & (first + spec.window <= num_mel_frames)


def clip_window_mask(num_frames: int, num_samples: int, num_window_frames: int,
                     spec: AudioSpec) -> np.ndarray:
  """Bool [num_frames] over starts f: f .. f+T-1 exist, a reference window exists (more than T
  frames) and the window of f and every shifted per-frame window fit in the audio."""
  t = num_window_frames
  f = np.arange(num_frames)
  num_mel = spec.mel.num_frames(num_samples)
  ok = (f + t <= num_frames) & (num_frames > t)
  ok &= windows_fit(f, num_mel, spec.windows)
  ok &= windows_fit(f + spec.frame_shift, num_mel, spec.windows)  # earliest per-frame window
  ok &= windows_fit(f + t - 1 + spec.frame_shift, num_mel, spec.windows)  # latest
  return ok


class ClipSampler(grain.transforms.RandomMap):
  """Index element -> clip sample (module docstring); picklable for grain workers."""

  def __init__(self, reader: base.ClipReader, num_frames: int, audio: AudioSpec,
               reference_mode: str, image_size: int | None, audio_features: str | None = None):
    self.reader = reader
    self.audio_features = audio_features
    self.num_frames = num_frames
    self.audio = audio
    self.reference_mode = reference_mode
    self.image_size = image_size

  def _reference_frames(self, start: int, clip_frames: int, rng: np.random.Generator) -> np.ndarray:
    t = self.num_frames
    if self.reference_mode == "window":
      other = int(rng.integers(clip_frames - t))  # one of the clip_frames - t other starts
      other += int(other >= start)
      return np.arange(other, other + t)
    picks = rng.integers(clip_frames - t, size=t)  # frames outside [start, start + t)
    return picks + t * (picks >= start)

  def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    i, f, t = int(element["clip"]), int(element["start"]), self.num_frames
    frames = self.reader.array(i, "frames")
    clip_id = self.reader.clip_ids[i]
    mel = self.reader.mel(i, self.audio.mel)
    reference_frames = self._reference_frames(f, frames.shape[0], rng)
    target = base.resize_frames(frames[f:f + t], self.image_size)
    sync = windows.slice_windows(mel, f, self.audio.windows, clip_id=clip_id)  # [W, M]
    indiv = windows.slice_windows(mel, np.arange(f, f + t), self.audio.windows,
                                  shift=self.audio.frame_shift, clip_id=clip_id)  # [T, W, M]
    out = {
        "frames": target,
        "masked": base.mask_lower_half(target),
        "reference": base.resize_frames(frames[reference_frames], self.image_size),
        "reference_frames": reference_frames.astype(np.int32),
        "mel": np.ascontiguousarray(sync.T),
        "indiv_mels": np.ascontiguousarray(indiv.transpose(0, 2, 1)),
        "clip": element["clip"], "start": element["start"],
    }
    if self.audio_features is not None:
      out["audio_features"] = np.array(self.reader.audio_features(i, self.audio_features)[f:f + t])
    return out


def _build(root: str | os.PathLike, split: str | None, stride: int | None, num_frames: int,
           audio: AudioSpec, reference_mode: str, image_size: int | None,
           audio_features: str | None = None) -> tuple[base.WindowIndex, ClipSampler]:
  if num_frames < 1:
    raise ValueError(f"num_frames must be >= 1, got {num_frames}")
  if reference_mode not in REFERENCE_MODES:
    raise ValueError(f"reference_mode must be one of {REFERENCE_MODES}, got {reference_mode!r}")
  if image_size is not None and image_size < 1:
    raise ValueError(f"image_size must be positive, got {image_size}")
  data, clips = base.open_split(root, split)
  check_audio_spec(root, data, audio)
  base.warn_missing_features(root, clips, audio.mel)
  if audio_features is not None:
    base.check_audio_features(root, audio_features, clips)

  def valid(clip: dataset_lib.Clip) -> tuple[np.ndarray, str]:
    mask = clip_window_mask(clip.num_frames, clip.num_samples, num_frames, audio)
    return mask, (f"{clip.num_frames} frames, {clip.num_samples} audio samples; needs more than "
                  f"{num_frames} frames and audio covering their mel windows")

  index = base.build_index(root, clips, valid, stride=stride or num_frames,
                           what=f"{num_frames}-frame window")
  reader = base.ClipReader(root, [c.id for c in clips])
  return index, ClipSampler(reader, num_frames, audio, reference_mode, image_size, audio_features)


def make_clips_iterator(root: str | os.PathLike, *, batch_size: int, shard_index: int,
                        shard_count: int, seed: int, num_workers: int, split: str | None = "train",
                        num_frames: int = 5, audio: AudioSpec = WAV2LIP_AUDIO,
                        reference_mode: str = "window", image_size: int | None = None,
                        audio_features: str | None = None,
                        **grain_options: Any) -> grain.DatasetIterator:
  """Shuffled, repeated batches of T-frame clips (module docstring keys, with a leading B).

  Args:
    root: dataset directory.
    batch_size, shard_index, shard_count, seed, num_workers: see `base.build_iterator`.
    split: the split to sample (None: all clips).
    num_frames: T (5 for Wav2Lip and RADIO).
    audio: WAV2LIP_AUDIO or RADIO_AUDIO (or another `AudioSpec`).
    reference_mode: "window" or "independent".
    image_size: resize frames to this size (None: the dataset's).
    audio_features: name of cached per-clip audio features to include, or None.
    **grain_options: read_threads, prefetch, worker_buffer_size (`base.build_iterator`).
  """
  index, sampler = _build(root, split, 1, num_frames, audio, reference_mode, image_size,
                          audio_features)
  return base.build_iterator(index, sampler, batch_size=batch_size, shard_index=shard_index,
                             shard_count=shard_count, seed=seed, num_workers=num_workers,
                             train=True, **grain_options)


def make_clips_eval_iterator(root: str | os.PathLike, *, batch_size: int, shard_index: int,
                             shard_count: int, seed: int, num_workers: int,
                             split: str | None = "val", stride: int | None = None,
                             num_frames: int = 5, audio: AudioSpec = WAV2LIP_AUDIO,
                             reference_mode: str = "window", image_size: int | None = None,
                             audio_features: str | None = None,
                             **grain_options: Any) -> grain.DatasetIterator:
  """One pass over every `stride`-th valid start (default T: non-overlapping windows); the
  references are fixed per window by `seed`."""
  index, sampler = _build(root, split, stride, num_frames, audio, reference_mode, image_size,
                          audio_features)
  return base.build_iterator(index, sampler, batch_size=batch_size, shard_index=shard_index,
                             shard_count=shard_count, seed=seed, num_workers=num_workers,
                             train=False, **grain_options)

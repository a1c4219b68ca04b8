"""In-sync / off-sync pairs of T frames and one mel window, for lip-sync experts (SyncNet).

Index space: every audio start f whose T frames and mel window exist and that has an off-sync
partner (a visual start w in [0, num_frames - T] with |w - f| >= min_offset). Sample
(S = image_size or the dataset's, M mel bins, W mel frames per window):

  frames   uint8   [T, S, S, 3]  frames w .. w+T-1 (full frames; SyncNet uses the lower half)
  mel      float32 [M, W]        the window of video frame f
  label    float32 []            1 when w == f (in sync), 0 otherwise
  offset   int32   []            w - f (0 in sync, |offset| >= min_offset off sync)
  clip     int32   []            clip position in the split
  start    int32   []            f, the audio's frame
  valid    bool    []            eval variant only: False for padding entries

As Wav2Lip's SyncNet training: with probability `sync_prob` the frames start at the audio's
frame, else at another start of the same clip (uniform over those at least `min_offset` frames
away; Wav2Lip's own rule is any other start, min_offset = 1).
"""

from __future__ import annotations

import os
from typing import Any

import grain
import numpy as np

from talking_heads.audio import mfcc as mfcc_lib
from talking_heads.audio import windows
from talking_heads.io import dataset as dataset_lib
from talking_heads.pipelines import base
from talking_heads.pipelines import clips as clips_lib


def sync_start_mask(num_frames: int, num_samples: int, num_window_frames: int, min_offset: int,
                    spec: clips_lib.AudioSpec) -> np.ndarray:
  """Bool [num_frames] over audio starts f: frames, mel window and an off-sync partner exist."""
  t = num_window_frames
  f = np.arange(num_frames)
  last = num_frames - t  # last visual start
  ok = (f <= last) & (np.maximum(f, last - f) >= min_offset)
  return ok & clips_lib.windows_fit(f, spec.mel.num_frames(num_samples), spec.windows)


class SyncSampler(grain.transforms.RandomMap):
  """Index element -> sync pair (module docstring); picklable for grain workers."""

  def __init__(self, reader: base.ClipReader, num_frames: int, audio: clips_lib.AudioSpec,
               min_offset: int, sync_prob: float, image_size: int | None):
    self.reader = reader
    self.num_frames = num_frames
    self.audio = audio
    self.min_offset = min_offset
    self.sync_prob = sync_prob
    self.image_size = image_size

  def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    i, f, t, gap = int(element["clip"]), int(element["start"]), self.num_frames, self.min_offset
    frames = self.reader.array(i, "frames")
    last = frames.shape[0] - t
    below = max(0, f - gap + 1)  # partners 0 .. f - gap
    above = max(0, last - (f + gap) + 1)  # partners f + gap .. last
    in_sync = rng.random() < self.sync_prob
    k = int(rng.integers(below + above))
    visual = f if in_sync else (k if k < below else f + gap + (k - below))
    mel = self.reader.mel(i, self.audio.mel)
    window = windows.slice_windows(mel, f, self.audio.windows, clip_id=self.reader.clip_ids[i])
    return {
        "frames": base.resize_frames(frames[visual:visual + t], self.image_size),
        "mel": np.ascontiguousarray(window.T),
        "label": np.float32(in_sync),
        "offset": np.int32(visual - f),
        "clip": element["clip"], "start": element["start"],
    }


def _build(root: str | os.PathLike, split: str | None, stride: int | None, num_frames: int,
           audio: clips_lib.AudioSpec, min_offset: int, sync_prob: float,
           image_size: int | None) -> tuple[base.WindowIndex, SyncSampler]:
  if num_frames < 1:
    raise ValueError(f"num_frames must be >= 1, got {num_frames}")
  if min_offset < 1:
    raise ValueError(f"min_offset must be >= 1 frame, got {min_offset}")
  if not 0.0 <= sync_prob <= 1.0:
    raise ValueError(f"sync_prob must be in [0, 1], got {sync_prob}")
  if image_size is not None and image_size < 1:
    raise ValueError(f"image_size must be positive, got {image_size}")
  data, clips = base.open_split(root, split)
  clips_lib.check_audio_spec(root, data, audio)
  base.warn_missing_features(root, clips, audio.mel)

  def valid(clip: dataset_lib.Clip) -> tuple[np.ndarray, str]:
    mask = sync_start_mask(clip.num_frames, clip.num_samples, num_frames, min_offset, audio)
    return mask, (f"{clip.num_frames} frames, {clip.num_samples} audio samples; needs "
                  f"{num_frames}-frame windows {min_offset}+ frames apart and audio covering "
                  f"the mel window")

  index = base.build_index(root, clips, valid, stride=stride or num_frames,
                           what=f"{num_frames}-frame sync pair")
  reader = base.ClipReader(root, [c.id for c in clips])
  return index, SyncSampler(reader, num_frames, audio, min_offset, sync_prob, image_size)


def make_sync_iterator(root: str | os.PathLike, *, batch_size: int, shard_index: int,
                       shard_count: int, seed: int, num_workers: int, split: str | None = "train",
                       num_frames: int = 5, audio: clips_lib.AudioSpec = clips_lib.WAV2LIP_AUDIO,
                       min_offset: int = 1, sync_prob: float = 0.5, image_size: int | None = None,
                       **grain_options: Any) -> grain.DatasetIterator:
  """Shuffled, repeated batches of sync pairs (module docstring keys, with a leading B).

  Args:
    root: dataset directory.
    batch_size, shard_index, shard_count, seed, num_workers: see `base.build_iterator`.
    split: the split to sample (None: all clips).
    num_frames: T (5 for Wav2Lip's SyncNet).
    audio: which mel and windows (`clips.WAV2LIP_AUDIO`, `clips.RADIO_AUDIO`).
    min_offset: smallest |visual start - audio start| of an off-sync pair, in frames.
    sync_prob: probability of an in-sync pair.
    image_size: resize frames to this size (None: the dataset's).
    **grain_options: read_threads, prefetch, worker_buffer_size (`base.build_iterator`).
  """
  index, sampler = _build(root, split, 1, num_frames, audio, min_offset, sync_prob, image_size)
  return base.build_iterator(index, sampler, batch_size=batch_size, shard_index=shard_index,
                             shard_count=shard_count, seed=seed, num_workers=num_workers,
                             train=True, **grain_options)


def make_sync_eval_iterator(root: str | os.PathLike, *, batch_size: int, shard_index: int,
                            shard_count: int, seed: int, num_workers: int,
                            split: str | None = "val", stride: int | None = None,
                            num_frames: int = 5,
                            audio: clips_lib.AudioSpec = clips_lib.WAV2LIP_AUDIO,
                            min_offset: int = 1, sync_prob: float = 0.5,
                            image_size: int | None = None,
                            **grain_options: Any) -> grain.DatasetIterator:
  """One pass over every `stride`-th audio start (default T); labels and partners fixed per
  start by `seed`."""
  index, sampler = _build(root, split, stride, num_frames, audio, min_offset, sync_prob,
                          image_size)
  return base.build_iterator(index, sampler, batch_size=batch_size, shard_index=shard_index,
                             shard_count=shard_count, seed=seed, num_workers=num_workers,
                             train=False, **grain_options)


# ------------------------------------------------------------- offset sets for syncnet_python's S

MFCC_PER_FRAME = 4     # 100 MFCC frames/s at 25 fps
MFCC_WINDOW = 20       # 0.2 s: the audio of a 5-frame window


def mfcc_window_fits(starts: np.ndarray, num_samples: int,
                     config: mfcc_lib.MfccConfig = mfcc_lib.SYNCNET_MFCC) -> np.ndarray:
  """Bool per video frame in `starts`: MFCC columns 4f .. 4f+19 exist in the clip's MFCC."""
  starts = np.asarray(starts, np.int64)
  return (starts >= 0) & (MFCC_PER_FRAME * starts + MFCC_WINDOW <= config.num_frames(num_samples))


LIP_REGIONS = ("face", "lower_centre")


def crop_lip_region(frames: np.ndarray, region: str) -> np.ndarray:
  """The part of face crops [..., H, W, 3] that the independent expert sees: the whole crop
  ("face", syncnet_python's input) or the square under the nose ("lower_centre": rows H/2 .. H,
  columns W/4 .. 3W/4, which holds the mouth of aligned crops at twice the share of pixels)."""
  if region == "face":
    return frames
  if region != "lower_centre":
    raise ValueError(f"lip region {region!r}: expected one of {LIP_REGIONS}")
  h, w = frames.shape[-3:-1]
  side = h // 2
  left = (w - side) // 2
  return frames[..., h - side:, left:left + side, :]


class OffsetSampler(grain.transforms.RandomMap):
  """Index element (visual start v) -> 5 frames and the MFCC windows of audio starts v + k,
  k = -K .. K (`make_offset_iterator`); picklable for grain workers."""

  def __init__(self, reader: base.ClipReader, num_frames: int, max_offset: int,
               image_size: int | None, region: str = "face"):
    self.reader = reader
    self.num_frames = num_frames
    self.max_offset = max_offset
    self.image_size = image_size
    self.region = region

  def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    del rng  # deterministic given the start; the order is the training's randomness
    i, v = int(element["clip"]), int(element["start"])
    frames = self.reader.array(i, "frames")
    cepstra = self.reader.mfcc(i, mfcc_lib.SYNCNET_MFCC)                      # [13, F]
    starts = v + np.arange(-self.max_offset, self.max_offset + 1)            # [2K+1]
    fits = mfcc_window_fits(starts, int(self.reader.array(i, "audio").shape[0]))
    columns = MFCC_PER_FRAME * np.where(fits, starts, 0)[:, None] + np.arange(MFCC_WINDOW)
    return {
        "frames": base.resize_frames(crop_lip_region(frames[v:v + self.num_frames], self.region),
                                     self.image_size),
        "mfcc": np.ascontiguousarray(cepstra[:, columns].transpose(1, 0, 2)),  # [2K+1, 13, 20]
        "offset_mask": fits,
        "clip": element["clip"], "start": element["start"],
    }


def _build_offsets(root: str | os.PathLike, split: str | None, stride: int, num_frames: int,
                   max_offset: int, image_size: int | None, region: str
                   ) -> tuple[base.WindowIndex, OffsetSampler]:
  crop_lip_region(np.zeros((2, 2, 3)), region)   # a bad region fails before the index is built
  if num_frames < 1 or max_offset < 1:
    raise ValueError(f"num_frames and max_offset must be >= 1, got {num_frames}, {max_offset}")
  if image_size is not None and image_size < 1:
    raise ValueError(f"image_size must be positive, got {image_size}")
  data, clips = base.open_split(root, split)
  if data.fps != windows.VIDEO_FPS:
    raise ValueError(f"dataset {root}: {data.fps} fps, syncnet_python's windows need "
                     f"{windows.VIDEO_FPS}")
  if data.sample_rate != mfcc_lib.SYNCNET_MFCC.sample_rate:
    raise ValueError(f"dataset {root}: {data.sample_rate} Hz audio, syncnet_python's MFCC needs "
                     f"{mfcc_lib.SYNCNET_MFCC.sample_rate}")

  def valid(clip: dataset_lib.Clip) -> tuple[np.ndarray, str]:
    f = np.arange(clip.num_frames)
    mask = (f <= clip.num_frames - num_frames) & mfcc_window_fits(f, clip.num_samples)
    return mask, (f"{clip.num_frames} frames, {clip.num_samples} audio samples; needs "
                  f"{num_frames} frames and 0.2 s of audio from the same frame")

  index = base.build_index(root, clips, valid, stride=stride, what=f"{num_frames}-frame window")
  reader = base.ClipReader(root, [c.id for c in clips])
  return index, OffsetSampler(reader, num_frames, max_offset, image_size, region)


def make_offset_iterator(root: str | os.PathLike, *, batch_size: int, shard_index: int,
                         shard_count: int, seed: int, num_workers: int,
                         split: str | None = "train", num_frames: int = 5, max_offset: int = 15,
                         image_size: int | None = None, region: str = "face",
                         **grain_options: Any) -> grain.DatasetIterator:
  """Shuffled, repeated batches for syncnet_python's network S (multi-way offset matching).

  Sample (S = image_size or the dataset's, K = max_offset):
    frames       uint8   [T, S, S, 3]        frames v .. v+T-1 (whole face crops, or their
                                             `crop_lip_region`)
    mfcc         float32 [2K+1, 13, 20]      `audio.mfcc` columns 4(v+k) .. 4(v+k)+19, k = -K..K
                                             (syncnet_python's audio input; row K is in sync)
    offset_mask  bool    [2K+1]              the window of v + k exists in the clip
    clip, start  int32   []                  clip position in the split, v
  Eval variant (`make_offset_eval_iterator`) adds valid bool [] (False for padding entries).
  """
  index, sampler = _build_offsets(root, split, 1, num_frames, max_offset, image_size, region)
  return base.build_iterator(index, sampler, batch_size=batch_size, shard_index=shard_index,
                             shard_count=shard_count, seed=seed, num_workers=num_workers,
                             train=True, **grain_options)


def make_offset_eval_iterator(root: str | os.PathLike, *, batch_size: int, shard_index: int,
                              shard_count: int, num_workers: int, split: str | None = "val",
                              stride: int = 5, num_frames: int = 5, max_offset: int = 15,
                              image_size: int | None = None, region: str = "face",
                              **grain_options: Any) -> grain.DatasetIterator:
  """One pass over every `stride`-th visual start (`make_offset_iterator`'s samples)."""
  index, sampler = _build_offsets(root, split, stride, num_frames, max_offset, image_size,
                                  region)
  return base.build_iterator(index, sampler, batch_size=batch_size, shard_index=shard_index,
                             shard_count=shard_count, seed=0, num_workers=num_workers,
                             train=False, **grain_options)

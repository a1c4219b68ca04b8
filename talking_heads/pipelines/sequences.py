"""Long windows of audio + face parameters (+ latents), for DAE-Talker, FD2Talk and PIR's audio
encoder.

DAE-Talker trains on pseudo-sentences: a random start and a random length (5 to 20 s, i.e.
min_length=125, max_length=500 at 25 fps); its ablation (Table 2, "w/o data aug") on segments
cut at fixed timestamps; FD2Talk on fixed windows (min_length = max_length = 25). Both papers
feed wav2vec2 features, whose weights cannot be downloaded here, so a sample carries the raw
16 kHz audio aligned to its frames and the mel frames aligned to them; a stage with a wav2vec2
encoder runs it on `audio`, or reads features cached per clip
(`experiments.precompute_audio_features`, `audio_features=NAME`).

Index space: every start s with at least min_length frames, audio samples and mel frames after
it. Sample, zero-padded to L = max_length for fixed shapes (n = the drawn length; P audio samples
and R mel frames per video frame, e.g. 640 and 4 with RADIO_MEL at 16 kHz / 25 fps):

  audio      float32 [L * P]          samples of frames s .. s+n-1
  mel        float32 [L * R, M]       their mel frames, time-major (with mel=None: absent)
  audio_features float32 [L, A]       with audio_features=NAME: the cached features' rows s .. s+n-1
  expression float32 [L, E]
  pose       float32 [L, 6]
  landmarks  float32 [L, 68, 2]
  alpha      float32 [A]              the clip's identity parameters
  latents    float32 [L, ...]         with latents=NAME: `<root>/latents/NAME/<clip id>.npy` rows
  frames     uint8   [L, S, S, 3]     with frames=True
  mask       bool    [L]              True for the n real frames
  length     int32   []               n
  clip       int32   []               clip position in the split
  start      int32   []               s
  valid      bool    []               eval variant only: False for padding entries

Sampling of the train variant (`SAMPLINGS`):
  pseudo_sentence  every start s with room for min_length frames; length uniform in
                   [min_length, min(max_length, frames left)].
  fixed_segments   starts 0, L, 2L, ... of each clip (L = max_length), each segment taken whole:
                   L frames, or the clip's shorter tail if it has at least min_length frames.
                   The segments are shuffled and repeated like any index.

The eval variant walks each clip in consecutive windows of max_length frames (the last one
shorter, if at least min_length), the fixed segments in a fixed order.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import grain
import numpy as np

from talking_heads.audio import mel as mel_lib
from talking_heads.io import dataset as dataset_lib
from talking_heads.pipelines import base

_PER_FRAME = ("expression", "pose", "landmarks")
SAMPLINGS = ("pseudo_sentence", "fixed_segments")


def mel_frames_per_video_frame(config: mel_lib.MelConfig, fps: int) -> int:
  """R for `config` at `fps`; ValueError unless whole (e.g. Wav2Lip's 3.2 is not)."""
  if config.sample_rate % (config.hop_length * fps):
    raise ValueError(f"mel hop {config.hop_length} at {config.sample_rate} Hz gives "
                     f"{config.sample_rate / (config.hop_length * fps):g} mel frames per video "
                     f"frame at {fps} fps; sequences need a whole number (e.g. RADIO_MEL: 4)")
  return config.sample_rate // (config.hop_length * fps)


class SequenceSampler(grain.transforms.RandomMap):
  """Index element -> padded sequence (module docstring); picklable for grain workers.

  `longest` (eval) takes the longest window up to max_length instead of a random length.
  """

  def __init__(self, reader: base.ClipReader, min_length: int, max_length: int,
               samples_per_frame: int, mel: mel_lib.MelConfig | None, mel_rate: int,
               latents: str | None, latent_shape: tuple[int, ...], frames: bool,
               image_size: int | None, longest: bool, audio_features: str | None = None,
               audio_feature_dim: int = 0):
    self.reader = reader
    self.min_length = min_length
    self.max_length = max_length
    self.samples_per_frame = samples_per_frame
    self.mel = mel
    self.mel_rate = mel_rate
    self.latents = latents
    self.latent_shape = latent_shape
    self.frames = frames
    self.image_size = image_size
    self.longest = longest
    self.audio_features = audio_features
    self.audio_feature_dim = audio_feature_dim

  def limit(self, clip: dataset_lib.Clip) -> int:
    """Frames usable from 0: frames, whole frames of audio and of mel frames."""
    limit = min(clip.num_frames, clip.num_samples // self.samples_per_frame)
    if self.mel is not None:
      limit = min(limit, self.mel.num_frames(clip.num_samples) // self.mel_rate)
    return limit

  def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    i, s, big = int(element["clip"]), int(element["start"]), self.max_length
    available = min(big, self.limit(self.reader.clip(i)) - s)
    n = available if self.longest else int(rng.integers(self.min_length, available + 1))
    p, r = self.samples_per_frame, self.mel_rate
    audio = np.zeros(big * p, np.float32)
    audio[:n * p] = self.reader.array(i, "audio")[s * p:(s + n) * p]
    out = {"audio": audio}
    if self.mel is not None:
      mel = np.zeros((big * r, self.mel.n_mels), np.float32)
      mel[:n * r] = self.reader.mel(i, self.mel)[s * r:(s + n) * r]
      out["mel"] = mel
    if self.audio_features is not None:
      features = np.zeros((big, self.audio_feature_dim), np.float32)
      features[:n] = self.reader.audio_features(i, self.audio_features)[s:s + n]
      out["audio_features"] = features
    for name in _PER_FRAME:
      values = self.reader.array(i, name)
      out[name] = np.zeros((big,) + values.shape[1:], np.float32)
      out[name][:n] = values[s:s + n]
    out["alpha"] = np.array(self.reader.array(i, "alpha"))
    if self.latents is not None:
      out["latents"] = np.zeros((big,) + self.latent_shape, np.float32)
      out["latents"][:n] = self.reader.latents(i, self.latents)[s:s + n]
    if self.frames:
      window = base.resize_frames(self.reader.array(i, "frames")[s:s + n], self.image_size)
      out["frames"] = np.zeros((big,) + window.shape[1:], np.uint8)
      out["frames"][:n] = window
    out["mask"] = np.arange(big) < n
    out["length"] = np.int32(n)
    out["clip"], out["start"] = element["clip"], element["start"]
    return out


def _build(root: str | os.PathLike, split: str | None, min_length: int, max_length: int,
           mel: mel_lib.MelConfig | None, latents: str | None, frames: bool,
           image_size: int | None, longest: bool, identities: Sequence[str] | None,
           audio_features: str | None = None) -> tuple[base.WindowIndex, SequenceSampler]:
  """The index and sampler; `longest` walks starts 0, L, 2L, ... and takes whole segments."""
  if not 1 <= min_length <= max_length:
    raise ValueError(f"need 1 <= min_length <= max_length, got {min_length}, {max_length}")
  if image_size is not None and image_size < 1:
    raise ValueError(f"image_size must be positive, got {image_size}")
  data, clips = base.open_split(root, split, identities)
  if data.sample_rate % data.fps:
    raise ValueError(f"dataset {root}: {data.sample_rate} Hz is not a whole number of samples "
                     f"per frame at {data.fps} fps")
  if mel is not None and mel.sample_rate != data.sample_rate:
    raise ValueError(f"dataset {root}: audio at {data.sample_rate} Hz but the mel config "
                     f"expects {mel.sample_rate} Hz")
  mel_rate = 0 if mel is None else mel_frames_per_video_frame(mel, data.fps)
  if mel is not None:
    base.warn_missing_features(root, clips, mel)
  latent_shape = () if latents is None else base.check_latents(root, latents, clips)
  feature_dim = (0 if audio_features is None
                 else base.check_audio_features(root, audio_features, clips)["dim"])
  reader = base.ClipReader(root, [c.id for c in clips])
  sampler = SequenceSampler(reader, min_length, max_length, data.sample_rate // data.fps, mel,
                            mel_rate, latents, latent_shape, frames, image_size, longest,
                            audio_features, feature_dim)

  def valid(clip: dataset_lib.Clip) -> tuple[np.ndarray, str]:
    limit = sampler.limit(clip)
    return (np.arange(clip.num_frames) <= limit - min_length,
            f"{limit} usable frames (frames, audio and mel) < min_length {min_length}")

  index = base.build_index(root, clips, valid, stride=max_length if longest else 1,
                           what=f"window of {min_length}+ frames")
  return index, sampler


def make_sequence_iterator(root: str | os.PathLike, *, batch_size: int, shard_index: int,
                           shard_count: int, seed: int, num_workers: int,
                           split: str | None = "train", min_length: int = 25,
                           max_length: int = 25, mel: mel_lib.MelConfig | None = mel_lib.RADIO_MEL,
                           latents: str | None = None, frames: bool = False,
                           image_size: int | None = None,
                           identities: Sequence[str] | None = None,
                           sampling: str = "pseudo_sentence",
                           audio_features: str | None = None,
                           **grain_options: Any) -> grain.DatasetIterator:
  """Shuffled, repeated batches of padded sequences (module docstring keys, with a leading B).

  Args:
    root: dataset directory.
    batch_size, shard_index, shard_count, seed, num_workers: see `base.build_iterator`.
    split: the split to sample (None: all clips).
    min_length, max_length: length range in frames (equal for fixed-length windows).
    mel: mel recipe of the `mel` key (a whole number of mel frames per video frame), or None.
    latents: name of per-frame latents under `<root>/latents/` to include, or None.
    frames: also return the frames.
    image_size: resize frames to this size (None: the dataset's).
    identities: only clips of these identities (None: all).
    sampling: "pseudo_sentence" (random start and length) or "fixed_segments" (whole segments
      cut at multiples of max_length); see the module docstring.
    audio_features: name of cached per-clip audio features to include (`audio_features` key),
      or None.
    **grain_options: read_threads, prefetch, worker_buffer_size (`base.build_iterator`).
  """
  if sampling not in SAMPLINGS:
    raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
  index, sampler = _build(root, split, min_length, max_length, mel, latents, frames, image_size,
                          longest=sampling == "fixed_segments", identities=identities,
                          audio_features=audio_features)
  return base.build_iterator(index, sampler, batch_size=batch_size, shard_index=shard_index,
                             shard_count=shard_count, seed=seed, num_workers=num_workers,
                             train=True, **grain_options)


def make_sequence_eval_iterator(root: str | os.PathLike, *, batch_size: int, shard_index: int,
                                shard_count: int, seed: int, num_workers: int,
                                split: str | None = "val", min_length: int = 25,
                                max_length: int = 25,
                                mel: mel_lib.MelConfig | None = mel_lib.RADIO_MEL,
                                latents: str | None = None, frames: bool = False,
                                image_size: int | None = None,
                                identities: Sequence[str] | None = None,
                                audio_features: str | None = None,
                                **grain_options: Any) -> grain.DatasetIterator:
  """One pass over consecutive max_length windows of each clip (of `identities`, if given)."""
  index, sampler = _build(root, split, min_length, max_length, mel, latents, frames, image_size,
                          longest=True, identities=identities, audio_features=audio_features)
  return base.build_iterator(index, sampler, batch_size=batch_size, shard_index=shard_index,
                             shard_count=shard_count, seed=seed, num_workers=num_workers,
                             train=False, **grain_options)

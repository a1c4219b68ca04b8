"""Machinery shared by the grain pipelines: index spaces, cached clip reads, mel features, iterators.

Every pipeline is one grain graph over a small random-access *index source* whose elements name
a window of one clip ({"index", "clip", "start", "valid"}):

  train: source[shard_index::shard_count] -> shuffle(seed) -> repeat() -> random_map(sampler)
         -> batch(batch_size, drop_remainder) -> to_iter_dataset -> mp_prefetch (num_workers > 0)
  eval:  padded source[shard_index::shard_count] -> map(sampler, rng from (seed, index))
         -> batch(batch_size) -> to_iter_dataset -> mp_prefetch (num_workers > 0)

Sharding slices the index space per JAX process, so the shards are disjoint and cover it. The
sampler (a `grain.transforms.RandomMap`) does all the reading and draws every random choice
from grain's per-element generator, so a batch depends only on (seed, shard, position): the
same with 0 or N workers, and `get_state()`/`set_state()` resume exactly. Eval sources are
padded to a multiple of shard_count * batch_size with `valid=False` entries, so every process
gets the same number of full batches; an eval sample's randomness is seeded by its global index
and does not depend on the sharding.

Index spaces are run-length encoded: one (clip, first start, count) row per run of consecutive
valid starts, with cumulative counts for lookup, so even a corpus of millions of frames pickles
into the workers as a few small numpy arrays.

Mel features. A full-clip mel per sample is wasteful, and a per-worker LRU cache of full-clip
mels hits rarely once a split has more clips than the cache holds (samples are shuffled across
clips). `precompute_features` therefore writes each clip's time-major mel once to
`<root>/features/<clip id>/<feature>.npy` (atomically), and `ClipReader.mel` memory-maps it,
which costs only the window's bytes per sample and is bit-identical to the full-clip mel. Clips
without the file fall back to computing the full-clip mel, kept in a small per-process LRU
cache, so a fresh or read-only dataset still works.

Audio features (wav2vec2). `experiments.precompute_audio_features` writes each clip's features
aligned to its video frames, float32 [T, A], to `<root>/features/<clip id>/<name>.npy` beside the
mels, and what they are (weights, layer, alignment, width) to `<root>/features/<name>.json`.
`check_audio_features` checks them before a pipeline starts and `ClipReader.audio_features`
memory-maps them; unlike mels they are never computed on the fly (that needs the encoder).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import pathlib
import threading
from typing import Any, Callable, Iterable, Sequence

import cv2
import grain
import numpy as np
from absl import logging

from talking_heads.audio import mel as mel_lib
from talking_heads.audio import mfcc as mfcc_lib
from talking_heads.io import atomic
from talking_heads.io import audio as audio_io
from talking_heads.io import dataset as dataset_lib

FEATURES_DIR = "features"
LATENTS_DIR = "latents"

_MAX_LOGGED_SKIPS = 20

# numpy parses .npy headers with ast.literal_eval, and CPython before 3.11.8 / 3.12.1 can fail
# (SystemError "AST constructor recursion depth mismatch", or crash) when threads build ASTs at
# once (python/cpython#106905); grain reads with several threads, so opening files is serialised.
_NPY_OPEN_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True, eq=False)
class WindowIndex:
  """Valid window starts of a split, as runs of starts `first + k * stride`, k < count.

  Attributes:
    clip: [R] int32 position of each run's clip in the split's clip list.
    first: [R] int64 first start of each run.
    count: [R] int64 number of starts in each run.
    stride: frames between consecutive starts within a run.
  """
  clip: np.ndarray
  first: np.ndarray
  count: np.ndarray
  stride: int = 1

  def __post_init__(self):
    offsets = np.concatenate([[0], np.cumsum(self.count, dtype=np.int64)])
    object.__setattr__(self, "_offsets", offsets)

  @classmethod
  def from_masks(cls, masks: Iterable[tuple[int, np.ndarray]], stride: int = 1) -> WindowIndex:
    """Builds the index from (clip position, bool [num candidate starts]) pairs."""
    if stride < 1:
      raise ValueError(f"stride must be >= 1, got {stride}")
    clips, firsts, counts = [], [], []
    for clip, mask in masks:
      edges = np.diff(np.concatenate([[0], np.asarray(mask, np.int8), [0]]))
      for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
        clips.append(clip)
        firsts.append(a)
        counts.append(-(-(b - a) // stride))
    return cls(np.asarray(clips, np.int32), np.asarray(firsts, np.int64),
               np.asarray(counts, np.int64), stride)

  def __len__(self) -> int:
    return int(self._offsets[-1])

  def lookup(self, i: int) -> tuple[int, int]:
    """(clip position, start frame) of entry `i`."""
    if not 0 <= i < len(self):
      raise IndexError(f"window index {i} out of range [0, {len(self)})")
    run = int(np.searchsorted(self._offsets, i, side="right")) - 1
    return int(self.clip[run]), int(self.first[run] + (i - self._offsets[run]) * self.stride)

  def pairs(self) -> np.ndarray:
    """Every entry as an int64 [N, 2] array of (clip, start), in index order."""
    run = np.repeat(np.arange(len(self.count)), self.count)
    step = np.arange(len(self)) - self._offsets[run]
    return np.stack([self.clip[run].astype(np.int64), self.first[run] + step * self.stride], 1)


class IndexSource:
  """Random-access grain source over a `WindowIndex`, optionally padded to `length`.

  Entries past the index repeat its first window with `valid=False` (eval padding).
  """

  def __init__(self, index: WindowIndex, length: int | None = None):
    if len(index) == 0:
      raise ValueError("the index is empty")
    self.index = index
    self.length = len(index) if length is None else length
    if self.length < len(index):
      raise ValueError(f"length {self.length} is shorter than the index ({len(index)})")

  def __len__(self) -> int:
    return self.length

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    if not 0 <= i < self.length:
      raise IndexError(f"index {i} out of range [0, {self.length})")
    valid = i < len(self.index)
    clip, start = self.index.lookup(i if valid else 0)
    return {"index": np.int64(i), "clip": np.int32(clip), "start": np.int32(start),
            "valid": np.bool_(valid)}

  def __repr__(self) -> str:
    return f"IndexSource({len(self.index)} windows, length {self.length})"


class _LRU:
  """A small thread-safe LRU dict (grain reads elements from several threads)."""

  def __init__(self, size: int):
    self._size = size
    self._items: collections.OrderedDict[Any, Any] = collections.OrderedDict()
    self._lock = threading.Lock()

  def get(self, key: Any) -> Any:
    with self._lock:
      if key in self._items:
        self._items.move_to_end(key)
        return self._items[key]
    return None

  def put(self, key: Any, value: Any) -> None:
    with self._lock:
      self._items[key] = value
      self._items.move_to_end(key)
      while len(self._items) > self._size:
        self._items.popitem(last=False)


def mel_feature_name(config: mel_lib.MelConfig) -> str:
  """File stem of a mel config's precomputed feature ("mel_wav2lip", "mel_radio" or a hash)."""
  if config == mel_lib.WAV2LIP_MEL:
    return "mel_wav2lip"
  if config == mel_lib.RADIO_MEL:
    return "mel_radio"
  return "mel_" + hashlib.sha1(repr(dataclasses.astuple(config)).encode()).hexdigest()[:12]


def feature_path(root: str | os.PathLike, clip_id: str, config: mel_lib.MelConfig) -> pathlib.Path:
  """`<root>/features/<clip_id>/<mel_feature_name(config)>.npy`."""
  return pathlib.Path(root) / FEATURES_DIR / clip_id / f"{mel_feature_name(config)}.npy"


def latents_path(root: str | os.PathLike, name: str, clip_id: str) -> pathlib.Path:
  """`<root>/latents/<name>/<clip_id>.npy`: per-frame latents [T, ...] of one clip."""
  return pathlib.Path(root) / LATENTS_DIR / name / f"{clip_id}.npy"


def audio_feature_path(root: str | os.PathLike, clip_id: str, name: str) -> pathlib.Path:
  """`<root>/features/<clip_id>/<name>.npy`: a clip's cached audio features [T, A]."""
  return pathlib.Path(root) / FEATURES_DIR / clip_id / f"{name}.npy"


def audio_feature_info_path(root: str | os.PathLike, name: str) -> pathlib.Path:
  """`<root>/features/<name>.json`: what the cached features `name` are."""
  return pathlib.Path(root) / FEATURES_DIR / f"{name}.json"


def check_audio_features(root: str | os.PathLike, name: str,
                         clips: Sequence[dataset_lib.Clip]) -> dict[str, Any]:
  """The info of cached features `name` once every clip has its file of [T, A] float32.

  Raises:
    DatasetError: no such features, or a clip's file is missing or of another shape, naming
      the command that writes them.
  """
  info_path = audio_feature_info_path(root, name)
  command = (f"python -m experiments.precompute_audio_features --dataset={root} "
             "--frontend=wav2vec2 --weights=...")
  if not info_path.is_file():
    raise dataset_lib.DatasetError(root, f"no cached audio features {name!r} ({info_path} is "
                                   f"missing); write them with `{command}`")
  info = json.loads(info_path.read_text())
  command = info.get("command", command)
  for clip in clips:
    path = audio_feature_path(root, clip.id, name)
    if not path.is_file():
      raise dataset_lib.DatasetError(root, f"missing audio features {path}; finish them with "
                                     f"`{command}`", clip_id=clip.id)
    with _NPY_OPEN_LOCK:
      array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.shape != (clip.num_frames, info["dim"]) or array.dtype != np.float32:
      raise dataset_lib.DatasetError(
          root, f"audio features {path} have shape {array.shape} {array.dtype}; expected "
          f"[{clip.num_frames}, {info['dim']}] float32 (stale; rerun `{command} --overwrite`)",
          clip_id=clip.id)
  return info


def _save_atomic(path: pathlib.Path, array: np.ndarray) -> None:
  with atomic.output(path, prefix=f".{path.stem}.") as tmp, open(tmp, "wb") as f:
    np.save(f, array, allow_pickle=False)


def precompute_features(root: str | os.PathLike,
                        configs: Sequence[mel_lib.MelConfig] = (mel_lib.WAV2LIP_MEL,
                                                                 mel_lib.RADIO_MEL),
                        *, split: str | None = None, overwrite: bool = False) -> int:
  """Writes each clip's time-major mel [F, M] float32 for every config; returns files written.

  Existing files are kept unless `overwrite`. Clips whose audio is too short for one STFT
  frame get no file (no window of theirs is ever sampled) and a logged warning.
  """
  data = dataset_lib.Dataset(root)
  written = 0
  for clip in data.clips(split):
    for config in configs:
      path = feature_path(root, clip.id, config)
      if path.exists() and not overwrite:
        continue
      if clip.num_samples <= config.n_fft // 2:
        logging.warning("dataset %s: clip %r: %d audio samples, too short for a %s frame; "
                        "no feature written", root, clip.id, clip.num_samples,
                        mel_feature_name(config))
        continue
      _save_atomic(path, mel_lib.mel_spectrogram_time_major(np.asarray(clip.audio), config,
                                                            clip_id=clip.id))
      written += 1
  return written


def write_audio_features(root: str | os.PathLike, name: str,
                         features_of: Callable[[np.ndarray, int], np.ndarray],
                         info: dict[str, Any], *, clips: Sequence[dataset_lib.Clip] | None = None,
                         overwrite: bool = False,
                         progress: Callable[[Iterable[Any]], Iterable[Any]] = lambda x: x
                         ) -> tuple[list[str], list[str]]:
  """Writes cached audio features `name` of `clips` (default: all); returns (written, skipped).

  `features_of(audio [S], T)` gives a clip's [T, info["dim"]] float32 features. Clips with a
  file are skipped unless `overwrite` (so an interrupted run resumes); `info` (what the
  features are: weights, layer, alignment, dim, the command) is written first, and a run whose
  info differs from the existing one's stops unless `overwrite`.

  Raises:
    DatasetError: the features exist with other settings (naming them), or `features_of`
      returns another shape.
  """
  info_path = audio_feature_info_path(root, name)
  if info_path.is_file() and not overwrite:
    old = json.loads(info_path.read_text())
    changed = sorted(k for k in set(old) | set(info)
                     if k != "command" and old.get(k) != info.get(k))
    if changed:
      raise dataset_lib.DatasetError(
          root, f"cached audio features {name!r} were written with other settings ("
          + ", ".join(f"{k}: {old.get(k)!r} now {info.get(k)!r}" for k in changed)
          + "); pass overwrite (--overwrite) to replace them", file=str(info_path))
  info_path.parent.mkdir(parents=True, exist_ok=True)
  with atomic.output(info_path, prefix=f".{info_path.stem}.") as tmp:
    pathlib.Path(tmp).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
  clips = dataset_lib.Dataset(root).clips() if clips is None else clips
  written, skipped = [], []
  for clip in progress(clips):
    path = audio_feature_path(root, clip.id, name)
    if path.exists() and not overwrite:
      skipped.append(clip.id)
      continue
    features = np.asarray(features_of(np.asarray(clip.audio), clip.num_frames), np.float32)
    if features.shape != (clip.num_frames, info["dim"]):
      raise dataset_lib.DatasetError(root, f"audio features of shape {features.shape}, expected "
                                     f"[{clip.num_frames}, {info['dim']}]", clip_id=clip.id)
    _save_atomic(path, features)
    written.append(clip.id)
  return written, skipped


def warn_missing_features(root: str | os.PathLike, clips: Sequence[dataset_lib.Clip],
                          config: mel_lib.MelConfig) -> int:
  """Logs a warning when clips lack precomputed `config` mels; returns how many do."""
  missing = sum(not feature_path(root, c.id, config).exists() for c in clips)
  if missing:
    logging.warning("dataset %s: %d of %d clips have no precomputed %s; computing full-clip mels "
                    "on the fly (tens of times slower); data.synthetic and data.ingest write them "
                    "(rerun either on the dataset) or run "
                    "talking_heads.pipelines.base.precompute_features(root) once", root, missing,
                    len(clips), mel_feature_name(config))
  return missing


class ClipReader:
  """Cached reads of one split's clips; picklable, with caches private to each process.

  Arrays are memory-mapped (`Clip.load` checks dtype and shape) and the maps are kept in an
  LRU cache; mels come from precomputed feature files or are computed and cached (see the
  module docstring).
  """

  def __init__(self, root: str | os.PathLike, clip_ids: Sequence[str], *,
               array_cache_size: int = 512, mel_cache_size: int = 8):
    self.root = pathlib.Path(root)
    self.clip_ids = tuple(clip_ids)
    self._sizes = (array_cache_size, mel_cache_size)
    self._open()

  def _open(self) -> None:
    self._dataset: dataset_lib.Dataset | None = None
    self._arrays = _LRU(self._sizes[0])
    self._mels = _LRU(self._sizes[1])

  def __getstate__(self) -> dict[str, Any]:
    return {"root": self.root, "clip_ids": self.clip_ids, "_sizes": self._sizes}

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.__dict__.update(state)
    self._open()

  @property
  def dataset(self) -> dataset_lib.Dataset:
    if self._dataset is None:
      self._dataset = dataset_lib.Dataset(self.root)
    return self._dataset

  def clip(self, i: int) -> dataset_lib.Clip:
    return self.dataset.clip(self.clip_ids[i])

  def array(self, i: int, name: str) -> np.ndarray:
    """Memory-mapped array `name` (a dataset array name) of clip `i`."""
    key = (i, name)
    array = self._arrays.get(key)
    if array is None:
      with _NPY_OPEN_LOCK:
        array = self.clip(i).load(name)
      self._arrays.put(key, array)
    return array

  def mfcc(self, i: int, config: mfcc_lib.MfccConfig) -> np.ndarray:
    """syncnet_python's MFCC [C, F] float32 of clip `i`'s whole audio (int16 as ffmpeg writes it)."""
    key = (i, config)
    cached = self._mels.get(key)
    if cached is None:
      cached = mfcc_lib.mfcc(audio_io.to_int16(np.asarray(self.array(i, "audio"))), config,
                             clip_id=self.clip_ids[i]).astype(np.float32)
      self._mels.put(key, cached)
    return cached

  def mel(self, i: int, config: mel_lib.MelConfig) -> np.ndarray:
    """Time-major mel [F, M] float32 of clip `i`'s whole audio."""
    key = (i, config)
    cached = self._arrays.get(key)
    if cached is None:
      cached = self._mels.get(key)
    if cached is not None:
      return cached
    clip = self.clip(i)
    path = feature_path(self.root, clip.id, config)
    if path.exists():
      with _NPY_OPEN_LOCK:
        mel = np.load(path, mmap_mode="r", allow_pickle=False)
      expected = (config.num_frames(clip.num_samples), config.n_mels)
      if mel.shape != expected or mel.dtype != np.float32:
        raise dataset_lib.DatasetError(
            self.root, f"feature has shape {mel.shape} {mel.dtype}, expected {expected} float32 "
            "(stale or corrupt; rerun precompute_features(..., overwrite=True))",
            clip_id=clip.id, file=str(path.relative_to(self.root)))
      self._arrays.put(key, mel)
      return mel
    mel = mel_lib.mel_spectrogram_time_major(np.asarray(self.array(i, "audio")), config,
                                             clip_id=clip.id)
    self._mels.put(key, mel)
    return mel

  def audio_features(self, i: int, name: str) -> np.ndarray:
    """Memory-mapped cached audio features [T, A] of clip `i` (see `audio_feature_path`)."""
    key = (i, "audio_features", name)
    array = self._arrays.get(key)
    if array is None:
      with _NPY_OPEN_LOCK:
        array = np.load(audio_feature_path(self.root, self.clip_ids[i], name), mmap_mode="r",
                        allow_pickle=False)
      self._arrays.put(key, array)
    return array

  def latents(self, i: int, name: str) -> np.ndarray:
    """Memory-mapped latents [T, ...] of clip `i` (see `latents_path`)."""
    key = (i, "latents", name)
    array = self._arrays.get(key)
    if array is None:
      with _NPY_OPEN_LOCK:
        array = np.load(latents_path(self.root, name, self.clip_ids[i]), mmap_mode="r",
                        allow_pickle=False)
      self._arrays.put(key, array)
    return array


def open_split(root: str | os.PathLike, split: str | None,
               identities: Sequence[str] | None = None
               ) -> tuple[dataset_lib.Dataset, list[dataset_lib.Clip]]:
  """The dataset and the clips of `split` (all if None), optionally only those of `identities`.

  Raises:
    ValueError: no clip in the split (naming the splits), or none of the given identities
      (naming the split's identities).
  """
  data = dataset_lib.Dataset(root)
  clips = data.clips(split)
  if not clips:
    raise ValueError(f"dataset {root}: split {split!r} has no clips (splits: {data.splits()})")
  if identities is not None:
    if isinstance(identities, str):
      raise ValueError(f"identities must be a sequence of names, got the string {identities!r}")
    wanted = set(identities)
    chosen = [c for c in clips if c.identity in wanted]
    if not chosen:
      available = sorted({c.identity for c in clips})
      raise ValueError(f"dataset {root}: split {split!r} has no clips of identities "
                       f"{sorted(wanted)} (its identities: {available})")
    clips = chosen
  return data, clips


def build_index(root: str | os.PathLike, clips: Sequence[dataset_lib.Clip],
                valid_starts: Callable[[dataset_lib.Clip], tuple[np.ndarray, str]],
                stride: int = 1, what: str = "window") -> WindowIndex:
  """Index of every clip's valid starts; clips with none are skipped with a logged warning.

  Args:
    root: the dataset (for messages).
    clips: the split's clips; positions in this list become the "clip" field.
    valid_starts: clip -> (bool mask over candidate starts 0..len-1, reason used when the
      mask is all False).
    stride: keep every `stride`-th start of each run (eval variants).
    what: what a start begins, for messages ("frame", "5-frame window", ...).

  Raises:
    ValueError: no clip has a valid start.
  """
  masks, skipped = [], []
  for position, clip in enumerate(clips):
    mask, reason = valid_starts(clip)
    if mask.any():
      masks.append((position, mask))
    else:
      skipped.append((clip.id, reason))
  for clip_id, reason in skipped[:_MAX_LOGGED_SKIPS]:
    logging.warning("dataset %s: skipping clip %r: no valid %s (%s)", root, clip_id, what, reason)
  if len(skipped) > _MAX_LOGGED_SKIPS:
    logging.warning("dataset %s: skipped %d more clips with no valid %s", root,
                    len(skipped) - _MAX_LOGGED_SKIPS, what)
  index = WindowIndex.from_masks(masks, stride)
  if len(index) == 0:
    raise ValueError(f"dataset {root}: none of {len(clips)} clips has a valid {what}; first "
                     f"problem: clip {skipped[0][0]!r}: {skipped[0][1]}")
  return index


def check_latents(root: str | os.PathLike, name: str,
                  clips: Sequence[dataset_lib.Clip]) -> tuple[int, ...]:
  """Checks every clip's latents file (exists, [T, ...] numeric, one per-frame shape).

  Returns:
    the per-frame latent shape.
  """
  frame_shape = None
  for clip in clips:
    path = latents_path(root, name, clip.id)
    if not path.is_file():
      raise dataset_lib.DatasetError(root, f"missing latents {name!r}: {path}", clip_id=clip.id)
    try:
      array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
      raise dataset_lib.DatasetError(root, f"unreadable latents file {path}: {e}",
                                     clip_id=clip.id) from None
    if array.ndim < 1 or array.shape[0] != clip.num_frames or array.dtype.kind not in "fiu":
      raise dataset_lib.DatasetError(
          root, f"latents {path} have shape {array.shape} {array.dtype}; expected a numeric "
          f"[T={clip.num_frames}, ...] array", clip_id=clip.id)
    if frame_shape is None:
      frame_shape = array.shape[1:]
    elif array.shape[1:] != frame_shape:
      raise dataset_lib.DatasetError(
          root, f"latents {path} have per-frame shape {array.shape[1:]}, other clips have "
          f"{frame_shape}", clip_id=clip.id)
  return tuple(frame_shape)


def frame_index(root: str | os.PathLike, split: str | None, stride: int,
                identities: Sequence[str] | None = None) -> tuple[WindowIndex, ClipReader]:
  """Every `stride`-th (clip, frame) pair of a split (of `identities` if given), and a reader."""
  _, clips = open_split(root, split, identities)
  index = build_index(root, clips, lambda c: (np.ones(c.num_frames, bool), "no frames"),
                      stride=stride, what="frame")
  return index, ClipReader(root, [c.id for c in clips])


class FixedSeedMap(grain.transforms.Map):
  """Applies a sampler with a generator seeded by (seed, the element's global index).

  The eval variants' fixed sampling: a sample is the same on every run and for any sharding.
  """

  def __init__(self, sampler: grain.transforms.RandomMap, seed: int):
    self.sampler = sampler
    self.seed = seed

  def map(self, element: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng((self.seed, int(element["index"])))
    out = self.sampler.random_map(element, rng)
    out["valid"] = element["valid"]
    return out


def _check_iterator_args(batch_size: int, shard_index: int, shard_count: int, seed: int,
                         num_workers: int) -> None:
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if shard_count < 1 or not 0 <= shard_index < shard_count:
    raise ValueError(f"need 0 <= shard_index < shard_count, got {shard_index}, {shard_count}")
  if seed < 0:
    raise ValueError(f"seed must be a non-negative integer, got {seed}")
  if num_workers < 0:
    raise ValueError(f"num_workers must be >= 0, got {num_workers}")


def stream_seed(seed: int, shard_index: int) -> int:
  """Seed of a shard's random_map: shards see the same positions, not the same randomness."""
  return int(np.random.SeedSequence((seed, shard_index)).generate_state(1, np.uint32)[0])


def build_iterator(index: WindowIndex, sampler: grain.transforms.RandomMap, *, batch_size: int,
                   shard_index: int, shard_count: int, seed: int, num_workers: int,
                   train: bool, read_threads: int = 2, prefetch: int = 4,
                   worker_buffer_size: int = 2) -> grain.DatasetIterator:
  """The grain iterator of the module docstring (train or eval variant).

  Args:
    index: the split's valid windows.
    sampler: element (index, clip, start, valid) + generator -> sample dict.
    batch_size: per-process batch size.
    shard_index, shard_count: this process's shard (jax.process_index(), jax.process_count()).
    seed: shuffle and sampling seed.
    num_workers: worker processes (0: read in this process).
    train: shuffled, repeated, randomly sampled; else the eval variant (one padded pass).
    read_threads: grain read threads per process.
    prefetch: grain prefetch buffer (elements) per process.
    worker_buffer_size: batches each worker may hold ready.

  Returns:
    A checkpointable `grain.DatasetIterator` of batched numpy dicts.
  """
  _check_iterator_args(batch_size, shard_index, shard_count, seed, num_workers)
  if train:
    ds = grain.MapDataset.source(IndexSource(index))[shard_index::shard_count]
    if len(ds) == 0:
      raise ValueError(f"shard {shard_index} of {shard_count} is empty ({len(index)} windows)")
    ds = ds.shuffle(seed=seed).repeat().random_map(sampler, seed=stream_seed(seed, shard_index))
  else:
    group = shard_count * batch_size
    padded = -(-len(index) // group) * group
    ds = grain.MapDataset.source(IndexSource(index, padded))[shard_index::shard_count]
    ds = ds.map(FixedSeedMap(sampler, seed))
  ds = ds.batch(batch_size, drop_remainder=True)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads,
                                            prefetch_buffer_size=prefetch))
  if num_workers:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers,
                                                     per_worker_buffer_size=worker_buffer_size))
  return iter(it)


def resize_frames(frames: np.ndarray, size: int | None) -> np.ndarray:
  """uint8 [..., S, S, 3] frames resized to [..., size, size, 3] (area when shrinking)."""
  if size is None or (frames.shape[-3] == size and frames.shape[-2] == size):
    return np.ascontiguousarray(frames)
  shrink = size < frames.shape[-2]
  interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
  flat = frames.reshape((-1,) + frames.shape[-3:])
  out = np.stack([cv2.resize(np.ascontiguousarray(f), (size, size), interpolation=interpolation)
                  for f in flat])
  return out.reshape(frames.shape[:-3] + (size, size, 3))


def rescale_pixels(points: np.ndarray, scale: float) -> np.ndarray:
  """Pixel coordinates after resizing an image by `scale` (pixel centres on integers)."""
  if scale == 1:
    return np.array(points)  # exactly, without float round-off
  return (points + 0.5) * scale - 0.5


def rescale_intrinsics(k: np.ndarray, scale: float) -> np.ndarray:
  """Camera intrinsics [3, 3] after resizing the image by `scale` (pixel centres on integers)."""
  out = np.array(k, np.float32)
  out[:2, :2] *= scale
  out[:2, 2] = rescale_pixels(out[:2, 2], scale)
  return out


def mask_lower_half(frames: np.ndarray) -> np.ndarray:
  """Copy of [..., H, W, C] frames with rows H // 2 .. H - 1 zeroed (Wav2Lip's masked input)."""
  out = np.array(frames)
  out[..., out.shape[-3] // 2:, :, :] = 0
  return out

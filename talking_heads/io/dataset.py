"""The talking-head dataset format (format_version 1): a directory of memory-mappable clips.

Layout::

  root/
    manifest.json                  dataset fields and one record per clip (the source of truth)
    clips/<clip id>/
      frames.npy      uint8   [T, S, S, 3]   RGB frames at `fps`
      audio.npy       float32 [N]            mono audio in [-1, 1] at `sample_rate`
      landmarks.npy   float32 [T, 68, 2]     iBUG-68 (x, y) in pixels
      alpha.npy       float32 [A]            identity parameters of the face model
      expression.npy  float32 [T, E]         expression parameters, named by `expression_names`
      pose.npy        float32 [T, 6]         yaw, pitch, roll, tx, ty, tz
      K.npy           float32 [3, 3]         camera intrinsics
      head_mask.npy   uint8   [T, S, S]      optional: 1 on the head (face, jaw, ears, hair; not
                                             the neck), 0 elsewhere; the synthetic corpus writes
                                             it exactly, ingested video has none (readers fall
                                             back to `pipelines.heads`' landmark approximation)
      clip.json       the clip's record, so a writer can recover clips finished before a crash
      preview.mp4     optional H.264 + AAC preview

T frames, N audio samples, S image size, E expression parameters, A identity parameters.
Optional arrays (`OPTIONAL_ARRAY_NAMES`) may be absent from any clip, so corpora written before
they existed stay readable; `Clip.has(name)` says whether a clip has one.
Audio and frames are aligned at sample_rate / fps samples per frame (640 at 16 kHz / 25 fps);
a clip is valid when |N - 640 T| < 640.

`DatasetWriter` writes each clip into a temporary directory and renames it into place, so a clip
directory under its final name is always complete; the manifest is replaced atomically. `Dataset`
checks the manifest on load and each array (file, dtype, shape) when it is first mapped;
`Dataset.validate` checks every clip up front. Problems raise `DatasetError` naming the dataset,
clip, file and what is wrong. One writer per dataset at a time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import shutil
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from talking_heads.io import atomic
from talking_heads.io import video as video_io

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
CLIPS_DIR = "clips"
CLIP_RECORD_FILE = "clip.json"
PREVIEW_FILE = "preview.mp4"
NUM_LANDMARKS = 68
POSE_NAMES = ("yaw", "pitch", "roll", "tx", "ty", "tz")
STANDARD_SPLITS = ("train", "val", "test", "heldout_identity", "heldout_voice")
ARRAY_NAMES = ("frames", "audio", "landmarks", "alpha", "expression", "pose", "K")
OPTIONAL_ARRAY_NAMES = ("head_mask",)

_TMP_PREFIX = ".tmp-"
_CLIP_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MANIFEST_KEYS = ("format_version", "fps", "sample_rate", "image_size", "expression_names",
                  "num_identity_params", "clips", "identities", "provenance", "generator")
_ARRAY_LEGEND = {
    "frames": "[T, S, S, 3]", "audio": "[N]", "landmarks": "[T, 68, 2]", "alpha": "[A]",
    "expression": "[T, E]", "pose": "[T, 6]", "K": "[3, 3]", "head_mask": "[T, S, S]"}


def parse_identities(value: Any) -> tuple[str, ...]:
  """'id01,id02' or a sequence of names -> ('id01', 'id02'); empty names dropped."""
  names = value.split(",") if isinstance(value, str) else list(value or ())
  return tuple(n.strip() for n in names if n and n.strip())


class DatasetError(ValueError):
  """A dataset, clip or array breaks the format; the message says where and what."""

  def __init__(self, root: str | os.PathLike, message: str, clip_id: str | None = None,
               file: str | None = None):
    self.root = os.fspath(root)
    self.clip_id = clip_id
    self.file = file
    where = [f"dataset {self.root}"]
    if clip_id is not None:
      where.append(f"clip {clip_id!r}")
    if file is not None:
      where.append(file)
    super().__init__(f"{': '.join(where)}: {message}")


def _is_int(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _nonempty_str(value: Any) -> bool:
  return isinstance(value, str) and bool(value.strip())


@dataclasses.dataclass(frozen=True)
class ClipRecord:
  """One clip's entry in the manifest.

  Attributes:
    id: unique clip name; letters, digits, '.', '_' and '-', not starting with '.'.
    identity: the face's identity (a key of the manifest's `identities`).
    voice: the speaker's voice (same as identity for real video; differs for dubbed synthetic
      clips).
    language: language of the speech, e.g. "en".
    split: "train", "val", "test", "heldout_identity", "heldout_voice" or any other name.
    num_frames: T.
    num_samples: N.
    path: the clip directory, relative to the dataset root.
    text: the transcript, if known.
    source: where the clip came from (a video file, a generator seed), if recorded.
    phonemes: the speech's phonemes as [symbol, start_s, end_s] in time order, if known (the
      synthetic corpus records espeak-ng's timings; probes of audio features read them).
  """
  id: str
  identity: str
  voice: str
  language: str
  split: str
  num_frames: int
  num_samples: int
  path: str
  text: str | None = None
  source: str | None = None
  phonemes: list[list[Any]] | None = None

  def __post_init__(self):
    if not isinstance(self.id, str) or not _CLIP_ID_RE.match(self.id):
      raise ValueError(f"id {self.id!r} is not a valid clip id (letters, digits, '.', '_', '-', "
                       "not starting with '.')")
    for name in ("identity", "voice", "language", "split"):
      if not _nonempty_str(getattr(self, name)):
        raise ValueError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
    # Plain ints only: the record goes to JSON as is.
    if not _is_int(self.num_frames) or isinstance(self.num_frames, np.integer) or (
        self.num_frames < 1):
      raise ValueError(f"num_frames must be a positive integer, got {self.num_frames!r}")
    if not _is_int(self.num_samples) or isinstance(self.num_samples, np.integer) or (
        self.num_samples < 0):
      raise ValueError(f"num_samples must be a non-negative integer, got {self.num_samples!r}")
    path = pathlib.PurePosixPath(self.path) if isinstance(self.path, str) else None
    if path is None or path.is_absolute() or ".." in path.parts or not path.parts:
      raise ValueError(f"path must be a relative directory inside the dataset, got {self.path!r}")
    for name in ("text", "source"):
      if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
        raise ValueError(f"{name} must be a string or absent, got {getattr(self, name)!r}")
    if self.phonemes is not None:
      _check_phonemes(self.phonemes)

  @classmethod
  def from_dict(cls, entry: Mapping[str, Any]) -> ClipRecord:
    """Parses a manifest entry; ValueError on missing, unknown or ill-typed fields."""
    if not isinstance(entry, Mapping):
      raise ValueError(f"a clip entry must be a JSON object, got {type(entry).__name__}")
    fields = {f.name for f in dataclasses.fields(cls)}
    required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
    if missing := sorted(required - entry.keys()):
      raise ValueError(f"missing field(s) {missing}")
    if unknown := sorted(entry.keys() - fields):
      raise ValueError(f"unknown field(s) {unknown}")
    return cls(**entry)

  def to_dict(self) -> dict[str, Any]:
    """The manifest entry; optional fields that are None are left out."""
    return {k: v for k, v in dataclasses.asdict(self).items()
            if v is not None or k not in ("text", "source", "phonemes")}


def _check_phonemes(phonemes: Any) -> None:
  if not isinstance(phonemes, list):
    raise ValueError(f"phonemes must be a list of [symbol, start_s, end_s], got {phonemes!r}")
  previous_end = 0.0
  for i, entry in enumerate(phonemes):
    if not (isinstance(entry, list) and len(entry) == 3 and _nonempty_str(entry[0])
            and all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in entry[1:])):
      raise ValueError(f"phoneme {i} must be [symbol, start_s, end_s], got {entry!r}")
    if not previous_end - 1e-6 <= entry[1] <= entry[2]:
      raise ValueError(f"phoneme {i} {entry!r} is out of time order (previous ends at "
                       f"{previous_end} s)")
    previous_end = entry[2]


@dataclasses.dataclass(frozen=True)
class _Geometry:
  """Dataset-wide fields that fix the clips' array shapes and alignment."""
  fps: int
  sample_rate: int
  image_size: int
  num_expression: int
  num_identity_params: int

  @property
  def samples_per_frame(self) -> float:
    return self.sample_rate / self.fps

  def alignment_problem(self, num_frames: int, num_samples: int) -> str | None:
    spf = self.samples_per_frame
    if abs(num_samples - spf * num_frames) < spf:
      return None
    return (f"audio has {num_samples} samples for {num_frames} frames; expected "
            f"{spf * num_frames:g} +- {spf:g} ({spf:g} samples per frame at {self.fps} fps and "
            f"{self.sample_rate} Hz)")

  def array_specs(self, num_frames: int, num_samples: int) -> dict[str, tuple[tuple, np.dtype]]:
    t, s = num_frames, self.image_size
    f32 = np.dtype(np.float32)
    return {
        "frames": ((t, s, s, 3), np.dtype(np.uint8)),
        "audio": ((num_samples,), f32),
        "landmarks": ((t, NUM_LANDMARKS, 2), f32),
        "alpha": ((self.num_identity_params,), f32),
        "expression": ((t, self.num_expression), f32),
        "pose": ((t, len(POSE_NAMES)), f32),
        "K": ((3, 3), f32),
        "head_mask": ((t, s, s), np.dtype(np.uint8)),
    }

  def describe(self, num_frames: int, num_samples: int) -> str:
    return (f"T={num_frames}, N={num_samples}, S={self.image_size}, E={self.num_expression}, "
            f"A={self.num_identity_params}")


def _array_problem(name: str, shape: tuple, dtype: np.dtype, expected_shape: tuple,
                   expected_dtype: np.dtype, legend: str) -> str | None:
  if dtype != expected_dtype:
    return f"dtype {dtype}, expected {expected_dtype}"
  if tuple(shape) != expected_shape:
    return f"shape {tuple(shape)}, expected {expected_shape} = {_ARRAY_LEGEND[name]} with {legend}"
  return None


def _value_problem(name: str, array: np.ndarray) -> str | None:
  """Content checks for `validate(full=True)`; frames (uint8) cannot be out of range."""
  if name == "frames":
    return None
  if name == "head_mask":
    return None if np.all(array <= 1) else "values other than 0 and 1"
  if not np.all(np.isfinite(array)):
    return "contains NaN or infinite values"
  if name == "audio" and array.size and np.max(np.abs(array)) > 1.0:
    return f"samples outside [-1, 1] (peak {float(np.max(np.abs(array))):.4g})"
  return None


class Clip:
  """One clip of a `Dataset`: its record and lazily memory-mapped arrays.

  Each array attribute maps its file afresh (``np.load(mmap_mode="r")``, read-only) and checks
  dtype and shape against the manifest; hold the returned array to reuse the mapping. Clips
  hold no open files, so they pickle cheaply (e.g. into grain workers).
  """

  def __init__(self, root: pathlib.Path, record: ClipRecord, geometry: _Geometry):
    self._root = root
    self.record = record
    self._geometry = geometry

  def __repr__(self) -> str:
    return f"Clip({self.record.id!r}, split={self.record.split!r}, T={self.record.num_frames})"

  @property
  def id(self) -> str:
    return self.record.id

  @property
  def split(self) -> str:
    return self.record.split

  @property
  def identity(self) -> str:
    return self.record.identity

  @property
  def num_frames(self) -> int:
    return self.record.num_frames

  @property
  def num_samples(self) -> int:
    return self.record.num_samples

  @property
  def directory(self) -> pathlib.Path:
    return self._root / self.record.path

  @property
  def preview_path(self) -> pathlib.Path | None:
    path = self.directory / PREVIEW_FILE
    return path if path.is_file() else None

  def _error(self, message: str, file: str | None = None) -> DatasetError:
    return DatasetError(self._root, message, clip_id=self.record.id, file=file)

  def load(self, name: str) -> np.ndarray:
    """Memory-maps array `name` (one of ARRAY_NAMES or OPTIONAL_ARRAY_NAMES) read-only, checking
    dtype and shape."""
    if name not in ARRAY_NAMES + OPTIONAL_ARRAY_NAMES:
      raise ValueError(f"unknown array {name!r}; expected one of "
                       f"{ARRAY_NAMES + OPTIONAL_ARRAY_NAMES}")
    file = f"{name}.npy"
    path = self.directory / file
    if not path.is_file():
      raise self._error(f"missing file {path}", file)
    try:
      array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
      raise self._error(f"not a readable .npy file (truncated or corrupt?): {e}", file) from None
    specs = self._geometry.array_specs(self.num_frames, self.num_samples)
    expected_shape, expected_dtype = specs[name]
    legend = self._geometry.describe(self.num_frames, self.num_samples)
    if problem := _array_problem(name, array.shape, array.dtype, expected_shape,
                                 expected_dtype, legend):
      raise self._error(problem, file)
    return array

  @property
  def frames(self) -> np.ndarray:
    """uint8 [T, S, S, 3] RGB frames."""
    return self.load("frames")

  @property
  def audio(self) -> np.ndarray:
    """float32 [N] mono audio in [-1, 1]."""
    return self.load("audio")

  @property
  def landmarks(self) -> np.ndarray:
    """float32 [T, 68, 2] (x, y) pixels."""
    return self.load("landmarks")

  @property
  def alpha(self) -> np.ndarray:
    """float32 [A] identity parameters."""
    return self.load("alpha")

  @property
  def expression(self) -> np.ndarray:
    """float32 [T, E] expression parameters."""
    return self.load("expression")

  @property
  def pose(self) -> np.ndarray:
    """float32 [T, 6] yaw, pitch, roll, tx, ty, tz."""
    return self.load("pose")

  @property
  def K(self) -> np.ndarray:  # pylint: disable=invalid-name
    """float32 [3, 3] camera intrinsics."""
    return self.load("K")

  def has(self, name: str) -> bool:
    """Whether the clip has array `name` (always true of ARRAY_NAMES in a valid clip)."""
    return (self.directory / f"{name}.npy").is_file()

  @property
  def head_mask(self) -> np.ndarray:
    """uint8 [T, S, S] head mask (optional: check `has("head_mask")`)."""
    return self.load("head_mask")

  def validate(self, check_values: bool = False) -> None:
    """Checks every array's file, dtype and shape (optional ones when present); with
    `check_values`, also reads the values (finite floats, audio in [-1, 1], masks 0 or 1).
    Raises DatasetError on the first problem."""
    for name in ARRAY_NAMES + tuple(n for n in OPTIONAL_ARRAY_NAMES if self.has(n)):
      array = self.load(name)
      if check_values and (problem := _value_problem(name, array)):
        raise self._error(problem, f"{name}.npy")


def _read_json(path: pathlib.Path, root: pathlib.Path, clip_id: str | None = None) -> Any:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    raise DatasetError(root, f"missing {path.name} (not a dataset, or never written)",
                       clip_id=clip_id, file=path.name) from None
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise DatasetError(root, f"invalid JSON: {e}", clip_id=clip_id, file=path.name) from None


def _parse_manifest(root: pathlib.Path) -> tuple[dict[str, Any], list[ClipRecord]]:
  """Reads and checks manifest.json; returns its fields (without clips) and the clip records."""
  manifest = _read_json(root / MANIFEST_FILE, root)

  def error(message: str) -> DatasetError:
    return DatasetError(root, message, file=MANIFEST_FILE)

  if not isinstance(manifest, dict):
    raise error(f"must be a JSON object, got {type(manifest).__name__}")
  version = manifest.get("format_version")
  if version != FORMAT_VERSION:
    raise error(f"unsupported format_version {version!r}; this library reads {FORMAT_VERSION}")
  if missing := [k for k in _MANIFEST_KEYS if k not in manifest]:
    raise error(f"missing field(s) {missing}")
  if unknown := sorted(manifest.keys() - set(_MANIFEST_KEYS)):
    raise error(f"unknown field(s) {unknown}")
  for key in ("fps", "sample_rate", "image_size"):
    if not _is_int(manifest[key]) or manifest[key] <= 0:
      raise error(f"{key} must be a positive integer, got {manifest[key]!r}")
  if not _is_int(manifest["num_identity_params"]) or manifest["num_identity_params"] < 0:
    raise error(f"num_identity_params must be a non-negative integer, "
                f"got {manifest['num_identity_params']!r}")
  names = manifest["expression_names"]
  if (not isinstance(names, list) or not all(_nonempty_str(n) for n in names)
      or len(set(names)) != len(names)):
    raise error(f"expression_names must be a list of distinct non-empty strings, got {names!r}")
  for key in ("identities", "provenance", "generator"):
    if not isinstance(manifest[key], dict):
      raise error(f"{key} must be a JSON object, got {type(manifest[key]).__name__}")
  if not isinstance(manifest["clips"], list):
    raise error(f"clips must be a list, got {type(manifest['clips']).__name__}")
  geometry = _geometry(manifest)
  records, paths = [], {}
  ids = set()
  for i, entry in enumerate(manifest["clips"]):
    clip_id = entry.get("id") if isinstance(entry, dict) else None
    label = f"clips[{i}]" + (f" (id {clip_id!r})" if isinstance(clip_id, str) else "")
    try:
      record = ClipRecord.from_dict(entry)
    except (ValueError, TypeError) as e:
      raise error(f"{label}: {e}") from None
    if record.id in ids:
      raise error(f"{label}: duplicate clip id")
    if record.path in paths:
      raise error(f"{label}: path {record.path!r} also used by clip {paths[record.path]!r}")
    if record.identity not in manifest["identities"]:
      raise error(f"{label}: identity {record.identity!r} is not listed in identities")
    if problem := geometry.alignment_problem(record.num_frames, record.num_samples):
      raise error(f"{label}: {problem}")
    ids.add(record.id)
    paths[record.path] = record.id
    records.append(record)
  fields = {k: v for k, v in manifest.items() if k != "clips"}
  return fields, records


def _geometry(fields: Mapping[str, Any]) -> _Geometry:
  return _Geometry(fps=int(fields["fps"]), sample_rate=int(fields["sample_rate"]),
                   image_size=int(fields["image_size"]),
                   num_expression=len(fields["expression_names"]),
                   num_identity_params=int(fields["num_identity_params"]))


class Dataset:
  """A dataset directory opened for reading.

  The manifest is checked on open; arrays are checked when first mapped, or all at once by
  `validate`. Iterating yields `Clip`s in manifest order.
  """

  def __init__(self, root: str | os.PathLike):
    self.root = pathlib.Path(root)
    if not self.root.is_dir():
      raise DatasetError(self.root, "is not a directory")
    fields, records = _parse_manifest(self.root)
    self._fields = fields
    self._geometry = _geometry(fields)
    self._clips = {r.id: Clip(self.root, r, self._geometry) for r in records}

  def __repr__(self) -> str:
    return f"Dataset({os.fspath(self.root)!r}, {len(self)} clips, splits={self.splits()})"

  @property
  def format_version(self) -> int:
    return self._fields["format_version"]

  @property
  def fps(self) -> int:
    return self._fields["fps"]

  @property
  def sample_rate(self) -> int:
    return self._fields["sample_rate"]

  @property
  def samples_per_frame(self) -> float:
    """Audio samples per video frame (640 at 16 kHz / 25 fps)."""
    return self._geometry.samples_per_frame

  @property
  def image_size(self) -> int:
    return self._fields["image_size"]

  @property
  def expression_names(self) -> tuple[str, ...]:
    return tuple(self._fields["expression_names"])

  @property
  def num_identity_params(self) -> int:
    return self._fields["num_identity_params"]

  @property
  def identities(self) -> dict[str, Any]:
    return dict(self._fields["identities"])

  @property
  def provenance(self) -> dict[str, Any]:
    return dict(self._fields["provenance"])

  @property
  def generator(self) -> dict[str, Any]:
    return dict(self._fields["generator"])

  def __len__(self) -> int:
    return len(self._clips)

  def __iter__(self) -> Iterator[Clip]:
    return iter(self._clips.values())

  def __contains__(self, clip_id: object) -> bool:
    return clip_id in self._clips

  def clips(self, split: str | None = None) -> list[Clip]:
    """The clips of `split` (all clips if None), in manifest order."""
    return [c for c in self._clips.values() if split is None or c.split == split]

  def identity_clips(self, split: str, identity: str) -> list[Clip]:
    """The clips of `identity` in `split`, in manifest order; ValueError when there are none."""
    clips = [c for c in self.clips(split) if c.identity == identity]
    if not clips:
      raise ValueError(f"dataset {self.root}: no clips of identity {identity!r} in split {split!r}")
    return clips

  def clip(self, clip_id: str) -> Clip:
    try:
      return self._clips[clip_id]
    except KeyError:
      raise KeyError(f"dataset {self.root}: no clip {clip_id!r}") from None

  def splits(self) -> list[str]:
    """Names of the splits that have clips, sorted."""
    return sorted({c.split for c in self._clips.values()})

  def validate(self, full: bool = True) -> None:
    """Checks every clip's arrays: files, dtypes and shapes; with `full`, also every value
    (finite floats, audio in [-1, 1]), which reads the whole dataset. Raises DatasetError."""
    for clip in self._clips.values():
      clip.validate(check_values=full)


def _fsync_dir(path: pathlib.Path) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _json_object(value: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
  """`value` as it will read back from the manifest (tuples become lists, keys strings)."""
  try:
    return json.loads(json.dumps({} if value is None else dict(value)))
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name} must be JSON-serialisable (plain str/int/float/list/dict): {e}"
                     ) from None


class DatasetWriter:
  """Writes (or resumes writing) a dataset directory.

  Opening a root that already holds a dataset appends to it: its fields (generator included)
  must match the writer's, a new `provenance` is merged into the stored one, clips finished
  before an interrupted run are recovered from their `clip.json`, and half-written clip
  directories are deleted. The manifest is written on open, by `flush()` and
  by `close()` (also on leaving a `with` block, even on error, so finished clips are kept).

  Typical resumable loop::

    with DatasetWriter(root, 25, 16000, 256, names, 80, provenance, generator) as writer:
      for spec in clip_specs:
        if not writer.has_clip(spec.id):
          writer.add_clip(spec.id, identity=..., frames=..., ...)
  """

  def __init__(self, root: str | os.PathLike, fps: int, sample_rate: int, image_size: int,
               expression_names: Sequence[str], num_identity_params: int,
               provenance: Mapping[str, Any] | None = None,
               generator: Mapping[str, Any] | None = None):
    self.root = pathlib.Path(root)
    self._fields = {
        "format_version": FORMAT_VERSION,
        "fps": fps,
        "sample_rate": sample_rate,
        "image_size": image_size,
        "expression_names": list(expression_names),
        "num_identity_params": num_identity_params,
        "identities": {},
        "provenance": _json_object(provenance, "provenance"),
        "generator": _json_object(generator, "generator"),
    }
    for key in ("fps", "sample_rate", "image_size"):
      if not _is_int(self._fields[key]) or self._fields[key] <= 0:
        raise ValueError(f"{key} must be a positive integer, got {self._fields[key]!r}")
      self._fields[key] = int(self._fields[key])
    if not _is_int(num_identity_params) or num_identity_params < 0:
      raise ValueError(f"num_identity_params must be a non-negative integer, "
                       f"got {num_identity_params!r}")
    self._fields["num_identity_params"] = int(num_identity_params)
    names = self._fields["expression_names"]
    if not all(_nonempty_str(n) for n in names) or len(set(names)) != len(names):
      raise ValueError(f"expression_names must be distinct non-empty strings, got {names!r}")
    self._geometry = _geometry(self._fields)
    self._records: dict[str, ClipRecord] = {}
    self._closed = False
    self._clips_dir = self.root / CLIPS_DIR
    self._clips_dir.mkdir(parents=True, exist_ok=True)
    if (self.root / MANIFEST_FILE).exists():
      self._resume_manifest()
    self._recover_clip_dirs()
    self.flush()

  def _resume_manifest(self) -> None:
    fields, records = _parse_manifest(self.root)
    for key in ("fps", "sample_rate", "image_size", "expression_names", "num_identity_params",
                "generator"):
      if fields[key] != self._fields[key]:
        raise DatasetError(self.root, f"cannot append: the dataset has {key}={fields[key]!r} "
                           f"but the writer was given {self._fields[key]!r}", file=MANIFEST_FILE)
    self._fields["identities"] = fields["identities"]
    self._fields["provenance"] = {**fields["provenance"], **self._fields["provenance"]}
    for record in records:
      if not (self.root / record.path).is_dir():
        raise DatasetError(self.root, f"listed in the manifest but {record.path} is missing",
                           clip_id=record.id)
      self._records[record.id] = record

  def _recover_clip_dirs(self) -> None:
    """Deletes half-written clips; adopts complete clip dirs the manifest does not list yet."""
    listed = {pathlib.PurePosixPath(r.path) for r in self._records.values()}
    for entry in sorted(self._clips_dir.iterdir()):
      if entry.name.startswith(_TMP_PREFIX):
        shutil.rmtree(entry)
        continue
      if pathlib.PurePosixPath(CLIPS_DIR, entry.name) in listed:
        continue
      if not (entry / CLIP_RECORD_FILE).is_file():
        raise DatasetError(self.root, f"{entry} is not a clip written by DatasetWriter (no "
                           f"{CLIP_RECORD_FILE}); move it out of {self._clips_dir}")
      try:
        record = ClipRecord.from_dict(_read_json(entry / CLIP_RECORD_FILE, self.root, entry.name))
      except (ValueError, TypeError) as e:
        raise DatasetError(self.root, f"cannot recover: {e}", clip_id=entry.name,
                           file=CLIP_RECORD_FILE) from None
      if record.id != entry.name or record.path != f"{CLIPS_DIR}/{entry.name}":
        raise DatasetError(self.root, f"cannot recover: record id {record.id!r} / path "
                           f"{record.path!r} do not match the directory", clip_id=entry.name,
                           file=CLIP_RECORD_FILE)
      if record.id in self._records:
        raise DatasetError(self.root, f"cannot recover {entry}: the manifest lists this id at "
                           f"{self._records[record.id].path}", clip_id=record.id)
      Clip(self.root, record, self._geometry).validate()
      self._fields["identities"].setdefault(record.identity, {})
      self._records[record.id] = record

  def __len__(self) -> int:
    return len(self._records)

  def __enter__(self) -> DatasetWriter:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def has_clip(self, clip_id: str) -> bool:
    """Whether clip `clip_id` is complete (written in this run or an earlier one)."""
    return clip_id in self._records

  def set_identity(self, name: str, /, **metadata: Any) -> None:
    """Adds identity `name` to the manifest, merging `metadata` into what it already has."""
    if not _nonempty_str(name):
      raise ValueError(f"identity name must be a non-empty string, got {name!r}")
    merged = {**self._fields["identities"].get(name, {}), **metadata}
    self._fields["identities"][name] = _json_object(merged, f"metadata of identity {name!r}")

  def add_clip(self, clip_id: str, *, identity: str, voice: str, language: str, split: str,
               frames: np.ndarray, audio: np.ndarray, landmarks: np.ndarray,
               alpha: np.ndarray, expression: np.ndarray, pose: np.ndarray,
               K: np.ndarray,  # pylint: disable=invalid-name
               head_mask: np.ndarray | None = None,
               text: str | None = None, source: str | None = None,
               phonemes: Sequence[tuple[str, float, float]] | None = None,
               preview: bool = False) -> ClipRecord:
    """Checks and writes one clip atomically; returns its record.

    Arrays follow the module's layout (floats are cast to float32; frames must be uint8, audio
    a float waveform in [-1, 1]; the optional head_mask boolean or 0/1 integers). With `preview`, an mp4 of frames and audio is written too.

    Raises:
      DatasetError: the clip exists already, or an array breaks the format.
    """
    if self._closed:
      raise DatasetError(self.root, "add_clip after close()", clip_id=clip_id)
    if self.has_clip(clip_id):
      raise DatasetError(self.root, "already in the dataset (check has_clip() to resume)",
                         clip_id=clip_id)
    frames = np.asarray(frames)
    audio = np.asarray(audio)
    try:
      record = ClipRecord(id=clip_id, identity=identity, voice=voice, language=language,
                          split=split, num_frames=int(frames.shape[0]) if frames.ndim else 0,
                          num_samples=int(audio.shape[0]) if audio.ndim else 0,
                          path=f"{CLIPS_DIR}/{clip_id}", text=text, source=source,
                          phonemes=None if phonemes is None else
                          [[str(p), float(a), float(b)] for p, a, b in phonemes])
    except ValueError as e:
      raise DatasetError(self.root, str(e), clip_id=clip_id) from None
    optional = {} if head_mask is None else {"head_mask": head_mask}
    arrays = self._check_arrays(record, frames=frames, audio=audio, landmarks=landmarks,
                                alpha=alpha, expression=expression, pose=pose, K=K, **optional)
    with atomic.output(self.root / record.path, directory=True,
                       prefix=f"{_TMP_PREFIX}{clip_id}-", suffix="") as tmp:
      for name, array in arrays.items():
        with open(tmp / f"{name}.npy", "wb") as f:
          np.save(f, array, allow_pickle=False)
          f.flush()
          os.fsync(f.fileno())
      with open(tmp / CLIP_RECORD_FILE, "w", encoding="utf-8") as f:
        json.dump(record.to_dict(), f, indent=1)
        f.flush()
        os.fsync(f.fileno())
      if preview:
        video_io.write_video_with_audio(tmp / PREVIEW_FILE, arrays["frames"], arrays["audio"],
                                        fps=self._geometry.fps,
                                        sample_rate=self._geometry.sample_rate)
      _fsync_dir(tmp)
    _fsync_dir(self._clips_dir)
    self._fields["identities"].setdefault(identity, {})
    self._records[clip_id] = record
    return record

  def _check_arrays(self, record: ClipRecord, **arrays: Any) -> dict[str, np.ndarray]:
    def error(message: str, name: str | None = None) -> DatasetError:
      return DatasetError(self.root, message, clip_id=record.id,
                          file=None if name is None else f"{name}.npy")

    if problem := self._geometry.alignment_problem(record.num_frames, record.num_samples):
      raise error(problem)
    specs = self._geometry.array_specs(record.num_frames, record.num_samples)
    legend = self._geometry.describe(record.num_frames, record.num_samples)
    checked = {}
    for name in ARRAY_NAMES + tuple(n for n in OPTIONAL_ARRAY_NAMES if n in arrays):
      array = np.asarray(arrays[name])
      expected_shape, expected_dtype = specs[name]
      if name == "frames" and array.dtype != np.uint8:
        raise error(f"frames must be uint8, got {array.dtype}", name)
      if name == "head_mask":
        if array.dtype.kind not in "biu":
          raise error(f"must be boolean or integer 0/1, got {array.dtype}", name)
        if array.size and (array.min() < 0 or array.max() > 1):
          raise error("values other than 0 and 1", name)
        array = array.astype(np.uint8)
      elif name != "frames":
        if array.dtype.kind not in "fiu" or (name == "audio" and array.dtype.kind != "f"):
          raise error(f"must be a real {'float' if name == 'audio' else 'numeric'} array, "
                      f"got {array.dtype}", name)
        array = array.astype(np.float32)
      if problem := _array_problem(name, array.shape, array.dtype, expected_shape,
                                   expected_dtype, legend):
        raise error(problem, name)
      if problem := _value_problem(name, array):
        raise error(problem, name)
      checked[name] = np.ascontiguousarray(array)
    return checked

  def flush(self) -> None:
    """Writes the manifest with every clip so far (atomically: temp file, then os.replace)."""
    manifest = {**self._fields, "clips": [r.to_dict() for r in self._records.values()]}
    # Key order for humans reading the file: dataset fields, identities, then clips.
    order = [k for k in _MANIFEST_KEYS if k != "clips"] + ["clips"]
    manifest = {k: manifest[k] for k in order}
    with atomic.output(self.root / MANIFEST_FILE) as tmp, open(tmp, "w", encoding="utf-8") as f:
      json.dump(manifest, f, indent=1)
      f.flush()
      os.fsync(f.fileno())

  def close(self) -> None:
    """Writes the final manifest; further `add_clip` calls fail. Idempotent."""
    if not self._closed:
      self.flush()
      self._closed = True

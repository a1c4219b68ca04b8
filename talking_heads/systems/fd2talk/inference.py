"""FD2Talk inference: one face + any-length audio -> motion from the audio -> frames -> pasted back
(paper §3, "inferred in an end-to-end fashion"; spec `shared/reference/systems/fd2talk.md` §1).

Dimension legend: T output frames, F a DiT's window (its training `data.window`, 25 in the
paper), O the windows' overlap, W windows, A audio feature width, E expression coefficients,
S the UNet's frame size, h latent size, d latent channels.

  face       `--face` (or `--video`): an image or a video, read, boxed (`--box`: "detect",
             "full" for face crops, or a static box) and cropped to S by the shared video module
             (`video_inference.prepare`, which also rejects silent audio, audio shorter than
             one Wav2Lip mel window and a source without a face); a video's frames are the
             paste-back targets (looped), its first frame's crop is the reference.
  audio      per video frame, the features each DiT trained on (`features.AudioFeatures.
             of_audio`: 4 RADIO mel frames, or wav2vec2 interpolated to 25 fps).
  motion     expression [T, E] by the Exp Transformer and pose [T, 6] by the Pose Transformer
             (or both by the joint single DiT), each x0-DDIM (Eq. 5, eta 0) over its sampling
             steps, in windows of F frames starting every F - O frames (the last one ends at
             T; audio shorter than F is padded with its last frame's features and cut back),
             all windows in one batched DDIM call, each from its own x_T. Blending: frame t is
             the weighted mean of the windows covering it, window weights a trapezoid rising
             1/(O+1), 2/(O+1), .. over its first O frames and falling likewise over its last O
             (1 in between), so two windows overlapping by O cross-fade linearly (the spec's §4
             recommendation: 25-frame windows, 5 frames of overlap, linear cross-fade).
             `pose=` replaces the sampled pose (Table 1's fixed-pose protocol, spec §1 step 6).
  frames     per frame, J0 by the latent UNet's DDIM (batched over `batch_size` frames) on the
             frame's [expression, pose] and the reference latent x = s E(reference); every frame
             from the same x_T (spec §8 item 6: no per-frame flicker from the noise), then
             D([x, J0] / s): the decoder reads the reference latent beside the denoised one.
  paste      the S x S faces resized into the source boxes (`video_inference.stream`, chunk by
             chunk: memory holds one chunk of frames).

Randomness: `seed` -> PRNGKey; the Exp DiT's x_T from fold_in(key, 0), the Pose DiT's from
fold_in(key, 1), the frames' x_T from fold_in(key, 2): different seeds, different head motion.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from talking_heads.audio import windows
from talking_heads.face import crop as crop_lib
from talking_heads.systems import api
from talking_heads.systems import video_inference
from talking_heads.systems.fd2talk import motion as motion_lib
from talking_heads.systems.fd2talk import unet as unet_lib
from talking_heads.training import restore

_HINTS = {
    "expression": "python -m experiments.train --config=experiments/configs/fd2talk/motion.py:demo",
    "pose": "python -m experiments.train --config=experiments/configs/fd2talk/motion.py:demo "
            "--config.model.motion=pose",
    "unet": "python -m experiments.train --config=experiments/configs/fd2talk/unet.py:demo",
}


@dataclasses.dataclass(frozen=True)
class MotionModel:
  """A trained motion DiT: its stage (config, model, schedule), EMA params, the normalisation
  (model_state) and where it came from."""
  stage: motion_lib.MotionStage
  params: Any
  model_state: Any
  source: str

  @property
  def window(self) -> int:
    """F: the frames of its training windows."""
    return int(self.stage.config.data.window)


@dataclasses.dataclass(frozen=True)
class FD2TalkModel:
  """Both stages: the expression (or joint) DiT, the pose DiT (None with a joint DiT), the
  latent UNet with its frozen autoencoder, and their sources by network."""
  expression: MotionModel
  pose: MotionModel | None
  unet: unet_lib.UNetStage
  unet_variables: Any
  sources: dict[str, str]

  @property
  def image_size(self) -> int:
    return self.unet.image_size


def _restore_config(workdir: str | None, flag: str, stage: str,
                    hint: str) -> ml_collections.ConfigDict:
  if not workdir:
    raise ValueError(f"--system=fd2talk needs --{flag} (train one with `{hint} --workdir=...`)")
  try:
    config = restore.load_config(workdir, stage)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"--{flag}={workdir!r} is not a trained {stage!r} workdir ({e}); "
                            f"train one with `{hint} --workdir=...`") from None
  except ValueError as e:
    raise ValueError(f"--{flag}: {e}") from None
  config.data.root = ""   # the checkpoint carries the normalisation: no dataset is read
  return config


def _restore(workdir: str, flag: str, stage: Any) -> tuple[Any, str]:
  try:
    _, state, step = restore.restore_stage(workdir, stage=stage, expected_stage=stage.config.stage)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"--{flag}={workdir!r}: {e}") from None
  return state, f"{workdir} step {step}"


def load_motion(workdir: str | None, flag: str, motions: tuple[str, ...],
                steps: int | None = None) -> MotionModel:
  """The DiT of a trained `fd2talk_motion` workdir whose `model.motion` is one of `motions`;
  `steps` overrides its DDIM steps (`sampling.steps`)."""
  hint = _HINTS["pose" if motions == ("pose",) else "expression"]
  config = _restore_config(workdir, flag, motion_lib.STAGE, hint)
  if config.model.motion not in motions:
    raise ValueError(f"--{flag}={workdir!r} trained the {config.model.motion!r} DiT; it must be "
                     f"one of {motions}")
  if steps:
    config.sampling.steps = steps
  stage = motion_lib.MotionStage(config)
  state, source = _restore(workdir, flag, stage)
  return MotionModel(stage, jax.device_get(state.eval_params),
                     jax.device_get(state.model_state), source)


def load(expression_workdir: str | None, pose_workdir: str | None, unet_workdir: str | None,
         autoencoder_workdir: str | None = None, *, steps: int | None = None) -> FD2TalkModel:
  """Every network from its training workdir (newest checkpoints, EMA parameters).

  `expression_workdir` is the Exp Transformer, or the joint single DiT (then `pose_workdir` stays
  empty); `autoencoder_workdir` defaults to the one the UNet trained with; `steps` overrides
  every DDIM step count (default: each config's, 50).

  Raises:
    ValueError: a workdir is missing, of another stage or DiT, or the widths disagree.
    FileNotFoundError: a workdir or its checkpoint is missing.
  """
  expression = load_motion(expression_workdir, "fd2talk_expression_workdir",
                           ("expression", "joint"), steps)
  joint = expression.stage.motion == "joint"
  if joint and pose_workdir:
    raise ValueError(f"--fd2talk_expression_workdir={expression_workdir!r} is the joint DiT: it "
                     "predicts the pose too; leave --fd2talk_pose_workdir empty")
  if not joint and not pose_workdir:
    raise ValueError("--system=fd2talk needs --fd2talk_pose_workdir (the Pose Transformer; train "
                     f"one with `{_HINTS['pose']} --workdir=...`), or a joint DiT as "
                     "--fd2talk_expression_workdir")
  pose = None if joint else load_motion(pose_workdir, "fd2talk_pose_workdir", ("pose",), steps)
  config = _restore_config(unet_workdir, "fd2talk_unet_workdir", unet_lib.STAGE, _HINTS["unet"])
  if autoencoder_workdir:
    config.autoencoder.workdir = autoencoder_workdir
  if steps:
    config.diffusion.sample_steps = steps
  unet = unet_lib.UNetStage(config)
  if unet.motion_dim != expression.stage.expression_dim + motion_lib.POSE_DIM:
    raise ValueError(f"the UNet ({unet_workdir}) reads {unet.motion_dim}-d motion but the DiTs "
                     f"give {expression.stage.expression_dim} expression + {motion_lib.POSE_DIM} "
                     "pose values")
  _ = unet.autoencoder   # restored now, outside any trace (a missing one is named here)
  state, source = _restore(unet_workdir, "fd2talk_unet_workdir", unet)
  sources = {"fd2talk_expression" if not joint else "fd2talk_joint": expression.source,
             **({"fd2talk_pose": pose.source} if pose else {}),
             "fd2talk_unet": source, "fd2talk_autoencoder": unet.autoencoder.source}
  return FD2TalkModel(expression, pose, unet, jax.device_get(unet.variables(state)), sources)


# ------------------------------------------------------------------------------ motion


def window_starts(num_frames: int, window: int, overlap: int) -> np.ndarray:
  """[W] start frame of each motion window (module docstring): every F - O frames, the last
  one ending at T; one window at 0 when T <= F."""
  if not 0 <= overlap < window:
    raise ValueError(f"motion window overlap must be in [0, {window}) frames, got {overlap}")
  if num_frames <= window:
    return np.zeros(1, np.int64)
  starts = list(range(0, num_frames - window + 1, window - overlap))
  if starts[-1] + window < num_frames:
    starts.append(num_frames - window)
  return np.asarray(starts, np.int64)


def blend_weights(window: int, overlap: int) -> np.ndarray:
  """[F] the trapezoid of a window's frames: k / (O + 1) on the k-th frame from either end, at
  most 1 (all ones without overlap)."""
  k = np.minimum(np.arange(1, window + 1), np.arange(window, 0, -1))
  return np.minimum(1.0, k / (overlap + 1.0))


def blend_windows(values: np.ndarray, starts: np.ndarray, num_frames: int,
                  overlap: int) -> np.ndarray:
  """Windows [W, F, D] starting at `starts` [W] -> [T, D]: each frame the `blend_weights`-
  weighted mean of the windows covering it."""
  w, f, d = values.shape
  weights = blend_weights(f, overlap)
  total = np.zeros((max(num_frames, f), d), np.float64)
  norm = np.zeros(max(num_frames, f), np.float64)
  for x, s in zip(values, starts):
    total[s:s + f] += weights[:, None] * x
    norm[s:s + f] += weights
  return (total / norm[:, None])[:num_frames].astype(np.float32)


def default_overlap(window: int) -> int:
  """O = F // 5 (5 of the paper's 25 frames)."""
  return window // 5


@functools.lru_cache(maxsize=8)
def _motion_fn(stage: motion_lib.MotionStage) -> Callable[..., jax.Array]:
  return jax.jit(stage.sample)


def sample_motion(model: MotionModel, features: np.ndarray, rng: jax.Array,
                  overlap: int | None = None) -> np.ndarray:
  """Raw motion [T, D] of audio features [T, A]: DDIM in overlapping windows, blended (module
  docstring); O = `default_overlap(F)` when None."""
  f = model.window
  overlap = default_overlap(f) if overlap is None else overlap
  t = features.shape[0]
  starts = window_starts(t, f, overlap)
  padded = np.pad(features, ((0, max(0, f - t)), (0, 0)), mode="edge")      # [max(T, F), A]
  batch = padded[starts[:, None] + np.arange(f)]                            # [W, F, A]
  values = np.asarray(_motion_fn(model.stage)(model.params, model.model_state,
                                              jnp.asarray(batch), rng))    # [W, F, D]
  return blend_windows(values, starts, t, overlap)


def motion_from_audio(model: FD2TalkModel, audio: np.ndarray, num_frames: int, rng: jax.Array,
                      overlap: int | None = None, *, audio_id: str = "audio"
                      ) -> tuple[np.ndarray, np.ndarray]:
  """(expression [T, E], pose [T, 6]) for 16 kHz audio [N] and T = `num_frames`."""
  def features(m: MotionModel) -> np.ndarray:
    audio_config = m.stage.config.audio
    return m.stage.audio.of_audio(audio, num_frames, weights=audio_config.weights,
                                  layer=audio_config.layer, clip_id=audio_id)

  e = model.expression.stage.expression_dim
  first = sample_motion(model.expression, features(model.expression), jax.random.fold_in(rng, 0),
                        overlap)
  if model.pose is None:   # the joint DiT: [expression, pose]
    return first[:, :e], first[:, e:]
  pose = sample_motion(model.pose, features(model.pose), jax.random.fold_in(rng, 1), overlap)
  return first, pose


# ------------------------------------------------------------------------------ frames


@functools.lru_cache(maxsize=8)
def _latent_fn(stage: unet_lib.UNetStage) -> Callable[..., jax.Array]:
  return jax.jit(stage.latents)


@functools.lru_cache(maxsize=8)
def _frames_fn(stage: unet_lib.UNetStage) -> Callable[..., jax.Array]:
  def frames(variables, reference, expression, pose, rng):
    reference = jnp.broadcast_to(reference, (expression.shape[0],) + reference.shape[1:])
    j0 = stage.sample(variables, expression, pose, reference, rng, shared_noise=True)
    return jnp.round(stage.decode(reference, j0) * 255.0).astype(jnp.uint8)   # [B, S, S, 3]
  return jax.jit(frames)


def frames_step(model: FD2TalkModel, reference: np.ndarray, rng: jax.Array,
                batch_size: int) -> video_inference.FaceStep:
  """The face step for `video_inference.stream`: a chunk's inputs (their `conditions` the
  frames' [expression, pose] [c, E + 6]) -> faces uint8 [c, S, S, 3], every frame from the same
  x_T (the same `rng` for every batch, drawn once per batch with shared noise)."""
  stage, variables = model.unet, jax.device_put(model.unet_variables)
  latent = _latent_fn(stage)(jnp.asarray(reference[None]))                  # [1, h, h, d]
  fn, e = _frames_fn(stage), model.expression.stage.expression_dim

  def step(inputs: video_inference.Inputs, *,
           on_first_batch: Callable[[float], None] | None = None) -> np.ndarray:
    motion = inputs.conditions

    def make_batch(index: np.ndarray) -> tuple[Any, ...]:
      return variables, latent, motion[index, :e], motion[index, e:], rng

    return video_inference.batched(fn, make_batch, inputs.num_frames, batch_size,
                                   on_first_batch=on_first_batch)

  return step


@dataclasses.dataclass(frozen=True)
class Stream:
  """A generation whose frames are made as `frame_chunks()` is consumed (memory: one chunk).

  Attributes:
    video: the shared module's stream (inputs, chunks, seconds).
    expression: [T, E] the sampled expression.
    pose: [T, 6] the pose the frames were generated with (sampled, or given).
    sampled_pose: [T, 6] the pose sampled from the audio (`pose` unless one was given).
  """
  video: video_inference.Stream
  expression: np.ndarray
  pose: np.ndarray
  sampled_pose: np.ndarray

  @property
  def audio(self) -> np.ndarray:
    return self.video.audio

  @property
  def fps(self) -> int:
    return self.video.fps

  @property
  def num_frames(self) -> int:
    return self.video.num_frames

  @property
  def seconds(self) -> dict[str, float]:
    """Wall seconds: "motion", then the shared module's steps (complete once consumed)."""
    return self.video.seconds

  def frame_chunks(self) -> Iterator[np.ndarray]:
    return self.video.frame_chunks()


@dataclasses.dataclass(frozen=True)
class Settings:
  """The entry's own options.

  Attributes:
    seed: of every x_T (module docstring).
    overlap: frames shared by consecutive motion windows (None: `default_overlap`).
  """
  seed: int = 0
  overlap: int | None = None


def stream_inputs(model: FD2TalkModel, inputs: video_inference.Inputs, settings: Settings,
                  options: video_inference.Options, *, pose: np.ndarray | None = None,
                  expression: np.ndarray | None = None, audio_id: str = "audio") -> Stream:
  """Generates from prepared inputs (`video_inference.prepare` / `prepare_arrays` at the UNet's
  size); `pose` [T, 6] replaces the sampled pose, `expression` [T, E] the sampled expression
  (stage 2 alone on given motion)."""
  if inputs.fps != windows.VIDEO_FPS:
    raise ValueError(f"FD2Talk's DiTs read audio features per {windows.VIDEO_FPS} fps frame; "
                     f"--fps={inputs.fps} is not supported")
  if inputs.image_size != model.image_size:
    raise ValueError(f"crops are {inputs.image_size} px but the UNet takes {model.image_size} px")
  t = inputs.num_frames
  key = jax.random.PRNGKey(settings.seed)
  start = time.perf_counter()
  sampled_expression, sampled_pose = motion_from_audio(model, inputs.audio, t, key,
                                                       settings.overlap, audio_id=audio_id)
  if pose is not None:
    pose = np.asarray(pose, np.float32)
    if pose.shape != (t, motion_lib.POSE_DIM):
      raise ValueError(f"{audio_id}: pose must be [T, 6] = [{t}, 6], got {pose.shape}")
  if expression is None:
    expression = sampled_expression
  else:
    expression = np.asarray(expression, np.float32)
    if expression.shape != sampled_expression.shape:
      raise ValueError(f"{audio_id}: expression must be [T, E] = {list(sampled_expression.shape)}"
                       f", got {list(expression.shape)}")
  seconds = time.perf_counter() - start
  reference = crop_lib.crop_faces(inputs.frames[:1], inputs.boxes[:1], inputs.image_size)[0]
  used = sampled_pose if pose is None else pose
  inputs = dataclasses.replace(inputs, conditions=np.concatenate([expression, used], axis=1))
  step = frames_step(model, reference, jax.random.fold_in(key, 2), options.batch_size)
  video = video_inference.stream(inputs, [("fd2talk_unet", step)], options)
  video.seconds["motion"] = seconds
  return Stream(video, expression, sampled_pose if pose is None else pose, sampled_pose)


@dataclasses.dataclass(frozen=True)
class Result:
  """A generation in memory: output frames [T, H, W, 3], the generated faces [T, S, S, 3] (both
  uint8), expression [T, E], pose [T, 6] (used) and sampled_pose [T, 6] (as `Stream`), audio
  [N], fps and wall seconds."""
  frames: np.ndarray
  faces: np.ndarray
  expression: np.ndarray
  pose: np.ndarray
  sampled_pose: np.ndarray
  audio: np.ndarray
  fps: int
  seconds: dict[str, float]


def run_arrays(model: FD2TalkModel, audio: np.ndarray, face_frames: np.ndarray,
               settings: Settings = Settings(),
               options: video_inference.Options = video_inference.Options(), *,
               pose: np.ndarray | None = None, expression: np.ndarray | None = None,
               audio_id: str = "audio", face_id: str = "face") -> Result:
  """Generates from 16 kHz mono audio [N] and RGB uint8 face frames [V, H, W, 3], in memory
  (`pose`, `expression`: as `stream_inputs`)."""
  inputs = video_inference.prepare_arrays(audio, face_frames, model.image_size, options,
                                          audio_id=audio_id, video_id=face_id)
  generation = stream_inputs(model, inputs, settings, options, pose=pose, expression=expression,
                             audio_id=audio_id)
  chunks = list(generation.video.chunks)
  return Result(np.concatenate([c.frames for c in chunks]),
                np.concatenate([c.faces for c in chunks]), generation.expression,
                generation.pose, generation.sampled_pose, generation.audio, generation.fps,
                generation.seconds)


# ------------------------------------------------------------------------------ entry


def _integer(options: dict[str, str], name: str, default: int | None) -> int | None:
  value = options.get(name, "")
  if value in ("", None):
    return default
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"--{name}={value!r}: expected an integer") from None


def settings(options: dict[str, str]) -> Settings:
  """The entry's options (strings) as `Settings` (ValueError naming a bad one)."""
  overlap = _integer(options, "motion_overlap", None)
  if overlap is not None and overlap < 0:
    raise ValueError(f"--motion_overlap={overlap}: must be >= 0 frames")
  return Settings(seed=_integer(options, "seed", 0), overlap=overlap)


def check_request(audio: str, video: str | None, options: dict[str, str]) -> None:
  """The face source exists and the options parse (before any network loads)."""
  del audio
  face = video_inference.face_source("fd2talk", video, options)
  settings(options)
  steps = _integer(options, "ddim_steps", None)
  if steps is not None and steps < 1:
    raise ValueError(f"--ddim_steps={steps}: must be >= 1")


def load_generator(weights: dict[str, str | None],
                   options: dict[str, str]) -> api.LoadedGenerator:
  """The `fd2talk` inference entry (`SYSTEM.generators`)."""
  config = settings(options)
  model = load(weights.get("fd2talk_expression_workdir"), weights.get("fd2talk_pose_workdir"),
               weights.get("fd2talk_unet_workdir"), weights.get("fd2talk_autoencoder_workdir"),
               steps=_integer(options, "ddim_steps", None))

  def generate(audio: str, video: str | None,
               video_options: video_inference.Options) -> Stream:
    face = video_inference.face_source("fd2talk", video, options)
    inputs = video_inference.prepare(audio, face, model.image_size, video_options)
    return stream_inputs(model, inputs, config, video_options, audio_id=audio)

  return api.LoadedGenerator(generate, model.sources)

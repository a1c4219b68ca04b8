"""DAE-Talker inference: speech -> latents (+ head pose) -> DDIM decoding of every frame -> mp4.

Dimension legend: N audio samples (16 kHz), T video frames (N // 640 at 25 fps), Z latent width,
H = W the diffusion autoencoder's image size, P = 3 pose angles (yaw, pitch, roll; radians inside,
degrees at the user interface).

DAE-Talker §3.3 / Fig. 2: speech2latent predicts one latent per frame (conditioned on the pose it
predicts from the speech, "natural", or on a pose the user gives), then the diffusion
autoencoder's DDIM decoder turns every latent into a frame. All frames start from ONE Gaussian
x_T (`noise="shared"`): DDIM with eta = 0 is a deterministic, continuous map of (x_T, z), so a
smooth latent sequence gives a smooth video. `noise="independent"` draws x_T per frame (the
paper's ablation "w/o shared x_T"); frame i's noise comes from fold_in(seed, i), so results do not
depend on the batch size. `noise="reference"` (not in the paper) shares the x_T that DDIM
inversion gives for a reference frame of the speaker (diffae's stochastic code of that frame):
the frame's global colour and background then come from the image instead of from a random draw,
which matters most for an autoencoder trained briefly. Frames are decoded in parallel batches of
`batch_size` (`video_inference.batched`: the last one padded so every batch has one compiled
shape), chunk by chunk (`decode_chunks`: `stream` hands each chunk on before decoding the next,
so memory holds one chunk of frames; the chunks are the batches of one pass, so the frames do
not depend on the chunk size).

Pose (`head_pose.parse_pose`): "natural", "yaw=..,pitch=..,roll=.." in degrees (missing angles
are 0), or a .npy / .txt / .csv file of [3] or [T', 3] angles in degrees (yaw, pitch, roll),
linearly resampled over time to T frames; DAE-Talker conditions on them as absolute angles.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from talking_heads.audio import windows
from talking_heads.io import audio as audio_io
from talking_heads.io import video as video_io
from talking_heads.systems import api
from talking_heads.systems import video_inference
from talking_heads.systems.dae_talker import speech2latent as s2l_system
from talking_heads.systems.dae_talker.dae import DAEStage
from talking_heads.systems.head_pose import parse_pose

PathLike = str | os.PathLike
NOISE_MODES = ("shared", "independent", "reference")
SAMPLES_PER_FRAME = windows.SAMPLE_RATE // windows.VIDEO_FPS


@dataclasses.dataclass(frozen=True)
class Options:
  """Generation settings.

  Attributes:
    pose: "natural" or a pose spec (module docstring).
    sample_steps: DDIM steps (the paper: 100).
    noise: "shared" (one random x_T for every frame, the paper), "independent" (one per frame)
      or "reference" (one x_T inverted from a reference frame, given to `run_arrays`).
    batch_size: frames per decoder call.
    seed: seeds x_T.
    chunk_frames: frames decoded and handed on at a time (rounded up to a multiple of
      `batch_size`): with the image size, what bounds the frames in memory (`stream`).
  """
  pose: str = "natural"
  sample_steps: int = 100
  noise: str = "shared"
  batch_size: int = 32
  seed: int = 0
  chunk_frames: int = 32

  def __post_init__(self):
    if self.noise not in NOISE_MODES:
      raise ValueError(f"noise must be one of {NOISE_MODES}, got {self.noise!r}")
    if self.sample_steps < 1 or self.batch_size < 1 or self.chunk_frames < 1:
      raise ValueError(f"sample_steps, batch_size and chunk_frames must be positive, got "
                       f"{self.sample_steps}, {self.batch_size} and {self.chunk_frames}")


@dataclasses.dataclass(frozen=True)
class DAETalkerModel:
  """The two trained networks.

  Attributes:
    dae: the diffusion-autoencoder stage (its `decode`).
    dae_variables: its flax variables (`DAEStage.variables`: EMA parameters + model state).
    speech2latent: speech -> latents and pose.
    sources: where each network's weights come from.
  """
  dae: DAEStage
  dae_variables: Any
  speech2latent: Any
  sources: dict[str, str]

  @property
  def image_size(self) -> int:
    return self.dae.image_size


@dataclasses.dataclass(frozen=True)
class Result:
  """A generated video before encoding.

  Attributes:
    frames: [T, H, W, 3] uint8.
    audio: [N] the 16 kHz speech.
    latents: [T, Z] predicted latents.
    pose: [T, 3] the pose the latents were conditioned on (radians).
    predicted_pose: [T, 3] the pose predicted from the speech (radians).
    fps: frame rate.
    seconds: wall time of "speech2latent", "decode" and "decode_first_batch" (jit included).
  """
  frames: np.ndarray
  audio: np.ndarray
  latents: np.ndarray
  pose: np.ndarray
  predicted_pose: np.ndarray
  fps: int
  seconds: dict[str, float]


@dataclasses.dataclass(frozen=True)
class Stream:
  """A generation whose frames are decoded as `chunks` is consumed (memory: one chunk).

  Attributes:
    chunks: uint8 frames [c, H, W, 3] in order (an iterator: consuming it decodes them).
    audio, latents, pose, predicted_pose, fps: as in `Result`.
    seconds: as in `Result`; "decode" and "decode_first_batch" once `chunks` is exhausted.
  """
  chunks: Iterator[np.ndarray]
  audio: np.ndarray
  latents: np.ndarray
  pose: np.ndarray
  predicted_pose: np.ndarray
  fps: int
  seconds: dict[str, float]

  @property
  def num_frames(self) -> int:
    return int(self.latents.shape[0])

  def frame_chunks(self) -> Iterator[np.ndarray]:
    return self.chunks


def load(dae_workdir: PathLike, speech2latent_workdir: PathLike) -> DAETalkerModel:
  """Both networks from their training workdirs (newest checkpoints, EMA parameters).

  Raises:
    FileNotFoundError: a workdir or its checkpoint is missing.
    ValueError: a workdir is not of the expected stage, or their latent widths differ.
  """
  from talking_heads.training import restore  # pylint: disable=g-import-not-at-top
  dae_workdir = os.fspath(dae_workdir)
  stage, state, step = restore.restore_stage(dae_workdir, expected_stage="dae")
  predictor = s2l_system.load_speech2latent(os.fspath(speech2latent_workdir))
  latent_dim = predictor.stage.model.latent_dim
  if latent_dim != stage.config.model.latent_dim:
    raise ValueError(f"speech2latent ({speech2latent_workdir}) predicts {latent_dim}-d "
                     f"latents but the autoencoder ({dae_workdir}) uses "
                     f"{stage.config.model.latent_dim}-d ones")
  return DAETalkerModel(stage, stage.variables(state), predictor,
                        {"dae": f"{dae_workdir} step {step}",
                         "speech2latent": predictor.source})


@functools.lru_cache(maxsize=8)
def _decode_fn(stage: DAEStage, steps: int) -> Callable[..., jax.Array]:
  def decode(variables: Any, z: jax.Array, x_T: jax.Array) -> jax.Array:
    frames = stage.decode(variables, z, jax.random.PRNGKey(0), steps=steps, x_T=x_T)
    return jnp.round(frames * 255.0).astype(jnp.uint8)                   # [B, H, W, 3]
  return jax.jit(decode)


@functools.lru_cache(maxsize=8)
def _frame_noise_fn(image_size: int, seed: int) -> Callable[[jax.Array], jax.Array]:
  key = jax.random.PRNGKey(seed)
  shape = (image_size, image_size, 3)
  return jax.jit(jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), shape)))


def initial_noise(image_size: int, frames: np.ndarray, seed: int, noise: str) -> np.ndarray:
  """x_T: [1, H, W, 3] shared by all frames, or one per frame index in `frames` [n] ->
  [n, H, W, 3], frame i's from fold_in(seed, i) (the same whichever frames are drawn with it)."""
  if noise == "shared":
    shape = (1, image_size, image_size, 3)
    return np.asarray(jax.random.normal(jax.random.PRNGKey(seed), shape, jnp.float32))
  return np.asarray(_frame_noise_fn(image_size, seed)(jnp.asarray(frames)))


@functools.lru_cache(maxsize=8)
def _invert_fn(stage: DAEStage, steps: int) -> Callable[..., jax.Array]:
  def invert(variables: Any, frame: jax.Array) -> jax.Array:
    return stage.invert(variables, frame, stage.encode(variables, frame), steps=steps)
  return jax.jit(invert)


def reference_noise(stage: DAEStage, variables: Any, frame: np.ndarray, steps: int) -> np.ndarray:
  """x_T [1, H, W, 3] of a uint8 reference frame [H, W, 3] by DDIM inversion over `steps`."""
  size = stage.image_size
  if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
    raise ValueError(f"reference frame must be uint8 [H, W, 3], got {frame.dtype} {frame.shape}")
  if frame.shape[:2] != (size, size):
    frame = np.asarray(jax.image.resize(frame.astype(np.float32), (size, size, 3), "linear"))
    frame = np.clip(np.round(frame), 0, 255).astype(np.uint8)
  return np.asarray(_invert_fn(stage, steps)(variables, frame[None]))


def decode_chunks(stage: DAEStage, variables: Any, latents: np.ndarray, options: Options,
                  reference_frame: np.ndarray | None = None,
                  seconds: dict[str, float] | None = None) -> Iterator[np.ndarray]:
  """Latents [T, Z] -> uint8 frames, [c, H, W, 3] chunk by chunk as they are consumed.

  Chunks hold `options.chunk_frames` frames rounded up to a multiple of `batch_size`
  (`video_inference.chunk_bounds`), so the decoder sees the batches of one pass over all frames
  and the frames are the same bit for bit whatever the chunk size. x_T (shared or inverted
  from `reference_frame`) is made here, at once; `seconds` gets "decode" and
  "decode_first_batch" as the chunks are decoded.
  """
  seconds = {} if seconds is None else seconds
  shared_noise = None   # "independent": drawn chunk by chunk
  if options.noise == "reference":
    if reference_frame is None:
      raise ValueError('noise="reference" needs a reference frame of the speaker')
    shared_noise = reference_noise(stage, variables, reference_frame, options.sample_steps)
  elif options.noise == "shared":
    shared_noise = initial_noise(stage.image_size, np.zeros(0, np.int64), options.seed, "shared")
  return _decode_chunks(stage, variables, latents, options, shared_noise, seconds)


def _decode_chunks(stage: DAEStage, variables: Any, latents: np.ndarray, options: Options,
                   shared_noise: np.ndarray | None,
                   seconds: dict[str, float]) -> Iterator[np.ndarray]:
  seconds["decode"] = 0.0
  for start, stop in video_inference.chunk_bounds(latents.shape[0], options.chunk_frames,
                                                  options.batch_size):
    # Made by a function: this generator keeps no chunk's frames while the next one is made.
    yield _decode_chunk(stage, variables, latents, options, shared_noise, start, stop, seconds)


def _decode_chunk(stage: DAEStage, variables: Any, latents: np.ndarray, options: Options,
                  shared_noise: np.ndarray | None, start: int, stop: int,
                  seconds: dict[str, float]) -> np.ndarray:
  """Frames [start, stop), uint8 [c, H, W, 3]."""
  begin = time.perf_counter()
  noise = shared_noise
  if noise is None:   # one x_T per frame: [c, H, W, 3]
    noise = initial_noise(stage.image_size, np.arange(start, stop), options.seed, options.noise)

  def make_batch(index: np.ndarray) -> tuple[Any, ...]:
    return variables, latents[start + index], noise if shared_noise is not None else noise[index]

  first = (lambda s: seconds.update(decode_first_batch=s)) if start == 0 else None
  frames = video_inference.batched(_decode_fn(stage, options.sample_steps), make_batch,
                                   stop - start, options.batch_size, on_first_batch=first)
  seconds["decode"] += time.perf_counter() - begin
  return frames


def decode_latents(stage: DAEStage, variables: Any, latents: np.ndarray, options: Options,
                   reference_frame: np.ndarray | None = None
                   ) -> tuple[np.ndarray, dict[str, float]]:
  """Latents [T, Z] -> uint8 frames [T, H, W, 3] (all of `decode_chunks`) and the decoder's
  wall times."""
  seconds: dict[str, float] = {}
  chunks = decode_chunks(stage, variables, latents, options, reference_frame, seconds)
  return np.concatenate(list(chunks)), seconds


def stream_arrays(model: DAETalkerModel, audio: np.ndarray, options: Options = Options(), *,
                  pose: np.ndarray | None = None, reference_frame: np.ndarray | None = None,
                  audio_id: str = "audio") -> Stream:
  """Generates from 16 kHz mono audio [N], the frames decoded as the stream is consumed; `pose`
  [T, 3] radians overrides `options.pose`; `reference_frame` uint8 [H', W', 3] is needed with
  `options.noise="reference"`. The latents are predicted here, at once.

  Raises:
    windows.SilentAudioError: the audio is silent.
    ValueError: not 1-D, shorter than one video frame, or a bad pose.
  """
  audio = np.asarray(audio, np.float32)
  if audio.ndim != 1:
    raise ValueError(f"{audio_id}: expected mono audio [N], got shape {audio.shape}")
  num_frames = audio.shape[0] // SAMPLES_PER_FRAME
  if num_frames < 1:
    raise ValueError(f"{audio_id}: audio too short: {audio.shape[0]} samples, less than one "
                     f"video frame ({SAMPLES_PER_FRAME} samples at 16 kHz)")
  windows.check_not_silent(audio, clip_id=audio_id)
  if pose is None:
    pose = parse_pose(options.pose, num_frames)
  elif pose.shape != (num_frames, 3):
    raise ValueError(f"{audio_id}: pose must be [T, 3] = [{num_frames}, 3], got {pose.shape}")
  start = time.perf_counter()
  audio = audio[:num_frames * SAMPLES_PER_FRAME]
  predicted = model.speech2latent.predict_from_audio(audio, pose_override=pose)
  seconds = {"speech2latent": time.perf_counter() - start}
  latents = np.asarray(predicted["latents"], np.float32)                  # [T, Z]
  chunks = decode_chunks(model.dae, model.dae_variables, latents, options, reference_frame,
                         seconds)
  predicted_pose = np.asarray(predicted["pose"], np.float32)
  return Stream(chunks=chunks, audio=audio, latents=latents,
                pose=predicted_pose if pose is None else pose, predicted_pose=predicted_pose,
                fps=windows.VIDEO_FPS, seconds=seconds)


def run_arrays(model: DAETalkerModel, audio: np.ndarray, options: Options = Options(), *,
               pose: np.ndarray | None = None, reference_frame: np.ndarray | None = None,
               audio_id: str = "audio") -> Result:
  """`stream_arrays` with every frame kept in memory (for callers that need arrays)."""
  generation = stream_arrays(model, audio, options, pose=pose, reference_frame=reference_frame,
                             audio_id=audio_id)
  frames = np.concatenate(list(generation.chunks))
  return Result(frames=frames, audio=generation.audio, latents=generation.latents,
                pose=generation.pose, predicted_pose=generation.predicted_pose,
                fps=generation.fps, seconds=generation.seconds)


def read_reference(path: PathLike) -> np.ndarray:
  """The first frame of an image or video, uint8 [H, W, 3] (only it is decoded)."""
  with contextlib.closing(video_io.iter_frames(path)) as frames:
    return next(frames).copy()


def stream(model: DAETalkerModel, audio_path: PathLike, options: Options = Options(),
           reference_path: PathLike | None = None) -> Stream:
  """Generates from an audio file (any format ffmpeg reads, resampled to 16 kHz mono), the
  frames decoded as the stream is consumed; with `options.noise="reference"` the first frame
  of `reference_path` (an image or a video)."""
  reference = None
  if options.noise == "reference":
    if reference_path is None:
      raise ValueError('noise="reference" needs a reference image or video of the speaker')
    reference = read_reference(reference_path)
  audio = audio_io.load_audio(audio_path, sample_rate=windows.SAMPLE_RATE)
  return stream_arrays(model, audio, options, reference_frame=reference,
                       audio_id=os.fspath(audio_path))


def settings(options: dict[str, str]) -> Options:
  """The entry's options (strings, from the command line) as `Options`.

  Raises:
    ValueError: a bad value, naming its option.
  """
  def integer(name: str, default: int) -> int:
    try:
      return int(options.get(name, default))
    except ValueError:
      raise ValueError(f"--{name}={options[name]!r}: expected an integer") from None

  return Options(pose=options.get("pose", "natural"),
                 sample_steps=integer("sample_steps", Options.sample_steps),
                 noise=options.get("noise", "shared"),
                 batch_size=integer("batch_size", Options.batch_size),
                 seed=integer("seed", Options.seed))


def check_request(audio: str, video: str | None, options: dict[str, str]) -> None:
  """The `dae_talker` entry's input checks, before any network loads: its options and pose
  spec; with `--noise=reference`, a reference given and readable.

  A reference frame in which the face detector (OpenCV Haar) finds no face is a warning, not an
  error: x_T inverted from it sets the frames' global colour and background, not the identity
  (which is the autoencoder's), and Haar misses real faces (small, turned, stylised, or
  rendered ones like the synthetic corpus's); but a picture without a face is more likely a
  wrong file than a wanted background, so the warning names it.

  Raises:
    ValueError: a bad option, or `--noise=reference` without `--video`.
    FileNotFoundError, video_io.VideoError: the reference is missing or unreadable.
  """
  del audio   # checked by the launcher
  config = settings(options)
  parse_pose(config.pose, 1)
  if config.noise != "reference":
    return
  if video is None:
    raise ValueError("--noise=reference needs --video: an image or video of the speaker whose "
                     "first frame x_T is inverted from")
  # Imported here: the detector is only needed for this check.
  from talking_heads.face import detect  # pylint: disable=g-import-not-at-top
  frame = read_reference(video)
  if not len(detect.detect_scaled(detect.make_detector("haar"), frame, 320)):
    logging.warning("%s: no face found in the reference frame (its first frame) by the Haar "
                    "detector; x_T is inverted from it all the same. Is it the speaker?", video)


def load_generator(weights: dict[str, str | None], options: dict[str, str]) -> api.LoadedGenerator:
  """The `dae_talker` inference entry (`SYSTEM.generators`); `--video`, when given, is the
  reference frame of `noise="reference"` (its first frame)."""
  if not weights.get("dae_workdir") or not weights.get("speech2latent_workdir"):
    raise ValueError("--system=dae_talker needs --dae_workdir and --speech2latent_workdir (its "
                     "trained diffusion autoencoder and speech2latent)")
  config = settings(options)
  model = load(weights["dae_workdir"], weights["speech2latent_workdir"])

  def generate(audio: str, video: str | None, video_options: Any) -> Stream:
    # The identity is the autoencoder's: of the video options only the chunk size applies.
    chunked = dataclasses.replace(config, chunk_frames=video_options.chunk_frames)
    return stream(model, audio, chunked, reference_path=video)

  return api.LoadedGenerator(generate, model.sources, batch_size=config.batch_size)

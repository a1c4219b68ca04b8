"""Video inference shared by every system that edits faces in a source video.

audio + an identity video -> per-frame audio windows, face boxes, crops -> a system's face
networks (`stream`'s steps) -> feathered paste-back -> mp4 with audio, for audio of any length,
chunk by chunk.

Dimension legend: T output frames, V source video frames used (V <= T), H, W frame size,
S face size of the first network (96 for the published Wav2Lip), M mel bins (80), F mel frames
(16 per chunk).

It follows Wav2Lip's `inference.py` (facts in wav2lip_syncnet_metrics.md §1.6), step by step,
with what differs here:
  * audio: any file ffmpeg reads, downmixed and resampled to 16 kHz mono; Wav2Lip's log-mel
    (`audio.mel.WAV2LIP_MEL`). Silent audio (RMS below -60 dBFS) and audio shorter than one mel
    window (16 mel frames = 3000 samples) are errors naming the file.
  * video: decoded at `fps` (25; ffmpeg's fps filter drops or repeats frames of other rates),
    only as many frames as the output needs, into a temporary file (`video_io.FrameFile`) from
    which each chunk reads its frames.
  * mel chunks: chunk i starts at int(i * 80 / fps) and spans 16 mel frames; the reference's last
    chunk is the final 16 mel frames. The reference stops there (about 2.7 frames short of the
    audio at 25 fps); we go on to T = ceil(audio seconds * fps) frames, every chunk past the end
    also being the final 16 mel frames, so the mp4 is as long as its audio. The first frames are
    exactly the reference's (`reference_chunk_count`).
  * looping: when the audio outlasts the video, frames repeat in a plain loop (frame i % V, the
    reference) or, with ``loop="pingpong"``, forwards then backwards (no jump at the seam).
  * face boxes: "detect" runs `face.detect` (OpenCV Haar by default, not the reference's S3FD)
    on every used frame; a frame without a face is an error naming it. Boxes are padded by
    `pads` (top, bottom, left, right; reference default 0,10,0,0), clamped to the frame as the
    reference does, then smoothed over 5 frames (`face.crop.smooth_boxes`, centred, where the
    reference averages the next 5 boxes). "full" takes the whole frame (for datasets whose
    frames already are face crops); a static box (x0, y0, x1, y1) is used as given (the
    reference's `--box` is y0, y1, x0, x1), neither padded nor smoothed.
  * crops: the box grown to a square (`face.crop.crop_face`; the reference squashes the box to
    S x S), resized to the first network's S.
  * networks: each system's face steps (e.g. Wav2Lip, then LaDTalk's SOVQAE), jitted over fixed
    batches (`batched`: `batch_size`, last one padded).
  * paste-back: the generated crop resized to the box's square and blended with a feathered
    mask (`face.crop.feather_mask`; the reference pastes a hard box); pixels outside the square
    are the source frame's.
  * mp4: H.264 with the 16 kHz mono audio as AAC (the reference muxes the original audio file).

Memory: the output is made in chunks of `Options.chunk_frames` frames (`stream`), each handed
to the encoder (`write_mp4`, `video_io.VideoWriter`) before the next is made, so the frames in
memory are one chunk's (its source frames, faces and output frames), whatever the audio's
length; what grows with the audio is small: the samples (64 KB a second) and the mel chunks
(128 KB a second at 25 fps), plus the face boxes (16 bytes a source frame). `run` keeps every
chunk, for callers that want arrays.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import operator
import os
import time
from typing import Any, Callable, Iterator, Sequence

import flax.linen as nn
import jax
import numpy as np

from talking_heads.audio import mel as mel_lib
from talking_heads.audio import windows
from talking_heads.face import crop as crop_lib
from talking_heads.face import detect as detect_lib
from talking_heads.io import audio as audio_io
from talking_heads.io import video as video_io

PathLike = str | os.PathLike[str]
Box = tuple[float, float, float, float]

REFERENCE_PADS: crop_lib.Pads = (0, 10, 0, 0)
REFERENCE_SMOOTHING = 5
LOOP_MODES = ("plain", "pingpong")
MEL_SPEC = windows.WAV2LIP_WINDOWS


class FaceNotFoundError(ValueError):
  """The face detector found no face in a frame of the identity video."""


def find_module(stage: Any, cls: type[nn.Module], workdir: str) -> nn.Module:
  """The stage attribute holding a `cls` network (stages name it as they like)."""
  found = [v for v in vars(stage).values() if isinstance(v, cls)]
  if len(found) != 1:
    raise ValueError(f"{workdir}: stage {stage.config.stage!r} has {len(found)} {cls.__name__} "
                     "networks; expected exactly one")
  return found[0]


def network_variables(stage: Any, state: Any) -> dict[str, Any]:
  """Inference variables of a restored stage's (generator) network, on the host.

  The stage's own `variables(state)` when it has one, else {"params": eval params,
  **model_state} of the TrainState or of an AdversarialTrainState's generator.
  """
  if callable(getattr(stage, "variables", None)):
    return jax.device_get(stage.variables(state))
  player = getattr(state, "generator", state)
  return jax.device_get({"params": player.eval_params, **player.model_state})


def restore_network(workdir: PathLike, cls: type[nn.Module], stage_name: str,
                    step: int | None = None) -> tuple[nn.Module, Any, Any, str]:
  """(module, host variables, stage config, source) of the `cls` network of a trained workdir.

  Raises:
    FileNotFoundError: not a workdir, or no checkpoint in it.
    ValueError: the workdir trained another stage than `stage_name`, or its stage has no (or
      several) `cls` networks.
  """
  # Imported here: restoring pulls in the training stack, which public files do not need.
  from talking_heads.training import restore  # pylint: disable=g-import-not-at-top
  workdir = os.fspath(workdir)
  stage, state, restored = restore.restore_stage(workdir, step, expected_stage=stage_name)
  return (find_module(stage, cls, workdir), network_variables(stage, state), stage.config,
          f"{workdir} step {restored}")


@dataclasses.dataclass(frozen=True)
class Options:
  """Inference settings shared by every video-editing system.

  Attributes:
    fps: output (and video decoding) frame rate; an integer so mel chunks align exactly.
    box: "detect", "full" (the whole frame), or a static (x0, y0, x1, y1) in frame pixels.
    detector: `face.detect` backend for "detect".
    pads: (top, bottom, left, right) pixels added to detected boxes.
    smoothing: frames in the box moving average (1 turns smoothing off).
    batch_size: frames per generator call.
    chunk_frames: output frames generated, pasted and handed on at a time (rounded up to a
      multiple of `batch_size`): with the frame size, what bounds memory (`stream`).
    feather: paste-back mask ramp as a fraction of the crop side (0 = hard box).
    loop: "plain" or "pingpong" frame order when the audio outlasts the video.
    silence_db: audio whose RMS level is below this (dBFS) is rejected as silent.
  """
  fps: int = windows.VIDEO_FPS
  box: str | Box = "detect"
  detector: str = "haar"
  pads: crop_lib.Pads = REFERENCE_PADS
  smoothing: int = REFERENCE_SMOOTHING
  batch_size: int = 16
  chunk_frames: int = 32
  feather: float = 0.1
  loop: str = "plain"
  silence_db: float = -60.0

  def __post_init__(self):
    if isinstance(self.fps, bool) or not isinstance(self.fps, (int, np.integer)) or self.fps <= 0:
      raise ValueError(f"Options.fps must be a positive integer, got {self.fps!r}")
    if self.loop not in LOOP_MODES:
      raise ValueError(f"Options.loop must be one of {LOOP_MODES}, got {self.loop!r}")
    if self.batch_size < 1 or self.smoothing < 1 or self.chunk_frames < 1:
      raise ValueError(f"Options.batch_size, smoothing and chunk_frames must be >= 1, got "
                       f"{self.batch_size}, {self.smoothing} and {self.chunk_frames}")
    object.__setattr__(self, "box", parse_box(self.box))
    object.__setattr__(self, "pads", crop_lib.parse_pads(self.pads))


def parse_box(spec: str | Sequence[float]) -> str | Box:
  """"detect", "full" or "x0,y0,x1,y1" (or a 4-sequence) -> "detect", "full" or a Box."""
  if isinstance(spec, str) and spec.strip() in ("detect", "full"):
    return spec.strip()
  parts = spec.replace(" ", "").split(",") if isinstance(spec, str) else list(spec)
  try:
    box = tuple(float(p) for p in parts)
  except (TypeError, ValueError):
    box = ()
  if len(box) != 4 or not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
    raise ValueError(f"face box {spec!r}: expected 'detect', 'full' or x0,y0,x1,y1 with "
                     "x1 > x0 and y1 > y0 (frame pixels)")
  return box  # type: ignore[return-value]


# ------------------------------------------------------------------------------ audio


def output_frame_count(num_samples: int, fps: int,
                       sample_rate: int = windows.SAMPLE_RATE) -> int:
  """T = ceil(num_samples * fps / sample_rate): the frames that cover the audio."""
  return -(-int(num_samples) * int(fps) // int(sample_rate))


def reference_chunk_count(num_mel_frames: int, fps: int = windows.VIDEO_FPS) -> int:
  """Frames the reference generates for F mel frames (its chunk loop's length)."""
  spec = dataclasses.replace(MEL_SPEC, fps=fps)
  return len(windows.inference_chunk_starts(num_mel_frames, spec))


def mel_chunk_starts(num_mel_frames: int, num_frames: int, fps: int = windows.VIDEO_FPS, *,
                     clip_id: str = "audio") -> np.ndarray:
  """Start mel frame of each output frame's 16-frame chunk, [num_frames] int64.

  min(int(i * 80 / fps), F - 16): the reference's chunks, then the final chunk repeated.

  Raises:
    ValueError: fewer than 16 mel frames.
  """
  spec = dataclasses.replace(MEL_SPEC, fps=fps)
  if num_mel_frames < spec.window:
    raise ValueError(f"{clip_id}: audio too short: {num_mel_frames} mel frames, one chunk needs "
                     f"{spec.window}")
  return np.minimum(windows.window_starts(np.arange(num_frames), spec),
                    num_mel_frames - spec.window)


def min_audio_samples() -> int:
  """Fewest 16 kHz samples with one full mel chunk: 1 + N // hop >= 16."""
  return (MEL_SPEC.window - 1) * MEL_SPEC.hop_length


def audio_chunks(audio: np.ndarray, fps: int = windows.VIDEO_FPS, *, silence_db: float = -60.0,
                 clip_id: str = "audio") -> np.ndarray:
  """Mel chunks [T, 80, 16] of 16 kHz mono audio [N], one per output frame.

  Raises:
    windows.SilentAudioError: the audio is silent.
    ValueError: the audio is not 1-D, or shorter than one mel chunk.
  """
  audio = np.asarray(audio)
  if audio.ndim != 1:
    raise ValueError(f"{clip_id}: expected mono audio [N], got shape {audio.shape}")
  if audio.shape[0] < min_audio_samples():
    raise ValueError(f"{clip_id}: audio too short: {audio.shape[0]} samples "
                     f"({audio.shape[0] / windows.SAMPLE_RATE:.3f} s) at 16 kHz; Wav2Lip needs one "
                     f"mel window of {MEL_SPEC.window} frames ({min_audio_samples()} samples)")
  windows.check_not_silent(audio, clip_id=clip_id, threshold_db=silence_db)
  mel = mel_lib.mel_spectrogram(audio, mel_lib.WAV2LIP_MEL, clip_id=clip_id)    # [80, F]
  starts = mel_chunk_starts(mel.shape[1], output_frame_count(audio.shape[0], fps), fps,
                            clip_id=clip_id)
  windows_view = np.lib.stride_tricks.sliding_window_view(mel, MEL_SPEC.window, axis=1)
  return windows_view.transpose(1, 0, 2)[starts]                                # [T, 80, 16]


# ------------------------------------------------------------------------------ video


def frame_order(num_frames: int, num_video_frames: int, loop: str = "plain") -> np.ndarray:
  """Source video frame of each output frame, [num_frames] int64."""
  if num_video_frames < 1:
    raise ValueError(f"frame_order: the video has no frames ({num_video_frames})")
  i = np.arange(num_frames, dtype=np.int64)
  if loop == "plain" or num_video_frames == 1:
    return i % num_video_frames
  if loop != "pingpong":
    raise ValueError(f"frame_order: loop must be one of {LOOP_MODES}, got {loop!r}")
  period = 2 * num_video_frames - 2
  j = i % period
  return np.where(j < num_video_frames, j, period - j)


def face_source(system: str, video: str | None, options: dict[str, str]) -> str:
  """The image or video a one-shot generator takes the identity from: `--face`, else `--video`.

  Raises:
    ValueError: neither is given (the message names `--system=<system>`).
    FileNotFoundError: the file does not exist.
  """
  face = options.get("face") or video
  if not face:
    raise ValueError(f"--system={system} needs --face (an image or a video of the identity; "
                     "--video also serves)")
  if not os.path.isfile(face):
    raise FileNotFoundError(f"--face {face} does not exist")
  return face


def read_frames(path: PathLike, max_frames: int, fps: int) -> video_io.FrameFile:
  """The first `max_frames` frames of a video at `fps`, RGB uint8 [V, H, W, 3], kept on disk."""
  # Closing the generator stops ffmpeg once enough frames are read.
  with contextlib.closing(video_io.iter_frames(path, fps=fps)) as frames:
    return video_io.FrameFile(itertools.islice(frames, max_frames))


def face_boxes(frames: np.ndarray | video_io.FrameFile, options: Options, *,
               clip_id: str = "video") -> np.ndarray:
  """The box [V, 4] each frame's face is cut from and pasted back into (see module docstring).

  Raises:
    FaceNotFoundError: "detect" found no face in some frame (the first one is named).
  """
  num, height, width = frames.shape[:3]
  if options.box == "full":
    return np.tile(np.asarray([0, 0, width, height], np.float32), (num, 1))
  if options.box != "detect":
    return np.tile(np.asarray(options.box, np.float32), (num, 1))
  track = detect_lib.track_faces(frames, detect_lib.make_detector(options.detector))
  if not track.found.all():
    missing = np.flatnonzero(~track.found)
    raise FaceNotFoundError(
        f"{clip_id}: no face in frame {missing[0]} ({len(missing)} of {num} frames without a "
        f"face, detector {options.detector!r}); pass a static box x0,y0,x1,y1, or 'full' when "
        "the frames are face crops")
  boxes = crop_lib.pad_boxes(track.boxes, options.pads)
  boxes = np.clip(boxes, 0, np.asarray([width, height, width, height], np.float32))
  return crop_lib.smooth_boxes(boxes, options.smoothing)


@dataclasses.dataclass(frozen=True)
class Inputs:
  """What the audio and the video give, before any network.

  Attributes:
    audio: [N] float32 at 16 kHz, the output's sound track.
    mel_chunks: [T, 80, 16] one Wav2Lip mel window per output frame.
    frames: [V, H, W, 3] RGB uint8 source frames (the first V of the video, V <= T): an array,
      or a `video_io.FrameFile` on disk when read from a file (`prepare`).
    boxes: [V, 4] face box of each source frame.
    order: [T] source frame of each output frame.
    fps: frame rate.
    image_size: S, the side of the face crops the first network takes.
    conditions: [T, ...] a system's own per-output-frame conditions (e.g. FD2Talk's motion),
      sliced with each chunk as `mel_chunks` is; None when the system has none.
  """
  audio: np.ndarray
  mel_chunks: np.ndarray
  frames: np.ndarray | video_io.FrameFile
  boxes: np.ndarray
  order: np.ndarray
  fps: int
  image_size: int
  conditions: np.ndarray | None = None

  @property
  def num_frames(self) -> int:
    return int(self.order.shape[0])

  @functools.cached_property
  def crops(self) -> np.ndarray:
    """[V, S, S, 3] RGB uint8 face crops at the generator's size (computed on first use)."""
    return crop_lib.crop_faces(self.frames, self.boxes, self.image_size)   # frame by frame


def _inputs(audio: np.ndarray, chunks: np.ndarray, frames: np.ndarray | video_io.FrameFile,
            image_size: int, options: Options, video_id: str) -> Inputs:
  boxes = face_boxes(frames, options, clip_id=video_id)
  order = frame_order(chunks.shape[0], len(frames), options.loop)
  return Inputs(np.asarray(audio, np.float32), chunks, frames, boxes, order, options.fps,
                int(image_size))


def prepare_arrays(audio: np.ndarray, frames: np.ndarray, image_size: int, options: Options, *,
                   audio_id: str = "audio", video_id: str = "video") -> Inputs:
  """Inputs from 16 kHz mono audio [N] and RGB uint8 frames [V', H, W, 3] at `options.fps`
  (only the first T are used); `audio_id` and `video_id` name them in errors."""
  chunks = audio_chunks(audio, options.fps, silence_db=options.silence_db, clip_id=audio_id)
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
    raise ValueError(f"{video_id}: expected RGB uint8 frames [V, H, W, 3], got {frames.dtype} "
                     f"{frames.shape}")
  return _inputs(audio, chunks, frames[:chunks.shape[0]], image_size, options, video_id)


def prepare(audio_path: PathLike, video_path: PathLike, image_size: int,
            options: Options) -> Inputs:
  """Inputs from an audio file (any format ffmpeg reads; a video's sound track too) and an
  identity video, decoded at `options.fps`: only its first T frames, into a temporary file
  (`video_io.FrameFile`: they cost disk, not memory).

  Raises:
    FileNotFoundError, audio_io.MediaError (video_io.VideoError): a file is missing or
      unreadable (or, for the audio, has no audio stream).
    windows.SilentAudioError, ValueError, FaceNotFoundError: see `audio_chunks`, `face_boxes`.
  """
  audio = audio_io.load_audio(audio_path, sample_rate=windows.SAMPLE_RATE)
  # The audio is checked before the (slower) video decode.
  chunks = audio_chunks(audio, options.fps, silence_db=options.silence_db,
                        clip_id=os.fspath(audio_path))
  frames = read_frames(video_path, chunks.shape[0], options.fps)
  return _inputs(audio, chunks, frames, image_size, options, os.fspath(video_path))


# ------------------------------------------------------------------------------ networks


def batched(fn: Callable[..., Any], make_batch: Callable[[np.ndarray], tuple[Any, ...]],
            count: int, batch_size: int, *,
            on_first_batch: Callable[[float], None] | None = None) -> Any:
  """Runs `fn(*make_batch(indices))` over fixed-size index batches of range(count).

  The last batch is padded by repeating its final index, so `fn` compiles once; each output
  leaf (`fn` may return a pytree) comes back as numpy, concatenated along the batch axis with
  the padding dropped. `on_first_batch` receives the first batch's wall seconds (it includes
  jit compilation on a first call).
  """
  outs = []
  for start in range(0, count, batch_size):
    begin = time.perf_counter()
    index = np.arange(start, min(count, start + batch_size))
    padded = np.pad(index, (0, batch_size - index.size), mode="edge")
    outs.append(jax.tree.map(lambda x, n=index.size: np.asarray(x)[:n], fn(*make_batch(padded))))
    if start == 0 and on_first_batch is not None:
      on_first_batch(time.perf_counter() - begin)
  return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)


def paste_faces(inputs: Inputs, faces: np.ndarray, feather: float) -> np.ndarray:
  """Output frames [T, H, W, 3]: each face [T, S', S', 3] (any S') blended into its source frame."""
  if faces.shape[0] != inputs.num_frames:
    raise ValueError(f"paste_faces: {faces.shape[0]} faces for {inputs.num_frames} frames")
  mask = crop_lib.feather_mask(faces.shape[1], feather)
  out = np.empty((inputs.num_frames, *inputs.frames.shape[1:]), np.uint8)
  for t, source in enumerate(inputs.order):
    out[t] = crop_lib.paste_face(inputs.frames[source], faces[t], inputs.boxes[source], mask=mask)
  return out


# ------------------------------------------------------------------------------ chunks


def chunk_bounds(num_frames: int, chunk_frames: int, batch_size: int) -> list[tuple[int, int]]:
  """[start, stop) of each chunk of output frames: `chunk_frames` rounded up to a multiple of
  `batch_size`, so every chunk but the last is made of full batches and the networks see
  exactly the batches of one pass over all frames (the same outputs, bit for bit)."""
  size = -(-chunk_frames // batch_size) * batch_size
  return [(start, min(start + size, num_frames)) for start in range(0, num_frames, size)]


def chunk_inputs(inputs: Inputs, start: int, stop: int) -> Inputs:
  """The inputs of output frames [start, stop), each with its own source frame (read here: the
  chunk's [c, H, W, 3] are all of the video that is in memory)."""
  order = inputs.order[start:stop]
  conditions = None if inputs.conditions is None else inputs.conditions[start:stop]
  return Inputs(inputs.audio, inputs.mel_chunks[start:stop], inputs.frames[order],
                inputs.boxes[order], np.arange(stop - start), inputs.fps, inputs.image_size,
                conditions)


@dataclasses.dataclass(frozen=True)
class Chunk:
  """Output frames [start, start + c) of a generation.

  Attributes:
    start: the first output frame's index.
    frames: [c, H, W, 3] RGB uint8 output frames.
    faces: [c, S', S', 3] RGB uint8 generated faces that were pasted (the last step's).
    stage_faces: the earlier steps' faces by step name.
  """
  start: int
  frames: np.ndarray
  faces: np.ndarray
  stage_faces: dict[str, np.ndarray]


FaceStep = Callable[..., np.ndarray]


@dataclasses.dataclass(frozen=True)
class Stream:
  """A generation that runs as its chunks are consumed: memory holds one chunk of frames.

  Attributes:
    inputs: what the audio and video gave.
    chunks: the `Chunk`s in order (an iterator: consuming it does the work).
    seconds: wall time per step (see `run`), complete once `chunks` is exhausted.
  """
  inputs: Inputs
  chunks: Iterator[Chunk]
  seconds: dict[str, float]

  @property
  def audio(self) -> np.ndarray:
    return self.inputs.audio

  @property
  def fps(self) -> int:
    return self.inputs.fps

  @property
  def num_frames(self) -> int:
    return self.inputs.num_frames

  def frame_chunks(self) -> Iterator[np.ndarray]:
    """The output frames chunk by chunk, [c, H, W, 3] uint8 (holding no earlier chunk)."""
    return map(operator.attrgetter("frames"), self.chunks)


def _make_chunk(inputs: Inputs, start: int, stop: int, steps: Sequence[tuple[str, FaceStep]],
                options: Options, seconds: dict[str, float]) -> Chunk:
  begin = time.perf_counter()
  source = chunk_inputs(inputs, start, stop)
  _ = source.crops   # cut here, so that "source" has their time and not the first network
  seconds["source"] += time.perf_counter() - begin
  faces: Any = source
  stage_faces: dict[str, np.ndarray] = {}
  for i, (name, fn) in enumerate(steps):
    begin = time.perf_counter()
    first = (lambda s, n=name: seconds.update({f"{n}_first_batch": s})) if start == 0 else None
    out = fn(faces, on_first_batch=first)
    seconds[name] += time.perf_counter() - begin
    if i < len(steps) - 1:
      stage_faces[name] = out
    faces = out
  begin = time.perf_counter()
  frames = paste_faces(source, faces, options.feather)
  seconds["paste"] += time.perf_counter() - begin
  return Chunk(start, frames, faces, stage_faces)


def _generate_chunks(inputs: Inputs, steps: Sequence[tuple[str, FaceStep]], options: Options,
                     seconds: dict[str, float]) -> Iterator[Chunk]:
  for name in ("source", *(name for name, _ in steps), "paste"):
    seconds[name] = 0.0
  for start, stop in chunk_bounds(inputs.num_frames, options.chunk_frames, options.batch_size):
    # Made by a function: this generator keeps no chunk's arrays while the next one is made.
    yield _make_chunk(inputs, start, stop, steps, options, seconds)


def stream(inputs: Inputs, steps: Sequence[tuple[str, FaceStep]],
           options: Options = Options()) -> Stream:
  """Face crops through a system's networks, pasted back into the source frames, chunk by chunk
  (`chunk_bounds`).

  `steps` are (name, fn) in order: the first maps a chunk's inputs (`chunk_inputs`) to faces,
  `fn(inputs, on_first_batch=...)`, each later one maps the previous faces to new ones,
  `fn(faces, on_first_batch=...)` (e.g. LaDTalk's SOVQAE after Wav2Lip); the last step's faces
  (any square size) are pasted. `Stream.seconds` gets each step's wall time, its
  "<name>_first_batch" (from the first chunk: jit compilation included), "source" (reading
  and cropping the source frames) and "paste".
  """
  if not steps:
    raise ValueError("stream: a system needs at least one face step")
  seconds: dict[str, float] = {}
  return Stream(inputs, _generate_chunks(inputs, steps, options, seconds), seconds)


@dataclasses.dataclass(frozen=True)
class Result:
  """A generated video before encoding.

  Attributes:
    frames: [T, H, W, 3] RGB uint8 output frames.
    faces: [T, S', S', 3] RGB uint8 generated face crops that were pasted (the system's last stage).
    inputs: what the audio and video gave.
    stage_faces: intermediate face crops by stage name (e.g. LaDTalk's "wav2lip").
    seconds: wall time per step (see `stream`).
  """
  frames: np.ndarray
  faces: np.ndarray
  inputs: Inputs
  stage_faces: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  seconds: dict[str, float] = dataclasses.field(default_factory=dict)

  @property
  def audio(self) -> np.ndarray:
    """[N] 16 kHz sound track."""
    return self.inputs.audio

  @property
  def fps(self) -> int:
    return self.inputs.fps


def run(inputs: Inputs, steps: Sequence[tuple[str, FaceStep]],
        options: Options = Options()) -> Result:
  """`stream` with every chunk kept: the whole video in memory, for callers that need arrays
  (tests, evaluation); `Result.stage_faces` keeps every earlier step's faces by name."""
  generation = stream(inputs, steps, options)
  chunks = list(generation.chunks)
  return Result(np.concatenate([c.frames for c in chunks]),
                np.concatenate([c.faces for c in chunks]), inputs,
                {name: np.concatenate([c.stage_faces[name] for c in chunks])
                 for name in chunks[0].stage_faces},
                generation.seconds)


def write_mp4(path: PathLike, result: Result | Stream) -> os.PathLike[str]:
  """Encodes the frames (of a `Result`, or of a `Stream` as its chunks are made) with the audio
  (16 kHz mono, AAC) into an mp4."""
  with video_io.VideoWriter(path, fps=result.fps, audio=result.audio,
                            sample_rate=windows.SAMPLE_RATE) as writer:
    writer.write_chunks(result.frame_chunks() if isinstance(result, Stream) else [result.frames])
  return writer.path

"""RADIO inference: one reference frame + any-length audio -> dubbed faces pasted into the source.

Dimension legend: T output frames, V source frames, S the generator's face size, M = 80 mel
bins, F = 20 mel frames.

  face source  `--face`: an image (one frame, repeated for every output frame) or a video (its
               frames, looped when the audio outlasts it); `--video` serves when `--face` is
               not given. Faces are found, cropped to S, pasted back and encoded by the shared
               video module (`video_inference`: `--box`, `--pads`, `--feather`, chunks).
  reference    the crop of the source's first frame, for every output frame (PAPER §3, the
               evaluation protocol: one reference frame).
  audio        RADIO's log-mel (`audio.mel.RADIO_MEL`, 100 frames/s); output frame t takes the
               20-frame window of frame t - 1, as the generator trained (`pipelines.clips`'
               frame_shift), clamped to the audio's first and last windows, so any length works.
  generator    per frame: the crop with its lower half masked, the reference, the window ->
               `radio.dub_faces` (no StyleGAN2 noise), rounded to uint8.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable

import cv2
import jax
import numpy as np

from talking_heads.audio import mel as mel_lib
from talking_heads.audio import windows
from talking_heads.face import crop as crop_lib
from talking_heads.io import audio as audio_io
from talking_heads.models import radio as radio_lib
from talking_heads.systems import api
from talking_heads.systems import video_inference
from talking_heads.systems.radio import radio as radio_stage

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
FRAME_SHIFT = -1   # as `pipelines.clips.RADIO_AUDIO`


@dataclasses.dataclass(frozen=True)
class RadioModel:
  """A trained RADIO generator: its module, variables ({"params"}), face size S and source."""
  module: radio_lib.RadioGenerator
  variables: Any
  image_size: int
  source: str


def load_radio(workdir: str, step: int | None = None) -> RadioModel:
  """The generator of a trained `radio` workdir (no frozen network is loaded).

  Raises:
    FileNotFoundError: not a trained workdir.
    ValueError: the workdir trained another stage.
  """
  module, variables, config, source = video_inference.restore_network(
      workdir, radio_lib.RadioGenerator, radio_stage.STAGE, step)
  return RadioModel(module, variables, int(config.data.image_size), source)


def mel_windows(audio: np.ndarray, num_frames: int, fps: int = windows.VIDEO_FPS, *,
                clip_id: str = "audio") -> np.ndarray:
  """RADIO's mel window of each of `num_frames` output frames, [T, 80, 20] (module docstring).

  Raises:
    ValueError: the audio has fewer than 20 mel frames.
  """
  spec = dataclasses.replace(windows.RADIO_WINDOWS, fps=fps)
  mel = mel_lib.mel_spectrogram(np.asarray(audio, np.float32), mel_lib.RADIO_MEL,
                                clip_id=clip_id)                                 # [80, F']
  if mel.shape[1] < spec.window:
    raise ValueError(f"{clip_id}: audio too short for RADIO: {mel.shape[1]} mel frames, one "
                     f"window needs {spec.window}")
  frames = np.maximum(np.arange(num_frames) + FRAME_SHIFT, 0)
  starts = np.minimum(windows.window_starts(frames, spec), mel.shape[1] - spec.window)
  return np.stack([mel[:, s:s + spec.window] for s in starts])                   # [T, 80, 20]


def is_image(path: str) -> bool:
  return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES


def read_image(path: str) -> np.ndarray:
  """An image file -> RGB uint8 [1, H, W, 3] (one source frame)."""
  image = cv2.imread(path, cv2.IMREAD_COLOR)
  if image is None:
    raise ValueError(f"--face {path}: not a readable image")
  return image[None, ..., ::-1].copy()


def with_mel_windows(inputs: video_inference.Inputs, options: video_inference.Options,
                     audio_id: str) -> video_inference.Inputs:
  """The shared module's inputs with RADIO's mel windows in place of Wav2Lip's chunks."""
  mels = mel_windows(inputs.audio, inputs.num_frames, options.fps, clip_id=audio_id)
  return dataclasses.replace(inputs, mel_chunks=mels)


def prepare(audio_path: str, face_path: str, image_size: int,
            options: video_inference.Options) -> video_inference.Inputs:
  """RADIO's inputs (`with_mel_windows`) from an audio file and an image or video file."""
  if is_image(face_path):
    audio = audio_io.load_audio(audio_path, sample_rate=windows.SAMPLE_RATE)
    return prepare_arrays(audio, read_image(face_path), image_size, options,
                          audio_id=audio_path, video_id=face_path)
  inputs = video_inference.prepare(audio_path, face_path, image_size, options)
  return with_mel_windows(inputs, options, audio_path)


def prepare_arrays(audio: np.ndarray, frames: np.ndarray, image_size: int,
                   options: video_inference.Options, *, audio_id: str = "audio",
                   video_id: str = "video") -> video_inference.Inputs:
  """RADIO's inputs from 16 kHz audio [N] and RGB uint8 source frames [V, H, W, 3]."""
  inputs = video_inference.prepare_arrays(audio, frames, image_size, options, audio_id=audio_id,
                                          video_id=video_id)
  return with_mel_windows(inputs, options, audio_id)


def reference_crop(inputs: video_inference.Inputs, frame: np.ndarray | None = None) -> np.ndarray:
  """The crop of the source's first frame (or of `frame` [H, W, 3], an image of the source's size,
  in the first frame's box), uint8 [S, S, 3]."""
  first = np.asarray(inputs.frames[:1])
  if frame is not None:
    if np.shape(frame) != first.shape[1:]:
      raise ValueError(f"reference frame {np.shape(frame)} differs from the source frames "
                       f"{first.shape[1:]}")
    first = np.asarray(frame, np.uint8)[None]
  return crop_lib.crop_faces(first, inputs.boxes[:1], inputs.image_size)[0]


@functools.lru_cache(maxsize=8)
def _dub_fn(module: radio_lib.RadioGenerator) -> Callable[..., jax.Array]:
  return jax.jit(functools.partial(radio_stage.dub_faces, module))


def radio_step(model: RadioModel, reference: np.ndarray, batch_size: int
               ) -> video_inference.FaceStep:
  """RADIO's face step for `video_inference.stream` / `run`: a chunk's inputs -> faces uint8
  [c, S, S, 3] (the weights put on the device once)."""
  fn, variables = _dub_fn(model.module), jax.device_put(model.variables)

  def step(inputs: video_inference.Inputs, *,
           on_first_batch: Callable[[float], None] | None = None) -> np.ndarray:
    if inputs.image_size != model.image_size:
      raise ValueError(f"crops are {inputs.image_size} px but the generator ({model.source}) "
                       f"takes {model.image_size} px")

    def make_batch(index: np.ndarray) -> tuple[Any, ...]:
      faces = inputs.crops[inputs.order[index]]
      return (variables, faces, np.broadcast_to(reference, faces.shape),
              inputs.mel_chunks[index])

    faces = video_inference.batched(fn, make_batch, inputs.num_frames, batch_size,
                                    on_first_batch=on_first_batch)
    return np.clip(np.rint(faces * 255.0), 0, 255).astype(np.uint8)

  return step


def run(model: RadioModel, inputs: video_inference.Inputs,
        options: video_inference.Options = video_inference.Options()) -> video_inference.Result:
  """RADIO on prepared inputs (`prepare`), in memory."""
  step = radio_step(model, reference_crop(inputs), options.batch_size)
  return video_inference.run(inputs, [("radio", step)], options)


# ------------------------------------------------------------------------------ entry


def check_request(audio: str, video: str | None, options: dict[str, str]) -> None:
  """The face source exists and, when an image, is readable (before any network loads)."""
  del audio
  face = video_inference.face_source("radio", video, options)
  if is_image(face):
    read_image(face)


def load_generator(weights: dict[str, str | None],
                   options: dict[str, str]) -> api.LoadedGenerator:
  """The `radio` inference entry (`SYSTEM.generators`)."""
  if not weights.get("radio_workdir"):
    raise ValueError("--system=radio needs --radio_workdir (a trained 'radio' workdir)")
  model = load_radio(weights["radio_workdir"])

  def generate(audio: str, video: str | None,
               video_options: video_inference.Options) -> video_inference.Stream:
    face = video_inference.face_source("radio", video, options)
    inputs = prepare(audio, face, model.image_size, video_options)
    step = radio_step(model, reference_crop(inputs), video_options.batch_size)
    return video_inference.stream(inputs, [("radio", step)], video_options)

  return api.LoadedGenerator(generate, {"radio": model.source})

r"""Generates a talking-head mp4 from speech (and an identity video) with any trained system.

  python -m experiments.generate --system=ladtalk --audio=speech.wav --video=identity.mp4 \
      --out=out.mp4 --wav2lip_workdir=runs/wav2lip --sovqae_workdir=runs/sovqae
  python -m experiments.generate --system=wav2lip --audio=speech.m4a --video=identity.mp4 \
      --out=out.mp4 --wav2lip_checkpoint=weights/wav2lip_gan.pth
  python -m experiments.generate --system=wav2lip ... --box=full        # frames are face crops
  python -m experiments.generate --system=dae_talker --audio=speech.wav --out=out.mp4 \
      --dae_workdir=runs/dae_demo --speech2latent_workdir=runs/speech2latent_demo \
      [--pose=natural|yaw=10,pitch=0,roll=0|poses.npy] [--noise=shared|independent]
  python -m experiments.generate --system=radio --face=face.png --audio=speech.wav \
      --out=out.mp4 --radio_workdir=runs/radio_demo   # --face: an image or a video; one reference
  python -m experiments.generate --system=pir --audio=speech.wav --out=out.mp4 \
      --target_clip=runs/main/corpus:<clip id> --pir_audio2exp_workdir=runs/pir_audio2exp_demo \
      --pir_renderer_workdir=runs/pir_renderer_demo [--pose=yaw=15,pitch=0,roll=0]
  python -m experiments.generate --system=fd2talk --face=face.png --audio=speech.wav \
      --out=out.mp4 --fd2talk_expression_workdir=runs/fd2talk_expression_demo \
      --fd2talk_pose_workdir=runs/fd2talk_pose_demo \
      --fd2talk_unet_workdir=runs/fd2talk_unet_demo [--seed=N]   # another seed, another head motion

`--system` is any inference entry a system package declares (`talking_heads.systems.api`:
`SYSTEM.generators`); each entry's weights (trained workdirs or public files) and own options
become flags, so a new system adds none here. Missing weights are an error naming the file;
nothing runs with random weights.

Audio: any file ffmpeg reads (a video's sound track too), resampled to 16 kHz mono; the output
is as long as the audio, looping the video when the audio is longer
(`talking_heads.systems.video_inference`). Face boxes (`--box`): "detect" (OpenCV Haar, padded
by `--pads`, smoothed), "full" (the whole frame, for datasets of face crops such as the
synthetic corpus), or a static x0,y0,x1,y1.

Bad inputs are reported before any network loads: a missing or unreadable --audio / --video, an
--out that is a directory or whose directory does not exist or is not writable, and the
entry's own checks (e.g. DAE-Talker's --noise=reference needs --video). Frames go to the
encoder as they are made, --chunk_frames at a time (`talking_heads.io.video.VideoWriter`): memory
is bounded by the chunk and the frame size, not by the audio's length; the mp4 appears at --out
only once complete.

Prints the output's frame count and generation speed: frames/s end to end (reading the inputs to
the written mp4, jit compilation included, which dominates short clips) and of each network after
its first batch (steady state). `generate(request)` is the same as a function.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any, Mapping

from absl import app, flags

from talking_heads import compilation_cache
from talking_heads.audio import windows
from talking_heads.io import video as video_io
from talking_heads.systems import api
from talking_heads.systems import video_inference

Options = video_inference.Options


@dataclasses.dataclass(frozen=True)
class Request:
  """One generation.

  Attributes:
    system: an inference entry's name (`api.generators()`).
    audio: the driving speech (any ffmpeg-readable file).
    video: the identity video (entries with `needs_video`), or an optional reference.
    out: the mp4 to write.
    weights: the entry's weights arguments (e.g. {"wav2lip_workdir": ...}).
    system_options: the entry's own options (strings; e.g. {"pose": "natural"}).
    options: face boxes, batching, paste-back and looping.
  """
  system: str
  audio: str
  video: str | None
  out: str
  weights: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
  system_options: Mapping[str, str] = dataclasses.field(default_factory=dict)
  options: Options = Options()


@dataclasses.dataclass(frozen=True)
class Generation:
  """What `generate` made: what the system's generator returned (a stream is consumed by then:
  its frames are in the mp4) and a JSON-able summary."""
  result: Any
  summary: dict[str, Any]


def network_speeds(seconds: dict[str, float], num_frames: int,
                   batch_size: int) -> dict[str, float]:
  """Frames/s of each network after its first batch (which includes jit compilation), for the
  networks that ran more than one batch."""
  speeds = {}
  for name, first in seconds.items():
    if not name.endswith("_first_batch") or num_frames <= batch_size:
      continue
    network = name[:-len("_first_batch")]
    rest = seconds[network] - first
    speeds[network] = round((num_frames - batch_size) / rest, 2) if rest > 0 else float("inf")
  return speeds


def _check_readable(path: str, what: str) -> None:
  if not os.path.isfile(path):
    state = "is a directory, not a file" if os.path.isdir(path) else "does not exist"
    raise FileNotFoundError(f"{what} {path} {state}")
  try:
    with open(path, "rb") as f:
      f.read(1)
  except OSError as e:
    raise ValueError(f"{what} {path} is not readable ({e.strerror})") from None


def check_paths(request: Request) -> None:
  """The files a request names, before any network loads: the audio (and video) exist and are
  readable; `out` is not a directory and its directory exists and is writable.

  Raises:
    FileNotFoundError, ValueError: naming the path.
  """
  _check_readable(request.audio, "--audio")
  if request.video is not None:
    _check_readable(request.video, "--video")
  out = os.path.abspath(request.out)
  if os.path.isdir(out):
    raise ValueError(f"--out {request.out} is a directory; give the mp4 file to write")
  folder = os.path.dirname(out)
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"--out {request.out}: its directory {folder} does not exist")
  if not os.access(folder, os.W_OK | os.X_OK):
    raise ValueError(f"--out {request.out}: its directory {folder} is not writable")


def generate(request: Request) -> Generation:
  """Checks the request, loads the system's networks, generates and writes `request.out` (mp4
  with the audio), frames going to the encoder as the generator makes them."""
  entries = api.generators()
  if request.system not in entries:
    raise ValueError(f"unknown system {request.system!r}; choose one of {sorted(entries)}")
  entry = entries[request.system]
  if entry.needs_video and request.video is None:
    raise ValueError(f"--system={request.system} needs --video (the identity video)")
  check_paths(request)
  options = {name: request.system_options.get(name, default)
             for name, (default, _) in entry.options.items()}
  entry.checker()(request.audio, request.video, options)
  start = time.perf_counter()
  weights = {name: request.weights.get(name) for name in entry.weights}
  system = entry.loader()(weights, {**options, "batch_size": str(request.options.batch_size)})
  loaded = time.perf_counter()
  video = system.generate(request.audio, request.video, request.options)
  with video_io.VideoWriter(request.out, fps=video.fps, audio=video.audio,
                            sample_rate=windows.SAMPLE_RATE) as writer:
    writer.write_chunks(api.frame_chunks(video))
  done = time.perf_counter()
  num_frames = writer.num_frames
  batch_size = system.batch_size or request.options.batch_size
  summary = {
      "system": request.system, "out": os.fspath(request.out), "frames": num_frames,
      "fps": video.fps, "size": list(writer.frame_size),
      "audio_seconds": round(video.audio.shape[0] / windows.SAMPLE_RATE, 3),
      "sources": dict(system.sources),
      "seconds": {"load": round(loaded - start, 3), "generate": round(done - loaded, 3),
                  **{k: round(v, 3) for k, v in video.seconds.items()}},
      "frames_per_second": {"end_to_end": round(num_frames / (done - loaded), 2),
                            **network_speeds(video.seconds, num_frames, batch_size)},
  }
  return Generation(video, summary)


FLAGS = flags.FLAGS


def _system_arguments() -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
  """Every entry's weights and own options (name -> help / (default, help)), merged by name: an
  option several entries take (e.g. --pose) keeps one default, and its help says each one's."""
  weights: dict[str, str] = {}
  options: dict[str, tuple[str, str]] = {}
  for entry in api.generators().values():
    weights.update(entry.weights)
    for name, (default, help_text) in entry.options.items():
      if name not in options:
        options[name] = (default, help_text)
        continue
      first_default, first_help = options[name]
      if default != first_default:
        raise ValueError(f"option --{name} defaults to {first_default!r} in one generator and "
                         f"to {default!r} in {entry.name!r}: shared options share a default")
      options[name] = (first_default, f"{first_help} {help_text}")
  return weights, options


def define_flags() -> None:
  """The command's flags (only when run as a program: the module is also imported)."""
  flags.DEFINE_enum("system", None, sorted(api.generators()), "The talking-head system.")
  flags.DEFINE_string("audio", None, "Driving speech: any file ffmpeg reads.")
  flags.DEFINE_string("video", None, "Identity video.")
  flags.DEFINE_string("out", None, "Output mp4.")
  weights, options = _system_arguments()
  for name, help_text in weights.items():
    flags.DEFINE_string(name, None, help_text)
  for name, (default, help_text) in options.items():
    flags.DEFINE_string(name, default, help_text)
  flags.DEFINE_string("box", "detect", "'detect', 'full' (whole frame) or x0,y0,x1,y1.")
  flags.DEFINE_string("detector", "haar", "Face detector backend for --box=detect.")
  flags.DEFINE_string("pads", "0,10,0,0", "Detected box padding top,bottom,left,right.")
  flags.DEFINE_integer("smoothing", video_inference.REFERENCE_SMOOTHING,
                       "Frames in the box moving average (1: off).")
  flags.DEFINE_integer("batch_size", 16, "Frames per network call.")
  flags.DEFINE_integer("chunk_frames", Options.chunk_frames,
                       "Frames generated and encoded at a time (rounded up to a multiple of "
                       "--batch_size): with the frame size, it bounds memory, whatever the "
                       "audio's length.")
  flags.DEFINE_float("feather", 0.1, "Paste-back feather as a fraction of the crop.")
  flags.DEFINE_enum("loop", "plain", video_inference.LOOP_MODES,
                    "Frame order when the audio outlasts the video.")
  flags.DEFINE_integer("fps", 25, "Output frame rate (the video is resampled to it).")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for name in ("system", "audio", "out"):
    if FLAGS[name].value is None:
      raise app.UsageError(f"--{name} is required")
  weights, options = _system_arguments()
  compilation_cache.enable()
  try:
    request = Request(
        system=FLAGS.system, audio=FLAGS.audio, video=FLAGS.video, out=FLAGS.out,
        weights={name: FLAGS[name].value for name in weights},
        system_options={name: FLAGS[name].value for name in options},
        options=Options(fps=FLAGS.fps, box=FLAGS.box, detector=FLAGS.detector, pads=FLAGS.pads,
                        smoothing=FLAGS.smoothing, batch_size=FLAGS.batch_size,
                        chunk_frames=FLAGS.chunk_frames, feather=FLAGS.feather,
                        loop=FLAGS.loop))
    summary = generate(request).summary
  except (FileNotFoundError, ValueError) as e:   # bad input: the message says what and where
    sys.exit(f"generate: {e}")
  speed = dict(summary["frames_per_second"])
  seconds = summary["seconds"]
  print(f"wrote {summary['out']}: {summary['frames']} frames at {summary['fps']} fps "
        f"({summary['audio_seconds']} s of audio), {summary['size'][1]}x{summary['size'][0]}")
  print(f"generation: {speed.pop('end_to_end')} frames/s end to end ({seconds['generate']} s "
        f"after {seconds['load']} s of loading)")
  for name, value in speed.items():
    print(f"  {name}: {value} frames/s after its first batch "
          f"({seconds[name + '_first_batch']} s, with jit compilation)")
  print("weights: " + ", ".join(f"{k} = {v}" for k, v in summary["sources"].items()))


if __name__ == "__main__":
  define_flags()
  app.run(main)

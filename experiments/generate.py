r"""Generates a talking-head mp4 from speech and an identity video with a trained system.

  python -m experiments.generate --system=ladtalk --audio=speech.wav --video=identity.mp4 \
      --out=out.mp4 --wav2lip_workdir=runs/wav2lip --sovqae_workdir=runs/sovqae
  python -m experiments.generate --system=wav2lip --audio=speech.m4a --video=identity.mp4 \
      --out=out.mp4 --wav2lip_checkpoint=weights/wav2lip_gan.pth
  python -m experiments.generate --system=wav2lip ... --box=full        # frames are face crops
  python -m experiments.generate --system=dae_talker --audio=speech.wav --out=out.mp4 \
      --dae_workdir=runs/dae_demo --speech2latent_workdir=runs/speech2latent_demo \
      [--pose=natural|yaw=10,pitch=0,roll=0|poses.npy] [--noise=shared|independent]

Systems (`SYSTEMS`): wav2lip (`talking_heads.systems.wav2lip_pipeline`), ladtalk
(`talking_heads.systems.ladtalk_pipeline`) and dae_talker (`talking_heads.systems.dae_talker_pipeline`:
speech -> latents -> DDIM decoding of every frame from one shared x_T; it needs no video, its
identity is the one its diffusion autoencoder was trained on; --pose in degrees). The Wav2Lip generator comes from a trained workdir
(`--wav2lip_workdir`) or the public `wav2lip.pth` / `wav2lip_gan.pth` (`--wav2lip_checkpoint`,
read without torch by `pretrained.wav2lip`); LaDTalk also needs the identity's SOVQAE workdir.
Missing weights are an error naming the file; nothing runs with random weights.

Audio: any file ffmpeg reads (a video's sound track too), resampled to 16 kHz mono; the output
is as long as the audio, looping the video when the audio is longer. Face boxes (`--box`):
"detect" (OpenCV Haar, padded by `--pads`, smoothed), "full" (the whole frame, for datasets of
face crops such as the synthetic corpus), or a static x0,y0,x1,y1.

Prints the output's frame count and generation speed: frames/s end to end (reading the inputs to
the written mp4, jit compilation included, which dominates short clips) and of each network after
its first batch (steady state). `generate(request)` is the same as a function.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any, Callable

from absl import app, flags

from talking_heads.audio import windows
from talking_heads.io import video as video_io
from talking_heads.models import wav2lip as wav2lip_lib
from talking_heads.pretrained import wav2lip as wav2lip_convert
from talking_heads.systems import dae_talker_pipeline
from talking_heads.systems import ladtalk_pipeline
from talking_heads.systems import wav2lip_pipeline
from third_party import weights as weights_lib

Options = wav2lip_pipeline.Options
Result = wav2lip_pipeline.Result


@dataclasses.dataclass(frozen=True)
class Request:
  """One generation.

  Attributes:
    system: a key of `SYSTEMS`.
    audio: the driving speech (any ffmpeg-readable file).
    video: the identity video (not used by dae_talker).
    out: the mp4 to write.
    wav2lip_workdir: a trained Wav2Lip stage workdir, or
    wav2lip_checkpoint: the public `wav2lip.pth` / `wav2lip_gan.pth` (exactly one of the two).
    sovqae_workdir: the identity's trained SOVQAE workdir (ladtalk).
    dae_workdir, speech2latent_workdir: DAE-Talker's trained stages (dae_talker).
    options: face boxes, batching, paste-back and looping.
    dae_options: pose, DDIM steps, noise sharing and seed (dae_talker).
  """
  system: str
  audio: str
  video: str | None
  out: str
  wav2lip_workdir: str | None = None
  wav2lip_checkpoint: str | None = None
  sovqae_workdir: str | None = None
  dae_workdir: str | None = None
  speech2latent_workdir: str | None = None
  options: Options = Options()
  dae_options: dae_talker_pipeline.Options = dae_talker_pipeline.Options()


@dataclasses.dataclass(frozen=True)
class LoadedSystem:
  """A system's networks, ready to run.

  Attributes:
    generate: (audio path, video path, options) -> a result with `frames` [T, H, W, 3],
      `audio` [N] at 16 kHz, `fps` and `seconds` (network wall times by step).
    sources: where each network's weights come from.
  """
  generate: Callable[[str, str, Options], Any]
  sources: dict[str, str]


def load_wav2lip(workdir: str | None, checkpoint: str | None) -> wav2lip_pipeline.Wav2LipModel:
  """The Wav2Lip generator from a workdir or the public checkpoint (exactly one).

  Raises:
    ValueError: neither or both given.
    weights_lib.MissingWeightsError: the checkpoint file does not exist.
    FileNotFoundError: the workdir has no config or checkpoint.
  """
  if (workdir is None) == (checkpoint is None):
    raise ValueError("the Wav2Lip generator needs exactly one of --wav2lip_workdir (a trained "
                     "workdir) and --wav2lip_checkpoint (wav2lip.pth / wav2lip_gan.pth)")
  if workdir is not None:
    return wav2lip_pipeline.load_wav2lip_workdir(workdir)
  if not os.path.isfile(checkpoint):
    entry = weights_lib.WEIGHTS["wav2lip_gan"]
    raise weights_lib.MissingWeightsError(
        f"missing {checkpoint}: expected Wav2Lip's public generator checkpoint (wav2lip.pth or "
        f"{entry.filename}); get it from {entry.source_url}")
  variables = wav2lip_convert.load_generator(checkpoint)
  # The published generator takes BGR faces (it was trained on cv2-read frames).
  return wav2lip_pipeline.Wav2LipModel(wav2lip_lib.Wav2LipGenerator(), variables, bgr=True,
                                       source=os.fspath(checkpoint))


def _wav2lip_system(request: Request) -> LoadedSystem:
  model = load_wav2lip(request.wav2lip_workdir, request.wav2lip_checkpoint)

  def generate(audio: str, video: str, options: Options) -> Result:
    inputs = wav2lip_pipeline.prepare(audio, video, model.image_size, options)
    return wav2lip_pipeline.run(model, inputs, options)

  return LoadedSystem(generate, {"wav2lip": model.source})


def _ladtalk_system(request: Request) -> LoadedSystem:
  if request.sovqae_workdir is None:
    raise ValueError("--system=ladtalk needs --sovqae_workdir (the identity's trained SOVQAE)")
  wav2lip = load_wav2lip(request.wav2lip_workdir, request.wav2lip_checkpoint)
  sovqae = ladtalk_pipeline.load_sovqae_workdir(request.sovqae_workdir)

  def generate(audio: str, video: str, options: Options) -> Result:
    inputs = wav2lip_pipeline.prepare(audio, video, wav2lip.image_size, options)
    return ladtalk_pipeline.run(wav2lip, sovqae, inputs, options)

  return LoadedSystem(generate, {"wav2lip": wav2lip.source, "sovqae": sovqae.source})


def _dae_talker_system(request: Request) -> LoadedSystem:
  if request.dae_workdir is None or request.speech2latent_workdir is None:
    raise ValueError("--system=dae_talker needs --dae_workdir and --speech2latent_workdir (its "
                     "trained diffusion autoencoder and speech2latent)")
  model = dae_talker_pipeline.load(request.dae_workdir, request.speech2latent_workdir)

  def generate(audio: str, video: str | None, options: Options) -> dae_talker_pipeline.Result:
    del options   # the identity is the autoencoder's; settings are `dae_options`
    # --video, when given, is the reference frame of noise="reference" (its first frame).
    return dae_talker_pipeline.run(model, audio, request.dae_options, reference_path=video)

  return LoadedSystem(generate, model.sources)


# A new system adds its loader here (and its model paths to `Request` and the flags).
SYSTEMS: dict[str, Callable[[Request], LoadedSystem]] = {
    "wav2lip": _wav2lip_system,
    "ladtalk": _ladtalk_system,
    "dae_talker": _dae_talker_system,
}
NEEDS_VIDEO = ("wav2lip", "ladtalk")


@dataclasses.dataclass(frozen=True)
class Generation:
  """What `generate` made: the system's result and a JSON-able summary."""
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


def generate(request: Request) -> Generation:
  """Loads the system's networks, generates and writes `request.out` (mp4 with the audio)."""
  if request.system not in SYSTEMS:
    raise ValueError(f"unknown system {request.system!r}; choose one of {sorted(SYSTEMS)}")
  if request.system in NEEDS_VIDEO and request.video is None:
    raise ValueError(f"--system={request.system} needs --video (the identity video)")
  start = time.perf_counter()
  system = SYSTEMS[request.system](request)
  loaded = time.perf_counter()
  result = system.generate(request.audio, request.video, request.options)
  video_io.write_video_with_audio(request.out, result.frames, result.audio, fps=result.fps,
                                  sample_rate=windows.SAMPLE_RATE)
  done = time.perf_counter()
  num_frames = int(result.frames.shape[0])
  batch_size = (request.dae_options.batch_size if request.system == "dae_talker"
                else request.options.batch_size)
  summary = {
      "system": request.system, "out": os.fspath(request.out), "frames": num_frames,
      "fps": result.fps, "size": list(result.frames.shape[1:3]),
      "audio_seconds": round(result.audio.shape[0] / windows.SAMPLE_RATE, 3),
      "sources": system.sources,
      "seconds": {"load": round(loaded - start, 3), "generate": round(done - loaded, 3),
                  **{k: round(v, 3) for k, v in result.seconds.items()}},
      "frames_per_second": {"end_to_end": round(num_frames / (done - loaded), 2),
                            **network_speeds(result.seconds, num_frames,
                                             batch_size)},
  }
  return Generation(result, summary)


FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (only when run as a program: the module is also imported)."""
  flags.DEFINE_enum("system", None, sorted(SYSTEMS), "The talking-head system.")
  flags.DEFINE_string("audio", None, "Driving speech: any file ffmpeg reads.")
  flags.DEFINE_string("video", None, "Identity video.")
  flags.DEFINE_string("out", None, "Output mp4.")
  flags.DEFINE_string("wav2lip_workdir", None, "Trained Wav2Lip workdir.")
  flags.DEFINE_string(
      "wav2lip_checkpoint", None, "Public wav2lip.pth / wav2lip_gan.pth (instead of a workdir).")
  flags.DEFINE_string("sovqae_workdir", None, "Trained SOVQAE workdir (ladtalk).")
  flags.DEFINE_string("dae_workdir", None, "Trained diffusion-autoencoder workdir (dae_talker).")
  flags.DEFINE_string("speech2latent_workdir", None, "Trained speech2latent workdir (dae_talker).")
  flags.DEFINE_string("pose", "natural", "dae_talker head pose: 'natural' (predicted from the "
                      "speech), 'yaw=..,pitch=..,roll=..' in degrees, or a .npy/.txt/.csv file "
                      "of [T, 3] degrees.")
  flags.DEFINE_enum("noise", "shared", dae_talker_pipeline.NOISE_MODES,
                    "dae_talker: one random x_T for all frames (the paper), one per frame, or "
                    "one inverted from the first frame of --video ('reference').")
  flags.DEFINE_integer("sample_steps", 100, "dae_talker: DDIM steps.")
  flags.DEFINE_integer("seed", 0, "dae_talker: seed of x_T.")
  flags.DEFINE_string("box", "detect", "'detect', 'full' (whole frame) or x0,y0,x1,y1.")
  flags.DEFINE_string("detector", "haar", "Face detector backend for --box=detect.")
  flags.DEFINE_string("pads", "0,10,0,0", "Detected box padding top,bottom,left,right.")
  flags.DEFINE_integer("smoothing", wav2lip_pipeline.REFERENCE_SMOOTHING,
      "Frames in the box moving average (1: off).")
  flags.DEFINE_integer("batch_size", 16, "Frames per network call.")
  flags.DEFINE_float("feather", 0.1, "Paste-back feather as a fraction of the crop.")
  flags.DEFINE_enum("loop", "plain", wav2lip_pipeline.LOOP_MODES,
      "Frame order when the audio outlasts the video.")
  flags.DEFINE_integer("fps", 25, "Output frame rate (the video is resampled to it).")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for name in ("system", "audio", "out"):
    if FLAGS[name].value is None:
      raise app.UsageError(f"--{name} is required")
  try:
    request = Request(
        system=FLAGS.system, audio=FLAGS.audio, video=FLAGS.video, out=FLAGS.out,
        wav2lip_workdir=FLAGS.wav2lip_workdir, wav2lip_checkpoint=FLAGS.wav2lip_checkpoint,
        sovqae_workdir=FLAGS.sovqae_workdir, dae_workdir=FLAGS.dae_workdir,
        speech2latent_workdir=FLAGS.speech2latent_workdir,
        dae_options=dae_talker_pipeline.Options(
            pose=FLAGS.pose, sample_steps=FLAGS.sample_steps, noise=FLAGS.noise,
            batch_size=FLAGS.batch_size, seed=FLAGS.seed),
        options=Options(fps=FLAGS.fps, box=FLAGS.box, detector=FLAGS.detector, pads=FLAGS.pads,
                        smoothing=FLAGS.smoothing, batch_size=FLAGS.batch_size,
                        feather=FLAGS.feather, loop=FLAGS.loop))
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

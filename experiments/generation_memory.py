r"""Peak memory of `experiments.generate` against the audio's length and the frame size.

  python -m experiments.generation_memory --wav2lip_workdir=runs/wav2lip_tiny \
      --workdir=/tmp/generation_memory --minutes=3,10 --sizes=256,512 [--repo=../main]

Writes speech-like audio of each length (harmonics under a syllable-rate envelope, plus noise:
not silent) and a short identity video at each size (smooth moving colour; the face box is a
static centred square, so no detector runs), then runs `python -m experiments.generate
--system=wav2lip` on each pair in a subprocess (under `nice`) from `--repo` (default this
checkout; point it at another checkout to measure another version) and records its peak resident
memory: `os.wait4`'s ru_maxrss, the largest of the Python process and the ffmpeg processes it
started (the Python process is the larger by far). One JSON line per run goes to
`<workdir>/runs.jsonl`; the table is printed as Markdown.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Sequence

import numpy as np
from absl import app, flags

from talking_heads.audio import windows
from talking_heads.io import audio as audio_io
from talking_heads.io import video as video_io

ROOT = pathlib.Path(__file__).resolve().parents[1]


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
  """Mono float32 [N] at 16 kHz: harmonics of 140 Hz under a 3 Hz envelope, plus noise."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * windows.SAMPLE_RATE)) / windows.SAMPLE_RATE
  voice = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 700, 1500), 1))
  envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)
  return (0.2 * envelope * voice + 0.01 * rng.normal(size=t.size)).astype(np.float32)


def identity_video(path: str | os.PathLike, size: int, num_frames: int) -> pathlib.Path:
  """A size x size H.264 video of smooth colour ramps that move from frame to frame."""
  y, x = np.mgrid[0:size, 0:size]
  frames = np.stack([np.stack([(x * 255 // size + 7 * t) % 256, y * 255 // size,
                               np.full_like(x, (40 * t) % 256)], -1) for t in range(num_frames)])
  return video_io.write_video(path, frames.astype(np.uint8))


def centred_box(size: int) -> str:
  """x0,y0,x1,y1 of the centred square half the frame wide."""
  return f"{size // 4},{size // 4},{3 * size // 4},{3 * size // 4}"


def peak_rss(cmd: Sequence[str], cwd: str | os.PathLike, log: str | os.PathLike,
             env: dict[str, str] | None = None) -> tuple[int, float, int]:
  """Runs `cmd` (stdout and stderr to `log`); (exit code, wall seconds, peak RSS in bytes of the
  process and the children it waited for)."""
  start = time.perf_counter()
  with open(log, "wb") as out:
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
  proc.returncode = os.waitstatus_to_exitcode(status)   # reaped here, not by Popen
  return proc.returncode, time.perf_counter() - start, usage.ru_maxrss * 1024   # KiB on Linux


def generate_command(python: str, audio: str, video: str, out: str, workdir: str, size: int,
                     extra: Sequence[str] = ()) -> list[str]:
  return ["nice", "-n", "19", python, "-m", "experiments.generate", "--system=wav2lip",
          f"--audio={audio}", f"--video={video}", f"--out={out}", f"--wav2lip_workdir={workdir}",
          f"--box={centred_box(size)}", *extra]


FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string("wav2lip_workdir", None, "A trained wav2lip workdir (the tiny config's).")
  flags.DEFINE_string("workdir", None, "Where the inputs, outputs, logs and runs.jsonl go.")
  flags.DEFINE_list("minutes", ["3", "10"], "Audio lengths in minutes.")
  flags.DEFINE_list("sizes", ["256", "512"], "Identity video (= output frame) sizes in pixels.")
  flags.DEFINE_float("video_seconds", 2.0, "Identity video length (it loops under the audio).")
  flags.DEFINE_string("repo", str(ROOT), "Checkout whose experiments.generate runs.")
  flags.DEFINE_string("label", "this checkout", "Name of the version measured, for the table.")
  flags.DEFINE_list("extra", [], "More flags for generate, e.g. --chunk_frames=64.")
  flags.mark_flags_as_required(["wav2lip_workdir", "workdir"])


def main(argv: list[str]) -> None:
  del argv
  root = pathlib.Path(FLAGS.workdir)
  root.mkdir(parents=True, exist_ok=True)
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  rows = []
  for minutes in map(float, FLAGS.minutes):
    audio = root / f"speech_{minutes:g}min.wav"
    if not audio.exists():
      audio_io.write_wav(audio, speech_like(60 * minutes))
    for size in map(int, FLAGS.sizes):
      video = root / f"identity_{size}px.mp4"
      if not video.exists():
        identity_video(video, size, int(FLAGS.video_seconds * windows.VIDEO_FPS))
      name = f"{FLAGS.label.replace(' ', '_')}_{minutes:g}min_{size}px"
      out = root / f"{name}.mp4"
      cmd = generate_command(sys.executable, str(audio), str(video), str(out),
                             FLAGS.wav2lip_workdir, size, FLAGS.extra)
      code, seconds, rss = peak_rss(cmd, FLAGS.repo, root / f"{name}.log", env)
      row = {"version": FLAGS.label, "repo": FLAGS.repo, "minutes": minutes, "size": size,
             "extra": FLAGS.extra, "exit_code": code, "seconds": round(seconds, 1),
             "peak_rss_mib": round(rss / 2**20, 1),
             "frames": video_io.probe(out).num_frames if code == 0 else None}
      rows.append(row)
      with open(root / "runs.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
      print(json.dumps(row), flush=True)
  print("\n| version | audio | frame size | peak RSS (MiB) | wall (s) | exit |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['version']} | {r['minutes']:g} min | {r['size']} px | {r['peak_rss_mib']} | "
          f"{r['seconds']} | {r['exit_code']} |")


if __name__ == "__main__":
  define_flags()
  app.run(main)

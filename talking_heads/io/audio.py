"""Audio file I/O: load any audio or video file as mono float32, resample, write WAV.

Waveforms are float32 in [-1, 1]: mono ``[N]`` or multi-channel ``[N, C]`` (N samples, C channels).
Files that libsndfile reads (WAV, FLAC, OGG, ...) are decoded in-process by soundfile; anything
else (mp4, m4a, mp3, mkv, ...) is decoded by the ffmpeg binary bundled with imageio-ffmpeg, which
downmixes and resamples in the same pass. Resampling in Python uses soxr (librosa's default).

This module is also the ffmpeg layer of `talking_heads.io`: `run_ffmpeg` and the error classes
are shared with `talking_heads.io.video`. Silence is not an error here; callers decide.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
from typing import Sequence

import imageio_ffmpeg
import numpy as np
import soundfile as sf
import soxr

from talking_heads.audio.windows import SAMPLE_RATE as DEFAULT_SAMPLE_RATE
from talking_heads.io import atomic


# Extensions tried with soundfile first; on a libsndfile error ffmpeg gets a second try.
_SOUNDFILE_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".aif", ".aiff", ".au", ".w64", ".caf"})
_STDERR_TAIL_LINES = 8

PathLike = str | os.PathLike


class MediaError(ValueError):
  """A media file cannot be decoded or encoded; the message names the file."""

  def __init__(self, path: PathLike, message: str, log: str = ""):
    self.path = os.fspath(path)
    self.log = log  # the end of ffmpeg's log, when ffmpeg reported the problem
    super().__init__(f"{self.path}: {message}")


class NoAudioError(MediaError):
  """Audio was requested from a file that has no audio stream."""


def ffmpeg_exe() -> str:
  """Path of the ffmpeg binary bundled with imageio-ffmpeg (or $IMAGEIO_FFMPEG_EXE)."""
  return imageio_ffmpeg.get_ffmpeg_exe()


def stderr_tail(stderr: bytes | str) -> str:
  """The last lines of an ffmpeg log, for error messages."""
  if isinstance(stderr, bytes):
    stderr = stderr.decode("utf-8", errors="replace")
  lines = [line for line in stderr.strip().splitlines() if line.strip()]
  return "\n".join(lines[-_STDERR_TAIL_LINES:])


def run_ffmpeg(args: Sequence[str | os.PathLike | int], path: PathLike, action: str,
               input_bytes: bytes | None = None, strict: bool = True) -> bytes:
  """Runs ffmpeg quietly (errors only) with `args` and returns its stdout.

  Args:
    args: arguments after the binary, e.g. ``["-i", src, "-f", "f32le", "pipe:1"]``.
    path: the file the call is about, named in errors.
    action: what the call does, for errors (e.g. "cannot decode audio").
    input_bytes: fed to ffmpeg's stdin (for ``-i pipe:0``); None gives it an empty stdin.
    strict: also fail when ffmpeg logs an error but carries on (it exits 0 on, e.g., a
      truncated stream it could partly read).

  Raises:
    MediaError: ffmpeg failed; the message carries the end of its log.
  """
  cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error"]
  if strict:
    cmd.append("-xerror")
  cmd += list(map(str, args))
  proc = subprocess.run(cmd, input=input_bytes, capture_output=True, check=False,
                        stdin=None if input_bytes is not None else subprocess.DEVNULL)
  log = stderr_tail(proc.stderr)
  if proc.returncode != 0 or (strict and log):
    raise MediaError(path, f"{action} (ffmpeg exit {proc.returncode}):\n{log}", log=log)
  return proc.stdout


def check_exists(path: PathLike) -> pathlib.Path:
  """Returns `path` as a Path; FileNotFoundError naming it if it is not a file."""
  path = pathlib.Path(path)
  if not path.is_file():
    what = "is a directory, not a file" if path.is_dir() else "does not exist"
    raise FileNotFoundError(f"{path}: {what}")
  return path


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
  """Resamples `[N]` or `[N, C]` float audio from `orig_sr` to `target_sr` Hz with soxr (HQ)."""
  for name, rate in (("orig_sr", orig_sr), ("target_sr", target_sr)):
    if not isinstance(rate, (int, np.integer)) or rate <= 0:
      raise ValueError(f"{name} must be a positive integer, got {rate!r}")
  audio = np.asarray(audio, dtype=np.float32)
  if audio.ndim not in (1, 2):
    raise ValueError(f"audio must be [N] or [N, C], got shape {audio.shape}")
  if orig_sr == target_sr or audio.shape[0] == 0:
    return audio
  return np.asarray(soxr.resample(audio, int(orig_sr), int(target_sr), quality="HQ"),
                    dtype=np.float32)


def _decode_with_ffmpeg(path: pathlib.Path, sample_rate: int, strict: bool) -> np.ndarray:
  # rematrix_maxval=1 makes the downmix an average (plain `-ac 1` scales stereo by 1/sqrt(2)
  # each, so loud speech would clip). Float PCM avoids requantising decoded lossy audio.
  resample_filter = (f"aresample=out_chlayout=mono:out_sample_rate={sample_rate}"
                     ":rematrix_maxval=1")
  args = ["-i", path, "-map", "0:a:0", "-vn", "-sn", "-af", resample_filter,
          "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]
  try:
    raw = run_ffmpeg(args, path, "cannot decode audio (truncated or corrupt?)", strict=strict)
  except MediaError as e:
    if "matches no streams" in e.log:
      raise NoAudioError(path, "has no audio stream") from None
    raise
  return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def to_int16(audio: np.ndarray) -> np.ndarray:
  """Float audio in [-1, 1] -> int16 as ffmpeg converts it (round(32768 x), clipped); int16 as is."""
  audio = np.asarray(audio)
  if audio.dtype == np.int16:
    return audio
  return np.clip(np.rint(audio.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def load_audio(path: PathLike, sample_rate: int = DEFAULT_SAMPLE_RATE,
               strict: bool = True) -> np.ndarray:
  """Loads the first audio stream of an audio or video file as mono float32 `[N]` in [-1, 1].

  Channels are averaged and the result is resampled to `sample_rate`. Silent or empty audio is
  returned as is. `strict=False` keeps what ffmpeg decodes from a truncated or corrupt file.

  Raises:
    FileNotFoundError: `path` is not a file.
    NoAudioError: the file (e.g. a video) has no audio stream.
    MediaError: the file cannot be decoded.
  """
  if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
    raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
  path = check_exists(path)
  audio = None
  if path.suffix.lower() in _SOUNDFILE_SUFFIXES:
    try:
      data, file_sr = sf.read(path, dtype="float32", always_2d=True)
    except sf.LibsndfileError:
      pass  # e.g. a codec libsndfile lacks; ffmpeg decides below whether the file is readable.
    else:
      audio = resample(data.mean(axis=1), int(file_sr), int(sample_rate))
  if audio is None:
    audio = _decode_with_ffmpeg(path, int(sample_rate), strict)
  # Resampling filters overshoot slightly near full scale; the contract is [-1, 1].
  return np.clip(audio, -1.0, 1.0)


def write_wav(path: PathLike, audio: np.ndarray, sample_rate: int = DEFAULT_SAMPLE_RATE,
              subtype: str = "PCM_16") -> pathlib.Path:
  """Writes float audio `[N]` or `[N, C]` in [-1, 1] to a WAV file, atomically.

  Values outside [-1, 1] are clipped (integer PCM would wrap around). The file appears under
  its final name only once complete.
  """
  path = pathlib.Path(path)
  audio = np.asarray(audio)
  if audio.ndim not in (1, 2) or not np.issubdtype(audio.dtype, np.floating):
    raise ValueError(f"{path}: audio must be a float array [N] or [N, C], "
                     f"got {audio.dtype} {audio.shape}")
  if not np.all(np.isfinite(audio)):
    raise ValueError(f"{path}: audio contains NaN or infinite samples")
  if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
    raise ValueError(f"{path}: sample_rate must be a positive integer, got {sample_rate!r}")
  with atomic.output(path) as tmp:
    sf.write(tmp, np.clip(audio, -1.0, 1.0), int(sample_rate), subtype=subtype, format="WAV")
  return path

"""Video file I/O through the ffmpeg binary bundled with imageio-ffmpeg.

Frames are RGB uint8 ``[T, H, W, 3]`` (T frames, H height, W width); audio is mono float32 ``[N]``
in [-1, 1]. Reading decodes to raw rgb24 on a pipe, honouring rotation metadata and optionally
resampling to a target frame rate with ffmpeg's fps filter (frames are dropped or repeated, never
blended). Writing encodes H.264 mp4 (libx264, yuv420p, moov atom first) and muxes audio as AAC.
Outputs appear under their final name only once complete (temporary file, then rename).

Decoding is strict by default: any decode error (a truncated or corrupt file) raises
`VideoError`; ``strict=False`` keeps whatever frames decode.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fractions
import os
import pathlib
import re
import subprocess
import tempfile
from typing import Iterator

import numpy as np

from talking_heads.io import atomic
from talking_heads.io import audio as audio_io

PathLike = audio_io.PathLike
MediaError = audio_io.MediaError
NoAudioError = audio_io.NoAudioError

DEFAULT_FPS = 25
DEFAULT_CRF = 18  # visually near-lossless H.264

_DURATION_RE = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_STREAM_RE = re.compile(r"^\s*Stream #0:\d+\S*: (Video|Audio|Subtitle|Data|Attachment): (.*)$")
_SIZE_RE = re.compile(r", (\d+)x(\d+)\b")
_RATE_TEMPLATE = r"(\d+(?:\.\d+)?)(k?) {unit}\b"
_HZ_RE = re.compile(r"(\d+) Hz")
_ROTATION_RE = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees", re.IGNORECASE)
_NTSC_BASES = (24, 30, 48, 60, 120)


class VideoError(MediaError):
  """A file is not a video, or its video cannot be decoded (truncated, corrupt)."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """What `probe` reads from a video file's header.

  Attributes:
    path: the file.
    width: frame width in pixels as decoded (after rotation metadata).
    height: frame height in pixels as decoded.
    fps: frame rate of the first video stream (NTSC rates snapped to n*1000/1001).
    duration: container duration in seconds; None when the container does not say.
    has_audio: whether there is an audio stream.
    audio_sample_rate: sample rate of the first audio stream, if any.
    rotation: display rotation in degrees from the stream's metadata (0 if none).
  """
  path: str
  width: int
  height: int
  fps: float
  duration: float | None
  has_audio: bool
  audio_sample_rate: int | None
  rotation: int

  @property
  def num_frames(self) -> int | None:
    """Frame count estimated from duration and frame rate (exact only after decoding)."""
    return None if self.duration is None else int(round(self.duration * self.fps))


def _parse_rate(text: str, unit: str) -> float | None:
  match = re.search(_RATE_TEMPLATE.format(unit=unit), text)
  if match is None:
    return None
  value = float(match.group(1)) * (1000 if match.group(2) else 1)
  # ffmpeg prints 30000/1001 as "29.97"; restore the exact rational rate.
  for base in _NTSC_BASES:
    if abs(value - base * 1000 / 1001) < 0.006:
      return base * 1000 / 1001
  return value


def _rate_arg(fps: float) -> str:
  """Frame rate as an exact ffmpeg rational, e.g. 25 -> "25", 29.97002997 -> "30000/1001"."""
  rate = fractions.Fraction(fps).limit_denominator(1001)
  return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"


def _check_fps(fps: float, where: PathLike) -> float:
  if isinstance(fps, bool) or not isinstance(fps, (int, float, np.number)) or not 0 < fps < 1000:
    raise ValueError(f"{os.fspath(where)}: fps must be a number in (0, 1000), got {fps!r}")
  return float(fps)


def probe(path: PathLike) -> VideoInfo:
  """Reads size, frame rate, duration and audio presence of a video from ffmpeg's header dump.

  Raises:
    FileNotFoundError: `path` is not a file.
    VideoError: the file is not a readable media file, or has no video stream.
  """
  path = audio_io.check_exists(path)
  proc = subprocess.run([audio_io.ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                        stdin=subprocess.DEVNULL, capture_output=True, check=False)
  log = proc.stderr.decode("utf-8", errors="replace")
  if "Input #0" not in log:
    raise VideoError(path, f"not a readable media file:\n{audio_io.stderr_tail(log)}",
                     log=audio_io.stderr_tail(log))
  duration = None
  if match := _DURATION_RE.search(log):
    hours, minutes, seconds = match.groups()
    duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
  video = None  # (stream line, the metadata lines under it)
  audio_rate = None
  has_audio = False
  lines = log.splitlines()
  for i, line in enumerate(lines):
    match = _STREAM_RE.match(line)
    if match is None:
      continue
    kind, desc = match.groups()
    if kind == "Video" and video is None and "(attached pic)" not in desc:
      block = []
      for following in lines[i + 1:]:
        if _STREAM_RE.match(following) or not following.startswith("    "):
          break
        block.append(following)
      video = (desc, "\n".join(block))
    elif kind == "Audio" and not has_audio:
      has_audio = True
      if rate := _HZ_RE.search(desc):
        audio_rate = int(rate.group(1))
  if video is None:
    if not has_audio:
      raise VideoError(path, "no video or audio stream found (truncated header, or not a "
                       "video?)")
    raise VideoError(path, "has no video stream")
  desc, block = video
  size = _SIZE_RE.search(desc)
  fps = _parse_rate(desc, "fps") or _parse_rate(desc, "tbr")
  if size is None or fps is None:
    raise VideoError(path, f"cannot read frame size and rate from the stream header: {desc}")
  width, height = int(size.group(1)), int(size.group(2))
  rotation = 0
  if match := _ROTATION_RE.search(block):
    rotation = int(round(float(match.group(1)))) % 360
  if rotation % 180 == 90:  # ffmpeg auto-rotates when decoding
    width, height = height, width
  return VideoInfo(path=str(path), width=width, height=height, fps=fps, duration=duration,
                   has_audio=has_audio, audio_sample_rate=audio_rate, rotation=rotation)


def iter_frames(path: PathLike, fps: float | None = None,
                strict: bool = True) -> Iterator[np.ndarray]:
  """Decodes a video frame by frame as read-only RGB uint8 `[H, W, 3]` arrays.

  Args:
    path: the video file.
    fps: resample to this frame rate with ffmpeg's fps filter; None keeps the native rate.
    strict: raise `VideoError` on any decode error; False keeps the frames that decode.

  Raises:
    FileNotFoundError: `path` is not a file.
    VideoError: not a video, a decode error (strict), or no frame decoded at all.
  """
  if fps is not None:
    _check_fps(fps, path)
  return _decode_frames(probe(path), fps, strict)


def _decode_frames(info: VideoInfo, fps: float | None, strict: bool) -> Iterator[np.ndarray]:
  """The generator behind `iter_frames`; `fps` already checked."""
  path = info.path
  cmd = [audio_io.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error"]
  if strict:
    cmd.append("-xerror")
  cmd += ["-i", info.path, "-map", "0:v:0", "-an", "-sn", "-dn"]
  if fps is not None:
    cmd += ["-vf", f"fps={_rate_arg(fps)}"]
  cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
  frame_bytes = info.width * info.height * 3
  count = 0
  partial = False
  with tempfile.TemporaryFile() as log:  # a file, not a pipe: a long log cannot block ffmpeg
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
    try:
      while buf := proc.stdout.read(frame_bytes):
        if len(buf) < frame_bytes:
          partial = True
          break
        yield np.frombuffer(buf, np.uint8).reshape(info.height, info.width, 3)
        count += 1
      returncode = proc.wait()
    finally:
      if proc.poll() is None:  # the caller stopped early
        proc.kill()
        proc.wait()
      proc.stdout.close()
    log.seek(0)
    tail = audio_io.stderr_tail(log.read())
  # ffmpeg may exit 0 on a truncated file (e.g. when the cut is first met in a stream it
  # skips), but it logs the error.
  if strict and (returncode != 0 or partial or tail):
    raise VideoError(path, f"decode error after {count} frames (truncated or corrupt file?); "
                     f"strict=False keeps the frames that decode:\n{tail}", log=tail)
  if count == 0:
    raise VideoError(path, f"no frame could be decoded:\n{tail}", log=tail)


def read_video(path: PathLike, fps: float | None = None,
               strict: bool = True) -> tuple[np.ndarray, float]:
  """Decodes a whole video to RGB uint8 `[T, H, W, 3]` and its frame rate.

  With `fps` set, frames are resampled to that rate (ffmpeg fps filter) and `fps` is returned.
  Errors as for `iter_frames`.
  """
  if fps is not None:
    _check_fps(fps, path)
  info = probe(path)
  frames = np.stack(list(_decode_frames(info, fps, strict)))
  return frames, (float(fps) if fps is not None else info.fps)


def read_video_with_audio(path: PathLike, fps: float | None = None,
                          sample_rate: int = audio_io.DEFAULT_SAMPLE_RATE,
                          strict: bool = True) -> tuple[np.ndarray, float, np.ndarray]:
  """Decodes frames `[T, H, W, 3]`, frame rate and mono float32 audio `[N]` at `sample_rate`.

  `strict` applies to both streams.

  Raises:
    NoAudioError: the video has no audio stream.
    FileNotFoundError, VideoError, MediaError: as for `read_video` and `audio.load_audio`.
  """
  if not probe(path).has_audio:
    raise NoAudioError(path, "has no audio stream, but audio was requested")
  frames, rate = read_video(path, fps=fps, strict=strict)
  return frames, rate, audio_io.load_audio(path, sample_rate=sample_rate, strict=strict)


def _atomic_output(path: pathlib.Path) -> contextlib.AbstractContextManager[pathlib.Path]:
  """A temporary path beside `path` (same suffix: ffmpeg picks the format by it), renamed to
  `path` on success."""
  return atomic.output(path, prefix=f".{path.stem}.", suffix=path.suffix)


def _check_frames(frames: np.ndarray, path: PathLike) -> np.ndarray:
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f"{os.fspath(path)}: frames must be uint8 [T, H, W, 3], "
                     f"got {frames.dtype} {frames.shape}")
  if min(frames.shape[:3]) == 0:
    raise ValueError(f"{os.fspath(path)}: no frames to write (shape {frames.shape})")
  return frames


def _check_audio(audio: np.ndarray, path: PathLike) -> np.ndarray:
  audio = np.asarray(audio)
  if audio.ndim != 1 or not np.issubdtype(audio.dtype, np.floating):
    raise ValueError(f"{os.fspath(path)}: audio must be mono float [N], "
                     f"got {audio.dtype} {audio.shape}")
  if not np.all(np.isfinite(audio)):
    raise ValueError(f"{os.fspath(path)}: audio contains NaN or infinite samples")
  return np.clip(audio, -1.0, 1.0).astype("<f4")


def write_video(path: PathLike, frames: np.ndarray, fps: float = DEFAULT_FPS,
                crf: int = DEFAULT_CRF) -> pathlib.Path:
  """Encodes RGB uint8 `[T, H, W, 3]` frames to an H.264 mp4 (libx264, yuv420p, no audio).

  yuv420p needs even sizes: an odd height or width is padded by repeating the last row or
  column, so the file is then one pixel larger than `frames`.
  """
  path = pathlib.Path(path)
  frames = _check_frames(frames, path)
  fps = _check_fps(fps, path)
  _, height, width, _ = frames.shape
  if height % 2 or width % 2:
    frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    height, width = frames.shape[1:3]
  with _atomic_output(path) as tmp:
    audio_io.run_ffmpeg(
        ["-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", f"{width}x{height}",
         "-framerate", _rate_arg(fps), "-i", "pipe:0", "-an", "-c:v", "libx264",
         "-preset", "medium", "-crf", str(int(crf)), "-pix_fmt", "yuv420p",
         "-movflags", "+faststart", tmp],
        path, "cannot encode video", input_bytes=np.ascontiguousarray(frames).tobytes())
  return path


def mux_audio(video_path: PathLike, audio: np.ndarray, out_path: PathLike,
              sample_rate: int = audio_io.DEFAULT_SAMPLE_RATE) -> pathlib.Path:
  """Writes `out_path`: the video stream of `video_path` (copied) with `audio` as AAC.

  The output is as long as the shorter of the two streams (ffmpeg ``-shortest``).
  """
  video_path = audio_io.check_exists(video_path)
  out_path = pathlib.Path(out_path)
  audio = _check_audio(audio, out_path)
  if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
    raise ValueError(f"{out_path}: sample_rate must be a positive integer, got {sample_rate!r}")
  if audio.size == 0:
    raise ValueError(f"{out_path}: no audio samples to mux")
  with _atomic_output(out_path) as tmp:
    audio_io.run_ffmpeg(
        ["-y", "-i", video_path, "-f", "f32le", "-ar", str(int(sample_rate)), "-ac", "1",
         "-i", "pipe:0", "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac",
         "-b:a", "64k", "-shortest", "-movflags", "+faststart", tmp],
        out_path, "cannot mux audio", input_bytes=audio.tobytes())
  return out_path


def write_video_with_audio(path: PathLike, frames: np.ndarray, audio: np.ndarray,
                           fps: float = DEFAULT_FPS,
                           sample_rate: int = audio_io.DEFAULT_SAMPLE_RATE,
                           crf: int = DEFAULT_CRF) -> pathlib.Path:
  """Encodes frames `[T, H, W, 3]` to H.264 and muxes mono audio `[N]` as AAC into one mp4."""
  path = pathlib.Path(path)
  _check_audio(audio, path)  # fail before the (slow) video encode
  path.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.stem}.") as tmp:
    silent = write_video(pathlib.Path(tmp) / "video.mp4", frames, fps=fps, crf=crf)
    return mux_audio(silent, audio, path, sample_rate=sample_rate)

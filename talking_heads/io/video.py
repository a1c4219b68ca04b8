"""Video file I/O through the ffmpeg binary bundled with imageio-ffmpeg.

Frames are RGB uint8 ``[T, H, W, 3]`` (T frames, H height, W width); audio is mono float32 ``[N]``
in [-1, 1]. Reading decodes to raw rgb24 on a pipe, honouring rotation metadata and optionally
resampling to a target frame rate with ffmpeg's fps filter (frames are dropped or repeated, never
blended). Writing encodes H.264 mp4 (libx264, yuv420p, moov atom first) and muxes audio as AAC;
`VideoWriter` encodes frames as they are produced (memory: one chunk of frames). Outputs appear
under their final name only once complete (hidden temporaries beside them, then a rename), with
the mode the umask gives new files.

Decoding is strict by default: any decode error (a truncated or corrupt file) raises
`VideoError`; ``strict=False`` keeps whatever frames decode.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import html
import fractions
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
from typing import Iterable, Iterator

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


class FrameFile:
  """RGB uint8 frames [V, H, W, 3] in an anonymous temporary file, read back by index.

  For frames needed again and again (an identity video looped under long audio): they cost
  disk, not memory. Reads are plain file reads through the page cache (no memory map, so
  they do not count towards the process's resident memory). Indexing works as on an array's
  first axis (an int, a slice, an integer array) and returns a new array; `np.asarray` reads
  every frame. The file is gone when this object is closed or collected (or the process ends).
  """

  dtype = np.dtype(np.uint8)
  ndim = 4

  def __init__(self, frames: Iterable[np.ndarray]):
    self._file = tempfile.TemporaryFile()
    shape = None
    count = 0
    for frame in frames:
      frame = np.asarray(frame)
      if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3 or (
          shape is not None and frame.shape != shape):
        self._file.close()
        raise ValueError(f"FrameFile: frame {count} is {frame.dtype} {frame.shape}; expected "
                         f"uint8 {shape or '[H, W, 3]'}")
      shape = frame.shape
      self._file.write(np.ascontiguousarray(frame).data)
      count += 1
    if shape is None:
      self._file.close()
      raise ValueError("FrameFile: no frames")
    self.shape = (count, *shape)

  def __len__(self) -> int:
    return self.shape[0]

  def __getitem__(self, key: int | slice | np.ndarray) -> np.ndarray:
    index = np.arange(len(self))[key]
    out = np.empty((*np.shape(index), *self.shape[1:]), np.uint8)
    rows = out.reshape(-1, int(np.prod(self.shape[1:])))
    for row, i in zip(rows, np.ravel(index)):
      self._file.seek(int(i) * row.size)
      self._file.readinto(memoryview(row))
    return out

  def __iter__(self) -> Iterator[np.ndarray]:
    return (self[i] for i in range(len(self)))

  def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
    del copy   # always a new array
    return self[:] if dtype is None else self[:].astype(dtype)

  def close(self) -> None:
    self._file.close()


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
  if audio.size == 0:
    raise ValueError(f"{os.fspath(path)}: no audio samples to mux")
  return np.clip(audio, -1.0, 1.0).astype("<f4")


def _check_sample_rate(sample_rate: int, path: PathLike) -> int:
  if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) \
      or sample_rate <= 0:
    raise ValueError(f"{os.fspath(path)}: sample_rate must be a positive integer, "
                     f"got {sample_rate!r}")
  return int(sample_rate)


def _mux(video_path: PathLike, audio: np.ndarray, sample_rate: int, out: PathLike,
         named: PathLike) -> None:
  """ffmpeg: `out` = the video stream of `video_path` (copied) + checked `audio` as AAC, as long
  as the shorter of the two; errors name `named`."""
  audio_io.run_ffmpeg(
      ["-y", "-i", video_path, "-f", "f32le", "-ar", str(sample_rate), "-ac", "1",
       "-i", "pipe:0", "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac",
       "-b:a", "64k", "-shortest", "-movflags", "+faststart", out],
      named, "cannot mux audio", input_bytes=audio.tobytes())


class VideoWriter:
  """Encodes RGB uint8 frames into an H.264 mp4 as they are produced, then muxes the audio.

    with VideoWriter("out.mp4", fps=25, audio=audio) as writer:
      for frames in chunks:          # each [t, H, W, 3], all of one frame size
        writer.write(frames)

  Frames go to ffmpeg's stdin as they come (libx264, yuv420p, as `write_video`; an odd height
  or width is padded by repeating the last row or column), so memory holds one chunk, never
  the video. The encoder writes a silent mp4 into a hidden folder beside `path`; `close` (a
  clean exit from the `with` block) waits for it, muxes `audio` (mono float [N] in [-1, 1] at
  `sample_rate`, AAC; the mp4 is as long as the shorter stream, except that audio ending
  inside the last frame is padded with silence to keep that frame) and renames the result to
  `path`. `abort` (an exception in the `with` block) stops the encoder; either way the folder
  goes, so a failure leaves no partial file at `path`. Errors name `path`.

  Attributes:
    path: the destination.
    num_frames: frames written so far.
    frame_size: (H, W) of the frames written (None before the first).
  """

  def __init__(self, path: PathLike, fps: float = DEFAULT_FPS, audio: np.ndarray | None = None,
               sample_rate: int = audio_io.DEFAULT_SAMPLE_RATE, crf: int = DEFAULT_CRF):
    self.path = pathlib.Path(path)
    if self.path.is_dir():
      raise IsADirectoryError(f"{self.path}: is a directory, not a file to write")
    self._fps = _check_fps(fps, self.path)
    self._audio = None if audio is None else _check_audio(audio, self.path)
    self._sample_rate = _check_sample_rate(sample_rate, self.path)
    self._crf = int(crf)
    self.num_frames = 0
    self.frame_size: tuple[int, int] | None = None
    self._encoder: subprocess.Popen | None = None
    self._log = tempfile.TemporaryFile()   # a file, not a pipe: a long log cannot block ffmpeg
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._dir = pathlib.Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.stem}."))

  def __enter__(self) -> VideoWriter:
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    if exc_type is None:
      self.close()
    else:
      self.abort()

  def _start(self, height: int, width: int) -> None:
    size = f"{width + width % 2}x{height + height % 2}"
    cmd = [audio_io.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-xerror",
           "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", size,
           "-framerate", _rate_arg(self._fps), "-i", "pipe:0", "-an", "-c:v", "libx264",
           "-preset", "medium", "-crf", str(self._crf), "-pix_fmt", "yuv420p",
           "-movflags", "+faststart", str(self._dir / "video.mp4")]
    self._encoder = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=self._log)
    self.frame_size = (height, width)

  def _check_encoder(self) -> None:
    """Waits for ffmpeg; MediaError with the end of its log if it failed."""
    returncode = self._encoder.wait()
    self._log.seek(0)
    tail = audio_io.stderr_tail(self._log.read())
    if returncode != 0 or tail:
      raise MediaError(self.path, f"cannot encode video (ffmpeg exit {returncode}):\n{tail}",
                       log=tail)

  def write(self, frames: np.ndarray) -> None:
    """Encodes frames [t, H, W, 3] uint8 (the same H, W as the frames before)."""
    frames = _check_frames(frames, self.path)
    height, width = frames.shape[1:3]
    if self._encoder is None:
      self._start(height, width)
    elif (height, width) != self.frame_size:
      raise ValueError(f"{self.path}: frames of {height}x{width} after frames of "
                       f"{self.frame_size[0]}x{self.frame_size[1]} (height x width)")
    if height % 2 or width % 2:
      frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    try:
      self._encoder.stdin.write(np.ascontiguousarray(frames).data)
    except BrokenPipeError:   # ffmpeg stopped: its log says why
      self._check_encoder()
      raise MediaError(self.path, "cannot encode video: ffmpeg stopped reading frames") from None
    self.num_frames += frames.shape[0]

  def write_chunks(self, chunks: Iterable[np.ndarray]) -> None:
    """`write`s every chunk of frames, holding none while the next one is made."""
    for frames in chunks:
      self.write(frames)
      del frames   # else the loop would keep it while the iterator makes the next chunk

  def close(self) -> pathlib.Path:
    """Finishes the encoding, muxes the audio and moves the mp4 to `path`."""
    try:
      if self._encoder is None:
        raise ValueError(f"{self.path}: no frames to write")
      try:
        self._encoder.stdin.close()
      except BrokenPipeError:
        pass   # ffmpeg stopped before reading everything: its exit status says why
      self._check_encoder()
      out = self._dir / "video.mp4"
      if self._audio is not None:
        out = self._dir / f"out{self.path.suffix}"
        _mux(self._dir / "video.mp4", self._end_padded_audio(), self._sample_rate, out,
             self.path)
      os.replace(out, self.path)
    finally:
      self.abort()
    return self.path

  def _end_padded_audio(self) -> np.ndarray:
    """The audio, with silence up to the video's end when it stops inside the last frame.

    Generators make ceil(seconds x fps) frames for their audio; muxing to the shorter stream
    would drop that last, partly voiced frame. Audio shorter by a frame or more is left to
    `-shortest`.
    """
    video_samples = int(np.ceil(self.num_frames * self._sample_rate / self._fps))
    missing = video_samples - self._audio.shape[0]
    if 0 < missing < self._sample_rate / self._fps:
      return np.pad(self._audio, (0, missing))
    return self._audio

  def abort(self) -> None:
    """Stops the encoder and removes the temporary folder; nothing is written to `path`."""
    if self._encoder is not None and self._encoder.poll() is None:
      self._encoder.kill()
      self._encoder.wait()
    if self._encoder is not None and not self._encoder.stdin.closed:
      try:
        self._encoder.stdin.close()
      except BrokenPipeError:
        pass
    self._log.close()
    shutil.rmtree(self._dir, ignore_errors=True)


def write_video(path: PathLike, frames: np.ndarray, fps: float = DEFAULT_FPS,
                crf: int = DEFAULT_CRF) -> pathlib.Path:
  """Encodes RGB uint8 `[T, H, W, 3]` frames to an H.264 mp4 (libx264, yuv420p, no audio).

  yuv420p needs even sizes: an odd height or width is padded by repeating the last row or
  column, so the file is then one pixel larger than `frames`.
  """
  frames = _check_frames(frames, path)   # before any file is made
  with VideoWriter(path, fps=fps, crf=crf) as writer:
    writer.write(frames)
  return writer.path


def mux_audio(video_path: PathLike, audio: np.ndarray, out_path: PathLike,
              sample_rate: int = audio_io.DEFAULT_SAMPLE_RATE) -> pathlib.Path:
  """Writes `out_path`: the video stream of `video_path` (copied) with `audio` as AAC.

  The output is as long as the shorter of the two streams (ffmpeg ``-shortest``).
  """
  video_path = audio_io.check_exists(video_path)
  out_path = pathlib.Path(out_path)
  audio = _check_audio(audio, out_path)
  sample_rate = _check_sample_rate(sample_rate, out_path)
  with _atomic_output(out_path) as tmp:
    _mux(video_path, audio, sample_rate, tmp, out_path)
  return out_path


def write_video_with_audio(path: PathLike, frames: np.ndarray, audio: np.ndarray,
                           fps: float = DEFAULT_FPS,
                           sample_rate: int = audio_io.DEFAULT_SAMPLE_RATE,
                           crf: int = DEFAULT_CRF) -> pathlib.Path:
  """Encodes frames `[T, H, W, 3]` to H.264 and muxes mono audio `[N]` as AAC into one mp4
  (`VideoWriter` with every frame at once)."""
  frames = _check_frames(frames, path)
  with VideoWriter(path, fps=fps, audio=audio, sample_rate=sample_rate, crf=crf) as writer:
    writer.write(frames)
  return writer.path


def html_video(path: PathLike, *, width: int | None = None) -> str:
  """An HTML5 `<video>` element (controls, with its sound) playing the mp4 at `path`, the file
  inlined as a base64 data URL: it plays wherever the HTML is shown (a notebook's output on
  Colab or in Jupyter, an exported page) without the file beside it."""
  data = base64.b64encode(audio_io.check_exists(path).read_bytes()).decode("ascii")
  size = f' width="{int(width)}"' if width else ""
  title = html.escape(pathlib.Path(path).name, quote=True)
  return (f'<video controls playsinline{size} title="{title}" '
          f'src="data:video/mp4;base64,{data}"></video>')

"""Audio/video alignment: mel windows per video frame, sample<->frame maths, input checks.

Pure numpy (no jax import), picklable, safe to use inside grain worker processes.

Dimension legend: T video frames, F mel (or MFCC) frames, M mel bins, W window length in
mel frames.

Wav2Lip conventions (`Rudrabha/Wav2Lip`, 25 fps video, 80 mel frames/s):
  * the mel window of video frame f starts at int(80 * f / 25) = floor(3.2 f) and spans 16 mel
    frames (0.2 s = 5 video frames); SyncNet training pairs frames f..f+4 with that window;
  * the generator's per-frame windows are shifted one frame back: frame j uses the window of
    frame j - 1 (frame 0 has none, Wav2Lip skips such samples);
  * inference chunk i starts at int(i * 80 / 25) with no shift, and the last chunk is the final
    16 mel frames of the clip.
Starts are computed with exact integer arithmetic, floor(f * sample_rate / (hop * fps)). For
Wav2Lip this equals the reference float expressions for every frame index up to 200,000;
for RADIO's 100 frames/s the float expression int(100. * (f / 25.)) is wrong (f = 29 gives 115,
not 116), so the exact form matters there.

RADIO (n_fft 1280, hop 160 at 16 kHz -> 100 mel frames/s, 4 per video frame) trains on T = 5
frames following Wav2Lip and says nothing more about the audio window; we use 20 mel frames
(0.2 s, the same span as Wav2Lip's 16 at 80 frames/s) starting at 4 f.
syncnet_python scores LSE with 100 MFCC frames/s and 20 columns from 4 v, i.e. the same spec.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16000
VIDEO_FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // VIDEO_FPS  # 640


class SilentAudioError(ValueError):
  """Raised when a clip's audio is (near) silent where speech is required."""


@dataclasses.dataclass(frozen=True)
class MelWindowSpec:
  """How mel frames line up with video frames.

  Attributes:
    sample_rate: audio sample rate in Hz.
    hop_length: STFT hop in samples (mel frame rate = sample_rate / hop_length).
    window: mel frames per window (W).
    fps: video frame rate (integer, as the datasets are resampled to 25 fps).
  """

  sample_rate: int
  hop_length: int
  window: int
  fps: int = VIDEO_FPS

  def __post_init__(self):
    for name in ("sample_rate", "hop_length", "window", "fps"):
      value = getattr(self, name)
      if not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"MelWindowSpec.{name} must be a positive integer, got {value!r}")

  @property
  def mel_fps(self) -> float:
    """Mel frames per second."""
    return self.sample_rate / self.hop_length

  @property
  def mel_frames_per_video_frame(self) -> float:
    """3.2 for Wav2Lip, 4.0 for RADIO."""
    return self.sample_rate / (self.hop_length * self.fps)


WAV2LIP_WINDOWS = MelWindowSpec(sample_rate=16000, hop_length=200, window=16)
RADIO_WINDOWS = MelWindowSpec(sample_rate=16000, hop_length=160, window=20)
SYNCNET_MFCC_WINDOWS = MelWindowSpec(sample_rate=16000, hop_length=160, window=20)


def check_sample_rate(sample_rate: int, *, clip_id: str = "audio", expected: int = SAMPLE_RATE) -> None:
  """Raises ValueError unless `sample_rate` equals `expected` (16 kHz)."""
  if sample_rate != expected:
    raise ValueError(
        f"{clip_id}: sample rate is {sample_rate} Hz but {expected} Hz is required; resample first "
        f"(e.g. ffmpeg -ar {expected} -ac 1)")


def as_float_audio(audio: np.ndarray, *, clip_id: str = "audio") -> np.ndarray:
  """Float64 copy of `audio`; signed integer PCM is scaled to [-1, 1) as soundfile/librosa load it.

  Raises:
    ValueError: non-numeric/complex dtype, empty input or non-finite samples.
  """
  audio = np.asarray(audio)
  if audio.size == 0:
    raise ValueError(f"{clip_id}: audio is empty")
  if np.issubdtype(audio.dtype, np.signedinteger):
    return audio.astype(np.float64) / float(2 ** (8 * audio.dtype.itemsize - 1))
  if not np.issubdtype(audio.dtype, np.floating):
    raise ValueError(f"{clip_id}: audio must be signed integer PCM or real float samples, got dtype {audio.dtype}")
  if not np.all(np.isfinite(audio)):
    bad = int(np.flatnonzero(~np.isfinite(audio.reshape(-1)))[0])
    raise ValueError(f"{clip_id}: audio has a non-finite sample at flat index {bad}")
  return audio.astype(np.float64)


def _check_rate(sample_rate: int, fps: int) -> int:
  if sample_rate % fps:
    raise ValueError(f"sample rate {sample_rate} is not a whole number of samples per frame at {fps} fps")
  return sample_rate // fps


def frames_to_samples(frames: npt.ArrayLike, *, sample_rate: int = SAMPLE_RATE, fps: int = VIDEO_FPS) -> np.ndarray:
  """First audio sample of each video frame (frame count -> sample count); 640 per frame at 16 kHz/25 fps."""
  return np.asarray(frames, dtype=np.int64) * _check_rate(sample_rate, fps)


def samples_to_frames(samples: npt.ArrayLike, *, sample_rate: int = SAMPLE_RATE, fps: int = VIDEO_FPS) -> np.ndarray:
  """Whole video frames covered by `samples` (floor), as syncnet_python's floor(len(audio) / 640)."""
  return np.asarray(samples, dtype=np.int64) // _check_rate(sample_rate, fps)


def fit_audio_to_frames(audio: np.ndarray, num_frames: int, *, clip_id: str = "audio",
                        sample_rate: int = SAMPLE_RATE, fps: int = VIDEO_FPS,
                        max_pad_samples: int = SAMPLES_PER_FRAME) -> np.ndarray:
  """Trims or zero-pads 1-D `audio` to exactly `num_frames` video frames of samples.

  Containers often end the audio track a few milliseconds before the last video frame, so a
  shortfall of up to `max_pad_samples` is padded with silence; anything shorter is an error.

  Raises:
    ValueError: audio not 1-D, or shorter than the frames by more than `max_pad_samples`.
  """
  audio = np.asarray(audio)
  if audio.ndim != 1:
    raise ValueError(f"{clip_id}: expected 1-D mono audio, got shape {audio.shape}")
  needed = int(frames_to_samples(num_frames, sample_rate=sample_rate, fps=fps))
  short = needed - audio.shape[0]
  if short > max_pad_samples:
    raise ValueError(
        f"{clip_id}: audio has {audio.shape[0]} samples ({audio.shape[0] / sample_rate:.3f} s) but "
        f"{num_frames} frames at {fps} fps need {needed}; short by {short} > {max_pad_samples} allowed")
  if short <= 0:
    return audio[:needed]
  return np.concatenate([audio, np.zeros(short, dtype=audio.dtype)])


def rms_db(audio: np.ndarray) -> np.ndarray:
  """Root-mean-square level in dBFS over the last axis (integer PCM scaled to full scale 1)."""
  audio = as_float_audio(audio)
  rms = np.sqrt(np.mean(np.square(audio), axis=-1))
  return 20.0 * np.log10(np.maximum(rms, 1e-10))


def is_silent(audio: np.ndarray, threshold_db: float = -60.0) -> bool | np.ndarray:
  """True where the RMS level over the last axis is below `threshold_db` dBFS (bool or bool array)."""
  silent = rms_db(audio) < threshold_db
  return bool(silent) if silent.ndim == 0 else silent


def check_not_silent(audio: np.ndarray, *, clip_id: str = "audio", threshold_db: float = -60.0) -> None:
  """Raises SilentAudioError naming the clip when 1-D `audio` is below `threshold_db` dBFS RMS."""
  level = float(rms_db(audio))
  if level < threshold_db:
    raise SilentAudioError(f"{clip_id}: audio is silent (RMS {level:.1f} dBFS < {threshold_db} dBFS)")


def window_starts(frames: npt.ArrayLike, spec: MelWindowSpec = WAV2LIP_WINDOWS, *, shift: int = 0,
                  clip_id: str = "audio") -> np.ndarray:
  """First mel frame of the window of each video frame in `frames` (any shape, int64).

  `shift=-1` gives Wav2Lip's per-frame generator windows (frame j uses frame j-1's window).

  Raises:
    ValueError: a shifted frame index is negative (Wav2Lip drops such samples).
  """
  shifted = np.asarray(frames, dtype=np.int64) + shift
  if shifted.size and shifted.min() < 0:
    bad = int(np.asarray(frames).reshape(-1)[np.argmin(shifted.reshape(-1))])
    raise ValueError(f"{clip_id}: video frame {bad} with shift {shift} has no mel window (negative index)")
  return (shifted * spec.sample_rate) // (spec.hop_length * spec.fps)


def check_windows_fit(num_mel_frames: int, frames: npt.ArrayLike, spec: MelWindowSpec = WAV2LIP_WINDOWS, *,
                      shift: int = 0, clip_id: str = "audio") -> np.ndarray:
  """Window starts for `frames`, after checking every window lies inside `num_mel_frames`.

  Raises:
    ValueError: naming the clip and the video frame whose window reaches furthest past the audio.
  """
  starts = window_starts(frames, spec, shift=shift, clip_id=clip_id)
  ends = starts + spec.window
  if ends.size and ends.max() > num_mel_frames:
    flat = int(np.argmax(ends.reshape(-1)))
    frame = int(np.asarray(frames).reshape(-1)[flat])
    raise ValueError(
        f"{clip_id}: audio too short: video frame {frame} needs mel frames [{starts.reshape(-1)[flat]}, "
        f"{ends.reshape(-1)[flat]}) but the clip has {num_mel_frames} "
        f"({num_mel_frames / spec.mel_fps:.3f} s at {spec.mel_fps:g} mel frames/s)")
  return starts


def window_indices(starts: npt.ArrayLike, spec: MelWindowSpec = WAV2LIP_WINDOWS) -> np.ndarray:
  """Mel frame indices [..., W] of windows beginning at `starts`."""
  return np.asarray(starts, dtype=np.int64)[..., None] + np.arange(spec.window)


def slice_windows(mel_tm: np.ndarray, frames: npt.ArrayLike, spec: MelWindowSpec = WAV2LIP_WINDOWS, *,
                  shift: int = 0, clip_id: str = "audio") -> np.ndarray:
  """Mel windows [..., W, M] for video `frames` from a time-major mel [F, M].

  Transpose the last two axes for the Wav2Lip/SyncNet audio input layout (M, W) = (80, 16).
  """
  mel_tm = np.asarray(mel_tm)
  if mel_tm.ndim != 2:
    raise ValueError(f"{clip_id}: expected a time-major mel [F, M], got shape {mel_tm.shape}")
  starts = check_windows_fit(mel_tm.shape[0], frames, spec, shift=shift, clip_id=clip_id)
  return mel_tm[window_indices(starts, spec)]


def inference_chunk_starts(num_mel_frames: int, spec: MelWindowSpec = WAV2LIP_WINDOWS, *,
                           clip_id: str = "audio") -> np.ndarray:
  """Start of each inference mel chunk (one per output video frame), Wav2Lip's loop vectorised.

  Chunk i starts at floor(i * mel frames per video frame) while the window fits; the first
  chunk that would overrun is replaced by the final W mel frames and ends the list.

  Raises:
    ValueError: the clip has fewer than W mel frames.
  """
  if num_mel_frames < spec.window:
    raise ValueError(
        f"{clip_id}: audio too short for inference: {num_mel_frames} mel frames < one window of {spec.window}")
  # The first overrunning chunk has index <= ceil((F - W + 1) / rate), since start(i) >= i * rate - 1.
  bound = int(np.ceil((num_mel_frames - spec.window + 1) / spec.mel_frames_per_video_frame)) + 2
  starts = window_starts(np.arange(bound), spec)
  fitting = starts[starts + spec.window <= num_mel_frames]
  return np.append(fitting, num_mel_frames - spec.window)

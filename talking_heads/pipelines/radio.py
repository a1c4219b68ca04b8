"""RADIO's training samples: a T-frame target window, R reference frames of the same clip, mel windows.

RADIO (`shared/reference/systems/radio.md` §1, §4) trains on T = 5 consecutive target frames
(lower half masked for the content encoder), 5 reference frames drawn at random from the same
video, the mel of the 5 frames (sync discriminator S_a) and one 0.2 s mel window per frame (audio
encoder E_a); the frozen sync discriminator S scores the output window against the window's mel.

Index space: every start f of a T-frame window whose target frames exist, whose clip has frames
outside the window, whose per-frame and window mels lie inside the clip's audio, and that has an
off-sync partner (an audio start w, within the clip, with |w - f| >= min_offset and its mel window
inside the audio). Clips without one are skipped with a logged warning.

Sample (S = image_size or the dataset's; M = 80 mel bins; W = 20 mel frames = 0.2 s;
T = num_frames, 5; R = num_references, 5):

  frames               uint8   [T, S, S, 3]  target frames f .. f+T-1 (ground truth, RGB)
  masked               uint8   [T, S, S, 3]  the same with rows S//2 .. S-1 zeroed (E_c's input)
  reference            uint8   [R, S, S, 3]  reference frames of the same clip (E_s's input)
  reference_frames     int32   [R]           their frame indices
  mel                  float32 [M, W]        mel of frames f .. f+T-1: mel frames [4f, 4f + 20)
                                             (S_a's input; the window of video frame f)
  indiv_mels           float32 [T, M, W]     frame j's window centred on it: mel frames
                                             [4(j-2), 4(j+3)) (E_a's input, one per frame)
  mel_offsync          float32 [M, W]        mel frames [4w, 4w + 20) of the off-sync start w
                                             (a negative for S: the target frames with wrong audio)
  offsync_offset       int32   []            w - f, |w - f| >= min_offset
  landmarks            float32 [T, 68, 2]    the target frames' iBUG-68 (x, y) in pixels of the
                                             S-sized frames (`base.rescale_pixels`)
  reference_landmarks  float32 [R, 68, 2]    the same for the reference frames
  clip, start          int32   []            clip position in the split, f
  valid                bool    []            eval variant only: False for padding entries

Iterators add a leading batch axis B to every key. Frames are uint8 in [0, 255]: the stage maps
them to its range (e.g. [-1, 1]) and makes the sync discriminator's grayscale crops. The mel is
RADIO's (`mel.RADIO_MEL`: 16 kHz, n_fft 1280, hop 160, 80 bins: 100 mel frames/s, 4 per video
frame), read from the precomputed `features/<clip>/mel_radio.npy`.

References ("reference_mode"): "random" (training, the paper's "randomly chosen reference
frames") draws R distinct frames uniformly from the clip's frames outside the target window
(with replacement only when the clip has fewer than R such frames); "first" (the paper's
evaluation) repeats the clip's frame 0.

Audio windows. S_a sees A_{i-2:i+2} for the window's centre frame i = f + 2: the 20 mel frames
[4f, 4f + 20), which is `windows.RADIO_WINDOWS`' window of video frame f. E_a's per-frame windows
are centred the same way (the spec's recommendation, §8 item 7), i.e. frame j uses the window of
frame j - 2 (`CENTRED_AUDIO.frame_shift = -2`), so f >= 2. (`clips.RADIO_AUDIO` keeps Wav2Lip's
shift of -1 instead.) The off-sync partner w is uniform over the audio starts at least
`min_offset` frames from f (default 5: a whole window away, no audio shared with the positive);
`sync.make_sync_iterator(audio=clips.RADIO_AUDIO)` gives the sync discriminator's own in/off-sync
pairs with the frames shifted instead.

Train iterators shuffle and repeat; eval iterators make one pass over every `stride`-th start
with the randomness fixed per window by the seed. Both shard the index per process
(`shard_index`, `shard_count`) and are deterministic given the seed (`base` module docstring).
"""

from __future__ import annotations

import os
from typing import Any

import grain
import numpy as np

from talking_heads.audio import mel as mel_lib
from talking_heads.audio import windows
from talking_heads.io import dataset as dataset_lib
from talking_heads.pipelines import base
from talking_heads.pipelines import clips as clips_lib

CENTRED_AUDIO = clips_lib.AudioSpec(mel_lib.RADIO_MEL, windows.RADIO_WINDOWS, frame_shift=-2)
REFERENCE_MODES = ("random", "first")


def last_audio_start(num_frames: int, num_mel_frames: int, spec: windows.MelWindowSpec) -> int:
  """The last video frame (< num_frames) whose mel window fits in the audio; -1 if none."""
  fits = clips_lib.windows_fit(np.arange(num_frames), num_mel_frames, spec)  # a prefix
  return int(np.flatnonzero(fits)[-1]) if fits.any() else -1


def radio_start_mask(num_frames: int, num_samples: int, num_window_frames: int, min_offset: int,
                     audio: clips_lib.AudioSpec = CENTRED_AUDIO) -> np.ndarray:
  """Bool [num_frames] over starts f (module docstring: index space)."""
  ok = clips_lib.clip_window_mask(num_frames, num_samples, num_window_frames, audio)
  last = last_audio_start(num_frames, audio.mel.num_frames(num_samples), audio.windows)
  f = np.arange(num_frames)
  return ok & (np.maximum(f, last - f) >= min_offset)


class RadioSampler(grain.transforms.RandomMap):
  """Index element -> RADIO sample (module docstring); picklable for grain workers."""

  def __init__(self, reader: base.ClipReader, num_frames: int, num_references: int,
               reference_mode: str, min_offset: int, audio: clips_lib.AudioSpec,
               image_size: int | None):
    self.reader = reader
    self.num_frames = num_frames
    self.num_references = num_references
    self.reference_mode = reference_mode
    self.min_offset = min_offset
    self.audio = audio
    self.image_size = image_size

  def _references(self, start: int, clip_frames: int, rng: np.random.Generator) -> np.ndarray:
    if self.reference_mode == "first":
      return np.zeros(self.num_references, np.int64)
    outside = clip_frames - self.num_frames  # frames outside [start, start + T)
    picks = rng.choice(outside, self.num_references, replace=outside < self.num_references)
    return picks + self.num_frames * (picks >= start)

  def _offsync_start(self, start: int, clip_frames: int, num_mel: int,
                     rng: np.random.Generator) -> int:
    last = last_audio_start(clip_frames, num_mel, self.audio.windows)
    gap = self.min_offset
    below = max(0, start - gap + 1)  # starts 0 .. f - gap
    above = max(0, last - (start + gap) + 1)  # starts f + gap .. last
    k = int(rng.integers(below + above))
    return k if k < below else start + gap + (k - below)

  def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    i, f, t = int(element["clip"]), int(element["start"]), self.num_frames
    frames = self.reader.array(i, "frames")
    landmarks = self.reader.array(i, "landmarks")
    clip_id = self.reader.clip_ids[i]
    mel = self.reader.mel(i, self.audio.mel)
    references = self._references(f, frames.shape[0], rng)
    offsync = self._offsync_start(f, frames.shape[0], mel.shape[0], rng)
    target = base.resize_frames(frames[f:f + t], self.image_size)
    scale = 1.0 if self.image_size is None else self.image_size / frames.shape[1]
    spec = self.audio.windows
    window = windows.slice_windows(mel, f, spec, clip_id=clip_id)  # [W, M]
    indiv = windows.slice_windows(mel, np.arange(f, f + t), spec, shift=self.audio.frame_shift,
                                  clip_id=clip_id)  # [T, W, M]
    negative = windows.slice_windows(mel, offsync, spec, clip_id=clip_id)  # [W, M]
    return {
        "frames": target,
        "masked": base.mask_lower_half(target),
        "reference": base.resize_frames(frames[references], self.image_size),
        "reference_frames": references.astype(np.int32),
        "mel": np.ascontiguousarray(window.T),
        "indiv_mels": np.ascontiguousarray(indiv.transpose(0, 2, 1)),
        "mel_offsync": np.ascontiguousarray(negative.T),
        "offsync_offset": np.int32(offsync - f),
        "landmarks": base.rescale_pixels(np.asarray(landmarks[f:f + t]), scale).astype(
            np.float32),
        "reference_landmarks": base.rescale_pixels(np.asarray(landmarks[references]),
                                                   scale).astype(np.float32),
        "clip": element["clip"], "start": element["start"],
    }


def _build(root: str | os.PathLike, split: str | None, stride: int | None, num_frames: int,
           num_references: int, reference_mode: str, min_offset: int,
           audio: clips_lib.AudioSpec, image_size: int | None
           ) -> tuple[base.WindowIndex, RadioSampler]:
  if num_frames < 1 or num_references < 1:
    raise ValueError(f"num_frames and num_references must be >= 1, got {num_frames}, "
                     f"{num_references}")
  if reference_mode not in REFERENCE_MODES:
    raise ValueError(f"reference_mode must be one of {REFERENCE_MODES}, got {reference_mode!r}")
  if min_offset < 1:
    raise ValueError(f"min_offset must be >= 1 frame, got {min_offset}")
  if image_size is not None and image_size < 1:
    raise ValueError(f"image_size must be positive, got {image_size}")
  data, clips = base.open_split(root, split)
  clips_lib.check_audio_spec(root, data, audio)
  base.warn_missing_features(root, clips, audio.mel)

  def valid(clip: dataset_lib.Clip) -> tuple[np.ndarray, str]:
    mask = radio_start_mask(clip.num_frames, clip.num_samples, num_frames, min_offset, audio)
    return mask, (f"{clip.num_frames} frames, {clip.num_samples} audio samples; needs more than "
                  f"{num_frames} frames, audio covering their mel windows and an off-sync "
                  f"start {min_offset}+ frames away")

  index = base.build_index(root, clips, valid, stride=stride or num_frames,
                           what=f"{num_frames}-frame RADIO window")
  reader = base.ClipReader(root, [c.id for c in clips])
  return index, RadioSampler(reader, num_frames, num_references, reference_mode, min_offset,
                             audio, image_size)


def make_radio_iterator(root: str | os.PathLike, *, batch_size: int, shard_index: int,
                        shard_count: int, seed: int, num_workers: int,
                        split: str | None = "train", num_frames: int = 5,
                        num_references: int = 5, reference_mode: str = "random",
                        min_offset: int = 5, audio: clips_lib.AudioSpec = CENTRED_AUDIO,
                        image_size: int | None = None,
                        **grain_options: Any) -> grain.DatasetIterator:
  """Shuffled, repeated batches of RADIO samples (module docstring keys, with a leading B).

  Args:
    root: dataset directory.
    batch_size, shard_index, shard_count, seed, num_workers: see `base.build_iterator`.
    split: the split to sample (None: all clips).
    num_frames: T (5).
    num_references: R (5).
    reference_mode: "random" or "first".
    min_offset: smallest |w - f| of the off-sync mel, in frames.
    audio: mel recipe and windows (`CENTRED_AUDIO`).
    image_size: resize frames (and landmarks) to this size (None: the dataset's).
    **grain_options: read_threads, prefetch, worker_buffer_size (`base.build_iterator`).
  """
  index, sampler = _build(root, split, 1, num_frames, num_references, reference_mode,
                          min_offset, audio, image_size)
  return base.build_iterator(index, sampler, batch_size=batch_size, shard_index=shard_index,
                             shard_count=shard_count, seed=seed, num_workers=num_workers,
                             train=True, **grain_options)


def make_radio_eval_iterator(root: str | os.PathLike, *, batch_size: int, shard_index: int,
                             shard_count: int, seed: int, num_workers: int,
                             split: str | None = "val", stride: int | None = None,
                             num_frames: int = 5, num_references: int = 5,
                             reference_mode: str = "first", min_offset: int = 5,
                             audio: clips_lib.AudioSpec = CENTRED_AUDIO,
                             image_size: int | None = None,
                             **grain_options: Any) -> grain.DatasetIterator:
  """One pass over every `stride`-th valid start (default T: non-overlapping windows); the
  references (default: the clip's first frame, as the paper evaluates) and off-sync starts are
  fixed per window by `seed`."""
  index, sampler = _build(root, split, stride, num_frames, num_references, reference_mode,
                          min_offset, audio, image_size)
  return base.build_iterator(index, sampler, batch_size=batch_size, shard_index=shard_index,
                             shard_count=shard_count, seed=seed, num_workers=num_workers,
                             train=False, **grain_options)

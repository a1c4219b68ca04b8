"""Phoneme-to-viseme mapping and coarticulated expression trajectories.

Turns the timed phonemes of a `data.speech.Utterance` into per-video-frame
coefficients over the morphable model's expression basis
(`talking_heads.face.morphable.EXPRESSION_NAMES`). Only the speech columns are
driven (jaw_open, lip_spread, lip_round, lip_press, smile, upper_lip_raise,
brow_raise); the blink columns stay 0 (`data.motion` adds blinks).

Symbols are espeak-ng IPA strings ("ˈoʊ", "uː", "ɔ̃", "ts"). Stress and length
marks and diacritics are stripped; each remaining letter is one articulatory
target, so a diphthong or affricate is split into equal sub-segments (a then
ɪ for "aɪ", p then f for "pf"). Vowels map through their IPA features:
openness opens the jaw, rounding rounds the lips, front unrounded vowels
spread them. Letters outside the table fall back by class: a letter whose
Unicode name names a vowel letter gets a mid central vowel (rounded if it is
an o/u/y/œ letter), anything else a neutral alveolar consonant.

Coarticulation uses dominance functions (Cohen & Massaro, 1993): every
segment pulls each column towards its target with a weight that is constant
over the segment and decays as exp(-(d / tau)^1.5) at a distance d before and
after it; the value at a time is the weight-averaged target. Bilabials and pauses dominate strongly
(lips must close), /h/ and velars weakly (they take their neighbours'
shapes), and rounded segments reach further ahead in the lip_round column
(anticipatory rounding: the lips round during the consonants before /u/).
Segments shorter than a video frame are widened to one frame so that a
25 fps sampler cannot miss a short closure. Frame k is sampled at its centre,
(k + 0.5) / fps.

Dimension legend: T video frames, E expression components, N segments.
"""

from __future__ import annotations

import dataclasses
import functools
import unicodedata
from collections.abc import Sequence

import numpy as np

from talking_heads.face.morphable import EXPRESSION_NAMES

PAUSE = "_"  # As data.speech.PAUSE; not imported to keep this module light.
_COL = {name: i for i, name in enumerate(EXPRESSION_NAMES)}
SPEECH_COLUMNS: tuple[str, ...] = (
    "jaw_open", "lip_spread", "lip_round", "lip_press", "smile",
    "upper_lip_raise", "brow_raise")

# Time constants of the dominance decay, seconds.
_TAU = 0.025
_TAU_ROUND_AHEAD = 0.14
# Exponent of the decay: >1 gives a rounder, smoother onset than a pure
# exponential.
_DECAY_POWER = 1.5
_STRESS_JAW_GAIN = 1.15
_STRESS_BROW = 0.2


@dataclasses.dataclass(frozen=True)
class _Target:
  """Articulatory target of one letter: values and per-column dominance."""
  values: dict[str, float]
  dominance: float
  # Dominance per column where it differs from `dominance`.
  column_dominance: dict[str, float] = dataclasses.field(default_factory=dict)
  is_vowel: bool = False


# IPA vowel letter -> (openness 0 close..1 open, frontness 0 back..1 front,
# rounded).
_VOWELS: dict[str, tuple[float, float, bool]] = {
    "i": (0.0, 1.0, False), "y": (0.0, 1.0, True), "ɨ": (0.0, 0.5, False),
    "ʉ": (0.0, 0.5, True), "ɯ": (0.0, 0.0, False), "u": (0.0, 0.0, True),
    "ɪ": (0.15, 0.9, False), "ʏ": (0.15, 0.9, True), "ᵻ": (0.15, 0.5, False),
    "ʊ": (0.15, 0.1, True),
    "e": (0.33, 1.0, False), "ø": (0.33, 1.0, True), "ɘ": (0.33, 0.5, False),
    "ɵ": (0.33, 0.5, True), "ɤ": (0.33, 0.0, False), "o": (0.33, 0.0, True),
    "ə": (0.45, 0.5, False), "ɚ": (0.45, 0.5, False),
    "ɛ": (0.66, 1.0, False), "œ": (0.66, 1.0, True), "ɜ": (0.6, 0.5, False),
    "ɝ": (0.6, 0.5, False), "ɞ": (0.66, 0.5, True), "ʌ": (0.66, 0.0, False),
    "ɔ": (0.66, 0.0, True),
    "æ": (0.85, 1.0, False), "ɐ": (0.8, 0.5, False),
    "a": (1.0, 0.9, False), "ɶ": (1.0, 1.0, True), "ɑ": (1.0, 0.0, False),
    "ɒ": (1.0, 0.0, True),
}


def _vowel_target(openness: float, frontness: float,
                  rounded: bool) -> _Target:
  spread = 0.0 if rounded else (0.2 + 0.8 * frontness) * (1 - 0.6 * openness)
  return _Target(
      values={
          "jaw_open": 0.25 + 0.65 * openness,
          "lip_round": (1.0 - 0.5 * openness) if rounded else 0.0,
          "lip_spread": spread,
          "smile": 0.25 * spread,
          "upper_lip_raise": 0.15 * openness,
      },
      dominance=1.0,
      is_vowel=True)


def _consonant(dominance: float, lip_dominance: float | None = None,
               **values: float) -> _Target:
  """A consonant; `lip_dominance` weakens its hold on the lip-shape columns."""
  columns = {}
  if lip_dominance is not None:
    columns = dict.fromkeys(("lip_round", "lip_spread", "smile"),
                            lip_dominance)
  return _Target(values=values, dominance=dominance, column_dominance=columns)


# Bilabial closure: jaw nearly shut and lips pressed; weak in the shape
# columns so that anticipatory rounding/spreading shows through the closure.
_BILABIAL = _Target(
    values={"jaw_open": 0.02, "lip_press": 1.0},
    dominance=5.0,
    column_dominance={"lip_round": 0.3, "lip_spread": 0.3, "smile": 0.3,
                      "brow_raise": 0.3})
_LABIODENTAL = _consonant(4.0, jaw_open=0.08, lip_press=0.35,
                          upper_lip_raise=0.3)
# Tongue and throat consonants barely constrain the lips, so neighbouring
# vowels' rounding or spreading shows through them.
_ALVEOLAR = _consonant(1.0, 0.2, jaw_open=0.12)
_SIBILANT = _consonant(2.0, 0.3, jaw_open=0.05, lip_spread=0.35)
_POSTALVEOLAR = _consonant(2.0, jaw_open=0.08, lip_round=0.55)
_DENTAL = _consonant(1.5, 0.3, jaw_open=0.2, lip_spread=0.2)
_PALATAL = _consonant(1.0, 0.3, jaw_open=0.12, lip_spread=0.3)
_VELAR = _consonant(0.7, 0.2, jaw_open=0.18)
_GLOTTAL = _consonant(0.3, jaw_open=0.3)
_LABIOVELAR = _Target(values={"jaw_open": 0.1, "lip_round": 1.0},
                      dominance=3.0)

_CONSONANTS: dict[str, _Target] = {
    **dict.fromkeys("pbmɓʙ", _BILABIAL),
    **dict.fromkeys("βɸ", _consonant(3.0, jaw_open=0.05, lip_press=0.6,
                                      lip_round=0.1)),
    **dict.fromkeys("fvɱʋ", _LABIODENTAL),
    **dict.fromkeys("wʍɥ", _LABIOVELAR),
    **dict.fromkeys("θð", _DENTAL),
    **dict.fromkeys("tdnlɾrɬɫɗ", _ALVEOLAR),
    "ɹ": _consonant(1.0, jaw_open=0.15, lip_round=0.35),
    **dict.fromkeys("szʦʣ", _SIBILANT),
    **dict.fromkeys("ʃʒ", _POSTALVEOLAR),
    **dict.fromkeys("çʝjɲʎcɟ", _PALATAL),
    **dict.fromkeys("kgɡŋxɣʁχʀqɢɰ", _VELAR),
    **dict.fromkeys("hɦʔ", _GLOTTAL),
}

_PAUSE_TARGET = _Target(values={"jaw_open": 0.0, "lip_press": 0.4},
                        dominance=2.0)
_UNKNOWN_VOWEL = _vowel_target(0.45, 0.5, False)
_UNKNOWN_ROUNDED_VOWEL = _vowel_target(0.45, 0.5, True)
_UNKNOWN_CONSONANT = _ALVEOLAR
_VOWEL_LETTER_NAMES = ("A", "E", "I", "O", "U", "Y", "SCHWA", "AE", "OE",
                       "ALPHA", "EPSILON", "IOTA", "OMEGA", "UPSILON",
                       "OMICRON")
_ROUNDED_LETTER_NAMES = ("O", "U", "Y", "OE", "OMEGA", "UPSILON", "OMICRON")


def _fallback(letter: str) -> _Target:
  """Target of a letter outside the tables, by its class."""
  words = unicodedata.name(letter, "").replace("-", " ").split()
  if "LETTER" in words:
    names = words[words.index("LETTER") + 1:]
    if any(w in _VOWEL_LETTER_NAMES for w in names):
      if any(w in _ROUNDED_LETTER_NAMES for w in names):
        return _UNKNOWN_ROUNDED_VOWEL
      return _UNKNOWN_VOWEL
  return _UNKNOWN_CONSONANT


def _letter_target(letter: str) -> _Target:
  if letter in _VOWELS:
    return _vowel_target(*_VOWELS[letter])
  if letter in _CONSONANTS:
    return _CONSONANTS[letter]
  return _fallback(letter)


def articulated_letters(symbol: str) -> list[str]:
  """Articulated letters of an espeak IPA symbol.

  Drops stress/length marks and modifier letters (Unicode Lm), combining
  diacritics (nasal tilde, ties) and punctuation such as espeak's "-".
  """
  out = []
  for ch in unicodedata.normalize("NFD", symbol):
    category = unicodedata.category(ch)
    if category.startswith("L") and category != "Lm":
      out.append(ch)
  return out


def is_known_letter(letter: str) -> bool:
  """Whether `letter` has its own table entry (no class fallback)."""
  return letter in _VOWELS or letter in _CONSONANTS


@functools.lru_cache(maxsize=4096)
def _symbol_parts(symbol: str) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
  """(target [E], dominance [E]) per sub-segment of `symbol`."""
  if symbol.strip() in ("", PAUSE):
    parts = [_PAUSE_TARGET]
  else:
    parts = [_letter_target(ch) for ch in articulated_letters(symbol)] or [
        _UNKNOWN_CONSONANT]
  stressed = "ˈ" in symbol
  out = []
  for part in parts:
    values = np.zeros(len(EXPRESSION_NAMES), np.float64)
    for name, value in part.values.items():
      values[_COL[name]] = value
    dominance = np.full(len(EXPRESSION_NAMES), part.dominance, np.float64)
    for name, value in part.column_dominance.items():
      dominance[_COL[name]] = value
    if stressed and part.is_vowel:
      values[_COL["jaw_open"]] = min(
          1.0, values[_COL["jaw_open"]] * _STRESS_JAW_GAIN)
      values[_COL["brow_raise"]] = _STRESS_BROW
    values.setflags(write=False)
    dominance.setflags(write=False)
    out.append((values, dominance))
  return tuple(out)


def viseme_targets(symbol: str) -> np.ndarray:
  """float32 [K, E] targets of the K sub-segments of an espeak IPA symbol."""
  return np.stack([v for v, _ in _symbol_parts(symbol)]).astype(np.float32)


def _segments(phonemes: Sequence[tuple[str, float, float]], fps: float
              ) -> tuple[np.ndarray, ...]:
  """Plateau starts/ends [N], targets/dominance/decay constants [N, E]."""
  starts, ends, targets, dominance, ahead = [], [], [], [], []
  timed: list[tuple[str, float, float]] = []
  for i, item in enumerate(phonemes):
    if len(item) != 3:
      raise ValueError(
          f"phoneme {i} must be (symbol, start_s, end_s), got {item!r}")
    symbol, start, end = item
    if not (np.isfinite(start) and np.isfinite(end)) or end < start:
      raise ValueError(
          f"phoneme {i} ({symbol!r}) has an invalid interval "
          f"[{start}, {end}]")
    if timed and start < timed[-1][2] - 1e-6:
      raise ValueError(
          f"phoneme {i} ({symbol!r}) starts at {start:.4f}s before the "
          f"previous one ends ({timed[-1][2]:.4f}s); phonemes must be sorted")
    if timed and start > timed[-1][2]:
      # Untimed gaps are silence.
      timed.append((PAUSE, timed[-1][2], start))
    timed.append((symbol, float(start), float(end)))
  for symbol, start, end in timed:
    parts = _symbol_parts(symbol)
    bounds = np.linspace(start, end, len(parts) + 1)
    for (values, dom), s, e in zip(parts, bounds[:-1], bounds[1:]):
      if e - s < 1.0 / fps:
        centre = 0.5 * (s + e)
        s, e = centre - 0.5 / fps, centre + 0.5 / fps
      starts.append(s)
      ends.append(e)
      targets.append(values)
      dominance.append(dom)
      tau_ahead = np.full(len(EXPRESSION_NAMES), _TAU)
      if values[_COL["lip_round"]] >= 0.5:
        tau_ahead[_COL["lip_round"]] = _TAU_ROUND_AHEAD
      ahead.append(tau_ahead)
  # Silence before the first and after the last phoneme.
  first = phonemes[0][1] if phonemes else 0.0
  last = phonemes[-1][2] if phonemes else 0.0
  pause_values, pause_dom = _symbol_parts(PAUSE)[0]
  for s, e in ((-np.inf, first), (last, np.inf)):
    starts.append(s)
    ends.append(e)
    targets.append(pause_values)
    dominance.append(pause_dom)
    ahead.append(np.full(len(EXPRESSION_NAMES), _TAU))
  return (np.asarray(starts), np.asarray(ends), np.stack(targets),
          np.stack(dominance), np.stack(ahead))


def expression_trajectory(phonemes: Sequence[tuple[str, float, float]],
                          num_frames: int, fps: float = 25.0) -> np.ndarray:
  """Per-frame expression coefficients driven by timed phonemes.

  Args:
    phonemes: (espeak IPA symbol, start_s, end_s), sorted and
      non-overlapping, e.g. `Utterance.phonemes`.
    num_frames: T, number of video frames to produce; frames after the last
      phoneme are silent (lips closed).
    fps: video frame rate.

  Returns:
    float32 [T, E] in [0, 1], columns in `EXPRESSION_NAMES` order; blink
    columns are 0.
  """
  if num_frames < 0:
    raise ValueError(f"num_frames must be >= 0, got {num_frames}")
  if fps <= 0:
    raise ValueError(f"fps must be > 0, got {fps}")
  starts, ends, targets, dominance, tau_ahead = _segments(phonemes, fps)
  t = (np.arange(num_frames) + 0.5) / fps                          # [T]
  before = np.clip(starts[None, :] - t[:, None], 0.0, None)        # [T, N]
  after = np.clip(t[:, None] - ends[None, :], 0.0, None)           # [T, N]
  decay = ((before[:, :, None] / tau_ahead[None]) ** _DECAY_POWER
           + (after[:, :, None] / _TAU) ** _DECAY_POWER)           # [T, N, E]
  weights = dominance[None] * np.exp(-decay)                       # [T, N, E]
  out = (np.einsum("tne,ne->te", weights, targets)
         / np.maximum(weights.sum(axis=1), 1e-12))                 # [T, E]
  return np.clip(out, 0.0, 1.0).astype(np.float32)

"""Tests for data.visemes (phoneme -> expression trajectories)."""

import numpy as np
import pytest

from data import motion
from data import sentences
from data import speech
from data import visemes
from talking_heads.face import morphable

FPS = 25
COL = {name: i for i, name in enumerate(morphable.EXPRESSION_NAMES)}


def _frames_in(start: float, end: float) -> np.ndarray:
  """Frames whose centre lies in [start, end)."""
  k = np.arange(int(end * FPS) + 2)
  centres = (k + 0.5) / FPS
  return k[(centres >= start) & (centres < end)]


def _timed(symbols_and_durations, start=0.0):
  out, t = [], start
  for symbol, duration in symbols_and_durations:
    out.append((symbol, t, t + duration))
    t += duration
  return out


@pytest.fixture(scope="module")
def utterances() -> list[speech.Utterance]:
  out = []
  for name in ("en_us_m1", "en_gb_f1", "de_f3", "es_m1", "fr_m7"):
    voice = speech.VOICES[name]
    for text in sentences.generate_sentences(voice.language, 3, seed=4):
      out.append(speech.synthesize(text, voice))
  return out


def _num_frames(u: speech.Utterance) -> int:
  return int(np.ceil(u.duration * FPS))


def test_shape_range_and_blink_columns():
  phonemes = _timed([("_", 0.2), ("h", 0.08), ("ə", 0.1), ("l", 0.07),
                     ("ˈoʊ", 0.25), ("_", 0.3)])
  traj = visemes.expression_trajectory(phonemes, 30)
  assert traj.shape == (30, len(morphable.EXPRESSION_NAMES))
  assert traj.dtype == np.float32
  assert traj.min() >= 0 and traj.max() <= 1
  assert set(visemes.SPEECH_COLUMNS) == set(morphable.EXPRESSION_NAMES) - {
      "blink_left", "blink_right"}
  np.testing.assert_array_equal(traj[:, COL["blink_left"]], 0)
  np.testing.assert_array_equal(traj[:, COL["blink_right"]], 0)
  for name in visemes.SPEECH_COLUMNS:
    if name != "brow_raise":  # only stressed vowels raise the brows
      assert traj[:, COL[name]].max() > 0.05, name
  assert visemes.expression_trajectory(phonemes, 0).shape == (0, 9)


def test_bilabial_closes_lips_between_open_vowels():
  phonemes = _timed([("_", 0.3), ("ˈa", 0.2), ("p", 0.1), ("a", 0.2),
                     ("m", 0.1), ("a", 0.2), ("_", 0.4)])
  traj = visemes.expression_trajectory(phonemes, 40)
  jaw, press = traj[:, COL["jaw_open"]], traj[:, COL["lip_press"]]
  for symbol, start, end in phonemes:
    frames = _frames_in(start, end)
    centre = frames[len(frames) // 2]
    if symbol in ("p", "m"):
      assert jaw[centre] < 0.1, symbol
      assert press[centre] > 0.8, symbol
    elif "a" in symbol:
      assert jaw[centre] > 0.7, symbol
      assert press[centre] < 0.1, symbol
  # Silence: jaw shut, lips lightly closed.
  assert jaw[:3].max() < 0.05 and press[:3].min() > 0.35
  assert jaw[-3:].max() < 0.05 and press[-3:].min() > 0.35


def test_short_closure_is_visible_at_25_fps():
  # A 15 ms /b/ would fall between frame centres if sampled naively.
  phonemes = _timed([("_", 0.1), ("a", 0.13), ("b", 0.015), ("a", 0.15),
                     ("_", 0.2)])
  traj = visemes.expression_trajectory(phonemes, 15)
  assert traj[:, COL["lip_press"]][4:9].max() > 0.7


def test_vowel_features_map_to_lip_shape_and_jaw():
  jaw = {v: visemes.viseme_targets(v)[0, COL["jaw_open"]]
         for v in ("i", "e", "ɛ", "a", "u", "o", "ɔ")}
  assert jaw["i"] < jaw["e"] < jaw["ɛ"] < jaw["a"]
  assert jaw["u"] < jaw["o"] < jaw["ɔ"]
  for rounded in ("u", "o", "y", "ø", "ʊ", "w"):
    t = visemes.viseme_targets(rounded)[0]
    assert t[COL["lip_round"]] >= 0.5, rounded
    assert t[COL["lip_spread"]] == 0, rounded
  for spread in ("i", "e", "ɪ"):
    t = visemes.viseme_targets(spread)[0]
    assert t[COL["lip_spread"]] >= 0.6, spread
    assert t[COL["lip_round"]] == 0, spread
  # Stress and length marks and nasalisation do not change the letter's
  # shape; stress opens the jaw a little more and raises the brows.
  base = visemes.viseme_targets("ɔ")
  np.testing.assert_array_equal(visemes.viseme_targets("ɔː"), base)
  np.testing.assert_array_equal(visemes.viseme_targets("ɔ̃"), base)
  stressed = visemes.viseme_targets("ˈɔ")[0]
  assert stressed[COL["jaw_open"]] > base[0, COL["jaw_open"]]
  assert stressed[COL["brow_raise"]] > 0


def test_diphthongs_and_affricates_split_into_parts():
  ai = visemes.viseme_targets("aɪ")
  assert ai.shape == (2, 9)
  assert ai[0, COL["jaw_open"]] > ai[1, COL["jaw_open"]]
  pf = visemes.viseme_targets("pf")
  assert pf[0, COL["lip_press"]] == 1.0 and pf[1, COL["lip_press"]] < 1.0


def test_anticipatory_rounding_reaches_back_over_consonants():
  """Lips round during /s t/ before /u/ but not before /i/."""
  def round_at_s(vowel):
    phonemes = _timed([("_", 0.3), ("s", 0.1), ("t", 0.06), (vowel, 0.25),
                       ("_", 0.3)])
    traj = visemes.expression_trajectory(phonemes, 30)
    return traj[_frames_in(0.3, 0.4), COL["lip_round"]].max()
  assert round_at_s("uː") > 0.25
  assert round_at_s("uː") > 3 * round_at_s("iː")


def test_unknown_symbols_fall_back_by_class():
  # Letters outside the tables: a vowel letter, a rounded vowel letter, a
  # consonant letter, and a symbol without letters.
  vowel = visemes.viseme_targets("ʚ")[0]  # closed open e
  rounded = visemes.viseme_targets("ɷ")[0]  # small letter closed omega
  consonant = visemes.viseme_targets("ʡ")[0]  # glottal stop with stroke
  digits = visemes.viseme_targets("42")[0]
  assert not visemes.is_known_letter("ʚ")
  assert vowel[COL["jaw_open"]] > 0.4 and vowel[COL["lip_round"]] == 0
  assert rounded[COL["lip_round"]] > 0.5
  assert consonant[COL["jaw_open"]] < 0.2
  np.testing.assert_array_equal(digits, consonant)


def test_espeak_symbols_of_all_voices_are_in_the_tables(utterances):
  letters = {ch for u in utterances for p, _, _ in u.phonemes
             for ch in visemes.articulated_letters(p)}
  assert len(letters) > 30
  assert not {ch for ch in letters if not visemes.is_known_letter(ch)}


def test_synthesised_bilabials_and_pauses_close_the_lips(utterances):
  closed, paused = [], []
  for u in utterances:
    traj = visemes.expression_trajectory(u.phonemes, _num_frames(u))
    for symbol, start, end in u.phonemes:
      k = min(int((start + end) / 2 * FPS), len(traj) - 1)
      if symbol in ("p", "b", "m"):
        closed.append(traj[k, [COL["jaw_open"], COL["lip_press"]]])
      elif symbol == speech.PAUSE and end - start > 0.25:
        paused.append(traj[k, [COL["jaw_open"], COL["lip_press"]]])
  closed, paused = np.array(closed), np.array(paused)
  assert len(closed) > 50 and len(paused) > 10
  assert closed[:, 0].mean() < 0.08 and closed[:, 1].mean() > 0.8
  assert np.quantile(closed[:, 1], 0.1) > 0.6
  assert paused[:, 0].max() < 0.05 and paused[:, 1].min() > 0.35


def test_jaw_opening_follows_the_speech_energy(utterances):
  correlations = []
  for u in utterances:
    n = _num_frames(u)
    jaw = visemes.expression_trajectory(u.phonemes, n)[:, COL["jaw_open"]]
    energy = motion.energy_envelope(u.audio, n)
    correlations.append(np.corrcoef(jaw, energy)[0, 1])
  correlations = np.array(correlations)
  print(f"jaw/energy correlation: mean {correlations.mean():.3f}, "
        f"min {correlations.min():.3f}")
  assert correlations.mean() > 0.45
  assert correlations.min() > 0.2


def test_trajectories_are_smooth(utterances):
  """Bounded frame-to-frame change, well below the raw target steps."""
  worst_smooth, worst_raw = 0.0, 0.0
  for u in utterances:
    n = _num_frames(u)
    traj = visemes.expression_trajectory(u.phonemes, n)
    centres = (np.arange(n) + 0.5) / FPS
    raw = np.zeros_like(traj)
    for symbol, start, end in u.phonemes:
      parts = visemes.viseme_targets(symbol)
      bounds = np.linspace(start, end, len(parts) + 1)
      for target, s, e in zip(parts, bounds[:-1], bounds[1:]):
        raw[(centres >= s) & (centres < e)] = target
    worst_smooth = max(worst_smooth, np.abs(np.diff(traj, axis=0)).max())
    worst_raw = max(worst_raw, np.abs(np.diff(raw, axis=0)).max())
  assert worst_smooth < 0.8
  assert worst_smooth < 0.85 * worst_raw


def test_frames_after_the_speech_are_silent():
  phonemes = _timed([("_", 0.1), ("ˈa", 0.2), ("_", 0.1)])
  traj = visemes.expression_trajectory(phonemes, 50)
  np.testing.assert_allclose(traj[20:, COL["jaw_open"]], 0, atol=1e-6)
  np.testing.assert_allclose(traj[20:, COL["lip_press"]], 0.4, atol=1e-6)


def test_untimed_gaps_are_silence():
  phonemes = [("a", 0.0, 0.3), ("a", 2.0, 2.3)]
  traj = visemes.expression_trajectory(phonemes, 60)
  assert traj[25:45, COL["jaw_open"]].max() < 0.01
  assert traj[2:6, COL["jaw_open"]].min() > 0.5


def test_bad_input_is_rejected():
  with pytest.raises(ValueError, match="phoneme 1 .* before the previous"):
    visemes.expression_trajectory([("a", 0.0, 0.3), ("b", 0.1, 0.2)], 10)
  with pytest.raises(ValueError, match="phoneme 0 .* invalid interval"):
    visemes.expression_trajectory([("a", 0.3, 0.1)], 10)
  with pytest.raises(ValueError, match="num_frames"):
    visemes.expression_trajectory([], -1)
  with pytest.raises(ValueError, match="fps"):
    visemes.expression_trajectory([], 3, fps=0)

"""Tests for data.speech (espeak-ng synthesis) and data.sentences."""

import collections
import re
import time

import numpy as np
import pytest

from data import sentences
from data import speech
from data import visemes

TEXT = "My baby pumps blue boats near the old mill."


@pytest.fixture(scope="module")
def utterance() -> speech.Utterance:
  return speech.synthesize(TEXT, "en_us_m1")


def _rms_frames(audio: np.ndarray, hop: int) -> np.ndarray:
  n = len(audio) // hop
  return np.sqrt((audio[:n * hop].reshape(n, hop).astype(np.float64)**2)
                 .mean(axis=1))


def test_audio_is_16k_float32_mono_of_plausible_length(utterance):
  assert utterance.sample_rate == 16000
  assert utterance.audio.dtype == np.float32
  assert utterance.audio.ndim == 1
  # 9 words at 165 words/min last about 3.3 s; espeak adds a final pause.
  assert 2.0 < utterance.duration < 5.5
  rms = float(np.sqrt(np.mean(utterance.audio**2)))
  assert rms > 0.02, "audio is (nearly) silent"
  assert np.abs(utterance.audio).max() <= 1.0
  assert utterance.voice == "en_us_m1"
  assert utterance.language == "en-us"
  assert utterance.text == TEXT


def test_slower_rate_gives_longer_audio():
  fast = speech.synthesize(TEXT, speech.Voice("fast", "en-us", "en-us",
                                              rate=250))
  slow = speech.synthesize(TEXT, speech.Voice("slow", "en-us", "en-us",
                                              rate=120))
  assert slow.duration > 1.5 * fast.duration


def test_synthesis_is_deterministic_across_interleaved_calls():
  first = speech.synthesize(TEXT, "en_us_f2")
  # Another voice in between must not leak state into the next call.
  speech.synthesize("Guten Morgen, Bernd.", "de_m2")
  second = speech.synthesize(TEXT, "en_us_f2")
  np.testing.assert_array_equal(first.audio, second.audio)
  assert first.phonemes == second.phonemes
  assert first.words == second.words


def test_seed_drives_breath_noise():
  # en_us_f2 mixes breath noise; the seed is its only randomness.
  a = speech.synthesize(TEXT, "en_us_f2", seed=0)
  b = speech.synthesize(TEXT, "en_us_f2", seed=1)
  assert a.audio.shape == b.audio.shape
  assert not np.array_equal(a.audio, b.audio)
  assert a.phonemes == b.phonemes


def test_phoneme_timings_sorted_contiguous_and_inside_audio(utterance):
  phonemes = utterance.phonemes
  assert len(phonemes) > 20
  starts = np.array([s for _, s, _ in phonemes])
  ends = np.array([e for _, _, e in phonemes])
  assert np.all(ends > starts)
  assert np.all(np.diff(starts) > 0)
  np.testing.assert_allclose(starts[1:], ends[:-1])  # contiguous
  assert starts[0] >= 0 and starts[0] < 0.05
  assert ends[-1] <= utterance.duration + 1e-9
  assert ends[-1] == pytest.approx(utterance.duration, abs=1 / 16000)
  symbols = [p for p, _, _ in phonemes]
  assert symbols[-1] == speech.PAUSE
  # espeak's IPA for the bilabials and the rounded vowels of the text.
  assert symbols.count("b") >= 3 and "m" in symbols and "p" in symbols
  assert any("uː" in s for s in symbols)


def test_words_match_text_and_phonemes(utterance):
  words = utterance.words
  expected = re.findall(r"[\w']+", TEXT)
  assert [w for w, _, _ in words] == expected
  for (w, s, e), (_, s_next, _) in zip(words, words[1:] + [("", 1e9, 0)]):
    assert 0 <= s < e <= utterance.duration, w
    assert e <= s_next + 1e-9, w
  # Each word starts exactly at one of its phonemes.
  phoneme_starts = {s for _, s, _ in utterance.phonemes}
  assert all(s in phoneme_starts for _, s, _ in words)


def test_phonemes_cover_the_speech_energy(utterance):
  """Voiced energy lies inside phoneme intervals, pauses are quiet."""
  hop = 160  # 10 ms
  rms = _rms_frames(utterance.audio, hop)
  centres = (np.arange(len(rms)) + 0.5) * hop / 16000
  in_speech = np.zeros(len(rms), bool)
  for symbol, start, end in utterance.phonemes:
    if symbol != speech.PAUSE:
      in_speech |= (centres >= start) & (centres < end)
  energy = rms**2
  share = energy[in_speech].sum() / energy.sum()
  assert share > 0.99, share
  assert rms[~in_speech].mean() < 0.1 * rms[in_speech].mean()
  # And the speech frames really carry sound.
  assert np.mean(rms[in_speech] > 0.01) > 0.8


def test_vowel_onsets_align_with_energy_rise():
  """Energy rises at the phoneme boundary, not before or long after."""
  u = speech.synthesize("Pa ta ka. Papa. Pop up, Bob!", "en_us_m3")
  hop = 160  # 10 ms
  rms = _rms_frames(u.audio, hop)
  checked = 0
  for (prev, _, _), (sym, start, _) in zip(u.phonemes, u.phonemes[1:]):
    letters = visemes.articulated_letters(sym)
    if prev in ("p", "t", "k") and letters and letters[0] in "aɑʌ":
      k = int(round(start * 16000 / hop))
      before = rms[k - 3:k].mean()  # the stop's closure and burst
      after = rms[k + 1:k + 4].mean()  # the vowel's first 40 ms
      assert after > 2.5 * before, (sym, start, before, after)
      checked += 1
  assert checked >= 5


def test_every_registered_voice_synthesises():
  for name, voice in speech.VOICES.items():
    text = sentences.generate_sentences(voice.language, 1, seed=3)[0]
    u = speech.synthesize(text, name)
    assert u.language == voice.language
    assert u.duration > 0.8, name
    assert float(np.sqrt(np.mean(u.audio**2))) > 0.01, name
    assert sum(p != speech.PAUSE for p, _, _ in u.phonemes) >= 8, name
    assert len(u.words) >= 3, name


def test_registry_shape_and_held_out_split():
  assert len(speech.VOICES) >= 8
  languages = {v.language for v in speech.VOICES.values()}
  assert len({lang.split("-")[0] for lang in languages}) >= 2
  held, train = set(speech.HELD_OUT_VOICES), set(speech.TRAIN_VOICES)
  assert held and train
  assert not held & train
  assert held | train == set(speech.VOICES)
  train_langs = {speech.VOICES[n].base_language for n in train}
  held_langs = {speech.VOICES[n].base_language for n in held}
  # A whole language is held out, plus an English voice.
  for lang in speech.HELD_OUT_LANGUAGES:
    assert lang in held_langs and lang not in train_langs
  assert "en" in held_langs
  held_en = {speech.VOICES[n].espeak_voice for n in held
             if speech.VOICES[n].base_language == "en"}
  train_en = {speech.VOICES[n].espeak_voice for n in train}
  assert not held_en & train_en


def test_language_switch_markers_are_not_phonemes():
  # espeak reads the English loan word "Baby" with English rules and
  # reports a "(en)" switch marker.
  u = speech.synthesize("Das Baby malt das Boot.", "de_m2")
  assert not any(p.startswith("(") for p, _, _ in u.phonemes)
  starts = [s for _, s, _ in u.phonemes]
  ends = [e for _, _, e in u.phonemes]
  np.testing.assert_allclose(starts[1:], ends[:-1])
  assert [w for w, _, _ in u.words] == ["Das", "Baby", "malt", "das", "Boot"]


@pytest.mark.parametrize("text", ["", "   \n"])
def test_empty_text_is_rejected(text):
  with pytest.raises(ValueError, match="empty text"):
    speech.synthesize(text, "en_us_m1")


def test_text_without_speech_is_rejected():
  with pytest.raises(ValueError, match="no speech"):
    speech.synthesize("...", "en_us_m1")


def test_unknown_voices_are_rejected():
  with pytest.raises(ValueError, match="Unknown voice 'klingon'"):
    speech.synthesize("Hello.", "klingon")
  bogus = speech.Voice("bogus", "zz-nothing", "zz")
  with pytest.raises(ValueError, match="no voice 'zz-nothing'"):
    speech.synthesize("Hello.", bogus)


def test_synthesis_is_faster_than_real_time():
  text = " ".join(sentences.generate_sentences("en", 4, seed=11))
  start = time.process_time()
  u = speech.synthesize(text, "en_gb_f1")
  cpu = time.process_time() - start
  # Typically ~300x real time; a loose bound for a loaded machine.
  assert u.duration / max(cpu, 1e-6) > 10


# --- sentences --------------------------------------------------------------


def test_sentences_are_deterministic_per_seed():
  for lang in sentences.LANGUAGES:
    a = sentences.generate_sentences(lang, 20, seed=5)
    assert a == sentences.generate_sentences(lang, 20, seed=5)
    assert a != sentences.generate_sentences(lang, 20, seed=6)
  rng1, rng2 = np.random.default_rng(9), np.random.default_rng(9)
  assert (sentences.generate_sentence("en-us", rng1)
          == sentences.generate_sentence("en", rng2))


def test_sentence_lengths_cover_the_range():
  for lang in sentences.LANGUAGES:
    texts = sentences.generate_sentences(lang, 300, seed=0)
    counts = collections.Counter(len(t.split()) for t in texts)
    assert min(counts) >= sentences.MIN_WORDS
    assert max(counts) == sentences.MAX_WORDS
    assert min(counts) <= 4
    assert len(counts) >= 11, (lang, sorted(counts))
    assert len(set(texts)) > 280  # hardly any repeats
    assert all(t[0].isupper() or t[0] in "¡¿" for t in texts)
    assert all(t[-1] in ".!?" for t in texts)


def test_sentences_are_rich_in_bilabials_and_rounded_vowels():
  """Phonemes of generated text: closures and rounding occur often."""
  for name in ("en_us_m1", "de_m2", "es_f4", "fr_m7"):
    voice = speech.VOICES[name]
    symbols = []
    for text in sentences.generate_sentences(voice.language, 5, seed=2):
      symbols += [p for p, _, _ in speech.synthesize(text, voice).phonemes]
    letters = [ch for s in symbols if s != speech.PAUSE
               for ch in visemes.articulated_letters(s)]
    bilabial = np.mean([ch in "pbm" for ch in letters])
    rounded = np.mean([ch in "uoɔʊyøœʏwɒ" for ch in letters])
    assert bilabial > 0.08, (name, bilabial)
    assert rounded > 0.05, (name, rounded)


def test_unknown_sentence_language_is_rejected():
  with pytest.raises(ValueError, match="No sentence grammar for language"):
    sentences.generate_sentence("xx", np.random.default_rng(0))

"""Deterministic espeak-ng speech synthesis with phoneme and word timings.

The synthetic corpus needs speech whose phonetic content is known to the
sample, so that visemes can be driven from it. This module runs the espeak-ng
library shipped in the `espeakng-loader` wheel through ctypes, collects the
synthesiser's PHONEME and WORD events (with their sample positions) and returns
an `Utterance`: 16 kHz float32 mono audio plus (symbol, start_s, end_s) phoneme
and (word, start_s, end_s) word intervals.

Phoneme symbols are espeak-ng's IPA spellings (stress marks and length marks
included, e.g. "ˈoʊ", "uː", "ç"); pauses are the symbol `PAUSE` ("_"). espeak
gives pauses and a few linking sounds (e.g. English "the_old" glide) the same
empty IPA name, so each text is synthesised twice, once with IPA and once with
espeak's own phoneme mnemonics, in which pauses start with "_"; the event
streams of the two runs are identical in timing. Linking sounds without an IPA
name are merged into the phoneme before them.

Determinism: libespeak-ng keeps synthesis state in C globals that survive
between utterances (a pitch-flutter phase, gain control, a noise generator that
is seeded from the clock), so the same text synthesised twice in one process
would differ by a few samples. Every call therefore loads a fresh instance of
the library, seeds its noise generator and unloads it again (about 1 ms). A lock
serialises calls within a process because the library is process-global; worker
processes (e.g. a corpus generator's pool) each load and initialise their own
instance, so they need no coordination.
"""

from __future__ import annotations

import _ctypes
import ctypes
import dataclasses
import os
import threading
from collections.abc import Sequence

import espeakng_loader
import numpy as np
import soxr

from talking_heads.audio.windows import SAMPLE_RATE

PAUSE = "_"

# espeak-ng C API constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_POS_CHARACTER = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_EE_OK = 0


class _EventId(ctypes.Union):
  _fields_ = [
      ("number", ctypes.c_int),
      ("name", ctypes.c_char_p),
      ("string", ctypes.c_char * 8),
  ]


class _Event(ctypes.Structure):
  _fields_ = [
      ("type", ctypes.c_int),
      ("unique_identifier", ctypes.c_uint),
      ("text_position", ctypes.c_int),
      ("length", ctypes.c_int),
      ("audio_position", ctypes.c_int),
      ("sample", ctypes.c_int),
      ("user_data", ctypes.c_void_p),
      ("id", _EventId),
  ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
    ctypes.POINTER(_Event))

_LOCK = threading.Lock()


@dataclasses.dataclass(frozen=True)
class Voice:
  """A named espeak-ng voice setting.

  Attributes:
    name: registry key, e.g. "en_us_m1".
    espeak_voice: espeak-ng voice name with optional variant, e.g. "en-us+m1".
    language: BCP-47-like language tag, e.g. "en-us", "de".
    pitch: espeak base pitch, 0-99 (50 is the voice's default).
    rate: speaking rate in words per minute, 80-450.
  """
  name: str
  espeak_voice: str
  language: str
  pitch: int = 50
  rate: int = 175

  @property
  def base_language(self) -> str:
    """Language without region, e.g. "en" for "en-us" (used for sentences)."""
    return self.language.split("-")[0]


_VOICE_LIST = (
    # Training voices: American and British English, German, Spanish.
    Voice("en_us_m1", "en-us+m1", "en-us", pitch=40, rate=165),
    Voice("en_us_f2", "en-us+f2", "en-us", pitch=58, rate=175),
    Voice("en_us_m3", "en-us+m3", "en-us", pitch=48, rate=190),
    Voice("en_gb_f1", "en+f1", "en-gb", pitch=55, rate=160),
    Voice("en_gb_m4", "en+m4", "en-gb", pitch=45, rate=170),
    Voice("de_m2", "de+m2", "de", pitch=45, rate=160),
    Voice("de_f3", "de+f3", "de", pitch=55, rate=170),
    Voice("es_m1", "es+m1", "es", pitch=42, rate=175),
    Voice("es_f4", "es+f4", "es", pitch=60, rate=165),
    # Held out: an unseen English accent with an unseen variant, and French.
    Voice("en_rp_f5", "en-GB-x-rp+f5", "en-gb", pitch=62, rate=150),
    Voice("fr_m7", "fr+m7", "fr", pitch=45, rate=170),
    Voice("fr_f3", "fr+f3", "fr", pitch=57, rate=160),
)

VOICES: dict[str, Voice] = {v.name: v for v in _VOICE_LIST}
# Out-of-domain audio for evaluation: never used to build training data.
HELD_OUT_VOICES: tuple[str, ...] = ("en_rp_f5", "fr_m7", "fr_f3")
HELD_OUT_LANGUAGES: tuple[str, ...] = ("fr",)
TRAIN_VOICES: tuple[str, ...] = tuple(
    name for name in VOICES if name not in HELD_OUT_VOICES)


def get_voice(name: str) -> Voice:
  """Returns the registered voice `name`; ValueError names the known ones."""
  try:
    return VOICES[name]
  except KeyError:
    raise ValueError(
        f"Unknown voice {name!r}; registered voices: {sorted(VOICES)}"
    ) from None


@dataclasses.dataclass(frozen=True, eq=False)
class Utterance:
  """Synthesised speech with its phonetic timing.

  Attributes:
    audio: float32 [N] mono waveform in [-1, 1] at `sample_rate`.
    sample_rate: always `SAMPLE_RATE` (16 kHz).
    text: the input text.
    voice: registry name of the voice.
    language: language tag of the voice.
    phonemes: (IPA symbol, start_s, end_s) in time order, contiguous; pauses
      are `PAUSE`.
    words: (word as written in `text`, start_s, end_s) in time order.
  """
  audio: np.ndarray
  sample_rate: int
  text: str
  voice: str
  language: str
  phonemes: list[tuple[str, float, float]]
  words: list[tuple[str, float, float]]

  @property
  def duration(self) -> float:
    """Audio length in seconds."""
    return len(self.audio) / self.sample_rate


@dataclasses.dataclass(frozen=True)
class _RawEvent:
  kind: int
  text_position: int
  length: int
  sample: int
  symbol: str
  # espeak's mnemonic name of a phoneme (second run), e.g. "_:" for a pause.
  mnemonic: str = ""


def _library_resident(path: str) -> bool:
  """Whether `path` is already loaded into this process (dlopen NOLOAD)."""
  try:
    handle = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
  except OSError:
    return False
  _ctypes.dlclose(handle._handle)
  return True


def _run_espeak(voice: Voice, text: str, seed: int,
                ipa: bool) -> tuple[np.ndarray, int, list[_RawEvent]]:
  """Synthesises `text` in a freshly loaded libespeak-ng.

  Args:
    voice: the voice.
    text: the text.
    seed: seed of espeak's noise generator.
    ipa: name phonemes in IPA (else in espeak's mnemonics).

  Returns:
    int16 samples at the native rate, the native rate, and the events.
  """
  path = espeakng_loader.get_library_path()
  if _library_resident(path):
    raise RuntimeError(
        f"{path} is already loaded by other code in this process, so its "
        "synthesis state cannot be reset and synthesis would not be "
        "deterministic; synthesise in a process that loads it only through "
        "data.speech.")
  chunks: list[np.ndarray] = []
  events: list[_RawEvent] = []

  def on_synth(wav, num_samples, event_array):
    if num_samples > 0:
      chunks.append(np.ctypeslib.as_array(wav, (num_samples,)).copy())
    i = 0
    while event_array[i].type != _EVENT_LIST_TERMINATED:
      ev = event_array[i]
      if ev.type in (_EVENT_WORD, _EVENT_PHONEME):
        symbol = ""
        if ev.type == _EVENT_PHONEME:
          # An 8-byte name may be cut mid-character: drop the partial bytes.
          symbol = bytes(ev.id.string).split(b"\0")[0].decode(
              "utf-8", errors="ignore")
        events.append(_RawEvent(ev.type, ev.text_position, ev.length,
                                 ev.sample, symbol))
      i += 1
    return 0

  callback = _SynthCallback(on_synth)
  data_parent = os.path.dirname(espeakng_loader.get_data_path())
  lib = ctypes.CDLL(path, mode=os.RTLD_LOCAL)
  try:
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [
        ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int,
                                        ctypes.c_int]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
        ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    native_rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent.encode(),
        _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        | (_INITIALIZE_PHONEME_IPA if ipa else 0))
    if native_rate <= 0:
      raise RuntimeError(
          f"espeak_Initialize failed ({native_rate}) with data {data_parent}")
    lib.espeak_SetSynthCallback(callback)
    lib.espeak_ng_SetRandSeed(seed)
    status = lib.espeak_SetVoiceByName(voice.espeak_voice.encode())
    if status != _EE_OK:
      raise ValueError(
          f"espeak-ng has no voice {voice.espeak_voice!r} (voice "
          f"{voice.name!r}, status {status})")
    lib.espeak_SetParameter(_PARAM_RATE, voice.rate, 0)
    lib.espeak_SetParameter(_PARAM_PITCH, voice.pitch, 0)
    lib.espeak_SetParameter(_PARAM_RANGE, 50, 0)
    encoded = text.encode("utf-8")
    status = lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER,
                              0, _CHARS_UTF8 | _ENDPAUSE, None, None)
    if status != _EE_OK:
      raise RuntimeError(
          f"espeak_Synth failed with status {status} for {text!r}")
    lib.espeak_Synchronize()
  finally:
    lib.espeak_Terminate()
    # Unloading discards the C globals, so the next call starts afresh.
    _ctypes.dlclose(lib._handle)
  samples = (np.concatenate(chunks) if chunks
             else np.zeros((0,), np.int16))
  return samples, native_rate, events


def _phoneme_intervals(events: Sequence[_RawEvent], num_samples: int
                      ) -> list[tuple[str, int, int, int]]:
  """(symbol, start, end, text_position) per phoneme in native samples.

  A phoneme event marks where its phoneme starts; it lasts until the next one.
  Zero-length entries are dropped and adjacent pauses merged. A language
  switch marker such as "(en)" (espeak reads a foreign word with another
  language's rules) is not a sound: the phoneme after it starts at the marker.
  A sound without an IPA name extends the phoneme before it.
  """
  phon = [e for e in events if e.kind == _EVENT_PHONEME]
  out: list[tuple[str, int, int, int]] = []
  carry_start = None
  for i, ev in enumerate(phon):
    end = phon[i + 1].sample if i + 1 < len(phon) else num_samples
    start = min(ev.sample if carry_start is None else carry_start,
                num_samples)
    end = min(end, num_samples)
    symbol = ev.symbol.strip()
    if symbol.startswith("(") and symbol.endswith(")"):
      carry_start = start
      continue
    carry_start = None
    if end <= start:
      continue
    if ev.mnemonic.startswith("_"):
      symbol = PAUSE
    if out and (not symbol or symbol == PAUSE == out[-1][0]):
      out[-1] = (out[-1][0], out[-1][1], end, out[-1][3])
    elif symbol:
      out.append((symbol, start, end, ev.text_position))
    else:
      carry_start = start
  return out


def _attach_mnemonics(events: Sequence[_RawEvent],
                      mnemonic_events: Sequence[_RawEvent],
                      text: str) -> list[_RawEvent]:
  """Adds the second run's phoneme mnemonics to the IPA run's events."""
  phon = [e for e in mnemonic_events if e.kind == _EVENT_PHONEME]
  out, j = [], 0
  for ev in events:
    if ev.kind == _EVENT_PHONEME:
      if j >= len(phon) or phon[j].sample != ev.sample:
        raise RuntimeError(
            f"espeak-ng's IPA and mnemonic runs disagree at phoneme {j} of "
            f"{text!r}")
      ev = dataclasses.replace(ev, mnemonic=phon[j].symbol)
      j += 1
    out.append(ev)
  if j != len(phon):
    raise RuntimeError(
        f"espeak-ng's IPA and mnemonic runs differ in length for {text!r}")
  return out


def _word_intervals(events: Sequence[_RawEvent], text: str,
                    phonemes: Sequence[tuple[str, int, int, int]],
                    num_samples: int) -> list[tuple[str, int, int]]:
  """(word, start, end) in native samples from WORD events.

  Phoneme events carry the text position of their word, so a word spans its
  own non-pause phonemes; a word without any keeps its event position and
  ends where the next word starts.
  """
  word_events = [e for e in events if e.kind == _EVENT_WORD]
  out: list[tuple[str, int, int]] = []
  for i, ev in enumerate(word_events):
    word = text[max(ev.text_position - 1, 0):
                ev.text_position - 1 + ev.length]
    own = [(s, e) for sym, s, e, pos in phonemes
           if pos == ev.text_position and sym != PAUSE]
    if own:
      start, end = own[0][0], own[-1][1]
    else:
      start = min(ev.sample, num_samples)
      end = (word_events[i + 1].sample if i + 1 < len(word_events)
             else num_samples)
      end = min(max(end, start), num_samples)
    out.append((word, start, end))
  return out


def synthesize(text: str, voice: Voice | str, seed: int = 0) -> Utterance:
  """Synthesises `text` with `voice` (a `Voice` or a registered name).

  Args:
    text: what to say, plain UTF-8 text in the voice's language.
    voice: a `Voice` or the name of one in `VOICES`.
    seed: seed of espeak-ng's breath-noise generator (voices with breath
      noise, e.g. variant f2, use it).

  Returns:
    An `Utterance` at 16 kHz. Same arguments -> bit-identical result.

  Raises:
    ValueError: empty text, an unknown voice, or text that yields no speech.
  """
  if isinstance(voice, str):
    voice = get_voice(voice)
  if not isinstance(text, str) or not text.strip():
    raise ValueError(
        f"Cannot synthesise empty text {text!r} (voice {voice.name!r})")
  with _LOCK:
    samples, native_rate, events = _run_espeak(voice, text, seed, ipa=True)
    _, _, mnemonic_events = _run_espeak(voice, text, seed, ipa=False)
  events = _attach_mnemonics(events, mnemonic_events, text)
  phonemes = _phoneme_intervals(events, len(samples))
  if not any(sym != PAUSE for sym, *_ in phonemes):
    raise ValueError(
        f"espeak-ng produced no speech for {text!r} (voice {voice.name!r})")
  words = _word_intervals(events, text, phonemes, len(samples))

  audio = soxr.resample(samples.astype(np.float32) / 32768.0, native_rate,
                        SAMPLE_RATE, quality="HQ").astype(np.float32)
  duration = len(audio) / SAMPLE_RATE

  # Times come from native sample positions; clipping keeps them inside the
  # resampled audio, whose length is rounded to whole 16 kHz samples.
  def seconds(n: int) -> float:
    return min(n / native_rate, duration)

  return Utterance(
      audio=audio,
      sample_rate=SAMPLE_RATE,
      text=text,
      voice=voice.name,
      language=voice.language,
      phonemes=[(sym, seconds(s), seconds(e)) for sym, s, e, _ in phonemes],
      words=[(w, seconds(s), seconds(e)) for w, s, e in words],
  )

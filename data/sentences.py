"""Deterministic sentence generator for the synthetic speech corpus.

Sentences are built from small hand-written grammars per language: a clause is
subject + verb + object, optionally followed by a place/time phrase and an
adverb, and clauses are joined by conjunctions. Subjects are third person
singular and verbs present tense, so no agreement rules are needed; German
objects are written in the accusative. The word lists are rich in bilabials
(p, b, m) and rounded vowels (u, o, w, French/German ou, ö, ü) so that the
visemes the corpus derives from the speech vary: closures, rounding, spreading
and open vowels all occur often.

Usage:
  rng = np.random.default_rng(0)
  text = generate_sentence("de", rng)          # one sentence
  texts = generate_sentences("en", 100, seed=0)
"""

from __future__ import annotations

import dataclasses

import numpy as np

MIN_WORDS = 3
MAX_WORDS = 15


@dataclasses.dataclass(frozen=True)
class _Grammar:
  subjects: tuple[str, ...]
  verbs: tuple[str, ...]
  objects: tuple[str, ...]
  phrases: tuple[str, ...]
  adverbs: tuple[str, ...]
  conjunctions: tuple[str, ...]
  # Spanish opens questions and exclamations with inverted marks.
  inverted_marks: bool = False


_GRAMMARS: dict[str, _Grammar] = {
    "en": _Grammar(
        subjects=("Bob", "Paul", "Mom", "Maria", "my brother", "the old man",
                  "a small boy", "the baby", "our neighbour", "the pilot",
                  "Uncle Tom", "the woman", "a blue robot", "the teacher"),
        verbs=("paints", "buys", "moves", "brings", "opens", "pushes",
               "bakes", "wipes", "loves", "shows", "borrows", "cooks",
               "keeps", "needs", "picks", "throws", "watches", "drops"),
        objects=("the boat", "a warm blanket", "some soup", "two apples",
                 "the map", "pink balloons", "the music box", "a big pumpkin",
                 "the moon lamp", "a blue bowl", "the broom", "maple syrup",
                 "the rubber boots", "a room", "the phone", "bread"),
        phrases=("by the pool", "in the morning", "before noon",
                 "near the moon", "at the museum", "on Monday",
                 "under the bridge", "with a spoon", "in the old mill",
                 "behind the barn", "by the harbour", "at home"),
        adverbs=("quickly", "very slowly", "again", "happily", "maybe",
                 "too often", "with a smile", "every summer", "today"),
        conjunctions=("and", "but", "because", "while", "so")),
    "de": _Grammar(
        subjects=("Paul", "Mama", "Bernd", "die Mutter", "mein Bruder",
                  "der alte Mann", "ein kleiner Bub", "das Baby",
                  "unser Nachbar", "die Lehrerin", "Onkel Ulrich",
                  "der Bäcker", "die Oma", "ein blauer Roboter"),
        verbs=("malt", "kauft", "bewegt", "bringt", "öffnet", "schubst",
               "backt", "putzt", "liebt", "zeigt", "borgt", "kocht",
               "sucht", "braucht", "pflückt", "wirft", "besucht", "bemerkt"),
        objects=("das Boot", "eine warme Decke", "die Suppe", "zwei Äpfel",
                 "die Karte", "rote Ballons", "den Kuchen", "einen Kürbis",
                 "die Mondlampe", "eine blaue Schüssel", "den Besen",
                 "die Blumen", "das Buch", "den Hut", "Brot", "Obst"),
        phrases=("am Morgen", "im Museum", "am Montag", "unter der Brücke",
                 "mit dem Löffel", "in der alten Mühle", "hinter dem Haus",
                 "im Sommer", "am Hafen", "zu Hause", "beim Bummel"),
        adverbs=("schnell", "sehr langsam", "wieder", "fröhlich",
                 "vielleicht", "zu oft", "immer", "heute", "sofort"),
        conjunctions=("und", "aber", "denn", "doch", "oder")),
    "es": _Grammar(
        subjects=("Pablo", "Mamá", "Bruno", "María", "mi hermano",
                  "el hombre mayor", "un niño pequeño", "el bebé",
                  "nuestro vecino", "la maestra", "el tío Tomás",
                  "la abuela", "un robot azul", "la mujer"),
        verbs=("pinta", "compra", "mueve", "trae", "abre", "empuja",
               "hornea", "limpia", "ama", "muestra", "busca", "cocina",
               "guarda", "necesita", "recoge", "tira", "mira", "sube"),
        objects=("el barco", "una manta", "la sopa", "dos manzanas",
                 "el mapa", "globos rosas", "la música", "una calabaza",
                 "la lámpara", "un bol azul", "la escoba", "el mole",
                 "las botas", "un poema", "pan", "un buzón", "flores"),
        phrases=("en la playa", "por la mañana", "antes del mediodía",
                 "bajo la luna", "en el museo", "el lunes",
                 "bajo el puente", "con una cuchara", "en el molino",
                 "en el bosque", "junto al puerto", "en casa"),
        adverbs=("muy rápido", "despacio", "otra vez", "con alegría",
                 "quizás", "a menudo", "siempre", "hoy", "mucho"),
        conjunctions=("y", "pero", "porque", "mientras", "pues"),
        inverted_marks=True),
    "fr": _Grammar(
        subjects=("Paul", "Maman", "Bruno", "Marie", "mon frère",
                  "le vieil homme", "un petit garçon", "le bébé",
                  "notre voisin", "la maîtresse", "l'oncle Louis",
                  "la boulangère", "un robot bleu", "la femme"),
        verbs=("peint", "achète", "bouge", "apporte", "ouvre", "pousse",
               "cuit", "essuie", "aime", "montre", "emprunte", "cuisine",
               "garde", "cherche", "cueille", "jette", "regarde", "porte"),
        objects=("le bateau", "une couverture", "la soupe", "deux pommes",
                 "la carte", "des ballons roses", "la boîte à musique",
                 "une grosse citrouille", "la lampe", "un bol bleu",
                 "le balai", "du beurre", "les bottes", "un mouton",
                 "le pain", "des bonbons"),
        phrases=("au bord de la piscine", "le matin", "avant midi",
                 "sous la lune", "au musée", "lundi", "sous le pont",
                 "avec une cuillère", "au vieux moulin", "dans le bois",
                 "près du port", "à la maison"),
        adverbs=("vite", "très doucement", "encore", "joyeusement",
                 "peut-être", "souvent", "toujours", "aujourd'hui",
                 "beaucoup"),
        conjunctions=("et", "mais", "parce que", "pendant que", "donc")),
}

LANGUAGES: tuple[str, ...] = tuple(_GRAMMARS)


def _num_words(text: str) -> int:
  return len(text.split())


def _grammar(language: str) -> _Grammar:
  base = language.split("-")[0].lower()
  if base not in _GRAMMARS:
    raise ValueError(
        f"No sentence grammar for language {language!r}; known: {LANGUAGES}")
  return _GRAMMARS[base]


def _clause(g: _Grammar, rng: np.random.Generator) -> str:
  """Subject + verb + object, each extension added with probability 1/2."""
  words = [str(rng.choice(g.subjects)), str(rng.choice(g.verbs)),
           str(rng.choice(g.objects))]
  if rng.random() < 0.5:
    words.append(str(rng.choice(g.phrases)))
  if rng.random() < 0.5:
    words.append(str(rng.choice(g.adverbs)))
  return " ".join(words)


def generate_sentence(language: str, rng: np.random.Generator) -> str:
  """One sentence of MIN_WORDS..MAX_WORDS words in `language`.

  A target length is drawn uniformly, then candidates are drawn until one is
  within a word of it, so lengths spread over the whole range.

  Args:
    language: "en", "de", "es" or "fr" (a region suffix such as "en-us" is
      ignored).
    rng: source of randomness; the same generator state gives the same text.

  Returns:
    A capitalised sentence ending in ".", "!" or "?".
  """
  g = _grammar(language)
  target = int(rng.integers(MIN_WORDS, MAX_WORDS + 1))
  while True:
    parts = [_clause(g, rng)]
    while _num_words(" ".join(parts)) < target - 1:
      parts += [str(rng.choice(g.conjunctions)), _clause(g, rng)]
    text = " ".join(parts)
    n = _num_words(text)
    if abs(n - target) <= 1 and MIN_WORDS <= n <= MAX_WORDS:
      break
  end = str(rng.choice([".", ".", ".", "!", "?"]))
  text = text[0].upper() + text[1:] + end
  if g.inverted_marks and end != ".":
    text = {"!": "¡", "?": "¿"}[end] + text
  return text


def generate_sentences(language: str, count: int, seed: int) -> list[str]:
  """`count` sentences from a generator seeded with `seed`."""
  if count < 0:
    raise ValueError(f"count must be >= 0, got {count}")
  rng = np.random.default_rng(seed)
  return [generate_sentence(language, rng) for _ in range(count)]

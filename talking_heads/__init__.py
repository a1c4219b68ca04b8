"""talking_heads: JAX/Flax reimplementations of five audio-driven talking-head systems.

LaDTalk, FD2Talk, DAE-Talker, PIR and RADIO, composed from shared, tested building blocks.
Importing the library parses no flags and imports neither `experiments` nor `data`.
"""

__version__ = "0.1.0"

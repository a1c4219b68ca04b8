"""Compiles librosa's numba kernels once, serially, right after installation.

numba caches compiled kernels next to librosa's sources. Processes that compile the same kernel at
the same time (pytest-xdist workers, corpus worker processes) race on that cache, and a process that
loads a half-written entry can crash with SIGSEGV inside `librosa.yin`. Compiling every signature
the project uses once, before anything runs in parallel, leaves only reads for later processes.
"""

import numpy as np

from data import motion
from talking_heads.metrics import temporal


def main() -> None:
  rng = np.random.default_rng(0)
  for dtype in (np.float32, np.float64):
    audio = (0.1 * rng.standard_normal(32000)).astype(dtype)
    motion.head_pose_trajectory(audio, 50, np.random.default_rng(0))
    temporal.audio_beats(audio, 16000, 25.0)


if __name__ == "__main__":
  main()

"""Log set-up shared by the launchers."""

import logging as py_logging

from absl import logging


def quiet_library_logs() -> None:
  """Keeps orbax's per-save INFO chatter out of run logs (its warnings still show)."""
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= py_logging.WARNING or "orbax" not in record.pathname)

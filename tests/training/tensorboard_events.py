"""Reads a run's TensorBoard event files (TFRecord framing: length, its CRC, the Event proto, its
CRC) into what each tag holds, so tests check what TensorBoard will show."""

from __future__ import annotations

import pathlib
import struct

from tensorboardX.proto import event_pb2


def summaries(logdir: str | pathlib.Path) -> dict[str, dict[str, list[int]]]:
  """Tag -> {"scalar" or "image": the steps written} over every event file under `logdir`."""
  found: dict[str, dict[str, list[int]]] = {}
  for path in sorted(pathlib.Path(logdir).rglob("events.out.tfevents.*")):
    data, offset = path.read_bytes(), 0
    while offset + 12 <= len(data):
      (length,) = struct.unpack_from("<Q", data, offset)
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        kind = value.WhichOneof("value")
        kind = {"simple_value": "scalar"}.get(kind, kind)
        found.setdefault(value.tag, {}).setdefault(kind, []).append(event.step)
  return found

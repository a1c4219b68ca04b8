"""transformers' wav2vec 2.0 checkpoints -> `talking_heads.audio.wav2vec2` variables, without torch.

Reads `model.safetensors` (safetensors' numpy API) or `pytorch_model.bin`
(`third_party.torch_reader`) of a bare `Wav2Vec2Model` or of the hub's `Wav2Vec2ForCTC` /
`Wav2Vec2ForPreTraining` files; the key layout, the dropped heads and the two weight-norm
namings are `third_party.wav2vec2_keys`. Every key and shape is checked against the model built
from the config (`third_party.convert`), so a file converts completely or fails naming each bad
key. The public checkpoints are registered in `third_party.weights` under their hub names,
with the architecture each has (`CHECKPOINT_CONFIGS`).
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import safetensors
import safetensors.numpy
from absl import logging

from talking_heads.audio import wav2vec2
from third_party import convert
from third_party import torch_reader
from third_party import wav2vec2_keys
from third_party import weights

# Registered hub checkpoint -> the `wav2vec2.CONFIGS` entry of its architecture.
CHECKPOINT_CONFIGS: dict[str, str] = {
    "facebook/wav2vec2-base": "base",
    "facebook/wav2vec2-base-960h": "base",
    "facebook/wav2vec2-large-960h": "large",
    "facebook/wav2vec2-large-960h-lv60-self": "xlsr53",
    "facebook/wav2vec2-large-xlsr-53": "xlsr53",
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def name_map(config: wav2vec2.Wav2Vec2Config) -> convert.NameMap:
  """Complete torch key -> flax target map for a `Wav2Vec2Model` of `config`."""
  return wav2vec2_keys.wav2vec2_map(
      num_conv_layers=len(config.conv_dim), conv_bias=config.conv_bias,
      feat_extract_norm=config.feat_extract_norm, num_hidden_layers=config.num_hidden_layers,
      num_attention_heads=config.num_attention_heads)


def variables_shape(config: wav2vec2.Wav2Vec2Config) -> Any:
  """Abstract variables of `Wav2Vec2Model(config)` (no computation)."""
  model = wav2vec2.Wav2Vec2Model(config)
  waveform = jnp.zeros((1, config.receptive_field), jnp.float32)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), waveform))


def convert_state_dict(state_dict: Mapping[str, np.ndarray], config: wav2vec2.Wav2Vec2Config,
                       *, source: str = "state dict") -> dict[str, Any]:
  """A wav2vec2 state dict -> {'params': ...} of `Wav2Vec2Model(config)`.

  Heads of the task models are dropped (logged). A file without `masked_spec_embed` (fine-tuned
  with masking off, where transformers does not create it) gets zeros there, logged: only
  `mask_time_indices` reads it, never feature extraction.

  Raises:
    ConversionError: naming every unknown, missing or mis-shaped key.
  """
  body, heads = wav2vec2_keys.split_heads(state_dict)
  if heads:
    modules = sorted({k.split(".", 1)[0] for k in heads})
    logging.info("%s: dropped %d keys of heads the encoder does not use: %s", source,
                 len(heads), ", ".join(modules))
  body = wav2vec2_keys.canonical_weight_norm_names(body)
  if wav2vec2_keys.MASK_EMBEDDING not in body:
    logging.info("%s: no %s (masking was off); set to zeros, which feature extraction never "
                 "reads", source, wav2vec2_keys.MASK_EMBEDDING)
    body[wav2vec2_keys.MASK_EMBEDDING] = np.zeros(config.hidden_size, np.float32)
  return convert.convert(body, name_map(config), variables_shape(config), source=source)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
  """{key: array} of a `.safetensors` file or a PyTorch checkpoint (any other suffix).

  Raises:
    torch_reader.CheckpointError: the file is unreadable, naming it.
  """
  path = pathlib.Path(path)
  if path.suffix != ".safetensors":
    return torch_reader.load_torch_file(path)
  try:
    return safetensors.numpy.load_file(path)
  except (safetensors.SafetensorError, OSError, ValueError) as e:
    raise torch_reader.CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def load_file(path: str | os.PathLike[str], config: wav2vec2.Wav2Vec2Config) -> dict[str, Any]:
  """Reads one checkpoint file into variables of `Wav2Vec2Model(config)`."""
  return convert_state_dict(read_state_dict(path), config, source=os.fspath(path))


def load_folder(folder: str | os.PathLike[str]
                ) -> tuple[wav2vec2.Wav2Vec2Config, dict[str, Any]]:
  """A transformers model folder (`config.json` + `model.safetensors` or `pytorch_model.bin`, as
  `save_pretrained` writes or the hub serves) -> (its config, its variables).

  Raises:
    MissingWeightsError: naming the missing config.json or weights file.
    ValueError: the config describes another architecture.
  """
  folder = pathlib.Path(folder)
  config_path = folder / "config.json"
  if not config_path.is_file():
    raise weights.MissingWeightsError(f"missing {config_path} (the transformers config of the "
                                      "wav2vec2 checkpoint in this folder)")
  try:
    hf_config = json.loads(config_path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{config_path}: not JSON ({e})") from None
  config = wav2vec2.config_from_hf(hf_config, source=str(config_path))
  path = next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
  if path is None:
    raise weights.MissingWeightsError(f"missing {folder / WEIGHT_FILES[0]} (or "
                                      f"{WEIGHT_FILES[1]}): the wav2vec2 weights")
  return config, load_file(path, config)


def load(weights_dir: str | os.PathLike[str] | None, name: str
         ) -> tuple[wav2vec2.Wav2Vec2Config, dict[str, Any]]:
  """A registered hub checkpoint (e.g. "facebook/wav2vec2-large-xlsr-53") from `weights_dir`
  -> (its config, its variables).

  Raises:
    MissingWeightsError: naming the file, what it is and where it comes from.
  """
  if name not in CHECKPOINT_CONFIGS:
    raise ValueError(f"unknown wav2vec2 checkpoint {name!r}; registered: "
                     f"{sorted(CHECKPOINT_CONFIGS)}")
  path = weights.require(weights_dir, name)
  config = wav2vec2.get_config(CHECKPOINT_CONFIGS[name])
  return config, load_file(path, config)

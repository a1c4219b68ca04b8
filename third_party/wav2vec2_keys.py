"""Key layout of transformers' wav2vec 2.0 checkpoints (`Wav2Vec2Model` and the models around it).

A bare `Wav2Vec2Model` saves `feature_extractor.*`, `feature_projection.*`, `encoder.*` and
`masked_spec_embed`; `Wav2Vec2ForCTC` / `Wav2Vec2ForPreTraining` (the hub's facebook/* files) put
those under `wav2vec2.` and add heads the encoder does not use (`HEAD_MODULES`). The positional
conv's weight norm is stored as `encoder.pos_conv_embed.conv.weight_g` / `weight_v` by PyTorch's
legacy `weight_norm` and as `...conv.parametrizations.weight.original0` / `original1` by
`torch.nn.utils.parametrizations.weight_norm`; `canonical_weight_norm_names` maps both to the
new names. g is [1, 1, Kp] (norm over out and in channels per kernel tap, `dim=2`), v is
[D, D / G, Kp]. The flax names are those of `talking_heads.audio.wav2vec2` (list members
`conv_layers_<l>` and `layers_<l>`; attention `query`/`key`/`value` [D, H, K] and `out` [H, K, D]).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from third_party import convert

# Top-level modules of the task models that are not the encoder: CTC (`lm_head`) and the
# pretraining heads (quantiser, projections of the contrastive task).
HEAD_MODULES = ("lm_head", "quantizer", "project_q", "project_hid")
WRAPPER_PREFIX = "wav2vec2."
POS_CONV = "encoder.pos_conv_embed.conv."
MASK_EMBEDDING = "masked_spec_embed"
_LEGACY_WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0",
                       "weight_v": "parametrizations.weight.original1"}


def split_heads(state_dict: Mapping[str, np.ndarray]
                ) -> tuple[dict[str, np.ndarray], list[str]]:
  """-> (the encoder's keys with any `wav2vec2.` prefix removed, the dropped head keys)."""
  heads = sorted(k for k in state_dict if k.split(".", 1)[0] in HEAD_MODULES)
  body = {k: v for k, v in state_dict.items() if k not in set(heads)}
  return convert.strip_prefix(body, WRAPPER_PREFIX), heads


def canonical_weight_norm_names(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Renames legacy `weight_g`/`weight_v` of the positional conv to the parametrization names.

  Raises:
    ConversionError: a file holds both names for one tensor.
  """
  out = dict(state_dict)
  for legacy, new in _LEGACY_WEIGHT_NORM.items():
    if POS_CONV + legacy in out:
      if POS_CONV + new in out:
        raise convert.ConversionError(f"both {POS_CONV + legacy} and {POS_CONV + new} present")
      out[POS_CONV + new] = out.pop(POS_CONV + legacy)
  return out


def _heads_bias(heads: int):
  """Linear bias [H K] -> DenseGeneral bias [H, K]."""
  def transform(b: np.ndarray) -> np.ndarray:
    if b.ndim != 1 or b.shape[0] % heads:
      raise convert.ConversionError(f"bias {b.shape} does not split into {heads} heads")
    return b.reshape(heads, -1)
  return transform


def _tap_gains(g: np.ndarray) -> np.ndarray:
  """Weight-norm g [1, 1, Kp] (one gain per kernel tap, PyTorch `dim=2`) -> [Kp]."""
  if g.ndim != 3 or g.shape[:2] != (1, 1):
    raise convert.ConversionError(f"weight-norm g must be [1, 1, Kp] (a gain per kernel tap, "
                                  f"dim=2), got {g.shape}")
  return g.reshape(-1)


def _heads_kernel(heads: int):
  """Linear weight [H K, D] -> DenseGeneral kernel [D, H, K]."""
  def transform(w: np.ndarray) -> np.ndarray:
    w = convert.linear_kernel(w)                                         # [D, H K]
    if w.shape[1] % heads:
      raise convert.ConversionError(f"{w.shape[1]} outputs do not split into {heads} heads")
    return w.reshape(w.shape[0], heads, w.shape[1] // heads)
  return transform


def _out_kernel(heads: int):
  """Linear weight [D, H K] -> DenseGeneral kernel [H, K, D]."""
  def transform(w: np.ndarray) -> np.ndarray:
    w = convert.linear_kernel(w)                                         # [H K, D]
    if w.shape[0] % heads:
      raise convert.ConversionError(f"{w.shape[0]} inputs do not split into {heads} heads")
    return w.reshape(heads, w.shape[0] // heads, w.shape[1])
  return transform


def _map_layer_norm(torch_prefix: str, flax_path: tuple[str, ...]) -> convert.NameMap:
  return {f"{torch_prefix}.weight": ("params", flax_path + ("scale",), None),
          f"{torch_prefix}.bias": ("params", flax_path + ("bias",), None)}


def wav2vec2_map(*, num_conv_layers: int, conv_bias: bool, feat_extract_norm: str,
                 num_hidden_layers: int, num_attention_heads: int) -> convert.NameMap:
  """Complete torch key -> flax target map of a bare `Wav2Vec2Model` (canonical names)."""
  out: convert.NameMap = {MASK_EMBEDDING: ("params", (MASK_EMBEDDING,), None)}
  for l in range(num_conv_layers):
    prefix, path = f"feature_extractor.conv_layers.{l}", ("feature_extractor", f"conv_layers_{l}")
    out.update(convert.map_conv(f"{prefix}.conv", path + ("conv",), bias=conv_bias))
    if feat_extract_norm == "layer" or l == 0:
      out.update(_map_layer_norm(f"{prefix}.layer_norm", path + ("layer_norm",)))
  out.update(_map_layer_norm("feature_projection.layer_norm",
                             ("feature_projection", "layer_norm")))
  out.update(convert.map_linear("feature_projection.projection",
                                ("feature_projection", "projection")))
  pos = ("encoder", "pos_conv_embed")
  out[POS_CONV + "parametrizations.weight.original0"] = (
      "params", pos + ("weight_g",), _tap_gains)
  out[POS_CONV + "parametrizations.weight.original1"] = (
      "params", pos + ("weight_v",), convert.conv_kernel)
  out[POS_CONV + "bias"] = ("params", pos + ("bias",), None)
  out.update(_map_layer_norm("encoder.layer_norm", ("encoder", "layer_norm")))
  heads = num_attention_heads
  for l in range(num_hidden_layers):
    prefix, path = f"encoder.layers.{l}", ("encoder", f"layers_{l}")
    for torch_name, flax_name in (("q_proj", "query"), ("k_proj", "key"), ("v_proj", "value")):
      out[f"{prefix}.attention.{torch_name}.weight"] = (
          "params", path + ("attention", flax_name, "kernel"), _heads_kernel(heads))
      out[f"{prefix}.attention.{torch_name}.bias"] = (
          "params", path + ("attention", flax_name, "bias"), _heads_bias(heads))
    out[f"{prefix}.attention.out_proj.weight"] = (
        "params", path + ("attention", "out", "kernel"), _out_kernel(heads))
    out[f"{prefix}.attention.out_proj.bias"] = ("params", path + ("attention", "out", "bias"),
                                                None)
    out.update(_map_layer_norm(f"{prefix}.layer_norm", path + ("layer_norm",)))
    for dense in ("intermediate_dense", "output_dense"):
      out.update(convert.map_linear(f"{prefix}.feed_forward.{dense}",
                                    path + ("feed_forward", dense)))
    out.update(_map_layer_norm(f"{prefix}.final_layer_norm", path + ("final_layer_norm",)))
  return out

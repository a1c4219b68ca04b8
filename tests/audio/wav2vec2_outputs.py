"""Helpers comparing `talking_heads.audio.wav2vec2` outputs with transformers' (fixture and parity
tests): both as {name: array} with names `extract_features`, `last_hidden_state` and
`hidden_state_<i>`."""

from typing import Any, Mapping

import numpy as np

from talking_heads.audio import wav2vec2


def ours(out: wav2vec2.Wav2Vec2Output) -> dict[str, np.ndarray]:
  result = {"extract_features": np.asarray(out.extract_features),
            "last_hidden_state": np.asarray(out.last_hidden_state)}
  result.update({f"hidden_state_{i}": np.asarray(h) for i, h in enumerate(out.hidden_states)})
  return result


def _layer_norm(x: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
  x = x.astype(np.float64)
  mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + 1e-5) * np.asarray(params["scale"]) + np.asarray(params["bias"])


def in_our_convention(theirs: Mapping[str, np.ndarray], config: wav2vec2.Wav2Vec2Config,
                      variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """transformers 5 outputs -> ours. transformers 5 returns the stable-LN encoder's last layer
  output before the final LayerNorm as the last hidden state; we return it after (as
  transformers 4 did, = last_hidden_state), so that LayerNorm is applied to theirs (with our
  converted parameters; `last_hidden_state` checks those against transformers' own)."""
  result = dict(theirs)
  if config.do_stable_layer_norm:
    last = f"hidden_state_{config.num_hidden_layers}"
    result[last] = _layer_norm(result[last], variables["params"]["encoder"]["layer_norm"])
  return result

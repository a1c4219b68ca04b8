"""wav2vec2 converter without torch: file formats, key namings, heads, errors naming the key/file.

Uses the tiny transformers models of `tests/audio/fixtures/` (see `make_wav2vec2_fixture.py`);
`.bin` files are written with `torch_files.write_state_dict` (what `torch.save` writes).
"""

import json
import pathlib
import shutil

import jax
import numpy as np
import pytest
import safetensors.numpy

from talking_heads.audio import wav2vec2
from talking_heads.pretrained import wav2vec2 as converter
from tests.pretrained import torch_files
from third_party import convert
from third_party import torch_reader
from third_party import wav2vec2_keys
from third_party import weights

FIXTURES = pathlib.Path(__file__).parents[1] / "audio" / "fixtures"
POS = "encoder.pos_conv_embed.conv."


def _folder(variant: str) -> pathlib.Path:
  return FIXTURES / f"wav2vec2_tiny_{variant}"


def _config(variant: str) -> wav2vec2.Wav2Vec2Config:
  return wav2vec2.config_from_hf(json.loads((_folder(variant) / "config.json").read_text()))


def _state_dict(variant: str) -> dict[str, np.ndarray]:
  return safetensors.numpy.load_file(_folder(variant) / "model.safetensors")


def _assert_same(a, b):
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("variant", ["post_ln", "stable"])
def test_name_map_covers_exactly_the_saved_keys(variant):
  sd = wav2vec2_keys.canonical_weight_norm_names(_state_dict(variant))
  assert set(converter.name_map(_config(variant))) == set(sd)


def test_fixture_uses_the_parametrization_names():
  assert {POS + "parametrizations.weight.original0",
          POS + "parametrizations.weight.original1"} <= set(_state_dict("stable"))


def test_legacy_weight_norm_names_and_bin_files_convert_the_same(tmp_path):
  config, sd = _config("stable"), _state_dict("stable")
  reference = converter.convert_state_dict(sd, config)
  legacy = dict(sd)
  legacy[POS + "weight_g"] = legacy.pop(POS + "parametrizations.weight.original0")
  legacy[POS + "weight_v"] = legacy.pop(POS + "parametrizations.weight.original1")
  _assert_same(converter.convert_state_dict(legacy, config), reference)
  torch_files.write_state_dict(tmp_path / "pytorch_model.bin", legacy)
  _assert_same(converter.load_file(tmp_path / "pytorch_model.bin", config), reference)
  with pytest.raises(convert.ConversionError, match="both .*weight_g and .*original0 present"):
    converter.convert_state_dict({**sd, POS + "weight_g": legacy[POS + "weight_g"]}, config)


def test_task_model_heads_and_prefix_are_dropped_and_logged(caplog):
  config, sd = _config("post_ln"), _state_dict("post_ln")
  reference = converter.convert_state_dict(sd, config)
  d = config.hidden_size
  wrapped = {f"wav2vec2.{k}": v for k, v in sd.items()}
  wrapped.update({"lm_head.weight": np.zeros((32, d), np.float32),
                  "lm_head.bias": np.zeros(32, np.float32),
                  "quantizer.codevectors": np.zeros((1, 640, 128), np.float32),
                  "project_q.weight": np.zeros((256, 256), np.float32),
                  "project_hid.weight": np.zeros((256, d), np.float32)})
  with caplog.at_level("INFO"):
    _assert_same(converter.convert_state_dict(wrapped, config, source="ctc.bin"), reference)
  assert "ctc.bin: dropped 5 keys of heads" in caplog.text
  assert "lm_head, project_hid, project_q, quantizer" in caplog.text


def test_missing_mask_embedding_becomes_zeros_with_a_note(caplog):
  config, sd = _config("post_ln"), _state_dict("post_ln")
  del sd["masked_spec_embed"]
  with caplog.at_level("INFO"):
    variables = converter.convert_state_dict(sd, config, source="ft.safetensors")
  assert not variables["params"]["masked_spec_embed"].any()
  assert "ft.safetensors: no masked_spec_embed" in caplog.text


def test_wrong_shape_unknown_and_missing_keys_are_named():
  config, sd = _config("stable"), _state_dict("stable")
  key = "encoder.layers.1.feed_forward.intermediate_dense.weight"
  bad = {**sd, key: np.zeros((33, 16), np.float32)}
  with pytest.raises(convert.ConversionError, match=rf"shape: {key} \(33, 16\)"):
    converter.convert_state_dict(bad, config, source="f.safetensors")
  with pytest.raises(convert.ConversionError, match=r"(?s)f\.safetensors: .*unknown torch key: "
                     r"encoder\.adapter\.weight"):
    converter.convert_state_dict({**sd, "encoder.adapter.weight": np.zeros(3, np.float32)},
                                 config, source="f.safetensors")
  missing = dict(sd)
  del missing["encoder.layers.0.attention.k_proj.bias"]
  with pytest.raises(convert.ConversionError,
                     match=r"missing torch key: encoder\.layers\.0\.attention\.k_proj\.bias"):
    converter.convert_state_dict(missing, config)
  q = "encoder.layers.0.attention.q_proj.weight"
  with pytest.raises(convert.ConversionError, match=rf"{q}: 15 outputs do not split into 2 heads"):
    converter.convert_state_dict({**sd, q: np.zeros((15, 16), np.float32)}, config)
  g = POS + "parametrizations.weight.original0"
  with pytest.raises(convert.ConversionError, match=rf"{g}: weight-norm g must be \[1, 1, Kp\]"):
    converter.convert_state_dict({**sd, g: np.ones((16, 1, 1), np.float32)}, config)


def test_a_checkpoint_of_another_design_fails_naming_the_keys():
  # post-LN/group file into the stable/layer config: conv norms and conv biases are missing.
  with pytest.raises(convert.ConversionError,
                     match=r"missing torch key: feature_extractor\.conv_layers\.0\.conv\.bias"):
    converter.convert_state_dict(_state_dict("post_ln"), _config("stable"))


def test_missing_files_raise_missing_weights_error_naming_the_file(tmp_path):
  name = "facebook/wav2vec2-large-xlsr-53"
  with pytest.raises(weights.MissingWeightsError,
                     match=rf"missing {tmp_path}/{name}/model\.safetensors: .*pytorch_model\.bin"):
    converter.load(tmp_path, name)
  with pytest.raises(weights.MissingWeightsError, match="no weights folder given"):
    converter.load(None, name)
  with pytest.raises(ValueError, match="unknown wav2vec2 checkpoint 'facebook/hubert'"):
    converter.load(tmp_path, "facebook/hubert")
  with pytest.raises(weights.MissingWeightsError, match=rf"missing {tmp_path}/config\.json"):
    converter.load_folder(tmp_path)
  shutil.copy(_folder("stable") / "config.json", tmp_path / "config.json")
  with pytest.raises(weights.MissingWeightsError, match=rf"missing {tmp_path}/model\.safetensors"):
    converter.load_folder(tmp_path)
  bin_path = tmp_path / name / "pytorch_model.bin"
  bin_path.parent.mkdir(parents=True)
  bin_path.write_bytes(b"x")
  assert weights.require(tmp_path, name) == bin_path     # the hub's other file name
  (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
  with pytest.raises(torch_reader.CheckpointError, match="not a readable safetensors file"):
    converter.load_folder(tmp_path)


def _release_shapes(config: wav2vec2.Wav2Vec2Config) -> dict[str, tuple[int, ...]]:
  """Keys and shapes of a transformers Wav2Vec2ForCTC file, written from the reference's table
  (shared/reference/systems/wav2vec2.md section 6; legacy weight-norm names)."""
  d, f, c = config.hidden_size, config.intermediate_size, config.conv_dim
  k, g = config.num_conv_pos_embeddings, config.num_conv_pos_embedding_groups
  out = {"wav2vec2.masked_spec_embed": (d,), "lm_head.weight": (32, d), "lm_head.bias": (32,)}
  for l, (width, kernel) in enumerate(zip(c, config.conv_kernel)):
    prefix = f"wav2vec2.feature_extractor.conv_layers.{l}."
    out[prefix + "conv.weight"] = (width, c[l - 1] if l else 1, kernel)
    if config.conv_bias:
      out[prefix + "conv.bias"] = (width,)
    if config.feat_extract_norm == "layer" or l == 0:
      out[prefix + "layer_norm.weight"] = out[prefix + "layer_norm.bias"] = (width,)
  prefix = "wav2vec2.feature_projection."
  out[prefix + "layer_norm.weight"] = out[prefix + "layer_norm.bias"] = (c[-1],)
  out[prefix + "projection.weight"], out[prefix + "projection.bias"] = (d, c[-1]), (d,)
  prefix = "wav2vec2.encoder."
  out[prefix + "pos_conv_embed.conv.weight_g"] = (1, 1, k)
  out[prefix + "pos_conv_embed.conv.weight_v"] = (d, d // g, k)
  out[prefix + "pos_conv_embed.conv.bias"] = (d,)
  out[prefix + "layer_norm.weight"] = out[prefix + "layer_norm.bias"] = (d,)
  for n in range(config.num_hidden_layers):
    layer = f"{prefix}layers.{n}."
    for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
      out[f"{layer}attention.{proj}.weight"], out[f"{layer}attention.{proj}.bias"] = (d, d), (d,)
    for norm in ("layer_norm", "final_layer_norm"):
      out[f"{layer}{norm}.weight"] = out[f"{layer}{norm}.bias"] = (d,)
    out[f"{layer}feed_forward.intermediate_dense.weight"] = (f, d)
    out[f"{layer}feed_forward.intermediate_dense.bias"] = (f,)
    out[f"{layer}feed_forward.output_dense.weight"] = (d, f)
    out[f"{layer}feed_forward.output_dense.bias"] = (d,)
  return out


@pytest.mark.parametrize("name,count", [("base", 94_371_712), ("large", 315_428_992),
                                        ("xlsr53", 315_438_720)])
def test_release_key_layout_converts_into_every_leaf(name, count):
  config = wav2vec2.get_config(name)
  shapes = _release_shapes(config)
  assert sum(int(np.prod(s)) for k, s in shapes.items() if not k.startswith("lm_head")) == count
  variables = converter.convert_state_dict({k: np.zeros(s, np.float32) for k, s in shapes.items()},
                                           config)
  assert sum(x.size for x in jax.tree_util.tree_leaves(variables)) == count


def test_registered_checkpoint_loads_from_its_hub_layout(tmp_path):
  name = "facebook/wav2vec2-base-960h"
  assert set(converter.CHECKPOINT_CONFIGS) <= set(weights.WEIGHTS)
  config = wav2vec2.get_config(converter.CHECKPOINT_CONFIGS[name])
  path = tmp_path / name / "model.safetensors"
  path.parent.mkdir(parents=True)
  safetensors.numpy.save_file({k: np.zeros(s, np.float32)
                               for k, s in _release_shapes(config).items()}, path)
  got_config, variables = converter.load(tmp_path, name)
  assert got_config == config
  assert variables["params"]["encoder"]["layers_11"]["attention"]["query"]["kernel"].shape == (
      768, 12, 64)

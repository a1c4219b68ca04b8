"""wav2vec2 against transformers' PyTorch `Wav2Vec2Model` (parity: needs torch + transformers).

For each design and size, a randomly initialised transformers model is saved with
`save_pretrained` (`model.safetensors`) and as an older hub file (`pytorch_model.bin` by
`torch.save`, CTC layout, legacy weight-norm names), both folders are converted
(`talking_heads.pretrained.wav2vec2.load_folder`, torch-free), and every hidden state,
`last_hidden_state` and `extract_features` of the Flax model must match transformers' within 1e-4
(float32; the stable-LN's last hidden state as `wav2vec2_outputs` explains) on espeak
speech, alone and in a padded batch (with the attention mask; compared on each utterance's
frames). Sizes: tiny versions of both designs (even and odd positional kernels) and the real
base (group norm, post-LN) and XLSR-53 / large-lv60 (layer norm, stable LN) shapes.
"""

import dataclasses
import shutil
import time

import numpy as np
import pytest

from data import speech as speech_lib
from talking_heads.audio import wav2vec2
from talking_heads.pretrained import wav2vec2 as converter
from tests.audio import wav2vec2_outputs

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.parity

TOLERANCE = 1e-4
TEXT = "The old mill stood by the river."
_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             conv_dim=(32,) * 7)
_POST_LN = dict(feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False)
_STABLE = dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
SIZES = {
    "tiny_post_ln": dict(**_TINY, **_POST_LN, num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=4),
    "tiny_stable": dict(**_TINY, **_STABLE, num_conv_pos_embeddings=16,
                        num_conv_pos_embedding_groups=4),
    "tiny_stable_odd_kernel": dict(**_TINY, **_STABLE, num_conv_pos_embeddings=15,
                                   num_conv_pos_embedding_groups=2),
    "base": {f.name: getattr(wav2vec2.get_config("base"), f.name)
             for f in dataclasses.fields(wav2vec2.Wav2Vec2Config)},
    "xlsr53": {f.name: getattr(wav2vec2.get_config("xlsr53"), f.name)
               for f in dataclasses.fields(wav2vec2.Wav2Vec2Config)},
}


@pytest.fixture(scope="module")
def speech():
  return speech_lib.synthesize(TEXT, "en_us_m1").audio[:32000]         # <= 2 s


def _reference(model, waveform, mask=None):
  """transformers' outputs as {name: array} (`wav2vec2_outputs`)."""
  with torch.no_grad():
    out = model(torch.from_numpy(waveform),
                attention_mask=None if mask is None else torch.from_numpy(mask.astype(np.int64)),
                output_hidden_states=True)
  result = {"extract_features": out.extract_features.numpy(),
            "last_hidden_state": out.last_hidden_state.numpy()}
  result.update({f"hidden_state_{i}": h.numpy() for i, h in enumerate(out.hidden_states)})
  return result


def _max_diff(got, want, config, variables, frames=None):
  """Largest |ours - transformers'| over every output (on `frames` [B, T] when given)."""
  want = wav2vec2_outputs.in_our_convention(want, config, variables)
  assert set(got) == set(want) and len(got) == config.num_hidden_layers + 3
  diffs = []
  for key, value in got.items():
    assert value.shape == want[key].shape, key
    diff = np.abs(value - want[key])
    diffs.append(float((diff[frames] if frames is not None else diff).max()))
  return max(diffs)


def _save_hub_style_bin(model, folder):
  """`pytorch_model.bin` + `config.json` as the older hub files are: `torch.save` of a
  Wav2Vec2ForCTC state dict (keys under `wav2vec2.`, an `lm_head`) with the legacy weight-norm
  names `weight_g`/`weight_v` (transformers 5 saves only safetensors)."""
  legacy = {".parametrizations.weight.original0": ".weight_g",
            ".parametrizations.weight.original1": ".weight_v"}
  state = {}
  for key, value in model.state_dict().items():
    for new, old in legacy.items():
      key = key.replace(new, old)
    state[f"wav2vec2.{key}"] = value
  state["lm_head.weight"] = torch.randn(32, model.config.hidden_size)
  state["lm_head.bias"] = torch.zeros(32)
  assert any(k.endswith(".weight_g") for k in state)
  folder.mkdir()
  model.config.to_json_file(folder / "config.json")
  torch.save(state, folder / "pytorch_model.bin")


@pytest.mark.parametrize("size", sorted(SIZES))
def test_converted_model_matches_transformers(size, speech, tmp_path, record_property):
  start = time.perf_counter()
  torch.manual_seed(0)
  model = transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**SIZES[size])).eval()
  model.save_pretrained(tmp_path / "safetensors")
  _save_hub_style_bin(model, tmp_path / "bin")

  waveform = wav2vec2.normalize_waveform(speech)[None]                 # [1, S]
  short = len(speech) * 5 // 8
  batch = np.stack([waveform[0], np.pad(wav2vec2.normalize_waveform(speech[:short]),
                                        (0, len(speech) - short))])   # [2, S]
  mask = np.asarray(wav2vec2.sample_mask_from_lengths(np.array([len(speech), short]),
                                                      len(speech)))
  want_single = _reference(model, waveform)
  want_padded = _reference(model, batch, mask)
  del model

  diffs = {}
  for fmt in ("safetensors", "bin"):
    config, variables = converter.load_folder(tmp_path / fmt)
    assert config == wav2vec2.Wav2Vec2Config(**SIZES[size])
    model = wav2vec2.Wav2Vec2Model(config)
    got = wav2vec2_outputs.ours(model.apply(variables, waveform))
    diffs[f"{fmt}_single"] = _max_diff(got, want_single, config, variables)
    out = model.apply(variables, batch, mask)
    frames = np.asarray(out.frame_mask)
    assert frames.sum(axis=1).tolist() == [wav2vec2.output_lengths(len(speech)),
                                           wav2vec2.output_lengths(short)]
    diffs[f"{fmt}_padded"] = _max_diff(wav2vec2_outputs.ours(out), want_padded, config,
                                       variables, frames)
  for fmt in ("safetensors", "bin"):     # 1.3 GB each at XLSR-53's size; pytest keeps tmp dirs
    shutil.rmtree(tmp_path / fmt)
  record_property("max_abs_diff", diffs)
  record_property("seconds", time.perf_counter() - start)
  print(f"{size}: max abs diff {diffs}, {time.perf_counter() - start:.1f} s")
  assert max(diffs.values()) < TOLERANCE, diffs

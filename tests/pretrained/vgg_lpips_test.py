"""Tests for the VGG16/VGG19/AlexNet trunks, their torchvision converters and the LPIPS loader.

Torch-free tests check the name maps against torchvision's key layout (written out from the
published architectures), a VGG19 round trip through a checkpoint file written without torch
(`torch_files`), and the missing-file errors. Torch-gated tests save reference PyTorch
modules -- written here from the published layer lists, not imported from torchvision or
lpips -- with random weights, read them back through the torch-free reader and compare
activations and distances (<= 1e-4).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.metrics import lpips as lpips_metric
from talking_heads.models import vgg
from talking_heads.pretrained import lpips as lpips_convert
from talking_heads.pretrained import vgg as vgg_convert
from tests.pretrained import torch_files
from third_party import convert
from third_party import vgg_keys
from third_party import weights

# torchvision `features` layer lists (conv: (in, out, kernel, stride, padding); "M": max-pool).
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
             512, 512, 512, 512, "M"]
# torchvision `features` index of each conv, written out from the published layer lists.
VGG16_INDICES = {
    "conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10, "conv3_2": 12,
    "conv3_3": 14, "conv4_1": 17, "conv4_2": 19, "conv4_3": 21, "conv5_1": 24, "conv5_2": 26,
    "conv5_3": 28}
VGG19_INDICES = {
    "conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10, "conv3_2": 12,
    "conv3_3": 14, "conv3_4": 16, "conv4_1": 19, "conv4_2": 21, "conv4_3": 23, "conv4_4": 25,
    "conv5_1": 28, "conv5_2": 30, "conv5_3": 32, "conv5_4": 34}
ALEXNET_CONVS = {0: (3, 64, 11, 4, 2), 3: (64, 192, 5, 1, 2), 6: (192, 384, 3, 1, 1),
                 8: (384, 256, 3, 1, 1), 10: (256, 256, 3, 1, 1)}
# torchvision classifier Linear layers (index: (in, out)).
VGG16_CLASSIFIER = {0: (25088, 4096), 3: (4096, 4096), 6: (4096, 1000)}
ALEXNET_CLASSIFIER = {1: (9216, 4096), 4: (4096, 4096), 6: (4096, 1000)}


def _vgg_conv_shapes(cfg=VGG16_CFG):
  shapes, index, cin = {}, 0, 3
  for item in cfg:
    if item == "M":
      index += 1
      continue
    shapes[index] = (item, cin, 3, 3)
    cin = item
    index += 2  # conv, ReLU
  return shapes


def _torchvision_state_dict(conv_shapes, classifier, rng, classifier_scale=1):
  """Random weights under torchvision's keys; classifier shapes shrunk (they are ignored)."""
  sd = {}
  for index, shape in conv_shapes.items():
    sd[f"features.{index}.weight"] = rng.standard_normal(shape).astype(np.float32)
    sd[f"features.{index}.bias"] = rng.standard_normal(shape[0]).astype(np.float32)
  for index, (fan_in, fan_out) in classifier.items():
    sd[f"classifier.{index}.weight"] = np.zeros((fan_out // classifier_scale,
                                                 fan_in // classifier_scale), np.float32)
    sd[f"classifier.{index}.bias"] = np.zeros(fan_out // classifier_scale, np.float32)
  return sd


def _expected(model, size=64):
  return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))


def test_published_parameter_counts():
  vgg_convs = _vgg_conv_shapes()
  assert sorted(vgg_convs) == sorted(VGG16_INDICES.values())
  assert vgg_keys.vgg_indices("vgg16") == VGG16_INDICES
  conv_params = sum(np.prod(s) + s[0] for s in vgg_convs.values())
  fc_params = sum(i * o + o for i, o in VGG16_CLASSIFIER.values())
  assert conv_params + fc_params == 138_357_544                       # torchvision vgg16
  flax_params = sum(np.prod(l.shape) for l in jax.tree.leaves(_expected(vgg.VGGFeatures())))
  assert flax_params == conv_params
  alex = sum(np.prod(l.shape) for l in jax.tree.leaves(_expected(vgg.AlexNetFeatures())))
  assert alex == sum(o * i * k * k + o for i, o, k, _, _ in ALEXNET_CONVS.values())


def test_vgg16_name_map_places_each_torchvision_conv():
  rng = np.random.default_rng(0)
  sd = _torchvision_state_dict(_vgg_conv_shapes(), VGG16_CLASSIFIER, rng, classifier_scale=64)
  variables = vgg_convert.convert_vgg(sd, _expected(vgg.VGGFeatures()))
  params = variables["params"]
  np.testing.assert_array_equal(params["conv3_3"]["kernel"],
                                sd["features.14.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(params["conv5_1"]["bias"], sd["features.24.bias"])
  # A trunk built for the perceptual-loss taps skips conv5 keys, still failing on anything else.
  short = vgg.VGGFeatures(taps=("relu1_2", "relu4_3"))
  assert "conv5_1" not in vgg_convert.convert_vgg(sd, _expected(short))["params"]
  sd["features.30.weight"] = np.zeros((1,), np.float32)
  with pytest.raises(convert.ConversionError, match="unknown torch key: features.30.weight"):
    vgg_convert.convert_vgg(sd, _expected(short))


def test_vgg19_layout_and_parameter_counts():
  convs = _vgg_conv_shapes(VGG19_CFG)
  assert vgg_keys.vgg_indices("vgg19") == VGG19_INDICES
  assert sorted(convs) == sorted(VGG19_INDICES.values())
  conv_params = sum(np.prod(s) + s[0] for s in convs.values())
  fc_params = sum(i * o + o for i, o in VGG16_CLASSIFIER.values())   # Same head as VGG16.
  assert conv_params + fc_params == 143_667_240                       # torchvision vgg19
  full = _expected(vgg.VGGFeatures("vgg19"))["params"]
  assert set(full) == set(VGG19_INDICES)
  assert sum(np.prod(l.shape) for l in jax.tree.leaves(full)) == conv_params
  # One module serves both: VGG16 keeps its parameter names.
  assert set(_expected(vgg.VGGFeatures())["params"]) == set(VGG16_INDICES)


def test_vgg19_round_trip_through_a_checkpoint_file(tmp_path):
  rng = np.random.default_rng(5)
  sd = _torchvision_state_dict(_vgg_conv_shapes(VGG19_CFG), VGG16_CLASSIFIER, rng,
                               classifier_scale=64)
  torch_files.write_state_dict(tmp_path / "vgg19-dcbb9e9d.pth", sd)
  model = vgg.VGGFeatures("vgg19", taps=("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"))
  params = vgg_convert.load_vgg(tmp_path, model)["params"]
  deepest = VGG19_INDICES["conv5_1"]
  assert set(params) == {n for n, i in VGG19_INDICES.items() if i <= deepest}
  for name in params:
    index = VGG19_INDICES[name]
    np.testing.assert_array_equal(params[name]["kernel"],
                                  sd[f"features.{index}.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params[name]["bias"], sd[f"features.{index}.bias"])
  # A VGG16 checkpoint is not a VGG19 one: every misplaced key is named.
  vgg16 = _torchvision_state_dict(_vgg_conv_shapes(), VGG16_CLASSIFIER, rng, classifier_scale=64)
  with pytest.raises(convert.ConversionError, match=r"(?s)unknown torch key: features.17.weight"
                     r".*missing torch key: features.16.weight"):
    vgg_convert.convert_vgg(vgg16, _expected(model), variant="vgg19")


def test_alexnet_name_map_and_shape_errors():
  rng = np.random.default_rng(1)
  shapes = {i: (o, c, k, k) for i, (c, o, k, _, _) in ALEXNET_CONVS.items()}
  sd = _torchvision_state_dict(shapes, ALEXNET_CLASSIFIER, rng, classifier_scale=64)
  params = vgg_convert.convert_alexnet(sd, _expected(vgg.AlexNetFeatures()))["params"]
  np.testing.assert_array_equal(params["conv2"]["kernel"],
                                sd["features.3.weight"].transpose(2, 3, 1, 0))
  sd["features.6.weight"] = sd["features.6.weight"][:, :100]
  with pytest.raises(convert.ConversionError, match=r"features.6.weight \(384, 100, 3, 3\)"):
    vgg_convert.convert_alexnet(sd, _expected(vgg.AlexNetFeatures()))


def test_trunk_shapes_and_input_checks():
  x = jnp.zeros((2, 64, 48, 3))
  feats, _ = jax.eval_shape(vgg.AlexNetFeatures().init_with_output, jax.random.key(0), x)
  assert {k: v.shape for k, v in feats.items()} == {
      "relu1": (2, 15, 11, 64), "relu2": (2, 7, 5, 192), "relu3": (2, 3, 2, 384),
      "relu4": (2, 3, 2, 256), "relu5": (2, 3, 2, 256)}
  with pytest.raises(ValueError, match="too small"):
    vgg.AlexNetFeatures().init(jax.random.key(0), jnp.zeros((1, 30, 30, 3)))
  feats, _ = jax.eval_shape(
      vgg.VGGFeatures("vgg19", taps=("relu1_1", "relu3_4", "relu5_1")).init_with_output,
      jax.random.key(0), x)
  assert {k: v.shape for k, v in feats.items()} == {
      "relu1_1": (2, 64, 48, 64), "relu3_4": (2, 16, 12, 256), "relu5_1": (2, 4, 3, 512)}
  with pytest.raises(ValueError, match="taps must be"):
    vgg.VGGFeatures(taps=("relu9",)).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="taps must be"):
    vgg.VGGFeatures(taps=("relu3_4",)).init(jax.random.key(0), x)    # VGG19 only.
  with pytest.raises(ValueError, match="variant must be one of"):
    vgg.VGGFeatures("vgg11").init(jax.random.key(0), x)
  with pytest.raises(ValueError, match=r"NHWC"):
    vgg.VGGFeatures().init(jax.random.key(0), jnp.zeros((1, 3, 32, 32)))


def test_missing_files_raise_and_name_them(tmp_path):
  with pytest.raises(weights.MissingWeightsError, match="vgg16-397923af.pth"):
    vgg_convert.load_vgg(tmp_path)
  with pytest.raises(weights.MissingWeightsError) as info:
    lpips_convert.load_lpips(tmp_path, "alex")
  assert "alexnet-owt-7be5be79.pth" in str(info.value)
  assert "lpips/weights/v0.1/alex.pth" in str(info.value)


def test_lpips_linear_converter_checks_keys_and_sign():
  expected = lpips_convert.lpips_expected_variables("vgg")
  channels = (64, 128, 256, 512, 512)
  rng = np.random.default_rng(2)
  sd = {f"lin{l}.model.1.weight": rng.uniform(0, 1, (1, c, 1, 1)).astype(np.float32)
        for l, c in enumerate(channels)}
  params = lpips_convert.convert_lpips_linear(sd, expected)["params"]
  assert params["lin3"]["kernel"].shape == (1, 1, 512, 1)
  np.testing.assert_array_equal(params["lin3"]["kernel"][0, 0, :, 0],
                                sd["lin3.model.1.weight"][0, :, 0, 0])
  sd["lin0.model.1.weight"] = -sd["lin0.model.1.weight"]
  with pytest.raises(convert.ConversionError, match="negative LPIPS linear weights"):
    lpips_convert.convert_lpips_linear(sd, expected)


# ---- torch-gated parity ----------------------------------------------------------------------


def _torch_vgg_features(torch, cfg):
  layers, cin = [], 3
  for item in cfg:
    if item == "M":
      layers.append(torch.nn.MaxPool2d(2, 2))
    else:
      layers += [torch.nn.Conv2d(cin, item, 3, padding=1), torch.nn.ReLU()]
      cin = item
  return torch.nn.Sequential(*layers)


def _torch_alexnet_features(torch):
  layers = []
  for index in range(13):
    if index in ALEXNET_CONVS:
      cin, cout, k, s, p = ALEXNET_CONVS[index]
      layers.append(torch.nn.Conv2d(cin, cout, k, s, p))
    elif index in (2, 5, 12):
      layers.append(torch.nn.MaxPool2d(3, 2))
    else:
      layers.append(torch.nn.ReLU())
  return torch.nn.Sequential(*layers)


# Activation indices tapped (after the ReLU): VGG16 relu1_2 ... relu5_3, AlexNet relu1 ... relu5,
# VGG19 relu1_1 ... relu5_1 (pix2pixHD's slices [0:2], [2:7], [7:12], [12:21], [21:30]).
TORCH_TAPS = {"vgg": (3, 8, 15, 22, 29), "alex": (1, 4, 7, 9, 11), "vgg19": (1, 6, 11, 20, 29)}
PIX2PIXHD_TAPS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def _torch_taps(features, x, taps):
  out = []
  for index, layer in enumerate(features):
    x = layer(x)
    if index in taps:
      out.append(x)
  return out


def _reference_model(torch, net, seed):
  """torchvision-keyed module (`features.*`, a small stand-in `classifier.*`), random weights."""
  torch.manual_seed(seed)
  model = torch.nn.Module()
  if net == "alex":
    model.features = _torch_alexnet_features(torch)
  else:
    model.features = _torch_vgg_features(torch, VGG19_CFG if net == "vgg19" else VGG16_CFG)
  model.classifier = torch.nn.Sequential(torch.nn.Dropout(), torch.nn.Linear(8, 4))
  with torch.no_grad():
    for p in model.features.parameters():    # Scaled so deep activations stay O(1).
      p.mul_(2.0)
  return model


def _save(torch, module, weights_dir, name):
  """Writes a state dict where `weights.require(weights_dir, name)` looks for it."""
  path = weights_dir / weights.WEIGHTS[name].filename
  path.parent.mkdir(parents=True, exist_ok=True)
  torch.save(module.state_dict(), path)


@pytest.mark.parity
@pytest.mark.parametrize("net,size", [("vgg", 32), ("alex", 64), ("vgg19", 32)])
def test_converted_trunk_matches_reference_torch(tmp_path, net, size):
  torch = pytest.importorskip("torch")
  model = _reference_model(torch, net, seed=0)
  _save(torch, model, tmp_path, {"vgg": "vgg16", "alex": "alexnet", "vgg19": "vgg19"}[net])
  if net == "vgg":
    flax_model, variables = vgg.VGGFeatures(), vgg_convert.load_vgg(tmp_path)
  elif net == "vgg19":
    flax_model = vgg.VGGFeatures("vgg19", taps=PIX2PIXHD_TAPS)
    variables = vgg_convert.load_vgg(tmp_path, flax_model)
  else:
    flax_model, variables = vgg.AlexNetFeatures(), vgg_convert.load_alexnet(tmp_path)
  x = np.random.default_rng(3).standard_normal((2, 3, size, size + 8)).astype(np.float32)
  with torch.no_grad():
    want = _torch_taps(model.features, torch.from_numpy(x), TORCH_TAPS[net])
  got = jax.jit(flax_model.apply)(variables, x.transpose(0, 2, 3, 1))
  assert len(got) == len(want)
  for (name, g), w in zip(got.items(), want):
    w = w.numpy().transpose(0, 2, 3, 1)
    assert g.shape == w.shape, name
    np.testing.assert_allclose(np.asarray(g), w, atol=1e-4, err_msg=name)


class _TorchLPIPS:
  """LPIPS v0.1 written from its definition: scaling, unit-normalised taps, 1x1 lin, mean, sum."""

  def __init__(self, torch, net, features, channels, seed):
    self.torch, self.net, self.features = torch, net, features
    generator = torch.Generator().manual_seed(seed)
    self.lins = torch.nn.Module()
    for l, c in enumerate(channels):
      lin = torch.nn.Sequential(torch.nn.Dropout(), torch.nn.Conv2d(c, 1, 1, bias=False))
      with torch.no_grad():
        lin[1].weight.copy_(torch.rand(lin[1].weight.shape, generator=generator))
      self.lins.add_module(f"lin{l}", torch.nn.Module())
      getattr(self.lins, f"lin{l}").model = lin
    self.lins.eval()

  def __call__(self, x, y):
    torch = self.torch
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    fx = _torch_taps(self.features, (x - shift) / scale, TORCH_TAPS[self.net])
    fy = _torch_taps(self.features, (y - shift) / scale, TORCH_TAPS[self.net])
    total = 0
    for l, (a, b) in enumerate(zip(fx, fy)):
      a = a / (torch.sqrt(torch.sum(a**2, dim=1, keepdim=True)) + 1e-10)
      b = b / (torch.sqrt(torch.sum(b**2, dim=1, keepdim=True)) + 1e-10)
      lin = getattr(self.lins, f"lin{l}").model
      total = total + lin((a - b) ** 2).mean(dim=(2, 3), keepdim=True)
    return total.flatten()


@pytest.mark.parity
@pytest.mark.parametrize("net,channels,size", [
    ("alex", (64, 192, 384, 256, 256), 64), ("vgg", (64, 128, 256, 512, 512), 32)])
def test_lpips_matches_reference_torch(tmp_path, net, channels, size):
  torch = pytest.importorskip("torch")
  backbone = _reference_model(torch, net, seed=1)
  reference = _TorchLPIPS(torch, net, backbone.features, channels, seed=2)
  _save(torch, backbone, tmp_path, "alexnet" if net == "alex" else "vgg16")
  _save(torch, reference.lins, tmp_path, f"lpips_{net}")
  variables = lpips_convert.load_lpips(tmp_path, net)
  rng = np.random.default_rng(4)
  x = rng.uniform(-1, 1, (3, 3, size, size)).astype(np.float32)
  y = np.clip(x + rng.normal(0, 0.3, x.shape), -1, 1).astype(np.float32)
  with torch.no_grad():
    want = reference(torch.from_numpy(x), torch.from_numpy(y)).numpy()
  got = lpips_metric.lpips_distance(variables, x.transpose(0, 2, 3, 1), y.transpose(0, 2, 3, 1),
                                    net=net)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)
  assert np.all(want > 0)

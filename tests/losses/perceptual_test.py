"""Tests for talking_heads.losses.perceptual: the VGG16 feature loss against a numpy transcription
of its definition, its properties, and (torch installed) a reference PyTorch VGG16 loss built
from torchvision's `features` slices [0:4], [4:9], [9:16], [16:23]; `make_perceptual_loss` through
public-layout checkpoint files written without torch (VGG16, VGG19 with pix2pixHD's weights) and
its errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.losses import perceptual
from talking_heads.metrics import lpips as lpips_metric
from talking_heads.pretrained import vgg as vgg_convert
from tests.pretrained import torch_files
from third_party import torch_reader
from third_party import vgg_keys
from third_party import weights

SIZE = 16  # relu4_3 sits after three pools: 2x2 maps.
# Jitted (weights and value range traced, so few compilations); eager VGG is slow on CPU.
loss_fn = jax.jit(perceptual.perceptual_loss,
                  static_argnames=("layers", "distance"))


def _variables(seed=0, trunk=None):
  """He-scaled random weights for the perceptual trunk (numpy: fast on CPU)."""
  trunk = trunk or perceptual.perceptual_vgg()
  shapes = jax.eval_shape(trunk.init, jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    if path[-1].key == "bias":
      return rng.normal(0, 0.1, leaf.shape).astype(np.float32)
    return rng.normal(0, np.sqrt(2 / np.prod(leaf.shape[:-1])), leaf.shape).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _images(seed, batch=2):
  rng = np.random.default_rng(seed)
  x = rng.uniform(0, 1, (batch, SIZE, SIZE, 3)).astype(np.float32)
  y = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1).astype(np.float32)
  return x, y


def test_imagenet_normalise_hand_values():
  pixel = jnp.array([[0.485, 0.456, 0.406], [1.0, 0.0, 0.5]])
  np.testing.assert_allclose(np.asarray(perceptual.imagenet_normalise(pixel))[0], 0, atol=1e-6)
  np.testing.assert_allclose(np.asarray(perceptual.imagenet_normalise(pixel))[1],
                             [(1 - 0.485) / 0.229, -0.456 / 0.224, (0.5 - 0.406) / 0.225],
                             rtol=1e-6)
  np.testing.assert_allclose(np.asarray(perceptual.imagenet_normalise(pixel * 2 - 1, (-1, 1))),
                             np.asarray(perceptual.imagenet_normalise(pixel)), atol=1e-6)


@pytest.mark.parametrize("distance", ["l1", "l2"])
def test_matches_numpy_definition(distance):
  variables = _variables()
  x, y = _images(1)
  weights = (1.0, 0.5, 0.25, 2.0)
  loss = loss_fn(variables, x, y, layer_weights=weights, distance=distance)
  mean, std = np.array(perceptual.IMAGENET_MEAN), np.array(perceptual.IMAGENET_STD)
  trunk = perceptual.perceptual_vgg()
  apply = jax.jit(trunk.apply)
  fx = apply(variables, ((x - mean) / std).astype(np.float32))
  fy = apply(variables, ((y - mean) / std).astype(np.float32))
  want = 0.0
  for w, layer in zip(weights, perceptual.LAYERS):
    d = np.asarray(fx[layer], np.float64) - np.asarray(fy[layer], np.float64)
    want += w * (np.abs(d) if distance == "l1" else d**2).mean()
  assert loss.shape == () and loss.dtype == jnp.float32
  np.testing.assert_allclose(float(loss), want, rtol=1e-4)


def test_properties():
  variables = _variables()
  x, y = _images(2)
  ones, unit = (1.0,) * 4, (0.0, 1.0)  # Same pytree structure in every call: one compilation.
  assert float(loss_fn(variables, x, x, layer_weights=ones, value_range=unit)) == 0.0
  base = float(loss_fn(variables, x, y, layer_weights=ones, value_range=unit))
  assert base > 0
  np.testing.assert_allclose(
      float(loss_fn(variables, x, y, layer_weights=(3.0,) * 4, value_range=unit)), 3 * base,
      rtol=1e-5)
  np.testing.assert_allclose(
      float(loss_fn(variables, 2 * x - 1, 2 * y - 1, layer_weights=ones, value_range=(-1.0, 1.0))),
      base, rtol=1e-4)
  assert "conv5_1" not in variables["params"]  # The trunk stops at relu4_3.


def test_gradient_reaches_the_generated_image():
  variables = _variables()
  x, y = _images(5)
  shallow = ("relu1_2", "relu2_2")  # A shorter trunk keeps the backward pass cheap.
  grad = jax.grad(lambda a: loss_fn(variables, a, y, layers=shallow))(jnp.asarray(x))
  assert np.all(np.isfinite(np.asarray(grad))) and float(jnp.abs(grad).sum()) > 0


def test_bad_arguments():
  variables = _variables()
  x, y = _images(3)
  with pytest.raises(ValueError, match="differ in shape"):
    loss_fn(variables, x, y[:1])
  with pytest.raises(ValueError, match="'l1' or 'l2'"):
    loss_fn(variables, x, y, distance="cosine")
  with pytest.raises(ValueError, match="3 layer weights for 4 layers"):
    loss_fn(variables, x, y, layer_weights=(1, 1, 1))


@pytest.mark.parity
def test_matches_reference_torch_loss(tmp_path):
  torch = pytest.importorskip("torch")
  torch.manual_seed(0)
  cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
  layers, cin = [], 3
  for item in cfg:
    if item == "M":
      layers.append(torch.nn.MaxPool2d(2, 2))
    else:
      layers += [torch.nn.Conv2d(cin, item, 3, padding=1), torch.nn.ReLU()]
      cin = item
  model = torch.nn.Module()
  model.features = torch.nn.Sequential(*layers)
  slices = [model.features[a:b] for a, b in ((0, 4), (4, 9), (9, 16), (16, 23))]
  path = tmp_path / "vgg16.pth"
  torch.save(model.state_dict(), path)

  x, y = _images(4)
  mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
  std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
  hx = (torch.from_numpy(x.transpose(0, 3, 1, 2)) - mean) / std
  hy = (torch.from_numpy(y.transpose(0, 3, 1, 2)) - mean) / std
  weights = (1.0, 2.0, 3.0, 4.0)
  want = 0.0
  with torch.no_grad():
    for w, block in zip(weights, slices):
      hx, hy = block(hx), block(hy)
      want += w * torch.nn.functional.l1_loss(hx, hy).item()

  expected = jax.eval_shape(perceptual.perceptual_vgg().init, jax.random.key(0),
                            jnp.zeros((1, SIZE, SIZE, 3)))
  variables = vgg_convert.convert_vgg(torch_reader.load_torch_file(path), expected,
                                      source=str(path))
  got = loss_fn(variables, x, y, layer_weights=weights)
  np.testing.assert_allclose(float(got), want, rtol=1e-4)


# ---- make_perceptual_loss ----------------------------------------------------------------------


def _write_torchvision_file(weights_dir, name, variables):
  """Writes trunk variables back under torchvision's keys (kernel H W I O -> O I H W)."""
  indices = vgg_keys.vgg_indices(name)
  state_dict = {}
  for layer, p in variables["params"].items():
    state_dict[f"features.{indices[layer]}.weight"] = np.asarray(p["kernel"]).transpose(3, 2, 0, 1)
    state_dict[f"features.{indices[layer]}.bias"] = np.asarray(p["bias"])
  torch_files.write_state_dict(weights_dir / weights.WEIGHTS[name].filename, state_dict)


def test_vgg16_kind_reproduces_perceptual_loss(tmp_path):
  variables = _variables()
  _write_torchvision_file(tmp_path, "vgg16", variables)
  x, y = _images(6)
  for p, distance in ((1, "l1"), (2, "l2")):
    loss = perceptual.make_perceptual_loss("vgg16", tmp_path, p=p, value_range=(0.0, 1.0))
    assert (loss.layers, loss.layer_weights) == (perceptual.LAYERS, (1.0,) * 4)
    for got, want in zip(jax.tree.leaves(loss.variables), jax.tree.leaves(variables)):
      np.testing.assert_array_equal(got, want)
    want = loss_fn(variables, x, y, layer_weights=(1.0,) * 4, value_range=(0.0, 1.0),
                   distance=distance)
    np.testing.assert_allclose(float(jax.jit(loss.apply)(loss.variables, x, y)), float(want),
                               rtol=1e-6)


def test_vgg19_kind_applies_the_pix2pixhd_layer_weights(tmp_path):
  trunk = perceptual.perceptual_vgg(perceptual.PIX2PIXHD_LAYERS, variant="vgg19")
  variables = _variables(trunk=trunk)
  assert "conv5_2" not in variables["params"] and "conv4_4" in variables["params"]
  _write_torchvision_file(tmp_path, "vgg19", variables)
  loss = perceptual.make_perceptual_loss("vgg19", tmp_path)          # images in [-1, 1]
  assert loss.layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
  assert loss.layer_weights == (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0) and loss.p == 1
  x, y = _images(7)
  mean, std = np.array(perceptual.IMAGENET_MEAN), np.array(perceptual.IMAGENET_STD)
  apply = jax.jit(trunk.apply)
  fx = apply(variables, ((x - mean) / std).astype(np.float32))
  fy = apply(variables, ((y - mean) / std).astype(np.float32))
  per_layer = {name: np.abs(np.asarray(fx[name], np.float64) - np.asarray(fy[name], np.float64)
                            ).mean() for name in loss.layers}
  want = sum(w * per_layer[name] for w, name in zip(loss.layer_weights, loss.layers))
  got = float(jax.jit(loss.apply)(loss.variables, 2 * x - 1, 2 * y - 1))
  np.testing.assert_allclose(got, want, rtol=1e-4)
  assert abs(got - sum(per_layer.values())) > 1e-3 * got          # The weights matter.
  custom = perceptual.make_perceptual_loss("vgg19", tmp_path, layers=("relu1_1", "relu3_1"),
                                           weights=(2.0, 0.5), value_range=(0.0, 1.0))
  np.testing.assert_allclose(float(jax.jit(custom.apply)(custom.variables, x, y)),
                             2.0 * per_layer["relu1_1"] + 0.5 * per_layer["relu3_1"], rtol=1e-4)


def test_lpips_kind_is_the_mean_vgg_lpips():
  x, y = _images(8)
  variables = jax.jit(lpips_metric.LPIPS(net="vgg").init)(jax.random.key(0), x, y)
  loss = perceptual.PerceptualLoss("lpips", variables, value_range=(0.0, 1.0))
  want = jnp.mean(lpips_metric.lpips_distance(variables, x, y, net="vgg", normalize=True))
  np.testing.assert_allclose(float(jax.jit(loss.apply)(variables, x, y)), float(want), rtol=1e-5)


def test_make_perceptual_loss_errors(tmp_path):
  for kind, weights_dir in (("vgg19", ""), ("lpips", None)):
    with pytest.raises(ValueError, match="needs the public weights"):
      perceptual.make_perceptual_loss(kind, weights_dir)
  with pytest.raises(weights.MissingWeightsError, match="vgg19-dcbb9e9d.pth"):
    perceptual.make_perceptual_loss("vgg19", tmp_path)
  with pytest.raises(weights.MissingWeightsError, match=r"(?s)vgg16-397923af.pth.*lpips/weights"):
    perceptual.make_perceptual_loss("lpips", tmp_path)
  with pytest.raises(ValueError, match="kind must be one of"):
    perceptual.make_perceptual_loss("vgg11", tmp_path)
  with pytest.raises(ValueError, match="p must be 1 or 2"):
    perceptual.make_perceptual_loss("vgg16", tmp_path, p=3)
  with pytest.raises(ValueError, match="2 weights for 4 layers"):
    perceptual.make_perceptual_loss("vgg16", tmp_path, weights=(1.0, 1.0))
  with pytest.raises(ValueError, match="fixes its layers"):
    perceptual.make_perceptual_loss("lpips", tmp_path, layers=("relu1_2",))

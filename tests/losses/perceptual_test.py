"""Tests for talking_heads.losses.perceptual: the VGG16 feature loss against a numpy transcription
of its definition, its properties, and (torch installed) a reference PyTorch VGG16 loss built
from torchvision's `features` slices [0:4], [4:9], [9:16], [16:23]."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.losses import perceptual
from talking_heads.pretrained import vgg as vgg_convert
from third_party import torch_reader

SIZE = 16  # relu4_3 sits after three pools: 2x2 maps.
# Jitted (weights and value range traced, so few compilations); eager VGG is slow on CPU.
loss_fn = jax.jit(perceptual.perceptual_loss,
                  static_argnames=("layers", "distance"))


def _variables(seed=0):
  """He-scaled random weights for the perceptual trunk (numpy: fast on CPU)."""
  shapes = jax.eval_shape(perceptual.perceptual_vgg().init, jax.random.key(0),
                          jnp.zeros((1, SIZE, SIZE, 3)))
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
  variables = vgg_convert.convert_vgg(torch_reader.load_torch_file(path), expected, str(path))
  got = loss_fn(variables, x, y, layer_weights=weights)
  np.testing.assert_allclose(float(got), want, rtol=1e-4)

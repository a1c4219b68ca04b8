"""pytorch-fid's InceptionV3 in Flax and its converter (`talking_heads.pretrained.inception`).

Torch-free: the name map against the committed key/shape manifest `inception_manifest.json` (the
state dict of the reference module below, kept honest by a torch-gated test), conversion into
every Flax leaf, bad keys named, a missing weights file named, the resize against a transcription
of torch's bilinear formula and OpenCV, the FID pools hand-checked, shapes.
With torch: the converted network against the reference PyTorch module on random weights
(eval-mode BatchNorm, running statistics from one train-mode pass, variances floored), without
and with pytorch-fid's resize, the latter through a file written by `torch.save`. The reference
is written here from the facts in `shared/reference/eg3d_stylegan_speaker_metrics.md` §5 and
torchvision's Inception3 layer table; it copies no pytorch-fid code.
"""

import json
import pathlib

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from talking_heads.models import inception
from talking_heads.pretrained import inception as inception_convert
from third_party import convert as cv
from third_party import inception_keys
from third_party import weights

MANIFEST = pathlib.Path(__file__).parent / "inception_manifest.json"
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"


def _manifest() -> dict[str, list[int]]:
  return json.loads(MANIFEST.read_text())


def _random_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
  """Manifest-shaped weights with He-scaled convs and unit-ish BatchNorm statistics."""
  rng = np.random.default_rng(seed)
  out = {}
  for key, shape in _manifest().items():
    if key.endswith("num_batches_tracked"):
      out[key] = np.array(1, np.int64)
    elif key.endswith("conv.weight"):
      fan_in = int(np.prod(shape[1:]))
      out[key] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    elif key.endswith("running_var"):
      out[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    else:
      out[key] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
  return out


# ----------------------------------------------------------------------------- torch-free


def test_name_map_covers_exactly_the_manifest_keys():
  manifest = _manifest()
  tensors = {k for k in manifest if not k.endswith("num_batches_tracked")}
  mapping = inception_keys.inception_map()
  assert set(mapping) == tensors
  assert len(mapping) == 94 * 5 + 2                       # 94 BasicConv2d + fc
  assert len(inception_keys.basic_conv_paths()) == 94


def test_manifest_converts_into_every_flax_leaf():
  sd = _random_state_dict()
  variables = inception_convert.convert_inception(sd)
  leaves = jax.tree_util.tree_leaves(variables)
  n_torch = sum(int(np.prod(s)) for k, s in _manifest().items()
                if not k.endswith("num_batches_tracked"))
  assert len(leaves) == 472
  assert sum(x.size for x in leaves) == n_torch == 23_885_392
  assert all(x.dtype == np.float32 for x in leaves)


def test_values_land_in_the_right_flax_leaves():
  sd = _random_state_dict()
  v = inception_convert.convert_inception({f"module.{k}": x for k, x in sd.items()})
  w = sd["Mixed_6b.branch7x7_2.conv.weight"]              # O I kh kw = 128 128 1 7
  np.testing.assert_array_equal(v["params"]["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"],
                                w.transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(v["batch_stats"]["Mixed_7c"]["branch_pool"]["bn"]["var"],
                                sd["Mixed_7c.branch_pool.bn.running_var"])
  np.testing.assert_array_equal(v["params"]["Conv2d_1a_3x3"]["bn"]["scale"],
                                sd["Conv2d_1a_3x3.bn.weight"])
  np.testing.assert_array_equal(v["params"]["fc"]["kernel"], sd["fc.weight"].T)


def test_unknown_missing_and_misshaped_keys_are_named():
  sd = _random_state_dict()
  with pytest.raises(cv.ConversionError, match=r"unknown torch key: AuxLogits\.fc\.weight"):
    inception_convert.convert_inception({**sd, "AuxLogits.fc.weight": np.zeros((1000, 768))})
  missing = dict(sd)
  del missing["Mixed_5d.branch5x5_2.bn.running_mean"]
  with pytest.raises(cv.ConversionError,
                     match=r"missing torch key: Mixed_5d\.branch5x5_2\.bn\.running_mean"):
    inception_convert.convert_inception(missing)
  torchvision_head = {**sd, "fc.weight": np.zeros((1000, 2048), np.float32),
                      "fc.bias": np.zeros(1000, np.float32)}
  with pytest.raises(cv.ConversionError, match=r"shape: fc\.weight \(1000, 2048\)"):
    inception_convert.convert_inception(torchvision_head, source="inception_v3_google.pth")


def test_missing_weights_file_is_named(tmp_path):
  with pytest.raises(weights.MissingWeightsError, match=WEIGHTS_FILE) as err:
    inception_convert.load_inception(tmp_path)
  assert "github.com/mseitzer/pytorch-fid" in str(err.value)
  with pytest.raises(weights.MissingWeightsError, match="--weights-dir"):
    inception_convert.load_inception(None)


def _torch_bilinear(x: np.ndarray, size: int) -> np.ndarray:
  """torch F.interpolate(bilinear, align_corners=False) transcribed, [B, H, W, C].

  Source positions in float32 as torch's kernel computes them (float64 positions move 512 -> 299
  samples by up to 3e-5), the weighted sums in float64.
  """
  def axis_weights(n_in):
    scale = np.float32(n_in) / np.float32(size)
    src = scale * (np.arange(size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = (src - i0).astype(np.float64)
    m = np.zeros((size, n_in))
    np.add.at(m, (np.arange(size), i0), 1.0 - frac)
    np.add.at(m, (np.arange(size), i1), frac)
    return m
  rows = np.einsum("ph,bhwc->bpwc", axis_weights(x.shape[1]), x.astype(np.float64), optimize=True)
  return np.einsum("qw,bpwc->bpqc", axis_weights(x.shape[2]), rows, optimize=True)


@pytest.mark.parametrize("hw", [(512, 512), (64, 80), (300, 200), (150, 600)])
def test_resize_matches_torch_bilinear_formula_and_opencv(hw):
  x = np.random.default_rng(1).random((2, *hw, 3), dtype=np.float32)
  ours = np.asarray(inception.resize_bilinear(jnp.asarray(x)))
  assert ours.shape == (2, 299, 299, 3)
  np.testing.assert_allclose(ours, _torch_bilinear(x, 299), atol=1e-5)
  opencv = np.stack([cv2.resize(im, (299, 299), interpolation=cv2.INTER_LINEAR) for im in x])
  np.testing.assert_allclose(ours, opencv, atol=1e-4)     # OpenCV's weights are rounded
  same = np.random.default_rng(2).random((1, 299, 299, 3), dtype=np.float32)
  np.testing.assert_array_equal(np.asarray(inception.resize_bilinear(jnp.asarray(same))), same)


def test_fid_pools_exclude_padding_and_pad_max_with_minus_infinity():
  x = jnp.asarray(np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1))
  avg = np.asarray(inception._avg_pool_3x3(x))[0, :, :, 0]
  assert avg[0, 0] == pytest.approx((0 + 1 + 4 + 5) / 4)  # corner: 4 real cells, not 9
  assert avg[0, 1] == pytest.approx((0 + 1 + 2 + 4 + 5 + 6) / 6)
  assert avg[1, 1] == pytest.approx(np.arange(16).reshape(4, 4)[:3, :3].mean())
  # Mixed_7c's 3x3 max-pool (stride 1, padding 1) on all-negative input: padding never wins.
  negative = -1.0 - np.random.default_rng(0).random((1, 6, 7, 2), np.float32)
  pooled = np.asarray(inception._max_pool_3x3(jnp.asarray(negative)))
  want = np.array([[negative[0, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].max(axis=(0, 1))
                    for j in range(7)] for i in range(6)])
  np.testing.assert_array_equal(pooled[0], want)


def test_shapes_and_input_checks():
  model = inception.FIDInceptionV3()
  feats, aux = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), jnp.zeros((3, 64, 48, 3)))[0])
  assert feats.shape == (3, 2048) and aux["logits"].shape == (3, 1008)
  small = inception.FIDInceptionV3(resize_input=False)
  feats, _ = jax.eval_shape(lambda: small.init_with_output(
      jax.random.key(0), jnp.zeros((1, 75, 75, 3)))[0])
  assert feats.shape == (1, 2048)
  with pytest.raises(ValueError, match="smaller than 75x75"):
    jax.eval_shape(lambda: small.init(jax.random.key(0), jnp.zeros((1, 74, 90, 3))))
  with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 3, 64, 64))))


# ----------------------------------------------------------------------------- torch reference


def _reference(torch):
  """pytorch-fid's InceptionV3 as a plain torch module (torchvision Inception3 + FID blocks)."""
  tnn, F = torch.nn, torch.nn.functional

  class BasicConv2d(tnn.Module):

    def __init__(self, cin, cout, **kw):
      super().__init__()
      self.conv = tnn.Conv2d(cin, cout, bias=False, **kw)
      self.bn = tnn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
      return F.relu(self.bn(self.conv(x)))

  def avg(x):
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)

  class A(tnn.Module):

    def __init__(self, cin, pool_features):
      super().__init__()
      self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
      self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
      self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
      self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
      self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
      self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
      self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x):
      return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                        self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                        self.branch_pool(avg(x))], 1)

  class B(tnn.Module):

    def __init__(self, cin):
      super().__init__()
      self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
      self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
      self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
      self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
      return torch.cat([self.branch3x3(x),
                        self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                        F.max_pool2d(x, 3, stride=2)], 1)

  class C(tnn.Module):

    def __init__(self, cin, c7):
      super().__init__()
      self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
      self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
      self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
      self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
      self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
      self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
      self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
      self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
      self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
      self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
      b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
      bd = self.branch7x7dbl_1(x)
      for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                    self.branch7x7dbl_5):
        bd = layer(bd)
      return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(avg(x))], 1)

  class D(tnn.Module):

    def __init__(self, cin):
      super().__init__()
      self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
      self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
      self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
      self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
      self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
      self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
      b7 = self.branch7x7x3_1(x)
      for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
        b7 = layer(b7)
      return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7,
                        F.max_pool2d(x, 3, stride=2)], 1)

  class E(tnn.Module):

    def __init__(self, cin, pool):
      super().__init__()
      self.pool = pool
      self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
      self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
      self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
      self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
      self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
      self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
      self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
      self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
      self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
      b3 = self.branch3x3_1(x)
      b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
      bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
      bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
      pooled = avg(x) if self.pool == "avg" else F.max_pool2d(x, 3, stride=1, padding=1)
      return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], 1)

  class FIDInception(tnn.Module):

    def __init__(self):
      super().__init__()
      self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
      self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
      self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
      self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
      self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
      self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = A(192, 32), A(256, 64), A(288, 64)
      self.Mixed_6a = B(288)
      self.Mixed_6b, self.Mixed_6c = C(768, 128), C(768, 160)
      self.Mixed_6d, self.Mixed_6e = C(768, 160), C(768, 192)
      self.Mixed_7a = D(768)
      self.Mixed_7b, self.Mixed_7c = E(1280, "avg"), E(2048, "max")
      self.fc = tnn.Linear(2048, 1008)

    def forward(self, x, resize=True):  # x (B, 3, H, W) in [0, 1]
      if resize:
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
      x = 2 * x - 1
      x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
      x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, stride=2)))
      x = F.max_pool2d(x, 3, stride=2)
      for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
        x = getattr(self, f"Mixed_{name}")(x)
      pooled = F.adaptive_avg_pool2d(x, 1).flatten(1)
      return pooled, self.fc(pooled)

  return FIDInception


@pytest.fixture(scope="module")
def reference():
  """(calibrated eval-mode reference module, its numpy state dict)."""
  torch = pytest.importorskip("torch")
  torch.manual_seed(0)
  module = _reference(torch)()
  gen = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for m in module.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
        m.bias.copy_(torch.rand(m.bias.shape, generator=gen) * 0.2 - 0.1)
        m.momentum = None                   # running stats := this pass's batch statistics
    module.train()
    module(torch.rand(4, 3, 139, 139, generator=gen), resize=False)
    # Near-dead channels get tiny variances that amplify float32 rounding along 94 layers (torch
    # f32 vs f64 differ by 2e-4 without this, by 1e-6 with it).
    for m in module.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.running_var.add_(0.5 * m.running_var.mean())
  module.eval()
  state = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
  return torch, module, state


def _relative_error(ours, ref):
  return float(np.max(np.abs(np.asarray(ours) - ref)) / np.max(np.abs(ref)))


@pytest.mark.parity
def test_reference_state_dict_matches_the_manifest(reference):
  _, _, state = reference
  assert {k: list(v.shape) for k, v in state.items()} == _manifest()


@pytest.mark.parity
def test_converted_network_matches_reference_without_resize(reference):
  torch, module, state = reference
  model = inception.FIDInceptionV3(resize_input=False)
  variables = inception_convert.convert_inception(state, model=model)
  x = np.random.default_rng(3).random((2, 139, 139, 3), dtype=np.float32)
  with torch.no_grad():
    ref_feats, ref_logits = (t.numpy() for t in module(torch.from_numpy(x).permute(0, 3, 1, 2),
                                                        resize=False))
  feats, aux = jax.jit(model.apply)(variables, jnp.asarray(x))
  assert _relative_error(feats, ref_feats) <= 1e-4
  assert _relative_error(aux["logits"], ref_logits) <= 1e-4
  assert ref_feats.std() > 0.1                          # calibrated: activations are not vanishing


@pytest.mark.parity
def test_converted_network_matches_reference_through_saved_file(reference, tmp_path):
  torch, module, _ = reference
  torch.save(module.state_dict(), tmp_path / WEIGHTS_FILE)
  variables = inception_convert.load_inception(tmp_path)
  # pytorch-fid's full path: bilinear resize to 299 (here up in H, down in W), then 2x - 1.
  x = np.random.default_rng(4).random((1, 200, 360, 3), dtype=np.float32)
  with torch.no_grad():
    ref_feats, _ = module(torch.from_numpy(x).permute(0, 3, 1, 2))
  feats, _ = jax.jit(inception.FIDInceptionV3().apply)(variables, jnp.asarray(x))
  assert _relative_error(feats, ref_feats.numpy()) <= 1e-4

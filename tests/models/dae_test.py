"""Diffusion autoencoder: shapes, zero-init output, latent conditioning, layout, size, learning."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from talking_heads.diffusion import parameterization as param
from talking_heads.diffusion import schedules
from talking_heads.models import dae

# Two UNet levels (16 and 8 px, attention at 8), two encoder levels: the smallest real layout.
TINY = dict(width=32, channel_mult=(1, 2), encoder_channel_mult=(1, 2), num_res_blocks=1,
            encoder_num_res_blocks=1, attention_resolutions=(8,), embed_dim=64, latent_dim=16)
SIZE = 16


def _names(tree) -> set[str]:
  return set(tree)


def random_params(abstract, seed: int):
  """Every leaf random, zero-initialised layers included, so every path carries signal."""
  rng = np.random.default_rng(seed)

  def leaf(path, x):
    name = path[-1].key
    if name == "kernel":
      return jnp.asarray(rng.normal(size=x.shape) / np.sqrt(np.prod(x.shape[:-1])), x.dtype)
    if name == "scale":
      return jnp.asarray(1.0 + 0.2 * rng.normal(size=x.shape), x.dtype)
    return jnp.asarray(0.2 * rng.normal(size=x.shape), x.dtype)

  return jax.tree_util.tree_map_with_path(leaf, abstract)


@pytest.fixture(scope="module")
def batch():
  """One noising batch: smooth images in [-1, 1], fixed noise and timesteps."""
  rng = np.random.default_rng(0)
  x0 = jnp.asarray(np.kron(rng.uniform(-1, 1, (4, 4, 4, 3)), np.ones((1, 4, 4, 1))), jnp.float32)
  noise = jnp.asarray(rng.normal(size=x0.shape), jnp.float32)
  t = jnp.array([30, 250, 500, 900], jnp.int32)
  x_t = param.q_sample(schedules.make_schedule("linear", 1000), x0, t, noise)
  return x0, noise, t, x_t


@pytest.fixture(scope="module")
def tiny():
  model = dae.DiffusionAutoencoder(**TINY, dropout=0.0)
  return model, jax.jit(lambda *a, **k: model.apply(*a, **k), static_argnames="method")


@pytest.fixture(scope="module")
def fresh(tiny, batch):
  """A real `init` (one compile shared by the tests below)."""
  model, _ = tiny
  x0, _, t, x_t = batch
  # unsafe_rbg: threefry's init compile is several times slower on CPU.
  return jax.jit(lambda key: model.init(key, x_t, t, x0=x0))(jax.random.key(0, impl="unsafe_rbg"))


def test_shapes_and_a_fresh_unet_predicts_exactly_zero(tiny, fresh, batch):
  _, apply = tiny
  x0, _, t, x_t = batch
  z = apply(fresh, x0, method="encode")
  assert z.shape == (4, 16) and z.dtype == jnp.float32
  assert np.all(np.isfinite(z)) and np.max(np.abs(np.asarray(z))) > 0    # encoder head not zeroed
  eps = apply(fresh, x_t, t, z=z)
  assert eps.shape == x_t.shape and eps.dtype == jnp.float32
  np.testing.assert_array_equal(eps, 0.0)     # zero-initialised output conv
  # The parameters are the encoder's and the UNet's; the UNet alone has the same layout.
  assert _names(fresh["params"]) == {"encoder", "unet"}
  unet = dae.ConditionalUNet(**{k: v for k, v in TINY.items() if not k.startswith("encoder")})
  alone = jax.eval_shape(unet.init, jax.random.key(0), x_t, t, z)["params"]
  assert (jax.tree_util.tree_structure(alone)
          == jax.tree_util.tree_structure(fresh["params"]["unet"]))


def test_latent_and_time_condition_the_prediction(tiny, fresh, batch):
  _, apply = tiny
  _, _, t, x_t = batch
  params = random_params(jax.eval_shape(lambda: fresh)["params"], 1)
  rng = np.random.default_rng(2)
  z1, z2 = (jnp.asarray(rng.normal(size=(4, 16)), jnp.float32) for _ in range(2))
  eps1 = apply({"params": params}, x_t, t, z=z1)
  eps2 = apply({"params": params}, x_t, t, z=z2)
  assert np.mean(np.abs(np.asarray(eps1 - eps2))) > 1e-2
  # Same z, other timesteps: the time embedding matters too.
  assert np.mean(np.abs(np.asarray(apply({"params": params}, x_t, t + 50, z=z1) - eps1))) > 1e-3
  # z enters only through the ResBlocks' cond_proj: zero them and z no longer matters.
  def drop_latent(path, leaf):
    return jnp.zeros_like(leaf) if any(getattr(p, "key", None) == "cond_proj"
                                       for p in path) else leaf
  blind = jax.tree_util.tree_map_with_path(drop_latent, params)
  np.testing.assert_allclose(apply({"params": blind}, x_t, t, z=z1),
                             apply({"params": blind}, x_t, t, z=z2), atol=1e-6)


def test_bad_inputs_raise_clear_errors(tiny, fresh, batch):
  model, _ = tiny
  x0, _, t, x_t = batch
  check = lambda **kw: jax.eval_shape(lambda: model.apply(fresh, x_t, **kw))
  with pytest.raises(ValueError, match="exactly one of x0"):
    check(t=t, x0=x0, z=jnp.zeros((4, 16)))
  with pytest.raises(ValueError, match="exactly one of x0"):
    check(t=t)
  with pytest.raises(ValueError, match=r"z must be \[B, Z\] = \[4, 16\]"):
    check(t=t, z=jnp.zeros((4, 8)))
  with pytest.raises(ValueError, match=r"t must be a scalar or \[B\]"):
    check(t=t[:2], z=jnp.zeros((4, 16)))
  with pytest.raises(ValueError, match="must be divisible by 2"):
    jax.eval_shape(lambda: model.apply(fresh, x_t[:, :15, :15], t, z=jnp.zeros((4, 16))))
  # A scalar or float timestep broadcasts over the batch.
  assert check(t=jnp.float32(10.5), z=jnp.zeros((4, 16))).shape == x_t.shape


def _attention_modules(tree) -> set[str]:
  return {name for name in tree if "attn" in name}


def test_attention_only_at_the_configured_resolutions():
  # 32 px, three levels (32, 16, 8 px), attention at 16 px only (+ the middle block).
  model = dae.DiffusionAutoencoder(width=32, channel_mult=(1, 2, 2), encoder_channel_mult=(1, 2, 2),
                                   attention_resolutions=(16,), embed_dim=64, latent_dim=16)
  params = dae.abstract_variables(model, 32)["params"]
  unet = params["unet"]
  assert _attention_modules(unet["half_unet"]) == {"level1_attn0", "level1_attn1", "mid_attn"}
  assert _attention_modules(unet) == {"up_level1_attn0", "up_level1_attn1", "up_level1_attn2"}
  assert _attention_modules(params["encoder"]["half_unet"]) == {"level1_attn0", "level1_attn1",
                                                                 "mid_attn"}
  # The same network at 64 px has its 16 px features one level lower.
  params = dae.abstract_variables(model, 64)["params"]
  assert _attention_modules(params["unet"]["half_unet"]) == {"level2_attn0", "level2_attn1",
                                                              "mid_attn"}
  # No attention resolutions: only the middle block attends.
  model = model.clone(attention_resolutions=())
  params = dae.abstract_variables(model, 32)["params"]
  assert _attention_modules(params["unet"]["half_unet"]) == {"mid_attn"}
  assert not _attention_modules(params["unet"])


def _derived_ffhq256_counts() -> dict[str, int]:
  """diffae's ffhq256 layout counted by hand (its per-level lists of skip widths)."""
  conv = lambda cin, cout, k: cin * cout * k * k + cout
  dense = lambda cin, cout: cin * cout + cout
  norm = lambda c: 2 * c
  attn = lambda c: norm(c) + dense(c, 3 * c) + dense(c, c)

  def res(cin, cout, cond):
    n = norm(cin) + conv(cin, cout, 3) + (conv(cin, cout, 1) if cin != cout else 0)
    if cond:   # time scale/shift, latent scale, out GN and the zero-initialised conv
      n += dense(512, 2 * cout) + dense(512, cout) + norm(cout) + conv(cout, cout, 3)
    return n

  def half(mult, cond):
    ch, size, n = 128 * mult[0], 256, conv(3, 128 * mult[0], 3)
    skips = [[ch]] + [[] for _ in mult[1:]]
    for level, m in enumerate(mult):
      for _ in range(2):
        n += res(ch, 128 * m, cond)
        ch = 128 * m
        n += attn(ch) if size == 16 else 0
        skips[level].append(ch)
      if level < len(mult) - 1:
        n += res(ch, ch, cond)
        size //= 2
        skips[level + 1].append(ch)
    return n + 2 * res(ch, ch, cond) + attn(ch), ch, size, skips

  n, ch, _, _ = half(dae.FFHQ256_ENCODER_CHANNEL_MULT, False)
  encoder = n + norm(ch) + dense(ch, 512)
  mult = dae.FFHQ256_CHANNEL_MULT
  n, ch, size, skips = half(mult, True)
  n += dense(128, 512) + dense(512, 512)
  for level in reversed(range(len(mult))):
    for i in range(3):
      n += res(ch + skips[level].pop(), 128 * mult[level], True)
      ch = 128 * mult[level]
      n += attn(ch) if size == 16 else 0
      if level and i == 2:
        n += res(ch, ch, True)
        size *= 2
  unet = n + norm(ch) + conv(ch, 3, 3)
  return {"encoder": encoder, "unet": unet, "total": encoder + unet}


def test_ffhq256_parameter_counts_match_the_derived_layout():
  model = dae.DiffusionAutoencoder()     # defaults: diffae ffhq256
  counts = dae.parameter_counts(model, 256)
  assert counts == _derived_ffhq256_counts()
  assert counts == {"encoder": 30_150_400, "unet": 138_341_891, "total": 168_492_291}


@pytest.mark.slow
def test_tiny_autoencoder_overfits_one_noising_batch(tiny, fresh, batch):
  model, _ = tiny
  x0, noise, t, x_t = batch
  optimizer = optax.adam(1e-3)

  def loss_fn(params):
    eps = model.apply({"params": params}, x_t, t, x0=x0)   # encoder and UNet trained jointly
    return param.prediction_loss(eps, noise, "l1").mean()

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  params = fresh["params"]
  opt_state = optimizer.init(params)
  losses = []
  for _ in range(40):
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  # A zero prediction has L1 = E|eps| ~ 0.8; the fit must halve it.
  assert 0.7 < losses[0] < 0.9
  assert losses[-1] < 0.5 * losses[0], losses
  # The encoder learned too (its gradient is non-zero once the UNet's out convs move).
  moved = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                                 params["encoder"], fresh["params"]["encoder"])
  assert max(jax.tree_util.tree_leaves(moved)) > 0


@pytest.fixture(scope="module")
def centred(batch):
  """The tiny model with latent centring: (model, jitted apply, real init)."""
  model = dae.DiffusionAutoencoder(**TINY, dropout=0.0, latent_centering=True)
  x0, _, t, x_t = batch
  variables = jax.jit(lambda key: model.init(key, x_t, t, x0=x0))(
      jax.random.key(0, impl="unsafe_rbg"))
  apply = jax.jit(lambda *a, **k: model.apply(*a, **k), static_argnames=("train", "mutable", "method"))
  return model, apply, variables


def test_latent_centering_is_a_reparametrisation(tiny, fresh, centred, batch):
  """Same parameters with the centre folded into the biases: the centred model's prediction."""
  _, apply = tiny
  _, apply_centred, variables = centred
  _, _, t, x_t = batch
  assert jax.tree_util.tree_structure(variables["params"]) == jax.tree_util.tree_structure(
      fresh["params"])                                     # no new parameters
  np.testing.assert_array_equal(variables["latent_stats"]["unet"]["silu_mean"], 0.0)
  params = random_params(jax.eval_shape(lambda: fresh)["params"], 3)
  rng = np.random.default_rng(4)
  z = jnp.asarray(rng.normal(size=(4, 16)) + 2.0, jnp.float32)
  centre = jnp.asarray(rng.uniform(0.5, 2.5, size=16), jnp.float32)
  plain = apply({"params": params}, x_t, t, z=z)
  folded = apply_centred({"params": dae.fold_latent_centre(params, centre),
                          "latent_stats": {"unet": {"silu_mean": centre}}}, x_t, t, z=z)
  np.testing.assert_allclose(folded, plain, atol=2e-5)
  # Without folding, the centre changes the prediction (it is not ignored).
  unfolded = apply_centred({"params": params, "latent_stats": {"unet": {"silu_mean": centre}}},
                           x_t, t, z=z)
  assert float(jnp.mean(jnp.abs(unfolded - plain))) > 1e-2


def test_latent_running_mean_moves_only_in_training(centred, batch):
  _, apply, variables = centred
  x0, _, t, x_t = batch
  old = jnp.full((16,), 0.3, jnp.float32)
  variables = {"params": variables["params"], "latent_stats": {"unet": {"silu_mean": old}}}
  z = apply(variables, x0, method="encode")
  _, updated = apply(variables, x_t, t, x0=x0, train=True, mutable=("latent_stats",))
  expected = 0.99 * old + 0.01 * jnp.mean(jax.nn.silu(z), axis=0)
  np.testing.assert_allclose(updated["latent_stats"]["unet"]["silu_mean"], expected, rtol=1e-5,
                             atol=1e-7)
  _, unchanged = apply(variables, x_t, t, x0=x0, train=False, mutable=("latent_stats",))
  np.testing.assert_array_equal(unchanged["latent_stats"]["unet"]["silu_mean"], old)

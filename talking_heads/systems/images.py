"""Image value ranges shared by every system: uint8 pixels, [0, 1] and the models' [-1, 1]."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def to_model_range(images: jax.Array) -> jax.Array:
  """uint8 [..., 3] images -> float32 in [-1, 1]."""
  return images.astype(jnp.float32) / 127.5 - 1.0


def to_unit_range(images: jax.Array) -> jax.Array:
  """Model-range images -> float32 clipped to [0, 1]."""
  return jnp.clip((images.astype(jnp.float32) + 1.0) * 0.5, 0.0, 1.0)


def pixels_to_unit(images: jax.Array) -> jax.Array:
  """uint8 pixels -> float32 in [0, 1]; floating images are taken as already in [0, 1]."""
  images = jnp.asarray(images)
  scale = 1.0 / 255.0 if jnp.issubdtype(images.dtype, jnp.integer) else 1.0
  return images.astype(jnp.float32) * scale


def signed_colours(values: jax.Array, saturation: float = 3.0) -> jax.Array:
  """Values [...] -> RGB [..., 3] in [0, 1]: white at 0, red positive, blue negative, saturated at
  |value| = `saturation` (e.g. standardised coefficients over time)."""
  v = jnp.clip(values.astype(jnp.float32) / saturation, -1.0, 1.0)
  return jnp.stack([1 - jax.nn.relu(-v), 1 - jnp.abs(v), 1 - jax.nn.relu(v)], axis=-1)


def enlarge(images: jax.Array, scale: int) -> jax.Array:
  """[N, H, W, C] -> [N, scale H, scale W, C] by pixel repetition."""
  return jnp.repeat(jnp.repeat(images, scale, axis=1), scale, axis=2)

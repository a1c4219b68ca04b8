"""Cameras for volume rendering, converted from the morphable face model's, and their rays.

Conventions (EG3D's, `NVlabs/eg3d` `volumetric_rendering/ray_sampler.py`): OpenCV camera axes
(x right, y down, z forward); `cam2world` [..., 4, 4]; intrinsics normalised by the image size,
so that a pixel's centre is uv = (pixel index + 0.5) / size in [0, 1] whatever the resolution the
rays are cast at; a ray through uv has the camera-frame direction ((u - cx) / fx, (v - cy) / fy, 1)
(skew ignored), rotated into the world and normalised.

From the morphable model (`talking_heads.face.morphable`): its head frame is already OpenCV-aligned
and in millimetres, X_cam = R X + t with K in frame pixels whose centres sit on integers. The world
here is the head frame in units of `HEAD_BOX_MM` millimetres (the head then fits EG3D's unit box,
box_warp 1: landmarks span x +-70, y -25..108, z -110..-20 mm, i.e. within +-0.37), so
world2cam = [R | t / HEAD_BOX_MM], cam2world its inverse, and K is normalised as
fx / W, fy / H, (cx + 0.5) / W, (cy + 0.5) / H (the half pixel moves integer centres to EG3D's).

K-jitter (PIR Eq. 1), in frame pixels before normalisation, x1, x2, x3 ~ U(-s, s):
  fx' = fx (1 + x1 / (2 u0)),  fy' = fy (1 + x1 / (2 v0)),  u0' = u0 + x2,  v0' = v0 + x3,
so the rendered image shifts by (x2, x3) frame pixels and grows by about x1 pixels across the
frame (a point d pixels from the principal point moves by d x1 / (2 u0) + x2); I_F, rendered at
r = S / 8 in the paper, moves by r / S of that in its own pixels.

Dimensions: B (or ...) batch, N points, R rays, S frame size in pixels.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from talking_heads.face import morphable

HEAD_BOX_MM = 300.0
JITTER_PIXELS = 3.0


class Camera(NamedTuple):
  """cam2world [..., 4, 4] and normalised intrinsics [..., 3, 3] (module docstring)."""
  cam2world: jax.Array
  intrinsics: jax.Array


def _check_matrix(name: str, x: jax.Array, rows: int, cols: int) -> None:
  if x.ndim < 2 or x.shape[-2:] != (rows, cols):
    raise ValueError(f"{name} must be [..., {rows}, {cols}], got {tuple(x.shape)}")


def normalise_intrinsics(K: jax.Array, image_size: int) -> jax.Array:  # pylint: disable=invalid-name
  """Frame-pixel K [..., 3, 3] (integer pixel centres) -> K normalised by the frame size."""
  K = jnp.asarray(K, jnp.float32)  # pylint: disable=invalid-name
  _check_matrix("K", K, 3, 3)
  return K.at[..., :2, :].divide(image_size).at[..., :2, 2].add(0.5 / image_size)


def from_face_pose(pose: jax.Array, K: jax.Array, image_size: int,  # pylint: disable=invalid-name
                   head_box_mm: float = HEAD_BOX_MM) -> Camera:
  """The morphable model's pose [..., 6] (yaw, pitch, roll, tx, ty, tz; rad, mm) and frame K
  [..., 3, 3] of an S x S frame -> the `Camera` of the same view, world in head-box units."""
  pose = jnp.asarray(pose, jnp.float32)
  if pose.shape[-1:] != (6,):
    raise ValueError(f"pose must be [..., 6], got {tuple(pose.shape)}")
  intrinsics = normalise_intrinsics(K, image_size)
  batch = jnp.broadcast_shapes(pose.shape[:-1], intrinsics.shape[:-2])
  pose = jnp.broadcast_to(pose, batch + (6,))
  rotation = morphable.rotation_matrix(pose[..., 0], pose[..., 1], pose[..., 2])  # [..., 3, 3]
  translation = pose[..., 3:] / head_box_mm                                       # [..., 3]
  rot_t = jnp.swapaxes(rotation, -1, -2)
  centre = -jnp.einsum("...ij,...j->...i", rot_t, translation)
  top = jnp.concatenate([rot_t, centre[..., None]], axis=-1)                      # [..., 3, 4]
  bottom = jnp.broadcast_to(jnp.asarray([0.0, 0.0, 0.0, 1.0], jnp.float32),
                            top.shape[:-2] + (1, 4))
  cam2world = jnp.concatenate([top, bottom], axis=-2)
  return Camera(cam2world, jnp.broadcast_to(intrinsics, batch + (3, 3)))


def face_points_to_world(points_mm: jax.Array, head_box_mm: float = HEAD_BOX_MM) -> jax.Array:
  """Morphable-model points [..., N, 3] (mm, head frame) -> world points."""
  return jnp.asarray(points_mm, jnp.float32) / head_box_mm


def project(points: jax.Array, camera: Camera) -> jax.Array:
  """World points [..., N, 3] -> normalised image coordinates uv [..., N, 2] (the inverse of the
  rays: a point on the ray through uv projects to uv)."""
  rotation, centre = camera.cam2world[..., :3, :3], camera.cam2world[..., :3, 3]
  local = jnp.einsum("...ji,...nj->...ni", rotation, points - centre[..., None, :])  # camera frame
  hom = jnp.einsum("...ij,...nj->...ni", camera.intrinsics, local)
  return hom[..., :2] / hom[..., 2:3]


def uv_to_pixels(uv: jax.Array, image_size: int) -> jax.Array:
  """Normalised coordinates -> frame pixels with integer centres (the dataset's landmarks)."""
  return uv * image_size - 0.5


def pixels_to_uv(pixels: jax.Array, image_size: int) -> jax.Array:
  return (jnp.asarray(pixels, jnp.float32) + 0.5) / image_size


def rays_through(uv: jax.Array, camera: Camera) -> tuple[jax.Array, jax.Array]:
  """uv [..., R, 2] -> (origins [..., R, 3], unit directions [..., R, 3]) in the world."""
  k = camera.intrinsics
  fx, fy = k[..., 0, 0, None], k[..., 1, 1, None]
  cx, cy = k[..., 0, 2, None], k[..., 1, 2, None]
  local = jnp.stack([(uv[..., 0] - cx) / fx, (uv[..., 1] - cy) / fy,
                     jnp.ones_like(uv[..., 0])], axis=-1)                      # [..., R, 3]
  directions = jnp.einsum("...ij,...rj->...ri", camera.cam2world[..., :3, :3], local)
  directions = directions / jnp.linalg.norm(directions, axis=-1, keepdims=True)
  origins = jnp.broadcast_to(camera.cam2world[..., None, :3, 3], directions.shape)
  return origins, directions


def pixel_grid(resolution: int) -> jax.Array:
  """uv [R * R, 2] of the pixel centres of a resolution x resolution image, row-major
  (ray r = row * resolution + column), as (u, v) = (column, row)."""
  centres = (jnp.arange(resolution, dtype=jnp.float32) + 0.5) / resolution
  v, u = jnp.meshgrid(centres, centres, indexing="ij")
  return jnp.stack([u, v], axis=-1).reshape(-1, 2)


def image_rays(camera: Camera, resolution: int) -> tuple[jax.Array, jax.Array]:
  """Rays through every pixel of a resolution^2 rendering: origins, directions [..., R, 3]."""
  grid = pixel_grid(resolution)
  grid = jnp.broadcast_to(grid, camera.cam2world.shape[:-2] + grid.shape)
  return rays_through(grid, camera)


def sample_jitter(key: jax.Array, batch: int, strength: float = JITTER_PIXELS) -> jax.Array:
  """(x1, x2, x3) [B, 3] ~ U(-s, s) pixels, one draw per example (PIR Eq. 1)."""
  return jax.random.uniform(key, (batch, 3), jnp.float32, -strength, strength)


def jitter_intrinsics(K: jax.Array, offsets: jax.Array) -> jax.Array:  # pylint: disable=invalid-name
  """Frame-pixel K [B, 3, 3] and offsets (x1, x2, x3) [B, 3] -> K' [B, 3, 3] (PIR Eq. 1)."""
  K = jnp.asarray(K, jnp.float32)  # pylint: disable=invalid-name
  _check_matrix("K", K, 3, 3)
  if offsets.shape[-1:] != (3,):
    raise ValueError(f"jitter offsets must be [..., 3], got {tuple(offsets.shape)}")
  x1, x2, x3 = offsets[..., 0], offsets[..., 1], offsets[..., 2]
  u0, v0 = K[..., 0, 2], K[..., 1, 2]
  K = K.at[..., 0, 0].multiply(1.0 + x1 / (2.0 * u0))  # pylint: disable=invalid-name
  K = K.at[..., 1, 1].multiply(1.0 + x1 / (2.0 * v0))  # pylint: disable=invalid-name
  K = K.at[..., 0, 2].add(x2)  # pylint: disable=invalid-name
  return K.at[..., 1, 2].add(x3)

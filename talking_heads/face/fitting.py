"""Fitting the morphable model to 2D landmarks (pose, identity, expression).

Given observed landmarks [T, 68, 2] (pixels) of one clip and the camera K,
minimise over pose [T, 6], expression beta [T, E] and identity alpha

  sum_t ||landmarks_2d(alpha, beta_t, pose_t) - observed_t||^2 / s^2
      + lambda_beta ||beta_t||^2 + lambda_alpha ||alpha||^2,

with beta kept inside `beta_range`. s is the clip's pixels-per-millimetre
at the face (from the rigid initialisation), so residuals are in millimetres
on the face and the priors do not depend on the image resolution; the
identity prior is per frame, so it keeps its strength on long clips (where
landmark-detector bias, not noise, dominates).

Three modes: one identity shared by all frames (`shared_identity=True`,
alpha [A]); an identity per frame (alpha [T, A]); or a known identity
(`identity=...`), fitting only pose and expression.

Solver: Levenberg-Marquardt (Marquardt diagonal damping) in float64 numpy
with analytic Jacobians, batched over frames. The shared-identity problem
uses the Schur complement of the per-frame blocks (bundle-adjustment style),
so one iteration costs O(T). Bounds on beta use an active set: coefficients
at a bound whose gradient points outwards are held, and those a step would
carry across a bound are pinned at it while the rest are re-solved.
Initialisation: an affine (weak-perspective) rigid fit of the mean shape,
then per-frame pose + expression with the mean identity. Everything is
deterministic; 3000 frames take a few seconds on a CPU.

Dimensions: T frames, N = 68 landmarks, A identity, E expression
coefficients, P per-frame parameters (6 pose + E, + A in per-frame mode).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from talking_heads.face import morphable

# Damping schedule and stopping rules of the LM loops.
_MU_INIT = 1e-3
_MU_DOWN = 0.25
_MU_UP = 8.0
_MU_MIN = 1e-12
_MU_MAX = 1e10
# Re-solves per step that pin coefficients reaching a bound.
_BOUND_PASSES = 4
# Cost decrease (mm^2) below which an exact fit counts as converged.
_ABS_TOLERANCE = 1e-20
# The mean-identity initialisation only needs to get close.
_INIT_ITERATIONS = 15
_INIT_TOLERANCE = 1e-4


@dataclasses.dataclass(frozen=True)
class FitResult:
  """Fitted parameters of one clip.

  Attributes:
    alpha: [A] shared identity, or [T, A] in per-frame mode.
    beta: [T, E] expression.
    pose: [T, 6] (yaw, pitch, roll, tx, ty, tz), see `morphable`.
    error: [T] per-frame RMS reprojection error: sqrt(mean over landmarks of
      the squared pixel distance).
    iterations: LM iterations run in the last stage.
  """
  alpha: np.ndarray
  beta: np.ndarray
  pose: np.ndarray
  error: np.ndarray
  iterations: int


def landmarks_and_jacobian(
    model: morphable.MorphableModel, alpha: np.ndarray, beta: np.ndarray,
    pose: np.ndarray, camera: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Projected landmarks and their analytic derivatives (numpy, float64).

  Args:
    model: the morphable model.
    alpha: [A] or [T, A] identity.
    beta: [T, E] expression.
    pose: [T, 6] pose.
    camera: [3, 3] intrinsics K.

  Returns:
    (landmarks [T, N, 2], d/dpose [T, N, 2, 6], d/dalpha [T, N, 2, A],
    d/dbeta [T, N, 2, E]); points at or behind the camera give NaN.
  """
  basis = _stacked_basis(model, with_alpha=True)
  uv, d_pose, d_basis = _derivatives(model, alpha, beta, pose,
                                     np.asarray(camera, np.float64), basis)
  e = model.num_expression
  return uv, d_pose, d_basis[..., e:], d_basis[..., :e]


def _stacked_basis(model: morphable.MorphableModel,
                   with_alpha: bool) -> np.ndarray:
  """[N, 3, E (+ A)]: expression then identity components per landmark."""
  bases = [model.exp_basis] + ([model.id_basis] if with_alpha else [])
  return np.transpose(np.concatenate(bases), (1, 2, 0))


def _derivatives(model, alpha, beta, pose, camera, basis):
  """Landmarks [T, N, 2], d/dpose [T, N, 2, 6], d/dbasis [T, N, 2, K]."""
  pose = np.asarray(pose, dtype=np.float64)
  points = morphable.shape(model, alpha, beta)  # [T, N, 3]
  rot_y, d_rot_y = _axis_rotation(pose[:, 0], (2, 0))
  rot_x, d_rot_x = _axis_rotation(pose[:, 1], (1, 2))
  rot_z, d_rot_z = _axis_rotation(pose[:, 2], (0, 1))
  rot = rot_y @ rot_x @ rot_z
  d_rot = (d_rot_y @ rot_x @ rot_z, rot_y @ d_rot_x @ rot_z,
           rot_y @ rot_x @ d_rot_z)

  cam_points = _apply(rot[:, None], points) + pose[:, None, 3:]
  hom = cam_points @ camera.T  # [T, N, 3]
  depth = hom[..., 2:3]
  depth = np.where(depth > 0.0, depth, np.nan)
  uv = hom[..., :2] / depth
  # d(uv)/d(camera point) = (K[:2] - uv K[2]) / (K[2] . X).
  d_proj = (camera[:2] - uv[..., :, None] * camera[2]) / depth[..., None]

  # Small contractions as broadcast multiply-adds: numpy's stacked matmul
  # is slow on many 2x3 matrices.
  d_points = np.stack([_apply(d[:, None], points) for d in d_rot],
                      axis=-1)  # [T, N, 3 (xyz), 3 (angle)]
  d_pose = np.concatenate([_contract(d_proj, d_points), d_proj], axis=-1)
  d_basis = _contract(_contract(d_proj, rot[:, None]), basis)
  return uv, d_pose, d_basis


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
  """matrix [..., 3, 3] applied to points [..., 3]."""
  return sum(matrix[..., j] * points[..., j, None] for j in range(3))


def _contract(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """a [..., I, 3] @ b [..., 3, K] -> [..., I, K]."""
  return sum(a[..., :, j, None] * b[..., None, j, :] for j in range(3))


def _axis_rotation(angle: np.ndarray,
                   plane: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """Rotation by `angle` [T] in the (i, j) plane (R[i, j] = -sin) and its
  derivative, both [T, 3, 3]."""
  i, j = plane
  c, s = np.cos(angle), np.sin(angle)
  rot = np.zeros(angle.shape + (3, 3))
  d_rot = np.zeros_like(rot)
  k = 3 - i - j
  rot[:, k, k] = 1.0
  rot[:, i, i] = rot[:, j, j] = c
  rot[:, i, j], rot[:, j, i] = -s, s
  d_rot[:, i, i] = d_rot[:, j, j] = -s
  d_rot[:, i, j], d_rot[:, j, i] = -c, c
  return rot, d_rot


def _validate(landmarks: np.ndarray, camera: np.ndarray,
              model: morphable.MorphableModel, identity: np.ndarray | None,
              beta_range: tuple[float, float], priors: tuple[float, float]):
  if landmarks.ndim != 3 or landmarks.shape[1:] != (morphable.NUM_LANDMARKS,
                                                    2):
    raise ValueError(f"landmarks must be [T, 68, 2], got {landmarks.shape}")
  if landmarks.shape[0] == 0:
    raise ValueError("landmarks has no frames")
  bad = np.flatnonzero(~np.isfinite(landmarks).all(axis=(1, 2)))
  if bad.size:
    raise ValueError(f"landmarks are not finite in {bad.size} frame(s), "
                     f"first frames {bad[:10].tolist()}; drop frames without "
                     f"a detection before fitting")
  if camera.shape != (3, 3) or not np.isfinite(camera).all():
    raise ValueError(f"camera K must be a finite [3, 3] matrix, got "
                     f"{camera.shape}")
  if camera[0, 0] <= 0 or camera[1, 1] <= 0 or not np.allclose(
      camera[2], (0.0, 0.0, 1.0)):
    raise ValueError(f"camera K must have positive focal lengths and last "
                     f"row (0, 0, 1), got {camera.tolist()}")
  if identity is not None and identity.shape != (model.num_identity,):
    raise ValueError(f"identity must be [{model.num_identity}], got "
                     f"{identity.shape}")
  lo, hi = beta_range
  if not lo < hi:
    raise ValueError(f"beta_range must be (low, high) with low < high, got "
                     f"{beta_range}")
  if min(priors) < 0:
    raise ValueError(f"priors must be >= 0, got identity_prior={priors[0]}, "
                     f"expression_prior={priors[1]}")


def _rigid_init(landmarks: np.ndarray, camera: np.ndarray,
                points: np.ndarray) -> np.ndarray:
  """Pose [T, 6] from an affine (weak-perspective) fit of `points` [N, 3]."""
  centre = points.mean(axis=0)
  pinv = np.linalg.pinv(points - centre)  # [3, N]
  hom = np.concatenate([landmarks, np.ones(landmarks.shape[:-1] + (1,))],
                       axis=-1)
  rays = hom @ np.linalg.inv(camera).T  # [T, N, 3] with z = 1.
  rays_mean = rays.mean(axis=1)
  affine = np.swapaxes(pinv @ (rays[..., :2] - rays_mean[:, None, :2]), 1,
                       2)  # [T, 2, 3]
  u, sigma, vh = np.linalg.svd(affine, full_matrices=False)
  bad = np.flatnonzero(sigma[:, 1] <= 1e-6 * sigma[:, 0] + 1e-12)
  if bad.size:
    raise ValueError(f"landmarks of {bad.size} frame(s) are degenerate "
                     f"(collapsed to a point or a line), first frames "
                     f"{bad[:10].tolist()}")
  rows = u @ vh  # nearest matrix with orthonormal rows
  rot = np.concatenate([rows, np.cross(rows[:, 0], rows[:, 1])[:, None]],
                       axis=1)
  depth = 1.0 / sigma.mean(axis=-1)
  translation = rays_mean * depth[:, None] - rot @ centre
  yaw, pitch, roll = morphable.rotation_angles(rot)
  return np.concatenate([np.stack([yaw, pitch, roll], axis=-1), translation],
                        axis=-1)


class _Problem:
  """The data term of one fit: per-frame cost and normal equations.

  Residuals are in millimetres at the face (pixels / `scale`). Per-frame
  parameters are ordered [pose (6), beta (E), alpha (A, if requested)].
  """

  # Frames per block: keeps the Jacobians of a block in cache.
  chunk = 64

  def __init__(self, model, landmarks, camera, scale, beta_range):
    self.model = model
    # Dividing K's first two rows by the scale gives pixels / scale.
    self.camera = camera / np.array([[scale], [scale], [1.0]])
    self.scaled_landmarks = landmarks / scale
    self.lo, self.hi = beta_range
    self.num_frames = landmarks.shape[0]
    self.bases = {w: _stacked_basis(model, w) for w in (False, True)}

  def normal_equations(self, alpha, beta, pose, with_alpha, frames=None):
    """(cost [T], J^T r [T, P], J^T J [T, P, P]); cost is inf where a point
    falls behind the camera. `frames` [T] indexes a subset of the clip."""
    landmarks = (self.scaled_landmarks if frames is None else
                 self.scaled_landmarks[frames])
    t = landmarks.shape[0]
    alpha = np.broadcast_to(alpha, (t, self.model.num_identity))
    basis = self.bases[with_alpha]
    num = 6 + basis.shape[-1]
    cost = np.empty(t)
    grad = np.empty((t, num))
    hess = np.empty((t, num, num))
    for start in range(0, t, self.chunk):
      s = slice(start, start + self.chunk)
      uv, d_pose, d_basis = _derivatives(self.model, alpha[s], beta[s],
                                         pose[s], self.camera, basis)
      n = uv.shape[0]
      residual = (uv - landmarks[s]).reshape(n, -1)
      jac = np.concatenate([d_pose, d_basis], axis=-1).reshape(
          n, residual.shape[1], num)
      jac_t = np.swapaxes(jac, 1, 2)
      cost[s] = np.sum(residual**2, axis=-1)
      grad[s] = (jac_t @ residual[..., None])[..., 0]
      hess[s] = jac_t @ jac
    cost = np.where(np.isfinite(cost), cost, np.inf)
    return cost, grad, hess


def _damp(hessian: np.ndarray, mu) -> np.ndarray:
  """Marquardt damping: H + mu diag(H), with a floor on the diagonal."""
  diag = np.diagonal(hessian, axis1=-2, axis2=-1)
  floor = 1e-12 * np.max(diag, axis=-1, keepdims=True) + 1e-30
  return hessian + np.asarray(mu)[..., None, None] * (
      np.maximum(diag, floor)[..., None] * np.eye(hessian.shape[-1]))


def _hold(hessian: np.ndarray, grad: np.ndarray, held: np.ndarray,
          value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Rewrites H step = -g so that held parameters step by exactly `value`.

  Held rows/columns become identity and their coupling moves to the
  right-hand side of the free rows.
  """
  known = np.where(held, value, 0.0)
  grad = np.where(held, -value, grad + (hessian @ known[..., None])[..., 0])
  free = ~held
  mask = free[..., :, None] & free[..., None, :]
  eye = np.eye(hessian.shape[-1], dtype=bool)
  return np.where(mask, hessian, np.where(eye, 1.0, 0.0)), grad


def _bounded_step(solve, params: np.ndarray, grad: np.ndarray,
                  bounded: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """A step for `params` [..., P] keeping the `bounded` [P] ones in [lo, hi].

  Parameters at a bound with the gradient pushing outwards are held; then,
  a few times, those the step would carry across a bound are held exactly
  at it and the rest re-solved, so the free ones account for the stop.
  `solve(held, value)` returns the step with `held` moving by `value`.
  """
  at_lo = bounded & (params <= lo) & (grad > 0.0)
  at_hi = bounded & (params >= hi) & (grad < 0.0)
  held = at_lo | at_hi
  value = np.zeros_like(params)
  for _ in range(_BOUND_PASSES):
    step = solve(held, value)
    target = params + step
    crossing = bounded & ~held & ((target < lo) | (target > hi))
    if not crossing.any():
      break
    held = held | crossing
    value = np.where(crossing, np.clip(target, lo, hi) - params, value)
  return np.where(bounded, np.clip(params + step, lo, hi) - params, step)


def _fit_frames(problem: _Problem, alpha, beta, pose, fit_alpha: bool,
                priors: tuple[float, float], max_iterations: int,
                tolerance: float):
  """Per-frame LM over pose, beta (and alpha [T, A] if `fit_alpha`).

  Frames are independent: each has its own damping and stops on its own.
  """
  e = problem.model.num_expression
  t = problem.num_frames
  identity_prior, expression_prior = priors
  alpha = np.broadcast_to(alpha, (t, problem.model.num_identity)).copy()
  beta, pose = beta.copy(), pose.copy()
  prior = np.concatenate(
      [np.zeros(6), np.full(e, expression_prior)]
      + ([np.full(alpha.shape[1], identity_prior)] if fit_alpha else []))

  bounded = np.zeros(prior.shape, dtype=bool)
  bounded[6:6 + e] = True

  def pack(a, b, p):
    return np.concatenate([p, b] + ([a] if fit_alpha else []), axis=-1)

  def objective(a, b, p, frames=None):
    params = pack(a, b, p)
    cost, grad, hess = problem.normal_equations(a, b, p, fit_alpha, frames)
    return (cost + np.sum(prior * params**2, axis=-1), grad + prior * params,
            hess + np.diag(prior))

  cost, grad, hess = objective(alpha, beta, pose)
  mu = np.full(t, _MU_INIT)
  active = np.arange(t)  # frames still iterating
  iterations = 0
  for iterations in range(1, max_iterations + 1):
    a, b, p = alpha[active], beta[active], pose[active]
    params = pack(a, b, p)
    h_damped, g = _damp(hess[active], mu[active]), grad[active]

    def solve(held, value):
      h, rhs = _hold(h_damped, g, held, value)
      return -np.linalg.solve(h, rhs[..., None])[..., 0]

    step = _bounded_step(solve, params, g, bounded, problem.lo, problem.hi)
    new_p = p + step[:, :6]
    new_b = b + step[:, 6:6 + e]
    new_a = a + step[:, 6 + e:] if fit_alpha else a
    new_cost, new_grad, new_hess = objective(new_a, new_b, new_p, active)
    accept = new_cost < cost[active]
    decrease = np.where(accept, cost[active] - new_cost, 0.0)

    take = active[accept]
    pose[take], beta[take], alpha[take] = (new_p[accept], new_b[accept],
                                           new_a[accept])
    cost[take], grad[take], hess[take] = (new_cost[accept], new_grad[accept],
                                          new_hess[accept])
    mu[active] = np.where(accept, np.maximum(mu[active] * _MU_DOWN, _MU_MIN),
                          mu[active] * _MU_UP)
    converged = accept & (decrease <= tolerance * new_cost + _ABS_TOLERANCE)
    tiny = np.max(np.abs(step), axis=-1) <= 1e-12 * (
        1.0 + np.max(np.abs(params), axis=-1))
    active = active[~converged & ~tiny & (mu[active] < _MU_MAX)]
    if not active.size:
      break
  return alpha, beta, pose, iterations


def _fit_clip(problem: _Problem, alpha, beta, pose,
              priors: tuple[float, float], max_iterations: int,
              tolerance: float):
  """Joint LM over a shared alpha [A] and per-frame pose and beta (Schur)."""
  e = problem.model.num_expression
  f = 6 + e  # per-frame parameters
  t = problem.num_frames
  identity_prior, expression_prior = priors
  lam_alpha = identity_prior * t
  prior = np.concatenate([np.zeros(6), np.full(e, expression_prior)])
  bounded = np.arange(f) >= 6

  def objective(a, b, p):
    """Total cost and the normal-equation blocks (frame, alpha, cross)."""
    cost, grad, hess = problem.normal_equations(a, b, p, True)
    frame = np.concatenate([p, b], axis=-1)
    total = (np.sum(cost) + np.sum(prior * frame**2)
             + lam_alpha * np.sum(a**2))
    g_frame = grad[:, :f] + prior * frame
    g_alpha = np.sum(grad[:, f:], axis=0) + lam_alpha * a
    v = hess[:, :f, :f] + np.diag(prior)  # [T, F, F]
    w = hess[:, f:, :f]  # [T, A, F]
    u = np.sum(hess[:, f:, f:], axis=0) + lam_alpha * np.eye(a.shape[0])
    return total, (g_frame, g_alpha, v, w, u)

  cost, blocks = objective(alpha, beta, pose)
  mu = _MU_INIT
  iterations = 0
  for iterations in range(1, max_iterations + 1):
    g_frame, g_alpha, v, w, u = blocks
    v, u = _damp(v, mu), _damp(u, mu)
    frame = np.concatenate([pose, beta], axis=-1)
    d_alpha = np.zeros_like(alpha)

    def solve(held, value):
      nonlocal d_alpha
      v_held, g_held = _hold(v, g_frame, held, value)
      w_free = np.where(held[:, None, :], 0.0, w)
      rhs = g_alpha + np.sum((w @ np.where(held, value, 0.0)[..., None]),
                             axis=0)[:, 0]
      # Schur complement of the per-frame blocks.
      v_inv_wt = np.linalg.solve(v_held, np.swapaxes(w_free, 1, 2))
      v_inv_g = np.linalg.solve(v_held, g_held[..., None])[..., 0]
      schur = u - np.sum(w_free @ v_inv_wt, axis=0)
      rhs = rhs - np.sum((w_free @ v_inv_g[..., None])[..., 0], axis=0)
      d_alpha = -np.linalg.solve(schur, rhs)
      return -(v_inv_g + v_inv_wt @ d_alpha)

    d_frame = _bounded_step(solve, frame, g_frame, bounded, problem.lo,
                            problem.hi)
    new_alpha = alpha + d_alpha
    new_pose = pose + d_frame[:, :6]
    new_beta = beta + d_frame[:, 6:]
    new_cost, new_blocks = objective(new_alpha, new_beta, new_pose)
    if new_cost < cost:
      decrease = cost - new_cost
      alpha, beta, pose, blocks, cost = (new_alpha, new_beta, new_pose,
                                         new_blocks, new_cost)
      mu = max(mu * _MU_DOWN, _MU_MIN)
      if decrease <= tolerance * cost + _ABS_TOLERANCE:
        break
    else:
      mu *= _MU_UP
      step = max(np.max(np.abs(d_alpha)), np.max(np.abs(d_frame)))
      size = 1.0 + max(np.max(np.abs(alpha)), np.max(np.abs(pose)))
      if mu > _MU_MAX or step <= 1e-12 * size:
        break
  return alpha, beta, pose, iterations


def fit_landmarks(landmarks: np.ndarray,
                  camera: np.ndarray,
                  model: morphable.MorphableModel | None = None,
                  *,
                  shared_identity: bool = True,
                  identity: np.ndarray | None = None,
                  identity_prior: float = 0.1,
                  expression_prior: float = 1.0,
                  beta_range: tuple[float, float] = (0.0, 1.0),
                  max_iterations: int = 100,
                  tolerance: float = 1e-6) -> FitResult:
  """Fits pose, expression and identity to the landmarks of one clip.

  Args:
    landmarks: [T, 68, 2] observed landmarks in pixels (iBUG-68 order), all
      finite (drop frames without a detection first).
    camera: [3, 3] intrinsics K of the video.
    model: the morphable model (default: `morphable.default_model()`).
    shared_identity: one alpha for the clip (True) or one per frame.
    identity: a known alpha [A]; if given, only pose and expression are fit
      (and `shared_identity` is ignored).
    identity_prior: ridge weight on alpha, per frame, in mm^2 of landmark
      residual per unit^2 (about one landmark off by 1 mm per sigma).
    expression_prior: ridge weight on beta per frame, same units.
    beta_range: bounds (low, high) on every expression coefficient.
    max_iterations: LM iteration cap of the last stage.
    tolerance: stop when an accepted step lowers the cost by less than this
      fraction.

  Returns:
    A FitResult. `alpha` is [A] unless shared_identity=False ([T, A]).

  Raises:
    ValueError: on malformed landmarks (naming the non-finite frames), camera,
      identity, bounds or priors.
  """
  model = morphable.default_model() if model is None else model
  landmarks = np.asarray(landmarks, dtype=np.float64)
  camera = np.asarray(camera, dtype=np.float64)
  if identity is not None:
    identity = np.asarray(identity, dtype=np.float64)
  _validate(landmarks, camera, model, identity, beta_range,
            (identity_prior, expression_prior))
  t = landmarks.shape[0]
  alpha = (np.zeros(model.num_identity) if identity is None else identity)
  pose = _rigid_init(landmarks, camera, morphable.shape(model, alpha, None))
  # Pixels per millimetre at the face: focal length over the face's depth.
  scale = float(np.median(camera[0, 0] / pose[:, 5]))
  problem = _Problem(model, landmarks, camera, scale, beta_range)
  priors = (identity_prior, expression_prior)
  beta = np.full((t, model.num_expression),
                 np.clip(0.0, beta_range[0], beta_range[1]))

  if identity is not None:
    _, beta, pose, iterations = _fit_frames(problem, identity, beta, pose,
                                            False, priors, max_iterations,
                                            tolerance)
  else:
    _, beta, pose, _ = _fit_frames(problem, alpha, beta, pose, False, priors,
                                   _INIT_ITERATIONS, _INIT_TOLERANCE)
    if shared_identity:
      alpha, beta, pose, iterations = _fit_clip(problem, alpha, beta, pose,
                                                priors, max_iterations,
                                                tolerance)
    else:
      alpha, beta, pose, iterations = _fit_frames(problem, alpha, beta, pose,
                                                  True, priors,
                                                  max_iterations, tolerance)

  uv = morphable.landmarks_2d(model, alpha, beta, pose, camera)
  error = np.sqrt(np.mean(np.sum((uv - landmarks)**2, axis=-1), axis=-1))
  return FitResult(alpha=alpha, beta=beta, pose=pose, error=error,
                   iterations=iterations)

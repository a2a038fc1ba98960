"""Ray casting for the procedural 3D-Shapes scene (``sae.core.datasets.procedural``): rays against the four object
shapes
(cube, cylinder, sphere, capsule) at a scale, and the bounding sphere that lets most rays skip them."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_EPS = 1e-6

Floats = npt.NDArray[np.float64]
Hit = tuple[Floats, Floats]  # (t [...] with inf where missed, unit normal [..., 3])


def normalize(v: Floats) -> Floats:
    unit: Floats = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return unit


def _ray_sphere(o: Floats, d: Floats, center: npt.ArrayLike, radius: float) -> Hit:
    """Nearest t > 0 of rays o + t d (d unit) with a sphere; inf where missed. Returns (t, normal)."""
    oc = o - np.asarray(center)
    b = np.einsum("...i,...i->...", oc, d)
    c = np.einsum("...i,...i->...", oc, oc) - radius * radius
    disc = b * b - c
    hit = disc >= 0.0
    t = -b - np.sqrt(np.where(hit, disc, 0.0))
    t = np.where(hit & (t > _EPS), t, np.inf)
    p = o + np.where(np.isfinite(t), t, 0.0)[..., None] * d
    return t, (p - np.asarray(center)) / radius


def _ray_vertical_cylinder(o: Floats, d: Floats, radius: float, y0: float, y1: float, top_cap: bool) -> Hit:
    """Rays against a y-axis cylinder x² + z² = r², y0 ≤ y ≤ y1 (side, plus optional top disk)."""
    ox, oy, oz = o[..., 0], o[..., 1], o[..., 2]
    dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
    a = dx * dx + dz * dz
    b = ox * dx + oz * dz
    c = ox * ox + oz * oz - radius * radius
    disc: Floats = b * b - a * c
    ok = (disc >= 0.0) & (a > 1e-12)
    t = (-b - np.sqrt(np.where(ok, disc, 0.0))) / np.where(ok, a, 1.0)
    y = oy + t * dy
    t_side = np.where(ok & (t > _EPS) & (y >= y0) & (y <= y1), t, np.inf)
    ts = np.where(np.isfinite(t_side), t_side, 0.0)
    n_side = np.stack([(ox + ts * dx) / radius, np.zeros_like(ts), (oz + ts * dz) / radius], axis=-1)
    if not top_cap:
        return t_side, n_side
    with np.errstate(divide="ignore", invalid="ignore"):
        tc = (y1 - oy) / dy
    tcs = np.where(np.isfinite(tc), tc, 0.0)
    on_disk = (ox + tcs * dx) ** 2 + (oz + tcs * dz) ** 2 <= radius * radius
    t_cap = np.where(np.isfinite(tc) & (tc > _EPS) & on_disk, tc, np.inf)
    n_cap = np.broadcast_to(np.array([0.0, 1.0, 0.0]), n_side.shape)
    use_cap = t_cap < t_side
    return np.where(use_cap, t_cap, t_side), np.where(use_cap[..., None], n_cap, n_side)


def _ray_box(o: Floats, d: Floats, lo: npt.ArrayLike, hi: npt.ArrayLike) -> Hit:
    """Slab test against an axis-aligned box; returns (t, normal) with t = inf where missed."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1 = (lo - o) * inv
        t2 = (hi - o) * inv
    tmin = np.fmin(t1, t2)
    tmax = np.fmax(t1, t2)
    tnear = np.nanmax(np.where(np.isnan(tmin), -np.inf, tmin), axis=-1)
    tfar = np.nanmin(np.where(np.isnan(tmax), np.inf, tmax), axis=-1)
    hit = (tnear <= tfar) & (tnear > _EPS)
    t = np.where(hit, tnear, np.inf)
    axis = np.argmax(np.where(np.isnan(tmin), -np.inf, tmin), axis=-1)
    normal = np.zeros(np.broadcast_shapes(o.shape, d.shape))
    sign = -np.sign(np.take_along_axis(np.broadcast_to(d, normal.shape), axis[..., None], axis=-1))
    np.put_along_axis(normal, axis[..., None], sign, axis=-1)
    return t, normal


def _nearest(*hits: Hit) -> Hit:
    ts = np.stack([h[0] for h in hits])
    k = np.argmin(ts, axis=0)
    t = np.take_along_axis(ts, k[None], axis=0)[0]
    ns = np.stack([np.broadcast_to(h[1], hits[0][1].shape) for h in hits])
    n = np.take_along_axis(ns, k[None, ..., None], axis=0)[0]
    return t, n


def _object_size(scale: float) -> float:
    """Half-width of the object's footprint for a given scale label."""
    return 0.5 * scale


def _capsule_dims(h: float) -> tuple[float, float, float]:
    """Upright capsule for footprint half-width h: (radius, lower sphere centre y, upper sphere centre y)."""
    r = 0.72 * h
    return r, r, r + 1.35 * h


def bounding_sphere(shape: int, scale: float) -> tuple[Floats, float]:
    """A sphere enclosing the object (for culling rays before the exact test)."""
    h = _object_size(scale)
    if shape == 3:
        r, y0, y1 = _capsule_dims(h)
        return np.array([0.0, 0.5 * (y0 + y1), 0.0]), 1.001 * (0.5 * (y1 - y0) + r)
    radius = {0: np.sqrt(3.0), 1: np.sqrt(2.0), 2: 1.0}[shape] * h
    return np.array([0.0, h, 0.0]), 1.001 * radius


def hits_sphere(o: Floats, d: Floats, center: Floats, radius: float) -> npt.NDArray[np.bool_]:
    """Boolean: does the ray o + t d (t > 0, d unit) meet the sphere (conservative culling test)?"""
    oc = o - center
    b = np.einsum("...i,...i->...", oc, d)
    c = np.einsum("...i,...i->...", oc, oc) - radius * radius
    disc = b * b - c
    hit: npt.NDArray[np.bool_] = (disc >= 0.0) & ((b < 0.0) | (c < 0.0))
    return hit


def ray_object(o: Floats, d: Floats, shape: int, scale: float) -> Hit:
    """Rays against the object standing on the floor at the origin; returns (t, normal)."""
    h = _object_size(scale)
    if shape == 0:  # cube, edge 2h, resting on the floor, axis-aligned with the walls
        return _ray_box(o, d, (-h, 0.0, -h), (h, 2.0 * h, h))
    if shape == 1:  # cylinder, radius h, height 2h, with a top disk
        return _ray_vertical_cylinder(o, d, h, 0.0, 2.0 * h, top_cap=True)
    if shape == 2:  # sphere, radius h, touching the floor
        return _ray_sphere(o, d, (0.0, h, 0.0), h)
    if shape == 3:  # upright capsule: cylinder plus two hemispheres, narrower and taller than the cylinder
        r, y0, y1 = _capsule_dims(h)
        return _nearest(
            _ray_vertical_cylinder(o, d, r, y0, y1, top_cap=False),
            _ray_sphere(o, d, (0.0, y0, 0.0), r),
            _ray_sphere(o, d, (0.0, y1, 0.0), r),
        )
    raise ValueError(f"unknown shape index {shape}")

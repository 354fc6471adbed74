"""Camera rasteriser: shaded boxes over a textured ground plane and sky, with a z-buffer.

Each pixel's ray is fixed in the ego frame, so the ground under every pixel is precomputed per
camera once (flat ground, ego on the ground); only the lookup into the scene's ground raster
changes with the ego pose. Boxes are drawn face by face (back faces culled, near-plane
clipped) by a Numba scan-line rasteriser that computes exact per-pixel depth from each face's
plane, so occlusion is right regardless of drawing order. The rasteriser also fills an
instance-id buffer (which agent each pixel shows) used for visibility and tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from calibration.se3 import SE3
from sensors.sim.world import GROUND_RGB, GroundMap, Primitives

NEAR_M = 0.15
FAR_M = 250.0
SKY_ID = -1
SCENERY_ID = -2

# Local box face definitions: outward normal axis/sign and the 4 corner sign patterns.
_FACES = []
for _axis in range(3):
    for _sign in (-1.0, 1.0):
        _others = [a for a in range(3) if a != _axis]
        _quad = []
        for _a, _b in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            s = [0.0, 0.0, 0.0]
            s[_axis] = _sign
            s[_others[0]] = _a
            s[_others[1]] = _b
            _quad.append(s)
        _FACES.append((_axis, _sign, _quad))
FACE_AXIS = np.array([f[0] for f in _FACES], dtype=np.int64)
FACE_SIGN = np.array([f[1] for f in _FACES], dtype=np.float64)
FACE_CORNERS = np.array([f[2] for f in _FACES], dtype=np.float64)  # (6, 4, 3)


@dataclass(frozen=True)
class Lighting:
    """Scene lighting for one condition.

    Attributes:
        sun_dir: (3,) unit vector towards the sun (global frame).
        ambient / diffuse: shading weights.
        sky_top / sky_horizon: sky colours (RGB 0-255).
        fog_visibility_m: distance where contrast falls to 1/e (inf = no fog).
        fog_rgb: fog colour.
        exposure: global brightness multiplier.
        headlights: add the ego's headlight cone (night).
        rain: rain streaks and a wet, darker look.

    """

    sun_dir: np.ndarray
    ambient: float
    diffuse: float
    sky_top: tuple[float, float, float]
    sky_horizon: tuple[float, float, float]
    fog_visibility_m: float
    fog_rgb: tuple[float, float, float]
    exposure: float
    headlights: bool
    rain: bool


def lighting_for(condition: str, rng: np.random.Generator) -> Lighting:
    """Lighting of a scene condition (sun direction drawn from ``rng``)."""
    az = rng.uniform(-np.pi, np.pi)
    el = np.radians(rng.uniform(25, 60))
    sun = np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)])
    if condition == "clear":
        return Lighting(sun, 0.55, 0.55, (95, 145, 215), (190, 210, 230), np.inf, (0, 0, 0), 1.0,
                        False, False)
    if condition == "fog":
        return Lighting(sun, 0.75, 0.2, (185, 188, 192), (200, 202, 205), rng.uniform(35, 60),
                        (196, 198, 201), 1.0, False, False)
    if condition == "rain":
        return Lighting(sun, 0.6, 0.15, (115, 120, 128), (150, 155, 162), rng.uniform(120, 200),
                        (140, 145, 150), 0.78, False, True)
    if condition == "night":
        return Lighting(sun, 0.5, 0.05, (5, 8, 20), (20, 25, 40), np.inf, (0, 0, 0), 0.22, True,
                        False)
    raise ValueError(f"unknown condition {condition!r}")


@dataclass(frozen=True, eq=False)
class CameraModel:
    """A camera with its per-pixel rays precomputed.

    Attributes:
        channel: e.g. ``"CAM_FRONT"``.
        intrinsics: (3, 3) K.
        width / height: pixels.
        ego_SE3_cam: camera pose in the ego frame.
        ground_ego_xy: (H, W, 2) float32 ego-frame ground point seen by each pixel (NaN where
            the ray does not hit the ground within ``FAR_M``).
        ground_dist: (H, W) float32 distance to that ground point, metres (inf for sky).
        ray_ego: (H, W, 3) float32 unit pixel rays in the ego frame.

    """

    channel: str
    intrinsics: np.ndarray
    width: int
    height: int
    ego_SE3_cam: SE3  # noqa: N815 - frame naming convention
    ground_ego_xy: np.ndarray
    ground_dist: np.ndarray
    ray_ego: np.ndarray

    @staticmethod
    def build(channel: str, intrinsics: np.ndarray, width: int, height: int,
              ego_SE3_cam: SE3) -> CameraModel:  # noqa: N803
        """Precompute pixel rays and their ground intersections."""
        u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        k = intrinsics
        rays_cam = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)],
                            axis=-1)
        rays_cam /= np.linalg.norm(rays_cam, axis=-1, keepdims=True)
        rays = rays_cam @ ego_SE3_cam.rotation.T
        cz = ego_SE3_cam.translation[2]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(rays[..., 2] < -1e-6, -cz / rays[..., 2], np.inf)
        t = np.where(t < FAR_M, t, np.inf)
        g = ego_SE3_cam.translation[None, None, :2] + rays[..., :2] * np.where(
            np.isfinite(t), t, np.nan
        )[..., None]
        return CameraModel(channel, np.asarray(intrinsics, dtype=np.float64), width, height,
                           ego_SE3_cam, g.astype(np.float32), t.astype(np.float32),
                           rays.astype(np.float32))


@nb.njit(cache=True)
def _raster_faces(
    poly: np.ndarray,
    nvert: np.ndarray,
    plane: np.ndarray,
    rgb: np.ndarray,
    owner: np.ndarray,
    k: np.ndarray,
    img: np.ndarray,
    zbuf: np.ndarray,
    idbuf: np.ndarray,
    coverage: np.ndarray,
    stamp: np.ndarray,
) -> None:
    """Scan-convert convex polygons with a per-pixel depth test.

    Args:
        poly: (F, V, 2) float64 polygon vertices in pixels (first ``nvert[f]`` used).
        nvert: (F,) int64 vertex counts.
        plane: (F, 4) float64 face plane in the camera frame: n . X = d  (n (3), d).
        rgb: (F, 3) float32 shaded colour.
        owner: (F,) int64 agent index (>= 0) or ``SCENERY_ID``; faces of one agent must be
            consecutive (for the coverage stamp).
        k: (3, 3) intrinsics.
        img: (H, W, 3) float32 colour buffer, updated.
        zbuf: (H, W) float32 depth (camera z) buffer, updated.
        idbuf: (H, W) int64 owner buffer, updated.
        coverage: (A,) int64 per agent: pixels its faces cover, occluded or not, updated.
        stamp: (H, W) int64 scratch: last agent that counted each pixel (init -1).

    """
    h, w = zbuf.shape
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    for f in range(poly.shape[0]):
        n = nvert[f]
        if n < 3:
            continue
        xmin = 1e18
        xmax = -1e18
        ymin = 1e18
        ymax = -1e18
        area = 0.0
        for i in range(n):
            x0, y0 = poly[f, i, 0], poly[f, i, 1]
            x1, y1 = poly[f, (i + 1) % n, 0], poly[f, (i + 1) % n, 1]
            area += x0 * y1 - x1 * y0
            xmin = min(xmin, x0)
            xmax = max(xmax, x0)
            ymin = min(ymin, y0)
            ymax = max(ymax, y0)
        if abs(area) < 1e-9:
            continue
        orient = 1.0 if area > 0 else -1.0
        c0 = max(int(np.floor(xmin)), 0)
        c1 = min(int(np.ceil(xmax)), w - 1)
        r0 = max(int(np.floor(ymin)), 0)
        r1 = min(int(np.ceil(ymax)), h - 1)
        if c0 > c1 or r0 > r1:
            continue
        nx, ny, nz, dd = plane[f, 0], plane[f, 1], plane[f, 2], plane[f, 3]
        ag = owner[f]
        for r in range(r0, r1 + 1):
            py = r + 0.5
            for c in range(c0, c1 + 1):
                px = c + 0.5
                inside = True
                for i in range(n):
                    x0, y0 = poly[f, i, 0], poly[f, i, 1]
                    x1, y1 = poly[f, (i + 1) % n, 0], poly[f, (i + 1) % n, 1]
                    e = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)
                    if e * orient < 0.0:
                        inside = False
                        break
                if not inside:
                    continue
                # Depth from the face plane along the pixel ray (camera z).
                rx = (px - cx) / fx
                ry = (py - cy) / fy
                den = nx * rx + ny * ry + nz
                if abs(den) < 1e-12:
                    continue
                z = dd / den
                if z <= 0.0:
                    continue
                if ag >= 0 and stamp[r, c] != ag:
                    stamp[r, c] = ag
                    coverage[ag] += 1
                if z < zbuf[r, c]:
                    zbuf[r, c] = z
                    idbuf[r, c] = ag
                    img[r, c, 0] = rgb[f, 0]
                    img[r, c, 1] = rgb[f, 1]
                    img[r, c, 2] = rgb[f, 2]


def _clip_near(poly_cam: np.ndarray, near: float) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon (V, 3) in camera coords to z >= near."""
    out = []
    n = len(poly_cam)
    for i in range(n):
        a, b = poly_cam[i], poly_cam[(i + 1) % n]
        ina, inb = a[2] >= near, b[2] >= near
        if ina:
            out.append(a)
        if ina != inb:
            t = (near - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.asarray(out).reshape(-1, 3)


@dataclass(frozen=True)
class RenderOutput:
    """One rendered camera frame.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        instance: (H, W) int64 agent index per pixel, ``SKY_ID`` for ground/sky,
            ``SCENERY_ID`` for scenery.
        depth: (H, W) float32 camera-z depth, metres (inf = sky).
        coverage: (A,) int64 pixels covered by each agent's faces ignoring occlusion.

    """

    image: np.ndarray
    instance: np.ndarray
    depth: np.ndarray
    coverage: np.ndarray


def render_camera(
    cam: CameraModel,
    world_SE3_ego: SE3,  # noqa: N803 - frame naming convention
    prims: Primitives,
    num_agents: int,
    ground: GroundMap,
    light: Lighting,
    rng: np.random.Generator,
) -> RenderOutput:
    """Render one camera frame.

    Args:
        cam: camera with precomputed rays.
        world_SE3_ego: ego pose at the exposure time.
        prims: scene boxes at the exposure time.
        num_agents: number of agents (size of ``coverage``).
        ground: ground raster.
        light: lighting of the scene's condition.
        rng: grain / rain noise generator (seeded per frame).

    Returns:
        The rendered frame.

    """
    h, w = cam.height, cam.width
    world_SE3_cam = world_SE3_ego @ cam.ego_SE3_cam  # noqa: N806
    cam_pos = world_SE3_cam.translation
    # --- ground and sky -----------------------------------------------------------------------
    gxy = cam.ground_ego_xy.reshape(-1, 2).astype(np.float64)
    hit = np.isfinite(gxy[:, 0])
    r2 = world_SE3_ego.rotation[:2, :2]
    wxy = gxy[hit] @ r2.T + world_SE3_ego.translation[:2]
    col = np.clip(((wxy[:, 0] - ground.origin_xy[0]) / ground.res_m).astype(np.int64), -1,
                  ground.rgb.shape[1])
    row = np.clip(((wxy[:, 1] - ground.origin_xy[1]) / ground.res_m).astype(np.int64), -1,
                  ground.rgb.shape[0])
    inside = (col >= 0) & (col < ground.rgb.shape[1]) & (row >= 0) & (row < ground.rgb.shape[0])
    gcol = np.empty((len(wxy), 3), dtype=np.float32)
    gcol[:] = GROUND_RGB[3]
    gcol[inside] = ground.rgb[row[inside], col[inside]]
    ground_shade = light.ambient + light.diffuse * max(light.sun_dir[2], 0.0)
    img = np.empty((h * w, 3), dtype=np.float32)
    # Sky: vertical gradient by ray elevation.
    elev = cam.ray_ego.reshape(-1, 3)[:, 2]
    f = np.clip(elev / 0.5, 0.0, 1.0)[:, None]
    img[:] = (1 - f) * np.asarray(light.sky_horizon, np.float32) + f * np.asarray(
        light.sky_top, np.float32
    )
    img[hit] = gcol * ground_shade
    img = img.reshape(h, w, 3)
    zbuf = np.full((h, w), np.inf, dtype=np.float32)
    # Ground depth as camera z (ray length * cos to optical axis).
    ray_cam_z = (cam.ray_ego.reshape(-1, 3) @ cam.ego_SE3_cam.rotation[:, 2]).reshape(h, w)
    zg = cam.ground_dist * ray_cam_z
    zbuf = np.where(np.isfinite(cam.ground_dist), zg, np.inf).astype(np.float32)
    idbuf = np.full((h, w), SKY_ID, dtype=np.int64)
    # --- boxes ----------------------------------------------------------------------------------
    cam_SE3_world = world_SE3_cam.inverse()  # noqa: N806
    rel = prims.center - cam_pos
    dist = np.linalg.norm(rel, axis=1)
    radius = np.linalg.norm(prims.half, axis=1)
    fwd = world_SE3_cam.rotation[:, 2]
    ahead = (rel @ fwd) > -radius
    sel = np.flatnonzero(ahead & (dist - radius < FAR_M))
    # Agents first grouped per owner (stamp logic needs consecutive faces per agent).
    sel = sel[np.argsort(prims.owner[sel], kind="stable")]
    polys, nverts, planes, cols, owners = [], [], [], [], []
    k = cam.intrinsics
    for i in sel:
        c, s = np.cos(prims.yaw[i]), np.sin(prims.yaw[i])
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        for fi in range(6):
            axis, sign = FACE_AXIS[fi], FACE_SIGN[fi]
            n_world = rot[:, axis] * sign
            fc = prims.center[i] + n_world * prims.half[i, axis]
            if np.dot(cam_pos - fc, n_world) <= 1e-9:
                continue  # back face
            corners = prims.center[i] + (FACE_CORNERS[fi] * prims.half[i]) @ rot.T
            pc = cam_SE3_world.transform_points(corners)
            if pc[:, 2].max() < NEAR_M:
                continue
            if pc[:, 2].min() < NEAR_M:
                pc = _clip_near(pc, NEAR_M)
                if len(pc) < 3:
                    continue
            uv = (pc[:, :2] / pc[:, 2:3]) * np.array([k[0, 0], k[1, 1]]) + k[:2, 2]
            if (uv[:, 0].max() < 0 or uv[:, 0].min() > w or uv[:, 1].max() < 0
                    or uv[:, 1].min() > h):
                continue
            n_cam = cam_SE3_world.rotation @ n_world
            d_plane = float(n_cam @ cam_SE3_world.transform_points(fc[None])[0])
            shade = light.ambient + light.diffuse * max(float(n_world @ light.sun_dir), 0.0)
            # Vertical faces get a little sky light too; tops are brightest.
            shade *= 1.0 if axis == 2 else 0.92
            poly = np.zeros((8, 2))
            poly[: len(uv)] = uv
            polys.append(poly)
            nverts.append(len(uv))
            planes.append((n_cam[0], n_cam[1], n_cam[2], d_plane))
            cols.append(prims.rgb[i] * shade)
            owners.append(int(prims.owner[i]) if prims.owner[i] >= 0 else SCENERY_ID)
    coverage = np.zeros(max(num_agents, 1), dtype=np.int64)
    if polys:
        stamp = np.full((h, w), -1, dtype=np.int64)
        _raster_faces(
            np.asarray(polys), np.asarray(nverts, dtype=np.int64), np.asarray(planes),
            np.asarray(cols, dtype=np.float32), np.asarray(owners, dtype=np.int64),
            k, img, zbuf, idbuf, coverage, stamp,
        )
    img = _post_process(img, zbuf, cam, world_SE3_ego, light, rng)
    return RenderOutput(img, idbuf, zbuf, coverage[:num_agents])


def _post_process(
    img: np.ndarray, zbuf: np.ndarray, cam: CameraModel, world_SE3_ego: SE3,  # noqa: N803
    light: Lighting, rng: np.random.Generator,
) -> np.ndarray:
    """Headlights, exposure, fog, rain and sensor grain; returns uint8 RGB."""
    h, w = zbuf.shape
    out = img
    if light.headlights:
        # Point seen by each pixel in the ego frame: camera + depth along the ray.
        rays = cam.ray_ego
        ray_z = rays @ cam.ego_SE3_cam.rotation[:, 2]
        dist = np.where(np.isfinite(zbuf), zbuf / np.maximum(ray_z, 1e-3), np.inf)
        p = cam.ego_SE3_cam.translation + rays * np.where(np.isfinite(dist), dist, 0.0)[..., None]
        ang = np.abs(np.arctan2(p[..., 1], p[..., 0] - 3.4))
        beam = (p[..., 0] > 3.4) & (ang < np.radians(28)) & np.isfinite(dist)
        boost = np.where(beam, 3.2 * np.exp(-np.hypot(p[..., 0] - 3.4, p[..., 1]) / 22.0), 0.0)
        out = out * (light.exposure * (1.0 + boost))[..., None]
    else:
        out = out * light.exposure
    if np.isfinite(light.fog_visibility_m):
        ff = np.exp(-np.where(np.isfinite(zbuf), zbuf, 1e4) / light.fog_visibility_m)
        out = out * ff[..., None] + np.asarray(light.fog_rgb, np.float32) * (1 - ff[..., None])
    if light.rain:
        streaks = np.zeros((h, w), dtype=np.float32)
        n = int(0.0015 * h * w)
        ys = rng.integers(0, h, n)
        xs = rng.integers(0, w, n)
        ln = rng.integers(h // 40, h // 12, n)
        for y, x, length in zip(ys, xs, ln):
            streaks[y : y + length, x] = 1.0
        out = out * (1 - 0.25 * streaks[..., None]) + 200.0 * 0.25 * streaks[..., None]
    out = out + rng.normal(0.0, 2.0, size=(h, w, 1)).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)

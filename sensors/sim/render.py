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
from sensors.sim.ground import GroundMap
from sensors.sim.materials import GROUND_RGB
from sensors.sim.world import Primitives

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
        return Lighting(sun, 0.5, 0.05, (5, 8, 20), (20, 25, 40), np.inf, (0, 0, 0), 0.3, True,
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
        ground_z: (H, W) float32 camera-z depth of the ground point (inf for sky).

    """

    channel: str
    intrinsics: np.ndarray
    width: int
    height: int
    ego_SE3_cam: SE3  # noqa: N815 - frame naming convention
    ground_ego_xy: np.ndarray
    ground_dist: np.ndarray
    ray_ego: np.ndarray
    ground_z: np.ndarray

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
        ray_cam_z = rays_cam[..., 2]
        gz = np.where(np.isfinite(t), t * ray_cam_z, np.inf)
        return CameraModel(channel, np.asarray(intrinsics, dtype=np.float64), width, height,
                           ego_SE3_cam, g.astype(np.float32), t.astype(np.float32),
                           rays.astype(np.float32), gz.astype(np.float32))


@nb.njit(cache=True)
def _ground_sky(
    gxy: np.ndarray,
    elev: np.ndarray,
    cos_yaw: float,
    sin_yaw: float,
    tx: float,
    ty: float,
    ground_rgb: np.ndarray,
    ox: float,
    oy: float,
    res: float,
    shade: float,
    sky_horizon: np.ndarray,
    sky_top: np.ndarray,
    off_map: np.ndarray,
) -> np.ndarray:
    """Colour every pixel with the ground raster (bilinear) or the sky gradient.

    Args:
        gxy: (H, W, 2) float32 ego-frame ground point per pixel (NaN = sky).
        elev: (H, W) float32 z component of each pixel's unit ray (ego frame).
        cos_yaw: cosine of the ego yaw (global frame).
        sin_yaw: sine of the ego yaw.
        tx: ego x, global frame, metres.
        ty: ego y, global frame, metres.
        ground_rgb: (Hg, Wg, 3) uint8 ground colour raster.
        ox: global x of raster cell (0, 0)'s corner.
        oy: global y of raster cell (0, 0)'s corner.
        res: metres per raster cell.
        shade: light factor on the ground.
        sky_horizon: (3,) float32 sky colour at the horizon.
        sky_top: (3,) float32 sky colour overhead.
        off_map: (3,) float32 colour beyond the raster.

    Returns:
        (H, W, 3) float32 image.

    """
    h, w = elev.shape
    hg, wg = ground_rgb.shape[0], ground_rgb.shape[1]
    img = np.empty((h, w, 3), np.float32)
    for r in range(h):
        for c in range(w):
            ex = gxy[r, c, 0]
            if np.isnan(ex):
                f = min(max(elev[r, c] / 0.5, 0.0), 1.0)
                for ch in range(3):
                    img[r, c, ch] = (1.0 - f) * sky_horizon[ch] + f * sky_top[ch]
                continue
            ey = gxy[r, c, 1]
            x = cos_yaw * ex - sin_yaw * ey + tx
            y = sin_yaw * ex + cos_yaw * ey + ty
            fx = (x - ox) / res - 0.5
            fy = (y - oy) / res - 0.5
            c0 = int(np.floor(fx))
            r0 = int(np.floor(fy))
            if c0 < 0 or r0 < 0 or c0 + 1 >= wg or r0 + 1 >= hg:
                for ch in range(3):
                    img[r, c, ch] = off_map[ch] * shade
                continue
            ax = fx - c0
            ay = fy - r0
            for ch in range(3):
                v = ((1 - ax) * (1 - ay) * ground_rgb[r0, c0, ch]
                     + ax * (1 - ay) * ground_rgb[r0, c0 + 1, ch]
                     + (1 - ax) * ay * ground_rgb[r0 + 1, c0, ch]
                     + ax * ay * ground_rgb[r0 + 1, c0 + 1, ch])
                img[r, c, ch] = v * shade
    return img


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
            # Span of the convex polygon on this scanline (pixel centres inside it).
            xl = 1e18
            xr = -1e18
            for i in range(n):
                x0, y0 = poly[f, i, 0], poly[f, i, 1]
                x1, y1 = poly[f, (i + 1) % n, 0], poly[f, (i + 1) % n, 1]
                if (y0 <= py <= y1) or (y1 <= py <= y0):
                    if y1 != y0:
                        x = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
                        xl = min(xl, x)
                        xr = max(xr, x)
                    else:
                        xl = min(xl, min(x0, x1))
                        xr = max(xr, max(x0, x1))
            if xl > xr:
                continue
            ca = max(int(np.ceil(xl - 0.5)), c0)
            cb = min(int(np.floor(xr - 0.5)), c1)
            ry = (py - cy) / fy
            for c in range(ca, cb + 1):
                px = c + 0.5
                # Depth from the face plane along the pixel ray (camera z).
                rx = (px - cx) / fx
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
    lamps_xy: np.ndarray | None = None,
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
        lamps_xy: (L, 2) street lamp positions, global frame (lit at night).

    Returns:
        The rendered frame.

    """
    h, w = cam.height, cam.width
    lamps_xy = np.zeros((0, 2)) if lamps_xy is None else np.asarray(lamps_xy).reshape(-1, 2)
    world_SE3_cam = world_SE3_ego @ cam.ego_SE3_cam  # noqa: N806
    cam_pos = world_SE3_cam.translation
    # --- ground and sky -----------------------------------------------------------------------
    ground_shade = light.ambient + light.diffuse * max(float(light.sun_dir[2]), 0.0)
    # Ego pose expressed in the ground raster's frame.
    rel_yaw = world_SE3_ego.yaw_rad - ground.yaw
    t_r = ground.to_raster(world_SE3_ego.translation[None, :2])[0]
    img = _ground_sky(
        cam.ground_ego_xy, cam.ray_ego[..., 2], float(np.cos(rel_yaw)), float(np.sin(rel_yaw)),
        float(t_r[0]), float(t_r[1]), ground.rgb, 0.0, 0.0, float(ground.res_m),
        float(ground_shade), np.asarray(light.sky_horizon, np.float32),
        np.asarray(light.sky_top, np.float32), GROUND_RGB[3].astype(np.float32),
    )
    zbuf = cam.ground_z.copy()
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
    polys, nverts, planes, cols, owners = _faces(
        cam_SE3_world, cam_pos, prims, sel, cam.intrinsics, w, h, light
    )
    coverage = np.zeros(max(num_agents, 1), dtype=np.int64)
    if len(polys):
        stamp = np.full((h, w), -1, dtype=np.int64)
        _raster_faces(polys, nverts, planes, cols, owners, np.array(cam.intrinsics), img, zbuf,
                      idbuf, coverage, stamp)
    lamps_ego = np.zeros((0, 2))
    if light.headlights and len(lamps_xy):
        rel = world_SE3_ego.inverse().transform_points(
            np.c_[lamps_xy, np.zeros(len(lamps_xy))])[:, :2]
        lamps_ego = rel[np.linalg.norm(rel, axis=1) < 80.0]
    img = _post_process(img, zbuf, cam, light, rng, lamps_ego)
    return RenderOutput(img, idbuf, zbuf, coverage[:num_agents])


def _faces(
    cam_SE3_world: SE3,  # noqa: N803
    cam_pos: np.ndarray,
    prims: Primitives,
    sel: np.ndarray,
    k: np.ndarray,
    w: int,
    h: int,
    light: Lighting,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Front faces of the selected boxes as image polygons with planes, colours and owners.

    Returns:
        poly (F, 8, 2) pixels, nvert (F,), plane (F, 4) camera-frame ``n . X = d``,
        rgb (F, 3) shaded, owner (F,) - faces in the order of ``sel``.

    """
    n_sel = len(sel)
    if n_sel == 0:
        return (np.zeros((0, 8, 2)), np.zeros(0, np.int64), np.zeros((0, 4)),
                np.zeros((0, 3), np.float32), np.zeros(0, np.int64))
    c, s = np.cos(prims.yaw[sel]), np.sin(prims.yaw[sel])
    rot = np.zeros((n_sel, 3, 3))
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1.0
    half = prims.half[sel]
    center = prims.center[sel]
    # (S, 6, 3) outward normals and face centres, world frame.
    normals = np.transpose(rot[:, :, FACE_AXIS], (0, 2, 1)) * FACE_SIGN[None, :, None]
    fc = center[:, None, :] + normals * half[:, FACE_AXIS][:, :, None]
    front = np.einsum("sfi,sfi->sf", cam_pos[None, None, :] - fc, normals) > 1e-9
    si, fi = np.nonzero(front)
    # (F, 4, 3) face corners, world then camera frame.
    local = FACE_CORNERS[fi] * half[si][:, None, :]
    corners = np.einsum("fij,fkj->fki", rot[si], local) + center[si][:, None, :]
    rc, tc = cam_SE3_world.rotation, cam_SE3_world.translation
    pc = corners @ rc.T + tc
    zmax = pc[..., 2].max(axis=1)
    keep = zmax >= NEAR_M
    si, fi, pc = si[keep], fi[keep], pc[keep]
    n_cam = normals[si, fi] @ rc.T
    plane_d = np.einsum("fi,fi->f", n_cam, pc[:, 0, :])
    poly = np.zeros((len(si), 8, 2))
    nvert = np.full(len(si), 4, dtype=np.int64)
    fxy = np.array([k[0, 0], k[1, 1]])
    inside = pc[..., 2].min(axis=1) >= NEAR_M
    poly[inside, :4] = pc[inside, :, :2] / pc[inside, :, 2:3] * fxy + k[:2, 2]
    for f in np.flatnonzero(~inside):
        clipped = _clip_near(pc[f], NEAR_M)
        nvert[f] = len(clipped)
        if len(clipped) >= 3:
            poly[f, : len(clipped)] = clipped[:, :2] / clipped[:, 2:3] * fxy + k[:2, 2]
    # Cull polygons entirely outside the image.
    valid = np.arange(8)[None, :] < nvert[:, None]
    big = np.where(valid[..., None], poly, np.nan)
    with np.errstate(invalid="ignore"):
        lo = np.nanmin(big, axis=1)
        hi = np.nanmax(big, axis=1)
    on = (nvert >= 3) & (hi[:, 0] >= 0) & (lo[:, 0] <= w) & (hi[:, 1] >= 0) & (lo[:, 1] <= h)
    si, fi, poly, nvert, n_cam, plane_d = si[on], fi[on], poly[on], nvert[on], n_cam[on], \
        plane_d[on]
    n_world = normals[si, fi]
    shade = light.ambient + light.diffuse * np.maximum(n_world @ light.sun_dir, 0.0)
    # Vertical faces a touch darker than tops (sky light comes from above).
    shade = shade * np.where(FACE_AXIS[fi] == 2, 1.0, 0.92)
    glob = sel[si]
    rgb = (prims.rgb[glob] * shade[:, None]).astype(np.float32)
    owner = np.where(prims.owner[glob] >= 0, prims.owner[glob], SCENERY_ID).astype(np.int64)
    planes = np.concatenate([n_cam, plane_d[:, None]], axis=1)
    return poly, nvert, planes, rgb, owner


@nb.njit(cache=True)
def _finish(
    img: np.ndarray,
    zbuf: np.ndarray,
    ray_ego: np.ndarray,
    cam_t: np.ndarray,
    cam_axis: np.ndarray,
    exposure: float,
    headlights: bool,
    lamps: np.ndarray,
    fog_visibility_m: float,
    fog_rgb: np.ndarray,
    streaks: np.ndarray,
    grain_seed: int,
    grain_sigma: float,
) -> np.ndarray:
    """Per-pixel exposure, headlight cone, fog, rain streaks and grain to uint8.

    Args:
        img: (H, W, 3) float32 linear colour.
        zbuf: (H, W) float32 camera-z depth (inf = sky).
        ray_ego: (H, W, 3) float32 unit pixel rays, ego frame.
        cam_t: (3,) camera position, ego frame.
        cam_axis: (3,) camera optical axis, ego frame.
        exposure: global gain.
        headlights: night lighting: brighten what the ego's low beams light (ahead, within
            ~28 degrees) and the pools of light under street lamps.
        lamps: (L, 2) float64 street lamp positions in the ego frame (night only).
        fog_visibility_m: contrast falls to 1/e at this distance (inf = no fog).
        fog_rgb: (3,) fog colour.
        streaks: (H, W) float32 rain streak mask (zeros when dry).
        grain_seed: seed of the per-pixel grain hash.
        grain_sigma: grain amplitude, grey levels.

    Returns:
        (H, W, 3) uint8 image.

    """
    h, w = zbuf.shape
    out = np.empty((h, w, 3), np.uint8)
    fog = np.isfinite(fog_visibility_m)
    state = np.uint64(grain_seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(1)
    for r in range(h):
        for c in range(w):
            z = zbuf[r, c]
            gain = exposure
            if headlights and np.isfinite(z):
                rz = (ray_ego[r, c, 0] * cam_axis[0] + ray_ego[r, c, 1] * cam_axis[1]
                      + ray_ego[r, c, 2] * cam_axis[2])
                d = z / max(rz, 1e-3)
                gx = cam_t[0] + ray_ego[r, c, 0] * d
                gy = cam_t[1] + ray_ego[r, c, 1] * d
                px = gx - 3.4
                boost = 0.0
                if px > 0.0 and abs(np.arctan2(gy, px)) < 0.49:
                    boost += 3.2 * np.exp(-np.sqrt(px * px + gy * gy) / 22.0)
                # Street lamps: pools of light around each lamp (ego-frame xy).
                for li in range(lamps.shape[0]):
                    dx = gx - lamps[li, 0]
                    dy = gy - lamps[li, 1]
                    q = dx * dx + dy * dy
                    if q < 400.0:
                        boost += 2.2 * np.exp(-q / 50.0)
                gain *= 1.0 + boost
            ff = 1.0
            if fog:
                ff = np.exp(-(z if np.isfinite(z) else 1e4) / fog_visibility_m)
            # xorshift64* grain, one value per pixel (same for all channels: luminance noise)
            state ^= state >> np.uint64(12)
            state ^= state << np.uint64(25)
            state ^= state >> np.uint64(27)
            u = (state * np.uint64(2685821657736338717)) >> np.uint64(40)
            g = (float(u) / 16777216.0 - 0.5) * 3.46 * grain_sigma
            st = streaks[r, c]
            for ch in range(3):
                v = img[r, c, ch] * gain
                if fog:
                    v = v * ff + fog_rgb[ch] * (1.0 - ff)
                if st > 0.0:
                    v = v * (1.0 - 0.25 * st) + 50.0 * st
                v += g
                out[r, c, ch] = np.uint8(min(max(v, 0.0), 255.0))
    return out


def _post_process(
    img: np.ndarray, zbuf: np.ndarray, cam: CameraModel, light: Lighting,
    rng: np.random.Generator, lamps_ego: np.ndarray,
) -> np.ndarray:
    """Headlights, exposure, fog, rain and sensor grain; returns uint8 RGB."""
    h, w = zbuf.shape
    streaks = np.zeros((h, w), dtype=np.float32)
    if light.rain:
        n = int(0.0015 * h * w)
        ys = rng.integers(0, h, n)
        xs = rng.integers(0, w, n)
        ln = rng.integers(h // 40, h // 12, n)
        for y, x, length in zip(ys, xs, ln):
            streaks[y : y + length, x] = 1.0
    return _finish(
        img, zbuf, cam.ray_ego, np.array(cam.ego_SE3_cam.translation),
        np.array(cam.ego_SE3_cam.rotation[:, 2]), float(light.exposure), bool(light.headlights),
        np.ascontiguousarray(lamps_ego, dtype=np.float64).reshape(-1, 2),
        float(light.fog_visibility_m), np.asarray(light.fog_rgb, np.float64), streaks,
        int(rng.integers(0, 2**62)), 2.0,
    )

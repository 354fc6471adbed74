"""drivefuse bench-io: sample-reading throughput, 6 camera JPEGs + 10 accumulated LiDAR
sweeps per sample, drivefuse against the nuscenes-devkit's readers.

Inputs:  --frame (a real nuScenes keyframe folder with frame.json) or --dataroot + --version
         (a nuScenes-format dataroot; --limit keyframes per pass).
Outputs: a table on stdout (best / median ms per sample, samples/s, ratio to the devkit);
         no files.

    drivefuse bench-io [--frame ../shared/data/nuscenes-frame] [--repeats 10]
    drivefuse bench-io --dataroot data/sim-mini [--version v1.0-mini]

Default source: the real nuScenes keyframe (six 1600x900 JPEGs; its one LiDAR sweep is read
10 times, each time as a different sweep with a synthetic ego pose 0.45 m apart, as 10
consecutive 20 Hz sweeps at 9 m/s would be). With ``--dataroot``: the keyframes of a
nuScenes-format dataroot through ``NuScenesDataset.load_sample`` (cameras, 10 sweeps,
ultrasonic, boxes, CAN bus).

Peer: the nuscenes-devkit's own way — PIL decode at full size (what the devkit's renderers
use) and ``LidarPointCloud.from_file`` + ``transform_matrix`` per sweep (what
``from_file_multisweep`` does). Printed side by side with drivefuse at full, 1/2, 1/4 and
1/8 decode, and with the six camera decodes on 2 threads (``io_threads=2``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import transform_matrix
from PIL import Image
from pyquaternion import Quaternion

from calibration.accumulate import accumulate_sweeps
from calibration.se3 import SE3
from sensors.readers import read_camera_image, read_lidar_file

# The repository root in a checkout (the real frame sits beside it in ../shared).
REPO = Path(__file__).resolve().parents[2]
NUM_SWEEPS = 10


def _timeit(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(best, median) seconds per call, after one warm-up call (page cache, lazy imports).

    Both are printed: on a shared machine the median shows what you get under load, the
    best what the code costs when it has the cores (ratios use the best).
    """
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.min(times)), float(np.median(times))


def frame_readers(frame_dir: Path) -> dict[str, Callable[[], object]]:
    """One-keyframe readers by key (``peer``, ``ours_r<reduction>[_t2]``) of a frame folder."""
    meta = json.loads((frame_dir / "frame.json").read_text())
    lidar_path = frame_dir / meta["lidar"]["file"]
    t_ref = meta["lidar"]["timestamp_us"]
    l2e = np.array(meta["lidar"]["lidar2ego"])
    ego_SE3_lidar = SE3.from_matrix(l2e)
    # Sweep k is 50 ms older and its ego origin 0.45 m behind the reference ego.
    poses = [SE3(np.eye(3), [-0.45 * k, 0.0, 0.0]) @ ego_SE3_lidar for k in range(NUM_SWEEPS)]
    times = [t_ref - 50_000 * k for k in range(NUM_SWEEPS)]
    cams = [
        (frame_dir / c["file"], np.array(c["intrinsics"]), ch, c["timestamp_us"])
        for ch, c in meta["cameras"].items()
    ]

    pool = ThreadPoolExecutor(2)

    def ours(reduction: int, threads: int = 1) -> Callable[[], object]:
        # As NuScenesDataset(io_threads=...) does: cameras decode on a pool while the
        # calling thread reads and accumulates the LiDAR.
        def run() -> object:
            if threads > 1:
                futures = [pool.submit(read_camera_image, *c, reduction) for c in cams]
            else:
                images = [read_camera_image(*c, reduction) for c in cams]
            sweeps = [read_lidar_file(lidar_path, t) for t in times]
            lidar = accumulate_sweeps(sweeps, poses, t_ref)
            if threads > 1:
                images = [f.result() for f in futures]
            return images, lidar

        return run

    def peer() -> object:
        images = [np.asarray(Image.open(p).convert("RGB")) for p, _, _, _ in cams]
        pts = []
        for k in range(NUM_SWEEPS):
            pc = LidarPointCloud.from_file(str(lidar_path))
            pc.remove_close(1.0)
            pc.transform(transform_matrix([-0.45 * k, 0, 0], Quaternion()) @ l2e)
            pts.append(pc.points)
        return images, np.hstack(pts)

    return {
        "peer": peer,
        **{f"ours_r{r}": ours(r) for r in (1, 2, 4, 8)},
        "ours_r1_t2": ours(1, 2),
        "ours_r4_t2": ours(4, 2),
    }


def dataroot_readers(
    dataroot: Path, version: str, limit: int
) -> tuple[dict[str, Callable[[], object]], int]:
    """Readers of the first ``limit`` keyframes of a dataroot, and that keyframe count."""
    from sensors.datasets.nuscenes import NuScenesDataset

    datasets = {r: NuScenesDataset(dataroot, version, NUM_SWEEPS, r) for r in (1, 2, 4, 8)}
    threaded = {r: NuScenesDataset(dataroot, version, NUM_SWEEPS, r, io_threads=2) for r in (1, 4)}
    nusc = datasets[1].nusc
    tokens = [t for s in datasets[1].scene_tokens for t in datasets[1].scene_sample_tokens(s)]
    tokens = tokens[:limit]

    def ours(ds: NuScenesDataset) -> Callable[[], object]:
        return lambda: [ds.load_sample(t) for t in tokens]

    def peer() -> object:
        out = []
        for t in tokens:
            sample = nusc.get("sample", t)
            pc, times = LidarPointCloud.from_file_multisweep(
                nusc, sample, "LIDAR_TOP", "LIDAR_TOP", nsweeps=NUM_SWEEPS
            )
            images = [
                np.asarray(Image.open(nusc.get_sample_data_path(sample["data"][ch])).convert("RGB"))
                for ch in sample["data"]
                if ch.startswith("CAM")
            ]
            out.append((pc, times, images))
        return out

    readers = {
        "peer": peer,
        **{f"ours_r{r}": ours(datasets[r]) for r in (1, 2, 4, 8)},
        "ours_r1_t2": ours(threaded[1]),
        "ours_r4_t2": ours(threaded[4]),
    }
    return readers, len(tokens)


def main(argv: list[str] | None = None) -> int:
    """Time every reader and print the table; 0 on success."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--frame", type=Path, default=REPO / "../shared/data/nuscenes-frame")
    ap.add_argument("--dataroot", type=Path, default=None)
    ap.add_argument("--version", default="v1.0-mini")
    ap.add_argument("--limit", type=int, default=8, help="keyframes per pass (--dataroot)")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)

    if args.dataroot is not None:
        readers, per_pass = dataroot_readers(args.dataroot, args.version, args.limit)
        source = f"{args.dataroot} ({per_pass} keyframes per pass, NuScenesDataset.load_sample)"
    else:
        if not (args.frame / "frame.json").is_file():
            raise FileNotFoundError(
                f"no frame.json in {args.frame.resolve()}; use --dataroot"
            )
        readers, per_pass = frame_readers(args.frame), 1
        source = f"{args.frame.resolve()} (1 sweep read as 10 sweeps with synthetic poses)"
    print(f"source: {source}")
    print(f"{'reader':<32}{'best ms':>9}{'median ms':>11}{'samples/s':>11}{'vs peer':>9}")
    labels = {
        "peer": "devkit (PIL + LidarPointCloud)",
        "ours_r1": "drivefuse full decode",
        "ours_r2": "drivefuse 1/2 decode",
        "ours_r4": "drivefuse 1/4 decode",
        "ours_r8": "drivefuse 1/8 decode",
        "ours_r1_t2": "drivefuse full, 2 io threads",
        "ours_r4_t2": "drivefuse 1/4, 2 io threads",
    }
    base = None
    for key, fn in readers.items():
        best, median = (t / per_pass for t in _timeit(fn, args.repeats))
        base = base or best
        print(
            f"{labels[key]:<32}{best * 1e3:>9.1f}{median * 1e3:>11.1f}{1.0 / best:>11.1f}"
            f"{base / best:>8.2f}x"
        )
    return 0


if __name__ == "__main__":
    from eval.cli import run_main

    raise SystemExit(run_main(main, prog="drivefuse bench-io"))

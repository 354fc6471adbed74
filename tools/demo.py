"""drivefuse demo: load the real nuScenes keyframe and write camera overlays to outputs/.

    python tools/demo.py [--frame ../shared/data/nuscenes-frame] [--out outputs]

Writes ``outputs/overlay_<CAM>.jpg``: each camera with the LiDAR points (ego-body returns
removed) projected through the motion-compensated calibration, coloured by depth (turbo
colour map, 0-60 m), and the annotated boxes as wireframes coloured by class (X = front face).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from sensors.datasets.frame_json import load_frame_json
from sensors.visualize import lidar_overlays

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FRAME = REPO / "../shared/data/nuscenes-frame"


def write_overlays(frame_dir: Path, out_dir: Path, with_boxes: bool = True) -> list[Path]:
    sample = load_frame_json(frame_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    boxes = sample.boxes if with_boxes else None
    for channel, image in lidar_overlays(sample, boxes=boxes).items():
        path = out_dir / f"overlay_{channel}.jpg"
        if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: could not write image")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frame", type=Path, default=DEFAULT_FRAME, help="frame.json folder")
    ap.add_argument("--out", type=Path, default=REPO / "outputs", help="output folder")
    ap.add_argument("--no-boxes", action="store_true", help="points only, no annotated boxes")
    args = ap.parse_args(argv)
    if not (args.frame / "frame.json").is_file():
        print(f"demo: no frame.json in {args.frame.resolve()}", file=sys.stderr)
        return 1
    for path in write_overlays(args.frame, args.out, with_boxes=not args.no_boxes):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

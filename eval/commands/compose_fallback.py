r"""drivefuse compose-fallback: keep single-sensor models inside fused checkpoints as their
fallback experts.

Inputs:  fused checkpoint folders (hosts) and single-sensor checkpoints (--experts: folders or
         shipped variant names).
Outputs: each host's model.pt rewritten with the experts inside (in place, or under
         --out-root/<host folder name>); one size line per host on stdout.

    C=perception/checkpoints
    drivefuse compose-fallback $C/{mean,weighted,concat_conv,gated,late,serial} \
        --experts $C/camera_only $C/lidar_only --missing-as-empty ultrasonic

Each fused checkpoint then runs ``camera_only`` when its LiDAR is missing and ``lidar_only``
when its cameras are (perception.experts); with both present it computes exactly what it did,
and with --missing-as-empty ultrasonic its fused path reads a missing ultrasonic as an empty
raster (no free and no occupied evidence) instead of renormalising over one input fewer.
Branches equal to the host's (the camera branch every parallel fuser froze from camera_only)
are stored once. Writes in place unless --out-root is given (then ``<out-root>/<folder name>``);
composing again replaces the experts.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Compose the experts into every host; 0 on success."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("hosts", nargs="+", type=Path, help="fused checkpoint folders")
    p.add_argument("--experts", nargs="+", type=Path, required=True,
                   help="single-sensor checkpoint folders, in the order they are tried")
    p.add_argument("--missing-as-empty", nargs="*", default=[], choices=["ultrasonic"],
                   help="read a missing ultrasonic as an empty raster on the fused path "
                   "(FusionConfig.missing_as_empty)")
    p.add_argument("--out-root", type=Path, default=None,
                   help="write <out-root>/<host folder name> instead of over each host")
    args = p.parse_args(argv)

    from perception.experts import compose_fallback

    for host in args.hosts:
        before = (host / "model.pt").stat().st_size
        out = compose_fallback(host, args.experts,
                               None if args.out_root is None else args.out_root / host.name,
                               args.missing_as_empty)
        print(f"{host} -> {out}: model.pt {before / 1e6:.2f} -> "
              f"{(out / 'model.pt').stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    from eval.cli import run_main

    raise SystemExit(run_main(main, prog="drivefuse compose-fallback"))

r"""drivefuse make-dataset: write a synthetic nuScenes-format dataset (cameras, LiDAR,
ultrasonic, CAN bus).

Inputs:  none (the simulator's seeded scenes; --scenario / --condition choose which).
Outputs: a dataroot at --out: <version>/*.json tables (nuScenes schema), samples/ and sweeps/
         sensor files, can_bus/ and maps/; with --contact-sheet also a PNG of one sample
         (--sheet-out).

Examples:
    drivefuse make-dataset --out data/sim-mini                # 10 scenes x 20 s, mini
    drivefuse make-dataset --out /tmp/tiny --scenes 2 --duration 4
    drivefuse make-dataset --out data/sim-trainval --version v1.0-trainval --scenes 50
    drivefuse make-dataset --out data/sim-mini --contact-sheet   # sheet only (exists)
    drivefuse make-dataset --out /shared/sim-trainval --version v1.0-trainval \
        --scenes 150 --ray --ray-address auto      # one Ray task a scene (shared out folder)

(``python tools/make_dataset.py ...`` is the same command.)

"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from eval.executor import add_executor_arguments, executor_from_args
from sensors.sim import CONDITIONS, SCENARIO_KINDS, SimConfig, generate_dataset
from sensors.sim.contact_sheet import contact_sheet


def main(argv: list[str] | None = None) -> int:
    """Generate the dataset (and/or its contact sheet); 0 on success."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="dataroot to write")
    p.add_argument("--version", default="v1.0-mini", choices=["v1.0-mini", "v1.0-trainval"])
    p.add_argument("--scenes", type=int, default=10, help="number of scenes (mini: <= 10)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per scene")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="800x450", choices=["800x450", "1600x900"])
    p.add_argument("--scenario", action="append", choices=["auto", *SCENARIO_KINDS],
                   help="scenario kind(s) to cycle through (default: all)")
    p.add_argument("--condition", action="append", choices=["auto", *CONDITIONS],
                   help="condition(s) to cycle through (default: mix)")
    p.add_argument("--camera-sweeps", action="store_true",
                   help="also render the 12 Hz non-keyframe camera images (slow)")
    p.add_argument("--agents-scale", type=float, default=1.0,
                   help="multiply the number of agents per scene")
    p.add_argument("--no-ultrasonic", action="store_true",
                   help="omit the ULTRASONIC channel (plain nuScenes sensor set)")
    p.add_argument("--contact-sheet", action="store_true",
                   help="write outputs/sim_contact_sheet.png of one sample (generates the "
                        "dataset first unless its tables already exist)")
    p.add_argument("--sheet-out", type=Path, default=Path("outputs/sim_contact_sheet.png"))
    p.add_argument("--sheet-scene", type=int, default=0, help="scene index for the sheet")
    p.add_argument("--sheet-sample", type=int, default=None,
                   help="keyframe index in that scene (default: the middle one)")
    p.add_argument("--no-progress", action="store_true")
    add_executor_arguments(p, workers_help="processes, one scene each at a time (default: up "
                           "to 2); with --ray the CPUs of the local Ray (default: all cores)")
    a = p.parse_args(argv)
    # None (no flag): generate_dataset's own default, a local pool of up to 2 processes.
    executor = executor_from_args(a, default=None)
    w, h = (int(v) for v in a.size.split("x"))
    cfg = SimConfig(
        num_scenes=a.scenes,
        version=a.version,
        scene_duration_s=a.duration,
        seed=a.seed,
        image_width=w,
        image_height=h,
        camera_at_sweeps=a.camera_sweeps,
        scenarios=tuple(a.scenario or ["auto"]),
        conditions=tuple(a.condition or ["auto"]),
        agents_scale=a.agents_scale,
        write_ultrasonic=not a.no_ultrasonic,
    )
    tables_exist = (a.out / a.version / "sample.json").exists()
    if not (a.contact_sheet and tables_exist):
        t0 = time.perf_counter()
        generate_dataset(cfg, a.out, progress=not a.no_progress, executor=executor)
        dt = time.perf_counter() - t0
        print(f"wrote {a.scenes} scenes x {a.duration:g} s to {a.out} in {dt:.1f} s")
    if a.contact_sheet:
        path = contact_sheet(a.out, a.version, a.sheet_out, scene_index=a.sheet_scene,
                             sample_index=a.sheet_sample)
        print(f"contact sheet: {path}")
    return 0



if __name__ == "__main__":
    from eval.cli import run_main

    raise SystemExit(run_main(main, prog="drivefuse make-dataset"))

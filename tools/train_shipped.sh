#!/usr/bin/env bash
# Train the shipped tiny-preset checkpoints (perception/checkpoints/<variant>/) on the synthetic
# trainval split. Budgeted for 2 shared CPU cores (~50 min); on a GPU raise the step counts.
#
#   python tools/make_dataset.py --out data/sim-trainval --version v1.0-trainval --scenes 20
#   bash tools/train_shipped.sh            # then: python tools/train.py --evaluate ...
#
# Recipe: 1) the single-modality baselines train their branches from scratch; 2) the fused
# variants start from those branches, frozen (their BEV maps are computed once and cached),
# and train the fuser, the ultrasonic branch and the heads (which start from lidar_only's);
# 3) serial (painting changes the LiDAR input) fine-tunes everything from the same start.
set -euo pipefail
DATA=${DATA:-data/sim-trainval}
VER=${VER:-v1.0-trainval}
OUT=${OUT:-perception/checkpoints}
PY=${PY:-.venv/bin/python}
BASE_STEPS=${BASE_STEPS:-400}
FUSED_STEPS=${FUSED_STEPS:-400}
SERIAL_STEPS=${SERIAL_STEPS:-250}
# One torch thread per job and two jobs at a time: the two cores, no OpenMP oversubscription.
common=(--preset tiny --dataroot "$DATA" --version "$VER" --split train --threads 1
        --save-every 100)
init=(--init-from "$OUT/camera_only" "$OUT/lidar_only" --freeze camera lidar)

$PY tools/train.py --variant lidar_only "${common[@]}" --steps "$BASE_STEPS" \
    --out "$OUT/lidar_only" &
$PY tools/train.py --variant camera_only "${common[@]}" --steps "$BASE_STEPS" \
    --out "$OUT/camera_only" &
wait
for pair in "concat_conv lidar_ultrasonic" "gated mean" "weighted late"; do
    for v in $pair; do
        $PY tools/train.py --variant "$v" "${common[@]}" "${init[@]}" --steps "$FUSED_STEPS" \
            --out "$OUT/$v" &
    done
    wait
done
$PY tools/train.py --variant serial "${common[@]}" --init-from "$OUT/camera_only" \
    "$OUT/lidar_only" --steps "$SERIAL_STEPS" --out "$OUT/serial"

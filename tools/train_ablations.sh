#!/usr/bin/env bash
# Ablations that read the shipped-checkpoint comparison honestly (run after
# tools/train_shipped.sh, which leaves the stage-1 branches in $STAGE1):
#
# 1) lidar_only+concat_conv: LiDAR alone through the concat_conv fusion layers, same stage-2
#    recipe and budget. If concat_conv beats this, the gain comes from the other sensors, not
#    from the fuser's extra convolutions.
# 2) gated without --anchor: what starting the gate biased towards the LiDAR is worth.
#
#   bash tools/train_ablations.sh
#   python tools/train.py --evaluate outputs/ablations/* --dataroot data/sim-trainval \
#       --version v1.0-trainval --split val
set -euo pipefail
DATA=${DATA:-data/sim-trainval}
VER=${VER:-v1.0-trainval}
OUT=${OUT:-outputs/ablations}
PY=${PY:-.venv/bin/python}
FUSED_STEPS=${FUSED_STEPS:-600}
STAGE1=${STAGE1:-outputs/stage1}
STAGE2_DROPOUT=${STAGE2_DROPOUT:-0.15 0.05 0.15}
# SEED=1 bash tools/train_ablations.sh repeats the ablations (and, with ALSO_FUSED=1, the
# concat_conv stage 2) with another seed: the spread between seeds is the noise floor.
SEED=${SEED:-0}
ALSO_FUSED=${ALSO_FUSED:-0}
sfx=$([[ "$SEED" == 0 ]] && echo "" || echo "_seed$SEED")
common=(--preset tiny --dataroot "$DATA" --version "$VER" --split train --threads 1
        --save-every 100 --steps "$FUSED_STEPS" --seed "$SEED"
        --init-from "$STAGE1/camera_only" "$STAGE1/lidar_only" --freeze camera)
$PY tools/train.py --variant lidar_only --fuser concat_conv "${common[@]}" \
    --out "$OUT/lidar_only+concat_conv$sfx" &
# shellcheck disable=SC2086 - STAGE2_DROPOUT is three numbers
$PY tools/train.py --variant gated "${common[@]}" --modality-dropout $STAGE2_DROPOUT \
    --out "$OUT/gated_no_anchor$sfx" &
wait
if [[ "$ALSO_FUSED" == 1 ]]; then
    # shellcheck disable=SC2086
    $PY tools/train.py --variant concat_conv "${common[@]}" --modality-dropout $STAGE2_DROPOUT \
        --out "$OUT/concat_conv$sfx"
fi

#!/usr/bin/env bash
# CosmoFlow on this machine: synthesise small universes in the real TFRecord layout, train the
# reference-equal network with 2 Horovod TensorFlow ranks (mpirun, 1 thread each) until the
# validation MAE reaches MLPerf's target 0.124 (a network that has learned nothing scores 0.5:
# the synthetic parameters are uniform in [-1, 1]), and check the MLPerf log with the official
# checker (open division: other data and settings). A run stopped by --max_epochs first logs
# run_stop "aborted" and the checker fails its eval_error check.
# The training settings are the open division's: a 32^3 cube, a constant LR of 0.01 after one
# warm-up epoch, dropout 0.1 (the reference: 128^3, LR 0.001 x batch/64, decay at 32 and 64,
# dropout 0.5). Measured: benchmarks/RESULTS.md, "CosmoFlow demo".
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PY="$(pwd)/$BIN/python"
DATA=runs/cosmoflow-demo-data
OUT=runs/cosmoflow-demo
TARGET_MAE=${TARGET_MAE:-0.124}
TRAIN=${TRAIN:-2048}
VALIDATION=${VALIDATION:-128}

echo "== synthetic universes: $TRAIN train + $VALIDATION validation samples of 32^3 x 4 in $DATA"
rm -rf "$DATA"
mpirun -np 2 "$BIN/deepcam-hvd" cosmoflow data synth --output "$DATA" --cube 32 \
    --train "$TRAIN" --validation "$VALIDATION" --seed 7

echo "== training: 2 Horovod ranks x 1 thread, to validation MAE $TARGET_MAE, outputs in $OUT"
rm -rf "$OUT"
OMP_NUM_THREADS=1 mpirun -np 2 "$BIN/deepcam-hvd" cosmoflow train --data_dir "$DATA" \
    --output_dir "$OUT" --seed 11 --max_epochs 12 --target_mae "$TARGET_MAE" \
    --base_lr 0.01 --lr_scaling none --warmup_epochs 1 --decay_schedule none --dropout 0.1

echo "== MLPerf HPC 3.0.0 compliance check of $OUT/mlperf.log"
if (cd "$OUT" && "$PY" -m mlperf_logging.compliance_checker --usage hpc --ruleset 3.0.0 \
        --log_output compliance_checker.log mlperf.log > /dev/null 2>&1); then
    echo "checker: SUCCESS ($OUT/compliance_checker.log)"
else
    echo "checker: FAILED (details: $OUT/compliance_checker.log); it fails by design unless" \
         "MLPerf's MAE 0.124 was reached"
    grep -E "Failed checks|FAILED" "$OUT/compliance_checker.log" | head -3 || true
    exit 1
fi
echo "outputs: $OUT/summary.json, $OUT/mlperf.log, $OUT/checkpoints/"

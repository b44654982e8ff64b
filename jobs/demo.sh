#!/usr/bin/env bash
# The README's main job on this machine: synthesise a small CAM5-layout data set, then train the
# reduced DeepCAM with 2 Horovod ranks (mpirun, MPI controller) to validation IoU 0.82, and check
# the MLPerf log with the official compliance checker.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PY="$(pwd)/$BIN/python"
DATA=runs/demo-data
OUT=runs/demo

echo "== wiring: deepcam-hvd info on 2 ranks"
mpirun -np 2 "$BIN/deepcam-hvd" info

echo "== synthetic data: 128 train + 32 validation samples of 96x144x16 in $DATA"
mpirun -np 2 "$BIN/deepcam-hvd" data synth --out "$DATA" --train 128 --val 32 \
    --height 96 --width 144 --seed 333 --overwrite

echo "== training: 2 Horovod ranks x 1 thread, outputs in $OUT"
rm -rf "$OUT"
OMP_NUM_THREADS=1 mpirun -np 2 "$BIN/deepcam-hvd" train --config jobs/demo.toml

echo "== MLPerf HPC 3.0.0 compliance check of $OUT/mlperf.log"
# run in $OUT: the checker's own log, compliance_checker.log, goes beside the run's log
(cd "$OUT" && "$PY" -m mlperf_logging.compliance_checker --usage hpc --ruleset 3.0.0 \
    --log_output compliance_checker.log mlperf.log | tail -3)
echo "outputs: $OUT/summary.json, $OUT/mlperf.log, $OUT/tensorboard/, $OUT/checkpoints/"

#!/usr/bin/env bash
# The README's main job on this machine: a 2-rank Horovod run on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
echo "== deepcam-hvd info under mpirun (MPICH, Horovod MPI controller)"
mpirun -np 2 "$BIN/deepcam-hvd" info
echo "== deepcam-hvd info under horovodrun --gloo"
"$BIN/horovodrun" -np 2 --gloo "$BIN/deepcam-hvd" info

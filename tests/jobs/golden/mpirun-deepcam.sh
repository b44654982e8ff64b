#!/bin/bash
# DeepCAM with Horovod on machines without Slurm: Machines without Slurm: MPICH/Open MPI mpirun over a host list.
# 2 node(s) x 2 ranks x 1 cores; works with MPICH
# (Hydra) and Open MPI mpirun. Rendered by:
#   deepcam-hvd jobs render mpirun --nodes 2 --data /data/deepcam --hosts n0,n1 -- --max_epochs 3
cd /w || exit 1
source /v/bin/activate

NP=4
PPN=2
CORES=1
HOSTS=n0,n1
export OMP_NUM_THREADS=$CORES

if mpirun --version 2>&1 | grep -q "Open MPI"; then
    MPIRUN=(mpirun -np "$NP" --map-by "ppr:$PPN:node:pe=$CORES" --bind-to core -x OMP_NUM_THREADS)
    [ -n "${HOSTS:-}" ] && MPIRUN+=(--host "$(echo "$HOSTS" | sed "s/\(,\|$\)/:$PPN\1/g")")
else  # MPICH Hydra
    MPIRUN=(mpirun -np "$NP" -ppn "$PPN" -bind-to "core:$CORES")
    [ -n "${HOSTS:-}" ] && MPIRUN+=(-hosts "$HOSTS")
fi

RUN_INFO=1   # 1: first show how every rank is wired (deepcam-hvd info)
DATA_DIR=/data/deepcam
OUTPUT_ROOT=/w/runs
# One directory per run of this script, so running it again never continues a finished run;
# DEEPCAM_RUN_DIR=DIR continues the run in DIR (--resume auto) instead.
OUTPUT_DIR=${DEEPCAM_RUN_DIR:-$OUTPUT_ROOT/deepcam-mpirun-2n-$(date -u +%Y%m%dT%H%M%SZ)-$$}
mkdir -p "$OUTPUT_DIR"
echo "deepcam: $NP ranks over 2 node(s); outputs in $OUTPUT_DIR"
if [ "$RUN_INFO" = 1 ]; then
    "${MPIRUN[@]}" deepcam-hvd info || exit $?   # one line per rank: layout, threads, binding
fi
# SIGTERM/SIGUSR1 to mpirun: every rank finishes its step, checkpoints and stops; continue
# with DEEPCAM_RUN_DIR set to this run's directory (--resume auto).
"${MPIRUN[@]}" deepcam-hvd train --data_dir "$DATA_DIR" --output_dir "$OUTPUT_DIR" \
    --resume auto --run_tag mpirun-2n --max_epochs 3
rc=$?
if [ $rc -ne 0 ]; then
    echo "deepcam: training exited $rc; to continue this run from its last checkpoint:" \
         "DEEPCAM_RUN_DIR=$OUTPUT_DIR bash $0"
fi
exit $rc

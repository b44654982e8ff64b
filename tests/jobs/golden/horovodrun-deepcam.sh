#!/bin/bash
# DeepCAM with Horovod on machines without Slurm or MPI: Machines without Slurm or MPI: horovodrun --gloo over a host list.
# horovodrun starts 4 ranks (2 per host, over ssh beyond this one) and
# wires them up with Gloo. Rendered by:
#   deepcam-hvd jobs render horovodrun --nodes 2 --data /data/deepcam --hosts n0,n1 -- --max_epochs 3
cd /w || exit 1
source /v/bin/activate

NP=4
PPN=2
HOSTS=n0,n1
export OMP_NUM_THREADS=1
if [ -n "${HOSTS:-}" ]; then
    HOSTLIST=$(echo "$HOSTS" | sed "s/\(,\|$\)/:$PPN\1/g")
else
    HOSTLIST="localhost:$PPN"
fi
HVDRUN=(horovodrun -np "$NP" -H "$HOSTLIST" --gloo)

RUN_INFO=1   # 1: first show how every rank is wired (deepcam-hvd info)
DATA_DIR=/data/deepcam
OUTPUT_ROOT=/w/runs
# One directory per run of this script, so running it again never continues a finished run;
# DEEPCAM_RUN_DIR=DIR continues the run in DIR (--resume auto) instead.
OUTPUT_DIR=${DEEPCAM_RUN_DIR:-$OUTPUT_ROOT/deepcam-horovodrun-2n-$(date -u +%Y%m%dT%H%M%SZ)-$$}
mkdir -p "$OUTPUT_DIR"
echo "deepcam: $NP ranks on $HOSTLIST; outputs in $OUTPUT_DIR"
if [ "$RUN_INFO" = 1 ]; then
    "${HVDRUN[@]}" deepcam-hvd info --output "$OUTPUT_DIR/info.json" || exit $?
fi
"${HVDRUN[@]}" deepcam-hvd train --data_dir "$DATA_DIR" --output_dir "$OUTPUT_DIR" \
    --resume auto --run_tag horovodrun-2n --max_epochs 3
rc=$?
if [ $rc -ne 0 ]; then
    echo "deepcam: training exited $rc; to continue this run from its last checkpoint:" \
         "DEEPCAM_RUN_DIR=$OUTPUT_DIR bash $0"
fi
exit $rc

#!/bin/bash
# {{workload_title}} with Horovod on machines without Slurm or MPI: {{description}}.
# horovodrun starts {{ntasks}} ranks ({{tasks_per_node}} per host, over ssh beyond this one) and
# wires them up with Gloo. Rendered by:
#   {{command_line}}
cd {{workdir}} || exit 1
{{module_lines}}
source {{venv}}/bin/activate

NP={{ntasks}}
PPN={{tasks_per_node}}
HOSTS={{hosts?}}
export OMP_NUM_THREADS={{cpus_per_task}}
export TF_ENABLE_ONEDNN_OPTS=1  # {{cosmoflow?}}: TF's oneDNN kernels (12x faster on AMD EPYC)
if [ -n "${HOSTS:-}" ]; then
    HOSTLIST=$(echo "$HOSTS" | sed "s/\(,\|$\)/:$PPN\1/g")
else
    HOSTLIST="localhost:$PPN"
fi
HVDRUN=(horovodrun -np "$NP" -H "$HOSTLIST" --gloo)

RUN_INFO={{info_step}}   # 1: first show how every rank is wired ({{info_command}})
DATA_DIR={{data}}
OUTPUT_ROOT={{output_root}}
# One directory per run of this script, so running it again never continues a finished run;
# DEEPCAM_RUN_DIR=DIR continues the run in DIR (--resume auto) instead.
OUTPUT_DIR=${DEEPCAM_RUN_DIR:-$OUTPUT_ROOT/{{job_name}}-$(date -u +%Y%m%dT%H%M%SZ)-$$}
mkdir -p "$OUTPUT_DIR"
echo "{{workload}}: $NP ranks on $HOSTLIST; outputs in $OUTPUT_DIR"
if [ "$RUN_INFO" = 1 ]; then
    "${HVDRUN[@]}" {{info_command}} --output "$OUTPUT_DIR/info.json" || exit $?
fi
"${HVDRUN[@]}" {{train_command}} --data_dir "$DATA_DIR" --output_dir "$OUTPUT_DIR" \
    --resume auto {{train_args}}
rc=$?
if [ $rc -ne 0 ]; then
    echo "{{workload}}: training exited $rc; to continue this run from its last checkpoint:" \
         "DEEPCAM_RUN_DIR=$OUTPUT_DIR bash $0"
fi
exit $rc

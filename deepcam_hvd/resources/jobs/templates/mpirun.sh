#!/bin/bash
# {{workload_title}} with Horovod on machines without Slurm: {{description}}.
# {{nodes}} node(s) x {{tasks_per_node}} ranks x {{cpus_per_task}} cores; works with MPICH
# (Hydra) and Open MPI mpirun. Rendered by:
#   {{command_line}}
cd {{workdir}} || exit 1
{{module_lines}}
source {{venv}}/bin/activate

NP={{ntasks}}
PPN={{tasks_per_node}}
CORES={{cpus_per_task}}
HOSTS={{hosts?}}
export OMP_NUM_THREADS=$CORES
export TF_ENABLE_ONEDNN_OPTS=1  # {{cosmoflow?}}: TF's oneDNN kernels (12x faster on AMD EPYC)

if mpirun --version 2>&1 | grep -q "Open MPI"; then
    MPIRUN=(mpirun -np "$NP" --map-by "ppr:$PPN:node:pe=$CORES" --bind-to core -x OMP_NUM_THREADS)
    MPIRUN+=(-x TF_ENABLE_ONEDNN_OPTS)  # {{cosmoflow?}}: Open MPI passes on only what -x names
    [ -n "${HOSTS:-}" ] && MPIRUN+=(--host "$(echo "$HOSTS" | sed "s/\(,\|$\)/:$PPN\1/g")")
else  # MPICH Hydra
    MPIRUN=(mpirun -np "$NP" -ppn "$PPN" -bind-to "core:$CORES")
    [ -n "${HOSTS:-}" ] && MPIRUN+=(-hosts "$HOSTS")
fi

RUN_INFO={{info_step}}   # 1: first show how every rank is wired ({{info_command}})
DATA_DIR={{data}}
OUTPUT_ROOT={{output_root}}
# One directory per run of this script, so running it again never continues a finished run;
# DEEPCAM_RUN_DIR=DIR continues the run in DIR (--resume auto) instead.
OUTPUT_DIR=${DEEPCAM_RUN_DIR:-$OUTPUT_ROOT/{{job_name}}-$(date -u +%Y%m%dT%H%M%SZ)-$$}
mkdir -p "$OUTPUT_DIR"
echo "{{workload}}: $NP ranks over {{nodes}} node(s); outputs in $OUTPUT_DIR"
if [ "$RUN_INFO" = 1 ]; then
    "${MPIRUN[@]}" {{info_command}} || exit $?   # one line per rank: layout, threads, binding
fi
# SIGTERM/SIGUSR1 to mpirun: every rank finishes its step, checkpoints and stops; continue
# with DEEPCAM_RUN_DIR set to this run's directory (--resume auto).
"${MPIRUN[@]}" {{train_command}} --data_dir "$DATA_DIR" --output_dir "$OUTPUT_DIR" \
    --resume auto {{train_args}}
rc=$?
if [ $rc -ne 0 ]; then
    echo "{{workload}}: training exited $rc; to continue this run from its last checkpoint:" \
         "DEEPCAM_RUN_DIR=$OUTPUT_DIR bash $0"
fi
exit $rc

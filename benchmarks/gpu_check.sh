#!/usr/bin/env bash
# The GPU check: one command, at most ~8 minutes, on one NVIDIA GPU node without network.
#
#   benchmarks/gpu_check.sh OUTDIR              # the real check (GPU, full size)
#   benchmarks/gpu_check.sh --smoke OUTDIR      # the same stages on the CPU at tiny sizes
#   benchmarks/gpu_check.sh --no-build OUTDIR   # skip building Horovod (use what is importable)
#
# Needs on the node: a Python with a CUDA torch (PYTHON, else python3, else python), nvcc (PATH,
# CUDA_HOME or PyPI's nvidia-cuda-nvcc), CMake, a C++ compiler and NCCL (PyPI's
# nvidia-nccl-cu<major>, as torch uses; see backends/cuda_toolchain.sh); and, carried with the
# repository, backends/vendor/ from backends/fetch_gpu_wheels.sh (Horovod's sdist, wheels of
# deepcam-hvd's dependencies the node's Python may lack). From the session that holds the device:
#   backends/fetch_gpu_wheels.sh 3.12     # once, here (network)
#   run(command="bash benchmarks/gpu_check.sh $OUT/gpu-check", carry=["backends/vendor"],
#       timeout_s=540)
#
# Stages, each with its own timeout inside one overall budget (GPU_CHECK_BUDGET_S, default
# 450 s); a failed or timed-out stage is recorded and the next one runs; a stage that no longer
# fits is recorded as skipped:
#   env           python/torch/CUDA/NCCL/GPU facts                    -> env.json
#   deps          pip-installs (offline, --no-deps, into WORK/site) what the Python lacks
#   build         Horovod 0.28.1 with NCCL + Gloo (no MPI), patched (backends/patch_horovod.py),
#                 against this torch, for this GPU's architecture; in the background while the
#                 benchmarks run (GPU_CHECK_SERIAL=1: before them), niced, on all but 4 cores
#   bench_<mode>_b<N>  deepcam-hvd bench step, full size (768x1152, deeplab-xception), local
#                 batch N in 1 2 4 8, mode fp32 | bf16 | bf16-cl (bf16 + channels-last): samples/s,
#                 phases, peak memory                                 -> bench/<mode>_b<N>.json
#   data_synth, train   deepcam-hvd data synth (64+16 samples of 96x144) and train --device cuda
#                 --max_epochs 2 with jobs/demo.toml        -> train/summary.json, train/mlperf.log
#   feed_<input>_b<N>  the trainer's GPU speed options, one at a time, bf16 at local batch N
#                 (GPU_CHECK_FEED_BATCH, 8): bench step --input pageable | pinned | prefetch,
#                 and prefetch with --cudnn-benchmark (feed_prefetch_cudnn); summary.json's
#                 "gpu_options" gives each one's samples/s against its absence
#                 (these run while the build goes on)                 -> bench/feed_*.json
#   lamb_step     LAMB's update of the full model's parameters, one tensor at a time against
#                 all at once (benchmarks/lamb_step.py; all at once is LAMB's GPU default)
#                                                                     -> lamb_step.json
#   info          deepcam-hvd info --json (horovod_build must list NCCL) -> info.json
#   collectives   Horovod allreduce/allgather/broadcast of CUDA tensors under horovodrun --gloo
#                 (NCCL_DEBUG=INFO: the log must show NCCL at work)   -> horovod_collectives.json
#   bench_horovod_bf16_b2  bench step through Horovod's DistributedOptimizer (NCCL), 1 rank
#   train_fast    (GPU) the demo training again with --pin_memory on --device_prefetch on
#                 --cudnn_benchmark on                  -> train_fast/summary.json, mlperf.log
#   gpu_tests     the test suite's CUDA-only tests (GPU_TESTS below; skipped without a GPU)
#                                                                     -> gpu_tests.xml (JUnit)
# OUTDIR gets summary.json and summary.md (rewritten after every stage, so a killed run still
# leaves one), stages.jsonl, run.json and logs/<stage>.log. Exit status 1 if a stage failed or
# timed out (skipped ones do not count), else 0. Build products stay in GPU_CHECK_WORK
# (default /tmp/deepcam-gpu-check), not in OUTDIR; a rerun there reuses a matching Horovod wheel.
#
# Knobs: GPU_CHECK_BATCHES ("1 2 4 8"), GPU_CHECK_MODES ("fp32 bf16 bf16-cl"; also fp32-cl),
# GPU_CHECK_FEED_BATCH (8),
# GPU_CHECK_STEPS (5), GPU_CHECK_WARMUP (2), GPU_CHECK_SERIAL, HOROVOD_BUILD_CUDA_CC_LIST.
set -euo pipefail

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
ROOT=$(cd "$(dirname "$SCRIPT")/.." && pwd)
HOROVOD_VERSION=0.28.1

say() { printf '[gpu-check] %s\n' "$*"; }
die() { printf '[gpu-check] error: %s\n' "$*" >&2; exit 2; }

# Commands and option lists, from the settings the driver exports (arrays do not cross into
# `bash gpu_check.sh --stage`, so the option lists travel as strings).
common_setup() {
    HELPER=("$PY" "$ROOT/benchmarks/gpu_check.py")
    DCH=("$PY" -m deepcam_hvd)
    # horovodrun: the one just built into SITE, else the Python's own, else PATH's
    HVDRUN=("$PY" "$SITE/bin/horovodrun")
    if [ ! -f "$SITE/bin/horovodrun" ]; then
        if [ -x "$(dirname "$PY")/horovodrun" ]; then
            HVDRUN=("$(dirname "$PY")/horovodrun")
        else
            HVDRUN=(horovodrun)
        fi
    fi
    read -r -a BENCH_SIZE <<< "${BENCH_SIZE_S:-}"
    read -r -a TRAIN_EXTRA <<< "${TRAIN_EXTRA_S:-}"
}

# ---------------------------------------------------------------------------------------------
# Internal stages: run as `gpu_check.sh --stage NAME` by the driver below, under `timeout`, with
# the driver's exported settings.
# ---------------------------------------------------------------------------------------------
stage_env_probe() {
    "${HELPER[@]}" env "$OUT/env.json"
    cat "$OUT/env.json"
    if [ "$MODE" = gpu ] && ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
        die "torch sees no GPU (torch $("$PY" -c 'import torch; print(torch.__version__)'))"
    fi
}

stage_deps() {
    local wheels req=() line
    wheels="$ROOT/backends/vendor/wheels/cp$("$PY" -c 'import sys; print("%d%d" % sys.version_info[:2])')"
    while IFS= read -r line; do [ -n "$line" ] && req+=("$line"); done < <("${HELPER[@]}" missing)
    if [ "${#req[@]}" -eq 0 ]; then
        echo "every dependency is importable already"
        return 0
    fi
    echo "missing: ${req[*]}"
    [ -d "$wheels" ] || die "$wheels not found: run backends/fetch_gpu_wheels.sh $("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])') where there is network, and carry backends/vendor"
    "$PY" -m pip install --disable-pip-version-check --no-index --find-links "$wheels" \
        --no-deps --target "$SITE" --upgrade "${req[@]}"
    [ -z "$("${HELPER[@]}" missing)" ] || die "still missing after the install: $("${HELPER[@]}" missing | tr '\n' ' ')"
}

stage_build() {
    local sdist="$ROOT/backends/vendor/horovod-$HOROVOD_VERSION.tar.gz" src="$WORK/horovod-src"
    local flags key torch_cuda cc
    [ -f "$sdist" ] || die "$sdist not found: run backends/fetch_gpu_wheels.sh where there is network, and carry backends/vendor"
    flags="HOROVOD_WITH_PYTORCH=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1"
    torch_cuda=$("$PY" -c 'import torch; print(torch.version.cuda or "")')
    if [ -n "$torch_cuda" ]; then
        # shellcheck disable=SC1091
        . "$ROOT/backends/cuda_toolchain.sh"
        cuda_toolchain "$PY" "$WORK/cuda-layout"
        flags="$flags HOROVOD_GPU_OPERATIONS=NCCL"
        if [ -z "${HOROVOD_BUILD_CUDA_CC_LIST:-}" ]; then
            # only this node's GPU architecture: a fraction of the nvcc time of every one
            cc=$("$PY" -c 'import torch; print("%d%d" % torch.cuda.get_device_capability() if torch.cuda.is_available() else "")')
            [ -n "$cc" ] && export HOROVOD_BUILD_CUDA_CC_LIST=$cc
        fi
    elif [ "$MODE" = gpu ]; then
        die "torch $("$PY" -c 'import torch; print(torch.__version__)') is a CPU build: no NCCL build possible"
    fi
    key="hvd$HOROVOD_VERSION-torch$("$PY" -c 'import torch; print(torch.__version__)')-$(echo "$flags ${CUDA_TOOLCHAIN_ID:-} cc${HOROVOD_BUILD_CUDA_CC_LIST:-all}" | sha256sum | cut -c1-12)-p$(sha256sum "$ROOT/backends/patch_horovod.py" | cut -c1-12)"
    if [ "$(cat "$WORK/dist/key" 2>/dev/null)" = "$key" ] && ls "$WORK"/dist/horovod-*.whl >/dev/null 2>&1; then
        echo "reusing $WORK/dist/horovod wheel ($key)"
    else
        echo "building horovod $HOROVOD_VERSION ($key): $flags HOROVOD_BUILD_CUDA_CC_LIST=${HOROVOD_BUILD_CUDA_CC_LIST:-all}"
        rm -rf "$src" "$WORK/dist"
        mkdir -p "$src" "$WORK/dist"
        tar -xzf "$sdist" -C "$src" --strip-components 1
        "$PY" "$ROOT/backends/patch_horovod.py" "$src"
        # shellcheck disable=SC2086
        env $flags CMAKE_POLICY_VERSION_MINIMUM=3.5 MAKEFLAGS="-j$BUILD_JOBS" \
            nice -n 19 "$PY" -m pip wheel --disable-pip-version-check --no-deps \
            --no-build-isolation --no-index -v -w "$WORK/dist" "$src"
        echo "$key" > "$WORK/dist/key"
    fi
    "$PY" -m pip install --disable-pip-version-check --no-deps --no-index --target "$SITE" \
        --upgrade "$WORK"/dist/horovod-*.whl
    "$PY" -c 'import horovod.torch as h; print("horovod.torch: nccl_built", h.nccl_built(), "gloo_built", h.gloo_built(), "cuda_built", h.cuda_built())'
}

stage_info() {
    "${DCH[@]}" info --json --device "$DEVICE" --output "$OUT/info.json"
    "$PY" - "$OUT/info.json" "$MODE" <<'PYEOF'
import json, sys
build = json.load(open(sys.argv[1]))["ranks"][0]["horovod_build"]
print("horovod_build:", build)
if not build.get("installed"):
    sys.exit("gpu_check: error: deepcam-hvd sees no Horovod")
if sys.argv[2] == "gpu" and not build.get("nccl"):
    sys.exit("gpu_check: error: this Horovod was built without NCCL")
PYEOF
}

stage_collectives() {
    NCCL_DEBUG=INFO "${HVDRUN[@]}" -np 1 -H localhost:1 --gloo \
        "$PY" "$ROOT/benchmarks/gpu_check.py" allreduce "$OUT/horovod_collectives.json" "$DEVICE" \
        2>&1 | tee "$WORK/collectives.out"
    if [ "$MODE" = gpu ] && ! grep -q "NCCL INFO" "$WORK/collectives.out"; then
        die "the collectives ran but NCCL_DEBUG=INFO shows no NCCL at work"
    fi
}

stage_bench() {  # stage_bench MODE BATCH [extra bench options...]
    local mode=$1 batch=$2 precision=${1%-cl} cl=()
    shift 2
    [ "$mode" = "${mode%-cl}" ] || cl=(--channels-last)
    "${DCH[@]}" bench step --device "$DEVICE" --batch "$batch" --precision "$precision" "${cl[@]}" \
        --steps "$STEPS" --warmup "$WARMUP" "${BENCH_SIZE[@]}" "$@"
}

stage_bench_horovod() {  # the step through Horovod's DistributedOptimizer: NCCL on a GPU
    "${HVDRUN[@]}" -np 1 -H localhost:1 --gloo \
        "${DCH[@]}" bench step --backend horovod --device "$DEVICE" --batch 2 --precision bf16 \
        --steps "$STEPS" --warmup "$WARMUP" "${BENCH_SIZE[@]}" --json \
        --output "$OUT/bench/horovod_bf16_b2.json"
}

stage_data_synth() {
    rm -rf "$WORK/data"
    "${DCH[@]}" data synth --out "$WORK/data" --train "$SYNTH_TRAIN" --val "$SYNTH_VAL" \
        --height "$SYNTH_H" --width "$SYNTH_W" --seed 333
}

# the tests that need a GPU (each skips, saying so, without one)
GPU_TESTS=(tests/test_gpu_bench.py tests/train/test_device_feed.py
           tests/train/test_trainer_inprocess.py::test_pinned_prefetched_batches_train_as_plain_copies
           tests/data/test_loader.py::test_pinned_batches_hold_the_same_samples
           tests/train/test_lamb.py::test_all_at_once_on_a_gpu_matches_one_at_a_time)

stage_gpu_tests() {
    cd "$ROOT"
    "$PY" -m pytest -q -p no:cacheprovider --junitxml "$OUT/gpu_tests.xml" "${GPU_TESTS[@]}"
}

stage_lamb_step() {
    # shellcheck disable=SC2086
    "$PY" "$ROOT/benchmarks/lamb_step.py" --device "$DEVICE" $LAMB_ARGS \
        --output "$OUT/lamb_step.json"
}

stage_train() {  # stage_train NAME [extra train options...]
    local name=$1 rc=0
    shift
    rm -rf "${WORK:?}/$name"
    mkdir -p "$OUT/$name"
    "${DCH[@]}" train --config "$ROOT/jobs/demo.toml" --data_dir "$WORK/data" \
        --output_dir "$WORK/$name" --run_tag gpu-check --max_epochs 2 --device "$DEVICE" \
        --seed 7 "${TRAIN_EXTRA[@]}" "$@" || rc=$?
    cp "$WORK/$name"/summary.json "$WORK/$name"/mlperf.log "$OUT/$name/" 2>/dev/null || true
    return "$rc"
}

if [ "${1:-}" = "--stage" ]; then
    name=$2
    shift 2
    common_setup
    "stage_$name" "$@"
    exit $?
fi

# ---------------------------------------------------------------------------------------------
# The driver.
# ---------------------------------------------------------------------------------------------
MODE=gpu
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) MODE=smoke ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$SCRIPT" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (use --smoke, --no-build)" ;;
        *) [ -z "${OUT:-}" ] || die "one OUTDIR only"; OUT=$1 ;;
    esac
    shift
done
[ -n "${OUT:-}" ] || die "usage: $0 [--smoke] [--no-build] OUTDIR"
mkdir -p "$OUT"/logs "$OUT"/bench
OUT=$(cd "$OUT" && pwd)
(cd "$OUT" && rm -rf stages.jsonl summary.json summary.md run.json env.json info.json \
    horovod_collectives.json bench/*.json logs/*.log train train_fast gpu_tests.xml \
    lamb_step.json)

# the Python with torch: $PYTHON, else python3, else python
PY=""
for candidate in ${PYTHON:-} python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import torch' 2>/dev/null; then
        PY=$(command -v "$candidate")
        break
    fi
done
[ -n "$PY" ] || die "no Python with torch found (tried ${PYTHON:-} python3 python; set PYTHON)"
export PY MODE OUT ROOT
export WORK=${GPU_CHECK_WORK:-/tmp/deepcam-gpu-check}
export SITE="$WORK/site"
mkdir -p "$SITE"
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$SITE/bin:$PATH"
export BUILD_JOBS=$(( $(nproc) > 6 ? $(nproc) - 4 : $(nproc) ))
export STEPS=${GPU_CHECK_STEPS:-5} WARMUP=${GPU_CHECK_WARMUP:-2}
BATCHES=${GPU_CHECK_BATCHES:-1 2 4 8}
MODES=${GPU_CHECK_MODES:-fp32 bf16 bf16-cl}
SERIAL=${GPU_CHECK_SERIAL:-0}
FEED_BATCH=${GPU_CHECK_FEED_BATCH:-8}
if [ "$MODE" = gpu ]; then
    export DEVICE=cuda SYNTH_TRAIN=64 SYNTH_VAL=16 SYNTH_H=96 SYNTH_W=144
    BUDGET=${GPU_CHECK_BUDGET_S:-450}
    BENCH_SIZE_S=""                      # the defaults: deeplab-xception at 768x1152
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}  # GPU runs; leaves the cores to the build
    LIMIT_BUILD=300 LIMIT_BENCH=90 LIMIT_TRAIN=150
    export LAMB_ARGS="--steps 20 --rounds 3"
else
    export DEVICE=cpu SYNTH_TRAIN=16 SYNTH_VAL=4 SYNTH_H=32 SYNTH_W=48
    BUDGET=${GPU_CHECK_BUDGET_S:-2400}    # a Horovod build on 2 cores takes ~10-15 minutes
    BENCH_SIZE_S="--model deeplab-xception-small --height 32 --width 48"
    BATCHES=${GPU_CHECK_BATCHES:-1 2}
    FEED_BATCH=${GPU_CHECK_FEED_BATCH:-2}
    LIMIT_BUILD=1800 LIMIT_BENCH=60 LIMIT_TRAIN=120
    export LAMB_ARGS="--steps 1 --rounds 1"
fi
export BENCH_SIZE_S TRAIN_EXTRA_S="${GPU_CHECK_TRAIN_ARGS:-}"
common_setup

T0=$SECONDS
"$PY" - "$OUT/run.json" "$MODE" "$BUDGET" "$SERIAL" "$BUILD" <<'PYEOF'
import json, platform, sys, time
out, mode, budget, serial, build = sys.argv[1:]
json.dump({"mode": mode, "host": platform.node(), "budget_s": int(budget),
           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "build_concurrent_with_bench":
           serial != "1" and build == "1", "elapsed_s": None}, open(out, "w"), indent=2)
PYEOF

# stage NAME LIMIT_S MIN_S STAGE_FUNCTION [ARGS...]: run one stage under its timeout (never more
# than what is left of the budget), record it, refresh the summary. Never fails the script.
stage() {
    local name=$1 limit=$2 min=$3 left t rc start log
    shift 3
    log="$OUT/logs/$name.log"
    left=$(( BUDGET - (SECONDS - T0) - 5 ))
    if [ "$left" -lt "$min" ]; then
        say "$name: $("${HELPER[@]}" record "$OUT" "$name" 0 0 "$log" skipped \
            "out of time: ${left} s left of the ${BUDGET} s budget, the stage needs ${min} s")"
        return 0
    fi
    t=$(( limit < left ? limit : left ))
    start=$SECONDS
    rc=0
    timeout -k 10 "$t" bash "$SCRIPT" --stage "$@" > "$log" 2>&1 || rc=$?
    say "$name: $("${HELPER[@]}" record "$OUT" "$name" "$rc" "$((SECONDS - start))" "$log")"
    "${HELPER[@]}" summary "$OUT" > /dev/null 2>&1 || true
    return 0
}

bench_stages() {
    local b m
    for b in $BATCHES; do
        for m in $MODES; do
            stage "bench_${m}_b${b}" "$LIMIT_BENCH" 20 bench "$m" "$b" --json \
                --output "$OUT/bench/${m}_b${b}.json"
        done
    done
}

say "mode $MODE, budget ${BUDGET} s, python $PY, work $WORK, results $OUT"
stage env 60 10 env_probe
stage deps 120 10 deps
build_pid=""
if [ "$BUILD" = 1 ]; then
    if [ "$SERIAL" = 1 ]; then
        stage build "$LIMIT_BUILD" 60 build
    else
        stage build "$LIMIT_BUILD" 60 build &
        build_pid=$!
    fi
fi
bench_stages
stage data_synth 60 15 data_synth
stage train "$LIMIT_TRAIN" 30 train train
# the GPU speed options, each against its absence (on the CPU only the pageable copy exists)
feed_inputs="pageable"
[ "$MODE" = gpu ] && feed_inputs="pageable pinned prefetch"
for input in $feed_inputs; do
    stage "feed_${input}_b$FEED_BATCH" "$LIMIT_BENCH" 20 bench bf16 "$FEED_BATCH" --input "$input" \
        --json --output "$OUT/bench/feed_${input}_b$FEED_BATCH.json"
done
if [ "$MODE" = gpu ]; then
    stage "feed_prefetch_cudnn_b$FEED_BATCH" "$LIMIT_BENCH" 20 bench bf16 "$FEED_BATCH" \
        --input prefetch --cudnn-benchmark --json \
        --output "$OUT/bench/feed_prefetch_cudnn_b$FEED_BATCH.json"
fi
stage lamb_step 90 20 lamb_step
[ -z "$build_pid" ] || wait "$build_pid" || true
stage info 60 10 info
stage collectives 90 20 collectives
stage bench_horovod_bf16_b2 "$LIMIT_BENCH" 20 bench_horovod
if [ "$MODE" = gpu ]; then
    stage train_fast "$LIMIT_TRAIN" 30 train train_fast --pin_memory on --device_prefetch on \
        --cudnn_benchmark on
fi
stage gpu_tests 180 30 gpu_tests

"$PY" - "$OUT/run.json" "$((SECONDS - T0))" <<'PYEOF'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["elapsed_s"] = int(sys.argv[2])
json.dump(doc, open(sys.argv[1], "w"), indent=2)
PYEOF
"${HELPER[@]}" summary "$OUT"
say "done in $((SECONDS - T0)) s: $OUT/summary.json, $OUT/summary.md"
# exit 1 when a stage failed or timed out (its outputs are all written anyway)
"$PY" -c 'import json, sys; sys.exit(1 if json.load(open(sys.argv[1]))["stages_failed"] else 0)' \
    "$OUT/summary.json"

#!/usr/bin/env bash
# Prove an NVIDIA build (profile nvidia-nccl or nvidia-nccl-tf) on a machine without a GPU.
#
#   backends/check_gpu_build.sh                           # nvidia-nccl
#   backends/check_gpu_build.sh --profile nvidia-nccl-tf  # the TensorFlow build
#   backends/check_gpu_build.sh --fresh [--profile P]     # drop the venv and the profile's wheels
#   DEEPCAM_GPU_CHECK_VENV=/tmp/v backends/check_gpu_build.sh
#
# The venv is ~/.cache/deepcam-hvd/gpu-check-venv for nvidia-nccl, gpu-check-venv-<profile> for
# another profile.
#
# Runs `DEEPCAM_BACKEND=<profile> backends/install.sh` into a separate venv (never .venv/), then
# shows `horovodrun --check-build`, the framework's `horovod.<fw>.nccl_built()`, what Horovod's
# extension links and `deepcam-hvd info`, and fails unless NCCL is in the build. Nothing here
# needs a GPU: compiling CUDA code and loading a CUDA torch or TensorFlow do not.
#
#   nvidia-nccl: PyPI's default torch 2.13.0 wheel (the CUDA 13.0 build), nvcc and the CUDA
#     runtime headers from cuda-toolkit[nvcc,crt,nvvm,cudart,cccl] at the version torch pins,
#     NCCL from the nvidia-nccl-cu13 package torch depends on, Horovod for torch.
#   nvidia-nccl-tf: tensorflow[and-cuda]==2.15.1 (CUDA 12.2, NCCL from nvidia-nccl-cu12 2.16.5)
#     and a CPU torch, Horovod for TensorFlow. PyPI has no CUDA 12 nvcc, so this one needs a CUDA
#     12.x toolkit on the machine (HOROVOD_CUDA_HOME, CUDA_HOME, PATH, /usr/local/cuda-12.*), or
#     CUDA_TOOLCHAIN_NVCC_MAJOR=13 and a CUDA 13 one (what the test machine has):
#       CUDA_TOOLCHAIN_NVCC_MAJOR=13 backends/check_gpu_build.sh --profile nvidia-nccl-tf
#
# Not part of the default test run. Measured on the 2-core test machine: backends/README.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${DEEPCAM_HVD_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/deepcam-hvd/wheels}

say() { printf '[check-gpu-build] %s\n' "$*"; }
die() { printf '[check-gpu-build] error: %s\n' "$*" >&2; exit 1; }

PROFILE=nvidia-nccl
fresh=0
while [ $# -gt 0 ]; do
    case "$1" in
        --fresh) fresh=1 ;;
        --profile) [ $# -ge 2 ] || die "--profile needs a name"; PROFILE=$2; shift ;;
        --profile=*) PROFILE=${1#--profile=} ;;
        *) die "usage: $0 [--fresh] [--profile nvidia-nccl|nvidia-nccl-tf]" ;;
    esac
    shift
done
case "$PROFILE" in
    nvidia-nccl) fw=torch fw_name=PyTorch ext="horovod/torch/mpi_lib_v2*.so" ;;
    nvidia-nccl-tf) fw=tensorflow fw_name=TensorFlow ext="horovod/tensorflow/mpi_lib*.so" ;;
    *) die "--profile $PROFILE: this check knows nvidia-nccl and nvidia-nccl-tf" ;;
esac
# The nvidia-nccl venv keeps the name it had before profiles were a choice here.
default_venv=${XDG_CACHE_HOME:-$HOME/.cache}/deepcam-hvd/gpu-check-venv
[ "$PROFILE" = nvidia-nccl ] || default_venv="$default_venv-$PROFILE"
VENV=${DEEPCAM_GPU_CHECK_VENV:-$default_venv}
[ "$(cd "$(dirname "$VENV")" 2>/dev/null && pwd)/$(basename "$VENV")" != "$ROOT/.venv" ] \
    || die "DEEPCAM_GPU_CHECK_VENV must not be the project's .venv"
if [ "$fresh" = 1 ]; then
    say "removing $VENV and cached $PROFILE wheels"
    rm -rf "$VENV" "$CACHE"/*-"$PROFILE"-f*
fi

start=$SECONDS
# PyPI's packages only (cuda-toolkit[...], nvidia-nccl-cu13), even where the machine has a CUDA
# toolkit: this is the path a site without one takes. nvidia-nccl-tf cannot take it (no CUDA 12
# nvcc on PyPI), so it looks at the machine's toolkits too.
source_default=pip
[ "$PROFILE" = nvidia-nccl ] || source_default=auto
CUDA_TOOLCHAIN_SOURCE=${CUDA_TOOLCHAIN_SOURCE:-$source_default} DEEPCAM_VENV="$VENV" \
    DEEPCAM_BACKEND="$PROFILE" bash "$ROOT/backends/install.sh"
say "install.sh ($PROFILE) took $((SECONDS - start)) s"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

say "horovodrun --check-build:"
build=$("$VENV/bin/horovodrun" --check-build)
printf '%s\n' "$build"
printf '%s\n' "$build" | grep -q '\[X\] NCCL' || die "horovodrun --check-build does not list NCCL"
printf '%s\n' "$build" | grep -q "\[X\] $fw_name" || die "horovodrun --check-build does not list $fw_name"

"$VENV/bin/python" - "$fw" <<'PYEOF'
import importlib
import sys

import horovod

fw = sys.argv[1]
hvd = importlib.import_module(f"horovod.{fw}")
if fw == "torch":
    import torch
    what = f"torch {torch.__version__} (CUDA {torch.version.cuda})"
else:
    import tensorflow as tf
    info = tf.sysconfig.get_build_info()
    what = (f"tensorflow {tf.__version__} (CUDA {info.get('cuda_version')}, "
            f"cuDNN {info.get('cudnn_version')}, built with CUDA {tf.test.is_built_with_cuda()})")
    import horovod.tensorflow.keras  # noqa: F401  (Keras 2 API that CosmoFlow uses)
print(f"{what}, horovod {horovod.__version__}: nccl_built()={hvd.nccl_built()} "
      f"cuda_built()={hvd.cuda_built()} mpi_built()={hvd.mpi_built()} gloo_built()={hvd.gloo_built()}")
if not (hvd.nccl_built() and hvd.cuda_built()):
    raise SystemExit(f"[check-gpu-build] error: horovod.{fw} was built without NCCL/CUDA")
PYEOF

# shellcheck disable=SC2086
lib=$(ls "$VENV"/lib/python3*/site-packages/$ext)
needed=$(readelf -d "$lib" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p' | grep -E 'nccl|cuda|mpi|torch|tensorflow')
runpath=$(readelf -d "$lib" | sed -n 's/.*R\(UN\)*PATH.*\[\(.*\)\]/\2/p')
say "$(basename "$lib") links: $(echo "$needed" | tr '\n' ' ')(runpath: ${runpath:-none})"
# Each framework's own view: DeepCAM's `info` (torch) or CosmoFlow's `cosmoflow info` (TF).
info_cmd=(info)
[ "$PROFILE" != nvidia-nccl-tf ] || info_cmd=(cosmoflow info)
say "deepcam-hvd ${info_cmd[*]} (CPU; the build as deepcam-hvd sees it):"
"$VENV/bin/deepcam-hvd" "${info_cmd[@]}" --device cpu \
    || die "the $PROFILE build has NCCL, but deepcam-hvd ${info_cmd[*]} fails (above) ($((SECONDS - start)) s in all)"
say "ok: the $PROFILE build has NCCL ($((SECONDS - start)) s in all)"

#!/usr/bin/env bash
# Prove the NVIDIA build (profile nvidia-nccl) on a machine without a GPU.
#
#   backends/check_gpu_build.sh            # venv: ~/.cache/deepcam-hvd/gpu-check-venv
#   backends/check_gpu_build.sh --fresh    # delete that venv and the cached GPU wheel first
#   DEEPCAM_GPU_CHECK_VENV=/tmp/v backends/check_gpu_build.sh
#
# Runs `DEEPCAM_BACKEND=nvidia-nccl backends/install.sh` into a separate venv (never .venv/):
# PyPI's default torch 2.13.0 wheel (the CUDA 13.0 build), nvcc and the CUDA runtime headers
# from cuda-toolkit[nvcc,crt,nvvm,cudart,cccl] at the version torch pins, NCCL from the
# nvidia-nccl-cu13 package torch depends on (backends/cuda_toolchain.sh), then Horovod 0.28.1
# built with HOROVOD_GPU_OPERATIONS=NCCL from its patched sdist. Then it shows
# `horovodrun --check-build`, `horovod.torch.nccl_built()` and `deepcam-hvd info`, and fails
# unless NCCL is in the build. Nothing here needs a GPU: compiling CUDA code and loading a CUDA
# torch do not.
#
# Not part of the default test run. On the 2-core test machine (measured 2026-12-02, see
# backends/README.md): --fresh takes ~10.5 minutes with pip's download cache warm, ~4 minutes of
# installs then 5.6 of Horovod build (a cold cache adds ~3.5 GB of downloads: torch, cuDNN,
# cuBLAS, NCCL, nvcc, ...); a second run takes ~45 s (the venv and the cached wheel are reused).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${DEEPCAM_GPU_CHECK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/deepcam-hvd/gpu-check-venv}
CACHE=${DEEPCAM_HVD_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/deepcam-hvd/wheels}

say() { printf '[check-gpu-build] %s\n' "$*"; }
die() { printf '[check-gpu-build] error: %s\n' "$*" >&2; exit 1; }

case "${1:-}" in
    "") ;;
    --fresh)
        say "removing $VENV and cached nvidia-nccl wheels"
        rm -rf "$VENV" "$CACHE"/*-nvidia-nccl-*
        ;;
    *) die "usage: $0 [--fresh]" ;;
esac
[ "$(cd "$(dirname "$VENV")" 2>/dev/null && pwd)/$(basename "$VENV")" != "$ROOT/.venv" ] \
    || die "DEEPCAM_GPU_CHECK_VENV must not be the project's .venv"

start=$SECONDS
# PyPI's packages only (cuda-toolkit[...], nvidia-nccl-cu13), even where the machine has a CUDA
# toolkit: this is the path a site without one takes.
CUDA_TOOLCHAIN_SOURCE=${CUDA_TOOLCHAIN_SOURCE:-pip} DEEPCAM_VENV="$VENV" \
    DEEPCAM_BACKEND=nvidia-nccl bash "$ROOT/backends/install.sh"
say "install.sh (nvidia-nccl) took $((SECONDS - start)) s"

say "horovodrun --check-build:"
build=$("$VENV/bin/horovodrun" --check-build)
printf '%s\n' "$build"
printf '%s\n' "$build" | grep -q '\[X\] NCCL' || die "horovodrun --check-build does not list NCCL"

"$VENV/bin/python" - <<'PYEOF'
import horovod
import horovod.torch as hvd
import torch

print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), horovod {horovod.__version__}: "
      f"nccl_built()={hvd.nccl_built()} cuda_built()={hvd.cuda_built()} "
      f"mpi_built()={hvd.mpi_built()} gloo_built()={hvd.gloo_built()}")
if not (hvd.nccl_built() and hvd.cuda_built()):
    raise SystemExit("[check-gpu-build] error: horovod.torch was built without NCCL/CUDA")
PYEOF

lib=$(ls "$VENV"/lib/python3*/site-packages/horovod/torch/mpi_lib_v2*.so)
needed=$(readelf -d "$lib" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p' | grep -E 'nccl|cuda|mpi|torch')
say "$(basename "$lib") links: $(echo "$needed" | tr '\n' ' ')"
say "deepcam-hvd info (CPU; the build as deepcam-hvd sees it):"
"$VENV/bin/deepcam-hvd" info --device cpu
say "ok: the nvidia-nccl build has NCCL ($((SECONDS - start)) s in all)"

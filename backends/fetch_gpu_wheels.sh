#!/usr/bin/env bash
# Download, once, what benchmarks/gpu_check.sh needs on a GPU node without network, into the
# ignored folder backends/vendor/ (which the device call carries with the repository):
#   backends/vendor/horovod-0.28.1.tar.gz          Horovod's sdist (built there with NCCL)
#   backends/vendor/wheels/cp<XY>/*.whl            binary wheels for CPython X.Y, manylinux 2.28
#                                                  x86_64: deepcam-hvd's run-time dependencies
#                                                  (not torch) and Horovod's
#
#   backends/fetch_gpu_wheels.sh          # for the GPU node's Python 3.12
#   backends/fetch_gpu_wheels.sh 3.11     # another Python (the CPU smoke test of gpu_check.sh)
#
# Idempotent (pip skips files already there); fails if the folder grows past 48 MiB, since the
# device call carries at most 64 MiB with the repository. Takes seconds (~30 MB).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYV=${1:-3.12}
HOROVOD_VERSION=0.28.1
VENDOR="$ROOT/backends/vendor"
DEST="$VENDOR/wheels/cp${PYV/./}"
LIMIT_MIB=48

say() { printf '[fetch-gpu-wheels] %s\n' "$*"; }
die() { printf '[fetch-gpu-wheels] error: %s\n' "$*" >&2; exit 1; }

[[ "$PYV" =~ ^3\.[0-9]+$ ]] || die "usage: $0 [PYTHON_VERSION, e.g. 3.12]"
PIP=(python3 -m pip --disable-pip-version-check -q)
mkdir -p "$DEST"

if [ ! -f "$VENDOR/horovod-$HOROVOD_VERSION.tar.gz" ]; then
    say "downloading the horovod $HOROVOD_VERSION sdist"
    "${PIP[@]}" download --no-deps --no-binary :all: "horovod==$HOROVOD_VERSION" -d "$VENDOR"
fi

# The packages gpu_check.sh installs when the node's Python lacks them (benchmarks/gpu_check.py
# REQUIREMENTS holds the same list, with the modules that tell whether each is there).
# mlperf-logging and tensorboard come without their dependencies: deepcam-hvd only uses
# mlperf_logging.mllog and torch.utils.tensorboard's writer, which need none of pandas, scipy,
# grpcio, werkzeug or markdown.
WITH_DEPS=(numpy h5py click tqdm pyyaml cloudpickle psutil packaging "protobuf>=6.31.1,<8"
           absl-py "setuptools<82" wheel pytest)
NO_DEPS=(mlperf-logging tensorboard)
say "downloading wheels for CPython $PYV into ${DEST#"$ROOT"/}"
PLATFORM=(--only-binary :all: --python-version "$PYV" --implementation cp --abi "cp${PYV/./}"
          --abi abi3 --abi none --platform manylinux_2_28_x86_64 --platform any)
"${PIP[@]}" download "${PLATFORM[@]}" -d "$DEST" "${WITH_DEPS[@]}"
"${PIP[@]}" download "${PLATFORM[@]}" --no-deps -d "$DEST" "${NO_DEPS[@]}"

size=$(du -sm "$VENDOR" | cut -f1)
say "backends/vendor: ${size} MiB ($(find "$VENDOR" -type f | wc -l) files)"
[ "$size" -le "$LIMIT_MIB" ] || die "backends/vendor is ${size} MiB, over ${LIMIT_MIB} MiB: remove old wheels/cp* folders"

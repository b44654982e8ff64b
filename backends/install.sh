#!/usr/bin/env bash
# Install deepcam-hvd into .venv/ at the repo root, with a Horovod built for one backend profile.
#
#   backends/install.sh                 # profile from $DEEPCAM_BACKEND, default cpu-mpi
#   DEEPCAM_BACKEND=nvidia-nccl backends/install.sh
#   DEEPCAM_VENV=/tmp/v DEEPCAM_BACKEND=nvidia-nccl backends/install.sh   # another venv
#   DEEPCAM_VENV=.venv-cosmoflow DEEPCAM_BACKEND=nvidia-nccl-tf backends/install.sh
#
# Idempotent: every step checks before it acts, so a second run takes seconds. The Horovod
# wheel is cached under $DEEPCAM_HVD_WHEEL_CACHE (default ~/.cache/deepcam-hvd/wheels), keyed by
# the Horovod and Python versions, the versions of the frameworks it is built for (torch,
# TensorFlow), build flags, compiler/MPI and the patch itself (and nvcc/NCCL on GPU profiles);
# it is only rebuilt when that key changes. TensorFlow comes from one of setup.cfg's extras, named
# by the profile's PIP_EXTRAS: cosmoflow (tensorflow-cpu) or cosmoflow-cuda (tensorflow[and-cuda],
# CUDA 12.2; only the nvidia-nccl-tf profile, beside a CPU torch: backends/README.md says why).
set -euo pipefail

HOROVOD_VERSION=0.28.1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROFILE=${DEEPCAM_BACKEND:-cpu-mpi}
PROFILE_FILE="$ROOT/backends/profiles/$PROFILE.env"
VENV=${DEEPCAM_VENV:-$ROOT/.venv}
CACHE=${DEEPCAM_HVD_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/deepcam-hvd/wheels}
PY=${PYTHON:-python3}

say() { printf '[install] %s\n' "$*"; }
die() { printf '[install] error: %s\n' "$*" >&2; exit 1; }

[ -f "$PROFILE_FILE" ] || die "unknown backend profile '$PROFILE' (DEEPCAM_BACKEND); choose one of: $(cd "$ROOT/backends/profiles" && ls | sed 's/\.env$//' | tr '\n' ' ')"
SKIP_MPI4PY=0
GPU_TOOLCHAIN=""
TORCH_BUILD=""                    # cuda: torch must have CUDA; cpu: must not; empty: either
CUDA_TOOLCHAIN_FRAMEWORK=torch    # whose CUDA version nvcc must match (cuda_toolchain.sh)
PIP_EXTRAS=""
# shellcheck source=/dev/null
. "$PROFILE_FILE"
PIP_EXTRAS=${PIP_EXTRAS:-test,cosmoflow}
say "profile $PROFILE: $PROFILE_DESCRIPTION"

# --- 1. system packages ---------------------------------------------------------------
# On Cray systems the programming environment provides MPI and compilers; never apt there.
if [ -n "${CRAYPE_VERSION:-}" ]; then
    say "Cray programming environment found: using cc/CC wrappers and Cray MPICH"
    export CC=cc CXX=CC MPICC=cc
elif command -v dpkg-query >/dev/null 2>&1; then
    missing=""
    for p in $APT_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        say "installing system packages:$missing"
        SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
    fi
else
    say "no dpkg: assuming a compiler, cmake and MPI ($APT_PACKAGES) are provided by the system"
fi

# --- 2. virtual environment and Python packages -----------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip --disable-pip-version-check -q)

# "<torch.__version__> <torch.version.cuda or none>", read from torch/version.py without importing
# torch (or TensorFlow, below): each import costs seconds, and a rerun should take seconds.
torch_info() {
    "$VPY" - 2>/dev/null <<'PYEOF' || true
import importlib.util, os, runpy
spec = importlib.util.find_spec("torch")
v = runpy.run_path(os.path.join(os.path.dirname(spec.origin), "version.py"))
print(v["__version__"], v.get("cuda") or "none")
PYEOF
}

# TORCH_SPEC "torch==2.13.0" is met by any 2.13.0 build; "torch==2.13.0+cpu" only by that one.
want_torch=${TORCH_SPEC#torch==}
torch_is_wanted() {
    case "$want_torch" in
        *+*) [ "$1" = "$want_torch" ] ;;
        *) [ "${1%%+*}" = "$want_torch" ] ;;
    esac
}
have_v="" have_cuda=""
read -r have_v have_cuda <<<"$(torch_info)" || true
if [ "$TORCH_BUILD" = cuda ] && { ! torch_is_wanted "$have_v" || [ "${have_cuda:-none}" = none ]; }; then
    # GPU profile: torch must be a CUDA build of the wanted version (a CPU one is replaced).
    say "installing $TORCH_CUDA_SPEC (CUDA build)"
    # shellcheck disable=SC2086
    "${PIP[@]}" install $TORCH_PIP_ARGS "$TORCH_CUDA_SPEC"
    read -r have_v have_cuda <<<"$(torch_info)" || true
    [ "${have_cuda:-none}" != none ] \
        || die "$TORCH_CUDA_SPEC installed a CPU-only torch; set TORCH_CUDA_SPEC/TORCH_PIP_ARGS in $PROFILE_FILE"
fi
if ! torch_is_wanted "$have_v" || { [ "$TORCH_BUILD" = cpu ] && [ "${have_cuda:-none}" != none ]; }; then
    say "installing $TORCH_SPEC"
    # shellcheck disable=SC2086
    "${PIP[@]}" install $TORCH_PIP_ARGS "$TORCH_SPEC"
    read -r have_v have_cuda <<<"$(torch_info)" || true
fi
# A CUDA torch brings nvidia-nccl-cu13, whose nvidia/nccl/lib/libnccl.so.2 is the same file as
# TensorFlow's nvidia-nccl-cu12 one (backends/README.md, "GPU profiles and TensorFlow").
[ "$TORCH_BUILD" != cpu ] || [ "${have_cuda:-none}" = none ] \
    || die "torch $have_v is a CUDA $have_cuda build, profile $PROFILE needs a CPU-only torch: set TORCH_SPEC/TORCH_PIP_ARGS in $PROFILE_FILE"

if [ "$SKIP_MPI4PY" != 1 ] && ! "$VPY" -c 'import mpi4py' 2>/dev/null; then
    # Built from source so it links the site's MPI (Debian MPICH here, Cray MPICH on ARCHER2).
    say "building mpi4py against $(command -v "${MPICC:-mpicc}" || echo mpicc)"
    "${PIP[@]}" install --no-binary mpi4py mpi4py
fi

# tensorflow-cpu and tensorflow (the build tensorflow[and-cuda] takes) install the same files,
# the tensorflow module. The one the profile does not take is removed first, and the one it takes
# too if both are there (removing either breaks the other), so that pip below lays it down whole.
case ",$PIP_EXTRAS," in
    *,cosmoflow-cuda,*) tf_want=tensorflow tf_other=tensorflow-cpu ;;
    *,cosmoflow,*) tf_want=tensorflow-cpu tf_other=tensorflow ;;
    *) tf_want="" tf_other="" ;;
esac
stamp="$VENV/.deepcam-deps"
if [ -n "$tf_other" ]; then
    tf_remove=$("$VPY" - "$tf_other" "$tf_want" <<'PYEOF'
import sys
from importlib.metadata import PackageNotFoundError, distribution
have = []
for name in sys.argv[1:]:
    try:
        distribution(name)
        have.append(name)
    except PackageNotFoundError:
        pass
print(" ".join(have) if sys.argv[1] in have else "")
PYEOF
)
    if [ -n "$tf_remove" ]; then
        say "removing $tf_remove: profile $PROFILE takes $tf_want, and both install the tensorflow module"
        # shellcheck disable=SC2086
        "${PIP[@]}" uninstall -y $tf_remove
        rm -f "$stamp"
    fi
fi

# The dependencies (TensorFlow among them) must never replace the torch just installed: the
# resolver could otherwise swap the CPU build for PyPI's CUDA one. Pin the installed
# distribution's own version ("2.13.0+cpu" here, "2.13.0" for PyPI's CUDA wheel).
torch_dist=$("$VPY" -c 'from importlib.metadata import version; print(version("torch"))')
deps_key=$({ cat "$ROOT/setup.cfg" "$ROOT/pyproject.toml" 2>/dev/null; echo "torch==$torch_dist"; echo "extras=$PIP_EXTRAS"; } | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$deps_key" ]; then
    say "installing deepcam-hvd[$PIP_EXTRAS] and its Python dependencies (TensorFlow among them)"
    "${PIP[@]}" install "setuptools>=64" wheel
    pins=$(mktemp)
    echo "torch==$torch_dist" > "$pins"
    "${PIP[@]}" install -c "$pins" -e "$ROOT[$PIP_EXTRAS]"
    rm -f "$pins"
    "$VPY" -c 'from importlib.metadata import version; import sys; sys.exit(version("torch") != sys.argv[1])' "$torch_dist" \
        || die "installing the dependencies replaced torch $torch_dist"
    echo "$deps_key" > "$stamp"
fi

# --- 3. Horovod, built once per key and cached ------------------------------------------
torch_v=$(torch_info); torch_v=${torch_v%% *}
[ -n "$torch_v" ] || die "no torch in $VENV"
py_v=$("$VPY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
mpi_id=$({ "${MPICC:-mpicc}" -show 2>/dev/null || true; "${CXX:-c++}" --version 2>/dev/null | head -1; } | sha256sum | cut -c1-12)
patch_id=$(sha256sum "$ROOT/backends/patch_horovod.py" | cut -c1-12)
flags_id=$(echo "$HOROVOD_BUILD_ENV" | tr ' ' '\n' | sort | sha256sum | cut -c1-12)
# Frameworks whose Horovod extension the profile builds (EXPECT_BUILD names them for section 4),
# each with its version in the key: torch unless HOROVOD_WITHOUT_PYTORCH=1, TensorFlow with
# HOROVOD_WITH_TENSORFLOW=1.
frameworks="" fw_part=""
case " $HOROVOD_BUILD_ENV " in
    *" HOROVOD_WITHOUT_PYTORCH=1 "*) ;;
    *) frameworks="torch" fw_part="-torch${torch_v}" ;;
esac
case " $HOROVOD_BUILD_ENV " in
    *" HOROVOD_WITH_TENSORFLOW=1 "*)
        # The version of the distribution that provides the tensorflow module (tensorflow-cpu or
        # tensorflow).
        tf_v=$("$VPY" -c 'from importlib.metadata import packages_distributions as p, version
print(version(sorted(p()["tensorflow"])[0]))' 2>/dev/null) \
            || die "profile $PROFILE builds Horovod for TensorFlow, but $VENV has no tensorflow"
        frameworks="${frameworks:+$frameworks }tensorflow" fw_part="${fw_part}-tf${tf_v}" ;;
esac
[ -n "$frameworks" ] || die "profile $PROFILE builds Horovod for no framework (HOROVOD_BUILD_ENV)"
key="hvd${HOROVOD_VERSION}${fw_part}-py${py_v}-${PROFILE}-f${flags_id}-c${mpi_id}-p${patch_id}"
if [ "$GPU_TOOLCHAIN" = cuda ]; then
    # nvcc, CUDA headers and NCCL matched to the CUDA of CUDA_TOOLCHAIN_FRAMEWORK (torch's from
    # PyPI if the site has none); exports HOROVOD_CUDA_HOME, HOROVOD_NCCL_* for the build below.
    # shellcheck source=backends/cuda_toolchain.sh
    . "$ROOT/backends/cuda_toolchain.sh"
    cuda_toolchain "$VPY" "$VENV/cuda-layout" install || die "no CUDA toolchain for the build (above)"
    key="$key-$CUDA_TOOLCHAIN_ID"
fi
marker="$VENV/.horovod-key"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}  # TF's oneDNN/CPU-feature banners

# Section 4's check, run once: it also tells whether an installed build is intact. Each
# framework's extension is its own library with its own controllers: "mpi", "gloo" and "nccl"
# must hold in every framework that EXPECT_BUILD names.
verify_build() {
    "$VPY" - "$EXPECT_BUILD" <<'PYEOF'
import importlib
import sys
expect = sys.argv[1].split()
have = {}
for fw in [f for f in ("torch", "tensorflow") if f in expect]:
    try:
        hvd = importlib.import_module(f"horovod.{fw}")
    except ImportError as e:
        sys.exit(f"[install] error: horovod build lacks {fw}: {e}")
    have[fw] = True
    for name, built in (("mpi", hvd.mpi_built()), ("gloo", hvd.gloo_built()),
                        ("nccl", hvd.nccl_built() > 0)):
        have[name] = have.get(name, True) and bool(built)
missing = [k for k in expect if not have.get(k)]
if missing:
    sys.exit(f"[install] error: horovod build lacks {', '.join(missing)}")
order = ("torch", "tensorflow", "mpi", "gloo", "nccl")
print("[install] horovod build ok: " + ", ".join(k for k in order if have.get(k)))
PYEOF
}

if [ "$(cat "$marker" 2>/dev/null)" = "$key" ] && verified=$(verify_build 2>/dev/null); then
    say "horovod $HOROVOD_VERSION already installed ($key)"
else
    wheel_dir="$CACHE/$key"
    wheel=$(ls "$wheel_dir"/horovod-*.whl 2>/dev/null | head -1 || true)
    if [ -z "$wheel" ]; then
        say "building horovod $HOROVOD_VERSION for $frameworks ($key); this takes 8-17 minutes on 2 cores"
        build_start=$SECONDS
        work=$(mktemp -d)
        trap 'rm -rf "$work"' EXIT
        "${PIP[@]}" download --no-deps --no-binary :all: "horovod==$HOROVOD_VERSION" -d "$work"
        tar -xzf "$work/horovod-$HOROVOD_VERSION.tar.gz" -C "$work"
        src="$work/horovod-$HOROVOD_VERSION"
        # C++20 for a torch extension against torch 2.14+, else C++17 (TensorFlow 2.15: 17)
        cxx=()
        [ "$frameworks" != tensorflow ] || cxx=(--cxx-standard 17)
        "$VPY" "$ROOT/backends/patch_horovod.py" "$src" "${cxx[@]}"
        # CMake 4 refuses gloo's ancient cmake_minimum_required; this lets it configure.
        export CMAKE_POLICY_VERSION_MINIMUM=3.5
        export MAKEFLAGS="-j$(nproc)"
        "${PIP[@]}" install "cmake<4" 2>/dev/null || true
        mkdir -p "$wheel_dir"
        # --no-build-isolation: build against the torch (and TensorFlow) already in the venv.
        # shellcheck disable=SC2086
        env $HOROVOD_BUILD_ENV PATH="$VENV/bin:$PATH" \
            "$VPY" -m pip wheel --no-deps --no-build-isolation -w "$work/dist" "$src" \
            > "$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; die "horovod build failed (log above)"; }
        cp "$work"/dist/horovod-*.whl "$wheel_dir/"
        say "built in $((SECONDS - build_start)) s"
        wheel=$(ls "$wheel_dir"/horovod-*.whl | head -1)
    else
        say "using cached horovod wheel $wheel"
    fi
    "${PIP[@]}" install --no-deps --force-reinstall "$wheel"
    "${PIP[@]}" install "$wheel"  # its runtime deps (psutil, cloudpickle, cffi, ...)
    verified=$(verify_build) || die "horovod $HOROVOD_VERSION installed, but the check above fails"
    echo "$key" > "$marker"
fi

# --- 4. verify the build has what the profile promises (verify_build above) --------------
echo "$verified"
# Which profile this venv holds, for `deepcam-hvd jobs render` (it warns when a GPU job's
# --venv holds the other framework's GPU build).
echo "$PROFILE" > "$VENV/.deepcam-profile"
say "done: $VENV/bin/deepcam-hvd, $VENV/bin/horovodrun"

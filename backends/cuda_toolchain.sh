# shellcheck shell=bash
# CUDA compiler and NCCL for a Horovod GPU build, matched to the framework Horovod builds against.
# Sourced (not run) by backends/install.sh (nvidia-nccl, nvidia-nccl-tf profiles),
# backends/check_gpu_build.sh and benchmarks/gpu_check.sh:
#
#   . backends/cuda_toolchain.sh
#   CUDA_TOOLCHAIN_FRAMEWORK=torch|tensorflow cuda_toolchain PYTHON LAYOUT_DIR [install]
#
# CUDA_TOOLCHAIN_FRAMEWORK (default torch) names the framework whose CUDA build decides the CUDA
# version: torch.version.cuda (torch 2.13.0: 13.0) or TensorFlow's
# tf.sysconfig.get_build_info()["cuda_version"] (tensorflow[and-cuda] 2.15.1: 12.2).
# It finds nvcc, the CUDA runtime headers/libraries and NCCL for that framework in PYTHON's
# environment, and exports what Horovod's CMake reads: HOROVOD_CUDA_HOME, CUDA_HOME
# (torch.utils.cpp_extension, which Horovod asks whether torch has CUDA),
# HOROVOD_NCCL_HOME/_INCLUDE/_LIB, HOROVOD_NCCL_LINK=SHARED, and PATH with nvcc first. It
# also sets CUDA_TOOLCHAIN_ID (nvcc + NCCL versions, for cache keys) and CUDA_TOOLCHAIN_DESC (one
# line saying what was found where).
#
# Where the toolkit comes from, first match; its CUDA major version must equal the framework's:
#   1. $HOROVOD_CUDA_HOME (a site toolkit; set it to use a module's CUDA);
#   2. PyPI's nvidia-* packages in PYTHON's environment (site-packages/nvidia/cu<major>/: what
#      `pip install "cuda-toolkit[nvcc,crt,nvvm,cudart,cccl]==<torch's pin>"` installs);
#   3. $CUDA_HOME, $CUDA_PATH, the nvcc on PATH (wrapper scripts included: nvcc itself is asked
#      where its tree is), /usr/local/cuda, /usr/local/cuda-<major>.* (the framework's minor first);
#   4. with `install`: pip-installs "cuda-toolkit[nvcc,crt,nvvm,cudart,cccl]" at the exact version
#      the framework's wheel requires (torch, CUDA 13 and later), then 2.
# CUDA 12 (TensorFlow 2.15.1) has no step 2 or 4: PyPI's nvidia-cuda-nvcc-cu12 wheels (12.0.76 to
# 12.9.86) hold ptxas, libnvvm and libdevice but no nvcc, cicc, cudafe++, fatbinary or nvlink, so
# they cannot compile CUDA C++; the toolkit must be the site's (HOROVOD_CUDA_HOME, a module).
# CUDA_TOOLCHAIN_NVCC_MAJOR=13 (tensorflow only) accepts an nvcc of CUDA 13 instead: Horovod's TF
# extension links the CUDA runtime statically, so its kernels may come from another CUDA than
# TF's, but then the GPU nodes' driver must support CUDA 13 (as torch 2.13.0's already must).
# A candidate must also compile a test kernel (a pip nvcc with newer nvvm/crt packages cannot).
# CUDA_TOOLCHAIN_SOURCE=pip keeps to 2 and 4 (PyPI's packages only, even where the machine has
# a toolkit); =system keeps to 1 and 3; the default, auto, tries all.
# NCCL: $HOROVOD_NCCL_HOME, else the nvidia-nccl-cu<major> package the framework itself loads
# (site-packages/nvidia/nccl, so Horovod and the framework share one libnccl.so.2), else the
# toolkit's or /usr's nccl.h. For tensorflow with NCCL from site-packages, LDFLAGS gets a
# relative rpath to it (TF does not load libnccl.so.2 before Horovod's extension, torch does).
#
# The pip packages are not laid out like a toolkit: nvcc looks for lib64/, CMake's
# FindCUDAToolkit for libcudart.so, Horovod's FindNCCL for libnccl.so, and none of these exist
# there. So LAYOUT_DIR/cuda and LAYOUT_DIR/nccl are rebuilt as symlink trees that have them
# (bin/ is a real directory: nvcc finds its tree as "<dir of nvcc>/..", so a symlinked bin/ would
# lead it back into the package). Nothing inside site-packages is changed.

_cuda_say() { printf '[cuda] %s\n' "$*" >&2; }
_cuda_die() { printf '[cuda] error: %s\n' "$*" >&2; return 1; }

# The CUDA version ("13.0", "12.2") the framework $2 was built with, or nothing for a CPU build.
_cuda_framework_version() {
    case "$2" in
        torch) "$1" -c 'import torch; print(torch.version.cuda or "")' 2>/dev/null ;;
        tensorflow)
            TF_CPP_MIN_LOG_LEVEL=3 "$1" -c 'import tensorflow as tf
info = tf.sysconfig.get_build_info()
print(info.get("cuda_version", "") if info.get("is_cuda_build") else "")' 2>/dev/null ;;
    esac
}

# The framework's version, for messages.
_cuda_framework_release() {
    "$1" -c 'import importlib, sys; print(importlib.import_module(sys.argv[1]).__version__)' "$2" 2>/dev/null \
        || echo 'not importable'
}

# The CUDA release an nvcc reports ("13.0").
_cuda_nvcc_release() {
    "$1" --version 2>/dev/null | sed -n 's/.*release \([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -1
}

# site-packages/nvidia of PYTHON's environment (every nvidia/ directory on sys.path, one a line).
_cuda_nvidia_dirs() {
    "$1" - <<'PYEOF'
import os, sys
for entry in sys.path:
    path = os.path.join(entry, "nvidia")
    if entry and os.path.isdir(path):
        print(os.path.realpath(path))
PYEOF
}

# The cuda-toolkit version the distribution $2 pins ("13.0.3" for torch 2.13.0), or nothing.
_cuda_toolkit_pin() {
    "$1" - "$2" <<'PYEOF'
import re
import sys
from importlib.metadata import PackageNotFoundError, requires
try:
    reqs = requires(sys.argv[1]) or []
except PackageNotFoundError:
    reqs = []
for req in reqs:
    m = re.match(r"\s*cuda-toolkit(\[[^\]]*\])?\s*==\s*([0-9][0-9.]*)", req)
    if m:
        print(m.group(2))
        break
PYEOF
}

# The tree an nvcc works in (its "TOP"), as nvcc itself reports it: right for wrapper scripts
# and symlinks on PATH too.
_cuda_nvcc_top() {
    local top
    top=$("$1" --dryrun -c -x cu /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)
    [ -n "$top" ] && (cd "$top" 2>/dev/null && pwd -P)
}

# Whether an nvcc compiles a kernel (compile only: no linking, no GPU). Catches a pip toolkit whose
# nvidia-nvvm / nvidia-cuda-crt are newer than its nvidia-cuda-nvcc ("ptxas fatal: Unsupported
# .version"), which `pip install "cuda-toolkit[nvcc]==13.0.2"` produces. On failure the last line
# of nvcc's output is in _CUDA_NVCC_ERROR.
_cuda_nvcc_works() {
    local tmp rc=0
    tmp=$(mktemp -d)
    printf '__global__ void k(float *x) { x[threadIdx.x] = 1.0f; }\n' > "$tmp/t.cu"
    "$1" -c "$tmp/t.cu" -o "$tmp/t.o" > "$tmp/log" 2>&1 || rc=$?
    _CUDA_NVCC_ERROR=$(grep -m1 -E 'fatal|error' "$tmp/log" || grep -v '^\s*$' "$tmp/log" | tail -1)
    rm -rf "$tmp"
    return "$rc"
}

# Echo the first toolkit root (a directory with bin/nvcc) whose CUDA major is that of $2 (the
# framework's CUDA, "12.2") and whose nvcc compiles; $3 names the framework and $4 the wanted
# CUDA, for messages.
_cuda_find_home() {
    local py=$1 want=$2 fw=$3 what=$4 major=${2%%.*} source=${CUDA_TOOLCHAIN_SOURCE:-auto} candidates=() dir rel
    case "$source" in auto|pip|system) ;; *) _cuda_die "CUDA_TOOLCHAIN_SOURCE=$source: use auto, pip or system"; return 1 ;; esac
    if [ "$source" != pip ] && [ -n "${HOROVOD_CUDA_HOME:-}" ]; then
        candidates+=("$HOROVOD_CUDA_HOME")
    fi
    if [ "$source" != system ]; then
        while IFS= read -r dir; do candidates+=("$dir/cu$major"); done < <(_cuda_nvidia_dirs "$py")
    fi
    if [ "$source" != pip ]; then
        [ -n "${CUDA_HOME:-}" ] && candidates+=("$CUDA_HOME")
        [ -n "${CUDA_PATH:-}" ] && candidates+=("$CUDA_PATH")
        if command -v nvcc >/dev/null 2>&1 && dir=$(_cuda_nvcc_top "$(command -v nvcc)"); then
            candidates+=("$dir")
        fi
        candidates+=(/usr/local/cuda)
        # side-by-side toolkits (/usr/local/cuda-12.2, -12.4, ...): the framework's own first
        [ -d "/usr/local/cuda-$want" ] && candidates+=("/usr/local/cuda-$want")
        while IFS= read -r dir; do
            [ "$dir" = "/usr/local/cuda-$want" ] || candidates+=("$dir")
        done < <(ls -d "/usr/local/cuda-$major".* 2>/dev/null | sort -rV)
    fi
    for dir in "${candidates[@]}"; do
        [ -x "$dir/bin/nvcc" ] || continue
        rel=$(_cuda_nvcc_release "$dir/bin/nvcc")
        if [ "${rel%%.*}" != "$major" ]; then
            _cuda_say "skipping $dir: nvcc is CUDA ${rel:-?}, $what"
        elif ! _cuda_nvcc_works "$dir/bin/nvcc"; then
            _cuda_say "skipping $dir: its nvcc cannot compile a test kernel ($_CUDA_NVCC_ERROR); from pip, install nvcc, crt and nvvm at one version: pip install \"cuda-toolkit[nvcc,crt,nvvm,cudart,cccl]==<$fw's cuda-toolkit>\""
        else
            echo "$dir"
            return 0
        fi
    done
    return 1
}

# Rebuild $2 as a toolkit-shaped symlink tree of the pip toolkit at $1.
_cuda_layout_toolkit() {
    local src=$1 dst=$2 f
    rm -rf "$dst"
    mkdir -p "$dst/bin" "$dst/lib64"
    for f in "$src"/bin/*; do ln -s "$f" "$dst/bin/"; done
    for f in include nvvm; do
        [ -e "$src/$f" ] && ln -s "$src/$f" "$dst/$f"
    done
    for f in "$src"/lib/*; do ln -s "$f" "$dst/lib64/"; done
    # unversioned names the linker and FindCUDAToolkit look for (libcudart.so -> .so.13, ...)
    for f in "$src"/lib/lib*.so.*; do
        [ -e "$f" ] || continue
        local base=${f##*/}
        base=${base%%.so.*}.so
        [ -e "$dst/lib64/$base" ] || ln -s "$f" "$dst/lib64/$base"
    done
    ln -s lib64 "$dst/lib"
}

# Rebuild $2 as include/ + lib/ (with libnccl.so) for the NCCL whose headers are in $1/include.
_cuda_layout_nccl() {
    local src=$1 dst=$2 lib
    for lib in "$src"/lib/libnccl.so "$src"/lib/libnccl.so.* ""; do
        [ -e "$lib" ] && break
    done
    [ -n "$lib" ] || { _cuda_die "no libnccl.so* under $src/lib"; return 1; }
    rm -rf "$dst"
    mkdir -p "$dst/lib"
    ln -s "$src/include" "$dst/include"
    ln -s "$lib" "$dst/lib/libnccl.so"
    [ "${lib##*/}" = libnccl.so.2 ] || ln -s "$lib" "$dst/lib/libnccl.so.2"
}

# "2.29.7" from an nccl.h.
_cuda_nccl_version() {
    awk '/#define NCCL_(MAJOR|MINOR|PATCH)[ \t]/ {v[$2]=$3}
         END {if (v["NCCL_MAJOR"] != "") printf "%s.%s.%s\n", v["NCCL_MAJOR"], v["NCCL_MINOR"], v["NCCL_PATCH"]}' "$1"
}

cuda_toolchain() {
    local py=$1 layout=$2 mode=${3:-} fw=${CUDA_TOOLCHAIN_FRAMEWORK:-torch} fw_cuda major home pin
    local nccl_src="" nccl_pip=0 nccl_home dir nvcc_v want what
    case "$fw" in torch|tensorflow) ;; *) _cuda_die "CUDA_TOOLCHAIN_FRAMEWORK=$fw: use torch or tensorflow"; return 1 ;; esac
    fw_cuda=$(_cuda_framework_version "$py" "$fw")
    [ -n "$fw_cuda" ] || { _cuda_die "$py has a CPU-only $fw ($(_cuda_framework_release "$py" "$fw")); a GPU build needs $fw's CUDA build"; return 1; }
    major=${fw_cuda%%.*} want=$fw_cuda what="$fw is CUDA ${fw_cuda%%.*}.x"
    if [ -n "${CUDA_TOOLCHAIN_NVCC_MAJOR:-}" ] && [ "$CUDA_TOOLCHAIN_NVCC_MAJOR" != "$major" ]; then
        # Horovod's TF extension links the CUDA runtime statically (no libcudart.so NEEDED), so
        # its kernels may come from another CUDA than TF's; torch.utils.cpp_extension refuses that.
        [ "$fw" = tensorflow ] || { _cuda_die "CUDA_TOOLCHAIN_NVCC_MAJOR=$CUDA_TOOLCHAIN_NVCC_MAJOR: only for tensorflow ($fw needs nvcc of its own CUDA $major.x)"; return 1; }
        major=$CUDA_TOOLCHAIN_NVCC_MAJOR want=$CUDA_TOOLCHAIN_NVCC_MAJOR what="CUDA_TOOLCHAIN_NVCC_MAJOR is $CUDA_TOOLCHAIN_NVCC_MAJOR"
        _cuda_say "CUDA_TOOLCHAIN_NVCC_MAJOR=$major: an nvcc of CUDA $major.x for $fw's CUDA $fw_cuda; the GPU nodes' driver must support CUDA $major.x"
    fi

    if ! home=$(_cuda_find_home "$py" "$want" "$fw" "$what"); then
        if [ "$mode" != install ] || [ "${CUDA_TOOLCHAIN_SOURCE:-auto}" = system ]; then
            _cuda_die "no CUDA $major.x nvcc found (HOROVOD_CUDA_HOME, site-packages/nvidia/cu$major, CUDA_HOME, PATH, /usr/local/cuda, /usr/local/cuda-$major.*; CUDA_TOOLCHAIN_SOURCE=${CUDA_TOOLCHAIN_SOURCE:-auto})"
            return 1
        fi
        pin=$(_cuda_toolkit_pin "$py" "$fw")
        if [ -z "$pin" ] && [ "$major" -lt 13 ]; then
            _cuda_die "$fw is CUDA $fw_cuda and PyPI has no CUDA $major nvcc (nvidia-cuda-nvcc-cu$major holds ptxas and libdevice only): set HOROVOD_CUDA_HOME to a CUDA $major.x toolkit, e.g. the site's CUDA $fw_cuda module"
            return 1
        fi
        [ -n "$pin" ] || { _cuda_die "$fw $fw_cuda does not pin a cuda-toolkit package: set HOROVOD_CUDA_HOME to a CUDA $major.x toolkit"; return 1; }
        # every piece pinned by the meta-package: its nvcc extra alone leaves nvvm and crt free
        _cuda_say "installing cuda-toolkit[nvcc,crt,nvvm,cudart,cccl]==$pin (nvcc, headers) to match $fw"
        "$py" -m pip install --disable-pip-version-check -q "cuda-toolkit[nvcc,crt,nvvm,cudart,cccl]==$pin" \
            || { _cuda_die "pip install cuda-toolkit[nvcc,crt,nvvm,cudart,cccl]==$pin failed"; return 1; }
        home=$(_cuda_find_home "$py" "$want" "$fw" "$what") || { _cuda_die "cuda-toolkit $pin installed but no nvcc found"; return 1; }
    fi

    mkdir -p "$layout"
    layout=$(cd "$layout" && pwd)
    if [ -d "$home/lib64" ] || [ -d "$home/targets" ]; then
        rm -rf "$layout/cuda"  # a toolkit as NVIDIA installs it (lib64/, targets/): use it as it is
    else
        _cuda_layout_toolkit "$home" "$layout/cuda"
        home="$layout/cuda"
    fi
    [ -e "$home/include/cuda_runtime.h" ] || ls "$home"/targets/*/include/cuda_runtime.h >/dev/null 2>&1 \
        || { _cuda_die "$home has no include/cuda_runtime.h (install the CUDA runtime headers: nvidia-cuda-runtime)"; return 1; }

    if [ -n "${HOROVOD_NCCL_HOME:-}" ]; then
        nccl_src=$HOROVOD_NCCL_HOME
    else
        while IFS= read -r dir; do
            if [ -e "$dir/nccl/include/nccl.h" ]; then nccl_src=$dir/nccl nccl_pip=1; break; fi
        done < <(_cuda_nvidia_dirs "$py")
        if [ -z "$nccl_src" ]; then
            for dir in "$home" /usr; do
                if [ -e "$dir/include/nccl.h" ]; then nccl_src=$dir; break; fi
            done
        fi
    fi
    [ -e "${nccl_src:-/nonexistent}/include/nccl.h" ] || { _cuda_die "no NCCL found (nccl.h): pip install nvidia-nccl-cu$major, or set HOROVOD_NCCL_HOME"; return 1; }
    if [ -e "$nccl_src/lib/libnccl.so" ] || [ -e "$nccl_src/lib64/libnccl.so" ]; then
        nccl_home=$nccl_src
        rm -rf "$layout/nccl"
        export HOROVOD_NCCL_LIB="$nccl_src/lib"
        [ -e "$nccl_src/lib/libnccl.so" ] || export HOROVOD_NCCL_LIB="$nccl_src/lib64"
    elif [ -d "$nccl_src/lib" ] && [ "$nccl_src" != /usr ]; then
        _cuda_layout_nccl "$nccl_src" "$layout/nccl" || return 1
        nccl_home="$layout/nccl"
        export HOROVOD_NCCL_LIB="$nccl_home/lib"
    else
        nccl_home=$nccl_src  # e.g. /usr with libnccl.so in a multiarch directory
        unset HOROVOD_NCCL_LIB
    fi

    export HOROVOD_CUDA_HOME="$home" CUDA_HOME="$home"
    export HOROVOD_NCCL_HOME="$nccl_home" HOROVOD_NCCL_INCLUDE="$nccl_home/include"
    export HOROVOD_NCCL_LINK=SHARED
    if [ "$fw" = tensorflow ] && [ "$nccl_pip" = 1 ]; then
        # import torch loads libnccl.so.2 (NEEDED by libtorch_cuda); TF 2.15 opens NCCL only when
        # it uses it, so Horovod's TF extension finds it itself, relative to site-packages as TF
        # finds its nvidia/* libraries (<site>/horovod/tensorflow/mpi_lib*.so).
        case " ${LDFLAGS:-} " in
            *'$ORIGIN/../../nvidia/nccl/lib'*) ;;
            *) export LDFLAGS="${LDFLAGS:+$LDFLAGS }-Wl,-rpath,\$ORIGIN/../../nvidia/nccl/lib" ;;
        esac
    fi
    export PATH="$home/bin:$PATH"
    nvcc_v=$("$home/bin/nvcc" --version | sed -n 's/.*, V\([0-9.]*\).*/\1/p' | head -1)
    CUDA_TOOLCHAIN_ID="cuda${nvcc_v}-nccl$(_cuda_nccl_version "$nccl_home/include/nccl.h")"
    CUDA_TOOLCHAIN_DESC="$fw CUDA $fw_cuda; nvcc $nvcc_v in $home ($(readlink -f "$home/bin/nvcc")); NCCL $(_cuda_nccl_version "$nccl_home/include/nccl.h") in $nccl_home"
    export CUDA_TOOLCHAIN_ID CUDA_TOOLCHAIN_DESC
    _cuda_say "$CUDA_TOOLCHAIN_DESC"
}

# shellcheck shell=bash
# CUDA compiler and NCCL for a Horovod GPU build, matched to the torch that Horovod builds against.
# Sourced (not run) by backends/install.sh (nvidia-nccl profile), backends/check_gpu_build.sh and
# benchmarks/gpu_check.sh:
#
#   . backends/cuda_toolchain.sh
#   cuda_toolchain PYTHON LAYOUT_DIR [install]
#
# It finds nvcc, the CUDA runtime headers/libraries and NCCL for PYTHON's torch, and exports what
# Horovod's CMake reads: HOROVOD_CUDA_HOME, CUDA_HOME (torch.utils.cpp_extension, which Horovod
# asks whether torch has CUDA), HOROVOD_NCCL_HOME/_INCLUDE/_LIB, HOROVOD_NCCL_LINK=SHARED, and
# PATH with nvcc first. It also sets CUDA_TOOLCHAIN_ID (nvcc + NCCL versions, for cache keys) and
# CUDA_TOOLCHAIN_DESC (one line saying what was found where).
#
# Where the toolkit comes from, first match; its CUDA major version must equal torch's:
#   1. $HOROVOD_CUDA_HOME (a site toolkit; set it to use a module's CUDA);
#   2. PyPI's nvidia-* packages in PYTHON's environment (site-packages/nvidia/cu<major>/: what
#      `pip install "cuda-toolkit[nvcc,crt,nvvm,cudart,cccl]==<torch's pin>"` installs);
#   3. $CUDA_HOME, $CUDA_PATH, the nvcc on PATH (wrapper scripts included: nvcc itself is asked
#      where its tree is), /usr/local/cuda;
#   4. with `install`: pip-installs "cuda-toolkit[nvcc,crt,nvvm,cudart,cccl]" at the exact version
#      torch's wheel requires (CUDA 13 and later; older CUDA needs HOROVOD_CUDA_HOME), then 2.
# A candidate must also compile a test kernel (a pip nvcc with newer nvvm/crt packages cannot).
# CUDA_TOOLCHAIN_SOURCE=pip keeps to 2 and 4 (PyPI's packages only, even where the machine has
# a toolkit); =system keeps to 1 and 3; the default, auto, tries all.
# NCCL: $HOROVOD_NCCL_HOME, else the nvidia-nccl-cu<major> package torch itself loads (so
# Horovod and torch share one libnccl.so.2), else the toolkit's or /usr's nccl.h.
#
# The pip packages are not laid out like a toolkit: nvcc looks for lib64/, CMake's
# FindCUDAToolkit for libcudart.so, Horovod's FindNCCL for libnccl.so, and none of these exist
# there. So LAYOUT_DIR/cuda and LAYOUT_DIR/nccl are rebuilt as symlink trees that have them
# (bin/ is a real directory: nvcc finds its tree as "<dir of nvcc>/..", so a symlinked bin/ would
# lead it back into the package). Nothing inside site-packages is changed.

_cuda_say() { printf '[cuda] %s\n' "$*" >&2; }
_cuda_die() { printf '[cuda] error: %s\n' "$*" >&2; return 1; }

# torch's CUDA version ("13.0"), or nothing for a CPU build.
_cuda_torch_version() {
    "$1" -c 'import torch; print(torch.version.cuda or "")' 2>/dev/null
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

# The cuda-toolkit requirement torch's wheel pins ("cuda-toolkit[...]==13.0.3"), or nothing.
_cuda_torch_toolkit_pin() {
    "$1" - <<'PYEOF'
import re
from importlib.metadata import requires
for req in requires("torch") or []:
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

# Echo the first toolkit root (a directory with bin/nvcc) whose CUDA major is $2 and whose nvcc
# compiles.
_cuda_find_home() {
    local py=$1 major=$2 source=${CUDA_TOOLCHAIN_SOURCE:-auto} candidates=() dir rel
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
    fi
    for dir in "${candidates[@]}"; do
        [ -x "$dir/bin/nvcc" ] || continue
        rel=$(_cuda_nvcc_release "$dir/bin/nvcc")
        if [ "${rel%%.*}" != "$major" ]; then
            _cuda_say "skipping $dir: nvcc is CUDA ${rel:-?}, torch is CUDA $major.x"
        elif ! _cuda_nvcc_works "$dir/bin/nvcc"; then
            _cuda_say "skipping $dir: its nvcc cannot compile a test kernel ($_CUDA_NVCC_ERROR); from pip, install nvcc, crt and nvvm at one version: pip install \"cuda-toolkit[nvcc,crt,nvvm,cudart,cccl]==<torch's cuda-toolkit>\""
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
    local py=$1 layout=$2 mode=${3:-} torch_cuda major home pin nccl_src="" nccl_home dir nvcc_v
    torch_cuda=$(_cuda_torch_version "$py")
    [ -n "$torch_cuda" ] || { _cuda_die "$py has a CPU-only torch ($("$py" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo 'not importable')); a GPU build needs torch's CUDA build"; return 1; }
    major=${torch_cuda%%.*}

    if ! home=$(_cuda_find_home "$py" "$major"); then
        if [ "$mode" != install ] || [ "${CUDA_TOOLCHAIN_SOURCE:-auto}" = system ]; then
            _cuda_die "no CUDA $major.x nvcc found (HOROVOD_CUDA_HOME, site-packages/nvidia/cu$major, CUDA_HOME, PATH, /usr/local/cuda; CUDA_TOOLCHAIN_SOURCE=${CUDA_TOOLCHAIN_SOURCE:-auto})"
            return 1
        fi
        pin=$(_cuda_torch_toolkit_pin "$py")
        [ -n "$pin" ] || { _cuda_die "torch $torch_cuda does not pin a cuda-toolkit package (CUDA < 13?): set HOROVOD_CUDA_HOME to a CUDA $major.x toolkit"; return 1; }
        # every piece pinned by the meta-package: its nvcc extra alone leaves nvvm and crt free
        _cuda_say "installing cuda-toolkit[nvcc,crt,nvvm,cudart,cccl]==$pin (nvcc, headers) to match torch"
        "$py" -m pip install --disable-pip-version-check -q "cuda-toolkit[nvcc,crt,nvvm,cudart,cccl]==$pin" \
            || { _cuda_die "pip install cuda-toolkit[nvcc,crt,nvvm,cudart,cccl]==$pin failed"; return 1; }
        home=$(_cuda_find_home "$py" "$major") || { _cuda_die "cuda-toolkit $pin installed but no nvcc found"; return 1; }
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
            if [ -e "$dir/nccl/include/nccl.h" ]; then nccl_src=$dir/nccl; break; fi
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
    export PATH="$home/bin:$PATH"
    nvcc_v=$("$home/bin/nvcc" --version | sed -n 's/.*, V\([0-9.]*\).*/\1/p' | head -1)
    CUDA_TOOLCHAIN_ID="cuda${nvcc_v}-nccl$(_cuda_nccl_version "$nccl_home/include/nccl.h")"
    CUDA_TOOLCHAIN_DESC="torch CUDA $torch_cuda; nvcc $nvcc_v in $home ($(readlink -f "$home/bin/nvcc")); NCCL $(_cuda_nccl_version "$nccl_home/include/nccl.h") in $nccl_home"
    export CUDA_TOOLCHAIN_ID CUDA_TOOLCHAIN_DESC
    _cuda_say "$CUDA_TOOLCHAIN_DESC"
}

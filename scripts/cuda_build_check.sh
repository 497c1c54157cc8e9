#!/usr/bin/env bash
# Compile-check the CUDA build (`cargo build --release --features cuda`) on a machine with no
# GPU and no system CUDA toolkit.
#
# The toolkit comes from NVIDIA's wheels on PyPI (pinned versions, pinned sha256):
#   nvidia-cuda-nvcc  (bin/nvcc, ptxas, fatbinary, nvlink)   nvidia-nvvm (nvvm/bin/cicc, libdevice)
#   nvidia-cuda-crt   (include/crt)                          nvidia-cuda-runtime (headers, libcudart)
#   nvidia-cuda-cccl  (include/cccl: cub, thrust, libcu++)
# CUDA 13.4 is the newest release cudarc 0.19.10 supports (13.5 is rejected by its build
# script); there is no CUDA 12 wheel with nvcc in it (the cu12 nvcc wheels carry only ptxas).
#
# The wheels hold no libcuda, libcublas, libcublasLt, libcurand or libnvrtc, which cudarc
# (feature dynamic-linking, set by candle-core) links against. Like the toolkit's lib/stubs,
# the script builds link-time stubs for them: shared objects with the real sonames that define
# every function cudarc declares (names read from cudarc's sys bindings), so the binary links;
# at run time the real driver and libraries on the GPU machine are loaded instead.
#
# Usage:  scripts/cuda_build_check.sh [extra cargo args]
# Env:    CARGO_TARGET_DIR   (default: target-cuda in the repository root)
#         CUDA_COMPUTE_CAP   (default 80; there is no GPU to query)
#         DIFC_CUDA_CACHE    (default ${XDG_CACHE_HOME:-~/.cache}/difc/cuda-13.4.92)
#         PYTHON             (default python3; used only to make a venv with pip)
#         NVCC_CCBIN         (host compiler for nvcc, optional; gcc <= 15 works with CUDA 13.4)
#         CUDAFORGE_THREADS  (parallel nvcc jobs in candle-kernels' build script)
set -euo pipefail

CUDA_VER=13.4.92
CACHE=${DIFC_CUDA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/difc/cuda-$CUDA_VER}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target-cuda}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-80}
PY=${PYTHON:-python3}

fail() { echo "cuda_build_check: FAILED: $*" >&2; exit 1; }
log() { echo "cuda_build_check: $*"; }

mkdir -p "$CACHE"
WHEELS=$CACHE/wheels
ROOT=$CACHE/root/nvidia/cu13     # the assembled CUDA_ROOT

# --- 1. wheels (pinned, hash-checked) ------------------------------------------------------------
cat > "$CACHE/requirements.txt" <<'EOF'
nvidia-cuda-nvcc==13.4.92 --hash=sha256:a1f3bfb27299e060b444d5df1f4bcd762501326cf0fd3141ed61756816ab9a0e
nvidia-nvvm==13.4.92 --hash=sha256:e4c81cb321dd9743bcf871c5e7e8fecd7f05dea607944426e102bdda8d49e137
nvidia-cuda-crt==13.4.92 --hash=sha256:731ce3de11df8add8306404417a1edaede225dbe27eb233aed37c8de9d4fe720
nvidia-cuda-runtime==13.4.92 --hash=sha256:9641f797da20ce1dd8e779b6e96d08cf9ba564cec8e8225458811ee26423f3a5
nvidia-cuda-cccl==13.3.5.0.6 --hash=sha256:d5230098fa2df5021e1a00c0c4eee41797671a91119d31e892463e5ccf3ee326
EOF
if [ ! -f "$WHEELS/.complete" ]; then
    if [ ! -x "$CACHE/venv/bin/pip" ]; then
        log "creating venv $CACHE/venv"
        "$PY" -m venv "$CACHE/venv" || fail "cannot create a venv with $PY (need python3-venv)"
    fi
    log "downloading wheels into $WHEELS"
    mkdir -p "$WHEELS"
    "$CACHE/venv/bin/pip" download --quiet --no-deps --require-hashes --only-binary=:all: \
        --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --python-version 3.11 \
        -d "$WHEELS" -r "$CACHE/requirements.txt" || fail "pip download of the CUDA wheels"
    [ "$(ls "$WHEELS"/*.whl | wc -l)" -eq 5 ] || fail "expected 5 wheels in $WHEELS"
    touch "$WHEELS/.complete"
fi
log "wheels (sha256):"
(cd "$WHEELS" && sha256sum ./*.whl | sed 's|\./||; s/^/  /')

# --- 2. assemble CUDA_ROOT -------------------------------------------------------------------------
if [ ! -f "$CACHE/root/.complete" ]; then
    rm -rf "$CACHE/root"
    mkdir -p "$CACHE/root"
    for w in "$WHEELS"/*.whl; do
        "$CACHE/venv/bin/python" -m zipfile -e "$w" "$CACHE/root" || fail "unpacking $w"
    done
    chmod +x "$ROOT"/bin/* "$ROOT"/nvvm/bin/* 2>/dev/null || true
    ln -sf libcudart.so.13 "$ROOT/lib/libcudart.so"
    touch "$CACHE/root/.complete"
fi
[ -x "$ROOT/bin/nvcc" ] || fail "no nvcc in $ROOT/bin"

# --- 3. link-time stubs for the libraries cudarc links to -----------------------------------------
cargo fetch --quiet || fail "cargo fetch"
CUDARC_VER=$(awk '/^name = "cudarc"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
[ -n "$CUDARC_VER" ] || fail "cudarc is not in Cargo.lock"
CUDARC_SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$CUDARC_VER" 2>/dev/null | head -1)
[ -d "$CUDARC_SRC" ] || fail "cudarc $CUDARC_VER sources not found under ${CARGO_HOME:-$HOME/.cargo}/registry/src"
STUBS=$ROOT/lib/stubs
if [ ! -f "$STUBS/.complete-$CUDARC_VER" ]; then
    rm -rf "$STUBS"; mkdir -p "$STUBS"
    # module:library:soname
    for spec in driver:cuda:libcuda.so.1 cublas:cublas:libcublas.so.13 \
                cublaslt:cublasLt:libcublasLt.so.13 curand:curand:libcurand.so.10 \
                nvrtc:nvrtc:libnvrtc.so.13; do
        IFS=: read -r mod lib soname <<<"$spec"
        grep -ohE '^pub unsafe fn [A-Za-z0-9_]+' "$CUDARC_SRC/src/$mod/sys/mod.rs" \
            | awk '{print $4}' | sort -u | sed 's/.*/void &(void) {}/' > "$STUBS/$lib.c"
        [ -s "$STUBS/$lib.c" ] || fail "no functions found in cudarc's $mod bindings"
        ${CC:-cc} -shared -fPIC -o "$STUBS/lib$lib.so" -Wl,-soname,"$soname" "$STUBS/$lib.c" \
            || fail "building stub lib$lib.so"
    done
    touch "$STUBS/.complete-$CUDARC_VER"
fi

# --- 4. environment and build ------------------------------------------------------------------
export PATH=$ROOT/bin:$PATH
export CUDA_ROOT=$ROOT CUDA_PATH=$ROOT CUDA_HOME=$ROOT
export LD_LIBRARY_PATH=$ROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
log "$(nvcc --version | tail -2 | head -1)"
log "CUDA_ROOT=$ROOT CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
log "running: cargo build --release --features cuda $*"
start=$(date +%s)
if ! cargo build --release --features cuda "$@"; then
    fail "cargo build --release --features cuda (after $(( $(date +%s) - start )) s)"
fi
BIN=$CARGO_TARGET_DIR/release/difc
[ -x "$BIN" ] || fail "no binary at $BIN"
log "dynamic libraries the binary needs:"
readelf -d "$BIN" | awk '/NEEDED/ {print "  " $NF}'
log "OK: cargo build --release --features cuda compiled in $(( $(date +%s) - start )) s -> $BIN"
log "(compile check only: running it needs an NVIDIA driver and CUDA 13 libcublas/libcurand/libnvrtc)"

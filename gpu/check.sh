#!/usr/bin/env bash
# The one-shot GPU check (make gpu-check), for a GPU machine without network
# or conda: it builds what it needs from what gpu/pack.sh carried
# (GPU_CARRY, default .gpu-carry), then runs lasagne_tagger.ports.gpu_check on the
# CPU and on device=cuda and compares the two.  Everything goes to OUT
# (default runs/gpu-check): gpu-check.log, cpu/ and cuda/ (bundles, the
# fine-tuning step, device.json), report.json; the last line printed is the
# summary (gpu-check: PASS ... / FAIL ...).  Exit 0 only on PASS.
#
# Steps, each timed in the log:
#   1. unpack CPython 3.11; a virtual environment with the carried wheels
#   2. libgpuarray 0.7.6 with CMake; pygpu with Cython, against it
#   3. libcuda.so, libnvrtc.so, libcublas.so linked by their unversioned
#      names (libgpuarray dlopens those; CUDA ships versioned files)
#   4. the check: run --device cpu, run --device cuda, compare
# GPU_CHECK_DRY=1 stops after the CPU run (a rehearsal on a machine without
# a GPU); GPU_CHECK_IMAGE_SIZE / GPU_CHECK_WIDTH make the network smaller.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
carry=$(cd "${GPU_CARRY:-.gpu-carry}" 2>/dev/null && pwd) \
    || { echo "gpu-check: FAIL: no ${GPU_CARRY:-.gpu-carry} (run gpu/pack.sh on a machine with network first)"; exit 2; }
out=${OUT:-runs/gpu-check}
work=${GPU_WORK:-/tmp/lasagne-tagger-gpu}
size=${GPU_CHECK_IMAGE_SIZE:-224}
width=${GPU_CHECK_WIDTH:-1.0}
mkdir -p "$out" "$work"
out=$(cd "$out" && pwd)
log=$out/gpu-check.log
: > "$log"

step() {   # step NAME COMMAND...: run, time and log it; stop on failure
    local name=$1; shift
    local start=$(date +%s)
    echo "== $name" >> "$log"
    if "$@" >> "$log" 2>&1; then
        echo "== $name: ok in $(( $(date +%s) - start )) s" >> "$log"
    else
        local code=$?
        echo "== $name: FAILED (exit $code) after $(( $(date +%s) - start )) s" >> "$log"
        tail -n 20 "$log"
        echo "gpu-check: FAIL at $name (exit $code); log: $log"
        exit 1
    fi
}

py=$work/python/bin/python3.11
unpack() {
    rm -rf "$work/python" && mkdir -p "$work/python" &&
    tar -C "$work/python" -xJf "$carry/python311.tar.xz"
}
export LD_LIBRARY_PATH=$work/python/lib:$work/gpuarray/lib:$work/cuda-links${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# Theano's GPU ops compile against libgpuarray's headers and link -lgpuarray
export LIBRARY_PATH=$work/gpuarray/lib${LIBRARY_PATH:+:$LIBRARY_PATH}
export CPATH=$work/gpuarray/include${CPATH:+:$CPATH}
venv() {
    rm -rf "$work/venv" &&
    "$py" -m venv --without-pip "$work/venv" &&
    "$work/venv/bin/python" "$(ls "$carry"/wheels/pip-*.whl)/pip" install -q --no-deps \
        --no-index --find-links "$carry/wheels" "$carry"/wheels/*.whl
}
vpy=$work/venv/bin/python
gpuarray() {
    rm -rf "$work/src" && mkdir -p "$work/src" &&
    tar -C "$work/src" -xzf "$carry/vendor/libgpuarray-0.7.6.tar.gz" &&
    src=$(ls -d "$work"/src/*/ | head -1) &&
    cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_INSTALL_PREFIX="$work/gpuarray" &&
    cmake --build "$work/build" -j "$(nproc)" &&
    cmake --install "$work/build"
}
pygpu() {
    src=$(ls -d "$work"/src/*/ | head -1) &&
    (cd "$src" && "$vpy" setup.py -q build_ext -L "$work/gpuarray/lib" \
        -I "$work/gpuarray/include" &&
     "$vpy" -m pip install -q --no-index --no-deps --no-build-isolation .) &&
    (cd / && "$vpy" -c 'import pygpu; print("pygpu", pygpu.__version__)')
}
links() {
    PYTHONPATH=$repo "$vpy" -m lasagne_tagger.ports.gpu_check links "$work/cuda-links"
}
export PYTHONPATH=$repo
export HOME=$work/home
mkdir -p "$HOME"
check() {
    "$vpy" -m lasagne_tagger.ports.gpu_check run --device cpu --out "$out/cpu" \
        --image-size "$size" --width "$width" &&
    "$vpy" -m lasagne_tagger.ports.gpu_check run --device cuda --out "$out/cuda" \
        --image-size "$size" --width "$width"
}

step "unpack Python 3.11" unpack
step "virtual environment (carried wheels)" venv
step "build libgpuarray 0.7.6 (CMake)" gpuarray
step "build pygpu 0.7.6 (Cython)" pygpu
if [ -n "${GPU_CHECK_DRY:-}" ]; then
    # a machine without a GPU: everything but the GPU (what the tests and
    # a rehearsal before the lease can check)
    step "run on the CPU (dry run: no GPU)" "$vpy" -m lasagne_tagger.ports.gpu_check \
        run --device cpu --out "$out/cpu" --image-size "$size" --width "$width"
    echo "gpu-check: DRY RUN: builds and the CPU run ok; no GPU compared" | tee -a "$log"
    exit 0
fi
step "link the CUDA libraries" links
step "run on the CPU and on the GPU" check
"$vpy" -m lasagne_tagger.ports.gpu_check compare "$out/cpu" "$out/cuda" \
    --json "$out/report.json" | tee -a "$log"
exit "${PIPESTATUS[0]}"

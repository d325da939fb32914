#!/usr/bin/env bash
# Pack what `make gpu-check` needs on a GPU machine that has no network and
# no conda (the one the device tool lends: Python 3.12, CUDA 13, nvcc,
# CMake), into GPU_CARRY (default .gpu-carry, git-ignored):
#
#   python311.tar.xz  this machine's CPython 3.11, the pinned stack's
#                     interpreter, without its tests, IDLE, Tk, pip and
#                     static library.  note: the GPU image's Python 3.12
#                     cannot run the pinned stack (NumPy 1.23 has no 3.12
#                     wheels and does not build there; Theano 1.0.5's sdist
#                     does not build on 3.12; the stdlib distutils Theano
#                     imports is gone), so the check carries 3.11.
#   wheels/           cp311 manylinux wheels: NumPy, h5py, Pillow, six, the
#                     BLAS (scipy-openblas32, for the CPU reference), pip,
#                     setuptools, Cython 0.29 and Mako (to build pygpu),
#                     Theano and Lasagne built here from their sdists
#   vendor/           libgpuarray/pygpu 0.7.6 sources (../shared/vendor)
#
# The tool carries at most 64 MiB in all; this script fails above 58 MiB so
# that the repository still fits beside it.
#
#   gpu/pack.sh          (or: make gpu-pack)
set -euo pipefail
cd "$(dirname "$0")/.."
carry=${GPU_CARRY:-.gpu-carry}
python=${PYTHON:-python3.11}
vendor=${GPU_VENDOR:-../shared/vendor}
limit_mb=${GPU_CARRY_LIMIT_MB:-58}

"$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || { echo "gpu/pack.sh: needs Python 3.11 (PYTHON=...)" >&2; exit 2; }
[ -f "$vendor/libgpuarray-0.7.6.tar.gz" ] \
    || { echo "gpu/pack.sh: $vendor/libgpuarray-0.7.6.tar.gz not found" >&2; exit 2; }
rm -rf "$carry"
mkdir -p "$carry/wheels" "$carry/vendor"

base=$("$python" -c 'import sys; print(sys.base_prefix)')
ver=python3.11
(cd "$base" && tar -cJf - \
    --exclude="lib/$ver/test" --exclude="lib/$ver/idlelib" \
    --exclude="lib/$ver/tkinter" --exclude="lib/$ver/turtledemo" \
    --exclude="lib/$ver/ensurepip" --exclude="lib/$ver/lib2to3/tests" \
    --exclude="lib/$ver/site-packages" --exclude='__pycache__' \
    --exclude="lib/$ver/config-3.11-*/libpython3.11.a" \
    --exclude="lib/$ver/lib-dynload/_tkinter*" \
    bin/$ver lib/libpython3.11.so* lib/$ver include/$ver) \
    > "$carry/python311.tar.xz"

download() {
    "$python" -m pip download -q --no-deps --only-binary=:all: \
        --python-version 3.11 --implementation cp --abi cp311 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform any \
        -d "$carry/wheels" "$@"
}
download numpy==1.23.5 h5py==3.16.0 pillow==13.0.0 six==1.16.0 \
    scipy-openblas32==0.3.34.481.3 \
    pip==24.3.1 setuptools==75.8.0 wheel==0.45.1 Cython==0.29.37 \
    Mako==1.3.8 MarkupSafe==3.0.2 tqdm==4.70.1
"$python" -m pip wheel -q --no-deps -w "$carry/wheels" Theano==1.0.5 Lasagne==0.1
cp "$vendor/libgpuarray-0.7.6.tar.gz" "$carry/vendor/"

size=$(du -sm "$carry" | cut -f1)
echo "gpu/pack.sh: $carry holds ${size} MiB ($(ls "$carry/wheels" | wc -l) wheels)"
if [ "$size" -gt "$limit_mb" ]; then
    echo "gpu/pack.sh: over ${limit_mb} MiB: the device tool carries 64 MiB in all" >&2
    exit 1
fi

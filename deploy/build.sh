#!/usr/bin/env bash
# Build ncnn from its PyPI source (cached outside the repo) and the C++ runner.
#
#   deploy/build.sh [--arch x86_64|aarch64]
#
# The last line printed is the path of the built program. ncnn is built once per machine and
# configuration, in ${XDG_CACHE_HOME:-~/.cache}/realesr-portable/ncnn-VERSION-ARCH-CONFIG; the
# runner (a few files) is rebuilt incrementally in deploy/build/ARCH. See docs/deploy.md for
# which ncnn options are switched off and why.
set -euo pipefail

NCNN_VERSION=1.0.20261020   # the version of the ncnn wheel the Python runtime uses
NCNN_SHA256=ad8cdd63e9755cfa8e23b9b6d9ce46156077d80298a89e7c3ba325ffccfca200

here="$(cd "$(dirname "$0")" && pwd)"
arch="$(uname -m)"
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) arch="${2:?--arch needs a value}"; shift 2 ;;
        --arch=*) arch="${1#--arch=}"; shift ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "error: unknown option $1" >&2; exit 2 ;;
    esac
done
jobs="$(nproc)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/realesr-portable"

# Layers the models use (official .param files and `realesr-portable convert` output) plus the
# layers ncnn creates inside those (Convolution -> Padding/Packing/Cast/activation layers, Mat
# helpers -> Crop/Flatten/Bias/Scale, Vulkan convolution -> Reshape/Quantize). Every other
# layer is switched off: it is most of ncnn's compile time.
keep=" input convolution binaryop eltwise split concat interp prelu pixelshuffle reorg crop
       padding flatten packing cast relu clip sigmoid mish hardswish swish tanh reshape
       innerproduct bias scale memorydata noop dropout permute slice quantize dequantize
       requantize "

common=(
    -DCMAKE_BUILD_TYPE=Release -DNCNN_SHARED_LIB=OFF -DNCNN_BUILD_TOOLS=OFF
    -DNCNN_BUILD_EXAMPLES=OFF -DNCNN_BUILD_BENCHMARK=OFF -DNCNN_BUILD_TESTS=OFF -DNCNN_PYTHON=OFF
    -DNCNN_INT8=OFF -DNCNN_BF16=OFF -DNCNN_C_API=OFF
    -DNCNN_PIXEL_ROTATE=OFF -DNCNN_PIXEL_AFFINE=OFF -DNCNN_PIXEL_DRAWING=OFF
)
case "$arch" in
    x86_64|amd64)
        arch=x86_64
        archopts=(
            # Debian's glslang (glslang-dev): compiling the sdist's own copy took a third of
            # the cold build. The bundled copy is moved aside below: it sits on ncnn's include
            # path and its newer headers would shadow Debian's.
            -DNCNN_VULKAN=ON -DNCNN_SYSTEM_GLSLANG=ON
            # Runtime-dispatched kernels: SSE2, AVX, FMA, F16C, AVX2. AVX-512 and VNNI variants
            # (each a full extra compile of every layer) are off to keep CI's cold build short.
            -DNCNN_AVX512=OFF -DNCNN_AVXVNNI=OFF -DNCNN_AVXVNNIINT8=OFF -DNCNN_AVXVNNIINT16=OFF
            -DNCNN_AVXNECONVERT=OFF -DNCNN_XOP=OFF -DNCNN_FMA4=OFF
        )
        toolchain=()
        ;;
    aarch64|arm64)
        arch=aarch64
        archopts=(
            -DNCNN_VULKAN=OFF   # no aarch64 Vulkan loader to link or test against here
            # Baseline ARMv8 NEON kernels only: the ARMv8.2+ variants (fp16, dotprod, bf16, i8mm,
            # SVE) are extra compiles of every layer; switch them on for phones (docs/deploy.md).
            -DNCNN_ARM82=OFF -DNCNN_ARM82DOT=OFF -DNCNN_ARM82FP16FML=OFF -DNCNN_ARM84BF16=OFF
            -DNCNN_ARM84I8MM=OFF -DNCNN_ARM86SVE=OFF
        )
        toolchain=(-DCMAKE_TOOLCHAIN_FILE="$here/aarch64-linux-gnu.toolchain.cmake")
        ;;
    *) echo "error: unsupported --arch $arch (x86_64 or aarch64)" >&2; exit 2 ;;
esac

src="$(python3 "$here/fetch_ncnn.py" "$NCNN_VERSION" "$NCNN_SHA256" "$cache/src")"
if [ -d "$src/glslang" ]; then mv "$src/glslang" "$src/glslang.bundled-unused"; fi
layers=()
for name in $(sed -n 's/^ncnn_add_layer(\([A-Za-z0-9]*\).*/\1/p' "$src/src/CMakeLists.txt"); do
    lower="$(echo "$name" | tr 'A-Z' 'a-z')"
    case "$keep" in *" $lower "*) ;; *) layers+=("-DWITH_LAYER_$lower=OFF") ;; esac
done
config=("${common[@]}" "${archopts[@]}" "${layers[@]}")
key="$(printf '%s\n' "${config[@]}" | sha256sum | cut -c1-10)"
prefix="$cache/ncnn-$NCNN_VERSION-$arch-$key"

if [ ! -f "$prefix/.complete" ]; then
    work="$cache/build-ncnn-$arch-$key"
    rm -rf "$work" "$prefix"
    start=$(date +%s)
    echo "building ncnn $NCNN_VERSION for $arch (once per machine, cached in $prefix)" >&2
    cmake -S "$src" -B "$work" "${toolchain[@]}" "${config[@]}" -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_INSTALL_LIBDIR=lib >&2
    cmake --build "$work" -j "$jobs" >&2
    cmake --install "$work" >&2
    rm -rf "$work"
    echo "ncnn build for $arch took $(( $(date +%s) - start )) s on $jobs cores" >&2
    touch "$prefix/.complete"
fi

build="$here/build/$arch"
cmake -S "$here" -B "$build" "${toolchain[@]}" -DCMAKE_BUILD_TYPE=Release \
    -Dncnn_DIR="$prefix/lib/cmake/ncnn" >&2
cmake --build "$build" -j "$jobs" >&2
echo "$build/realesr-portable-ncnn"

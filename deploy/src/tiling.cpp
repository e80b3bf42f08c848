#include "tiling.hpp"

#include <algorithm>

namespace realesr {

namespace {
int round_up(int value, int multiple) { return (value + multiple - 1) / multiple * multiple; }
}  // namespace

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

int prepadded_extent(int size, int multiple) { return round_up(size + kPrePad, multiple); }

Span tile_span(int w0, int w1, int size, int context, int multiple) {
    const int padded = prepadded_extent(size, multiple);
    int start = w0 == 0 ? 0 : std::max(w0 - context, 0);
    start -= start % multiple;  // a pixel-unshuffle net needs whole blocks from the image's origin
    const int stop = w1 == size ? padded : std::min(w1 + context, padded);
    return {start, start + round_up(stop - start, multiple)};  // <= padded: both are multiples
}

}  // namespace realesr

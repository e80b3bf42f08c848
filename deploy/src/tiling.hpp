// Tile geometry of the Python runtime (portable/tiler.py), free of ncnn so it is easy to test.
#pragma once

#include <vector>

namespace realesr {

// Rows y0:y1 and columns x0:x1 of the input image that one tile writes.
struct Window {
    int y0, y1, x0, x1;
};

// Tiles of `tile` x `tile` pixels, row by row; tile <= 0 or larger than the image: one tile.
std::vector<Window> tile_windows(int height, int width, int tile);

// Index i mirrored into 0..size-1 without repeating the edge pixel, at any distance.
int reflect_index(int i, int size);

// Extra rows (or columns) a window of `extent` pixels gets: `pad` on each side, then rounded
// up so the padded extent is a multiple of `multiple`. The window starts `pad` pixels in.
int padded_extent(int extent, int pad, int multiple);

}  // namespace realesr

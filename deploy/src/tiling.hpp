// Tile geometry of the Python runtime (portable/run/engine.py + tiler.py), free of ncnn so it is easy to test.
//
// The image is first pre-padded as the PyTorch reference (RealESRGANer) does it: 10 mirrored
// pixels at the bottom and the right, then rounded up to the model's size multiple, again by
// mirroring. The convolutions' own zero padding covers the top and left. The Python runtime runs
// the whole net on that pre-padded image exactly; here each tile reads `context` pixels of its
// neighbours and STOPS at the pre-padded image's edge (never mirrors a tile on its own), so a
// tile's centre equals the untiled run wherever `context` covers the net's receptive field.
#pragma once

#include <vector>

namespace realesr {

// Mirrored pixels added below and right of the image before the net runs (RealESRGANer's pre_pad).
constexpr int kPrePad = 10;

// Rows y0:y1 and columns x0:x1 of the input image that one tile writes.
struct Window {
    int y0, y1, x0, x1;
};

// Rows (or columns) start:stop of the pre-padded image that a tile reads.
struct Span {
    int start, stop;
};

// Tiles of `tile` x `tile` pixels, row by row; tile <= 0 or larger than the image: one tile.
std::vector<Window> tile_windows(int height, int width, int tile);

// Index i mirrored into 0..size-1 without repeating the edge pixel, at any distance.
int reflect_index(int i, int size);

// Extent of the pre-padded image along an axis of `size` pixels.
int prepadded_extent(int size, int multiple);

// What a tile covering w0:w1 (of `size` pixels) reads: `context` pixels beyond its own where the
// pre-padded image has them, the whole pre-pad at the image's edges, aligned to `multiple`.
Span tile_span(int w0, int w1, int size, int context, int multiple);

}  // namespace realesr

// Loading a model into ncnn and running it tile by tile, as portable/run/session.py + tiler.py do.
#include <cpu.h>
#include <gpu.h>
#include <net.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "realesr_portable/realesr_portable.hpp"
#include "tiling.hpp"

namespace realesr {

struct Model::Impl {
    ModelSpec spec;
    std::vector<unsigned char> bin;  // ncnn may point into it: lives as long as the net
    ncnn::Net net;
};

namespace {

// Appended to a tile's failure when ncnn could not allocate its memory.
const char* const kOutOfMemory = " (out of memory)";

bool contains(const std::vector<const char*>& names, const std::string& name) {
    return std::any_of(names.begin(), names.end(), [&](const char* n) { return name == n; });
}

void configure(ncnn::Option& opt, const RunOptions& options) {
    opt.num_threads = options.threads > 0 ? options.threads : ncnn::get_cpu_count();
    opt.use_vulkan_compute = options.gpu >= 0;
    if (options.fp32) {  // fp16 costs ~58 dB PSNR: invisible in images, but not bit-comparable
        opt.use_fp16_packed = false;
        opt.use_fp16_storage = false;
        opt.use_fp16_arithmetic = false;
        opt.use_bf16_storage = false;
        opt.use_bf16_packed = false;
    }
}

// Pixel values in and out of the net's value range, with the Python runtime's float32 steps.
struct Levels {
    float lo, to_net, from_net;
    explicit Levels(const ModelSpec& s)
        : lo(static_cast<float>(s.value_lo)),
          to_net(static_cast<float>((s.value_hi - s.value_lo) / 255.0)),
          from_net(static_cast<float>(255.0 / (s.value_hi - s.value_lo))) {}
    float in(std::uint8_t p) const { return static_cast<float>(p) * to_net + lo; }
    std::uint8_t out(float v) const {
        float level = (v - lo) * from_net;
        level = std::min(std::max(level, 0.0f), 255.0f);
        return static_cast<std::uint8_t>(std::nearbyint(level));  // ties to even, like np.rint
    }
};

// The input tile spanning rows `ys` and columns `xs` of the pre-padded image (mirrored beyond the
// image), gray <-> RGB adapted to the model.
ncnn::Mat read_tile(const Image& src, Span ys, Span xs, int channels, const Levels& lv) {
    const int rows = ys.stop - ys.start, cols = xs.stop - xs.start;
    ncnn::Mat tile(cols, rows, channels);
    if (tile.empty()) throw Error("ncnn failed on a " + std::to_string(cols) + "x" + std::to_string(rows) + " tile" + kOutOfMemory);
    for (int y = 0; y < rows; ++y) {
        const int sy = reflect_index(ys.start + y, src.height);
        for (int x = 0; x < cols; ++x) {
            const int sx = reflect_index(xs.start + x, src.width);
            const std::uint8_t* px = &src.pixels[(static_cast<size_t>(sy) * src.width + sx) * src.channels];
            float v[3];
            for (int c = 0; c < src.channels; ++c) v[c] = lv.in(px[c]);
            if (src.channels == 1 && channels == 3) v[1] = v[2] = v[0];
            if (src.channels == 3 && channels == 1) v[0] = 0.299f * v[0] + 0.587f * v[1] + 0.114f * v[2];
            for (int c = 0; c < channels; ++c) tile.channel(c).row(y)[x] = v[c];
        }
    }
    return tile;
}

// Store the window's own pixels of a net output (its tile started `top`/`left` pixels earlier).
void write_tile(Image& dst, const ncnn::Mat& out, const Window& win, int top, int left, int scale, const Levels& lv) {
    const int rows = (win.y1 - win.y0) * scale, cols = (win.x1 - win.x0) * scale;
    for (int y = 0; y < rows; ++y) {
        std::uint8_t* row = &dst.pixels[(static_cast<size_t>(win.y0 * scale + y) * dst.width + win.x0 * scale) * dst.channels];
        for (int x = 0; x < cols; ++x) {
            const int oy = top * scale + y, ox = left * scale + x;
            float v[3];
            for (int c = 0; c < out.c; ++c) v[c] = out.channel(c).row(oy)[ox];
            for (int c = 0; c < out.c; ++c)  // clamping NaN is undefined: never a plausible pixel from it
                if (!std::isfinite(v[c]))
                    throw Error("the model produced NaN/inf on the tile at (" + std::to_string(win.x0) + ", " +
                                std::to_string(win.y0) + "); its activations overflow or its weights are broken");
            if (dst.channels == 1 && out.c == 3) v[0] = (v[0] + v[1] + v[2]) / 3.0f;
            if (dst.channels == 3 && out.c == 1) v[1] = v[2] = v[0];
            for (int c = 0; c < dst.channels; ++c) row[x * dst.channels + c] = lv.out(v[c]);
        }
    }
}

}  // namespace

Model::Model(const std::string& param_text, std::vector<unsigned char> bin, const ModelSpec& spec,
             const RunOptions& options)
    : impl_(new Impl) {
    validate_model(param_text, bin, spec);
    impl_->spec = spec;
    impl_->bin = std::move(bin);
    ncnn::Net& net = impl_->net;
    configure(net.opt, options);
    if (options.gpu >= 0) {
#if NCNN_VULKAN
        const int count = ncnn::get_gpu_count();
        if (options.gpu >= count)
            throw Error("no Vulkan device " + std::to_string(options.gpu) + " (" + std::to_string(count) + " found); use -g -1 for the CPU");
        net.set_vulkan_device(options.gpu);
#else
        throw Error("this build has no Vulkan support; use -g -1 for the CPU");
#endif
    }
    if (net.load_param_mem(param_text.c_str()) != 0) throw Error("not a valid ncnn .param file");
    if (options.gpu >= 0 && !net.opt.use_vulkan_compute)
        throw Error("Vulkan device " + std::to_string(options.gpu) + " cannot run ncnn; use -g -1 for the CPU");
    const unsigned char* data = impl_->bin.data();
    if (net.load_model(data) != impl_->bin.size()) throw Error("ncnn could not load the weights");
    if (!contains(net.input_names(), spec.input_blob) || !contains(net.output_names(), spec.output_blob))
        throw Error("blobs '" + spec.input_blob + "'/'" + spec.output_blob + "' from the sidecar are not the .param's input/output");
}

Model::~Model() = default;

const ModelSpec& Model::spec() const { return impl_->spec; }

Image Model::upscale(const Image& src, int tile) const {
    const ModelSpec& spec = impl_->spec;
    if (src.channels != 1 && src.channels != 3) throw Error("only gray or RGB images can be upscaled");
    if (src.width < 1 || src.height < 1 || src.pixels.size() != static_cast<size_t>(src.width) * src.height * static_cast<size_t>(src.channels))
        throw Error("image size does not match its pixel buffer");
    const int s = spec.scale, context = spec.tile_pad;
    Image dst{src.width * s, src.height * s, src.channels, {}};
    dst.pixels.resize(static_cast<size_t>(dst.width) * dst.height * dst.channels);
    const Levels levels(spec);
    for (const Window& win : tile_windows(src.height, src.width, tile)) {
        const Span ys = tile_span(win.y0, win.y1, src.height, context, spec.size_multiple);
        const Span xs = tile_span(win.x0, win.x1, src.width, context, spec.size_multiple);
        const int rows = ys.stop - ys.start, cols = xs.stop - xs.start;
        ncnn::Mat in = read_tile(src, ys, xs, spec.in_channels, levels);
        ncnn::Mat out;
        ncnn::Extractor ex = impl_->net.create_extractor();
        int rc = ex.input(spec.input_blob.c_str(), in);
        if (rc == 0) rc = ex.extract(spec.output_blob.c_str(), out);
        if (rc != 0)  // -100: ncnn's code for a failed allocation
            throw Error("ncnn failed on a " + std::to_string(cols) + "x" + std::to_string(rows) + " tile" + (rc == -100 ? kOutOfMemory : ""));
        if (out.dims != 3 || out.c != spec.out_channels || out.h != rows * s || out.w != cols * s)
            throw Error("model output does not match the sidecar's scale x" + std::to_string(s) + " and channels");
        write_tile(dst, out, win, win.y0 - ys.start, win.x0 - xs.start, s, levels);
    }
    return dst;
}

}  // namespace realesr

// Device-resident segments: a Vulkan runner the Python runtime loads (ctypes) so that the feature
// maps between a net's segments stay in device memory instead of a round trip through the host
// per segment and tile (portable/run/resident.py builds the program it runs).
//
// Why a library of our own: ncnn's Python wheel exposes no VkMat and no command API. The plan
// (segments, tiles, halos, what to keep) stays Python's; this file only executes it: crops a
// tile's inputs from the stored maps with ncnn's Crop layer, runs the extractor on VkMats, crops
// the tile's core and joins the cores of a segment with ncnn's Concat layer (rows along the
// width, then the rows along the height). Every op is an ncnn Vulkan layer: the stored maps keep
// the net's own storage (fp16 or fp32, packed) from upload to download.
//
// The C ABI below returns 0 on success and writes a one-line reason into `error` otherwise;
// code 2 marks a failure of one tile (out of device memory), which the caller retries smaller.
#include <command.h>
#include <gpu.h>
#include <layer.h>
#include <net.h>
#include <paramdict.h>

#include <cstring>
#include <map>
#include <set>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct TileFailure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Resident {
    ncnn::Net net;
    std::vector<unsigned char> weights;  // ncnn may keep pointing into them
    ncnn::VulkanDevice* vkdev = nullptr;
};

// A feature map in device memory and where its first pixel lies, in its own resolution.
struct Stored {
    ncnn::VkMat mat;
    int y0 = 0;
    int x0 = 0;
};

struct Window {
    int y0, y1, x0, x1;      // the core this tile contributes, in segment-input pixels
    int cy0, cy1, cx0, cx1;  // the core grown by the halo: what the tile reads
};

struct SegmentStep {
    int scale = 1;
    std::vector<std::string> feeds;                            // stored roots, fed by name
    std::vector<std::pair<std::string, std::string>> outputs;  // blob, stored root
    std::vector<Window> windows;                               // row-major
    std::vector<std::string> keep;                             // stored roots kept after it
};

struct Program {
    std::string input_root;
    std::vector<SegmentStep> segments;
    std::string result_root;
};

void write_error(char* error, int size, const std::string& message) {
    if (error == nullptr || size <= 0) return;
    std::strncpy(error, message.c_str(), size - 1);
    error[size - 1] = '\0';
}

Program parse_program(const char* text) {
    Program program;
    std::istringstream lines(text);
    std::string line;
    SegmentStep* current = nullptr;
    while (std::getline(lines, line)) {
        std::istringstream words(line);
        std::string op;
        if (!(words >> op)) continue;
        if (op == "input") {
            words >> program.input_root;
        } else if (op == "segment") {
            program.segments.emplace_back();
            current = &program.segments.back();
            words >> current->scale;
        } else if (current != nullptr && op == "feed") {
            std::string root;
            words >> root;
            current->feeds.push_back(root);
        } else if (current != nullptr && op == "out") {
            std::string blob, root;
            words >> blob >> root;
            current->outputs.emplace_back(blob, root);
        } else if (current != nullptr && op == "window") {
            Window w{};
            words >> w.y0 >> w.y1 >> w.x0 >> w.x1 >> w.cy0 >> w.cy1 >> w.cx0 >> w.cx1;
            current->windows.push_back(w);
        } else if (current != nullptr && op == "keep") {
            std::string root;
            while (words >> root) current->keep.push_back(root);
        } else if (op == "result") {
            words >> program.result_root;
        } else {
            throw std::runtime_error("resident program: unknown line '" + line + "'");
        }
        if (words.fail() && !words.eof()) throw std::runtime_error("resident program: bad line '" + line + "'");
    }
    if (program.input_root.empty() || program.result_root.empty() || program.segments.empty())
        throw std::runtime_error("resident program: needs input, segments and result");
    for (const SegmentStep& s : program.segments)
        if (s.scale < 1 || s.windows.empty() || s.outputs.empty())
            throw std::runtime_error("resident program: a segment without scale, windows or outputs");
    return program;
}

// Layers recorded into a command buffer must outlive its submission.
class Recorder {
public:
    Recorder(ncnn::VulkanDevice* vkdev, const ncnn::Option& opt) : vkdev_(vkdev), opt_(opt), cmd_(vkdev) {}
    ~Recorder() { release_layers(); }

    ncnn::VkCompute& cmd() { return cmd_; }

    void submit() {
        int rc = cmd_.submit_and_wait();
        cmd_.reset();
        release_layers();
        if (rc != 0) throw TileFailure("Vulkan submission failed (code " + std::to_string(rc) + ")");
    }

    ncnn::VkMat crop(const ncnn::VkMat& src, int y0, int y1, int x0, int x1) {
        if (y0 == 0 && x0 == 0 && y1 == src.h && x1 == src.w) return src;
        if (y0 < 0 || x0 < 0 || y1 > src.h || x1 > src.w || y0 >= y1 || x0 >= x1)
            throw std::runtime_error("resident program: a crop outside its feature map");
        ncnn::Mat starts(2), ends(2), axes(2);
        static_cast<int*>(starts.data)[0] = y0;
        static_cast<int*>(starts.data)[1] = x0;
        static_cast<int*>(ends.data)[0] = y1;
        static_cast<int*>(ends.data)[1] = x1;
        static_cast<int*>(axes.data)[0] = 1;  // (c, h, w): h
        static_cast<int*>(axes.data)[1] = 2;  // w
        ncnn::ParamDict pd;
        pd.set(9, starts);
        pd.set(10, ends);
        pd.set(11, axes);
        ncnn::VkMat out;
        int rc = layer("Crop", pd)->forward(src, out, cmd_, opt_);  // one blob: Crop's vector form wants a reference
        if (rc != 0 || out.empty()) throw TileFailure("out of device memory cropping a tile");
        return out;
    }

    ncnn::VkMat concat(const std::vector<ncnn::VkMat>& parts, int axis) {
        if (parts.size() == 1) return parts[0];
        ncnn::ParamDict pd;
        pd.set(0, axis);
        return forward(layer("Concat", pd), parts);
    }

private:
    ncnn::Layer* layer(const char* type, const ncnn::ParamDict& pd) {
        std::unique_ptr<ncnn::Layer> made(ncnn::create_layer_vulkan(type));
        if (!made) throw std::runtime_error(std::string("ncnn has no Vulkan ") + type + " layer");
        made->vkdev = vkdev_;
        if (made->load_param(pd) != 0 || made->create_pipeline(opt_) != 0)
            throw std::runtime_error(std::string("ncnn could not set up its Vulkan ") + type + " layer");
        layers_.push_back(std::move(made));
        return layers_.back().get();
    }

    ncnn::VkMat forward(ncnn::Layer* op, const std::vector<ncnn::VkMat>& bottoms) {
        std::vector<ncnn::VkMat> tops(1);
        int rc = op->forward(bottoms, tops, cmd_, opt_);
        if (rc != 0 || tops[0].empty()) throw TileFailure("out of device memory joining tiles");
        return tops[0];
    }

    void release_layers() {
        for (auto& op : layers_) op->destroy_pipeline(opt_);
        layers_.clear();
    }

    ncnn::VulkanDevice* vkdev_;
    ncnn::Option opt_;
    ncnn::VkCompute cmd_;
    std::vector<std::unique_ptr<ncnn::Layer>> layers_;
};

const Stored& lookup(const std::map<std::string, Stored>& stored, const std::string& root) {
    auto found = stored.find(root);
    if (found == stored.end()) throw std::runtime_error("resident program: '" + root + "' is not stored");
    return found->second;
}

// Every blob the program names must be one of the net's: ncnn would otherwise fail a tile (and
// the caller retry it smaller) where the program itself is wrong.
void check_blobs(const ncnn::Net& net, const Program& program) {
    std::set<std::string> names;
    for (const ncnn::Blob& blob : net.blobs()) names.insert(blob.name);
    for (const SegmentStep& step : program.segments) {
        std::vector<std::string> named(step.feeds);
        for (const auto& [blob_name, root] : step.outputs) named.insert(named.end(), {blob_name, root});
        for (const std::string& name : named)
            if (!names.count(name)) throw std::runtime_error("resident program: the net has no blob '" + name + "'");
    }
}

void run_segment(Resident& r, const SegmentStep& step, std::map<std::string, Stored>& stored, Recorder& rec,
                 ncnn::VkAllocator* blob, ncnn::VkAllocator* staging) {
    const int f = step.scale;
    // Per output: the tile cores of the current row (row-major windows share y0 along a row), and
    // each finished row joined along w. A row's cores are let go once it is joined, so the device
    // holds the segment's inputs, the joined rows and the joined map at most, plus one row of
    // cores (engine.py's planner counts three maps for this runner).
    std::vector<std::vector<ncnn::VkMat>> cores(step.outputs.size());
    std::vector<std::vector<ncnn::VkMat>> joined_rows(step.outputs.size());
    for (size_t k = 0; k < step.windows.size(); k++) {
        const Window& w = step.windows[k];
        ncnn::Extractor ex = r.net.create_extractor();
        ex.set_blob_vkallocator(blob);
        ex.set_workspace_vkallocator(blob);
        ex.set_staging_vkallocator(staging);
        for (const std::string& root : step.feeds) {
            const Stored& s = lookup(stored, root);
            ncnn::VkMat part = rec.crop(s.mat, w.cy0 - s.y0, w.cy1 - s.y0, w.cx0 - s.x0, w.cx1 - s.x0);
            if (ex.input(root.c_str(), part) != 0)
                throw std::runtime_error("resident program: the net has no blob '" + root + "'");
        }
        for (size_t i = 0; i < step.outputs.size(); i++) {
            ncnn::VkMat out;
            int rc = ex.extract(step.outputs[i].first.c_str(), out, rec.cmd());
            if (rc != 0 || out.empty())
                throw TileFailure("ncnn failed on a " + std::to_string(w.cx1 - w.cx0) + "x" +
                                  std::to_string(w.cy1 - w.cy0) + " tile (code " + std::to_string(rc) + ")");
            if (out.h != (w.cy1 - w.cy0) * f || out.w != (w.cx1 - w.cx0) * f)
                throw std::runtime_error("segment output '" + step.outputs[i].first + "' is not x" +
                                         std::to_string(f) + " of its tile");
            cores[i].push_back(rec.crop(out, (w.y0 - w.cy0) * f, (w.y1 - w.cy0) * f,
                                        (w.x0 - w.cx0) * f, (w.x1 - w.cx0) * f));
        }
        const bool row_ends = k + 1 == step.windows.size() || step.windows[k + 1].y0 != w.y0;
        if (row_ends)
            for (size_t i = 0; i < step.outputs.size(); i++) joined_rows[i].push_back(rec.concat(cores[i], 2));
        rec.submit();  // the extractor's blobs, the crop layers and a joined row's cores are released after this
        if (row_ends)
            for (auto& row : cores) row.clear();
    }
    std::map<std::string, Stored> outputs;
    for (size_t i = 0; i < step.outputs.size(); i++)
        outputs[step.outputs[i].second] = Stored{rec.concat(joined_rows[i], 1), step.windows[0].y0 * f,
                                                 step.windows[0].x0 * f};  // the rows along h
    rec.submit();
    std::map<std::string, Stored> kept;
    for (const std::string& root : step.keep) {
        auto found = stored.find(root);
        if (found != stored.end()) kept.insert(*found);
    }
    for (auto& [root, value] : outputs) kept[root] = value;
    stored.swap(kept);
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) void* rp_resident_create(
    const char* param_text, const unsigned char* weights, long weights_size, int gpu, int fp16_packed,
    int fp16_storage, int fp16_arithmetic, char* error, int error_size) {
    try {
        if (gpu < 0 || gpu >= ncnn::get_gpu_count()) {
            write_error(error, error_size, "no Vulkan device " + std::to_string(gpu));
            return nullptr;
        }
        auto r = std::make_unique<Resident>();
        r->net.opt.use_vulkan_compute = true;
        r->net.opt.use_fp16_packed = fp16_packed != 0;
        r->net.opt.use_fp16_storage = fp16_storage != 0;
        r->net.opt.use_fp16_arithmetic = fp16_arithmetic != 0;
        r->net.opt.use_bf16_storage = false;
        r->net.opt.use_bf16_packed = false;
        r->net.set_vulkan_device(gpu);
        r->vkdev = ncnn::get_gpu_device(gpu);
        if (r->net.load_param_mem(param_text) != 0) {
            write_error(error, error_size, "ncnn could not load the .param");
            return nullptr;
        }
        r->weights.assign(weights, weights + weights_size);
        if (r->net.load_model(r->weights.data()) <= 0 && weights_size > 0) {
            write_error(error, error_size, "ncnn could not load the weights");
            return nullptr;
        }
        return r.release();
    } catch (const std::exception& exc) {
        write_error(error, error_size, exc.what());
        return nullptr;
    }
}

__attribute__((visibility("default"))) void rp_resident_destroy(void* handle) { delete static_cast<Resident*>(handle); }

// input: (c, h, w) float32, contiguous; output: (out_c, out_h, out_w) float32, the result root's
// whole stored map (the caller knows its shape from the plan it wrote).
__attribute__((visibility("default"))) int rp_resident_run(
    void* handle, const char* program_text, const float* input, int c, int h, int w, float* output, int out_c,
    int out_h, int out_w, char* error, int error_size) {
    Resident& r = *static_cast<Resident*>(handle);
    ncnn::VkAllocator* blob = r.vkdev->acquire_blob_allocator();
    ncnn::VkAllocator* staging = r.vkdev->acquire_staging_allocator();
    int code = 0;
    try {
        const Program program = parse_program(program_text);
        check_blobs(r.net, program);
        if (c < 1 || h < 1 || w < 1 || out_c < 1 || out_h < 1 || out_w < 1)
            throw std::runtime_error("resident run: empty input or result shape");
        ncnn::Option opt = r.net.opt;
        opt.blob_vkallocator = blob;
        opt.workspace_vkallocator = blob;
        opt.staging_vkallocator = staging;
        Recorder rec(r.vkdev, opt);
        std::map<std::string, Stored> stored;
        {
            ncnn::Mat host(w, h, c);
            if (host.empty()) throw TileFailure("out of host memory for the input");
            for (int q = 0; q < c; q++) std::memcpy(host.channel(q), input + (size_t)q * h * w, sizeof(float) * h * w);
            ncnn::VkMat device;
            rec.cmd().record_upload(host, device, opt);
            if (device.empty()) throw TileFailure("out of device memory for the input");
            rec.submit();
            stored[program.input_root] = Stored{device, 0, 0};
        }
        for (const SegmentStep& step : program.segments) run_segment(r, step, stored, rec, blob, staging);
        const Stored& result = lookup(stored, program.result_root);
        if (result.mat.c != out_c || result.mat.h != out_h || result.mat.w != out_w)
            throw std::runtime_error("resident result is " + std::to_string(result.mat.c) + "x" +
                                     std::to_string(result.mat.h) + "x" + std::to_string(result.mat.w) +
                                     ", the plan expected " + std::to_string(out_c) + "x" + std::to_string(out_h) +
                                     "x" + std::to_string(out_w));
        ncnn::Option download = opt;
        download.use_packing_layout = false;  // elempack 1: plain (c, h, w) planes
        ncnn::Mat host;
        rec.cmd().record_download(result.mat, host, download);
        rec.submit();
        if (host.empty() || host.elemsize != 4u) throw TileFailure("the result could not be downloaded");
        for (int q = 0; q < out_c; q++)
            std::memcpy(output + (size_t)q * out_h * out_w, host.channel(q), sizeof(float) * out_h * out_w);
    } catch (const TileFailure& exc) {
        write_error(error, error_size, exc.what());
        code = 2;
    } catch (const std::exception& exc) {
        write_error(error, error_size, exc.what());
        code = 1;
    }
    r.vkdev->reclaim_blob_allocator(blob);
    r.vkdev->reclaim_staging_allocator(staging);
    return code;
}

}  // extern "C"

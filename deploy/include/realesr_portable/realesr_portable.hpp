// realesr-portable's deployable runtime: load a converted model and upscale pixels with ncnn.
//
// Everything here works on memory (model text/bytes, pixel arrays), never on files, so an
// Android or embedded app links it as is and supplies its own I/O (assets, camera frames...).
// The tiling is the Python runtime's: see docs/deploy.md.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace realesr {

// A model or image the runtime refuses; what() is one line meant for the user.
class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The fields of the NAME.json sidecar the runtime needs (the rest are descriptive).
struct ModelSpec {
    std::string name;
    int scale = 0;
    int in_channels = 3;
    int out_channels = 3;
    std::string input_blob = "in0";
    std::string output_blob = "out0";
    double value_lo = 0.0;  // value_range: the floats the net sees for pixel 0 and pixel max
    double value_hi = 1.0;
    int size_multiple = 1;
    int tile_pad = 16;
};

// Parse and type-check a sidecar's JSON text (unknown keys and wrong types are errors).
ModelSpec parse_spec(const std::string& json_text);

// Check a model before ncnn sees it, with the Python runtime's rules: the .param is well formed,
// every layer is of a known type with only the parameters, types and ranges ncnn handles, and
// built into this ncnn; blobs flow from the spec's input to its output, every layer gets the
// channels its weights were made for, and the output is the spec's scale and channels; the .bin
// holds exactly the weights the .param describes. ncnn itself trusts all of this (out-of-bounds
// reads, crashes, garbage images).
void validate_model(const std::string& param_text, const std::vector<unsigned char>& bin, const ModelSpec& spec);

// The layer rules validate_model applies, one line per layer type ("Type bottoms=1..1 tops=1..1
// int:ID=LO..HI float:ID=LO..HI array:ID=LONGEST"): tests compare it with the Python runtime's table.
std::string describe_layer_rules();

// Whether this ncnn build has a layer type compiled in (the build switches most of them off).
bool ncnn_has_layer(const std::string& type);

struct RunOptions {
    int gpu = -1;         // Vulkan device index, -1 = CPU
    int threads = 0;      // CPU threads, 0 = all cores
    bool fp32 = false;    // force fp32 storage/arithmetic (fp16 where the device supports it otherwise)
};

// An 8-bit interleaved image: height rows of width * channels bytes.
struct Image {
    int width = 0;
    int height = 0;
    int channels = 0;
    std::vector<std::uint8_t> pixels;
};

class Model {
public:
    // Throws Error for a bad model or an unusable device. `bin` is kept by the model (ncnn may
    // reference the weights without copying them).
    Model(const std::string& param_text, std::vector<unsigned char> bin, const ModelSpec& spec,
          const RunOptions& options);
    ~Model();
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    const ModelSpec& spec() const;

    // Upscale by spec().scale with tiles of `tile` input pixels (0 = one tile). Gray images are
    // fed to RGB models as three equal channels and averaged back.
    Image upscale(const Image& src, int tile) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace realesr

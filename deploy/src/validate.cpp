// Checks of .param/.bin before ncnn sees them: the rules of portable/graph/check.py (the layer
// table in layers.cpp, as portable/graph/layers.py: blob flow, shapes carried from the input on probe sizes) and
// portable/graph/ncnn_files.py (the .bin holds exactly the described weights). ncnn trusts its
// .param: a dilation of 1000, a pad of 100000 or a weight count that does not fit the input
// channels makes it read out of bounds (SIGSEGV, or a garbage image). tests/test_deploy_fuzz.py
// feeds the same mutated models to both validators and requires the same verdicts.
#include <layer.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <numeric>
#include <set>
#include <sstream>

#include "layers.hpp"

namespace realesr {
namespace {

const std::uint32_t kFp16Tag = 0x01306B47;
const std::uint32_t kFp32Tag = 0;
const long kMaxValuesPerPixel = 1L << 20;  // activations per input pixel at any blob

std::vector<std::string> split_ws(const std::string& line) {
    std::istringstream in(line);
    std::vector<std::string> tokens;
    for (std::string t; in >> t;) tokens.push_back(t);
    return tokens;
}

// The .param's lines (portable/graph/ncnn_files.py NcnnParam.parse) and the header's blob count.
std::vector<Line> parse_param(const std::string& text, long long& declared_blobs) {
    std::vector<std::vector<std::string>> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        std::vector<std::string> tokens = split_ws(line);
        if (!tokens.empty()) lines.push_back(tokens);
    }
    if (lines.empty() || lines[0] != std::vector<std::string>{"7767517"})
        throw Error("not an ncnn .param file (missing magic number 7767517)");
    long long layer_count = 0;
    if (lines.size() < 2 || lines[1].size() != 2 || !parse_int(lines[1][0], layer_count, 18) || !parse_int(lines[1][1], declared_blobs, 18))
        throw Error("ncnn .param: bad layer/blob count line");
    if (layer_count != static_cast<long long>(lines.size()) - 2)
        throw Error("ncnn .param declares " + std::to_string(layer_count) + " layers but has " + std::to_string(lines.size() - 2));
    std::vector<Line> layers;
    for (std::size_t n = 2; n < lines.size(); ++n) {
        const std::vector<std::string>& t = lines[n];
        const std::string number = std::to_string(n + 1);
        long long bottoms = -1, tops = -1;
        if (t.size() < 4 || !parse_int(t[2], bottoms, 18) || !parse_int(t[3], tops, 18) || bottoms < 0 || tops < 0)
            throw Error("ncnn .param line " + number + ": malformed layer header");
        Line layer{t[0], t[1], {}, {}, {}};
        const std::size_t end = 4 + static_cast<std::size_t>(bottoms) + static_cast<std::size_t>(tops);
        if (bottoms > 1 << 20 || tops > 1 << 20 || t.size() < end)
            throw Error("ncnn .param line " + number + ": layer " + layer.name + " lists too few blobs");
        layer.bottoms.assign(t.begin() + 4, t.begin() + 4 + bottoms);
        layer.tops.assign(t.begin() + 4 + bottoms, t.begin() + end);
        for (std::size_t k = end; k < t.size(); ++k) {
            const std::size_t eq = t[k].find('=');
            long long key = 0;
            if (eq == std::string::npos || !parse_int(t[k].substr(0, eq), key, 18) || key < INT32_MIN || key > INT32_MAX)
                throw Error("ncnn .param line " + number + ": bad parameter '" + t[k] + "'");
            layer.raw[static_cast<int>(key)] = t[k].substr(eq + 1);
        }
        layers.push_back(std::move(layer));
    }
    return layers;
}

using Typed = std::vector<std::pair<Line, Params>>;

// Every blob's shape for a side x side input (graph/check.py shapes_at); the output blob's.
Shape walk(const Typed& typed_layers, long long declared, long long side, const ModelSpec& spec) {
    std::map<std::string, Shape> shapes;
    std::set<std::string> consumed;
    for (const auto& [layer, params] : typed_layers) {
        std::vector<Shape> ins;
        for (const std::string& blob : layer.bottoms) {
            auto it = shapes.find(blob);
            if (it == shapes.end()) throw layer_error(layer.name, "reads blob '" + blob + "' before any layer makes it");
            if (!consumed.insert(blob).second) throw layer_error(layer.name, "blob '" + blob + "' is read twice (ncnn needs a Split to share a blob)");
            ins.push_back(it->second);
        }
        std::vector<Shape> outs;
        if (layer.type == "Input") {
            if (params.i(2, 0) != 0 && params.i(2, 0) != spec.in_channels)
                throw layer_error(layer.name, "input of " + std::to_string(params.i(2, 0)) + " channels, the model spec says " + std::to_string(spec.in_channels));
            outs = {{spec.in_channels, side, side}};
        } else {
            outs = output_shapes(layer_kinds().at(layer.type), params, ins, layer.name);
        }
        outs.resize(std::min(outs.size(), layer.tops.size()));
        for (std::size_t k = 0; k < outs.size(); ++k) {
            const std::string& blob = layer.tops[k];
            if (shapes.count(blob)) throw layer_error(layer.name, "blob '" + blob + "' is made twice");
            const Shape& s = outs[k];
            const long double values = static_cast<long double>(s.c) * s.h * s.w;  // beyond 64 bits for crafted graphs
            if (values > static_cast<long double>(kMaxValuesPerPixel) * side * side)
                throw layer_error(layer.name, "blob '" + blob + "' would hold " + shape_text(s) + " values for a " + std::to_string(side) + " px input");
            shapes[blob] = s;
        }
    }
    const long long made = static_cast<long long>(shapes.size());
    if (declared < made || declared > 4 * made + 64)
        throw Error("the header declares " + std::to_string(declared) + " blobs but the layers make " + std::to_string(made));
    auto out = shapes.find(spec.output_blob);
    if (out == shapes.end()) throw Error("output blob '" + spec.output_blob + "' is not made by any layer");
    return out->second;
}

// The sidecar's claims at one (unpadded) probe side; the graph sees side + 2 * pre_pad.
void check_at(const Typed& typed_layers, long long declared, long long side, const ModelSpec& spec, long long pre_pad) {
    const Shape o = walk(typed_layers, declared, side + 2 * pre_pad, spec);
    if (o.h != side * spec.scale || o.w != side * spec.scale)
        throw Error("the graph turns a " + std::to_string(side) + "x" + std::to_string(side) + " input into " + std::to_string(o.w) + "x" +
                    std::to_string(o.h) + ", not x" + std::to_string(spec.scale) + " as the sidecar says");
    if (o.c != spec.out_channels)
        throw Error("the graph outputs " + std::to_string(o.c) + " channels, the sidecar says " + std::to_string(spec.out_channels));
}

}  // namespace

bool ncnn_has_layer(const std::string& type) {
    ncnn::Layer* probe = ncnn::create_layer(type.c_str());  // null if not compiled in
    delete probe;
    return probe != nullptr;
}

void validate_model(const std::string& param_text, const std::vector<unsigned char>& bin, const ModelSpec& spec) {
    long long declared = 0;
    const std::vector<Line> lines = parse_param(param_text, declared);
    int inputs = 0;
    bool input_ok = false;
    for (const Line& layer : lines)
        if (layer.type == "Input") ++inputs, input_ok = layer.tops == std::vector<std::string>{spec.input_blob};
    if (inputs != 1 || !input_ok) throw Error("the graph needs exactly one Input layer producing '" + spec.input_blob + "'");
    std::vector<std::pair<Line, Params>> typed_layers;
    for (const Line& layer : lines) typed_layers.emplace_back(layer, typed_params(layer));
    // Sides the graph itself divides (strides, pixel-unshuffle), from each layer's table entry.
    long long multiple = 1;
    for (const auto& [layer, params] : typed_layers) {
        const LayerKind& kind = layer_kinds().at(layer.type);
        if (kind.divisor) multiple = std::lcm(multiple, kind.divisor(params));
    }
    // Probe sides (graph/check.py probe_sides): the smallest padded tile and a larger one.
    const long long m = spec.size_multiple, smallest = (1 + 2LL * spec.tile_pad + m - 1) / m * m;
    auto probe = [&](long long pre_pad) {
        for (long long side : {smallest, smallest + 3 * m})
            check_at(typed_layers, declared, (side + multiple - 1) / multiple * multiple, spec, pre_pad);
    };
    try {
        probe(0);
    } catch (const Error& plain) {
        // A graph whose unpadded convolutions eat a border (RealCUGAN): the Python runtime runs it
        // on a mirrored border (run/session.py graph_pre_pad, the same derivation); this runner
        // does not, and says so instead of the plain refusal.
        long long pre_pad = 0;
        try {
            const Shape a = walk(typed_layers, declared, 96, spec), b = walk(typed_layers, declared, 112, spec);
            const long long scale = (b.h - a.h) / 16, offset = a.h - scale * 96;
            if ((b.h - a.h) % 16 == 0 && scale == spec.scale && offset < 0 && (-offset) % (2 * scale) == 0) {
                pre_pad = -offset / (2 * scale);
                probe(pre_pad);
            }
        } catch (const Error&) {
            pre_pad = 0;
        }
        if (pre_pad == 0) throw;
        throw Error("the graph consumes a " + std::to_string(pre_pad) +
                    "-px border of its input (pre-padding, as RealCUGAN's runner adds): such models run in the Python runtime only");
    }

    const std::size_t size = bin.size();
    std::size_t offset = 0;
    for (const auto& [layer, params] : typed_layers) {
        const std::string& name = layer.name;
        auto mismatch = [&] {
            return Error(".bin (" + std::to_string(size) + " bytes) ends inside layer " + name + ": the .param and .bin do not match");
        };
        const LayerKind& kind = layer_kinds().at(layer.type);
        if (!kind.weights) continue;
        for (const auto& [count, tagged] : kind.weights(params)) {
            bool fp16 = false;
            if (tagged) {
                if (offset + 4 > size) throw mismatch();
                std::uint32_t tag;
                std::memcpy(&tag, bin.data() + offset, 4);  // little-endian on every target here
                offset += 4;
                if (tag == kFp16Tag) fp16 = true;
                else if (tag != kFp32Tag) throw layer_error(name, "unsupported weight storage tag");
            }
            const std::size_t bytes = static_cast<std::size_t>(count) * (fp16 ? 2 : 4);  // count <= 2^30
            if (offset + bytes > size) throw mismatch();
            offset += (bytes + 3) / 4 * 4;
        }
    }
    if (offset != size)
        throw Error(".bin holds " + std::to_string(size) + " bytes but the .param's layers describe " + std::to_string(offset) +
                    ": they do not belong together");
}

}  // namespace realesr

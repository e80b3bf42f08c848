// Structural checks of .param/.bin before ncnn sees them (the rules of portable/ncnn_weights.py).
#include <layer.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <sstream>

#include "realesr_portable/realesr_portable.hpp"

namespace realesr {
namespace {

const std::uint32_t kFp16Tag = 0x01306B47;
const std::uint32_t kFp32Tag = 0;

struct Layer {
    std::string type;
    std::string name;
    std::map<std::string, std::string> params;

    long param(const char* key) const {
        auto it = params.find(key);
        if (it == params.end()) return 0;
        char* end = nullptr;
        long v = std::strtol(it->second.c_str(), &end, 10);
        if (*end != '\0' && *end != '.' && *end != 'e' && *end != 'E')
            throw Error("ncnn .param: layer " + name + ": param " + key + " is not a number");
        return v;
    }
};

std::vector<Layer> parse_param(const std::string& text) {
    std::istringstream in(text);
    std::string line;
    if (!std::getline(in, line) || line.find("7767517") != 0)
        throw Error("not an ncnn .param file (missing magic number 7767517)");
    long layer_count = -1, blob_count = -1;
    if (!std::getline(in, line) || !(std::istringstream(line) >> layer_count >> blob_count) || layer_count < 1 || blob_count < 1)
        throw Error("ncnn .param: bad layer/blob count line");
    std::vector<Layer> layers;
    for (int number = 3; std::getline(in, line); ++number) {
        std::istringstream tokens(line);
        Layer layer;
        long bottoms = -1, tops = -1;
        if (!(tokens >> layer.type)) continue;  // blank line
        if (!(tokens >> layer.name >> bottoms >> tops) || bottoms < 0 || tops < 0)
            throw Error("ncnn .param line " + std::to_string(number) + ": malformed layer header");
        std::string token;
        for (long i = 0; i < bottoms + tops; ++i)
            if (!(tokens >> token))
                throw Error("ncnn .param line " + std::to_string(number) + ": layer " + layer.name + " lists too few blobs");
        while (tokens >> token) {
            auto eq = token.find('=');
            if (eq == std::string::npos || eq == 0)
                throw Error("ncnn .param line " + std::to_string(number) + ": bad parameter '" + token + "'");
            layer.params[token.substr(0, eq)] = token.substr(eq + 1);
        }
        ncnn::Layer* probe = ncnn::create_layer(layer.type.c_str());  // null if not compiled in
        delete probe;
        if (!probe)
            throw Error("ncnn .param: layer type " + layer.type + " is not built into this ncnn (see docs/deploy.md)");
        layers.push_back(layer);
    }
    if (static_cast<long>(layers.size()) != layer_count)
        throw Error("ncnn .param declares " + std::to_string(layer_count) + " layers but has " + std::to_string(layers.size()));
    return layers;
}

// (element count, tagged) of each array a layer stores in the .bin, in file order.
std::vector<std::pair<long, bool>> array_layout(const Layer& layer) {
    const std::string& t = layer.type;
    if (t == "Convolution" || t == "ConvolutionDepthWise" || t == "Deconvolution" || t == "DeconvolutionDepthWise") {
        if (layer.param("8")) throw Error("layer " + layer.name + ": int8-quantised convolutions are not supported");
        std::vector<std::pair<long, bool>> arrays = {{layer.param("6"), true}};
        if (layer.param("5")) arrays.push_back({layer.param("0"), false});
        return arrays;
    }
    if (t == "InnerProduct") {
        std::vector<std::pair<long, bool>> arrays = {{layer.param("2"), true}};
        if (layer.param("1")) arrays.push_back({layer.param("0"), false});
        return arrays;
    }
    if (t == "PReLU") return {{layer.param("0"), false}};
    if (t == "BatchNorm") return std::vector<std::pair<long, bool>>(4, {layer.param("0"), false});
    if (t == "MemoryData") {
        long size = 1;
        for (const char* key : {"0", "1", "11", "2"}) size *= std::max(layer.param(key), 1L);
        return {{size, false}};
    }
    return {};
}

}  // namespace

void validate_model(const std::string& param_text, const std::vector<unsigned char>& bin) {
    const std::size_t size = bin.size();
    auto mismatch = [size](const Layer& layer) {
        return Error(".bin (" + std::to_string(size) + " bytes) ends inside layer " + layer.name +
                     ": the .param and .bin do not match");
    };
    std::size_t offset = 0;
    for (const Layer& layer : parse_param(param_text)) {
        for (const auto& [count, tagged] : array_layout(layer)) {
            if (count < 0) throw Error("layer " + layer.name + ": negative weight count");
            bool fp16 = false;
            if (tagged) {
                if (offset + 4 > size) throw mismatch(layer);
                std::uint32_t tag;
                std::memcpy(&tag, bin.data() + offset, 4);  // little-endian on every target here
                offset += 4;
                if (tag == kFp16Tag) fp16 = true;
                else if (tag != kFp32Tag) throw Error("layer " + layer.name + ": unsupported weight storage tag");
            }
            std::size_t bytes = static_cast<std::size_t>(count) * (fp16 ? 2 : 4);
            if (offset + bytes > size) throw mismatch(layer);
            offset += (bytes + 3) / 4 * 4;
        }
    }
    if (offset != size)
        throw Error(".bin holds " + std::to_string(size) + " bytes but the .param's layers describe " +
                    std::to_string(offset) + ": they do not belong together");
}

}  // namespace realesr

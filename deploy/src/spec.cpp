// The NAME.json sidecar: the same fields and checks as portable/spec.py (tests/test_deploy_fuzz.py
// compares the verdicts of both on mutated sidecars).
#include <nlohmann/json.hpp>

#include <climits>
#include <set>

#include "realesr_portable/realesr_portable.hpp"

namespace realesr {
namespace {

using nlohmann::json;

const int kSpecVersion = 1;
const std::size_t kMaxSidecarBytes = 1 << 20;  // a real sidecar is ~1 KB
const int kMaxTilePad = 1024;
const int kMaxSizeMultiple = 64;

// An integer field; values beyond int saturate to INT_MIN/INT_MAX, which every range check refuses.
int get_int(const json& data, const char* key, int fallback) {
    if (!data.contains(key)) return fallback;
    const json& v = data.at(key);
    if (!v.is_number_integer()) throw Error(std::string("sidecar field '") + key + "' must be an integer");
    if (v.is_number_unsigned()) return v.get<std::uint64_t>() > INT_MAX ? INT_MAX : static_cast<int>(v.get<std::uint64_t>());
    const std::int64_t n = v.get<std::int64_t>();
    return n > INT_MAX ? INT_MAX : n < INT_MIN ? INT_MIN : static_cast<int>(n);
}

std::string get_string(const json& data, const char* key, const std::string& fallback) {
    if (!data.contains(key)) return fallback;
    const json& v = data.at(key);
    if (!v.is_string()) throw Error(std::string("sidecar field '") + key + "' must be a string");
    return v.get<std::string>();
}

void check_type(const json& data, const char* key, json::value_t type, const char* what) {
    if (data.contains(key) && data.at(key).type() != type)
        throw Error(std::string("sidecar field '") + key + "' must be " + what);
}

}  // namespace

ModelSpec parse_spec(const std::string& json_text) {
    if (json_text.size() > kMaxSidecarBytes) throw Error("model sidecar is larger than 1048576 bytes");
    json data = json::parse(json_text, nullptr, false);
    if (data.is_discarded()) throw Error("model sidecar is not valid JSON");
    if (!data.is_object()) throw Error("model sidecar is not a JSON object");
    static const std::set<std::string> known = {
        "name", "scale", "in_channels", "out_channels", "input_blob", "output_blob", "value_range",
        "size_multiple", "tile_pad", "arch", "arch_params", "fp16_weights", "source", "license",
        "spec_version"};
    std::string unknown;
    for (const auto& item : data.items())
        if (!known.count(item.key())) unknown += (unknown.empty() ? "" : ", ") + item.key();
    if (!unknown.empty()) throw Error("unknown sidecar keys: " + unknown);
    const int version = get_int(data, "spec_version", kSpecVersion);
    if (version < 1) throw Error("sidecar spec_version must be a positive integer");
    if (version > kSpecVersion) throw Error("sidecar spec_version is newer than this runtime");
    if (!data.contains("name") || !data.contains("scale")) throw Error("sidecar lacks 'name' or 'scale'");
    check_type(data, "arch", json::value_t::string, "a string");
    check_type(data, "source", json::value_t::string, "a string");
    check_type(data, "license", json::value_t::string, "a string");
    check_type(data, "arch_params", json::value_t::object, "an object");
    check_type(data, "fp16_weights", json::value_t::boolean, "true or false");

    ModelSpec spec;
    spec.name = get_string(data, "name", "");
    spec.scale = get_int(data, "scale", 0);
    spec.in_channels = get_int(data, "in_channels", spec.in_channels);
    spec.out_channels = get_int(data, "out_channels", spec.out_channels);
    spec.input_blob = get_string(data, "input_blob", spec.input_blob);
    spec.output_blob = get_string(data, "output_blob", spec.output_blob);
    spec.size_multiple = get_int(data, "size_multiple", spec.size_multiple);
    spec.tile_pad = get_int(data, "tile_pad", spec.tile_pad);
    if (data.contains("value_range")) {
        const json& range = data.at("value_range");
        if (!range.is_array() || range.size() != 2 || !range[0].is_number() || !range[1].is_number())
            throw Error("sidecar field 'value_range' must be two numbers");
        spec.value_lo = range[0].get<double>();
        spec.value_hi = range[1].get<double>();
        if (!(spec.value_hi > spec.value_lo)) throw Error("sidecar field 'value_range' must be increasing");
    }
    for (const std::string* blob : {&spec.input_blob, &spec.output_blob})
        if (blob->empty() || blob->size() > 256 || blob->find_first_of(" \t\n\r\f\v") != std::string::npos)
            throw Error("sidecar fields 'input_blob'/'output_blob' must be blob names without spaces");
    const std::string model = "model '" + spec.name + "': ";
    if (spec.scale < 1 || spec.scale > 16) throw Error(model + "scale " + std::to_string(spec.scale) + " is not in 1..16");
    if (spec.size_multiple < 1 || spec.size_multiple > kMaxSizeMultiple)
        throw Error(model + "size_multiple " + std::to_string(spec.size_multiple) + " is not in 1..64");
    if (spec.tile_pad < 0 || spec.tile_pad > kMaxTilePad)
        throw Error(model + "tile_pad " + std::to_string(spec.tile_pad) + " is not in 0..1024");
    for (int c : {spec.in_channels, spec.out_channels}) {
        if (c == 4) throw Error(model + "4-channel (RGBA) models run in the Python runtime only");
        if (c != 1 && c != 3) throw Error(model + "unsupported channel count " + std::to_string(c));
    }
    return spec;
}

}  // namespace realesr

// The NAME.json sidecar: the same fields and checks as portable/model/spec.py (tests/test_deploy_fuzz.py
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

// An integer field (JSON integers beyond 64 bits saturate; every range check below refuses them).
long long get_int(const json& data, const char* key, long long fallback) {
    if (!data.contains(key)) return fallback;
    const json& v = data.at(key);
    if (!v.is_number_integer()) throw Error(std::string("sidecar field '") + key + "' must be an integer");
    if (v.is_number_unsigned()) return v.get<std::uint64_t>() > LLONG_MAX ? LLONG_MAX : static_cast<long long>(v.get<std::uint64_t>());
    return v.get<std::int64_t>();
}

// `value` if it is in lo..hi, else the sidecar is refused naming the field and its value.
int in_range(const std::string& model, const char* field, long long value, int lo, int hi) {
    if (value < lo || value > hi)
        throw Error(model + field + " " + std::to_string(value) + " is not in " + std::to_string(lo) + ".." + std::to_string(hi));
    return static_cast<int>(value);
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
    const long long version = get_int(data, "spec_version", kSpecVersion);
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
    const long long scale = get_int(data, "scale", 0);
    const long long in_channels = get_int(data, "in_channels", spec.in_channels);
    const long long out_channels = get_int(data, "out_channels", spec.out_channels);
    spec.input_blob = get_string(data, "input_blob", spec.input_blob);
    spec.output_blob = get_string(data, "output_blob", spec.output_blob);
    const long long size_multiple = get_int(data, "size_multiple", spec.size_multiple);
    const long long tile_pad = get_int(data, "tile_pad", spec.tile_pad);
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
    spec.scale = in_range(model, "scale", scale, 1, 16);
    spec.size_multiple = in_range(model, "size_multiple", size_multiple, 1, kMaxSizeMultiple);
    spec.tile_pad = in_range(model, "tile_pad", tile_pad, 0, kMaxTilePad);
    for (long long c : {in_channels, out_channels}) {
        if (c == 4) throw Error(model + "4-channel (RGBA) models run in the Python runtime only");
        if (c != 1 && c != 3) throw Error(model + "unsupported channel count " + std::to_string(c));
    }
    spec.in_channels = static_cast<int>(in_channels);
    spec.out_channels = static_cast<int>(out_channels);
    return spec;
}

}  // namespace realesr

// The layer table of the checks: per ncnn layer type its parameter ids, types and ranges, blob
// counts, shape rule, .bin layout and size divisor, as portable/graph/layers.py's LAYER_KINDS
// (tests/test_deploy_fuzz.py compares the two entry for entry). Adding a layer type is one entry
// here and one there.
#include "layers.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <sstream>

namespace realesr {

Error layer_error(const std::string& name, const std::string& text) { return Error("layer " + name + ": " + text); }

std::string shape_text(const Shape& s) {
    return "(" + std::to_string(s.c) + ", " + std::to_string(s.h) + ", " + std::to_string(s.w) + ")";
}

// A decimal integer of at most `digits` digits, optional sign: graph/check.py's `_INT` for parameter
// values (10 digits), and Python's int() for the .param's counts and ids (18: no overflow here).
bool parse_int(const std::string& s, long long& out, std::size_t digits) {
    std::size_t i = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
    if (s.size() == i || s.size() - i > digits) return false;
    for (std::size_t k = i; k < s.size(); ++k)
        if (s[k] < '0' || s[k] > '9') return false;
    out = std::strtoll(s.c_str(), nullptr, 10);
    return true;
}

namespace {

// A decimal float as Python's float() reads it ("1.", ".5", "2e3"); inf/nan/hex are not finite
// decimal numbers and are refused by every caller, so they are "not a number" here.
bool strict_float(const std::string& s, double& out) {
    std::size_t i = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
    std::size_t digits = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
    if (i < s.size() && s[i] == '.') {
        ++i;
        while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++digits;
    }
    if (digits == 0) return false;
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
        ++i;
        if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
        std::size_t exp = 0;
        while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i, ++exp;
        if (exp == 0) return false;
    }
    if (i != s.size()) return false;
    out = std::strtod(s.c_str(), nullptr);  // overflow gives inf: refused as not finite
    return true;
}

const long kMaxBlobsPerLayer = 64;
const long kSize = 1L << 16;
const std::size_t kMaxName = 255;  // ncnn reads names with %255s

const double kInf = std::numeric_limits<double>::infinity();
const std::pair<double, double> kFinite{-kInf, kInf};
const std::map<int, int> kActivationParams = {{0, 0}, {1, 0}, {2, 1}, {3, 2}, {4, 0}, {5, 0}, {6, 2}};


// Sizes beyond any real graph (a crafted chain of resizes) saturate instead of overflowing.
long long saturate(long double v) { return v > 4e18L ? 4000000000000000000LL : static_cast<long long>(v); }

long long floor_div(long long a, long long b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

long long conv_out(long long size, long long kernel, long long dilation, long long stride, long long pad_a, long long pad_b) {
    if (pad_a == -233 || pad_a == -234) return -floor_div(-size, stride);  // SAME: ceil(size / stride)
    return floor_div(size + pad_a + pad_b - (dilation * (kernel - 1) + 1), stride) + 1;
}

std::vector<Shape> same(const Params&, const std::vector<Shape>& ins, const std::string&) { return {ins[0]}; }

std::vector<Shape> conv(const Params& p, const std::vector<Shape>& ins, const std::string& name) {
    const Shape x = ins[0];
    const long long out = p.i(0, 0), group = p.i(7, 1);
    const long long kw = p.i(1, 0), kh = p.i(11, kw), dw = p.i(2, 1), dh = p.i(12, dw), sw = p.i(3, 1), sh = p.i(13, sw);
    if (out < 1 || kw < 1 || kh < 1) throw layer_error(name, "a convolution needs 0= (outputs) and 1= (kernel) of at least 1");
    if (x.c % group || out % group)
        throw layer_error(name, "group " + std::to_string(group) + " does not divide " + std::to_string(x.c) + " input / " +
                             std::to_string(out) + " output channels");
    const long long expected = saturate(static_cast<long double>(out) * (x.c / group) * kw * kh);
    if (p.i(6, 0) != expected)
        throw layer_error(name, "weight count " + std::to_string(p.i(6, 0)) + " does not fit " + std::to_string(x.c) +
                             " input channels (" + std::to_string(out) + " outputs, " + std::to_string(kw) + "x" +
                             std::to_string(kh) + " kernel: " + std::to_string(expected) + " weights)");
    const long long act = p.i(9, 0);
    auto arr = p.arrays.find(10);
    const long n_act = arr == p.arrays.end() ? 0 : static_cast<long>(arr->second.size());
    if (n_act != kActivationParams.at(static_cast<int>(act)))
        throw layer_error(name, "activation " + std::to_string(act) + " needs " + std::to_string(kActivationParams.at(static_cast<int>(act))) +
                             " parameter(s) in -23310, got " + std::to_string(n_act));
    const long long pl = p.i(4, 0), pt = p.i(14, pl);
    const long long w = conv_out(x.w, kw, dw, sw, pl, p.i(15, pl));
    const long long h = conv_out(x.h, kh, dh, sh, pt, p.i(16, pt));
    if (w < 1 || h < 1)
        throw layer_error(name, "a " + std::to_string(x.w) + "x" + std::to_string(x.h) + " input leaves no output pixel");
    return {{out, h, w}};
}

std::vector<Shape> prelu(const Params& p, const std::vector<Shape>& ins, const std::string& name) {
    const long long slopes = p.i(0, 0);
    if (slopes != 1 && slopes != ins[0].c)
        throw layer_error(name, std::to_string(slopes) + " slopes for a " + std::to_string(ins[0].c) + "-channel input");
    return ins;
}

std::vector<Shape> batchnorm(const Params& p, const std::vector<Shape>& ins, const std::string& name) {
    if (p.i(0, 0) != ins[0].c)
        throw layer_error(name, "statistics for " + std::to_string(p.i(0, 0)) + " channels on a " + std::to_string(ins[0].c) + "-channel input");
    return ins;
}

std::vector<Shape> clip(const Params& p, const std::vector<Shape>& ins, const std::string& name) {
    if (p.f(0, -kInf) > p.f(1, kInf)) throw layer_error(name, "clip minimum above its maximum");
    return ins;
}

std::vector<Shape> concat(const Params&, const std::vector<Shape>& ins, const std::string& name) {
    long double channels = 0;
    for (const Shape& s : ins) {
        if (s.h != ins[0].h || s.w != ins[0].w) throw layer_error(name, "inputs of different sizes cannot be concatenated along channels");
        channels += s.c;
    }
    return {{saturate(channels), ins[0].h, ins[0].w}};
}

std::vector<Shape> eltwise(const Params& p, const std::vector<Shape>& ins, const std::string& name) {
    auto coeffs = p.arrays.find(1);
    if (coeffs != p.arrays.end() && !coeffs->second.empty() && coeffs->second.size() != ins.size())
        throw layer_error(name, std::to_string(coeffs->second.size()) + " coefficients for " + std::to_string(ins.size()) + " inputs");
    for (const Shape& s : ins)
        if (s != ins[0]) throw layer_error(name, "inputs of different shapes");
    return {ins[0]};
}

std::vector<Shape> binary(const Params& p, const std::vector<Shape>& ins, const std::string& name) {
    const long long with_scalar = p.i(1, 0);
    if (static_cast<long long>(ins.size()) != (with_scalar ? 1 : 2))
        throw layer_error(name, std::to_string(ins.size()) + " input(s) with with_scalar=" + std::to_string(with_scalar));
    if (with_scalar) return ins;
    const Shape a = ins[0], b = ins[1];
    if (a == b || (b.h == 1 && b.w == 1 && (b.c == 1 || b.c == a.c))) return {a};
    if (a.h == 1 && a.w == 1 && (a.c == 1 || a.c == b.c)) return {b};
    throw layer_error(name, "inputs of shapes " + shape_text(a) + " and " + shape_text(b) + " do not broadcast");
}

std::vector<Shape> interp(const Params& p, const std::vector<Shape>& ins, const std::string& name) {
    const Shape x = ins[0];
    const long long type = p.i(0, 0);
    if (type < 1 || type > 3) throw layer_error(name, "Interp needs 0= (resize type) 1, 2 or 3");
    long long oh = p.i(3, 0), ow = p.i(4, 0);
    if (oh == 0 || ow == 0) {  // Python's int(h * scale): truncation of the double product
        oh = saturate(static_cast<double>(x.h) * p.f(1, 1.0));
        ow = saturate(static_cast<double>(x.w) * p.f(2, 1.0));
    }
    if (oh < 1 || ow < 1)
        throw layer_error(name, "resizes a " + std::to_string(x.w) + "x" + std::to_string(x.h) + " input to " +
                             std::to_string(ow) + "x" + std::to_string(oh));
    return {{x.c, oh, ow}};
}

std::vector<Shape> pixelshuffle(const Params& p, const std::vector<Shape>& ins, const std::string& name) {
    const Shape x = ins[0];
    const long long r = p.i(0, 1);
    if (x.c % (r * r))
        throw layer_error(name, "upscale factor " + std::to_string(r) + " needs channels divisible by " + std::to_string(r * r) +
                             ", got " + std::to_string(x.c));
    return {{x.c / (r * r), saturate(static_cast<long double>(x.h) * r), saturate(static_cast<long double>(x.w) * r)}};
}

std::vector<Shape> reorg(const Params& p, const std::vector<Shape>& ins, const std::string& name) {
    const Shape x = ins[0];
    const long long s = p.i(0, 1);
    if (x.h % s || x.w % s)
        throw layer_error(name, "stride " + std::to_string(s) + " does not divide a " + std::to_string(x.w) + "x" + std::to_string(x.h) + " input");
    return {{saturate(static_cast<long double>(x.c) * s * s), x.h / s, x.w / s}};
}

using Ints = std::map<int, std::pair<long long, long long>>;
using Floats = std::map<int, std::pair<double, double>>;

LayerKind make(ShapeRule shape, Ints ints = {}, Floats floats = {}, std::map<int, long> arrays = {},
               std::pair<long, long> bottoms = {1, 1}, std::pair<long, long> tops = {1, 1}) {
    return LayerKind{std::move(shape), std::move(ints), std::move(floats), std::move(arrays), bottoms, tops, {}, {}};
}

LayerKind with(LayerKind kind, WeightsRule weights, std::function<long long(const Params&)> divisor = {}) {
    kind.weights = std::move(weights);
    kind.divisor = std::move(divisor);
    return kind;
}

using Layout = std::vector<std::pair<long long, bool>>;

Layout conv_weights(const Params& p) {
    Layout arrays = {{p.i(6, 0), true}};
    if (p.i(5, 0)) arrays.push_back({p.i(0, 0), false});
    return arrays;
}

WeightsRule per_channel(std::size_t arrays) {
    return [arrays](const Params& p) { return Layout(arrays, {p.i(0, 0), false}); };
}

long long conv_divisor(const Params& p) { return p.i(3, 1); }

double parse_float(const std::string& name, int key, const std::string& raw, std::pair<double, double> bounds) {
    double v = 0;
    const std::string shown = raw.substr(0, 20);
    if (!strict_float(raw, v) || raw.find_first_of(".eE") == std::string::npos || !std::isfinite(v))
        throw layer_error(name, "param " + std::to_string(key) + "='" + shown + "' must be a finite float written with a '.' or an exponent");
    if (v < bounds.first || v > bounds.second) {
        std::ostringstream range;  // %g, as the Python validator words it
        range << bounds.first << ".." << bounds.second;
        throw layer_error(name, "param " + std::to_string(key) + "=" + shown + " is outside " + range.str());
    }
    return v;
}

std::vector<double> parse_array(const std::string& name, int key, const std::string& raw, long longest) {
    const std::size_t comma = raw.find(',');
    const std::string head = raw.substr(0, comma);
    long long count = -1;
    if (!parse_int(head, count) || count < 0 || count > longest)
        throw layer_error(name, "array " + std::to_string(key) + " count '" + head.substr(0, 20) + "' is not in 0.." + std::to_string(longest));
    std::vector<std::string> values;
    if (comma != std::string::npos) {
        std::string rest = raw.substr(comma + 1);
        std::size_t start = 0;
        while (start <= rest.size()) {
            const std::size_t next = std::min(rest.find(',', start), rest.size());
            if (next > start) values.push_back(rest.substr(start, next - start));
            start = next + 1;
        }
    }
    if (static_cast<long long>(values.size()) != count)
        throw layer_error(name, "array " + std::to_string(key) + " declares " + head + " values but holds " + std::to_string(values.size()));
    std::vector<double> out;
    for (const std::string& v : values) out.push_back(parse_float(name, key, v, kFinite));
    return out;
}

}  // namespace

const std::map<std::string, LayerKind>& layer_kinds() {
    using R = std::pair<long long, long long>;
    static const std::map<int, R> conv_ints = {
        {0, {1, 8192}}, {1, {1, 31}}, {11, {1, 31}}, {2, {1, 16}}, {12, {1, 16}}, {3, {1, 16}}, {13, {1, 16}},
        {4, {-234, 256}}, {14, {-234, 256}}, {15, {-234, 256}}, {16, {-234, 256}}, {5, {0, 1}}, {6, {1, 1LL << 30}},
        {8, {0, 0}}, {9, {0, 6}}, {19, {0, 0}}};
    static const std::map<std::string, LayerKind> kinds = [] {
        std::map<std::string, LayerKind> k;
        const R size{0, kSize};
        k["Input"] = make(same, {{0, size}, {1, size}, {11, size}, {2, size}}, {}, {}, {0, 0});
        k["Convolution"] = with(make(conv, conv_ints, {{18, kFinite}}, {{10, 2}}), conv_weights, conv_divisor);
        std::map<int, R> dw_ints = conv_ints;
        dw_ints[7] = {1, 8192};
        k["ConvolutionDepthWise"] = with(make(conv, dw_ints, {{18, kFinite}}, {{10, 2}}), conv_weights, conv_divisor);
        k["PReLU"] = with(make(prelu, {{0, {1, 8192}}}), per_channel(1));
        k["ReLU"] = make(same, {}, {{0, kFinite}});
        k["Sigmoid"] = make(same);
        k["TanH"] = make(same);
        k["Clip"] = make(clip, {}, {{0, kFinite}, {1, kFinite}});
        k["Noop"] = make(same);
        k["Dropout"] = make(same, {}, {{0, kFinite}});
        k["BatchNorm"] = with(make(batchnorm, {{0, {1, 8192}}}, {{1, kFinite}}), per_channel(4));
        k["Split"] = make([](const Params&, const std::vector<Shape>& ins, const std::string&) {
                          return std::vector<Shape>(kMaxBlobsPerLayer, ins[0]);
                      },
                      {}, {}, {}, {1, 1}, {1, kMaxBlobsPerLayer});
        k["Concat"] = make(concat, {{0, {0, 0}}}, {}, {}, {1, kMaxBlobsPerLayer});
        k["Eltwise"] = make(eltwise, {{0, {0, 2}}}, {}, {{1, kMaxBlobsPerLayer}}, {2, kMaxBlobsPerLayer});
        k["BinaryOp"] = make(binary, {{0, {0, 11}}, {1, {0, 1}}}, {{2, kFinite}}, {}, {1, 2});
        k["Interp"] = make(interp, {{0, {1, 3}}, {3, size}, {4, size}, {5, {0, 0}}, {6, {0, 1}}},
                       {{1, {1.0 / 16, 16.0}}, {2, {1.0 / 16, 16.0}}});
        k["PixelShuffle"] = make(pixelshuffle, {{0, {1, 16}}, {1, {0, 1}}});
        k["Reorg"] = with(make(reorg, {{0, {1, 16}}, {1, {0, 1}}}), {}, [](const Params& p) { return p.i(0, 1); });
        return k;
    }();
    return kinds;
}

// graph/check.py _typed + parse_params: the checks that do not depend on shapes.
Params typed_params(const Line& layer) {
    const auto& kinds = layer_kinds();
    auto found = kinds.find(layer.type);
    if (found == kinds.end()) throw layer_error(layer.name, "unknown layer type '" + layer.type.substr(0, 40) + "'");
    const LayerKind& kind = found->second;
    std::vector<std::string> names = {layer.name};
    names.insert(names.end(), layer.bottoms.begin(), layer.bottoms.end());
    names.insert(names.end(), layer.tops.begin(), layer.tops.end());
    for (const std::string& blob : names)
        if (blob.size() > kMaxName) throw layer_error(layer.name.substr(0, 40), "name longer than 255 characters");
    const long nb = static_cast<long>(layer.bottoms.size()), nt = static_cast<long>(layer.tops.size());
    if (nb < kind.bottoms.first || nb > kind.bottoms.second || nt < kind.tops.first || nt > kind.tops.second)
        throw layer_error(layer.name, layer.type + " takes " + std::to_string(kind.bottoms.first) + ".." + std::to_string(kind.bottoms.second) +
                                   " inputs and " + std::to_string(kind.tops.first) + ".." + std::to_string(kind.tops.second) + " outputs");
    Params params;
    for (const auto& [key, raw] : layer.raw) {
        if (key <= -23300) {
            auto longest = kind.arrays.find(-key - 23300);
            if (longest == kind.arrays.end()) throw layer_error(layer.name, layer.type + " takes no array " + std::to_string(key));
            params.arrays[longest->first] = parse_array(layer.name, key, raw, longest->second);
        } else if (kind.ints.count(key)) {
            long long v = 0;
            if (!parse_int(raw, v)) throw layer_error(layer.name, "param " + std::to_string(key) + "='" + raw.substr(0, 20) + "' must be an integer");
            const auto [lo, hi] = kind.ints.at(key);
            if (v < lo || v > hi)
                throw layer_error(layer.name, "param " + std::to_string(key) + "=" + raw.substr(0, 20) + " is outside " + std::to_string(lo) + ".." + std::to_string(hi));
            params.ints[key] = v;
        } else if (kind.floats.count(key)) {
            params.floats[key] = parse_float(layer.name, key, raw, kind.floats.at(key));
        } else {
            throw layer_error(layer.name, layer.type + " takes no parameter " + std::to_string(key));
        }
    }
    for (int key : {14, 15, 16, 4}) {  // pads: pixels, or -233/-234 ("same") on the first
        auto it = params.ints.find(key);
        if (it != params.ints.end() && it->second < 0 && !(key == 4 && (it->second == -233 || it->second == -234)))
            throw layer_error(layer.name, "param " + std::to_string(key) + "=" + std::to_string(it->second) + " is not a padding");
    }
    if (!ncnn_has_layer(layer.type))
        throw Error("ncnn .param: layer type " + layer.type + " is not built into this ncnn (see docs/deploy.md)");
    return params;
}

std::string describe_layer_rules() {
    auto number = [](double v) {
        char text[40];
        std::snprintf(text, sizeof text, "%.17g", v);
        return std::string(text);
    };
    std::string out;
    for (const auto& [type, kind] : layer_kinds()) {
        out += type + " bottoms=" + std::to_string(kind.bottoms.first) + ".." + std::to_string(kind.bottoms.second) +
               " tops=" + std::to_string(kind.tops.first) + ".." + std::to_string(kind.tops.second);
        for (const auto& [key, range] : kind.ints)
            out += " int:" + std::to_string(key) + "=" + std::to_string(range.first) + ".." + std::to_string(range.second);
        for (const auto& [key, range] : kind.floats)
            out += " float:" + std::to_string(key) + "=" + number(range.first) + ".." + number(range.second);
        for (const auto& [key, longest] : kind.arrays) out += " array:" + std::to_string(key) + "=" + std::to_string(longest);
        out += "\n";
    }
    return out;
}

}  // namespace realesr

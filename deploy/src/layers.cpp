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

// A decimal integer of at most `digits` digits, optional sign: graph/params.py's `_INT` for parameter
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

void check_activation(const Params& p, const std::string& name) {
    const long long act = p.i(9, 0);
    auto arr = p.arrays.find(10);
    const long n_act = arr == p.arrays.end() ? 0 : static_cast<long>(arr->second.size());
    if (n_act != kActivationParams.at(static_cast<int>(act)))
        throw layer_error(name, "activation " + std::to_string(act) + " needs " + std::to_string(kActivationParams.at(static_cast<int>(act))) +
                             " parameter(s) in -23310, got " + std::to_string(n_act));
}

// The checks convolutions and deconvolutions share (graph/shape_rules.py _grouped, _weight_count,
// _activation): outputs and kernel, groups, the weight count for the input channels, the fused
// activation's parameters.
void check_kernel_weights(const Params& p, const Shape& x, const std::string& name) {
    const long long out = p.i(0, 0), group = p.i(7, 1), kw = p.i(1, 0), kh = p.i(11, kw);
    if (out < 1 || kw < 1 || kh < 1) throw layer_error(name, "a convolution needs 0= (outputs) and 1= (kernel) of at least 1");
    if (x.c % group || out % group)
        throw layer_error(name, "group " + std::to_string(group) + " does not divide " + std::to_string(x.c) + " input / " +
                             std::to_string(out) + " output channels");
    const long long expected = saturate(static_cast<long double>(out) * (x.c / group) * kw * kh);
    if (p.i(6, 0) != expected)
        throw layer_error(name, "weight count " + std::to_string(p.i(6, 0)) + " does not fit " + std::to_string(x.c) +
                             " input channels (" + std::to_string(out) + " outputs, " + std::to_string(kw) + "x" +
                             std::to_string(kh) + " kernel: " + std::to_string(expected) + " weights)");
    check_activation(p, name);
}

std::vector<Shape> conv(const Params& p, const std::vector<Shape>& ins, const std::string& name) {
    const Shape x = ins[0];
    const long long out = p.i(0, 0);
    const long long kw = p.i(1, 0), kh = p.i(11, kw), dw = p.i(2, 1), dh = p.i(12, dw), sw = p.i(3, 1), sh = p.i(13, sw);
    check_kernel_weights(p, x, name);
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

Shape image(const Shape& x, const std::string& name) {
    if (x.dims != 3) throw layer_error(name, "needs an image blob, got a flat vector");
    return x;
}

std::vector<Shape> memorydata(const Params& p, const std::vector<Shape>&, const std::string& name) {
    const long long w = p.i(0, 0), h = p.i(1, 0), c = p.i(2, 0);
    if (std::min({w, h, c}) < 1) throw layer_error(name, "MemoryData needs 0= (w), 1= (h) and 2= (c) of at least 1 (only 3-D constants)");
    return {{c, h, w}};
}

std::vector<Shape> deconv(const Params& p, const std::vector<Shape>& ins, const std::string& name) {
    const Shape x = image(ins[0], name);
    const long long out = p.i(0, 0);
    const long long kw = p.i(1, 0), kh = p.i(11, kw), dw = p.i(2, 1), dh = p.i(12, dw), sw = p.i(3, 1), sh = p.i(13, sw);
    check_kernel_weights(p, x, name);
    const long long pl = p.i(4, 0), pt = p.i(14, pl), pr = p.i(15, pl), pb = p.i(16, pt);
    const long long opw = p.i(18, 0), oph = p.i(19, opw);
    const long long w = saturate(static_cast<long double>(x.w - 1) * sw) + dw * (kw - 1) + 1 + opw - pl - pr;
    const long long h = saturate(static_cast<long double>(x.h - 1) * sh) + dh * (kh - 1) + 1 + oph - pt - pb;
    if (w < 1 || h < 1)
        throw layer_error(name, "a " + std::to_string(x.w) + "x" + std::to_string(x.h) + " input leaves no output pixel");
    return {{out, h, w}};
}

long long crop_length(long long start, long long end, long long size, const std::string& name) {
    if (start == -233) start = 0;
    if (end == -233) end = size;
    const long long offset = start >= 0 ? start : size + start;
    const long long length = std::min(size, end > 0 ? end : size + end) - offset;
    if (offset < 0 || length < 1 || offset + length > size)
        throw layer_error(name, "crops " + std::to_string(start) + ".." + std::to_string(end) + " of a " + std::to_string(size) + "-pixel axis");
    return length;
}

std::vector<double> array_of(const Params& p, int key) {
    auto it = p.arrays.find(key);
    return it == p.arrays.end() ? std::vector<double>{} : it->second;
}

std::vector<Shape> crop(const Params& p, const std::vector<Shape>& ins, const std::string& name) {
    const Shape x = image(ins[0], name);
    const std::vector<double> starts = array_of(p, 9), ends = array_of(p, 10), axes = array_of(p, 11);
    if (starts.empty() || ends.size() != starts.size() || (!axes.empty() && axes.size() != starts.size()) || (axes.empty() && starts.size() != 3))
        throw layer_error(name, "Crop needs -23309 (starts) and -23310 (ends) of one length, and -23311 (axes) of it or 3 of each");
    long long sizes[3] = {x.c, x.h, x.w};
    for (std::size_t i = 0; i < starts.size(); ++i) {
        long long axis = axes.empty() ? static_cast<long long>(i) : static_cast<long long>(axes[i]);
        if (axis < 0) axis += 3;
        if (axis < 0 || axis > 2) throw layer_error(name, "crop axis is not one of an image's 3");
        sizes[axis] = crop_length(static_cast<long long>(starts[i]), static_cast<long long>(ends[i]), sizes[axis], name);
    }
    return {{sizes[0], sizes[1], sizes[2]}};
}

std::vector<Shape> pool(const Params& p, const std::vector<Shape>& ins, const std::string& name) {
    const Shape x = image(ins[0], name);
    if (p.i(4, 0)) return {Shape{x.c, 1, 1, 1}};
    const long long kw = p.i(1, 0), kh = p.i(11, kw), sw = p.i(2, 1), sh = p.i(12, sw);
    const long long pl = p.i(3, 0), pr = p.i(14, pl), pt = p.i(13, pl), pb = p.i(15, pt);
    if (kw < 1 || kh < 1) throw layer_error(name, "a non-global Pooling needs 1= (kernel) of at least 1");
    long long out[2];
    const long long sizes[2][5] = {{x.h, kh, sh, pt, pb}, {x.w, kw, sw, pl, pr}};
    for (int a = 0; a < 2; ++a) {
        const long long span = sizes[a][0] + sizes[a][3] + sizes[a][4] - sizes[a][1], stride = sizes[a][2];
        if (span < 0) throw layer_error(name, "the input is smaller than the pooling window");
        out[a] = p.i(5, 0) == 0 ? (span + stride - 1) / stride + 1 : span / stride + 1;
    }
    return {{x.c, out[0], out[1]}};
}

std::vector<Shape> innerproduct(const Params& p, const std::vector<Shape>& ins, const std::string& name) {
    const Shape x = ins[0];
    const long double values = static_cast<long double>(x.c) * x.h * x.w;
    if (p.i(2, 0) != saturate(static_cast<long double>(p.i(0, 0)) * values))
        throw layer_error(name, "weight count " + std::to_string(p.i(2, 0)) + " does not fit the inputs");
    check_activation(p, name);
    return {Shape{p.i(0, 0), 1, 1, 1}};
}

std::vector<Shape> padding(const Params& p, const std::vector<Shape>& ins, const std::string& name) {
    const Shape x = image(ins[0], name);
    const long long top = p.i(0, 0), bottom = p.i(1, 0), left = p.i(2, 0), right = p.i(3, 0);
    if (p.i(6, 0) != 0 && p.i(6, 0) != x.c) throw layer_error(name, "per-channel pad values do not fit the channels");
    if (p.i(4, 0) == 2 && (std::max(top, bottom) >= x.h || std::max(left, right) >= x.w))
        throw layer_error(name, "reflect padding needs a larger input");
    return {{x.c, x.h + top + bottom, x.w + left + right}};
}

std::vector<Shape> reshape(const Params& p, const std::vector<Shape>& ins, const std::string& name) {
    const Shape x = ins[0];
    const long double total = static_cast<long double>(x.c) * x.h * x.w;
    std::vector<long long> wanted;
    if (p.i(1, -233) == -233) wanted = {p.i(0, -233)};
    else wanted = {p.i(2, -233), p.i(1, -233), p.i(0, -233)};
    if (wanted.size() == 3 && std::count(wanted.begin(), wanted.end(), -233))
        throw layer_error(name, "Reshape to 2-D is not supported (give 0=, 1= and 2=, or 0= only)");
    const long long own[3] = {x.c, x.h, x.w};
    std::vector<long long> dims;
    for (std::size_t axis = 0; axis < wanted.size(); ++axis) {
        long long v = wanted[axis];
        if (v == 0 && wanted.size() == 3 && x.dims == 3) v = own[axis];
        else if (v != -1 && v < 1) throw layer_error(name, "Reshape size " + std::to_string(v) + " is not a size, 0 (keep) on an image or -1 (infer)");
        dims.push_back(v);
    }
    if (std::count(dims.begin(), dims.end(), -1) > 1) throw layer_error(name, "Reshape infers at most one size (-1)");
    long double known = 1;
    for (long long d : dims) if (d != -1) known *= d;
    auto infer = std::find(dims.begin(), dims.end(), -1);
    if (infer != dims.end()) {
        const long long t = static_cast<long long>(total), k = static_cast<long long>(known);
        if (known > total || t % k) throw layer_error(name, "the values do not reshape to the sizes asked");
        *infer = t / k;
    }
    long double product = 1;
    for (long long d : dims) product *= d;
    if (product != total) throw layer_error(name, "the values do not reshape to the sizes asked");
    if (dims.size() == 1) return {Shape{dims[0], 1, 1, 1}};
    return {{dims[0], dims[1], dims[2]}};
}

std::vector<Shape> permute(const Params& p, const std::vector<Shape>& ins, const std::string& name) {
    const Shape x = image(ins[0], name);
    static const int orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    const long long axes[3] = {x.c, x.h, x.w};
    const int* o = orders[p.i(0, 0)];
    return {{axes[o[0]], axes[o[1]], axes[o[2]]}};
}

int axis_of(const Params& p, const Shape& x, int key, const std::string& name) {
    const long long axis = p.i(key, 0);
    if (x.dims == 1) {
        if (axis != 0 && axis != -1) throw layer_error(name, "axis " + std::to_string(axis) + " of a flat vector");
        return 0;
    }
    return static_cast<int>(axis < 0 ? axis + 3 : axis);
}

std::vector<Shape> slice(const Params& p, const std::vector<Shape>& ins, const std::string& name) {
    const Shape x = ins[0];
    const int axis = axis_of(p, x, 1, name);
    const std::vector<double> slices = array_of(p, 0);
    const long long own[3] = {x.c, x.h, x.w};
    const long long size = own[axis];
    bool bad = slices.empty();
    for (double v : slices) bad = bad || (v != -233 && v < 1);
    if (bad) throw layer_error(name, "Slice needs -23300 (slice sizes) of at least 1 each, or -233 (an equal share)");
    std::vector<Shape> outs;
    long long taken = 0;
    for (std::size_t i = 0; i < slices.size(); ++i) {
        const long long v = static_cast<long long>(slices[i]);
        const long long part = v == -233 ? (size - taken) / static_cast<long long>(slices.size() - i) : v;
        if (part < 1 || taken + part > size) throw layer_error(name, "the slices do not fit a " + std::to_string(size) + "-long axis");
        taken += part;
        long long dims[3] = {x.c, x.h, x.w};
        dims[axis] = part;
        outs.push_back(Shape{dims[0], dims[1], dims[2], x.dims});
    }
    return outs;
}

std::vector<Shape> softmax(const Params& p, const std::vector<Shape>& ins, const std::string& name) {
    axis_of(p, ins[0], 0, name);
    return {ins[0]};
}

std::vector<Shape> layernorm(const Params& p, const std::vector<Shape>& ins, const std::string& name) {
    const Shape x = ins[0];
    const long long size = p.i(0, 0);
    const bool fits = x.dims == 1 ? size == x.c : (size == x.w || size == saturate(static_cast<long double>(x.w) * x.h));
    if (!fits) throw layer_error(name, "affine size " + std::to_string(size) + " does not fit the blob");
    return {x};
}

using Ints = std::map<int, std::pair<long long, long long>>;
using Floats = std::map<int, std::pair<double, double>>;

LayerKind make(ShapeRule shape, Ints ints = {}, Floats floats = {}, std::map<int, long> arrays = {},
               std::pair<long, long> bottoms = {1, 1}, std::pair<long, long> tops = {1, 1}) {
    return LayerKind{std::move(shape), std::move(ints), std::move(floats), std::move(arrays), bottoms, tops, {}, {}, {}, false};
}

LayerKind flat(LayerKind kind) {
    kind.flat = true;
    return kind;
}

LayerKind int_arrays(LayerKind kind, std::map<int, long> arrays) {
    kind.int_arrays = std::move(arrays);
    return kind;
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

Layout innerproduct_weights(const Params& p) {
    Layout arrays = {{p.i(2, 0), true}};
    if (p.i(1, 0)) arrays.push_back({p.i(0, 0), false});
    return arrays;
}

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

const long long kIntArrayLow = -(1LL << 16), kIntArrayHigh = (1LL << 31) - 1;  // graph/params.py INT_ARRAY_RANGE

std::vector<double> parse_array(const std::string& name, int key, const std::string& raw, long longest, bool ints = false) {
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
    for (const std::string& v : values) {
        if (!ints) {
            out.push_back(parse_float(name, key, v, kFinite));
            continue;
        }
        long long n = 0;
        if (!parse_int(v, n) || n < kIntArrayLow || n > kIntArrayHigh)
            throw layer_error(name, "array " + std::to_string(key) + " value '" + v.substr(0, 20) + "' must be an integer in " +
                                   std::to_string(kIntArrayLow) + ".." + std::to_string(kIntArrayHigh));
        out.push_back(static_cast<double>(n));
    }
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
        k["ReLU"] = flat(make(same, {}, {{0, kFinite}}));
        k["Sigmoid"] = flat(make(same));
        k["TanH"] = flat(make(same));
        k["Clip"] = flat(make(clip, {}, {{0, kFinite}, {1, kFinite}}));
        k["Noop"] = flat(make(same));
        k["Dropout"] = flat(make(same, {}, {{0, kFinite}}));
        k["BatchNorm"] = with(make(batchnorm, {{0, {1, 8192}}}, {{1, kFinite}}), per_channel(4));
        k["Split"] = make([](const Params&, const std::vector<Shape>& ins, const std::string&) {
                          return std::vector<Shape>(kMaxBlobsPerLayer, ins[0]);
                      },
                      {}, {}, {}, {1, 1}, {1, kMaxBlobsPerLayer});
        k["Split"].flat = true;
        k["Concat"] = make(concat, {{0, {0, 0}}}, {}, {}, {1, kMaxBlobsPerLayer});
        k["Eltwise"] = flat(make(eltwise, {{0, {0, 2}}}, {}, {{1, kMaxBlobsPerLayer}}, {2, kMaxBlobsPerLayer}));
        k["BinaryOp"] = flat(make(binary, {{0, {0, 11}}, {1, {0, 1}}}, {{2, kFinite}}, {}, {1, 2}));
        const R pad{0, 256};
        k["MemoryData"] = with(make(memorydata, {{0, size}, {1, size}, {2, {0, 8192}}, {21, {0, 1}}}, {}, {}, {0, 0}),
                               [](const Params& p) { return Layout{{p.i(0, 0) * p.i(1, 0) * p.i(2, 0), p.i(21, 1) == 0}}; });
        k["Swish"] = flat(make(same));
        k["GELU"] = flat(make(same, {{0, {0, 1}}}));
        k["HardSwish"] = flat(make(same, {}, {{0, kFinite}, {1, kFinite}}));
        k["Mish"] = flat(make(same));
        const std::map<int, R> deconv_ints = {
            {0, {1, 8192}}, {1, {1, 31}}, {11, {1, 31}}, {2, {1, 16}}, {12, {1, 16}}, {3, {1, 16}}, {13, {1, 16}},
            {4, pad}, {14, pad}, {15, pad}, {16, pad}, {18, {0, 16}}, {19, {0, 16}}, {5, {0, 1}}, {6, {1, 1LL << 30}}, {9, {0, 6}}};
        k["Deconvolution"] = with(make(deconv, deconv_ints, {}, {{10, 2}}), conv_weights);
        std::map<int, R> deconv_dw_ints = deconv_ints;
        deconv_dw_ints[7] = {1, 8192};
        k["DeconvolutionDepthWise"] = with(make(deconv, deconv_dw_ints, {}, {{10, 2}}), conv_weights);
        k["Crop"] = int_arrays(make(crop), {{9, 3}, {10, 3}, {11, 3}});
        k["Pooling"] = with(make(pool, {{0, {0, 1}}, {1, {1, 31}}, {11, {1, 31}}, {2, {1, 16}}, {12, {1, 16}}, {3, pad}, {13, pad},
                                        {14, pad}, {15, pad}, {4, {0, 1}}, {5, {0, 1}}, {6, {0, 1}}, {7, {0, 0}}}),
                            {}, [](const Params& p) { return p.i(4, 0) ? 1LL : p.i(2, 1); });
        k["InnerProduct"] = flat(with(make(innerproduct, {{0, {1, 8192}}, {1, {0, 1}}, {2, {1, 1LL << 30}}, {8, {0, 0}}, {9, {0, 6}}}, {}, {{10, 2}}),
                                      innerproduct_weights));
        k["Padding"] = with(make(padding, {{0, pad}, {1, pad}, {2, pad}, {3, pad}, {4, {0, 2}}, {6, {0, 8192}}}, {{5, kFinite}}),
                            [](const Params& p) { return p.i(6, 0) ? Layout{{p.i(6, 0), false}} : Layout{}; });
        k["Reshape"] = flat(make(reshape, {{0, {-233, 1LL << 24}}, {1, {-233, 1LL << 16}}, {2, {-233, 1LL << 16}}}));
        k["Permute"] = make(permute, {{0, {0, 5}}});
        k["Slice"] = flat(int_arrays(make(slice, {{1, {-3, 2}}}, {}, {}, {1, 1}, {1, kMaxBlobsPerLayer}), {{0, kMaxBlobsPerLayer}}));
        k["Softmax"] = flat(make(softmax, {{0, {-3, 2}}, {1, {0, 1}}}));
        k["LayerNorm"] = flat(with(make(layernorm, {{0, {1, 1LL << 24}}, {2, {0, 1}}}, {{1, {0.0, 1.0}}}),
                                   [](const Params& p) { return p.i(2, 1) ? Layout(2, {p.i(0, 0), false}) : Layout{}; }));
        k["Interp"] = make(interp, {{0, {1, 3}}, {3, size}, {4, size}, {5, {0, 0}}, {6, {0, 1}}},
                       {{1, {1.0 / 16, 16.0}}, {2, {1.0 / 16, 16.0}}});
        k["PixelShuffle"] = make(pixelshuffle, {{0, {1, 16}}, {1, {0, 1}}});
        k["Reorg"] = with(make(reorg, {{0, {1, 16}}, {1, {0, 1}}}), {}, [](const Params& p) { return p.i(0, 1); });
        return k;
    }();
    return kinds;
}

// graph/layers.py typed + graph/params.py parse_params: the checks that do not depend on shapes.
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
            const int id = -key - 23300;
            auto int_longest = kind.int_arrays.find(id);
            auto longest = kind.arrays.find(id);
            if (int_longest != kind.int_arrays.end())
                params.arrays[id] = parse_array(layer.name, key, raw, int_longest->second, true);
            else if (longest != kind.arrays.end())
                params.arrays[id] = parse_array(layer.name, key, raw, longest->second);
            else
                throw layer_error(layer.name, layer.type + " takes no array " + std::to_string(key));
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
        for (const auto& [key, longest] : kind.int_arrays) out += " intarray:" + std::to_string(key) + "=" + std::to_string(longest);
        if (kind.flat) out += " flat";
        out += "\n";
    }
    return out;
}

std::vector<Shape> output_shapes(const LayerKind& kind, const Params& params, const std::vector<Shape>& ins, const std::string& name) {
    if (!kind.flat)
        for (const Shape& x : ins)
            if (x.dims != 3) throw layer_error(name, "needs image blobs, got a flat vector");
    return kind.shape(params, ins, name);
}

}  // namespace realesr

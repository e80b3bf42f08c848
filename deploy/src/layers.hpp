// The layer table the model checks use (internal to the library; see layers.cpp).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "realesr_portable/realesr_portable.hpp"

namespace realesr {

// One layer line of a .param.
struct Line {
    std::string type, name;
    std::vector<std::string> bottoms, tops;
    std::map<int, std::string> raw;  // parameter id (arrays negative) -> its text
};

// One layer's parameters as ncnn will read them (graph/params.py Params).
struct Params {
    std::map<int, long long> ints;
    std::map<int, double> floats;
    std::map<int, std::vector<double>> arrays;
    long long i(int key, long long fallback) const {
        auto it = ints.find(key);
        return it == ints.end() ? fallback : it->second;
    }
    double f(int key, double fallback) const {
        auto it = floats.find(key);
        return it == floats.end() ? fallback : it->second;
    }
};

// A blob's shape; dims 1 for a flat vector of c values (global pooling, InnerProduct), else 3.
struct Shape {
    long long c, h, w;
    int dims = 3;
    bool operator==(const Shape& o) const { return c == o.c && h == o.h && w == o.w && dims == o.dims; }
    bool operator!=(const Shape& o) const { return !(*this == o); }
};

using ShapeRule = std::function<std::vector<Shape>(const Params&, const std::vector<Shape>&, const std::string&)>;
// (element count, tagged) of each array a layer stores in the .bin, in file order.
using WeightsRule = std::function<std::vector<std::pair<long long, bool>>(const Params&)>;

// What ncnn accepts for one layer type: the table of portable/graph/layers.py LAYER_KINDS.
struct LayerKind {
    ShapeRule shape;
    std::map<int, std::pair<long long, long long>> ints;
    std::map<int, std::pair<double, double>> floats;
    std::map<int, long> arrays;  // array id -> longest length (floats)
    std::pair<long, long> bottoms{1, 1};
    std::pair<long, long> tops{1, 1};
    WeightsRule weights;                       // empty: stores nothing in the .bin
    std::function<long long(const Params&)> divisor;  // what it divides input sizes by; empty: 1
    std::map<int, long> int_arrays;            // array id -> longest length (integers)
    bool flat = false;                         // also takes flat (1-D) blobs
};

// The layer's output shapes by its entry; an image-only entry refuses flat inputs.
std::vector<Shape> output_shapes(const LayerKind& kind, const Params& params, const std::vector<Shape>& ins, const std::string& name);

// "(c, h, w)", as the Python validator prints a shape.
std::string shape_text(const Shape& s);

// "layer NAME: TEXT", the one-line error of a layer check.
Error layer_error(const std::string& name, const std::string& text);

// A decimal integer of at most `digits` digits, optional sign (see layers.cpp).
bool parse_int(const std::string& s, long long& out, std::size_t digits = 10);

// The table: layer type -> what ncnn accepts for it.
const std::map<std::string, LayerKind>& layer_kinds();

// A layer's parameters typed and range-checked by its table entry (the checks that do not depend
// on shapes); Error for an unknown type, id, type or range, or a layer this ncnn lacks.
Params typed_params(const Line& layer);

}  // namespace realesr

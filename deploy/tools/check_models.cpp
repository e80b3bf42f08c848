// realesr-portable-check: the library's model checks on many models in one process (the fuzz and
// the differential test against the Python validator run thousands through it).
//
//   realesr-portable-check [--run] < LIST
//   realesr-portable-check --rules        (the layer table the checks use, one line per type)
//
// LIST has one model per line, "NAME.param<TAB>NAME.bin<TAB>NAME.json". For each the program
// prints one line: "refused<TAB>MESSAGE" (the checks' one-line error, as the runner prints it),
// else "ok" (accepted), or with --run: "ran" (accepted, loaded into ncnn and run on an 8x8 image
// whole and in 4-pixel tiles) or "failed<TAB>MESSAGE" (accepted, then refused by the load or
// the run). Lines are flushed one by one, so a crash names the model it happened on.
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>

#include "realesr_portable/realesr_portable.hpp"

namespace {

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw realesr::Error(path + ": cannot read");
    return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string check(const std::string& param, const std::string& bin, const std::string& json, bool run) {
    const realesr::ModelSpec spec = realesr::parse_spec(slurp(json));
    const std::string text = slurp(param);
    const std::string weights = slurp(bin);
    std::vector<unsigned char> bytes(weights.begin(), weights.end());
    realesr::validate_model(text, bytes, spec);
    if (!run) return "ok";
    try {
        realesr::RunOptions options;
        options.threads = 1;
        options.fp32 = true;
        realesr::Model model(text, std::move(bytes), spec, options);
        realesr::Image image{8, 8, 3, std::vector<std::uint8_t>(8 * 8 * 3)};
        for (std::size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = static_cast<std::uint8_t>(i * 37 % 256);
        model.upscale(image, 0);
        model.upscale(image, 4);
    } catch (const std::exception& e) {
        return std::string("failed\t") + e.what();
    }
    return "ran";
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 1 && std::string(argv[1]) == "--rules") {
        std::cout << realesr::describe_layer_rules();
        return 0;
    }
    const bool run = argc > 1 && std::string(argv[1]) == "--run";
    for (std::string line; std::getline(std::cin, line);) {
        std::istringstream fields(line);
        std::string param, bin, json;
        std::getline(fields, param, '\t');
        std::getline(fields, bin, '\t');
        std::getline(fields, json, '\t');
        try {
            std::cout << check(param, bin, json, run) << std::endl;
        } catch (const std::exception& e) {
            std::cout << "refused\t" << e.what() << std::endl;
        }
    }
    return 0;
}

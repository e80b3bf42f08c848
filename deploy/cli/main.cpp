// realesr-portable-ncnn: the command-line face of the C++ runtime (files, flags, messages).
//
//   realesr-portable-ncnn -i IN -o OUT.png|OUT.jpg -m NAME.param [-t TILE] [-g GPU] [--fp32] [--threads N]
//
// Reads NAME.param, NAME.bin and the NAME.json sidecar next to it; PNG/JPEG (anything stb_image
// reads) in, PNG or JPEG out (by -o's extension), written to a temporary file and renamed; never
// onto the input. Errors: one line, exit code 1 (2 for bad flags).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include "realesr_portable/realesr_portable.hpp"

namespace {

const char* kUsage =
    "usage: realesr-portable-ncnn -i IN -o OUT.png|OUT.jpg -m NAME.param [-t TILE] [-g GPU] [--fp32] [--threads N]\n"
    "  -t TILE      tile size in input pixels (0 = whole image, default 0)\n"
    "  -g GPU       Vulkan device index, -1 = CPU (default -1)\n"
    "  --threads N  CPU threads, 1..256 (default: all cores)\n";

const int kMaxThreads = 256;  // ncnn's thread pool crashes far beyond any core count (100000: SIGSEGV)
const int kMaxTile = 1 << 16;

enum class Format { Png, Jpeg };

struct Args {
    std::string input, output, param;
    int tile = 0, gpu = -1, threads = 0;
    bool fp32 = false;
    Format format = Format::Png;
};

// An integer flag value within lo..hi; anything else (text, overflow, out of range) is one line.
int to_int(const std::string& flag, const char* text, long lo, long hi) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(text, &end, 10);
    if (*text == '\0' || *end != '\0' || errno == ERANGE || v < lo || v > hi)
        throw std::invalid_argument(flag + " needs an integer in " + std::to_string(lo) + ".." + std::to_string(hi) + ", got '" + text + "'");
    return static_cast<int>(v);
}

// PNG or JPEG from -o's extension (case-insensitive); anything else is refused before any work.
Format output_format(const std::string& path) {
    const std::size_t dot = path.find_last_of('.');
    const std::size_t slash = path.find_last_of('/');
    std::string ext = dot == std::string::npos || (slash != std::string::npos && dot < slash) ? "" : path.substr(dot);
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (ext == ".png") return Format::Png;
    if (ext == ".jpg" || ext == ".jpeg") return Format::Jpeg;
    throw std::invalid_argument("-o " + path + ": unsupported output format '" + ext + "' (use .png, .jpg or .jpeg)");
}

Args parse_args(int argc, char** argv) {
    Args a;
    std::vector<std::string> seen;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (std::find(seen.begin(), seen.end(), flag) != seen.end()) throw std::invalid_argument(flag + " given twice");
        seen.push_back(flag);
        if (flag == "--fp32") { a.fp32 = true; continue; }
        if (i + 1 >= argc) throw std::invalid_argument(flag + " needs a value");
        const char* value = argv[++i];
        if (flag == "-i") a.input = value;
        else if (flag == "-o") a.output = value;
        else if (flag == "-m") a.param = value;
        else if (flag == "-t") a.tile = to_int(flag, value, 0, kMaxTile);
        else if (flag == "-g") a.gpu = to_int(flag, value, -1, 1024);
        else if (flag == "--threads") a.threads = to_int(flag, value, 1, kMaxThreads);
        else throw std::invalid_argument("unknown option " + flag);
    }
    if (a.input.empty() || a.output.empty() || a.param.empty()) throw std::invalid_argument("-i, -o and -m are required");
    a.format = output_format(a.output);
    return a;
}

// -o naming the input itself (or a hard link to it) would replace the photo with its upscale.
void refuse_output_onto_input(const Args& a) {
    struct stat in {}, out {};
    if (stat(a.input.c_str(), &in) == 0 && stat(a.output.c_str(), &out) == 0 && in.st_dev == out.st_dev && in.st_ino == out.st_ino)
        throw std::invalid_argument(a.output + ": output would overwrite the input; choose another output file");
}

std::string stem_path(const std::string& param, const char* suffix) {
    const std::string ext = ".param";
    if (param.size() <= ext.size() || param.compare(param.size() - ext.size(), ext.size(), ext) != 0)
        throw realesr::Error(param + ": the model must be given as NAME.param");
    return param.substr(0, param.size() - ext.size()) + suffix;
}

std::vector<unsigned char> read_file(const std::string& path, const char* what) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw realesr::Error(path + ": cannot read " + what + " (" + std::strerror(errno) + ")");
    return std::vector<unsigned char>(std::istreambuf_iterator<char>(in), {});
}

// ncnn reports some problems on stderr itself; the program's own one-line message says it all.
class QuietStderr {
public:
    QuietStderr() : saved_(dup(2)) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) { dup2(null, 2); close(null); }
    }
    ~QuietStderr() {
        if (saved_ >= 0) { dup2(saved_, 2); close(saved_); }
    }

private:
    int saved_;
};

realesr::Image load_image(const std::string& path) {
    std::vector<unsigned char> bytes = read_file(path, "the image");
    int w = 0, h = 0, n = 0;
    if (!stbi_info_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &n))
        throw realesr::Error(path + ": not an image stb_image can read (" + stbi_failure_reason() + ")");
    if (n == 2 || n == 4) std::cerr << "note: " << path << ": alpha channel dropped\n";
    const int channels = n <= 2 ? 1 : 3;
    unsigned char* px = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &n, channels);
    if (!px) throw realesr::Error(path + ": cannot decode image (" + stbi_failure_reason() + ")");
    realesr::Image img{w, h, channels, std::vector<std::uint8_t>(px, px + static_cast<size_t>(w) * h * channels)};
    stbi_image_free(px);
    return img;
}

void append(void* context, void* data, int size) {
    auto* out = static_cast<std::vector<unsigned char>*>(context);
    out->insert(out->end(), static_cast<unsigned char*>(data), static_cast<unsigned char*>(data) + size);
}

// PNG or JPEG (quality 95, as the Python CLI) to a temporary file in the same folder, then
// rename: never a half-written output.
void save_image(const std::string& path, const realesr::Image& img, Format format) {
    std::vector<unsigned char> png;
    const bool ok = format == Format::Png
        ? stbi_write_png_to_func(append, &png, img.width, img.height, img.channels, img.pixels.data(), img.width * img.channels)
        : stbi_write_jpg_to_func(append, &png, img.width, img.height, img.channels, img.pixels.data(), 95);
    if (!ok) throw realesr::Error(path + ": cannot encode the image");
    const std::string tmp = path + ".part-" + std::to_string(getpid());
    {
        std::ofstream out(tmp, std::ios::binary);
        out.write(reinterpret_cast<const char*>(png.data()), static_cast<std::streamsize>(png.size()));
        if (!out.flush()) {
            std::remove(tmp.c_str());
            throw realesr::Error(path + ": cannot write (" + std::strerror(errno) + ")");
        }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw realesr::Error(path + ": cannot write (" + std::strerror(errno) + ")");
    }
}

int run(const Args& args) {
    const std::vector<unsigned char> param_bytes = read_file(args.param, "the model .param");
    const std::string param_text(param_bytes.begin(), param_bytes.end());
    std::vector<unsigned char> bin = read_file(stem_path(args.param, ".bin"), "the model weights");
    const std::string json_path = stem_path(args.param, ".json");
    const std::vector<unsigned char> json = read_file(json_path, "the model sidecar");
    realesr::ModelSpec spec;
    try {
        spec = realesr::parse_spec(std::string(json.begin(), json.end()));
    } catch (const realesr::Error& e) {
        throw realesr::Error(json_path + ": " + e.what());
    }
    realesr::RunOptions options;
    options.gpu = args.gpu;
    options.threads = args.threads;
    options.fp32 = args.fp32;
    const realesr::Image src = load_image(args.input);
    // From here on the program's own messages travel as exceptions, printed by main() after
    // this scope: ncnn's stderr lines (a failed tile's "FATAL ERROR! pool allocator destroyed
    // too early" while the model is torn down) are not shown.
    QuietStderr quiet;
    std::unique_ptr<realesr::Model> model;
    try {
        model.reset(new realesr::Model(param_text, std::move(bin), spec, options));
    } catch (const realesr::Error& e) {
        throw realesr::Error(args.param + ": " + e.what());
    }
    save_image(args.output, model->upscale(src, args.tile), args.format);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 2 && (std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help")) {
        std::cout << kUsage;
        return 0;
    }
    if (argc == 1) {
        std::cerr << kUsage;
        return 2;
    }
    Args args;
    try {
        args = parse_args(argc, argv);
        refuse_output_onto_input(args);
    } catch (const std::invalid_argument& e) {
        std::cerr << "error: " << e.what() << " (see --help)\n";
        return 2;
    }
    try {
        return run(args);
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
}

// realesr-portable-ncnn: the command-line face of the C++ runtime (files, flags, messages).
//
//   realesr-portable-ncnn -i IN -o OUT.png|OUT.jpg -m NAME.param [-t TILE] [-g GPU] [--fp32] [--threads N]
//                         [--max-pixels N]
//
// Reads NAME.param, NAME.bin and the NAME.json sidecar next to it; PNG/JPEG (anything stb_image
// reads) in, PNG or JPEG out (by -o's extension), written to a temporary file and renamed; never
// onto the input. Every file read must be a regular file of at most 1 GiB. Errors: one line, exit
// code 1 (2 for bad flags).
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
#include <limits>
#include <memory>
#include <new>
#include <optional>

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include "realesr_portable/realesr_portable.hpp"

namespace realesr_cli {
extern bool stb_out_of_memory;  // stb_impl.cpp: an stb allocation failed
}

namespace {

const char* kUsage =
    "usage: realesr-portable-ncnn -i IN -o OUT.png|OUT.jpg -m NAME.param [-t TILE] [-g GPU] [--fp32] [--threads N]\n"
    "                             [--max-pixels N]\n"
    "  -t TILE         tile size in input pixels (0 = whole image, default 0)\n"
    "  -g GPU          Vulkan device index, -1 = CPU (default -1)\n"
    "  --threads N     CPU threads, 1..256 (default: all cores)\n"
    "  --max-pixels N  refuse inputs larger than this many pixels (0: no limit; default 100000000)\n"
    "Long options also take --name=VALUE.\n";

const int kMaxThreads = 256;  // ncnn's thread pool crashes far beyond any core count (100000: SIGSEGV)
const int kMaxTile = 1 << 16;
// The Python CLI's --max-pixels default (a decompression bomb is refused before decoding).
const long long kDefaultMaxPixels = 100000000;
// Any file read (image, .param, .bin, sidecar): more than an image at the default --max-pixels or
// any model needs, and within the int stb_image takes for a buffer's size.
const long long kMaxFileBytes = 1LL << 30;

enum class Format { Png, Jpeg };

struct Args {
    std::string input, output, param;
    int tile = 0, gpu = -1, threads = 0;
    long long max_pixels = kDefaultMaxPixels;
    bool fp32 = false;
    Format format = Format::Png;
};

// An integer flag value within lo..hi; anything else (text, overflow, out of range) is one line.
template <typename T>
T to_int(const std::string& flag, const std::string& text, T lo, T hi) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno == ERANGE || v < lo || v > hi)
        throw std::invalid_argument(flag + " needs an integer in " + std::to_string(lo) + ".." + std::to_string(hi) + ", got '" + text + "'");
    return static_cast<T>(v);
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

// Every option but --fp32 takes a value: the next argument, or for a long option also
// --name=VALUE (as the Python CLI accepts). -t=4 is refused with the form to use instead.
Args parse_args(int argc, char** argv) {
    static const std::vector<std::string> kValued = {"-i", "-o", "-m", "-t", "-g", "--threads", "--max-pixels"};
    Args a;
    std::vector<std::string> seen;
    for (int i = 1; i < argc; ++i) {
        std::string flag = argv[i];
        std::optional<std::string> value;
        const std::size_t eq = flag.find('=');
        if (eq != std::string::npos && flag.rfind("--", 0) == 0) {
            value = flag.substr(eq + 1);
            flag.resize(eq);
        }
        const bool valued = std::find(kValued.begin(), kValued.end(), flag) != kValued.end();
        if (flag != "--fp32" && !valued) {
            const std::string name = flag.substr(0, eq);
            if (eq != std::string::npos && std::find(kValued.begin(), kValued.end(), name) != kValued.end())
                throw std::invalid_argument(flag + ": write " + name + " " + flag.substr(eq + 1) + " (a short option's value is the next argument)");
            throw std::invalid_argument("unknown option " + flag);
        }
        if (std::find(seen.begin(), seen.end(), flag) != seen.end()) throw std::invalid_argument(flag + " given twice");
        seen.push_back(flag);
        if (flag == "--fp32") {
            if (value) throw std::invalid_argument("--fp32 takes no value");
            a.fp32 = true;
            continue;
        }
        if (!value) {
            if (i + 1 >= argc) throw std::invalid_argument(flag + " needs a value");
            value = argv[++i];
        }
        if (flag == "-i") a.input = *value;
        else if (flag == "-o") a.output = *value;
        else if (flag == "-m") a.param = *value;
        else if (flag == "-t") a.tile = to_int(flag, *value, 0, kMaxTile);
        else if (flag == "-g") a.gpu = to_int(flag, *value, -1, 1024);
        else if (flag == "--threads") a.threads = to_int(flag, *value, 1, kMaxThreads);
        else a.max_pixels = to_int(flag, *value, 0LL, static_cast<long long>(std::numeric_limits<int>::max()));
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

const char* file_kind(mode_t mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a named pipe";
    if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a plain file";
}

// The rename would replace a pipe or a device (/dev/full) named as -o with a plain file.
void refuse_special_output(const std::string& output) {
    struct stat st {};
    if (stat(output.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
        throw std::invalid_argument(output + ": the output is " + file_kind(st.st_mode) + ", not a regular file");
}

// The bytes of a regular file (symlinks followed), at most kMaxFileBytes. Anything else is
// refused before reading: a named pipe or /dev/zero would block or never end.
std::vector<unsigned char> read_file(const std::string& path, const char* what) {
    const std::string cannot = path + ": cannot read " + what;
    // O_NONBLOCK: opening a named pipe would otherwise wait for a writer (regular files ignore it).
    struct Fd {
        int fd;
        ~Fd() { if (fd >= 0) close(fd); }
    } const file{open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC)};
    if (file.fd < 0) throw realesr::Error(cannot + " (" + std::strerror(errno) + ")");
    struct stat st {};
    if (fstat(file.fd, &st) != 0) throw realesr::Error(cannot + " (" + std::strerror(errno) + ")");
    if (!S_ISREG(st.st_mode)) throw realesr::Error(cannot + ": it is " + file_kind(st.st_mode) + ", not a regular file");
    const std::string too_big = cannot + ": it is larger than the limit of " + std::to_string(kMaxFileBytes) + " bytes (1 GiB)";
    if (st.st_size > kMaxFileBytes) throw realesr::Error(too_big);
    std::vector<unsigned char> bytes;
    bytes.reserve(static_cast<std::size_t>(st.st_size));
    unsigned char chunk[1 << 16];
    for (;;) {  // to the end, not to st_size: the file may change (and /proc files say 0)
        const ssize_t n = read(file.fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw realesr::Error(cannot + " (" + std::strerror(errno) + ")");
        if (n == 0) return bytes;
        if (bytes.size() + static_cast<std::size_t>(n) > static_cast<std::size_t>(kMaxFileBytes)) throw realesr::Error(too_big);
        bytes.insert(bytes.end(), chunk, chunk + n);
    }
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

std::string size_text(int w, int h) { return std::to_string(w) + "x" + std::to_string(h); }

realesr::Image load_image(const std::string& path, long long max_pixels) {
    const std::vector<unsigned char> bytes = read_file(path, "the image");
    int w = 0, h = 0, n = 0;
    if (!stbi_info_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &n))
        throw realesr::Error(path + ": not an image stb_image can read (" + stbi_failure_reason() + ")");
    // The Python CLI's limit and words: the header's size is checked before any pixel is decoded.
    const long long pixels = static_cast<long long>(w) * h;
    if (max_pixels > 0 && pixels > max_pixels)
        throw realesr::Error(path + ": " + size_text(w, h) + " = " + std::to_string(pixels) + " pixels exceeds the limit of " +
                             std::to_string(max_pixels) + " (raise it with --max-pixels)");
    const realesr::Error out_of_memory(path + ": out of memory for an image of " + size_text(w, h));
    if (n == 2 || n == 4) std::cerr << "note: " << path << ": alpha channel dropped\n";
    const int channels = n <= 2 ? 1 : 3;
    const std::unique_ptr<unsigned char, void (*)(void*)> px(
        stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &n, channels), stbi_image_free);
    if (!px && realesr_cli::stb_out_of_memory) throw out_of_memory;
    if (!px) throw realesr::Error(path + ": cannot decode image (" + stbi_failure_reason() + ")");
    try {
        return realesr::Image{w, h, channels, std::vector<std::uint8_t>(px.get(), px.get() + static_cast<size_t>(w) * h * channels)};
    } catch (const std::bad_alloc&) {
        throw out_of_memory;
    }
}

void append(void* context, void* data, int size) {
    auto* out = static_cast<std::vector<unsigned char>*>(context);
    out->insert(out->end(), static_cast<unsigned char*>(data), static_cast<unsigned char*>(data) + size);
}

// PNG or JPEG (quality 95, as the Python CLI) to a temporary file in the same folder, then
// rename: never a half-written output.
void save_image(const std::string& path, const realesr::Image& img, Format format) {
    std::vector<unsigned char> png;
    realesr_cli::stb_out_of_memory = false;
    const bool ok = format == Format::Png
        ? stbi_write_png_to_func(append, &png, img.width, img.height, img.channels, img.pixels.data(), img.width * img.channels)
        : stbi_write_jpg_to_func(append, &png, img.width, img.height, img.channels, img.pixels.data(), 95);
    if (!ok && realesr_cli::stb_out_of_memory) throw std::bad_alloc();  // reported with the image's size
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
    struct stat sidecar {};
    if (stat(json_path.c_str(), &sidecar) != 0 && errno == ENOENT)  // official and foreign models ship without one
        throw realesr::Error(json_path + ": no sidecar beside the model; `realesr-portable models DIR --write-sidecars` "
                             "writes one for each model in its folder DIR (docs/deploy.md)");
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
    const realesr::Image src = load_image(args.input, args.max_pixels);
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
    try {
        save_image(args.output, model->upscale(src, args.tile), args.format);
    } catch (const std::bad_alloc&) {  // the output image, or a tile ncnn could not allocate
        const int s = model->spec().scale;
        throw realesr::Error(args.input + ": out of memory for an image of " + size_text(src.width, src.height) +
                             " (upscaled: " + size_text(src.width * s, src.height * s) + ")");
    }
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
        refuse_special_output(args.output);
    } catch (const std::invalid_argument& e) {
        std::cerr << "error: " << e.what() << " (see --help)\n";
        return 2;
    }
    try {
        return run(args);
    } catch (const std::bad_alloc&) {  // where no image size is known yet (a model file)
        std::cerr << "error: out of memory\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
}

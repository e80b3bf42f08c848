// The one translation unit that compiles Debian's header-only stb_image / stb_image_write.
// Their allocations go through malloc wrappers that record a failure: stb returns NULL both for
// a corrupt file and for memory it could not get (not always with a reason), and the runner's
// message must say which.
#include <cstddef>
#include <cstdlib>

namespace realesr_cli {
bool stb_out_of_memory = false;  // read by main.cpp; the program is single-threaded around stb

void* stb_malloc(std::size_t size) {
    void* p = std::malloc(size);
    if (!p && size > 0) stb_out_of_memory = true;
    return p;
}

void* stb_realloc(void* old, std::size_t size) {
    void* p = std::realloc(old, size);
    if (!p && size > 0) stb_out_of_memory = true;
    return p;
}
}  // namespace realesr_cli

#define STBI_MALLOC(size) realesr_cli::stb_malloc(size)
#define STBI_REALLOC(p, size) realesr_cli::stb_realloc(p, size)
#define STBI_FREE(p) std::free(p)
#define STBIW_MALLOC(size) realesr_cli::stb_malloc(size)
#define STBIW_REALLOC(p, size) realesr_cli::stb_realloc(p, size)
#define STBIW_FREE(p) std::free(p)
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
// stb's GIF loader frees its old buffer only when realloc failed; GCC 12 flags that once the
// macros above expand in this file (inside the system header alone the warning was hidden).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wuse-after-free"
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

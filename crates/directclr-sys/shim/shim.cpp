// The C++ side of directclr-sys: entry points with C linkage over libtorch's C++ API for what
// the tch bindings do not cover. Each function is `noexcept` and reports failures through its
// return value; none lets a C++ exception cross into Rust.
#include <torch/headeronly/version.h>

extern "C" {

// The libtorch version these headers belong to, e.g. "2.11.0".
const char* directclr_shim_torch_version() noexcept { return TORCH_VERSION; }

}  // extern "C"

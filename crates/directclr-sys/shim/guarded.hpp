// The error convention of every C entry point of the shim libraries (shim.cpp, dist.cpp,
// dist_cuda.cpp): each is `noexcept`, returns 0 on success, and on a C++ exception writes its
// message into the caller's buffer and returns 1. No exception crosses into Rust.
#pragma once

#include <cstddef>
#include <cstring>
#include <exception>

namespace directclr_shim {

// Copies `what` into the caller's buffer (NUL-terminated, truncated to fit).
inline void report(const char* what, char* err, size_t err_len) {
  if (err != nullptr && err_len > 0) {
    std::strncpy(err, what, err_len - 1);
    err[err_len - 1] = '\0';
  }
}

// Runs `f`; 0 when it returns, 1 with the message in `err` when it throws.
template <typename F>
int guarded(char* err, size_t err_len, F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    report(e.what(), err, err_len);
  } catch (...) {
    report("unknown C++ exception", err, err_len);
  }
  return 1;
}

}  // namespace directclr_shim

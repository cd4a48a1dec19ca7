// The C++ side of directclr-sys: entry points with C linkage over libtorch's C++ API for what
// the tch bindings do not cover. Every function is `noexcept`: C++ exceptions are caught and
// reported through the return value (0 = success) and a message buffer; none crosses into Rust.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/headeronly/version.h>

#include "guarded.hpp"

#include <cstring>
#include <exception>
#include <string>

namespace {

using directclr_shim::guarded;

// 0 = CPU, 1 = CUDA.
bool device_type(int code, at::DeviceType* out) {
  switch (code) {
    case 0: *out = at::kCPU; return true;
    case 1: *out = at::kCUDA; return true;
    default: return false;
  }
}

// 0 = float16, 1 = bfloat16.
bool scalar_type(int code, at::ScalarType* out) {
  switch (code) {
    case 0: *out = at::kHalf; return true;
    case 1: *out = at::kBFloat16; return true;
    default: return false;
  }
}

}  // namespace

extern "C" {

// The libtorch version these headers belong to, e.g. "2.11.0".
const char* directclr_shim_torch_version() noexcept { return TORCH_VERSION; }

// Enters an autocast region on this thread for `device` (0 CPU, 1 CUDA) with the lower
// precision `dtype` (0 float16, 1 bfloat16). Writes the previous state to `prev_enabled` and
// `prev_dtype` so that `directclr_autocast_exit` can restore it.
int directclr_autocast_enter(int device, int dtype, int* prev_enabled, int* prev_dtype, char* err,
                             size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    at::DeviceType d;
    at::ScalarType t;
    if (!device_type(device, &d) || !scalar_type(dtype, &t)) {
      throw std::invalid_argument("unknown device or dtype code");
    }
    *prev_enabled = at::autocast::is_autocast_enabled(d) ? 1 : 0;
    at::ScalarType old = at::autocast::get_autocast_dtype(d);
    *prev_dtype = old == at::kBFloat16 ? 1 : (old == at::kHalf ? 0 : -1);
    at::autocast::set_autocast_enabled(d, true);
    at::autocast::set_autocast_dtype(d, t);
    at::autocast::increment_nesting();
  });
}

// Leaves an autocast region: restores the state saved by `directclr_autocast_enter` and, when
// the outermost region ends, frees autocast's cache of lower-precision weights.
int directclr_autocast_exit(int device, int prev_enabled, int prev_dtype, char* err,
                            size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    at::DeviceType d;
    if (!device_type(device, &d)) {
      throw std::invalid_argument("unknown device code");
    }
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(d, prev_enabled != 0);
    at::ScalarType t;
    if (scalar_type(prev_dtype, &t)) {
      at::autocast::set_autocast_dtype(d, t);
    }
  });
}

// Whether autocast is on for `device` on this thread (1/0), or -1 for an unknown device code.
int directclr_autocast_is_enabled(int device) noexcept {
  at::DeviceType d;
  if (!device_type(device, &d)) {
    return -1;
  }
  return at::autocast::is_autocast_enabled(d) ? 1 : 0;
}

// *out = a new tensor holding `input` in channels-last (NHWC) memory order; the caller owns it
// (a heap-allocated at::Tensor, as tch's C_tensor).
int directclr_to_channels_last(const at::Tensor* input, at::Tensor** out, char* err,
                               size_t err_len) noexcept {
  return guarded(err, err_len, [&] {
    *out = new at::Tensor(input->contiguous(at::MemoryFormat::ChannelsLast));
  });
}

// Whether `input` is laid out channels-last (1/0).
int directclr_is_channels_last(const at::Tensor* input) noexcept {
  return input->is_contiguous(at::MemoryFormat::ChannelsLast) ? 1 : 0;
}

// Drops the gradient of `t` (PyTorch's `p.grad = None`, i.e. `zero_grad(set_to_none=True)`):
// the next backward writes a fresh gradient instead of adding into a zeroed one.
int directclr_clear_grad(at::Tensor* t, char* err, size_t err_len) noexcept {
  return guarded(err, err_len, [&] { t->mutable_grad().reset(); });
}

}  // extern "C"

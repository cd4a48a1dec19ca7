// The CUDA part of the distributed shim: PyTorch's ProcessGroupNCCL, built into its own shared
// library (`libdirectclr_cuda.so`, by scripts/cuda_shim.sh) because ProcessGroupNCCL.hpp needs
// the CUDA, cuBLAS, cuSPARSE, cuSOLVER and NCCL headers that the CPU build lacks, and its code
// lives in libtorch_cuda.so, which the binary only opens when CUDA is asked for. The binary
// opens this library (RTLD_NOW) after libtorch_cuda.so and calls `directclr_cuda_nccl_new`; the
// backend it returns is wrapped by the main shim (`directclr_dist_group_from_backend`, dist.cpp)
// into the same group handle as Gloo's, so every collective works on it unchanged.
//
// Every function is `noexcept` and reports C++ exceptions through its return value (0 =
// success) and a message buffer (guarded.hpp), as dist.cpp does.
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#include <torch/version.h>

#include "guarded.hpp"

#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>

extern "C" {

// The version of this library's calling convention; the binary refuses any other.
int directclr_cuda_shim_abi() noexcept { return 1; }

// The libtorch version this library was compiled against, e.g. "2.11.0".
const char* directclr_cuda_shim_torch_version() noexcept { return TORCH_VERSION; }

// A ProcessGroupNCCL of `size` ranks over `store` (a borrowed `c10d::Store*`, the rendezvous
// store of the main shim), bound to CUDA device `device`, which also becomes this process's
// current device (as `torch.cuda.set_device(local_rank)`). Its collectives, and its watchdog,
// give up after `timeout_ms`. On success `*backend` is a `c10d::Backend*` carrying one owned
// reference, for `directclr_dist_group_from_backend`. Fails when no CUDA device is visible.
int directclr_cuda_nccl_new(void* store, int rank, int size, int64_t timeout_ms, int device,
                            void** backend, char* err, size_t err_len) noexcept {
  return directclr_shim::guarded(err, err_len, [&] {
    // ProcessGroupNCCL::Options holds NCCL's ncclConfig_t, laid out by the nccl.h this library
    // was compiled with: the loaded NCCL must be of the same minor version.
    auto [major, minor, patch] = c10d::getNcclVersionTuple();
    if (major != NCCL_MAJOR || minor != NCCL_MINOR) {
      throw std::runtime_error(
          "the loaded NCCL is " + std::to_string(major) + "." + std::to_string(minor) + "." +
          std::to_string(patch) + ", this library was compiled with the headers of " +
          std::to_string(NCCL_MAJOR) + "." + std::to_string(NCCL_MINOR) +
          " (those of the torch 2.11.0 cu130 wheel, which this build expects at run time)");
    }
    int count = static_cast<int>(c10::cuda::device_count());
    if (count == 0) {
      throw std::runtime_error("no CUDA device is visible (NCCL carries CUDA tensors only)");
    }
    if (device < 0 || device >= count) {
      throw std::runtime_error("CUDA device " + std::to_string(device) + " does not exist (" +
                               std::to_string(count) + " visible)");
    }
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    auto base = c10::intrusive_ptr<c10d::Store>::unsafe_reclaim_from_nonowning(
        static_cast<c10d::Store*>(store));
    // A prefix per group, as torch.distributed does (Gloo's group uses directclr/gloo/0).
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("directclr/nccl/0", base);
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = std::chrono::milliseconds(timeout_ms);
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, rank, size, opts);
    pg->setBoundDeviceId(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device)));
    c10::intrusive_ptr<c10d::Backend> b = pg;
    *backend = b.release();
  });
}

}  // extern "C"

//! Raw bindings to the C++ shim compiled against libtorch's headers.
//!
//! The shim carries what `tch` does not bind: the autocast dtype (tch can switch autocast on
//! but not choose bfloat16), channels-last memory order, and PyTorch's c10d engine (TCPStore
//! rendezvous, the Gloo process group, differentiable all-gather and all-reduce, the Reducer of
//! DistributedDataParallel). The NCCL process group is in a separate library
//! (`shim/dist_cuda.cpp`, built by `scripts/cuda_shim.sh`) that `directclr::dist` opens at run
//! time; groups it makes enter through `directclr_dist_group_from_backend`.
//! Everything here is `unsafe extern "C"`; the safe wrappers live in the `directclr` crate
//! (`directclr::precision`, `directclr::dist`).
#![warn(missing_docs)]

use std::ffi::{c_char, c_int, CStr};

// Keep libtorch linked through torch-sys so the shim's symbols resolve against the same library.
extern crate torch_sys;
pub use torch_sys::C_tensor;

extern "C" {
    fn directclr_shim_torch_version() -> *const c_char;
    /// Enters an autocast region (device 0 CPU / 1 CUDA, dtype 0 f16 / 1 bf16); saves the
    /// previous state. Returns 0 on success, else writes a message into `err`.
    pub fn directclr_autocast_enter(
        device: c_int,
        dtype: c_int,
        prev_enabled: *mut c_int,
        prev_dtype: *mut c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    /// Leaves an autocast region, restoring the saved state.
    pub fn directclr_autocast_exit(
        device: c_int,
        prev_enabled: c_int,
        prev_dtype: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    /// 1 if autocast is on for the device on this thread, 0 if off, −1 for a bad code.
    pub fn directclr_autocast_is_enabled(device: c_int) -> c_int;
    /// `*out` = the input in channels-last order (a new tensor the caller owns).
    pub fn directclr_to_channels_last(
        input: *const C_tensor,
        out: *mut *mut C_tensor,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    /// 1 if the tensor is contiguous in channels-last order.
    pub fn directclr_is_channels_last(input: *const C_tensor) -> c_int;
    /// Drops the tensor's gradient (`p.grad = None`).
    pub fn directclr_clear_grad(t: *mut C_tensor, err: *mut c_char, err_len: usize) -> c_int;
}

/// A c10d TCPStore (opaque; `shim/dist.cpp`).
#[repr(C)]
pub struct DirectclrStore {
    _private: [u8; 0],
}

/// A c10d process group with its rank and size (opaque).
#[repr(C)]
pub struct DirectclrGroup {
    _private: [u8; 0],
}

/// A collective in flight (opaque).
#[repr(C)]
pub struct DirectclrWork {
    _private: [u8; 0],
}

/// A c10d::Reducer, the gradient-bucket engine of PyTorch's DistributedDataParallel (opaque).
#[repr(C)]
pub struct DirectclrReducer {
    _private: [u8; 0],
}

extern "C" {
    /// Rendezvous at `host:port`: rank 0 serves (`is_server` 1) and waits for `world_size`
    /// processes; the others connect, retrying for `timeout_ms`.
    pub fn directclr_dist_store_new(
        host: *const c_char,
        port: c_int,
        is_server: c_int,
        world_size: c_int,
        timeout_ms: i64,
        out: *mut *mut DirectclrStore,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    /// Frees a store handle.
    pub fn directclr_dist_store_free(store: *mut DirectclrStore);
    /// A Gloo process group over `store`; `interface` (may be empty) names the network
    /// interface; collectives time out after `timeout_ms`.
    pub fn directclr_dist_gloo_new(
        store: *mut DirectclrStore,
        rank: c_int,
        size: c_int,
        timeout_ms: i64,
        interface: *const c_char,
        out: *mut *mut DirectclrGroup,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    /// Frees a group handle (NCCL's communicators are shut down first).
    pub fn directclr_dist_group_free(group: *mut DirectclrGroup);
    /// The store's `c10d::Store*`, borrowed (for the CUDA library `libdirectclr_cuda.so`).
    pub fn directclr_dist_store_raw(store: *mut DirectclrStore) -> *mut std::ffi::c_void;
    /// Wraps a `c10d::Backend*` made elsewhere (one owned reference, taken over even on
    /// failure) of kind `kind` (1 = NCCL) into a group over `store`.
    pub fn directclr_dist_group_from_backend(
        store: *mut DirectclrStore,
        backend: *mut std::ffi::c_void,
        kind: c_int,
        rank: c_int,
        size: c_int,
        out: *mut *mut DirectclrGroup,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    /// A c10d::Reducer over `n` parameters: bucket `b` holds the next `bucket_sizes[b]`
    /// indices of `bucket_params`; buckets are rebuilt once after the first backward pass with
    /// caps `first_bucket_bytes` then `bucket_bytes`.
    pub fn directclr_dist_reducer_new(
        group: *mut DirectclrGroup,
        params: *const *const C_tensor,
        n: usize,
        bucket_params: *const usize,
        bucket_sizes: *const usize,
        n_buckets: usize,
        bucket_bytes: i64,
        first_bucket_bytes: i64,
        out: *mut *mut DirectclrReducer,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    /// Frees a reducer (its autograd hooks are removed).
    pub fn directclr_dist_reducer_free(reducer: *mut DirectclrReducer);
    /// The backward pass of `loss` with the gradient all-reduces overlapping it; 0 on success,
    /// 1 on a failure, 2 when some parameter received no gradient.
    pub fn directclr_dist_reducer_backward(
        reducer: *mut DirectclrReducer,
        loss: *const C_tensor,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    /// Starts an in-place sum over ranks of a contiguous tensor.
    pub fn directclr_dist_all_reduce_start(
        group: *mut DirectclrGroup,
        t: *mut C_tensor,
        out: *mut *mut DirectclrWork,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    /// Waits for a started collective and frees its handle.
    pub fn directclr_dist_work_wait(
        work: *mut DirectclrWork,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    /// In-place broadcast of a contiguous tensor from `root`.
    pub fn directclr_dist_broadcast(
        group: *mut DirectclrGroup,
        t: *mut C_tensor,
        root: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    /// Waits for every rank.
    pub fn directclr_dist_barrier(
        group: *mut DirectclrGroup,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    /// `*out` = differentiable all-gather `[n, …]` → `[size·n, …]` (a new tensor).
    pub fn directclr_dist_all_gather_grad(
        group: *mut DirectclrGroup,
        x: *const C_tensor,
        out: *mut *mut C_tensor,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    /// `*out` = differentiable sum over ranks (a new tensor).
    pub fn directclr_dist_all_reduce_grad(
        group: *mut DirectclrGroup,
        x: *const C_tensor,
        out: *mut *mut C_tensor,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// The libtorch version the shim was compiled against, e.g. `"2.11.0"`.
pub fn torch_version() -> &'static str {
    // SAFETY: the shim returns a pointer to a static NUL-terminated string literal.
    unsafe { CStr::from_ptr(directclr_shim_torch_version()) }
        .to_str()
        .unwrap_or("unknown")
}

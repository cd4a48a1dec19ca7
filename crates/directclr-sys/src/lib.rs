//! Raw bindings to the C++ shim compiled against libtorch's headers.
//!
//! The shim carries what `tch` does not bind: the autocast dtype (tch can switch autocast on
//! but not choose bfloat16) and channels-last memory order; c10d process groups come later.
//! Everything here is `unsafe extern "C"`; the safe wrappers live in the `directclr` crate
//! (`directclr::precision`).
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

/// The libtorch version the shim was compiled against, e.g. `"2.11.0"`.
pub fn torch_version() -> &'static str {
    // SAFETY: the shim returns a pointer to a static NUL-terminated string literal.
    unsafe { CStr::from_ptr(directclr_shim_torch_version()) }
        .to_str()
        .unwrap_or("unknown")
}

//! Raw bindings to the C++ shim compiled against libtorch's headers.
//!
//! The shim carries what `tch` does not bind. Everything here is `unsafe extern "C"`; the safe
//! wrappers live in the `directclr` crate.
#![warn(missing_docs)]

use std::ffi::{c_char, CStr};

// Keep libtorch linked through torch-sys so the shim's symbols resolve against the same library.
extern crate torch_sys;

extern "C" {
    fn directclr_shim_torch_version() -> *const c_char;
}

/// The libtorch version the shim was compiled against, e.g. `"2.11.0"`.
pub fn torch_version() -> &'static str {
    // SAFETY: the shim returns a pointer to a static NUL-terminated string literal.
    unsafe { CStr::from_ptr(directclr_shim_torch_version()) }
        .to_str()
        .unwrap_or("unknown")
}

//! Compiles the C++ shim against the headers of the libtorch named by `LIBTORCH`, and passes the
//! canonical libtorch library folder to dependent build scripts as
//! `DEP_DIRECTCLR_SHIM_LIBTORCH_LIB`, so that they can give their binaries an rpath.
use std::{env, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=shim/shim.cpp");
    let libtorch = env::var("LIBTORCH").unwrap_or_else(|_| {
        panic!("LIBTORCH is not set: run `source scripts/env.sh` (it installs libtorch once)")
    });
    let libtorch = PathBuf::from(&libtorch).canonicalize().unwrap_or_else(|e| {
        panic!("LIBTORCH={libtorch} cannot be resolved ({e}): run `source scripts/env.sh`")
    });
    let include = libtorch.join("include");
    cc::Build::new()
        .cpp(true)
        .file("shim/shim.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .warnings(false)
        .compile("directclr_shim");
    println!("cargo:libtorch_lib={}", libtorch.join("lib").display());
}

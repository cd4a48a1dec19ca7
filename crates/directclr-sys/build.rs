//! Compiles the C++ shim against the headers of the libtorch named by `LIBTORCH` (and, for
//! c10d's Gloo process group, Gloo's headers named by `DIRECTCLR_GLOO_INCLUDE`), and passes the
//! canonical libtorch library folder to dependent build scripts as
//! `DEP_DIRECTCLR_SHIM_LIBTORCH_LIB`, so that they can give their binaries an rpath.
use std::{env, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=DIRECTCLR_GLOO_INCLUDE");
    println!("cargo:rerun-if-changed=shim/shim.cpp");
    println!("cargo:rerun-if-changed=shim/dist.cpp");
    println!("cargo:rerun-if-changed=shim/guarded.hpp");
    let libtorch = env::var("LIBTORCH").unwrap_or_else(|_| {
        panic!("LIBTORCH is not set: run `source scripts/env.sh` (it installs libtorch once)")
    });
    let libtorch = PathBuf::from(&libtorch).canonicalize().unwrap_or_else(|e| {
        panic!("LIBTORCH={libtorch} cannot be resolved ({e}): run `source scripts/env.sh`")
    });
    let include = libtorch.join("include");
    // Gloo's headers: ProcessGroupGloo.hpp includes them and the torch wheel lacks them
    // (scripts/gloo.sh installs them).
    let gloo = env::var("DIRECTCLR_GLOO_INCLUDE").unwrap_or_else(|_| {
        panic!(
            "DIRECTCLR_GLOO_INCLUDE is not set: run `source scripts/env.sh` (it installs Gloo's \
             headers once)"
        )
    });
    if !PathBuf::from(&gloo).join("gloo/context.h").is_file() {
        panic!("DIRECTCLR_GLOO_INCLUDE={gloo} has no gloo/context.h: run `source scripts/env.sh`");
    }
    cc::Build::new()
        .cpp(true)
        .file("shim/shim.cpp")
        .file("shim/dist.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include(&gloo)
        // libtorch_cpu.so is built with Gloo: declare ProcessGroupGloo.
        .define("USE_C10D_GLOO", None)
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .warnings(false)
        .compile("directclr_shim");
    println!("cargo:libtorch_lib={}", libtorch.join("lib").display());
}

//! Compiles the C++ shim against the headers of the libtorch named by `LIBTORCH` (and, with the
//! feature `dist`, Gloo's headers named by `DIRECTCLR_GLOO_INCLUDE`), and passes the
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
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("shim/shim.cpp")
        .file("shim/dist.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"));
    // The feature `dist`: c10d's Gloo process group, whose header includes Gloo's headers,
    // which the torch wheel lacks (scripts/gloo.sh installs them). Without it the shim builds
    // from libtorch's headers alone and the Gloo entry point reports that it is absent.
    if env::var_os("CARGO_FEATURE_DIST").is_some() {
        let gloo = env::var("DIRECTCLR_GLOO_INCLUDE").unwrap_or_else(|_| {
            panic!(
                "DIRECTCLR_GLOO_INCLUDE is not set: run `source scripts/env.sh` (it installs \
                 Gloo's headers once), or build without the `dist` feature"
            )
        });
        if !PathBuf::from(&gloo).join("gloo/context.h").is_file() {
            panic!(
                "DIRECTCLR_GLOO_INCLUDE={gloo} has no gloo/context.h: run `source scripts/env.sh`"
            );
        }
        build
            .include(&gloo)
            // libtorch_cpu.so is built with Gloo: declare ProcessGroupGloo.
            .define("USE_C10D_GLOO", None)
            .define("DIRECTCLR_WITH_GLOO", None);
    }
    build
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .warnings(false)
        .compile("directclr_shim");
    println!("cargo:libtorch_lib={}", libtorch.join("lib").display());
}

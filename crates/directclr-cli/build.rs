//! Gives this crate's tests, examples and benchmarks an rpath to libtorch, so they run without
//! `LD_LIBRARY_PATH` (the folder comes from directclr-sys, which resolved `LIBTORCH`).
fn main() {
    if let Ok(dir) = std::env::var("DEP_DIRECTCLR_SHIM_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,--enable-new-dtags,-rpath,{dir}");
    }
}

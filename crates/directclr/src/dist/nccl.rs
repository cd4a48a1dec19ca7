//! The NCCL backend: PyTorch's ProcessGroupNCCL, reached through `libdirectclr_cuda.so`, a
//! small library of its own (`crates/directclr-sys/shim/dist_cuda.cpp`, built by
//! `scripts/cuda_shim.sh`). It is not linked into the binary: ProcessGroupNCCL needs the CUDA
//! headers to compile and libtorch_cuda.so to run, and a CPU machine has neither. When a run
//! asks for `backend = "nccl"`, this module finds the library, opens libtorch_cuda.so (as any
//! CUDA run does, [`crate::runtime::load_cuda_backend`]), then the library (`RTLD_NOW`: every
//! symbol resolves at once or the open fails), checks that it was built for this binary's
//! libtorch, and that a CUDA device is visible. The group it creates is wrapped by the main shim
//! into the same handle as Gloo's, so every collective of [`super::ProcessGroup`] serves both.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The library's file name.
pub const LIBRARY: &str = "libdirectclr_cuda.so";
/// The environment variable that names the library's path, overriding the default (the
/// folder of the running executable).
pub const LIBRARY_VAR: &str = "DIRECTCLR_CUDA_SHIM";
/// The calling convention this binary speaks (`directclr_cuda_shim_abi`).
const ABI: c_int = 1;

type NcclNew = unsafe extern "C" fn(
    store: *mut c_void,
    rank: c_int,
    size: c_int,
    timeout_ms: i64,
    device: c_int,
    backend: *mut *mut c_void,
    err: *mut c_char,
    err_len: usize,
) -> c_int;

/// The opened library.
#[derive(Debug)]
pub struct CudaShim {
    path: PathBuf,
    nccl_new: NcclNew,
}

/// Where the library is looked for: `$DIRECTCLR_CUDA_SHIM` when set, else beside the running
/// executable (where `benches/gpu/prepare.sh` puts it, in `.gpu/`).
pub fn library_path() -> std::result::Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(LIBRARY_VAR).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this program's path to look for {LIBRARY}: {e}"))?;
    Ok(exe
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
        .join(LIBRARY))
}

fn not_found(path: &Path) -> String {
    format!(
        "the NCCL backend needs {LIBRARY}, which is not at `{}` (looked for beside the \
         executable, or at ${LIBRARY_VAR}): build it with `scripts/cuda_shim.sh [FOLDER]` \
         (`benches/gpu/prepare.sh` puts it beside the binary in `.gpu/`), or use `backend = \
         \"gloo\"`",
        path.display()
    )
}

impl CudaShim {
    /// Finds, checks and opens the library once per process (the result is kept). Fails with
    /// a message naming the path and the remedy when the library is missing, when
    /// libtorch_cuda.so cannot be loaded, when a symbol does not resolve, or when the library
    /// was built for another libtorch.
    pub fn get() -> std::result::Result<&'static CudaShim, String> {
        static SHIM: OnceLock<std::result::Result<CudaShim, String>> = OnceLock::new();
        SHIM.get_or_init(Self::open).as_ref().map_err(Clone::clone)
    }

    fn open() -> std::result::Result<CudaShim, String> {
        let path = library_path()?;
        if !path.is_file() {
            return Err(not_found(&path));
        }
        // Its dependencies (libtorch_cuda.so and the CUDA libraries) must be in the process
        // first: they are found next to the running libtorch_cpu.so, not through this
        // library's own search path.
        crate::runtime::load_cuda_backend()
            .map_err(|e| format!("the NCCL backend needs libtorch_cuda.so: {e}"))?;
        // SAFETY: the library defines no global objects of its own (its initialisers are those
        // of the libtorch headers it includes, already run by libtorch itself); RTLD_NOW
        // resolves every symbol now, so a mismatch fails here rather than at the first call.
        let lib = unsafe {
            libloading::os::unix::Library::open(Some(&path), libloading::os::unix::RTLD_NOW)
        }
        .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
        let symbol_error =
            |name: &str, e: libloading::Error| format!("{}: no `{name}` ({e})", path.display());
        // SAFETY: the symbols are the `extern "C"` functions of shim/dist_cuda.cpp with exactly
        // these signatures (checked through the ABI number below before any other call).
        let (abi, version, nccl_new) = unsafe {
            let abi: libloading::os::unix::Symbol<unsafe extern "C" fn() -> c_int> = lib
                .get(b"directclr_cuda_shim_abi\0")
                .map_err(|e| symbol_error("directclr_cuda_shim_abi", e))?;
            let version: libloading::os::unix::Symbol<unsafe extern "C" fn() -> *const c_char> =
                lib.get(b"directclr_cuda_shim_torch_version\0")
                    .map_err(|e| symbol_error("directclr_cuda_shim_torch_version", e))?;
            let nccl_new: libloading::os::unix::Symbol<NcclNew> = lib
                .get(b"directclr_cuda_nccl_new\0")
                .map_err(|e| symbol_error("directclr_cuda_nccl_new", e))?;
            (
                abi(),
                CStr::from_ptr(version()).to_string_lossy().into_owned(),
                *nccl_new,
            )
        };
        if abi != ABI {
            return Err(format!(
                "{} speaks calling convention {abi}, this binary {ABI}: rebuild it with \
                 `scripts/cuda_shim.sh`",
                path.display()
            ));
        }
        let ours = directclr_sys::torch_version();
        if version != ours {
            return Err(format!(
                "{} was built against libtorch {version}, this binary against {ours}: rebuild \
                 it with `scripts/cuda_shim.sh`",
                path.display()
            ));
        }
        // Keep the library for the life of the process: the function pointer points into it.
        std::mem::forget(lib);
        Ok(CudaShim { path, nccl_new })
    }

    /// Where the library was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A ProcessGroupNCCL of `size` ranks over `store` (the main shim's `c10d::Store*`),
    /// bound to CUDA device `device` (which becomes the current device); returns the
    /// `c10d::Backend*` with one owned reference, for `directclr_dist_group_from_backend`.
    ///
    /// # Safety
    /// `store` must be a live store from `directclr_dist_store_raw`.
    pub unsafe fn nccl_new(
        &self,
        store: *mut c_void,
        rank: usize,
        size: usize,
        timeout_ms: i64,
        device: usize,
    ) -> std::result::Result<*mut c_void, String> {
        const ERR_LEN: usize = 2048;
        let mut err = [0 as c_char; ERR_LEN];
        let mut backend = std::ptr::null_mut();
        // SAFETY: as documented; the other arguments are plain values and out-pointers.
        let rc = unsafe {
            (self.nccl_new)(
                store,
                rank as c_int,
                size as c_int,
                timeout_ms,
                device as c_int,
                &mut backend,
                err.as_mut_ptr(),
                ERR_LEN,
            )
        };
        if rc != 0 || backend.is_null() {
            // SAFETY: the library NUL-terminates the message within the buffer.
            let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy();
            return Err(super::group::message_of(&msg));
        }
        Ok(backend)
    }
}

/// The CUDA device of a rank with this `local_rank`: `local_rank` modulo the visible devices
/// (several ranks then share a GPU, which NCCL refuses: "Duplicate GPU detected"; one GPU per
/// rank is NCCL's model). Loads the library first, then fails when no device is visible.
pub fn device_of(local_rank: usize) -> std::result::Result<(&'static CudaShim, usize), String> {
    let shim = CudaShim::get()?;
    if !tch::Cuda::is_available() {
        return Err(format!(
            "no CUDA device is visible ({} and libtorch_cuda.so are loaded; NCCL carries CUDA \
             tensors only: use `backend = \"gloo\"` on the CPU)",
            shim.path().display()
        ));
    }
    let count = tch::Cuda::device_count().max(1) as usize;
    Ok((shim, local_rank % count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_names_its_path_and_the_build_script() {
        let msg = not_found(Path::new("/nowhere/libdirectclr_cuda.so"));
        assert!(msg.contains("`/nowhere/libdirectclr_cuda.so`"), "{msg}");
        assert!(msg.contains("scripts/cuda_shim.sh"), "{msg}");
        assert!(msg.contains(LIBRARY_VAR), "{msg}");
    }
}

//! Devices and threads.
//!
//! The binary links only `libtorch_cpu.so`. CUDA is loaded at run time: when a CUDA device is
//! asked for, `libtorch_cuda.so` from the same libtorch folder is opened with
//! `RTLD_NOW | RTLD_GLOBAL`; its static initialisers register the CUDA backend, after which
//! `tch::Cuda` answers truly. On a machine without the CUDA libraries the open fails with the
//! loader's reason and CPU work goes on.

use std::{fmt, path::PathBuf, str::FromStr, sync::OnceLock};

use crate::{Error, Result};

/// A device as a user names it: `cpu`, `cuda` (the first GPU) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// The CPU.
    Cpu,
    /// The CUDA device with this ordinal.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| {
                    Error::config("device", format!("`{s}` is not one of cpu, cuda, cuda:N"))
                }),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Resolves the spec into a usable `tch::Device`, loading the CUDA backend first if needed.
    pub fn resolve(self) -> Result<tch::Device> {
        match self {
            DeviceSpec::Cpu => Ok(tch::Device::Cpu),
            DeviceSpec::Cuda(n) => {
                let unavailable = |reason: String| Error::DeviceUnavailable {
                    device: self.to_string(),
                    reason,
                };
                load_cuda_backend().map_err(|e| unavailable(e.clone()))?;
                if !tch::Cuda::is_available() {
                    return Err(unavailable(
                        "libtorch_cuda.so loaded, but no CUDA device is visible".into(),
                    ));
                }
                let count = tch::Cuda::device_count() as usize;
                if n >= count {
                    return Err(unavailable(format!(
                        "only {count} CUDA device(s) are visible"
                    )));
                }
                Ok(tch::Device::Cuda(n))
            }
        }
    }
}

/// The folder holding the `libtorch_cpu.so` this process runs on, read from `/proc/self/maps`.
pub fn libtorch_lib_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.ends_with("/libtorch_cpu.so"))
        .and_then(|path| PathBuf::from(path).parent().map(PathBuf::from))
}

/// Opens `libtorch_cuda.so` next to the running `libtorch_cpu.so` once per process and keeps it
/// loaded. Returns the loader's reason on failure.
pub fn load_cuda_backend() -> std::result::Result<(), String> {
    static LOADED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let path = libtorch_lib_dir()
                .map(|d| d.join("libtorch_cuda.so"))
                .unwrap_or_else(|| PathBuf::from("libtorch_cuda.so"));
            // SAFETY: loading libtorch_cuda runs its static initialisers, which register the CUDA
            // backend with the already-loaded libtorch_cpu; they have no other preconditions.
            let lib = unsafe {
                libloading::os::unix::Library::open(
                    Some(&path),
                    libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
                )
            }
            .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
            // Keep the library for the life of the process: the backend it registered must stay.
            std::mem::forget(lib);
            Ok(())
        })
        .clone()
}

/// Sets the number of intra-op threads libtorch uses (0 keeps libtorch's default).
pub fn set_threads(threads: usize) {
    if threads > 0 {
        tch::set_num_threads(threads as i32);
    }
}

/// Where freed CPU memory goes: what the C allocator (glibc's malloc, shared by libtorch's CPU
/// tensors and the rest of the process) does with a large block once it is freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeapPolicy {
    /// Keep freed blocks in the process for the next step: no block gets its own `mmap`
    /// (`M_MMAP_MAX` 0) and the heap's top is given back only beyond 2 GiB (`M_TRIM_THRESHOLD`).
    /// A training step allocates the same activations every step, so after the first step they
    /// come from memory already faulted in. Resident memory stays at the peak, as PyTorch's
    /// CUDA caching allocator keeps GPU memory.
    #[default]
    Reuse,
    /// glibc's defaults: a block above the mmap threshold (adaptive, at most 32 MiB on 64-bit)
    /// is mapped on allocation and unmapped on free, so a step's large activations are faulted
    /// in 4 KiB page by page again at every step (PyTorch's behaviour).
    System,
}

impl FromStr for HeapPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "reuse" => Ok(HeapPolicy::Reuse),
            "system" => Ok(HeapPolicy::System),
            _ => Err(Error::config(
                "heap",
                format!("`{s}` is not one of reuse, system"),
            )),
        }
    }
}

impl fmt::Display for HeapPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeapPolicy::Reuse => "reuse",
            HeapPolicy::System => "system",
        })
    }
}

/// The heap's top beyond which [`HeapPolicy::Reuse`] gives memory back: 2 GiB (`mallopt` takes
/// an `int`).
const REUSE_TRIM_THRESHOLD: i32 = i32::MAX;

/// Applies `policy` to this process's C allocator. Call it first in `main`, before any thread
/// starts (glibc's parameters are process-wide). On a C library other than glibc it does nothing.
///
/// Why it matters: on the collapse ladder's one-convolution encoder (64-channel 32 × 32 maps of
/// 256 views, 64 MiB each) glibc's defaults spent about two thirds of the run in the kernel's
/// page-fault and unmap paths; [`HeapPolicy::Reuse`] makes the same run 4.5× faster, bit for bit
/// the same (only where the memory lies changes). `benches/train/heap.md` has the measurements.
pub fn set_heap_policy(policy: HeapPolicy) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if policy == HeapPolicy::Reuse {
        // SAFETY: mallopt only sets allocator parameters; called before other threads start.
        // Its return value (1 on success) cannot fail for these parameters and values.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0);
            libc::mallopt(libc::M_TRIM_THRESHOLD, REUSE_TRIM_THRESHOLD);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = policy;
}

/// Whether a 64 MiB CPU tensor allocated now got its own mapping from the C allocator (glibc's
/// `mallinfo2().hblks`, its count of mapped blocks, grew while it lived): `Some(false)` under
/// [`HeapPolicy::Reuse`], `Some(true)` under glibc's defaults, `None` off glibc.
pub fn large_tensors_mapped() -> Option<bool> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 reads the allocator's statistics; it has no preconditions.
        let before = unsafe { libc::mallinfo2() }.hblks;
        let probe = tch::Tensor::empty([16 << 20], (tch::Kind::Float, tch::Device::Cpu));
        let during = unsafe { libc::mallinfo2() }.hblks;
        drop(probe);
        Some(during > before)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// One line describing the runtime: libtorch version, threads, heap policy, CUDA availability.
pub fn describe() -> String {
    let cuda = match load_cuda_backend() {
        Ok(()) if tch::Cuda::is_available() => {
            format!("CUDA: {} device(s)", tch::Cuda::device_count())
        }
        Ok(()) => "CUDA: backend loaded, no device visible".to_string(),
        Err(e) => format!("CUDA: unavailable ({e})"),
    };
    format!(
        "libtorch {} from {}; {} CPU threads; {}; {cuda}",
        directclr_sys::torch_version(),
        libtorch_lib_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "?".into()),
        tch::get_num_threads(),
        match large_tensors_mapped() {
            Some(false) => "freed CPU memory reused (heap reuse)",
            Some(true) => "large CPU tensors mapped and unmapped each time (heap system)",
            None => "heap policy not applicable (not glibc)",
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_specs_parse_and_print() {
        for (text, spec) in [
            ("cpu", DeviceSpec::Cpu),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
        ] {
            assert_eq!(text.parse::<DeviceSpec>().unwrap(), spec);
        }
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
        for bad in ["gpu", "cuda:", "cuda:x", "CPU"] {
            assert!(
                matches!(bad.parse::<DeviceSpec>(), Err(Error::InvalidConfig { field, .. }) if field == "device"),
                "{bad}"
            );
        }
    }

    #[test]
    fn heap_policies_parse_and_print() {
        for policy in [HeapPolicy::Reuse, HeapPolicy::System] {
            assert_eq!(policy.to_string().parse::<HeapPolicy>().unwrap(), policy);
        }
        assert!(matches!(
            "mmap".parse::<HeapPolicy>(),
            Err(Error::InvalidConfig { field, .. }) if field == "heap"
        ));
    }

    #[test]
    fn libtorch_is_found_and_cuda_fails_cleanly_or_works() {
        assert!(libtorch_lib_dir().is_some_and(|d| d.join("libtorch_cpu.so").exists()));
        assert_eq!(DeviceSpec::Cpu.resolve().unwrap(), tch::Device::Cpu);
        match DeviceSpec::Cuda(0).resolve() {
            Ok(device) => assert_eq!(device, tch::Device::Cuda(0)),
            // Without a GPU (or its libraries) the error names the device and the reason.
            Err(Error::DeviceUnavailable { device, reason }) => {
                assert!(device == "cuda:0" && !reason.is_empty())
            }
            Err(other) => panic!("unexpected error {other}"),
        }
        assert!(describe().starts_with("libtorch 2.11.0"));
    }
}

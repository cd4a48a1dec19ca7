//! A c10d process group (PyTorch's own collective engine, through the C++ shim): TCPStore
//! rendezvous, then ProcessGroupGloo (CPU and CUDA tensors) or ProcessGroupNCCL (CUDA tensors,
//! through `libdirectclr_cuda.so`, see [`super::nccl`]). No collective is written here; every
//! one is c10d's.

use std::ffi::{c_char, c_int, CStr, CString};
use std::ptr::NonNull;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::DistEnv;
use crate::{Error, Result};

/// Size of the message buffer handed to every shim call.
pub(super) const ERR_LEN: usize = 2048;

/// Which c10d backend carries the collectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// ProcessGroupGloo (TCP): CPU tensors (and CUDA ones).
    Gloo,
    /// ProcessGroupNCCL: CUDA tensors, one GPU per process. Lives in libtorch_cuda.so and is
    /// reached through `libdirectclr_cuda.so` (built by `scripts/cuda_shim.sh`), loaded at run
    /// time. Not yet run on a GPU (see the README).
    Nccl,
}

/// A process group: this process's rank among `world_size`, and the collectives over them.
///
/// Collectives must be called by every rank in the same order with tensors of the same shapes
/// (and, with NCCL, on this rank's CUDA device). A rank that dies makes the others' next
/// collective fail (Gloo sees the closed connection), and a collective without progress fails
/// after the group's timeout; both are [`Error::Distributed`]. With NCCL, ProcessGroupNCCL's
/// watchdog ends a process whose collective has not completed within the timeout (as in
/// PyTorch).
#[derive(Debug)]
pub struct ProcessGroup {
    group: NonNull<directclr_sys::DirectclrGroup>,
    store: NonNull<directclr_sys::DirectclrStore>,
    rank: usize,
    world_size: usize,
    backend: Backend,
}

// SAFETY: c10d process groups and stores are thread-safe C++ objects (torch.distributed uses
// them from any thread); the handles are only freed in `Drop`.
unsafe impl Send for ProcessGroup {}
unsafe impl Sync for ProcessGroup {}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: both handles came from the shim and are freed once, group first.
        unsafe {
            directclr_sys::directclr_dist_group_free(self.group.as_ptr());
            directclr_sys::directclr_dist_store_free(self.store.as_ptr());
        }
    }
}

/// A collective started by [`ProcessGroup::start_all_reduce_sum`].
#[derive(Debug)]
pub struct PendingReduce {
    work: NonNull<directclr_sys::DirectclrWork>,
    context: String,
}

impl PendingReduce {
    /// Waits until the sum is in the tensor.
    pub fn wait(self) -> Result<()> {
        let mut err = [0 as c_char; ERR_LEN];
        let work = self.work;
        let context = self.context.clone();
        std::mem::forget(self);
        // SAFETY: `work` came from the shim and is consumed (freed) by this call.
        let rc = unsafe {
            directclr_sys::directclr_dist_work_wait(work.as_ptr(), err.as_mut_ptr(), ERR_LEN)
        };
        check(rc, &err, &context)
    }
}

impl Drop for PendingReduce {
    fn drop(&mut self) {
        // A started collective is always completed (or fails) before its handle goes.
        let mut err = [0 as c_char; ERR_LEN];
        // SAFETY: as in `wait`; reached only when `wait` was not called.
        unsafe {
            directclr_sys::directclr_dist_work_wait(self.work.as_ptr(), err.as_mut_ptr(), ERR_LEN)
        };
    }
}

/// A C++ exception's message without the backtrace that c10 appends ("Exception raised
/// from …", then "frame #…" lines), on one line (at most 8 lines of it).
pub(super) fn message_of(what: &str) -> String {
    what.lines()
        .take_while(|l| !l.starts_with("Exception raised from") && !l.starts_with("frame #"))
        .filter(|l| !l.trim().is_empty())
        .take(8)
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn check(rc: c_int, err: &[c_char], context: &str) -> Result<()> {
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: the shim NUL-terminates the message within the buffer.
    let msg = unsafe { CStr::from_ptr(err.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let msg = message_of(&msg);
    let why = if msg.contains("Duplicate GPU") {
        "NCCL needs one GPU per process: start at most as many processes per machine as it \
         has visible GPUs, or use `backend = \"gloo\"`"
    } else {
        "a peer rank may have died or stalled; the run stops, its last checkpoint is kept"
    };
    Err(Error::Distributed {
        context: context.to_string(),
        reason: format!("{msg} ({why})"),
    })
}

impl ProcessGroup {
    /// Joins the run described by `env`: the TCPStore at `MASTER_ADDR:MASTER_PORT` (rank 0
    /// serves it and waits for every rank, unless torchrun's agent serves it:
    /// `TORCHELASTIC_USE_AGENT_STORE=True`), then the `backend`'s process group. Every wait —
    /// for the other ranks to join, and later for any collective — fails after `timeout`.
    /// `GLOO_SOCKET_IFNAME` (as in torch.distributed) picks Gloo's network interface.
    pub fn init(env: &DistEnv, backend: Backend, timeout: Duration) -> Result<Self> {
        let who = format!("rank {} of {}", env.rank, env.world_size);
        // NCCL: everything that can fail on this machine alone (the library, libtorch_cuda.so,
        // a CUDA device) is checked before waiting for the other ranks.
        let nccl = match backend {
            Backend::Gloo if !cfg!(feature = "dist") => {
                return Err(Error::Distributed {
                    context: format!("{who}, Gloo backend"),
                    reason: "this build of directclr has no Gloo process group (the cargo \
                             feature `dist` is off): rebuild with default features for \
                             multi-process CPU training"
                        .into(),
                });
            }
            Backend::Gloo => None,
            Backend::Nccl => Some(super::nccl::device_of(env.local_rank).map_err(|reason| {
                Error::Distributed {
                    context: format!("{who}, NCCL backend"),
                    reason,
                }
            })?),
        };
        let to_c = |name: &str, v: &str| {
            CString::new(v).map_err(|_| Error::Distributed {
                context: format!("environment variable `{name}`"),
                reason: "contains a NUL byte".into(),
            })
        };
        let host = to_c("MASTER_ADDR", &env.master_addr)?;
        let iface = to_c(
            "GLOO_SOCKET_IFNAME",
            &std::env::var("GLOO_SOCKET_IFNAME").unwrap_or_default(),
        )?;
        let ms = timeout.as_millis().min(i64::MAX as u128) as i64;
        // Under torchrun the agent already serves the store at MASTER_PORT and says so; then
        // rank 0 connects like every other rank (as torch.distributed's env rendezvous does).
        let agent_store =
            std::env::var("TORCHELASTIC_USE_AGENT_STORE").is_ok_and(|v| v.trim() == "True");
        let mut err = [0 as c_char; ERR_LEN];
        let mut store = std::ptr::null_mut();
        // SAFETY: valid C strings and out-pointer; the shim catches every C++ exception.
        let rc = unsafe {
            directclr_sys::directclr_dist_store_new(
                host.as_ptr(),
                c_int::from(env.master_port),
                c_int::from(env.rank == 0 && !agent_store),
                env.world_size as c_int,
                ms,
                &mut store,
                err.as_mut_ptr(),
                ERR_LEN,
            )
        };
        check(
            rc,
            &err,
            &format!(
                "{who}, rendezvous at {}:{} (TCPStore; every rank must join within {} s)",
                env.master_addr,
                env.master_port,
                timeout.as_secs()
            ),
        )?;
        let store = NonNull::new(store).expect("the shim sets the store on success");
        let mut group = std::ptr::null_mut();
        let made = match nccl {
            None => {
                // SAFETY: as above; `store` is a live handle.
                let rc = unsafe {
                    directclr_sys::directclr_dist_gloo_new(
                        store.as_ptr(),
                        env.rank as c_int,
                        env.world_size as c_int,
                        ms,
                        iface.as_ptr(),
                        &mut group,
                        err.as_mut_ptr(),
                        ERR_LEN,
                    )
                };
                check(rc, &err, &format!("{who}, creating the Gloo process group"))
            }
            Some((shim, device)) => {
                let context = format!("{who}, creating the NCCL process group on cuda:{device}");
                // SAFETY: `store` is live; the library takes its own reference to the store.
                match unsafe {
                    shim.nccl_new(
                        directclr_sys::directclr_dist_store_raw(store.as_ptr()),
                        env.rank,
                        env.world_size,
                        ms,
                        device,
                    )
                } {
                    Err(reason) => Err(Error::Distributed { context, reason }),
                    Ok(backend) => {
                        // SAFETY: `backend` carries one owned reference, which the call takes.
                        let rc = unsafe {
                            directclr_sys::directclr_dist_group_from_backend(
                                store.as_ptr(),
                                backend,
                                1,
                                env.rank as c_int,
                                env.world_size as c_int,
                                &mut group,
                                err.as_mut_ptr(),
                                ERR_LEN,
                            )
                        };
                        check(rc, &err, &context)
                    }
                }
            }
        };
        if let Err(e) = made {
            // SAFETY: the store handle is live and not used again.
            unsafe { directclr_sys::directclr_dist_store_free(store.as_ptr()) };
            return Err(e);
        }
        Ok(ProcessGroup {
            group: NonNull::new(group).expect("the shim sets the group on success"),
            store,
            rank: env.rank,
            world_size: env.world_size,
            backend,
        })
    }

    /// The raw group handle, for the shim's other entry points (the reducer).
    pub(super) fn handle(&self) -> *mut directclr_sys::DirectclrGroup {
        self.group.as_ptr()
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of processes.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn context(&self, what: &str) -> String {
        format!("rank {} of {}, {what}", self.rank, self.world_size)
    }

    fn contiguous(&self, t: &Tensor, what: &str) -> Result<()> {
        if !t.is_contiguous() {
            return Err(Error::Distributed {
                context: self.context(what),
                reason: "the tensor is not contiguous".into(),
            });
        }
        Ok(())
    }

    /// Starts the in-place sum of `t` over the ranks (`t` contiguous; same shape and dtype on
    /// every rank); the sum is in `t` once the returned handle's `wait` returns.
    pub fn start_all_reduce_sum(&self, t: &Tensor, what: &str) -> Result<PendingReduce> {
        self.contiguous(t, what)?;
        let mut t = t.shallow_clone();
        let mut err = [0 as c_char; ERR_LEN];
        let mut work = std::ptr::null_mut();
        // SAFETY: live group handle; the shim copies the tensor handle (shared storage).
        let rc = unsafe {
            directclr_sys::directclr_dist_all_reduce_start(
                self.group.as_ptr(),
                t.as_mut_ptr(),
                &mut work,
                err.as_mut_ptr(),
                ERR_LEN,
            )
        };
        let context = self.context(what);
        check(rc, &err, &context)?;
        Ok(PendingReduce {
            work: NonNull::new(work).expect("the shim sets the work on success"),
            context,
        })
    }

    /// In-place sum of `t` over the ranks.
    pub fn all_reduce_sum_(&self, t: &Tensor, what: &str) -> Result<()> {
        self.start_all_reduce_sum(t, what)?.wait()
    }

    /// In-place broadcast of `t` (contiguous) from rank `root`.
    pub fn broadcast_(&self, t: &Tensor, root: usize, what: &str) -> Result<()> {
        self.contiguous(t, what)?;
        let mut t = t.shallow_clone();
        let mut err = [0 as c_char; ERR_LEN];
        // SAFETY: live group handle and tensor.
        let rc = unsafe {
            directclr_sys::directclr_dist_broadcast(
                self.group.as_ptr(),
                t.as_mut_ptr(),
                root as c_int,
                err.as_mut_ptr(),
                ERR_LEN,
            )
        };
        check(rc, &err, &self.context(what))
    }

    /// Waits until every rank has called it.
    pub fn barrier(&self, what: &str) -> Result<()> {
        let mut err = [0 as c_char; ERR_LEN];
        // SAFETY: live group handle.
        let rc = unsafe {
            directclr_sys::directclr_dist_barrier(self.group.as_ptr(), err.as_mut_ptr(), ERR_LEN)
        };
        check(rc, &err, &self.context(what))
    }

    fn autograd_op(
        &self,
        x: &Tensor,
        what: &str,
        op: unsafe extern "C" fn(
            *mut directclr_sys::DirectclrGroup,
            *const directclr_sys::C_tensor,
            *mut *mut directclr_sys::C_tensor,
            *mut c_char,
            usize,
        ) -> c_int,
    ) -> Result<Tensor> {
        let mut err = [0 as c_char; ERR_LEN];
        let mut out = std::ptr::null_mut();
        // SAFETY: live group and tensor; on success `out` is a new tensor this side owns. The
        // graph keeps a pointer to the group: `self` outlives the step that uses the graph.
        let rc = unsafe {
            op(
                self.group.as_ptr(),
                x.as_ptr(),
                &mut out,
                err.as_mut_ptr(),
                ERR_LEN,
            )
        };
        check(rc, &err, &self.context(what))?;
        // SAFETY: a fresh heap tensor from the shim.
        Ok(unsafe { Tensor::from_ptr(out) })
    }

    /// The rows of every rank, concatenated in rank order, differentiably: the backward sums
    /// the incoming gradient over the ranks and keeps this rank's rows, so that every rank's
    /// parameters receive the gradient of the sum of all ranks' losses.
    ///
    /// # Shapes
    /// `x`: `[n, …]` (the same n on every rank) → `[world · n, …]`, rank r's rows at `r·n`.
    pub fn all_gather_with_grad(&self, x: &Tensor) -> Result<Tensor> {
        self.autograd_op(
            x,
            "all-gather",
            directclr_sys::directclr_dist_all_gather_grad,
        )
    }

    /// The sum of `x` over the ranks, differentiably (the backward all-reduces the gradient).
    ///
    /// # Shapes
    /// `x`: any shape, the same on every rank → the same shape.
    pub fn all_reduce_with_grad(&self, x: &Tensor) -> Result<Tensor> {
        self.autograd_op(
            x,
            "all-reduce",
            directclr_sys::directclr_dist_all_reduce_grad,
        )
    }
}

//! The seeded parallel loader: worker threads decode and augment whole batches with bounded
//! prefetch and hand them out in order as tensors.
//!
//! Determinism: an epoch's order is a permutation drawn from (seed, epoch) alone, and each
//! sample's augmentation from its own ChaCha8 stream keyed by (seed, epoch, index); which
//! worker builds a batch does not matter, so any number of workers gives the same batches bit
//! for bit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::augment::{Scratch, Transform};
use super::dataset::SampleImage;
use super::{DataError, Dataset, Shard};

/// Element type of the batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// u8 in `0..=255`, not normalised (normalise on the device with
    /// [`Normalize::apply_tensor`](super::augment::Normalize::apply_tensor)): 4× less to copy.
    U8,
    /// f32, normalised with each view's mean and std.
    F32,
}

/// What to do with an image file that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadImagePolicy {
    /// Leave it out of its batch, count it and warn on standard error.
    Skip,
    /// Stop with [`DataError::Decode`].
    Fail,
}

/// Loader settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderConfig {
    /// Samples per batch (per rank).
    pub batch_size: usize,
    /// Worker threads (0: build batches on the calling thread).
    pub workers: usize,
    /// Batches built ahead of the consumer, at least 1.
    pub prefetch: usize,
    /// Seed of order and augmentations.
    pub seed: u64,
    /// Draw a new permutation each epoch (else dataset order).
    pub shuffle: bool,
    /// Drop the last incomplete batch (and use the same batch count on every rank).
    pub drop_last: bool,
    /// This process's share of each epoch.
    pub shard: Shard,
    /// Element type of the images.
    pub output: OutputKind,
    /// Put batches in pinned (page-locked) memory for fast, asynchronous copies to CUDA.
    pub pin_memory: bool,
    /// Handling of undecodable image files.
    pub bad_images: BadImagePolicy,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            workers: 2,
            prefetch: 4,
            seed: 0,
            shuffle: true,
            drop_last: true,
            shard: Shard::SINGLE,
            output: OutputKind::F32,
            pin_memory: false,
            bad_images: BadImagePolicy::Skip,
        }
    }
}

/// One batch.
///
/// # Shapes
/// `views[v]`: `[b, 3, s_v, s_v]` (u8, or f32 normalised); `labels`: `[b]` i64; `indices`:
/// the `b` dataset indices. `b` is smaller than the batch size for the last batch without
/// `drop_last`, or when undecodable images were skipped.
#[derive(Debug)]
pub struct Batch {
    /// One tensor per view.
    pub views: Vec<Tensor>,
    /// Labels.
    pub labels: Tensor,
    /// Dataset indices of the samples.
    pub indices: Vec<usize>,
}

/// The seeded parallel loader.
#[derive(Debug, Clone)]
pub struct Loader {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    dataset: Arc<Dataset>,
    transform: Transform,
    config: LoaderConfig,
    skipped: AtomicUsize,
}

/// The ChaCha8 key of a stream: seed, epoch, index and a purpose tag, little-endian.
fn key(seed: u64, epoch: u64, index: u64, tag: u64) -> [u8; 32] {
    let mut k = [0u8; 32];
    for (i, v) in [seed, epoch, index, tag].iter().enumerate() {
        k[i * 8..(i + 1) * 8].copy_from_slice(&v.to_le_bytes());
    }
    k
}

/// The augmentation stream of sample `index` in `epoch`.
pub fn sample_rng(seed: u64, epoch: u64, index: usize) -> ChaCha8Rng {
    ChaCha8Rng::from_seed(key(seed, epoch, index as u64, 1))
}

impl Loader {
    /// A loader over `dataset` applying `transform`.
    pub fn new(
        dataset: Arc<Dataset>,
        transform: Transform,
        config: LoaderConfig,
    ) -> Result<Self, DataError> {
        if config.batch_size == 0 {
            return Err(DataError::param("batch_size", "must be positive"));
        }
        if config.prefetch == 0 {
            return Err(DataError::param("prefetch", "must be at least 1"));
        }
        config.shard.check()?;
        if dataset.is_empty() {
            return Err(DataError::Empty {
                path: dataset.origin().into(),
                reason: "no sample to load".into(),
            });
        }
        if config.drop_last && config.shard.common_len(dataset.len()) < config.batch_size {
            return Err(DataError::param(
                "batch_size",
                format!(
                    "{} is larger than the {} samples per rank: with drop_last an epoch has no batch",
                    config.batch_size,
                    config.shard.common_len(dataset.len())
                ),
            ));
        }
        Ok(Self {
            shared: Arc::new(Shared {
                dataset,
                transform,
                config,
                skipped: AtomicUsize::new(0),
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &LoaderConfig {
        &self.shared.config
    }

    /// The dataset.
    pub fn dataset(&self) -> &Dataset {
        &self.shared.dataset
    }

    /// Undecodable images skipped so far.
    pub fn skipped(&self) -> usize {
        self.shared.skipped.load(Ordering::Relaxed)
    }

    /// The whole epoch's order (the same on every rank): a permutation keyed by (seed, epoch).
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.shared.dataset.len()).collect();
        if self.shared.config.shuffle {
            let mut rng = ChaCha8Rng::from_seed(key(self.shared.config.seed, epoch, u64::MAX, 0));
            order.shuffle(&mut rng);
        }
        order
    }

    /// This rank's dataset indices for `epoch`, cut to whole batches under `drop_last`.
    pub fn shard_indices(&self, epoch: u64) -> Vec<usize> {
        let c = &self.shared.config;
        let mut idx = c.shard.select(&self.epoch_order(epoch));
        if c.drop_last {
            let n = c.shard.common_len(self.shared.dataset.len()) / c.batch_size * c.batch_size;
            idx.truncate(n);
        }
        idx
    }

    /// Batches per epoch on this rank.
    pub fn batches_per_epoch(&self) -> usize {
        self.shard_indices(0)
            .len()
            .div_ceil(self.shared.config.batch_size)
    }

    /// Iterates over the batches of `epoch`; workers start at once and stop when the iterator
    /// is dropped.
    pub fn epoch(&self, epoch: u64) -> EpochIter {
        let indices = Arc::new(self.shard_indices(epoch));
        let bs = self.shared.config.batch_size;
        let num_batches = indices.len().div_ceil(bs);
        let workers = self.shared.config.workers;
        let mut it = EpochIter {
            shared: self.shared.clone(),
            epoch,
            indices: indices.clone(),
            num_batches,
            next: 0,
            issued: 0,
            pending: BTreeMap::new(),
            tasks: None,
            results: None,
            handles: Vec::new(),
            inline_scratch: Scratch::default(),
        };
        if workers > 0 {
            let (task_tx, task_rx) = crossbeam_channel::unbounded::<usize>();
            let (res_tx, res_rx) = crossbeam_channel::unbounded();
            for w in 0..workers {
                let shared = self.shared.clone();
                let indices = indices.clone();
                let task_rx: Receiver<usize> = task_rx.clone();
                let res_tx: Sender<(usize, Result<Batch, DataError>)> = res_tx.clone();
                let h = std::thread::Builder::new()
                    .name(format!("directclr-data-{w}"))
                    .spawn(move || {
                        let mut scratch = Scratch::default();
                        for b in task_rx.iter() {
                            // A panic (a bug) becomes an error for this batch instead of a
                            // hole that the consumer would wait for forever.
                            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                build_batch(&shared, epoch, &indices, b, &mut scratch)
                            }))
                            .unwrap_or_else(|_| {
                                Err(DataError::Worker {
                                    reason: format!("panic while building batch {b}"),
                                })
                            });
                            if res_tx.send((b, r)).is_err() {
                                break;
                            }
                        }
                    });
                match h {
                    Ok(h) => it.handles.push(h),
                    Err(e) => {
                        // Fall back to fewer workers; with none, batches are built inline.
                        eprintln!("warning: cannot start data worker {w}: {e}");
                        break;
                    }
                }
            }
            if !it.handles.is_empty() {
                it.tasks = Some(task_tx);
                it.results = Some(res_rx);
                it.top_up();
            }
        }
        it
    }
}

/// Iterator over the batches of one epoch.
#[derive(Debug)]
pub struct EpochIter {
    shared: Arc<Shared>,
    epoch: u64,
    indices: Arc<Vec<usize>>,
    num_batches: usize,
    next: usize,
    issued: usize,
    pending: BTreeMap<usize, Result<Batch, DataError>>,
    tasks: Option<Sender<usize>>,
    results: Option<Receiver<(usize, Result<Batch, DataError>)>>,
    handles: Vec<std::thread::JoinHandle<()>>,
    inline_scratch: Scratch,
}

impl EpochIter {
    /// Number of batches of the epoch.
    pub fn num_batches(&self) -> usize {
        self.num_batches
    }

    /// Keeps `prefetch` batches in flight beyond the one the consumer waits for.
    fn top_up(&mut self) {
        if let Some(tx) = &self.tasks {
            let limit = (self.next + self.shared.config.prefetch).min(self.num_batches);
            while self.issued < limit {
                if tx.send(self.issued).is_err() {
                    break;
                }
                self.issued += 1;
            }
        }
    }
}

impl Iterator for EpochIter {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.num_batches {
            return None;
        }
        let b = self.next;
        let out = match &self.results {
            None => build_batch(
                &self.shared,
                self.epoch,
                &self.indices,
                b,
                &mut self.inline_scratch,
            ),
            Some(rx) => loop {
                if let Some(r) = self.pending.remove(&b) {
                    break r;
                }
                match rx.recv() {
                    Ok((i, r)) => {
                        self.pending.insert(i, r);
                    }
                    Err(_) => {
                        break Err(DataError::Worker {
                            reason: "all workers stopped before the epoch ended".into(),
                        })
                    }
                }
            },
        };
        self.next += 1;
        self.top_up();
        if out.is_err() {
            // Stop after an error.
            self.num_batches = self.next;
        }
        Some(out)
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        self.tasks = None; // workers see the closed queue
        self.results = None; // and a closed result channel
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// A fresh contiguous CPU tensor and its memory as a mutable slice.
///
/// # Safety
/// The slice aliases the tensor's storage: the caller must not read the tensor through libtorch
/// while the slice is used, nor use the slice after the tensor is dropped.
unsafe fn tensor_and_slice<T: tch::kind::Element>(
    shape: &[i64],
    kind: Kind,
) -> Result<(Tensor, &'static mut [T]), DataError> {
    let t = Tensor::f_empty(shape, (kind, Device::Cpu)).map_err(|source| DataError::Tensor {
        context: "allocate batch",
        source,
    })?;
    let numel: i64 = shape.iter().product();
    let ptr = t.data_ptr() as *mut T;
    #[cfg(target_os = "linux")]
    advise_huge_pages(ptr as *mut u8, numel as usize * std::mem::size_of::<T>());
    let slice = if numel == 0 {
        &mut []
    } else {
        // SAFETY: `t` is a fresh, contiguous tensor of `numel` elements of type T.
        unsafe { std::slice::from_raw_parts_mut(ptr, numel as usize) }
    };
    Ok((t, slice))
}

/// Asks Linux to back a large batch buffer with transparent huge pages: a batch of 224 px views
/// is tens of megabytes of fresh memory, and faulting it in 4 KiB pages costs about a tenth of
/// the pipeline's time. Advisory: if the kernel declines, nothing changes but speed.
#[cfg(target_os = "linux")]
fn advise_huge_pages(ptr: *mut u8, len: usize) {
    const HUGE: usize = 2 << 20;
    if len < 2 * HUGE {
        return;
    }
    let start = (ptr as usize).next_multiple_of(4096);
    let end = (ptr as usize + len) / 4096 * 4096;
    // SAFETY: the range lies inside the tensor's allocation; MADV_HUGEPAGE changes no content.
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    // A refusal (THP disabled, old kernel) only means the default page size is used.
    let _ = rc;
}

/// Builds batch `b` of an epoch: decode, augment each view straight into the batch tensors'
/// memory (no libtorch operation runs on the workers), normalise or quantise.
fn build_batch(
    shared: &Shared,
    epoch: u64,
    indices: &[usize],
    b: usize,
    scratch: &mut Scratch,
) -> Result<Batch, DataError> {
    let c = &shared.config;
    let ids = &indices[b * c.batch_size..((b + 1) * c.batch_size).min(indices.len())];
    let t = &shared.transform;
    let nv = t.num_views();
    let sizes: Vec<usize> = (0..nv).map(|v| 3 * t.side(v) * t.side(v)).collect();
    let kind = match c.output {
        OutputKind::F32 => Kind::Float,
        OutputKind::U8 => Kind::Uint8,
    };
    // One allocation for all the views (each view a contiguous part of it): fewer, larger
    // blocks, which the allocator keeps and reuses rather than returning them to the kernel.
    let per_view: Vec<usize> = sizes.iter().map(|&s| s * ids.len()).collect();
    let total = per_view.iter().sum::<usize>() as i64;
    let mut f32_slices: Vec<&mut [f32]> = Vec::new();
    let mut u8_slices: Vec<&mut [u8]> = Vec::new();
    // SAFETY: the slices are only written below, while `flat` holds the tensor, and are dropped
    // before any view of it is handed out.
    let flat = unsafe {
        match c.output {
            OutputKind::F32 => {
                let (x, mut rest) = tensor_and_slice::<f32>(&[total], kind)?;
                for &len in &per_view {
                    let (a, b) = rest.split_at_mut(len);
                    f32_slices.push(a);
                    rest = b;
                }
                x
            }
            OutputKind::U8 => {
                let (x, mut rest) = tensor_and_slice::<u8>(&[total], kind)?;
                for &len in &per_view {
                    let (a, b) = rest.split_at_mut(len);
                    u8_slices.push(a);
                    rest = b;
                }
                x
            }
        }
    };
    let mut staging = Vec::new();
    let mut kept = Vec::with_capacity(ids.len());
    for &i in ids {
        let img = match shared.dataset.image(i) {
            Ok(img) => img,
            Err(e @ DataError::Decode { .. }) if c.bad_images == BadImagePolicy::Skip => {
                shared.skipped.fetch_add(1, Ordering::Relaxed);
                eprintln!("warning: skipping sample {i}: {e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        let view = match &img {
            SampleImage::Borrowed(r) => *r,
            SampleImage::Owned(o) => o.view(),
        };
        let mut rng = sample_rng(c.seed, epoch, i);
        let slot = kept.len();
        for v in 0..nv {
            let range = slot * sizes[v]..(slot + 1) * sizes[v];
            match c.output {
                OutputKind::F32 => {
                    let out = &mut f32_slices[v][range];
                    t.apply_view(v, view, &mut rng, scratch, out);
                    t.normalize(v).apply(out);
                }
                OutputKind::U8 => {
                    staging.resize(sizes[v], 0.0);
                    t.apply_view(v, view, &mut rng, scratch, &mut staging);
                    quantize(&staging, &mut u8_slices[v][range]);
                }
            }
        }
        kept.push(i);
    }
    drop(f32_slices);
    drop(u8_slices);
    let n = kept.len() as i64;
    let mut views = Vec::with_capacity(nv);
    let mut off = 0i64;
    for (v, &len) in per_view.iter().enumerate() {
        let side = t.side(v) as i64;
        let x = flat
            .f_narrow(0, off, len as i64)
            .and_then(|x| x.f_view([ids.len() as i64, 3, side, side]))
            .and_then(|x| {
                if n < ids.len() as i64 {
                    x.f_narrow(0, 0, n)
                } else {
                    Ok(x)
                }
            })
            .map_err(|source| DataError::Tensor {
                context: "view batch",
                source,
            })?;
        off += len as i64;
        views.push(pin(x, c.pin_memory)?);
    }
    let labels: Vec<i64> = kept.iter().map(|&i| shared.dataset.labels()[i]).collect();
    let labels = pin(
        Tensor::f_from_slice(&labels).map_err(|source| DataError::Tensor {
            context: "labels",
            source,
        })?,
        c.pin_memory,
    )?;
    Ok(Batch {
        views,
        labels,
        indices: kept,
    })
}

multiversion! {
    /// `round(255·x)` of values in `[0, 1]` (anything else, NaN included, is clamped first),
    /// into u8.
    fn quantize(src: &[f32], dst: &mut [u8]) {
        for (q, &x) in dst.iter_mut().zip(src) {
            // Comparisons that send NaN to 0, then an unchecked conversion that vectorises
            // (saturating `as` casts from f32 do not).
            let x = if x > 0.0 { x } else { 0.0 };
            let x = if x < 1.0 { x } else { 1.0 };
            // SAFETY: x·255 + 0.5 is finite and in [0.5, 255.5], inside i32.
            *q = unsafe { (x * 255.0 + 0.5).to_int_unchecked::<i32>() } as u8;
        }
    }
}

fn pin(t: Tensor, pin: bool) -> Result<Tensor, DataError> {
    if pin {
        t.f_pin_memory(Device::Cuda(0))
            .map_err(|source| DataError::Tensor {
                context: "pin memory",
                source,
            })
    } else {
        Ok(t)
    }
}

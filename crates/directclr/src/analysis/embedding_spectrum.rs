//! The spectrum of the paper's figures for large embedding matrices held as tensors: optional
//! L2 normalisation of each embedding, the covariance of Eqn 1 accumulated in f64, and its
//! eigenvalues in descending order (Figure 2 plots their log; Figures 7b and 9 the same for the
//! representation).
//!
//! Embeddings may arrive in chunks ([`CovarianceAccumulator`]), so a dataset that does not fit
//! in memory is one pass over its batches; [`embedding_spectrum`] is the one-shot form and feeds
//! the same accumulator, so both give the same numbers.
//!
//! How it is computed, and why it is both accurate and fast:
//! - every chunk is converted to f64 (on the accumulator's device) before anything else, so the only f32 (or
//!   bf16) rounding is that of the embeddings themselves;
//! - the data are shifted by the mean of the first rows (up to 2^22 values), s, and the Gram matrix
//!   Σ (z − s)(z − s)ᵀ and the sum Σ (z − s) are accumulated; the covariance is then the rank-1
//!   correction C = G/N − m mᵀ with m = mean(z) − s. The shift keeps m small, so the
//!   correction does not cancel digits even when the embeddings share a large mean (as
//!   collapsed, L2-normalised embeddings do);
//! - the Gram matrix is symmetric, so only its lower triangle is computed, by recursive
//!   halving into off-diagonal matrix products (f64 GEMMs of libtorch's BLAS) down to small
//!   diagonal blocks: about 56 % of the multiply-adds of a full XᵀX;
//! - the eigenvalues come from LAPACK's symmetric solver in f64 (`linalg_eigvalsh`).

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

/// What is done to each embedding (row) before the covariance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum RowNormalisation {
    /// Rows as given.
    None,
    /// Each row divided by its Euclidean norm (floored at 1e-12, as `F.normalize` does), the
    /// preprocessing of the paper's spectra.
    #[default]
    L2,
}

/// Rows converted to f64 and processed per block: bounds the f64 copy of a chunk to about
/// 32 MiB and keeps every matrix product large enough to run at full speed.
const BLOCK_ELEMENTS: i64 = 1 << 22;
/// Diagonal blocks of the Gram matrix at most this wide are computed whole (a full product);
/// wider ones are halved.
const LEAF_WIDTH: i64 = 256;

/// Accumulates the first two moments of embeddings given in chunks, in f64, on the device of
/// the first chunk (later chunks are moved there).
///
/// ```no_run
/// # fn main() -> directclr::Result<()> {
/// use directclr::analysis::{CovarianceAccumulator, RowNormalisation};
/// let mut acc = CovarianceAccumulator::new(RowNormalisation::L2);
/// for _ in 0..10 {
///     let batch = tch::Tensor::randn([512, 128], (tch::Kind::Float, tch::Device::Cpu));
///     acc.update(&batch)?;
/// }
/// let spectrum = acc.finish()?.covariance_eigenvalues()?; // descending, 128 values
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CovarianceAccumulator {
    rows: RowNormalisation,
    leaf_width: i64,
    state: Option<State>,
}

#[derive(Debug)]
struct State {
    dim: i64,
    count: i64,
    /// The mean of the first block of rows, s. [D]
    shift: Tensor,
    /// Σ (z − s). [D]
    sum: Tensor,
    /// Lower triangle (and full diagonal blocks) of Σ (z − s)(z − s)ᵀ. [D, D]
    gram: Tensor,
    /// Scratch for one block converted to f64. [BLOCK_ELEMENTS / D, D]
    buffer: Tensor,
}

impl State {
    fn new(device: Device, dim: i64) -> Result<Self> {
        let options = (Kind::Double, device);
        Ok(Self {
            dim,
            count: 0,
            shift: Tensor::f_zeros([dim], options)?,
            sum: Tensor::f_zeros([dim], options)?,
            gram: Tensor::f_zeros([dim, dim], options)?,
            buffer: Tensor::f_empty([block_rows(dim), dim], options)?,
        })
    }
}

/// Rows per block for embeddings of dimension `dim`.
fn block_rows(dim: i64) -> i64 {
    (BLOCK_ELEMENTS / dim.max(1)).max(1)
}

impl CovarianceAccumulator {
    /// An empty accumulator.
    pub fn new(rows: RowNormalisation) -> Self {
        Self {
            rows,
            leaf_width: LEAF_WIDTH,
            state: None,
        }
    }

    /// The number of embeddings seen so far.
    pub fn count(&self) -> i64 {
        self.state.as_ref().map_or(0, |s| s.count)
    }

    /// The embedding dimension D, once a chunk has been seen.
    pub fn dim(&self) -> Option<i64> {
        self.state.as_ref().map(|s| s.dim)
    }

    /// Adds a chunk of embeddings (any floating kind, any device). A chunk with zero rows is
    /// accepted and changes nothing.
    /// # Shapes
    /// chunk: [n, D], D the same for every chunk
    pub fn update(&mut self, chunk: &Tensor) -> Result<()> {
        let (n, d) = matrix_shape(chunk)?;
        if let Some(state) = &self.state {
            if d != state.dim {
                return Err(Error::config(
                    "embeddings",
                    format!(
                        "chunk of shape [{n}, {d}] after chunks of dimension {}",
                        state.dim
                    ),
                ));
            }
        }
        if n == 0 {
            return Ok(());
        }
        let block = block_rows(d);
        // No autograd graph: embeddings straight from a model's forward may require grad.
        tch::no_grad(|| {
            let mut start = 0;
            while start < n {
                let len = block.min(n - start);
                self.update_block(&chunk.f_narrow(0, start, len)?)?;
                start += len;
            }
            Ok(())
        })
    }

    /// One block of at most `BLOCK_ELEMENTS` entries, n ≥ 1 rows. [n, D]
    fn update_block(&mut self, block: &Tensor) -> Result<()> {
        let n = block.size()[0];
        let state = match &mut self.state {
            Some(state) => state,
            slot @ None => slot.insert(State::new(block.device(), block.size()[1])?),
        };
        // Converted to f64 on the accumulator's device into the reused buffer.
        let mut x = state.buffer.f_narrow(0, 0, n)?; // [n, D]
        x.f_copy_(block)?;
        if self.rows == RowNormalisation::L2 {
            let norms = x
                .f_norm_scalaropt_dim(2, [1i64], true)?
                .f_clamp_min(1e-12)?; // [n, 1]
            let _ = x.f_div_(&norms)?;
        }
        if state.count == 0 {
            state
                .shift
                .f_copy_(&x.f_mean_dim(&[0i64][..], false, Kind::Double)?)?;
        }
        let _ = x.f_sub_(&state.shift)?; // z − s
        let _ = state
            .sum
            .f_add_(&x.f_sum_dim_intlist(&[0i64][..], false, Kind::Double)?)?;
        lower_gram_update(&mut state.gram, &x, 0, state.dim, self.leaf_width)?;
        state.count += n;
        Ok(())
    }

    /// The moments of all embeddings seen: count, mean and covariance (Eqn 1).
    pub fn finish(self) -> Result<Moments> {
        let Some(state) = self.state.filter(|s| s.count > 0) else {
            return Err(Error::config(
                "embeddings",
                "no embeddings were given (zero rows)",
            ));
        };
        let n = state.count as f64;
        // The full symmetric Gram matrix from its lower triangle.
        let gram = state
            .gram
            .f_tril(0)?
            .f_add(&state.gram.f_tril(-1)?.f_transpose(0, 1)?)?; // [D, D]
        let m = state.sum.f_div_scalar(n)?; // mean(z) − s, [D]
        let mut covariance = gram.f_div_scalar(n)?;
        let _ = covariance.f_addr_(&m.f_neg()?, &m)?; // G/N − m mᵀ
        let mean = state.shift.f_add(&m)?;
        let finite = covariance.f_isfinite()?.f_all()?.f_int64_value(&[])? != 0
            && mean.f_isfinite()?.f_all()?.f_int64_value(&[])? != 0;
        if !finite {
            return Err(Error::Numerical {
                context: "covariance of embeddings".into(),
                reason: "non-finite entries (NaN or infinite values in the embeddings?)".into(),
            });
        }
        Ok(Moments {
            rows: self.rows,
            count: state.count,
            mean,
            covariance,
        })
    }
}

/// The first two moments of a set of N embeddings, in f64 on the device they were computed on.
#[derive(Debug)]
pub struct Moments {
    rows: RowNormalisation,
    count: i64,
    mean: Tensor,
    covariance: Tensor,
}

impl Moments {
    /// The preprocessing of the rows these moments are of.
    pub fn rows(&self) -> RowNormalisation {
        self.rows
    }

    /// The number of embeddings N.
    pub fn count(&self) -> i64 {
        self.count
    }

    /// The mean embedding z̄ (after the row normalisation, if any).
    /// # Shapes
    /// → `[D]`, f64
    pub fn mean(&self) -> &Tensor {
        &self.mean
    }

    /// The covariance of Eqn 1, C = 1/N · Σ_i (z_i − z̄)(z_i − z̄)ᵀ (divided by N, not N − 1),
    /// symmetric.
    /// # Shapes
    /// → [D, D], f64
    pub fn covariance(&self) -> &Tensor {
        &self.covariance
    }

    /// The eigenvalues of the covariance (Eqn 1) in descending order: the spectrum of the
    /// paper's figures before its log. Values below zero by round-off are kept as computed.
    /// # Shapes
    /// → D values
    pub fn covariance_eigenvalues(&self) -> Result<Vec<f64>> {
        symmetric_eigenvalues(&self.covariance)
    }

    /// The singular values of the N×D embedding matrix Z itself (after the row normalisation,
    /// if any; not centred), in descending order: the square roots of the eigenvalues of
    /// ZᵀZ = N (C + z̄ z̄ᵀ), with round-off negatives set to zero. The smallest are accurate to
    /// about 1e-8 σ₁ (the square root of f64's precision), ample for RankMe's ε = 1e-7.
    /// # Shapes
    /// → D values
    pub fn singular_values(&self) -> Result<Vec<f64>> {
        let mut gram = self.covariance.f_addr(&self.mean, &self.mean)?;
        let _ = gram.f_mul_scalar_(self.count as f64)?;
        let values = symmetric_eigenvalues(&gram)?;
        Ok(values.into_iter().map(|v| v.max(0.0).sqrt()).collect())
    }
}

/// The covariance spectrum of the paper's figures for embeddings held in one tensor: rows
/// normalised as asked, covariance (Eqn 1) in f64, eigenvalues in descending order.
/// # Shapes
/// z: [N, D] (any floating kind, any device) → D values
pub fn embedding_spectrum(z: &Tensor, rows: RowNormalisation) -> Result<Vec<f64>> {
    embedding_moments(z, rows)?.covariance_eigenvalues()
}

/// The moments (count, mean, covariance of Eqn 1) of embeddings held in one tensor.
/// # Shapes
/// z: [N, D] (any floating kind, any device), N ≥ 1
pub fn embedding_moments(z: &Tensor, rows: RowNormalisation) -> Result<Moments> {
    let mut acc = CovarianceAccumulator::new(rows);
    acc.update(z)?;
    acc.finish()
}

/// The eigenvalues of a symmetric matrix in descending order, computed in f64 on its device
/// (only its lower triangle is read).
///
/// On the CPU, LAPACK's solver (MKL's `dsyevd` in libtorch) runs on one thread: its
/// tridiagonal reduction synchronises its threads once per column, and with more threads than
/// idle cores (a data loader or another process busy) every barrier waits for a descheduled
/// thread — 2048 × 2048 took 2–5 s on two threads of a busy 2-core machine against 0.55 s on
/// one. Uncontended, two threads save about 0.2 s there; the matrix products, which do scale,
/// keep all threads.
/// # Shapes
/// a: [D, D] → D values
pub fn symmetric_eigenvalues(a: &Tensor) -> Result<Vec<f64>> {
    let size = a.size();
    if size.len() != 2 || size[0] != size[1] {
        return Err(Error::config(
            "matrix",
            format!("expected a square [D, D] matrix, got shape {size:?}"),
        ));
    }
    if !is_floating(a.kind()) {
        return Err(Error::config(
            "matrix",
            format!("expected floating-point values, got {:?}", a.kind()),
        ));
    }
    let ascending = tch::no_grad(|| -> Result<Tensor> {
        let a = a.f_to_kind(Kind::Double)?;
        Ok(if a.device() == Device::Cpu {
            let _one_thread = SingleThreadedMkl::new();
            a.f_linalg_eigvalsh("L")?
        } else {
            a.f_linalg_eigvalsh("L")?.f_to(Device::Cpu)?
        })
    })?;
    let mut values = Vec::<f64>::try_from(&ascending)?;
    values.reverse();
    Ok(values)
}

/// Restricts MKL calls of the current thread to one thread while alive (through MKL's
/// thread-local setting, which libtorch's MKL exports); does nothing where libtorch was built
/// without MKL.
struct SingleThreadedMkl {
    restore: Option<(SetThreadsLocal, libc::c_int)>,
}

/// `MKL_Set_Num_Threads_Local(n)`: sets the calling thread's MKL thread count (0: back to the
/// global one) and returns the previous setting.
type SetThreadsLocal = unsafe extern "C" fn(libc::c_int) -> libc::c_int;

impl SingleThreadedMkl {
    fn new() -> Self {
        static SET: std::sync::OnceLock<Option<SetThreadsLocal>> = std::sync::OnceLock::new();
        let set = *SET.get_or_init(|| {
            // SAFETY: a symbol lookup in the already loaded objects; the symbol, where present,
            // is MKL's C entry point with the signature of `SetThreadsLocal`.
            unsafe {
                let f = libc::dlsym(libc::RTLD_DEFAULT, c"MKL_Set_Num_Threads_Local".as_ptr());
                (!f.is_null()).then(|| std::mem::transmute::<*mut libc::c_void, SetThreadsLocal>(f))
            }
        });
        // SAFETY: MKL's documented C interface; it only changes the calling thread's setting.
        Self {
            restore: set.map(|set| (set, unsafe { set(1) })),
        }
    }
}

impl Drop for SingleThreadedMkl {
    fn drop(&mut self) {
        if let Some((set, previous)) = self.restore {
            // SAFETY: as in `new`.
            unsafe { set(previous) };
        }
    }
}

/// Checks that `t` is a [N, D] matrix of floating-point values and returns (N, D).
pub(crate) fn matrix_shape(t: &Tensor) -> Result<(i64, i64)> {
    let size = t.size();
    let [n, d] = size[..] else {
        return Err(Error::config(
            "embeddings",
            format!("expected a [N, D] matrix, got shape {size:?}"),
        ));
    };
    if d == 0 {
        return Err(Error::config(
            "embeddings",
            format!("embeddings of dimension 0 (shape {size:?})"),
        ));
    }
    if !is_floating(t.kind()) {
        return Err(Error::config(
            "embeddings",
            format!("expected floating-point embeddings, got {:?}", t.kind()),
        ));
    }
    Ok((n, d))
}

fn is_floating(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double
    )
}

/// Adds the lower triangle of yᵀy restricted to columns [start, start + width) into `gram`
/// (diagonal blocks of at most `leaf` columns are added whole): a symmetric rank-k update
/// (BLAS `syrk`) by recursive halving, since libtorch exposes only the general product.
/// # Shapes
/// gram: [D, D], y: [n, D]
fn lower_gram_update(
    gram: &mut Tensor,
    y: &Tensor,
    start: i64,
    width: i64,
    leaf: i64,
) -> Result<()> {
    if width <= leaf {
        let cols = y.f_narrow(1, start, width)?; // [n, w]
        let mut block = gram.f_narrow(0, start, width)?.f_narrow(1, start, width)?; // [w, w]
        let _ = block.f_addmm_(&cols.f_transpose(0, 1)?, &cols)?;
        return Ok(());
    }
    let first = width / 2;
    let second = width - first;
    let left = y.f_narrow(1, start, first)?; // [n, first]
    let right = y.f_narrow(1, start + first, second)?; // [n, second]
                                                       // The block below the diagonal: rows [start + first, start + width), columns
                                                       // [start, start + first).
    let mut below = gram
        .f_narrow(0, start + first, second)?
        .f_narrow(1, start, first)?; // [second, first]
    let _ = below.f_addmm_(&right.f_transpose(0, 1)?, &left)?;
    lower_gram_update(gram, y, start, first, leaf)?;
    lower_gram_update(gram, y, start + first, second, leaf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recursive_lower_gram_equals_the_full_product() {
        // Odd widths and a small leaf exercise uneven halving at several depths.
        let y = Tensor::randn([37, 67], (Kind::Double, Device::Cpu));
        let full = y.tr().matmul(&y);
        for leaf in [1, 8, 33, 67, 100] {
            let mut gram = Tensor::zeros([67, 67], (Kind::Double, Device::Cpu));
            lower_gram_update(&mut gram, &y, 0, 67, leaf).unwrap();
            let diff = (gram.tril(0) - full.tril(0)).abs().max().double_value(&[]);
            // Two sums of 37 products, each entry within 37·ε·max_j (YᵀY)_jj (Cauchy–Schwarz).
            let bound = 2.0 * 37.0 * f64::EPSILON * full.diagonal(0, 0, 1).max().double_value(&[]);
            assert!(diff <= bound, "leaf {leaf}: {diff} > {bound}");
        }
    }

    #[test]
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn mkl_thread_setting_is_found_and_restored() {
        // libtorch's x86-64 Linux builds use MKL; without it the guard would silently do nothing.
        let guard = SingleThreadedMkl::new();
        let (set, previous) = guard
            .restore
            .expect("MKL_Set_Num_Threads_Local in libtorch");
        // SAFETY: as in `SingleThreadedMkl::new`.
        assert_eq!(unsafe { set(1) }, 1);
        drop(guard);
        // SAFETY: as above.
        let now = unsafe { set(previous) };
        assert_eq!(now, previous);
    }

    #[test]
    fn small_leaf_accumulator_matches_the_default_one() {
        let z = Tensor::randn([300, 50], (Kind::Float, Device::Cpu)) + 2.0;
        let mut small = CovarianceAccumulator::new(RowNormalisation::L2);
        small.leaf_width = 3;
        small.update(&z).unwrap();
        let a = small.finish().unwrap().covariance_eigenvalues().unwrap();
        let b = embedding_spectrum(&z, RowNormalisation::L2).unwrap();
        // Two f64 spectra of N = 300 unit rows in d = 50: each eigenvalue within
        // 2ε·(N·tr(ZᵀZ)/N + d·λ₁) per computation (Gram rounding and the eigensolver, as in
        // tests/tolerance), tr(ZᵀZ)/N = 1 for L2 rows.
        let bound = 4.0 * f64::EPSILON * (300.0 + 50.0 * b[0]);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= bound, "{x} vs {y}");
        }
    }
}

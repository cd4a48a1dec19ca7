//! One-command reproduction of the paper's Table 1 and Figures 2 and 9 at a chosen scale:
//! every run pretrained from one preset with its method, probed (whole r and, for DirectCLR,
//! r[:d0] and r[d0:]), kNN-classified and diagnosed (spectra and rank metrics of r and z), in
//! one Markdown report beside the paper's numbers. With `seeds`, every row is replicated per
//! seed and the report gives mean ± standard deviation. Runs and evaluations are reused when
//! present, so an interrupted reproduction continues where it stopped.

mod config;
mod paper;
mod report;
mod runner;

pub use config::{CheckedReproduce, EvalData, ReproduceConfig, RunJob, RunSpec, SpectrumSettings};
pub use paper::{paper_top1, PAPER_DIRECTCLR_SUBVECTOR_TOP1};
pub use report::{markdown, write_report, FIG2_FILE, FIG9_FILE, REPORT_FILE};
pub use runner::{
    reproduce, ProbeSummary, ReproduceEvent, ReproduceOptions, ReproduceSummary, RunResult,
};

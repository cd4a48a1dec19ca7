//! One function per subcommand.

mod eval_input;
mod export;
mod knn;
mod probe;
mod reproduce;
mod spectrum;
mod theory;
mod train;
mod train_progress;

use crate::cli::{Cli, Command};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let threads = if cli.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        cli.threads
    };
    directclr::runtime::set_threads(threads);
    // The pool may already exist only if this is called twice in one process; that is harmless.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
    match cli.command {
        Command::Info => {
            println!("directclr {}", env!("CARGO_PKG_VERSION"));
            println!("{}", directclr::runtime::describe());
            Ok(())
        }
        Command::Theory(cmd) => theory::run(cmd),
        Command::Train(args) => train::run(args),
        Command::Probe(args) => probe::run(args),
        Command::Knn(args) => knn::run(args),
        Command::Spectrum(args) => spectrum::run(args),
        Command::Reproduce(args) => reproduce::run(args),
        Command::Export(args) => export::run(args),
    }
}

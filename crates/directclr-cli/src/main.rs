//! `directclr`: contrastive self-supervised learning and the study of dimensional collapse.
//!
//! The binary only parses, wires and prints; the science lives in the `directclr` library.

mod cli;
mod cli_eval;
mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // First, while this is the only thread and before libtorch's first tensor.
    directclr::runtime::set_heap_policy(cli.heap);
    if !matches!(
        cli.command,
        cli::Command::Train(_) | cli::Command::Reproduce(_)
    ) {
        // A reader that closes the pipe (`directclr spectrum … | head`) ends the process
        // quietly, as for other Unix tools, instead of a panic in `println!`. Training keeps
        // Rust's ignored SIGPIPE: a peer rank's closed socket must come back as an error that
        // the run reports and survives, not as a signal that kills it.
        // SAFETY: setting a signal's disposition to its default, before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

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

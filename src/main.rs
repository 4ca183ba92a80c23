//! The `havend` binary: parse the command line and hand over to [`havend::cli`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = havend::cli::Cli::parse();
    match havend::cli::execute(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("havend: {error:#}");
            ExitCode::FAILURE
        }
    }
}

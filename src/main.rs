//! The `havend` binary: parse the command line and hand over to [`havend::cli`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Crash tests arm failpoints through FAILPOINTS (only with `test-hooks`).
    #[cfg(feature = "test-hooks")]
    let _failpoints = fail::FailScenario::setup();
    let cli = havend::cli::Cli::parse();
    match havend::cli::execute(cli) {
        Ok(code) => code,
        Err(error) => {
            // Through anyhow, `{:#}` prints each source after the message, as before the typed errors.
            eprintln!("havend: {:#}", anyhow::Error::from(error));
            ExitCode::FAILURE
        }
    }
}

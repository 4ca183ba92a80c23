//! Finding the `anvil` binary (npm package `@foundry-rs/anvil`) for dev mode
//! and tests, installing it with npm when it is missing.

use std::path::{Path, PathBuf};

/// The npm project that pins anvil (and the Solidity compiler), beside the contract.
pub fn contracts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/chain/contracts")
}

/// Where npm puts the platform's anvil binary.
fn npm_binary() -> PathBuf {
    contracts_dir().join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
}

/// The anvil to run: `HAVEND_ANVIL`, else the npm-installed one (installed
/// now with `npm install` if absent), else `anvil` on the PATH.
pub fn locate() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("HAVEND_ANVIL") {
        return Ok(PathBuf::from(path));
    }
    let binary = npm_binary();
    if binary.exists() {
        return Ok(binary);
    }
    let status = std::process::Command::new("npm")
        .args(["install", "--no-audit", "--no-fund"])
        .current_dir(contracts_dir())
        .status();
    match status {
        Ok(status) if status.success() && binary.exists() => Ok(binary),
        _ => which_anvil().ok_or_else(|| format!("anvil not found: run `npm install` in {}", contracts_dir().display())),
    }
}

fn which_anvil() -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join("anvil"))
        .find(|candidate| candidate.is_file())
}

//! The npm packages of `tests/interop` (the `eventsource` package and
//! puppeteer-core, pinned in its `package.json` and lock file), installed
//! with `npm ci` on first use when missing, so that `cargo test` alone
//! works on a fresh machine that reaches npm (`.ci/run` installs them up
//! front). If they cannot be had the calling test fails, naming the
//! missing piece: a skipped interop check would hide breakage.

use std::path::Path;
use std::process::Stdio;

/// The npm package the Rust tests drive.
pub const INTEROP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");

/// Every package `tests/interop/package.json` pins.
const PACKAGES: [&str; 2] = ["eventsource", "puppeteer-core"];

/// Checks for `node` and installs the interop packages once per test run
/// when one is missing. Blocking: call it before any request is in flight.
pub fn ensure_interop_packages() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        let node = std::process::Command::new("node").arg("--version").output();
        assert!(
            node.is_ok_and(|o| o.status.success()),
            "the interop tests need Node.js (`node`) on PATH"
        );
        let modules = Path::new(INTEROP).join("node_modules");
        if PACKAGES.iter().all(|p| modules.join(p).is_dir()) {
            return;
        }
        let status = std::process::Command::new("npm")
            .args(["ci", "--prefix", INTEROP, "--no-audit", "--no-fund"])
            // puppeteer-core never downloads a browser; say so anyway.
            .env("PUPPETEER_SKIP_DOWNLOAD", "1")
            .stdin(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("the interop tests need npm on PATH: {e}"));
        assert!(
            status.success(),
            "installing the interop packages failed: npm ci --prefix {INTEROP} ({status})"
        );
    });
}

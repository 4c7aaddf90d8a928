//! The binary's allocator: the default build runs jemalloc with the
//! settings that hand memory back after load (BENCHMARKS.md, "Memory after
//! load"). A build without them still works, but keeps its peak resident.
#![cfg(feature = "jemalloc")]

use std::process::Command;

/// jemalloc reports the configuration built into it when asked
/// (`confirm_conf`): the background thread (tikv-jemallocator's
/// `background_threads` feature) and the 1 s decay (`.cargo/config.toml`)
/// must both be there; without the thread, nothing is purged while the
/// relay is idle.
#[test]
fn default_build_hands_memory_back() {
    let out = Command::new(env!("CARGO_BIN_EXE_sse-edge"))
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "confirm_conf:true")
        .output()
        .expect("run sse-edge --version");
    assert!(out.status.success(), "{out:?}");
    let report = String::from_utf8_lossy(&out.stderr);
    let built_in = report
        .lines()
        .find(|l| l.contains("--with-malloc-conf"))
        .unwrap_or_else(|| panic!("no jemalloc configuration report in: {report}"));
    assert!(built_in.contains("background_thread:true"), "{built_in}");
    assert!(built_in.contains("dirty_decay_ms:1000"), "{built_in}");
}

//! Tests of [`super::Layers`] without a command line: flags come from a
//! lookup, as the demo hands them in. The command line's own tests, which
//! run every layer through clap, are in `crate::cli`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Layers, Loaded, parse_duration, parse_heartbeat, parse_socket_addr};

fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        let found = pairs.iter().find(|(n, _)| *n == name);
        found.map(|(_, v)| (*v).to_owned())
    }
}

fn load(flags: &[(&str, &str)], env: &[(&str, &str)], file: Option<&Path>) -> Loaded {
    let (flags, env) = (lookup(flags), lookup(env));
    let layers = Layers {
        flags: &flags,
        env: &env,
    };
    match layers.load(file) {
        Ok(loaded) => loaded,
        Err(e) => panic!("{e}"),
    }
}

/// A file under the temp dir, removed on drop.
struct Temp(PathBuf);

impl Temp {
    fn new(tag: &str, contents: &str) -> Self {
        let name = format!("sse-edge-layers-{}-{tag}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn flags_from_a_lookup_beat_the_environment() {
    let flags = [("upstream", "http://127.0.0.1:9"), ("heartbeat", "2s")];
    let env = [("SSE_EDGE_HEARTBEAT", "3s"), ("SSE_EDGE_WORKERS", "2")];
    let c = load(&flags, &env, None).into_config();
    assert_eq!(c.routes[0].stream.heartbeat, Duration::from_secs(2));
    assert_eq!(c.workers, 2);
    assert_eq!(c.routes[0].upstreams.chain[0].endpoints[0].url.port, 9);
}

#[test]
fn given_and_flag_read_only_flags_and_environment() {
    let (flags, env) = (
        lookup(&[("pause", "5x")]),
        lookup(&[("SSE_EDGE_LISTEN", "127.0.0.1:7")]),
    );
    let layers = Layers {
        flags: &flags,
        env: &env,
    };
    let listen = layers.given("listen", parse_socket_addr).unwrap();
    assert_eq!(
        listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:7")
    );
    assert_eq!(layers.given("heartbeat", parse_heartbeat), Ok(None));
    assert_eq!(
        layers
            .flag("pause", parse_duration)
            .unwrap_err()
            .to_string(),
        "invalid value for pause (from --pause): \"5x\": expected a duration like 250ms, 15s, 2m or 1h"
    );
    assert_eq!(layers.flag("head-delay", parse_duration), Ok(None));
}

#[test]
fn keys_files_are_checked_through_the_callers_reader() {
    let keys = Temp::new("keys", "not read by config\n");
    let path = keys.0.display().to_string();
    let file = Temp::new(
        "config.toml",
        &format!("[[route]]\nupstream = \"http://a\"\nauth_keys_file = \"{path}\"\n"),
    );
    let mut loaded = load(&[], &[], Some(&file.0));
    let keys_file = loaded.config().routes[0]
        .auth
        .keys
        .as_ref()
        .map(|k| &k.path);
    assert_eq!(keys_file, Some(&keys.0));
    let line = format!("auth_keys_file = \"{path}\"");
    assert!(loaded.render().unwrap().lines().any(|l| l == line));
    loaded.check_keys_files(&|_| Ok(3)).unwrap();
    let line = format!("{line}  # 3 key(s)");
    assert!(loaded.render().unwrap().lines().any(|l| l == line));
    let err = loaded
        .check_keys_files(&|_| Err("line 1: expected a 64-digit hex SHA-256 digest".into()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "invalid value for route[0].auth_keys_file (from config file {}): \"{path}\": \
             line 1: expected a 64-digit hex SHA-256 digest",
            file.0.display()
        )
    );
}

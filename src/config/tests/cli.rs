//! The command line's shape (what each subcommand takes, suggestions) and
//! the open-file-derived `server.max_connections`.

use super::{ConfigError, Invocation, TempFile, UP, check, error, has_line, load, run};
use crate::config::nofile;

fn cli_error(args: &[&str]) -> String {
    match load(args, &[]) {
        Err(ConfigError::Cli(e)) => e.to_string(),
        other => panic!("expected a command-line error for {args:?}, got {other:?}"),
    }
}

#[test]
fn demo_lists_and_takes_only_its_own_flags() {
    let help = cli_error(&["demo", "--help"]);
    for flag in [
        "--head-delay",
        "--pause",
        "--keep-running",
        "--listen",
        "--admin",
        "--heartbeat",
    ] {
        assert!(
            help.contains(flag),
            "{flag} missing from demo --help:\n{help}"
        );
    }
    for flag in [
        "--config",
        "--upstream",
        "--workers",
        "--tls-cert",
        "--server-max-connections",
        "--retry-budget",
    ] {
        assert!(!help.contains(flag), "demo --help lists {flag}:\n{help}");
    }
    assert!(cli_error(&["demo", "--tls-cert", "x"]).contains("--tls-cert"));
    // Relay flags before a subcommand would be ignored: refused.
    let msg = cli_error(&["--heartbeat", "5s", "demo"]);
    assert!(msg.contains("cannot be used with"), "{msg}");
    // What the demo takes comes from its flags, or the environment.
    let env = [("SSE_EDGE_LISTEN", "127.0.0.1:7000")];
    let Ok(Invocation::Demo(d)) = load(&["demo", "--heartbeat", "2s"], &env) else {
        panic!("demo not parsed");
    };
    assert_eq!(
        d.listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:7000")
    );
    assert_eq!(d.heartbeat, Some(std::time::Duration::from_secs(2)));
    assert_eq!(d.admin, None);
    // check-config takes the relay's flags after its file.
    let help = cli_error(&["check-config", "--help"]);
    assert!(help.contains("--server-max-connections"), "{help}");
    assert!(cli_error(&["hash-key", "--listen", "127.0.0.1:1"]).contains("--listen"));
}

#[test]
fn a_mistyped_flag_gets_a_suggestion() {
    let msg = cli_error(&[UP, "--heartbat", "5s"]);
    assert!(
        msg.contains("similar argument exists: '--heartbeat'"),
        "{msg}"
    );
    let msg = cli_error(&["demo", "--keep-runing"]);
    assert!(msg.contains("'--keep-running'"), "{msg}");
}

#[test]
fn max_connections_defaults_to_what_the_open_file_limit_holds() {
    let limit = nofile::soft_limit().expect("the open-file limit is readable");
    let room = nofile::room(limit);
    let c = run(&[UP], &[]);
    assert_eq!(
        c.server.limits.max_connections,
        usize::try_from(room).unwrap()
    );
    assert!(2 * room + nofile::reserve(limit) <= limit);

    let file = TempFile::new("nofile.toml", "[[route]]\nupstream = \"http://a\"\n");
    let rendered = check(&["check-config", file.path()], &[], |_| {});
    let line = format!("max_connections = {room}");
    has_line(
        &rendered,
        &format!(
            "{line:<47} # from default: (open-file limit {limit} - reserve {}) / 2",
            nofile::reserve(limit)
        ),
    );
}

#[test]
fn max_connections_beyond_the_open_file_limit_is_refused() {
    let limit = nofile::soft_limit().expect("the open-file limit is readable");
    let room = nofile::room(limit);
    if room >= nofile::MAX_CONNECTIONS {
        return; // no value the key accepts is too large for this limit
    }
    let fits = room.to_string();
    let c = run(&[UP, "--server-max-connections", &fits], &[]);
    assert_eq!(c.server.limits.max_connections.to_string(), fits);
    let over = (room + 1).to_string();
    let msg = error(&[UP], &[("SSE_EDGE_SERVER_MAX_CONNECTIONS", &over)]);
    assert_eq!(
        msg,
        format!(
            "invalid value for server.max_connections (from SSE_EDGE_SERVER_MAX_CONNECTIONS): \
             \"{over}\": the open-file limit ({limit}) leaves room for {room} client connections \
             (2 descriptors each, {} kept in reserve): lower it, or raise the limit \
             (ulimit -n, systemd LimitNOFILE, docker --ulimit nofile)",
            nofile::reserve(limit)
        )
    );
}

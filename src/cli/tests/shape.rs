//! The command line's shape (what each subcommand takes, suggestions), the
//! open-file-derived `server.max_connections`, and durations and sizes
//! rendered one way by check-config.

use super::{CliError, Invocation, TempFile, UP, check, error, has_line, load, run};
use crate::config::nofile;

fn cli_error(args: &[&str]) -> String {
    match load(args, &[]) {
        Err(CliError::Clap(e)) => e.to_string(),
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
        "--page",
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
    assert_eq!(d.page, None);
    let Ok(Invocation::Demo(d)) = load(&["demo", "--page", "127.0.0.1:7001"], &[]) else {
        panic!("demo not parsed");
    };
    assert_eq!(d.page.map(|a| a.port()), Some(7001));
    let msg = error(&["demo", "--page", "localhost:1"], &[]);
    assert!(msg.contains("page"), "{msg}");
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

/// Every duration and size key given at the top level in a form other
/// than the canonical one, inherited by a route.
const LOOSE_FORMS: &str = r#"
drain_timeout = "90s"
heartbeat = "5000ms"
retry_budget = "60s"
retry_backoff = "1000ms"
resume_window = "120s"
max_event_size = 65536
resume_max_bytes = "4096KiB"
resume_memory = "512MB"

[server]
idle_timeout = "300s"

[upstream]
read_timeout = "600s"

[[route]]
upstream = "http://a"
"#;

#[test]
fn durations_and_sizes_render_one_way_at_the_top_level_and_in_routes() {
    let file = TempFile::new("loose.toml", LOOSE_FORMS);
    let rendered = check(&["check-config", file.path()], &[], |_| {});
    let top = |key: &str| {
        let line = rendered
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no top-level {key}:\n{rendered}"));
        line.split_once(" #")
            .map_or(line, |(v, _)| v)
            .trim_end()
            .to_owned()
    };
    for (key, shown) in [
        ("heartbeat", "\"5s\""),
        ("retry_budget", "\"1m\""),
        ("retry_backoff", "\"1s\""),
        ("resume_window", "\"2m\""),
        ("max_event_size", "\"64KiB\""),
        ("resume_max_bytes", "\"4MiB\""),
    ] {
        let line = format!("{key} = {shown}");
        assert_eq!(top(key), line, "{rendered}");
        has_line(
            &rendered,
            &format!("{line}  # inherited from top-level {key}"),
        );
    }
    assert_eq!(top("drain_timeout"), "drain_timeout = \"1m30s\"");
    assert_eq!(top("idle_timeout"), "idle_timeout = \"5m\"");
    assert_eq!(top("resume_memory"), "resume_memory = \"512MB\"");
    // The defaults too, and the timeouts routes inherit from upstream.*.
    assert_eq!(top("first_byte_timeout"), "first_byte_timeout = \"5m\"");
    assert_eq!(top("read_timeout"), "read_timeout = \"10m\"");
    has_line(
        &rendered,
        "read_timeout = \"10m\"  # inherited from top-level upstream.read_timeout",
    );
}

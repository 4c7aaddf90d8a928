//! The open-file-derived `server.max_connections`.

use super::{TempFile, UP, check, error, has_line, run};
use crate::config::nofile;

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

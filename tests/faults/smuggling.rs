//! Area `smuggling`: request-smuggling shapes (CL + TE, duplicate
//! Content-Length, TE not ending in chunked, obs-fold, bare LF in chunks,
//! `Upgrade: h2c`, CONNECT). Nothing after a refused or ambiguous request
//! may reach the upstream as a request of its own.

use std::time::Duration;

use http::{Method, Request};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::{settled, sleep};
use crate::raw::{expect_raw_status, raw_roundtrip};
use crate::support::*;
use crate::{CaseResult, note};

async fn smuggling_relay() -> (Upstream, sse_edge::Running) {
    let up = Upstream::start(Mode::Http1, |req: Recorded| async move {
        json_response(200, format!(r#"{{"got":{}}}"#, req.body.len()))
    })
    .await;
    let relay = start_relay_to(&up, &[]).await;
    (up, relay)
}

/// Sends `raw`; wants one `status` answer, the connection closed, and no
/// request at the upstream.
async fn refused_raw(raw: &str, status: u16) -> CaseResult {
    let (up, relay) = smuggling_relay().await;
    let reply = expect_raw_status(relay.listen, raw.as_bytes().to_vec(), status).await?;
    ensure!(
        reply.closed.is_some(),
        "connection left open after {status}"
    );
    ensure!(
        reply.responses() == 1,
        "{} responses: {:?}",
        reply.responses(),
        reply.text()
    );
    sleep(100).await;
    ensure!(
        up.request_count() == 0,
        "the upstream saw {:?}",
        up.requests()
            .iter()
            .map(|r| r.target.clone())
            .collect::<Vec<_>>()
    );
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

/// CL + TE in both orders. RFC 9112 §6.1 lets a server either refuse such
/// a request or frame it by Transfer-Encoding alone, closing the connection
/// after its answer. Either way nothing after the chunked body may be read
/// as a request, and what the upstream gets is framed by TE only.
pub(crate) async fn smuggle_cl_te() -> CaseResult {
    let (up, relay) = smuggling_relay().await;
    let orders = [
        "Content-Length: 5\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 5",
    ];
    let mut statuses = Vec::new();
    for framing in orders {
        let before = up.request_count();
        let raw = format!(
            "POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n{framing}\r\n\r\n0\r\n\r\n{SMUGGLED}"
        );
        let reply = raw_roundtrip(relay.listen, raw.into_bytes(), Duration::from_secs(3)).await?;
        ensure!(
            reply.closed.is_some(),
            "{framing:?}: connection left open after a CL+TE request"
        );
        ensure!(
            reply.responses() == 1,
            "{framing:?}: {} responses: {:?}",
            reply.responses(),
            reply.text()
        );
        sleep(100).await;
        let seen: Vec<Recorded> = up.requests().split_off(before);
        ensure!(
            !seen.iter().any(|r| r.target.contains("smuggled")),
            "{framing:?}: the smuggled request reached the upstream"
        );
        match reply.status() {
            Some(400) => ensure!(seen.is_empty(), "{framing:?}: 400, yet forwarded"),
            Some(200) => {
                ensure!(
                    seen.len() == 1 && seen[0].body.is_empty() && seen[0].body_complete,
                    "{framing:?}: the upstream got {:?}",
                    seen.iter()
                        .map(|r| (&r.target, r.body.len()))
                        .collect::<Vec<_>>()
                );
                ensure!(
                    seen[0].header("content-length").is_none_or(|v| v == "0"),
                    "{framing:?}: the client's Content-Length reached the upstream"
                );
                ensure!(
                    reply
                        .text()
                        .to_ascii_lowercase()
                        .contains("connection: close"),
                    "{framing:?}: answered without closing"
                );
            }
            other => return Err(format!("{framing:?}: status {other:?}")),
        }
        statuses.push(reply.status().unwrap_or(0));
    }
    // hyper frames CL+TE by Transfer-Encoding, drops Content-Length and
    // closes after the answer (RFC 9112 §6.1); the checks above show nothing
    // was smuggled either way.
    note(format!("CL+TE statuses {statuses:?}"));
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

pub(crate) async fn smuggle_duplicate_cl() -> CaseResult {
    let raw = format!(
        "POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd{SMUGGLED}"
    );
    refused_raw(&raw, 400).await
}

pub(crate) async fn smuggle_te_not_chunked() -> CaseResult {
    for te in ["gzip", "chunked, gzip"] {
        let raw = format!(
            "POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n{SMUGGLED}"
        );
        refused_raw(&raw, 400)
            .await
            .map_err(|e| format!("Transfer-Encoding: {te}: {e}"))?;
    }
    Ok(())
}

pub(crate) async fn smuggle_obs_fold() -> CaseResult {
    let raw = "GET /v1/x HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n";
    refused_raw(raw, 400).await
}

pub(crate) async fn smuggle_bare_lf() -> CaseResult {
    let (up, relay) = smuggling_relay().await;
    // Chunk lines ending in a bare LF; the chunk's data looks like a request.
    let inner = "GET /smuggled HTTP/1.1\r\n\r\n";
    let raw = format!(
        "POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\n{inner}\n0\n\n{SMUGGLED}",
        inner.len()
    );
    let reply = raw_roundtrip(relay.listen, raw.into_bytes(), Duration::from_secs(3)).await?;
    sleep(200).await;
    let seen = up.requests();
    ensure!(
        !seen.iter().any(|r| r.target.contains("smuggled")),
        "a smuggled request reached the upstream: {:?}",
        seen.iter().map(|r| &r.target).collect::<Vec<_>>()
    );
    match reply.status() {
        Some(400) => {
            ensure!(
                seen.is_empty(),
                "400, yet the upstream saw {} request(s)",
                seen.len()
            );
            note("bare-LF chunks refused with 400");
        }
        Some(200) => {
            ensure!(seen.len() == 1, "upstream saw {} requests", seen.len());
            ensure!(
                seen[0].body == inner.as_bytes(),
                "the upstream body is not the decoded chunk: {:?}",
                seen[0].body
            );
            note("bare-LF chunks accepted; upstream got exactly the decoded body");
        }
        other => return Err(format!("status {other:?}: {:?}", reply.text())),
    }
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

pub(crate) async fn smuggle_upgrade_h2c() -> CaseResult {
    let (up, relay) = smuggling_relay().await;
    let settings = "AAMAAABkAARAAAAAAAIAAAAA";
    let compliant = format!(
        "GET /v1/a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: {settings}\r\n\r\n"
    );
    let bare = format!(
        "GET /v1/b HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nHTTP2-Settings: {settings}\r\n\r\n"
    );
    for raw in [compliant, bare] {
        let mut s = TcpStream::connect(relay.listen)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(raw.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let head = tokio::time::timeout(Duration::from_secs(3), read_head(&mut s))
            .await
            .map_err(|_| "no answer to an Upgrade: h2c request")?;
        let text = String::from_utf8_lossy(&head).into_owned();
        ensure!(
            text.starts_with("HTTP/1.1 200"),
            "Upgrade: h2c must be answered as plain HTTP/1.1: {text}"
        );
        ensure!(
            !text.to_ascii_lowercase().contains("upgrade"),
            "the answer offers an upgrade: {text}"
        );
    }
    up.wait_requests(2).await;
    for r in up.requests() {
        ensure!(
            r.header("upgrade").is_none(),
            "{} reached the upstream with Upgrade",
            r.target
        );
        let settings = r.header("http2-settings").is_some();
        // RFC 7540 §3.2.1: a client sending HTTP2-Settings must list it in
        // Connection; when it does, the field is hop-by-hop and removed.
        ensure!(
            !(settings && r.target == "/v1/a"),
            "HTTP2-Settings listed in Connection reached the upstream"
        );
        ensure!(
            !settings,
            "HTTP2-Settings not listed in Connection reached the upstream ({})",
            r.target
        );
    }
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

pub(crate) async fn smuggle_connect() -> CaseResult {
    let (up, relay) = smuggling_relay().await;
    let reply = expect_raw_status(
        relay.listen,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n"
            .to_vec(),
        405,
    )
    .await?;
    ensure!(
        reply.text().to_ascii_lowercase().contains("allow:"),
        "{:?}",
        reply.text()
    );
    // The same over HTTP/2 (CONNECT carries only :authority there).
    let tcp = TcpStream::connect(relay.listen)
        .await
        .map_err(|e| e.to_string())?;
    let (mut tx, conn) = h2::client::handshake(tcp)
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri("example.com:443")
        .body(())
        .unwrap();
    let (res, _stream) = tx
        .send_request(req, false)
        .map_err(|e| format!("h2 CONNECT: {e}"))?;
    let res = tokio::time::timeout(Duration::from_secs(3), res)
        .await
        .map_err(|_| "no answer to h2 CONNECT")?
        .map_err(|e| format!("h2 CONNECT: {e}"))?;
    ensure!(res.status() == 405, "h2 CONNECT: {}", res.status());
    drop(tx);
    conn.abort();
    sleep(100).await;
    ensure!(up.request_count() == 0, "the upstream saw a CONNECT");
    settled(relay.admin, true).await?;
    stop_relay(relay).await;
    Ok(())
}

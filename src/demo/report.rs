//! What the demo says about the relay: the access-log line of each request
//! in words, the metrics that counted heartbeats and tokens, and, with
//! `--keep-running`, the commands to try it by hand.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use simd_json::BorrowedValue;
use simd_json::prelude::*;

use super::output::Output;
use super::script::SCENARIOS;

/// Metric families shown after the demo requests.
const SHOWN_METRICS: [&str; 3] = [
    "sse_edge_requests_total{",
    "sse_edge_heartbeats_total{",
    "sse_edge_tokens_total{",
];

/// Prints one access-log line: a summary in words, then the line itself.
pub(super) fn access_line(out: &mut Output, line: &str) {
    let mut bytes = line.as_bytes().to_vec();
    if let Ok(v) = simd_json::to_borrowed_value(&mut bytes) {
        out.line(&format!("  relay access log: {}", summary(&v)));
    }
    out.line(&format!("  {}", out.dim(line)));
}

fn summary(v: &BorrowedValue<'_>) -> String {
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("?").to_owned();
    let num = |k: &str| v.get(k).and_then(|x| x.cast_f64());
    let count = |k: &str| num(k).map_or_else(|| "-".to_owned(), |n| format!("{n:.0}"));
    let mut parts = vec![format!(
        "{} {} -> {}",
        text("method"),
        text("path"),
        count("status")
    )];
    if v.get("early_commit").and_then(|x| x.as_bool()) == Some(true) {
        parts.push(format!(
            "early commit (the model API answered {} later)",
            count("upstream_status")
        ));
    }
    if let Some(ms) = num("ttfb_ms") {
        parts.push(format!("head after {:.2}s", ms / 1000.0));
    }
    if let Some(ms) = num("duration_ms") {
        parts.push(format!("{:.2}s in all", ms / 1000.0));
    }
    parts.push(format!("{} heartbeats", count("heartbeats")));
    parts.push(format!("outcome {}", text("outcome")));
    parts.push(format!(
        "tokens in {} / out {} ({})",
        count("input_tokens"),
        count("output_tokens"),
        text("usage_source")
    ));
    parts.join(" · ")
}

/// Prints the request, heartbeat and token series that are not zero.
pub(super) fn metrics(out: &mut Output, admin: SocketAddr, text: &str) {
    out.heading(&format!(
        "What the relay counted (http://{}/metrics)",
        shown(admin)
    ));
    let counted = |l: &&str| {
        SHOWN_METRICS.iter().any(|m| l.starts_with(m))
            && l.rsplit(' ').next().is_some_and(|n| n != "0")
    };
    for line in text.lines().filter(counted) {
        out.line(&format!("  {line}"));
    }
}

/// The address a client on this machine uses for `addr`.
pub(super) fn shown(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, a.port()))
        }
        other => other,
    }
}

/// Commands to try the running relay by hand.
pub(super) fn guide(out: &mut Output, listen: SocketAddr, admin: SocketAddr, page: &str) {
    let (relay, admin) = (shown(listen), shown(admin));
    out.heading("Try it yourself (Ctrl-C stops the relay and the simulated API)");
    out.line(&format!(
        "In a browser: {page}\n  a chat page on another origin, streaming through the relay's /browser route\n  \
         (CORS policy for the page, resumption on): keepalives and tokens as they arrive,\n  \
         and a \"cut the connection\" button that resumes the stream with nothing lost.\n"
    ));
    out.line("Stream through the relay with curl (-N: print as it arrives):\n");
    for s in &SCENARIOS {
        let headers: String = s
            .headers
            .iter()
            .map(|(k, v)| format!(" \\\n    -H '{k}: {v}'"))
            .collect();
        out.line(&format!(
            "  curl -N http://{relay}{} \\\n    -H 'content-type: application/json'{headers} \\\n    -d '{}'\n",
            s.path, s.body
        ));
    }
    out.line("A non-streaming request (the answer arrives whole, after the same wait):\n");
    out.line(&format!(
        "  curl http://{relay}/v1/chat/completions -H 'content-type: application/json' \\\n    -d '{{\"model\":\"demo-model\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'\n"
    ));
    out.line(&format!(
        "Admin: curl http://{admin}/metrics  (also /healthz, /readyz)\n"
    ));
    out.line("With the official Python SDKs (pip install openai anthropic):\n");
    out.line(&python_snippet(relay));
    out.line("Each request's access-log line is printed below as it ends.");
}

fn python_snippet(relay: SocketAddr) -> String {
    format!(
        r#"  from openai import OpenAI
  client = OpenAI(base_url="http://{relay}/v1", api_key="demo-key")
  stream = client.chat.completions.create(
      model="demo-model", stream=True, stream_options={{"include_usage": True}},
      messages=[{{"role": "user", "content": "Hello"}}])
  for chunk in stream:
      if chunk.choices:
          print(chunk.choices[0].delta.content or "", end="", flush=True)
      elif chunk.usage:
          print("\n", chunk.usage)

  import anthropic
  client = anthropic.Anthropic(base_url="http://{relay}", api_key="demo-key")
  with client.messages.stream(model="demo-model", max_tokens=256,
                              messages=[{{"role": "user", "content": "Hello"}}]) as s:
      for text in s.text_stream:
          print(text, end="", flush=True)
      print("\n", s.get_final_message().usage)
"#
    )
}

//! What a run measures: the scenarios, the targets each one runs against
//! (the peers, the upstream directly, the hyper floor, or sse-edge
//! variants) and the workload sizes. `orchestrate` runs the plan.

use std::path::{Path, PathBuf};

use crate::memory::CloseWait;
use crate::procs::Kind;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scn {
    Paced,
    Burst,
    JsonC1,
    JsonC32,
    Prompt,
    Idle,
    Upload,
    Heartbeat,
    TlsHandshake,
    TlsStream,
    FailoverC1,
    FailoverC32,
}

pub const ALL: [Scn; 12] = [
    Scn::Paced,
    Scn::Burst,
    Scn::JsonC1,
    Scn::JsonC32,
    Scn::Prompt,
    Scn::Idle,
    Scn::Upload,
    Scn::Heartbeat,
    Scn::TlsHandshake,
    Scn::TlsStream,
    Scn::FailoverC1,
    Scn::FailoverC32,
];

impl Scn {
    pub fn id(self) -> &'static str {
        match self {
            Scn::Paced => "stream_paced",
            Scn::Burst => "stream_burst",
            Scn::JsonC1 => "json_c1",
            Scn::JsonC32 => "json_c32",
            Scn::Prompt => "prompt",
            Scn::Idle => "idle",
            Scn::Upload => "upload",
            Scn::Heartbeat => "heartbeat",
            Scn::TlsHandshake => "tls_handshake",
            Scn::TlsStream => "tls_stream",
            Scn::FailoverC1 => "failover_c1",
            Scn::FailoverC32 => "failover_c32",
        }
    }

    /// `None` is the direct-to-upstream baseline. With variants, every
    /// scenario runs against them alone. `floor` (the hyper floor relay)
    /// joins the rows whose target is a CPU ratio.
    pub fn targets(self, variants: &[Target], floor: Option<&Target>) -> Vec<Option<Target>> {
        if !variants.is_empty() {
            return variants.iter().cloned().map(Some).collect();
        }
        let peers: Vec<Option<Target>> = [Kind::SseEdge, Kind::Nginx, Kind::Haproxy]
            .into_iter()
            .map(|k| Some(Target::proxy(k)))
            .collect();
        let floor = floor.cloned().map(Some);
        match self {
            Scn::Paced | Scn::Burst | Scn::JsonC1 | Scn::JsonC32 | Scn::Prompt => {
                let mut v = vec![None];
                v.extend(peers);
                v.extend(floor);
                v
            }
            Scn::Heartbeat => vec![Some(Target::proxy(Kind::SseEdge))],
            Scn::TlsStream => peers.into_iter().chain(floor).collect(),
            Scn::Idle | Scn::Upload | Scn::TlsHandshake => peers,
            // HAProxy left out: its `backup` servers serve only once the
            // others are down by health checks, not per request.
            Scn::FailoverC1 | Scn::FailoverC32 => peers[..2].to_vec(),
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, Scn::TlsHandshake | Scn::TlsStream)
    }

    pub fn failover(self) -> bool {
        matches!(self, Scn::FailoverC1 | Scn::FailoverC32)
    }
}

/// What a measurement runs against (besides the upstream directly).
#[derive(Clone, Debug)]
pub struct Target {
    /// The name in the report: the proxy's, or the sse-edge variant's.
    pub name: &'static str,
    pub kind: Kind,
    /// An sse-edge variant's binary (else `Env::sse_edge`).
    pub bin: Option<PathBuf>,
}

impl Target {
    fn proxy(kind: Kind) -> Target {
        Target {
            name: kind.name(),
            kind,
            bin: None,
        }
    }

    /// `NAME=PATH,NAME=PATH,...`: sse-edge builds to compare; the first is
    /// the baseline of the report.
    /// The thinnest relay on hyper's server and client halves
    /// (`hyper-floor`, src/floor.rs), started with sse-edge's flags.
    pub const FLOOR: &'static str = "hyper-floor";

    pub fn floor(path: &str) -> Result<Target, String> {
        let bin = std::path::absolute(Path::new(path)).map_err(|e| format!("{path}: {e}"))?;
        if !bin.is_file() {
            return Err(format!("--hyper-floor: {} is not a file", bin.display()));
        }
        Ok(Target {
            name: Self::FLOOR,
            kind: Kind::SseEdge,
            bin: Some(bin),
        })
    }

    pub fn variants(list: &str) -> Result<Vec<Target>, String> {
        let mut out: Vec<Target> = Vec::new();
        for item in list.split(',').filter(|i| !i.is_empty()) {
            let (name, path) = item
                .split_once('=')
                .ok_or_else(|| format!("--variants: {item:?} is not NAME=PATH"))?;
            if out.iter().any(|t| t.name == name) || name == "direct" || name == Self::FLOOR {
                return Err(format!("--variants: name {name:?} twice or reserved"));
            }
            let bin = std::path::absolute(Path::new(path)).map_err(|e| format!("{path}: {e}"))?;
            if !bin.is_file() {
                return Err(format!("--variants: {} is not a file", bin.display()));
            }
            out.push(Target {
                // A handful per run, kept for its whole life.
                name: Box::leak(name.to_string().into_boxed_str()),
                kind: Kind::SseEdge,
                bin: Some(bin),
            });
        }
        Ok(out)
    }
}

/// Workload sizes of one run.
#[derive(Clone, Debug)]
pub struct Sizes {
    pub rounds: usize,
    pub clients: usize,
    pub events: u32,
    pub interval_us: u32,
    pub paced_streams: u64,
    pub burst_streams: u64,
    pub json_secs: f64,
    pub wave_ms: u64,
    pub idle_streams: u64,
    pub hb_streams: u64,
    pub hb_window_secs: f64,
    pub hs_conns: usize,
    pub hs_secs: f64,
    pub tls_streams: u64,
    /// The JSON body of the upload run, in MiB.
    pub upload_mib: usize,
    /// The request body of the long-prompt run, in KB (1000 bytes).
    pub prompt_kib: usize,
    /// Requests of each way (healthy, 503, refused) in `failover_c1`.
    pub fo_requests: u64,
    /// How long `failover_c32` runs.
    pub fo_secs: f64,
    /// When the proxy's RSS is read again after the idle streams or the
    /// upload's client have closed.
    pub close_waits: Vec<CloseWait>,
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            rounds: 3,
            clients: 32,
            events: 300,
            interval_us: 1000,
            paced_streams: 320,
            burst_streams: 640,
            json_secs: 4.0,
            wave_ms: 5,
            idle_streams: 8000,
            hb_streams: 8000,
            hb_window_secs: 10.0,
            hs_conns: 8,
            hs_secs: 4.0,
            tls_streams: 320,
            upload_mib: 30,
            prompt_kib: 200,
            fo_requests: 1000,
            fo_secs: 2.0,
            close_waits: CloseWait::list("5").unwrap_or_default(),
        }
    }

    pub fn quick() -> Sizes {
        Sizes {
            rounds: 2,
            paced_streams: 96,
            burst_streams: 192,
            json_secs: 1.5,
            idle_streams: 4000,
            hb_streams: 4000,
            hb_window_secs: 5.0,
            hs_secs: 1.5,
            tls_streams: 96,
            fo_requests: 100,
            fo_secs: 1.0,
            ..Sizes::full()
        }
    }
}

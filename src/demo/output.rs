//! What the demo prints: timed lines (`  +1.00s  ♥ keepalive ...`), tokens
//! inline as they arrive, headings. Colours only when stdout is a terminal
//! and `NO_COLOR` is unset; every line reads the same without them.
//!
//! Write errors (a closed pipe, `sse-edge demo | head`) are ignored: the
//! demo keeps running and its exit status still tells the truth.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// The kind of a timed line: its symbol and colour.
#[derive(Debug, Clone, Copy)]
pub(super) enum Mark {
    /// The client sent its request.
    Send,
    /// The response head arrived.
    Head,
    /// A keepalive the relay wrote.
    Keepalive,
    /// An upstream event other than a token.
    Event,
    /// Token text.
    Token,
    /// Usage the upstream reported.
    Usage,
    /// The stream ended as its dialect says it should.
    Done,
    /// Something went wrong.
    Error,
}

impl Mark {
    fn symbol(self) -> &'static str {
        match self {
            Mark::Send => "→",
            Mark::Head => "←",
            Mark::Keepalive => "♥",
            Mark::Event => "●",
            Mark::Token => "▸",
            Mark::Usage => "Σ",
            Mark::Done => "■",
            Mark::Error => "✗",
        }
    }

    /// SGR colour code.
    fn colour(self) -> &'static str {
        match self {
            Mark::Send | Mark::Head => "36",
            Mark::Keepalive => "35",
            Mark::Event => "34",
            Mark::Token => "1",
            Mark::Usage | Mark::Done => "32",
            Mark::Error => "31",
        }
    }
}

/// Terminal output with a clock for time offsets.
#[derive(Debug, Clone)]
pub(super) struct Output {
    colour: bool,
    start: Instant,
    /// A token line is open (tokens go on the same line until another mark).
    inline: bool,
}

impl Output {
    pub(super) fn stdout() -> Self {
        let colour = std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            && std::env::var_os("TERM").is_none_or(|t| t != "dumb");
        Self {
            colour,
            start: Instant::now(),
            inline: false,
        }
    }

    /// Time offsets count from now on.
    pub(super) fn restart_clock(&mut self) {
        self.start = Instant::now();
    }

    /// `text` in SGR style `code` when colours are on.
    pub(super) fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub(super) fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    /// A plain line.
    pub(super) fn line(&mut self, text: &str) {
        self.close_inline();
        write_out(&format!("{text}\n"));
    }

    /// A section heading with a rule below it.
    pub(super) fn heading(&mut self, text: &str) {
        self.close_inline();
        let rule = "─".repeat(text.chars().count().max(8));
        let heading = self.paint("1", text);
        write_out(&format!("\n{heading}\n{rule}\n"));
    }

    /// A timed line: `  +1.00s  ♥ text`.
    pub(super) fn mark(&mut self, mark: Mark, text: &str) {
        self.close_inline();
        let prefix = self.prefix(mark);
        write_out(&format!("{prefix}{text}\n"));
    }

    /// Token text, on the open token line or a new one.
    pub(super) fn token(&mut self, text: &str) {
        let mut s = String::new();
        if !self.inline {
            s.push_str(&self.prefix(Mark::Token));
            self.inline = true;
        }
        s.push_str(&self.paint(Mark::Token.colour(), text));
        write_out(&s);
    }

    fn prefix(&self, mark: Mark) -> String {
        let secs = self.start.elapsed().as_secs_f64();
        let offset = self.dim(&format!("{:>8}", format!("+{secs:.2}s")));
        let symbol = self.paint(mark.colour(), mark.symbol());
        format!("{offset}  {symbol} ")
    }

    fn close_inline(&mut self) {
        if self.inline {
            self.inline = false;
            write_out("\n");
        }
    }
}

fn write_out(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes()).and_then(|()| out.flush());
}

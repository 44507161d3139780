//! The console protocol between the in-guest agent and the host.
//!
//! Every marker is one line `::nestlab:<nonce>:<body>::`, where the nonce is
//! the random hex string given to the guest as `nestlab.nonce=` (so output of
//! an earlier boot, or any text a command prints, cannot pass for a marker).
//! [`Marker`] is the grammar: the Rust reader ([`console::ConsoleReader`])
//! parses lines with [`Marker::parse`], and the agent's sh `mark` function
//! is generated from [`MARKER_PREFIX`] and [`MARKER_SUFFIX`] and tested
//! against [`Marker::parse`] (see the agent's tests).
//!
//! | body                      | meaning                                              |
//! |---------------------------|------------------------------------------------------|
//! | `init:<uptime>`           | the agent started (guest uptime in seconds)          |
//! | `error:<step>:<detail>`   | a step failed (`insmod`, `sriov`, `cpus`, `nested`); the agent goes on |
//! | `begin:<file>`            | the output of the capture `<file>` follows           |
//! | `begin-gz:<file>`         | the same, as `gzip -c \| base64` lines               |
//! | `end:<file>:<exit code>`  | that output is complete                              |
//! | `nested:<count>`          | the nested step starts with `<count>` assigned devices; its files follow |
//! | `alive`                   | a heartbeat while a long, quiet step runs (the nested step), so a stuck virtual host shows as silence |
//! | `done:<uptime>`           | every capture was printed                            |
//! | `shell`                   | (shell mode) an interactive shell now owns the console |
//!
//! A marker normally starts a line; when a command's output does not end in
//! a newline the marker follows it on the same line, and the reader keeps the
//! text before the marker as the file's last, unterminated line.

pub mod console;

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;

pub use console::{ConsoleError, ConsoleEvent, ConsoleReader};

/// What every marker line starts with, before the nonce.
pub const MARKER_PREFIX: &str = "::nestlab:";
/// What every marker line ends with.
pub const MARKER_SUFFIX: &str = "::";

/// A nonce that is not 1 to 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nonce '{0}': must be 1 to 64 hex digits")]
pub struct BadNonce(pub String);

/// The random token that makes markers unforgeable: 1 to 64 lowercase hex
/// digits, passed to the guest as `nestlab.nonce=`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nonce(String);

impl Nonce {
    /// A fresh 64-bit nonce (16 hex digits) from the process's random
    /// hashing keys, the clock and the process id.
    pub fn generate() -> Nonce {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(d.as_nanos());
        }
        h.write_u32(std::process::id());
        Nonce(format!("{:016x}", h.finish()))
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Nonce {
    type Err = BadNonce;
    /// Reads 1 to 64 hex digits (either case; kept lowercase).
    fn from_str(s: &str) -> Result<Self, BadNonce> {
        if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadNonce(s.to_string()));
        }
        Ok(Nonce(s.to_ascii_lowercase()))
    }
}

/// One marker of the protocol (the body between the nonce and
/// [`MARKER_SUFFIX`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// `init:<uptime>`: the agent started.
    Init(Option<std::time::Duration>),
    /// `error:<step>:<detail>`: a step failed; the agent went on.
    Error {
        /// `insmod`, `sriov`, `cpus`, `nested`, ...
        step: String,
        /// What failed, with the command's own message.
        detail: String,
    },
    /// `begin:<file>`: a capture's output follows as it is.
    Begin(String),
    /// `begin-gz:<file>`: a capture's output follows as `gzip | base64`.
    BeginGz(String),
    /// `end:<file>:<exit code>`.
    End {
        /// The capture file.
        file: String,
        /// Its command's exit code, when it is a number.
        code: Option<i32>,
    },
    /// `nested:<count>`: the nested step starts.
    Nested(u32),
    /// `alive`: a heartbeat.
    Alive,
    /// `done:<uptime>`: every capture was printed.
    Done(Option<std::time::Duration>),
    /// `shell`: an interactive shell owns the console now.
    Shell,
}

fn uptime(s: &str) -> Option<std::time::Duration> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v < 1e9)
        .map(std::time::Duration::from_secs_f64)
}

impl Marker {
    /// The marker's body, as the agent prints it after the nonce.
    pub fn body(&self) -> String {
        let secs = |d: &Option<std::time::Duration>| {
            d.map(|d| format!("{:.2}", d.as_secs_f64()))
                .unwrap_or_default()
        };
        match self {
            Marker::Init(d) => format!("init:{}", secs(d)),
            Marker::Error { step, detail } => format!("error:{step}:{detail}"),
            Marker::Begin(f) => format!("begin:{f}"),
            Marker::BeginGz(f) => format!("begin-gz:{f}"),
            Marker::End { file, code } => format!(
                "end:{file}:{}",
                code.map(|c| c.to_string()).unwrap_or_default()
            ),
            Marker::Nested(n) => format!("nested:{n}"),
            Marker::Alive => "alive".into(),
            Marker::Done(d) => format!("done:{}", secs(d)),
            Marker::Shell => "shell".into(),
        }
    }

    /// The whole marker line (without its newline) for `nonce`.
    pub fn line(&self, nonce: &Nonce) -> String {
        format!("{MARKER_PREFIX}{nonce}:{}{MARKER_SUFFIX}", self.body())
    }

    /// Reads a marker body (what stands between `::nestlab:<nonce>:` and
    /// the closing `::`). `None` for a body that is not a marker.
    pub fn parse(body: &str) -> Option<Marker> {
        let (kind, rest) = match body.split_once(':') {
            Some((k, r)) => (k, Some(r)),
            None => (body, None),
        };
        Some(match (kind, rest) {
            ("init", Some(r)) => Marker::Init(uptime(r)),
            ("done", Some(r)) => Marker::Done(uptime(r)),
            ("init", None) => Marker::Init(None),
            ("done", None) => Marker::Done(None),
            ("alive", None) => Marker::Alive,
            ("shell", None) => Marker::Shell,
            ("error", Some(r)) => {
                let (step, detail) = r.split_once(':').unwrap_or((r, ""));
                Marker::Error {
                    step: step.to_string(),
                    detail: detail.to_string(),
                }
            }
            ("begin", Some(f)) => Marker::Begin(f.to_string()),
            ("begin-gz", Some(f)) => Marker::BeginGz(f.to_string()),
            ("end", Some(r)) => {
                let (file, code) = match r.rsplit_once(':') {
                    Some((f, c)) => (f, c.trim().parse().ok()),
                    None => (r, None),
                };
                Marker::End {
                    file: file.to_string(),
                    code,
                }
            }
            ("nested", Some(n)) => Marker::Nested(n.trim().parse().ok()?),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_parse_and_generate() {
        assert_eq!(
            "ABC123".parse::<Nonce>().map(|n| n.to_string()).ok(),
            Some("abc123".into())
        );
        assert!(matches!("".parse::<Nonce>(), Err(BadNonce(_))));
        assert!(matches!("12:3".parse::<Nonce>(), Err(BadNonce(_))));
        assert!(matches!("g".parse::<Nonce>(), Err(BadNonce(_))));
        let a = Nonce::generate();
        let b = Nonce::generate();
        assert_eq!(a.as_str().len(), 16);
        assert_ne!(a, b);
        assert!(a.as_str().parse::<Nonce>().is_ok());
    }

    #[test]
    fn markers_round_trip() {
        use std::time::Duration;
        for m in [
            Marker::Init(Some(Duration::from_millis(1250))),
            Marker::Error {
                step: "insmod".into(),
                detail: "kvm_intel: can't insert: No such device".into(),
            },
            Marker::Begin("lspci.txt".into()),
            Marker::BeginGz("dmesg.txt".into()),
            Marker::End {
                file: "kvm.txt".into(),
                code: Some(1),
            },
            Marker::Nested(2),
            Marker::Alive,
            Marker::Done(Some(Duration::from_millis(3420))),
            Marker::Shell,
        ] {
            assert_eq!(Marker::parse(&m.body()), Some(m.clone()), "{}", m.body());
        }
        assert_eq!(Marker::parse("bogus"), None);
        assert_eq!(Marker::parse("nested:x"), None);
    }
}

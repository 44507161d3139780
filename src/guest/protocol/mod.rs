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
//! | `gate`                    | the captures are printed; the agent waits for the host's word (in the run folder) before the workloads |
//!
//! A marker normally starts a line; when a command's output does not end in
//! a newline the marker follows it on the same line, and the reader keeps the
//! text before the marker as the file's last, unterminated line.

pub mod console;

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::time::Duration;

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

/// One marker of the protocol: the text between `::nestlab:<nonce>:` and
/// the closing [`MARKER_SUFFIX`]. [`Marker::parse`] is the only reader of
/// the grammar and [`Marker::line`] its only writer on the Rust side; the
/// agent's sh functions are tested against both.
#[derive(Debug, Clone, PartialEq)]
pub enum Marker<'a> {
    /// `init:<uptime>`: the agent started.
    Init(Option<Duration>),
    /// `error:<step>:<detail>`: a step failed; the agent went on.
    Error {
        /// `insmod`, `sriov`, `cpus`, `nested`, ... (letters, digits, `_`, `-`).
        step: &'a str,
        /// What failed, with the command's own message.
        detail: &'a str,
    },
    /// `begin:<file>`: a capture's output follows as it is.
    Begin(&'a str),
    /// `begin-gz:<file>`: a capture's output follows as `gzip | base64`.
    BeginGz(&'a str),
    /// `end:<file>:<exit code>`.
    End {
        /// The capture file.
        file: &'a str,
        /// Its command's exit code.
        code: i32,
    },
    /// `nested:<count>`: the nested step starts.
    Nested(u32),
    /// `alive`: a heartbeat.
    Alive,
    /// `done:<uptime>`: every capture was printed.
    Done(Option<Duration>),
    /// `shell`: an interactive shell owns the console now.
    Shell,
    /// `gate`: the topology captures are printed; the agent waits for the
    /// host's word before it runs the workloads.
    Gate,
}

fn parse_uptime(s: &str) -> Option<Duration> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
}

impl<'a> Marker<'a> {
    /// Reads the text that follows `::nestlab:<nonce>:` on a line (the
    /// closing `::` included; anything after it is ignored). `None` when it
    /// is not a marker of the grammar: an unknown kind, a file name that is
    /// not a plain name ([`crate::capture::is_valid_file_name`]), an exit
    /// code or count that is not a number, a step with other characters.
    pub fn parse(rest: &'a str) -> Option<Marker<'a>> {
        if let Some(rest) = rest.strip_prefix("error:") {
            let end = rest.rfind(MARKER_SUFFIX)?;
            let (step, detail) = rest[..end].split_once(':')?;
            if step.is_empty()
                || !step
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return None;
            }
            return Some(Marker::Error {
                step,
                detail: detail.trim(),
            });
        }
        let inner = &rest[..rest.find(MARKER_SUFFIX)?];
        let (kind, arg) = inner.split_once(':').unwrap_or((inner, ""));
        let file_ok = crate::capture::is_valid_file_name;
        match kind {
            "init" => Some(Marker::Init(parse_uptime(arg))),
            "done" => Some(Marker::Done(parse_uptime(arg))),
            "shell" if arg.is_empty() => Some(Marker::Shell),
            "alive" if arg.is_empty() => Some(Marker::Alive),
            "gate" if arg.is_empty() => Some(Marker::Gate),
            "nested" => arg.parse().ok().map(Marker::Nested),
            "begin" if file_ok(arg) => Some(Marker::Begin(arg)),
            "begin-gz" if file_ok(arg) => Some(Marker::BeginGz(arg)),
            "end" => {
                let (file, code) = arg.rsplit_once(':')?;
                let code = code.parse().ok()?;
                file_ok(file).then_some(Marker::End { file, code })
            }
            _ => None,
        }
    }

    /// The marker's body as the agent prints it after the nonce.
    pub fn body(&self) -> String {
        let secs = |d: &Option<Duration>| {
            d.map(|d| format!("{:.2}", d.as_secs_f64()))
                .unwrap_or_default()
        };
        match self {
            Marker::Init(d) => format!("init:{}", secs(d)),
            Marker::Error { step, detail } => format!("error:{step}:{detail}"),
            Marker::Begin(f) => format!("begin:{f}"),
            Marker::BeginGz(f) => format!("begin-gz:{f}"),
            Marker::End { file, code } => format!("end:{file}:{code}"),
            Marker::Nested(n) => format!("nested:{n}"),
            Marker::Alive => "alive".into(),
            Marker::Done(d) => format!("done:{}", secs(d)),
            Marker::Shell => "shell".into(),
            Marker::Gate => "gate".into(),
        }
    }

    /// The whole marker line (without its newline) for `nonce`.
    pub fn line(&self, nonce: &Nonce) -> String {
        format!("{MARKER_PREFIX}{nonce}:{}{MARKER_SUFFIX}", self.body())
    }
}

/// The agent's sh functions that print markers, generated from
/// [`MARKER_PREFIX`] and [`MARKER_SUFFIX`]: `mark BODY` prints one marker,
/// `fail STEP DETAIL` an `error` marker (newlines in DETAIL become spaces).
/// They read the nonce from `$nonce`.
pub fn sh_functions() -> String {
    format!(
        "mark() {{ printf '{MARKER_PREFIX}%s:%s{MARKER_SUFFIX}\\n' \"$nonce\" \"$1\"; }}\n\
         fail() {{ printf '{MARKER_PREFIX}%s:error:%s:%s{MARKER_SUFFIX}\\n' \"$nonce\" \"$1\" \"$(printf '%s' \"$2\" | tr '\\r\\n' '  ')\"; }}\n"
    )
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
        let nonce: Nonce = "ab12".parse().unwrap();
        for m in [
            Marker::Init(Some(Duration::from_millis(1250))),
            Marker::Error {
                step: "insmod",
                detail: "kvm_intel: can't insert: No such device",
            },
            Marker::Begin("lspci.txt"),
            Marker::BeginGz("dmesg.txt"),
            Marker::End {
                file: "kvm.txt",
                code: 1,
            },
            Marker::Nested(2),
            Marker::Alive,
            Marker::Done(Some(Duration::from_millis(3420))),
            Marker::Shell,
            Marker::Gate,
        ] {
            let line = m.line(&nonce);
            let rest = line.strip_prefix("::nestlab:ab12:").unwrap();
            assert_eq!(Marker::parse(rest), Some(m.clone()), "{line}");
        }
    }

    #[test]
    fn the_grammar_is_strict() {
        for bad in [
            "bogus::",
            "nested:x::",
            "begin:../x::",
            "end:x.txt::",
            "end:x.txt:one::",
            "alive:x::",
            "error:in smod:x::",
            "error::x::",
            "init:1.0",
        ] {
            assert_eq!(Marker::parse(bad), None, "{bad}");
        }
        assert_eq!(Marker::parse("init::"), Some(Marker::Init(None)));
        assert_eq!(
            Marker::parse("end:x.txt:-1::junk"),
            Some(Marker::End {
                file: "x.txt",
                code: -1
            })
        );
        assert_eq!(
            Marker::parse("error:sriov:a::b::"),
            Some(Marker::Error {
                step: "sriov",
                detail: "a::b"
            })
        );
    }

    /// The agent's sh functions print what [`Marker::parse`] reads.
    #[test]
    fn sh_functions_speak_the_grammar() {
        let script = format!(
            "nonce=ab12\n{}mark init:1.50\nmark begin:lspci.txt\nmark end:lspci.txt:3\nmark alive\nfail insmod 'kvm: no\nsuch device'\nmark done:2.00\n",
            sh_functions()
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let parsed: Vec<Marker> = text
            .lines()
            .map(|l| Marker::parse(l.strip_prefix("::nestlab:ab12:").unwrap()).unwrap())
            .collect();
        assert_eq!(
            parsed,
            [
                Marker::Init(Some(Duration::from_millis(1500))),
                Marker::Begin("lspci.txt"),
                Marker::End {
                    file: "lspci.txt",
                    code: 3
                },
                Marker::Alive,
                Marker::Error {
                    step: "insmod",
                    detail: "kvm: no such device"
                },
                Marker::Done(Some(Duration::from_secs(2))),
            ]
        );
    }
}

//! The user's own work on the verified virtual host: workloads (commands
//! with their shares, timeout, environment and NUMA binding) and the host
//! folders shared into the guest.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::model::NodeId;

/// The default time a workload may take (30 minutes).
pub const DEFAULT_WORKLOAD_TIMEOUT_SECS: u32 = 30 * 60;
/// The longest timeout a workload may ask for (a day).
pub const MAX_WORKLOAD_TIMEOUT_SECS: u32 = 24 * 60 * 60;
/// Where the run folder is in the guest: nestlab's control files for the
/// workload step (`control/`, written by the host) and the artifacts
/// folder (`artifacts/`, written by the workloads).
pub const RUN_FOLDER_GUEST: &str = "/run/nestlab";
/// Where the artifacts folder is in the guest (`$NESTLAB_ARTIFACTS`).
pub const ARTIFACTS_GUEST_DIR: &str = "/run/nestlab/artifacts";
/// The name of the workload `nestlab run ... -- CMD` makes.
pub const CLI_WORKLOAD: &str = "command";

/// Read-only or writable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShareMode {
    /// The guest can read it (the default).
    Ro,
    /// The guest can write it.
    Rw,
}

impl fmt::Display for ShareMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShareMode::Ro => "ro",
            ShareMode::Rw => "rw",
        })
    }
}

/// A host folder shared into the guest, as the user wrote it:
/// `HOST[:GUEST][:ro|rw]` (GUEST defaults to HOST made absolute, the mode
/// to `ro`). The host path is resolved and checked by validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareArg {
    /// The host folder, as written.
    pub host: String,
    /// Where the guest mounts it, when given.
    pub guest: Option<String>,
    /// The mode.
    pub mode: ShareMode,
}

impl FromStr for ShareArg {
    type Err = String;
    /// Splits `HOST[:GUEST][:ro|rw]` from the right: a last field `ro` or
    /// `rw` is the mode; what is left is `HOST` or `HOST:GUEST`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("an empty share: use HOST[:GUEST][:ro|rw]".into());
        }
        let (rest, mode) = match s.rsplit_once(':') {
            Some((r, "ro")) => (r, ShareMode::Ro),
            Some((r, "rw")) => (r, ShareMode::Rw),
            _ => (s, ShareMode::Ro),
        };
        let (host, guest) = match rest.split_once(':') {
            Some((h, g)) => (h, Some(g)),
            None => (rest, None),
        };
        if host.is_empty() {
            return Err(format!(
                "'{s}': the host folder is empty (use HOST[:GUEST][:ro|rw])"
            ));
        }
        if guest.is_some_and(|g| g.is_empty() || g.contains(':')) {
            return Err(format!("'{s}': use HOST[:GUEST][:ro|rw]"));
        }
        Ok(ShareArg {
            host: host.to_string(),
            guest: guest.map(str::to_string),
            mode,
        })
    }
}

/// A validated share: an existing host directory, an absolute guest path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Share {
    /// The host directory (absolute, symlinks resolved).
    pub host: PathBuf,
    /// The absolute guest path it is mounted at.
    pub guest: String,
    /// Read-only or writable.
    pub mode: ShareMode,
}

/// How a workload's command is given.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// One string, run by `/bin/sh -c`.
    Shell(String),
    /// An argument vector, run as it is.
    Argv(Vec<String>),
}

impl Command {
    /// The command as one sh word list, each argument single-quoted (a
    /// shell string is passed to `sh -c` as one argument).
    pub fn to_sh(&self) -> String {
        match self {
            Command::Shell(s) => format!("/bin/sh -c {}", sh_quote(s)),
            Command::Argv(v) => v.iter().map(|a| sh_quote(a)).collect::<Vec<_>>().join(" "),
        }
    }
}

/// `'...'` with every `'` written as `'\''`: safe for any byte string
/// without NUL as one sh word.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A command to run in the virtual host once its topology is verified.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Workload {
    /// `[a-z0-9-]`, unique: its check is `workload.<name>`.
    pub name: String,
    /// What to run.
    pub command: Command,
    /// Host folders it needs.
    pub shares: Vec<Share>,
    /// Seconds it may take before it is killed (a failed check).
    pub timeout_secs: u32,
    /// Environment variables (on top of `NESTLAB_ARTIFACTS`).
    pub environment: BTreeMap<String, String>,
    /// `numactl --cpunodebind=N`.
    pub cpunodebind: Option<NodeId>,
    /// `numactl --membind=N`.
    pub membind: Option<NodeId>,
    /// Where it runs (default: the first share's guest path, else `/`).
    pub workdir: Option<String>,
}

/// Every folder shared into a guest of `guest` kind running `workloads`,
/// once each, in the order their devices are placed: the host's `/usr`
/// for the appliance's workloads, each workload's folders (the same host
/// folder at the same guest path and mode is one device), then the run
/// folder (control files and artifacts) when there is any workload.
pub fn shares_of(
    guest: crate::model::GuestKindId,
    workloads: &[Workload],
) -> Vec<(crate::model::ShareSource, String, ShareMode)> {
    use crate::model::ShareSource;
    let mut out: Vec<(ShareSource, String, ShareMode)> = Vec::new();
    if workloads.is_empty() {
        return out;
    }
    if guest == crate::model::GuestKindId::Appliance {
        out.push((ShareSource::HostUsr, "/usr".into(), ShareMode::Ro));
    }
    for w in workloads {
        for s in &w.shares {
            let item = (ShareSource::Folder(s.host.clone()), s.guest.clone(), s.mode);
            if !out.contains(&item) {
                out.push(item);
            }
        }
    }
    out.push((
        ShareSource::RunFolder,
        RUN_FOLDER_GUEST.to_string(),
        ShareMode::Rw,
    ));
    out
}

/// Guest paths a share may not take: the guest's own folders.
pub const RESERVED_GUEST_PATHS: &[&str] = &[
    "/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run",
    "/sbin", "/sys", "/tmp", "/usr", "/var", "/nestlab",
];

/// Guest paths under which no share may be mounted (kernel file systems
/// and nestlab's own run state).
pub const RESERVED_GUEST_TREES: &[&str] = &["/dev", "/proc", "/sys", "/run"];

/// Why a guest path cannot take a share, if it cannot.
pub fn guest_path_problem(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return Some(format!("'{path}' is not an absolute path"));
    }
    if path.contains("/../") || path.ends_with("/..") || path.contains("//") {
        return Some(format!("'{path}' is not a plain absolute path"));
    }
    if path
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || ",:'\"\\".contains(c))
    {
        return Some(format!(
            "'{path}' has a character a mount point cannot carry here (blanks, control characters, quotes, ',', ':', '\\')"
        ));
    }
    let trimmed = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    if RESERVED_GUEST_PATHS.contains(&trimmed) {
        return Some(format!("'{trimmed}' is one of the guest's own folders"));
    }
    for tree in RESERVED_GUEST_TREES {
        if trimmed.starts_with(&format!("{tree}/")) {
            return Some(format!("'{trimmed}' is inside the guest's {tree}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_syntax() {
        let s: ShareArg = "./src".parse().unwrap();
        assert_eq!(
            (s.host.as_str(), s.guest, s.mode),
            ("./src", None, ShareMode::Ro)
        );
        let s: ShareArg = "/data:/mnt/data:rw".parse().unwrap();
        assert_eq!(
            (s.host.as_str(), s.guest.as_deref(), s.mode),
            ("/data", Some("/mnt/data"), ShareMode::Rw)
        );
        let s: ShareArg = "/data:/x".parse().unwrap();
        assert_eq!((s.guest.as_deref(), s.mode), (Some("/x"), ShareMode::Ro));
        let s: ShareArg = "out:rw".parse().unwrap();
        assert_eq!(
            (s.host.as_str(), s.guest, s.mode),
            ("out", None, ShareMode::Rw)
        );
        for bad in ["", ":/x", "/a:/b:/c", "a::rw", ":rw"] {
            assert!(bad.parse::<ShareArg>().is_err(), "{bad}");
        }
    }

    #[test]
    fn guest_paths() {
        assert_eq!(guest_path_problem("/work/src"), None);
        assert_eq!(guest_path_problem("/usr/local/src"), None);
        for bad in [
            "/",
            "/usr",
            "/etc/",
            "/proc/x",
            "/run/nestlab",
            "rel",
            "/a/../b",
            "/a,b",
            "/tmp",
        ] {
            assert!(guest_path_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn commands_quote_safely() {
        assert_eq!(
            Command::Argv(vec!["echo".into(), "it's $HOME".into()]).to_sh(),
            "'echo' 'it'\\''s $HOME'"
        );
        assert_eq!(
            Command::Shell("grep x /proc/self/status".into()).to_sh(),
            "/bin/sh -c 'grep x /proc/self/status'"
        );
    }
}

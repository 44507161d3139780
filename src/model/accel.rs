//! How the guest's CPUs are executed, and how a run chooses.

use std::fmt;
use std::str::FromStr;

/// How the guest's CPUs are executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation: `type='kvm'`, `host-passthrough`.
    Kvm,
    /// Software emulation: `type='qemu'`, `mode='maximum'` (the guest still
    /// sees svm, so nested KVM works inside it).
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

impl FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            _ => Err(format!("unknown accelerator '{s}': use kvm or tcg")),
        }
    }
}

/// What the user asked for with `--accel`: a fixed accelerator, or `auto`
/// (decided from the host's facts, see [`crate::host::HostFacts::choose_accel`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AccelChoice {
    /// KVM when the host can run it, else TCG.
    #[default]
    Auto,
    /// This accelerator, whatever the host says.
    Fixed(Accel),
}

impl fmt::Display for AccelChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccelChoice::Auto => f.write_str("auto"),
            AccelChoice::Fixed(a) => a.fmt(f),
        }
    }
}

impl FromStr for AccelChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(AccelChoice::Auto),
            "kvm" => Ok(AccelChoice::Fixed(Accel::Kvm)),
            "tcg" => Ok(AccelChoice::Fixed(Accel::Tcg)),
            _ => Err(format!("unknown accelerator '{s}': use auto, kvm or tcg")),
        }
    }
}

//! What the host environment says about where kernels and the cache are:
//! nestlab's variables, `$XDG_CACHE_HOME` and `$HOME`, whether we are root,
//! `uname -r`, `/boot` and `/lib/modules`. Read once per call
//! ([`HostEnv::current`]) and made up in tests, so the choices of
//! [`super::kernel`] and [`super::cache`] are tested without touching the
//! host.

use std::fs;
use std::path::PathBuf;

/// What the host environment says, captured once (and made up in tests).
#[derive(Debug, Clone, Default)]
pub(super) struct HostEnv {
    pub(super) kernel: Option<PathBuf>,
    pub(super) modules: Option<PathBuf>,
    pub(super) cache: Option<PathBuf>,
    pub(super) xdg_cache: Option<PathBuf>,
    pub(super) home: Option<PathBuf>,
    pub(super) root: bool,
    /// `uname -r`.
    pub(super) release: Option<String>,
    pub(super) boot_dir: PathBuf,
    pub(super) lib_modules: PathBuf,
}

impl HostEnv {
    pub(super) fn current() -> HostEnv {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let euid = fs::read_to_string("/proc/self/status").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1))
                .and_then(|id| id.parse::<u32>().ok())
        });
        HostEnv {
            kernel: var("NESTLAB_KERNEL"),
            modules: var("NESTLAB_MODULES"),
            cache: var("NESTLAB_CACHE_DIR"),
            xdg_cache: var("XDG_CACHE_HOME").filter(|p| p.is_absolute()),
            home: var("HOME"),
            root: euid == Some(0),
            release: fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_string()),
            boot_dir: PathBuf::from("/boot"),
            lib_modules: PathBuf::from("/lib/modules"),
        }
    }
}

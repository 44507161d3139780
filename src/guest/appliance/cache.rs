//! The appliance cache: where it is ([`cache_dir`]); how an entry
//! (`<cache>/appliance/<hash>`) gets there ([`materialize`]: built in a
//! temporary directory and renamed into place, so a crash never leaves half
//! an entry and two concurrent builds do not disturb each other); its modes
//! (directories 0755, files 0644, so libvirt's qemu user can read them);
//! and removing old entries ([`prune`]) and crashed builds' litter
//! ([`sweep_stale`]).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::host_env::HostEnv;
use super::{write_err, ApplianceError};

impl HostEnv {
    pub(super) fn cache_dir(&self) -> Result<PathBuf, ApplianceError> {
        if let Some(c) = &self.cache {
            Ok(c.clone())
        } else if self.root {
            Ok(PathBuf::from("/var/cache/nestlab"))
        } else if let Some(x) = &self.xdg_cache {
            Ok(x.join("nestlab"))
        } else if let Some(h) = &self.home {
            Ok(h.join(".cache").join("nestlab"))
        } else {
            Err(ApplianceError::NoCacheDir)
        }
    }
}

/// The cache directory: `$NESTLAB_CACHE_DIR`, else `/var/cache/nestlab`
/// for root, else `$XDG_CACHE_HOME/nestlab`, else `~/.cache/nestlab`.
///
/// # Errors
/// [`ApplianceError::NoCacheDir`] when none of these can be told.
pub fn cache_dir() -> Result<PathBuf, ApplianceError> {
    HostEnv::current().cache_dir()
}

pub(super) fn set_mode(path: &Path, mode: u32) -> Result<(), ApplianceError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(write_err(path))
}

/// Creates `dir` and any missing parents, each 0755.
pub(super) fn ensure_dir(dir: &Path) -> Result<(), ApplianceError> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .collect();
    for d in missing.into_iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => set_mode(d, 0o755)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(ApplianceError::Write {
                    path: d.to_path_buf(),
                    source: e,
                })
            }
        }
    }
    Ok(())
}

/// Makes sure the cache entry `<appliances>/<hash>` is `complete`, filling
/// a temporary directory with `fill` and renaming it into place when it is
/// not. Returns whether it was there already.
pub(super) fn materialize(
    appliances: &Path,
    hash: &str,
    complete: &dyn Fn(&Path) -> bool,
    fill: impl FnOnce(&Path) -> Result<(), ApplianceError>,
) -> Result<bool, ApplianceError> {
    let dir = appliances.join(hash);
    if complete(&dir) {
        // The entry's mtime says when it was last used (see `prune`).
        let _ = fs::File::open(&dir).and_then(|f| f.set_modified(SystemTime::now()));
        return Ok(true);
    }
    ensure_dir(appliances)?;
    sweep_stale(appliances);
    let tmp = appliances.join(format!(
        ".tmp-{}-{}-{}",
        &hash[..16],
        std::process::id(),
        crate::guest::protocol::Nonce::generate()
    ));
    if let Err(e) = fill(&tmp) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if let Err(e) = fs::rename(&tmp, &dir) {
        let _ = fs::remove_dir_all(&tmp);
        // Another build of the same inputs got there first: use its entry.
        if !complete(&dir) {
            return Err(ApplianceError::Write {
                path: dir,
                source: e,
            });
        }
    }
    Ok(false)
}

/// Removes temporary build directories older than an hour (left by a
/// crashed build); errors are ignored, they are only litter.
fn sweep_stale(appliances: &Path) {
    let Ok(rd) = fs::read_dir(appliances) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let stale = e.file_name().to_string_lossy().starts_with(".tmp-")
            && e.metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
        if stale {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Entries of the appliance cache unused for less than this are never
/// pruned: another nestlab (another version, another kernel) may be
/// booting one of them right now.
pub const PRUNE_MIN_AGE: Duration = Duration::from_secs(3600);

/// One cache entry [`prune`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// The entry's directory.
    pub dir: PathBuf,
    /// Bytes it took.
    pub bytes: u64,
}

fn tree_bytes(p: &Path) -> u64 {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::read_dir(p)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| tree_bytes(&e.path()))
                    .sum()
            })
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// Removes the appliance cache entries (`<cache>/appliance/<hash>`) other
/// than `keep` whose last use is older than `min_age` (an entry's mtime
/// is set each time a run finds it in the cache). Each nestlab version and
/// each kernel makes new entries of about 20 to 90 MB, which nothing else
/// removes.
///
/// # Errors
/// [`ApplianceError::Write`] when an old entry cannot be removed; the ones
/// removed before stay removed.
pub fn prune(
    cache: &Path,
    keep: &[&Path],
    min_age: Duration,
) -> Result<Vec<Pruned>, ApplianceError> {
    let appliances = cache.join("appliance");
    let Ok(rd) = fs::read_dir(&appliances) else {
        return Ok(Vec::new());
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    let mut removed = Vec::new();
    for e in entries {
        let dir = e.path();
        let name = e.file_name();
        // Temporary build directories are sweep_stale's.
        if name.to_string_lossy().starts_with('.') || keep.iter().any(|k| *k == dir) {
            continue;
        }
        let old = e
            .metadata()
            .ok()
            .filter(|m| m.is_dir())
            .and_then(|m| m.modified().ok())
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age >= min_age);
        if !old {
            continue;
        }
        let bytes = tree_bytes(&dir);
        fs::remove_dir_all(&dir).map_err(write_err(&dir))?;
        removed.push(Pruned { dir, bytes });
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_order() {
        let mut env = HostEnv {
            home: Some("/home/u".into()),
            ..HostEnv::default()
        };
        assert_eq!(
            env.cache_dir().unwrap(),
            Path::new("/home/u/.cache/nestlab")
        );
        env.xdg_cache = Some("/x".into());
        assert_eq!(env.cache_dir().unwrap(), Path::new("/x/nestlab"));
        env.root = true;
        assert_eq!(env.cache_dir().unwrap(), Path::new("/var/cache/nestlab"));
        env.cache = Some("/c".into());
        assert_eq!(env.cache_dir().unwrap(), Path::new("/c"));
        assert!(matches!(
            HostEnv::default().cache_dir(),
            Err(ApplianceError::NoCacheDir)
        ));
    }

    #[test]
    fn prune_keeps_the_current_and_recently_used_entries() {
        let cache = tempfile::tempdir().unwrap();
        let a = cache.path().join("appliance");
        for e in ["current", "old", "recent", ".tmp-building"] {
            fs::create_dir_all(a.join(e)).unwrap();
            fs::write(a.join(e).join("initrd.img"), vec![0u8; 1000]).unwrap();
        }
        let hour_ago = SystemTime::now() - Duration::from_secs(7200);
        for e in ["current", "old", ".tmp-building"] {
            fs::File::open(a.join(e))
                .unwrap()
                .set_modified(hour_ago)
                .unwrap();
        }
        let current = a.join("current");
        let removed = prune(cache.path(), &[&current], PRUNE_MIN_AGE).unwrap();
        assert_eq!(
            removed,
            vec![Pruned {
                dir: a.join("old"),
                bytes: 1000
            }]
        );
        assert!(current.is_dir() && a.join("recent").is_dir() && a.join(".tmp-building").is_dir());
        // Nothing cached at all: nothing to do.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(prune(empty.path(), &[], PRUNE_MIN_AGE).unwrap(), vec![]);
    }
}

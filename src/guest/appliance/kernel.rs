//! Which guest kernel an appliance is built from ([`locate_kernel`]): the
//! sources in order (`--kernel`, `$NESTLAB_KERNEL`, the host's own, the
//! newest one `./dev setup` fetched into the cache), the modules directory
//! of each, and the ordering of kernel releases that tells the newest.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use super::host_env::HostEnv;
use super::{ApplianceError, ApplianceSpec};

/// Where the kernel came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelOrigin {
    /// [`ApplianceSpec::kernel`] (`--kernel`).
    Explicit,
    /// `$NESTLAB_KERNEL`.
    Env,
    /// The host's own `/boot/vmlinuz-$(uname -r)`.
    Host,
    /// The kernel `./dev setup` fetched into `<cache>/kernel`.
    Cache,
}

impl fmt::Display for KernelOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KernelOrigin::Explicit => "--kernel",
            KernelOrigin::Env => "$NESTLAB_KERNEL",
            KernelOrigin::Host => "the host's /boot",
            KernelOrigin::Cache => "the nestlab cache",
        })
    }
}

/// A guest kernel and its modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestKernel {
    /// The kernel image.
    pub vmlinuz: PathBuf,
    /// Its modules directory (`.../lib/modules/<version>`).
    pub modules_dir: PathBuf,
    /// Kernel release (`6.1.0-56-amd64`).
    pub version: String,
    /// Where it was found.
    pub origin: KernelOrigin,
}

fn readable(path: &Path) -> bool {
    fs::File::open(path).is_ok_and(|f| f.metadata().is_ok_and(|m| m.is_file()))
}

pub(super) fn version_from_name(vmlinuz: &Path) -> Option<String> {
    let name = vmlinuz.file_name()?.to_str()?;
    let v = name
        .strip_prefix("vmlinuz-")
        .or_else(|| name.strip_prefix("vmlinux-"))?;
    (!v.is_empty()).then(|| v.to_string())
}

/// Orders kernel releases: digit runs as numbers, the rest as text.
fn version_key(v: &str) -> Vec<(u64, String)> {
    let mut key = Vec::new();
    let mut rest = v;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            key.push((rest[..digits].parse().unwrap_or(u64::MAX), String::new()));
            rest = &rest[digits..];
        } else {
            let text = rest.len() - rest.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
            key.push((0, rest[..text].to_string()));
            rest = &rest[text..];
        }
    }
    key
}

/// A kernel given by path: its modules directory is `modules` if given,
/// else `<kernel dir>/../lib/modules/<version>` (a `dpkg -x` tree), else
/// `/lib/modules/<version>`.
fn kernel_at(
    vmlinuz: &Path,
    modules: Option<&Path>,
    origin: KernelOrigin,
    env: &HostEnv,
) -> Result<GuestKernel, ApplianceError> {
    if !readable(vmlinuz) {
        return Err(ApplianceError::KernelMissing {
            path: vmlinuz.to_path_buf(),
            origin,
        });
    }
    let modules_dir = match modules {
        Some(m) => m.to_path_buf(),
        None => {
            let version = version_from_name(vmlinuz)
                .ok_or_else(|| ApplianceError::NoKernelVersion(vmlinuz.to_path_buf()))?;
            let beside = vmlinuz
                .parent()
                .and_then(Path::parent)
                .map(|root| root.join("lib/modules").join(&version));
            let candidates: Vec<PathBuf> = beside
                .into_iter()
                .chain([env.lib_modules.join(&version)])
                .collect();
            candidates
                .iter()
                .find(|c| c.is_dir())
                .cloned()
                .ok_or_else(|| ApplianceError::ModulesDirMissing {
                    path: candidates[0].clone(),
                    kernel: vmlinuz.to_path_buf(),
                })?
        }
    };
    if !modules_dir.is_dir() {
        return Err(ApplianceError::ModulesDirMissing {
            path: modules_dir,
            kernel: vmlinuz.to_path_buf(),
        });
    }
    let version = modules_dir
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .or_else(|| version_from_name(vmlinuz))
        .ok_or_else(|| ApplianceError::NoKernelVersion(vmlinuz.to_path_buf()))?;
    Ok(GuestKernel {
        vmlinuz: vmlinuz.to_path_buf(),
        modules_dir,
        version,
        origin,
    })
}

pub(super) fn locate(
    spec: &ApplianceSpec,
    env: &HostEnv,
    cache: &Path,
) -> Result<GuestKernel, ApplianceError> {
    let modules = spec.modules_dir.as_deref();
    if let Some(k) = &spec.kernel {
        return kernel_at(k, modules, KernelOrigin::Explicit, env);
    }
    if let Some(k) = &env.kernel {
        return kernel_at(
            k,
            modules.or(env.modules.as_deref()),
            KernelOrigin::Env,
            env,
        );
    }
    let mut tried = Vec::new();
    match &env.release {
        Some(release) => {
            let vmlinuz = env.boot_dir.join(format!("vmlinuz-{release}"));
            let moddir = modules
                .map(Path::to_path_buf)
                .unwrap_or_else(|| env.lib_modules.join(release));
            if readable(&vmlinuz) && moddir.is_dir() {
                return kernel_at(&vmlinuz, Some(&moddir), KernelOrigin::Host, env);
            }
            tried.push(format!("{} with {}", vmlinuz.display(), moddir.display()));
        }
        None => tried.push("the host kernel (uname -r unknown)".to_string()),
    }
    let boot = cache.join("kernel/boot");
    let newest = fs::read_dir(&boot)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .filter_map(|p| version_from_name(&p).map(|v| (p, v)))
        .max_by_key(|(_, v)| version_key(v));
    if let Some((vmlinuz, version)) = newest {
        let moddir = modules
            .map(Path::to_path_buf)
            .unwrap_or_else(|| cache.join("kernel/lib/modules").join(&version));
        return kernel_at(&vmlinuz, Some(&moddir), KernelOrigin::Cache, env);
    }
    tried.push(format!("{}/vmlinuz-*", boot.display()));
    Err(ApplianceError::NoKernel {
        tried,
        cache: cache.to_path_buf(),
    })
}

/// Finds the kernel an appliance would be built from, in this order:
/// [`ApplianceSpec::kernel`]; `$NESTLAB_KERNEL` (modules from
/// `$NESTLAB_MODULES`); the host's `/boot/vmlinuz-$(uname -r)` with
/// `/lib/modules/$(uname -r)` when readable; the newest
/// `<cache>/kernel/boot/vmlinuz-*` with `<cache>/kernel/lib/modules/<version>`.
/// [`ApplianceSpec::modules_dir`] overrides the modules directory of each.
///
/// # Errors
/// [`ApplianceError::KernelMissing`] when an explicit or `$NESTLAB_KERNEL`
/// kernel is not there, [`ApplianceError::ModulesDirMissing`],
/// [`ApplianceError::NoKernel`] when there is none at all.
pub fn locate_kernel(spec: &ApplianceSpec) -> Result<GuestKernel, ApplianceError> {
    let env = HostEnv::current();
    let cache = match &spec.cache_dir {
        Some(c) => c.clone(),
        None => env.cache_dir()?,
    };
    locate(spec, &env, &cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "nestlab-appl-{tag}-{}-{}",
            std::process::id(),
            crate::guest::protocol::Nonce::generate()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// A fake `dpkg -x` kernel tree: root/boot/vmlinuz-<v>, root/lib/modules/<v>.
    fn fake_kernel(root: &Path, version: &str) -> PathBuf {
        fs::create_dir_all(root.join("boot")).unwrap();
        fs::create_dir_all(root.join("lib/modules").join(version)).unwrap();
        let k = root.join("boot").join(format!("vmlinuz-{version}"));
        fs::write(&k, b"kernel").unwrap();
        k
    }

    fn env_for(dir: &Path) -> HostEnv {
        HostEnv {
            release: Some("9.9.9-host".into()),
            boot_dir: dir.join("hostboot"),
            lib_modules: dir.join("hostlib"),
            ..HostEnv::default()
        }
    }

    #[test]
    fn kernel_source_order() {
        let d = tmp("locate");
        let cache = d.join("cache");
        let mut env = env_for(&d);
        let spec = ApplianceSpec::default();
        // Nothing at all.
        let e = locate(&spec, &env, &cache).unwrap_err();
        assert!(matches!(e, ApplianceError::NoKernel { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("vmlinuz-9.9.9-host") && msg.contains("./dev setup"),
            "{msg}"
        );
        // The cache: newest version wins.
        fake_kernel(&cache.join("kernel"), "6.1.0-9-amd64");
        fake_kernel(&cache.join("kernel"), "6.1.0-10-amd64");
        let k = locate(&spec, &env, &cache).unwrap();
        assert_eq!(
            (k.origin, k.version.as_str()),
            (KernelOrigin::Cache, "6.1.0-10-amd64")
        );
        assert_eq!(
            k.modules_dir,
            cache.join("kernel/lib/modules/6.1.0-10-amd64")
        );
        // The host's kernel beats the cache.
        fs::create_dir_all(env.lib_modules.join("9.9.9-host")).unwrap();
        fs::create_dir_all(&env.boot_dir).unwrap();
        fs::write(env.boot_dir.join("vmlinuz-9.9.9-host"), b"k").unwrap();
        let k = locate(&spec, &env, &cache).unwrap();
        assert_eq!(
            (k.origin, k.version.as_str()),
            (KernelOrigin::Host, "9.9.9-host")
        );
        // $NESTLAB_KERNEL beats the host; its modules are derived from the tree.
        let envk = fake_kernel(&d.join("envtree"), "5.10.0-1-amd64");
        env.kernel = Some(envk.clone());
        let k = locate(&spec, &env, &cache).unwrap();
        assert_eq!(
            (k.origin, k.modules_dir.clone()),
            (
                KernelOrigin::Env,
                d.join("envtree/lib/modules/5.10.0-1-amd64")
            )
        );
        // An explicit kernel beats everything; a missing one is an error, not a fallback.
        let spec2 = ApplianceSpec {
            kernel: Some(d.join("nope/vmlinuz-1")),
            ..ApplianceSpec::default()
        };
        let e = locate(&spec2, &env, &cache).unwrap_err();
        assert!(
            matches!(
                &e,
                ApplianceError::KernelMissing {
                    origin: KernelOrigin::Explicit,
                    ..
                }
            ),
            "{e}"
        );
        // A kernel without a version in its name needs --modules.
        fs::write(d.join("bzImage"), b"k").unwrap();
        let spec3 = ApplianceSpec {
            kernel: Some(d.join("bzImage")),
            ..ApplianceSpec::default()
        };
        assert!(matches!(
            locate(&spec3, &env, &cache),
            Err(ApplianceError::NoKernelVersion(_))
        ));
        let spec4 = ApplianceSpec {
            modules_dir: Some(env.lib_modules.join("9.9.9-host")),
            ..spec3
        };
        let k = locate(&spec4, &env, &cache).unwrap();
        assert_eq!(
            (k.origin, k.version.as_str()),
            (KernelOrigin::Explicit, "9.9.9-host")
        );
        // A missing modules directory says which.
        let k5 = fake_kernel(&d.join("t5"), "4.0");
        fs::remove_dir_all(d.join("t5/lib")).unwrap();
        let spec5 = ApplianceSpec {
            kernel: Some(k5),
            ..ApplianceSpec::default()
        };
        let e = locate(&spec5, &env, &cache).unwrap_err();
        assert!(matches!(e, ApplianceError::ModulesDirMissing { .. }));
        assert!(e.to_string().contains("t5/lib/modules/4.0"), "{e}");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn version_ordering() {
        let mut v = vec![
            "6.1.0-10-amd64",
            "6.1.0-9-amd64",
            "6.10.0-1-amd64",
            "6.2.0-1-amd64",
        ];
        v.sort_by_key(|s| version_key(s));
        assert_eq!(
            v,
            [
                "6.1.0-9-amd64",
                "6.1.0-10-amd64",
                "6.2.0-1-amd64",
                "6.10.0-1-amd64"
            ]
        );
    }
}

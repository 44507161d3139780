//! Building and caching the Debian image.
//!
//! `<cache>/debian/<hash>/` holds `root.img` (a raw ext4 image, sparse),
//! `inputs.txt` (what the hash covers), `packages.txt` (what the build
//! resolved: `dpkg-query -W` of the image) and `build.txt` (when, how long).
//! The hash covers the recipe ([`super::recipe::inputs`]): the kernel
//! version, the package list, the excludes, the customize hook, the
//! mmdebstrap version. The live Debian mirror moves under a fixed key
//! (security updates): the key means "these inputs, built then", and
//! `packages.txt` records what that was.
//!
//! A build runs in `<cache>/debian/.build-<hash>-<pid>/` and is renamed into
//! place when whole, under an exclusive lock (`<hash>.lock`), so concurrent
//! runs wait for one build and never see half an image. Runs only read the
//! image: each boots it through a transient overlay libvirt creates and
//! deletes (`<disk><transient/>`).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::recipe;

/// Why the image could not be built or found.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A tool the build needs is missing.
    #[error("{tool} is missing: {hint}")]
    Tool {
        /// The program.
        tool: String,
        /// What to do.
        hint: String,
    },
    /// A build step failed.
    #[error("{step} failed{}", if tail.is_empty() { String::new() } else { format!(":\n{tail}") })]
    Step {
        /// What was run.
        step: String,
        /// The last lines it printed.
        tail: String,
    },
    /// A file or folder of the cache.
    #[error("{path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Building needs root (mmdebstrap chroots into the new system).
    #[error("building the Debian image needs root (it is built once and cached: run `nestlab image` as root)")]
    NotRoot,
    /// The image has no kernel modules for the kernel nestlab boots.
    #[error("the image has no /lib/modules/{0}: the package linux-image-{0} did not install")]
    NoModules(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A built image in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianImage {
    /// The cache entry.
    pub dir: PathBuf,
    /// The raw ext4 image.
    pub root: PathBuf,
    /// Its cache key.
    pub hash: String,
    /// The kernel version whose modules it carries.
    pub kernel_version: String,
    /// Whether it was in the cache already.
    pub cached: bool,
    /// Its size on disk (allocated bytes).
    pub allocated: u64,
}

/// What the build reports as it goes (mmdebstrap's `I:` lines, steps).
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn need(tool: &str, package: &str) -> Result<PathBuf, ImageError> {
    which(tool).ok_or_else(|| ImageError::Tool {
        tool: tool.to_string(),
        hint: format!("apt-get install {package} (./dev setup does)"),
    })
}

fn mmdebstrap_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The cache key of the image for `kernel_version`.
pub fn key(kernel_version: &str, mmdebstrap: &str) -> (String, String) {
    let inputs = recipe::inputs(kernel_version, mmdebstrap);
    let hash = format!("{:x}", Sha256::digest(inputs.as_bytes()));
    (hash, inputs)
}

fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).map(|m| m.blocks() * 512).unwrap_or(0)
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The image for `kernel_version` in `cache` if it was built, without
/// building it or marking it used (what `nestlab doctor` reports).
///
/// # Errors
/// mmdebstrap is missing (its version is part of the image's key).
pub fn find(cache: &Path, kernel_version: &str) -> Result<Option<DebianImage>, ImageError> {
    let mmdebstrap = need("mmdebstrap", "mmdebstrap")?;
    let (hash, _) = key(kernel_version, &mmdebstrap_version(&mmdebstrap));
    let dir = cache.join("debian").join(&hash);
    let root = dir.join("root.img");
    Ok(root.is_file().then(|| DebianImage {
        allocated: allocated(&root),
        root,
        dir: dir.clone(),
        hash,
        kernel_version: kernel_version.to_string(),
        cached: true,
    }))
}

/// Finds the image for `kernel_version` in `cache` (`<cache>/debian`), or
/// builds it, telling `progress` what happens (minutes: mmdebstrap).
///
/// # Errors
/// A missing tool (mmdebstrap, mkfs.ext4, tar), a failed step with the end
/// of its output, not being root, a cache that cannot be written.
pub fn build(
    cache: &Path,
    kernel_version: &str,
    progress: Progress,
) -> Result<DebianImage, ImageError> {
    let mmdebstrap = need("mmdebstrap", "mmdebstrap")?;
    let (hash, inputs) = key(kernel_version, &mmdebstrap_version(&mmdebstrap));
    let base = cache.join("debian");
    let dir = base.join(&hash);
    let found = |cached| -> Result<DebianImage, ImageError> {
        let root = dir.join("root.img");
        let _ = touch(&dir.join("used"));
        Ok(DebianImage {
            allocated: allocated(&root),
            root,
            dir: dir.clone(),
            hash: hash.clone(),
            kernel_version: kernel_version.to_string(),
            cached,
        })
    };
    if dir.join("root.img").is_file() {
        return found(true);
    }
    if !is_root() {
        return Err(ImageError::NotRoot);
    }
    let mkfs = need("mkfs.ext4", "e2fsprogs")?;
    need("tar", "tar")?;
    need("cpio", "cpio")?;
    fs::create_dir_all(&base).map_err(io(&base))?;
    set_mode(&base, 0o755)?;
    let lock_path = base.join(format!("{hash}.lock"));
    let lock = fs::File::create(&lock_path).map_err(io(&lock_path))?;
    if fs4::FileExt::try_lock(&lock).is_err() {
        progress("another nestlab builds this image: waiting for it");
        fs4::FileExt::lock(&lock).map_err(io(&lock_path))?;
    }
    if dir.join("root.img").is_file() {
        return found(true);
    }
    let tmp = base.join(format!(".build-{hash}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let result = build_in(&tmp, &mmdebstrap, &mkfs, kernel_version, &inputs, progress);
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, &dir).map_err(io(&dir))?;
    drop(lock);
    let _ = fs::remove_file(&lock_path);
    found(false)
}

fn touch(path: &Path) -> std::io::Result<()> {
    fs::write(path, b"")
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io(path))
}

/// Runs `cmd`, sending each line it prints to `progress` (prefixed), and
/// keeping the last ones for the error.
fn run(step: &str, cmd: &mut Command, progress: Progress) -> Result<(), ImageError> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ImageError::Step {
            step: step.to_string(),
            tail: e.to_string(),
        })?;
    let mut tail: std::collections::VecDeque<String> = Default::default();
    let err = child.stderr.take();
    let out = child.stdout.take();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let mut readers = Vec::new();
    for r in [
        err.map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
        out.map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        }));
    }
    drop(tx);
    for line in rx {
        if line.starts_with("I: ") || line.starts_with("E: ") || line.starts_with("W: ") {
            progress(&format!("{step}: {}", line));
        }
        if tail.len() == 30 {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child.wait().map_err(|e| ImageError::Step {
        step: step.to_string(),
        tail: e.to_string(),
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(ImageError::Step {
            step: format!("{step} ({status})"),
            tail: tail.into_iter().collect::<Vec<_>>().join("\n"),
        })
    }
}

fn build_in(
    tmp: &Path,
    mmdebstrap: &Path,
    mkfs: &Path,
    kernel_version: &str,
    inputs: &str,
    progress: Progress,
) -> Result<(), ImageError> {
    let t0 = Instant::now();
    let hook = tmp.join("customize-hook.sh");
    fs::write(&hook, recipe::customize_hook()).map_err(io(&hook))?;
    set_mode(&hook, 0o755)?;
    let tar = tmp.join("root.tar");
    let mut include: Vec<String> = recipe::PACKAGES.iter().map(|p| p.to_string()).collect();
    include.push(format!("linux-image-{kernel_version}"));
    let mut cmd = Command::new(mmdebstrap);
    cmd.env("SOURCE_DATE_EPOCH", recipe::SOURCE_DATE_EPOCH)
        .arg(format!("--variant={}", recipe::VARIANT))
        .arg(format!("--include={}", include.join(",")));
    for e in recipe::DPKG_EXCLUDES {
        cmd.arg(format!("--dpkgopt=path-exclude={e}"));
    }
    cmd.arg("--dpkgopt=path-include=/usr/share/doc/*/copyright")
        .arg(format!("--customize-hook={}", hook.display()))
        .arg(recipe::SUITE)
        .arg(&tar);
    progress(&format!(
        "building the Debian image ({} + linux-image-{kernel_version}); this takes minutes",
        recipe::SUITE
    ));
    run("mmdebstrap", &mut cmd, progress)?;
    let t1 = Instant::now();
    let root = tmp.join("root");
    fs::create_dir_all(&root).map_err(io(&root))?;
    run(
        "tar",
        Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
            .arg(&tar)
            .arg("-C")
            .arg(&root),
        progress,
    )?;
    let _ = fs::remove_file(&tar);
    if !root.join("lib/modules").join(kernel_version).is_dir() {
        return Err(ImageError::NoModules(kernel_version.to_string()));
    }
    let packages = Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f", "${Package} ${Version}\\n"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    progress("making the ext4 image (mkfs.ext4 -d)");
    let img = tmp.join("root.img");
    run(
        "mkfs.ext4",
        Command::new(mkfs)
            .env("E2FSPROGS_FAKE_TIME", recipe::SOURCE_DATE_EPOCH)
            .args(["-q", "-F", "-L", "root", "-E", "root_owner=0:0", "-d"])
            .arg(&root)
            .arg(&img)
            .arg(recipe::IMAGE_SIZE),
        progress,
    )?;
    let t2 = Instant::now();
    fs::remove_dir_all(&root).map_err(io(&root))?;
    let _ = fs::remove_file(&hook);
    set_mode(&img, 0o644)?;
    set_mode(tmp, 0o755)?;
    let write = |name: &str, text: &str| {
        let p = tmp.join(name);
        fs::write(&p, text).map_err(io(&p))
    };
    write("inputs.txt", inputs)?;
    write("packages.txt", &packages)?;
    let when = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    write(
        "build.txt",
        &format!(
            "built-at-unix {when}\nmmdebstrap-seconds {:.1}\nimage-seconds {:.1}\npackages {}\nallocated-bytes {}\n",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            packages.lines().count(),
            allocated(&img)
        ),
    )?;
    progress(&format!(
        "Debian image built in {:.0} s (mmdebstrap {:.0} s, image {:.0} s), {} MB used",
        t2.duration_since(t0).as_secs_f64(),
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64(),
        allocated(&img) >> 20
    ));
    Ok(())
}

/// A cached image removed by [`prune`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Its folder.
    pub dir: PathBuf,
    /// Bytes freed.
    pub bytes: u64,
}

/// Removes the cached images other than `keep` that no run used in the
/// last `min_age` (and half-finished builds of dead processes).
///
/// # Errors
/// When the cache folder cannot be listed.
pub fn prune(
    cache: &Path,
    keep: &Path,
    min_age: std::time::Duration,
) -> Result<Vec<Pruned>, ImageError> {
    let base = cache.join("debian");
    let mut out = Vec::new();
    let entries = match fs::read_dir(&base) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(&base)(e)),
    };
    for e in entries.flatten() {
        let path = e.path();
        if path == keep || !path.is_dir() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let stale_build = name
            .strip_prefix(".build-")
            .and_then(|r| r.rsplit_once('-'))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        let recent = fs::metadata(path.join("used"))
            .or_else(|_| fs::metadata(&path))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < min_age);
        if name.starts_with(".build-") && !stale_build {
            continue;
        }
        if !stale_build && recent {
            continue;
        }
        let bytes = allocated(&path.join("root.img"));
        fs::remove_dir_all(&path).map_err(io(&path))?;
        out.push(Pruned { dir: path, bytes });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_moves_with_every_input() {
        let (a, text) = key("6.1.0-57-amd64", "mmdebstrap 1.3.5");
        assert_eq!(a.len(), 64);
        assert!(text.contains("kernel linux-image-6.1.0-57-amd64\n"));
        assert!(text.contains("package libvirt-daemon-system\n"));
        assert!(text.contains("chroot \"$R\" passwd -d root"));
        assert_ne!(a, key("6.1.0-58-amd64", "mmdebstrap 1.3.5").0);
        assert_ne!(a, key("6.1.0-57-amd64", "mmdebstrap 1.4.0").0);
        assert_eq!(a, key("6.1.0-57-amd64", "mmdebstrap 1.3.5").0, "stable");
    }

    #[test]
    fn the_hook_is_sh() {
        let out = Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(recipe::customize_hook())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn prune_keeps_what_is_used() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("debian");
        for n in ["keep", "old", ".build-x-999999999"] {
            fs::create_dir_all(base.join(n)).unwrap();
        }
        let removed = prune(d.path(), &base.join("keep"), std::time::Duration::ZERO).unwrap();
        let names: Vec<String> = removed
            .iter()
            .map(|p| p.dir.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.contains(&"old".to_string()) && names.contains(&".build-x-999999999".to_string())
        );
        assert!(base.join("keep").exists());
    }
}

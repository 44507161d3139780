//! The initramfs as a plan, path by path ([`Plan`] of [`Node`]s, each file
//! with its [`Source`]), and the parts every appliance's plan is made of:
//! the skeleton (directories, `/dev/console`, `/dev/null`), busybox and its
//! applets, host programs with their libraries, pci.ids, the environment
//! file. [`base`] is the base appliance's plan: those, the host programs
//! of [`PROGRAMS`], the kernel modules with their dependency chains, the
//! agent's files and `/init`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::kmod::{self, Chain, Compression, ModuleIndex};
use super::libs::{add_libraries, find_program, LIB_DIRS};
use super::{ApplianceError, ApplianceSpec, GuestKernel};
use crate::guest::agent;

/// Host programs the appliance carries, with their shared libraries.
const PROGRAMS: &[(&str, &str)] = &[("lspci", "pciutils"), ("numactl", "numactl")];

/// Where the PCI id database may be; it goes to the same place in the
/// appliance, where the host's libpci looks for it.
const PCI_IDS: &[&str] = &[
    "/usr/share/misc/pci.ids",
    "/usr/share/hwdata/pci.ids",
    "/usr/share/misc/pci.ids.gz",
    "/usr/share/hwdata/pci.ids.gz",
];

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub(super) enum Source {
    Host(PathBuf),
    Bytes(Vec<u8>),
    /// A `.zst` module, decompressed with the host's `zstd` (busybox
    /// insmod reads xz and gzip modules itself, not zstd ones).
    Unzstd(PathBuf),
}

#[derive(Debug, Clone)]
pub(super) enum Node {
    Dir,
    File { perm: u32, source: Source },
    Symlink(String),
    CharDev { perm: u32, major: u32, minor: u32 },
}

/// The initramfs, path by path (absolute paths; parents sort first).
#[derive(Debug, Default, Clone)]
pub(super) struct Plan {
    pub(super) entries: BTreeMap<String, Node>,
}

impl Plan {
    /// Adds an entry and any missing parent directories; the first entry
    /// for a path wins.
    pub(super) fn add(&mut self, path: &str, node: Node) {
        let mut at = 0;
        while let Some(i) = path[at + 1..].find('/') {
            at += i + 1;
            self.entries
                .entry(path[..at].to_string())
                .or_insert(Node::Dir);
        }
        self.entries.entry(path.to_string()).or_insert(node);
    }

    pub(super) fn has(&self, path: &str) -> bool {
        self.entries.contains_key(path)
    }

    /// Adds an entry, replacing one at the same path.
    pub(super) fn set(&mut self, path: &str, node: Node) {
        self.entries.remove(path);
        self.add(path, node);
    }
}

/// What the plan holds besides the files: module names, and what
/// [`add_libraries`] needs to extend it.
pub(super) struct Contents {
    pub(super) plan: Plan,
    pub(super) modules: Vec<String>,
    pub(super) missing_modules: Vec<String>,
    pub(super) by_real_path: BTreeMap<PathBuf, String>,
    pub(super) lib_dirs: BTreeSet<String>,
}

/// The directories and device nodes every initramfs needs.
pub(super) fn skeleton(plan: &mut Plan) {
    for d in [
        "/proc",
        "/sys",
        "/dev",
        "/tmp",
        "/root",
        "/run",
        "/etc/nestlab",
    ] {
        plan.add(d, Node::Dir);
    }
    plan.add(
        "/dev/console",
        Node::CharDev {
            perm: 0o600,
            major: 5,
            minor: 1,
        },
    );
    plan.add(
        "/dev/null",
        Node::CharDev {
            perm: 0o666,
            major: 1,
            minor: 3,
        },
    );
}

/// Adds `/bin/busybox` (with its libraries, if it has any) and a symlink
/// to it per applet.
pub(super) fn add_busybox(
    plan: &mut Plan,
    applets: &[&str],
    by_real_path: &mut BTreeMap<PathBuf, String>,
    lib_dirs: &mut BTreeSet<String>,
) -> Result<(), ApplianceError> {
    let busybox = find_program("busybox", "busybox-static")?;
    plan.add(
        "/bin/busybox",
        Node::File {
            perm: 0o755,
            source: Source::Host(busybox.clone()),
        },
    );
    add_libraries(plan, &busybox, by_real_path, lib_dirs)?;
    for applet in applets {
        plan.add(
            &format!("/bin/{applet}"),
            Node::Symlink("busybox".to_string()),
        );
    }
    Ok(())
}

/// Adds a host program as `/usr/bin/<name>` with its libraries.
pub(super) fn add_program(
    plan: &mut Plan,
    name: &str,
    package: &str,
    by_real_path: &mut BTreeMap<PathBuf, String>,
    lib_dirs: &mut BTreeSet<String>,
) -> Result<(), ApplianceError> {
    let path = find_program(name, package)?;
    plan.add(
        &format!("/usr/bin/{name}"),
        Node::File {
            perm: 0o755,
            source: Source::Host(path.clone()),
        },
    );
    add_libraries(plan, &path, by_real_path, lib_dirs)
}

/// Adds the PCI id database, when the host has one.
pub(super) fn add_pci_ids(plan: &mut Plan) {
    if let Some(ids) = PCI_IDS.iter().find(|p| Path::new(p).is_file()) {
        plan.add(
            ids,
            Node::File {
                perm: 0o644,
                source: Source::Host(PathBuf::from(ids)),
            },
        );
    }
}

/// [`agent::ENV_FILE`]: `LD_LIBRARY_PATH` over the library directories used.
pub(super) fn env_file(lib_dirs: &BTreeSet<String>) -> Node {
    let ld_path: Vec<&str> = LIB_DIRS
        .iter()
        .copied()
        .filter(|d| lib_dirs.contains(*d))
        .collect();
    let env = format!(
        "LD_LIBRARY_PATH={}\nexport LD_LIBRARY_PATH\n",
        ld_path.join(":")
    );
    Node::File {
        perm: 0o644,
        source: Source::Bytes(env.into_bytes()),
    }
}

/// The base appliance's plan: skeleton, busybox with the agent's applets,
/// [`PROGRAMS`], pci.ids, the modules of `spec` with their dependency
/// chains ([`agent::MODULES_FILE`] lists them), the environment file, the
/// capture script and `/init`.
pub(super) fn base(kernel: &GuestKernel, spec: &ApplianceSpec) -> Result<Contents, ApplianceError> {
    let mut plan = Plan::default();
    skeleton(&mut plan);
    let mut by_real_path = BTreeMap::new();
    let mut lib_dirs = BTreeSet::new();
    add_busybox(
        &mut plan,
        agent::BUSYBOX_APPLETS,
        &mut by_real_path,
        &mut lib_dirs,
    )?;
    for (name, package) in PROGRAMS {
        add_program(&mut plan, name, package, &mut by_real_path, &mut lib_dirs)?;
    }
    add_pci_ids(&mut plan);

    let mod_err = |source| ApplianceError::Modules {
        version: kernel.version.clone(),
        source,
    };
    let index = ModuleIndex::load(&kernel.modules_dir).map_err(mod_err)?;
    let mut chains = String::new();
    let mut available = BTreeSet::new();
    let mut missing = Vec::new();
    let mut requested = BTreeSet::new();
    for m in &spec.modules {
        let name = kmod::normalize(m);
        if !requested.insert(name.clone()) {
            continue;
        }
        match index.chain(&name).map_err(mod_err)? {
            None => missing.push(name),
            Some(Chain::Builtin) => {
                chains.push_str(&format!("{name}\n"));
                available.insert(name);
            }
            Some(Chain::Files(files)) => {
                chains.push_str(&name);
                for f in files {
                    let host = kernel.modules_dir.join(&f.rel_path);
                    let mut rel = f.rel_path.to_string_lossy().into_owned();
                    let source = if f.compression == Compression::Zstd {
                        rel.truncate(rel.len() - ".zst".len());
                        Source::Unzstd(host)
                    } else {
                        Source::Host(host)
                    };
                    let archive_path = format!("/lib/modules/{}/{rel}", kernel.version);
                    chains.push_str(&format!(" {}={archive_path}", f.name));
                    plan.add(
                        &archive_path,
                        Node::File {
                            perm: 0o644,
                            source,
                        },
                    );
                    available.insert(f.name);
                }
                chains.push('\n');
            }
        }
    }
    plan.add(
        agent::MODULES_FILE,
        Node::File {
            perm: 0o644,
            source: Source::Bytes(chains.into_bytes()),
        },
    );
    plan.add(agent::ENV_FILE, env_file(&lib_dirs));
    plan.add(
        agent::CAPTURE_SCRIPT_PATH,
        Node::File {
            perm: 0o755,
            source: Source::Bytes(agent::capture_script().into_bytes()),
        },
    );
    // For a disk-image guest, /init installs these in its root.
    plan.add(
        agent::AGENT_PATH,
        Node::File {
            perm: 0o755,
            source: Source::Bytes(agent::agent_script().into_bytes()),
        },
    );
    plan.add(
        &format!("/etc/nestlab/{}", agent::AGENT_UNIT),
        Node::File {
            perm: 0o644,
            source: Source::Bytes(agent::agent_unit().into_bytes()),
        },
    );
    plan.add(
        "/init",
        Node::File {
            perm: 0o755,
            source: Source::Bytes(agent::init_script().into_bytes()),
        },
    );
    Ok(Contents {
        plan,
        modules: available.into_iter().collect(),
        missing_modules: missing,
        by_real_path,
        lib_dirs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_adds_parents_first_and_keeps_first() {
        let mut p = Plan::default();
        p.add("/a/b/c", Node::Symlink("x".into()));
        p.add("/a/b/c", Node::Dir);
        let keys: Vec<&str> = p.entries.keys().map(String::as_str).collect();
        assert_eq!(keys, ["/a", "/a/b", "/a/b/c"]);
        assert!(matches!(p.entries["/a/b/c"], Node::Symlink(_)));
    }
}

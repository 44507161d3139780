//! Kernel modules of one kernel: where each one is and what it must be
//! loaded after.
//!
//! Dependencies come from the kernel's `modules.dep` (what depmod wrote).
//! A kernel package unpacked with `dpkg -x` has none (depmod runs in the
//! package's postinst), so without it the `depends=` field of each module's
//! `.modinfo` (what modpost recorded at build time) is read instead; that
//! needs uncompressed modules.
//!
//! Hand-written, not the `kmod` crate: that crate binds the C libkmod
//! (whose library and headers building nestlab would then need) for what
//! is here two line formats (`modules.dep`, `modules.builtin`: one line
//! per module) and one ELF section.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::elf::{self, ElfError};

/// How a module file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Compression {
    /// `.ko`
    None,
    /// `.ko.xz`
    Xz,
    /// `.ko.gz`
    Gzip,
    /// `.ko.zst`
    Zstd,
}

impl Compression {
    /// From a module file name; None when it is not a module file.
    pub fn of(file_name: &str) -> Option<Compression> {
        if file_name.ends_with(".ko") {
            Some(Compression::None)
        } else if file_name.ends_with(".ko.xz") {
            Some(Compression::Xz)
        } else if file_name.ends_with(".ko.gz") {
            Some(Compression::Gzip)
        } else if file_name.ends_with(".ko.zst") {
            Some(Compression::Zstd)
        } else {
            None
        }
    }
}

/// Why the modules of a kernel could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    /// A file or directory could not be read.
    #[error("cannot read {path}")]
    Read {
        /// What could not be read.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A `modules.dep` line without `path:`.
    #[error("{path}:{line}: expected '<module path>: <dependency paths>'")]
    BadDepLine {
        /// The modules.dep file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// A module file that is not a readable kernel module.
    #[error("cannot read .modinfo of {path}")]
    Elf {
        /// The module file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: ElfError,
    },
    /// No modules.dep and a compressed module whose .modinfo would be needed.
    #[error("{path} is compressed and {dir}/modules.dep is missing; run `depmod -b <root> <version>` for that kernel")]
    NeedsDepmod {
        /// The compressed module.
        path: PathBuf,
        /// The modules directory.
        dir: PathBuf,
    },
    /// A dependency that is not among the kernel's modules.
    #[error("module {module} depends on {dependency}, which {dir} does not have")]
    MissingDependency {
        /// The module.
        module: String,
        /// Its missing dependency.
        dependency: String,
        /// The modules directory.
        dir: PathBuf,
    },
}

/// The kernel's name for a module: `-` becomes `_`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a module file path (`.../kvm-amd.ko.xz` -> `kvm_amd`).
fn name_of(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    Compression::of(file)?;
    let stem = &file[..file.find(".ko")?];
    Some(normalize(stem))
}

/// One module file and its place in a load chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    /// Kernel name (`i2c_algo_bit`).
    pub name: String,
    /// Path relative to the modules directory (`kernel/drivers/...ko`).
    pub rel_path: PathBuf,
    /// How it is stored.
    pub compression: Compression,
}

/// What loading a module takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chain {
    /// Built into the kernel: nothing.
    Builtin,
    /// These files in this order (dependencies first, the module last).
    Files(Vec<ModuleFile>),
}

/// The modules of one kernel, by name.
#[derive(Debug, Clone)]
pub struct ModuleIndex {
    dir: PathBuf,
    paths: BTreeMap<String, PathBuf>,
    /// From modules.dep: each module's dependencies (names); None when
    /// there is no modules.dep.
    deps: Option<BTreeMap<String, Vec<String>>>,
    builtin: BTreeSet<String>,
}

impl ModuleIndex {
    /// Indexes the modules directory `dir` (`/lib/modules/<version>`).
    ///
    /// # Errors
    /// [`KmodError::Read`] when `dir` or its modules.dep cannot be read,
    /// [`KmodError::BadDepLine`] for a malformed modules.dep.
    pub fn load(dir: &Path) -> Result<ModuleIndex, KmodError> {
        let read_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KmodError::Read { path, source }
        };
        let mut index = ModuleIndex {
            dir: dir.to_path_buf(),
            paths: BTreeMap::new(),
            deps: None,
            builtin: BTreeSet::new(),
        };
        std::fs::metadata(dir).map_err(read_err(dir))?;
        let dep_path = dir.join("modules.dep");
        match std::fs::read_to_string(&dep_path) {
            Ok(text) => {
                let mut deps = BTreeMap::new();
                for (i, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let bad = || KmodError::BadDepLine {
                        path: dep_path.clone(),
                        line: i + 1,
                    };
                    let (module, list) = line.split_once(':').ok_or_else(bad)?;
                    let module = index.rel(Path::new(module.trim()));
                    let name = name_of(&module).ok_or_else(bad)?;
                    let names = list
                        .split_whitespace()
                        .filter_map(|d| name_of(Path::new(d)))
                        .collect();
                    deps.insert(name.clone(), names);
                    index.paths.insert(name, module);
                }
                index.deps = Some(deps);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => index.walk(dir)?,
            Err(e) => {
                return Err(KmodError::Read {
                    path: dep_path,
                    source: e,
                })
            }
        }
        if let Ok(text) = std::fs::read_to_string(dir.join("modules.builtin")) {
            index.builtin = text
                .lines()
                .filter_map(|l| name_of(Path::new(l.trim())))
                .collect();
        }
        Ok(index)
    }

    /// A modules.dep path relative to the modules directory.
    fn rel(&self, p: &Path) -> PathBuf {
        p.strip_prefix(&self.dir)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| p.to_path_buf())
    }

    fn walk(&mut self, dir: &Path) -> Result<(), KmodError> {
        let entries = std::fs::read_dir(dir).map_err(|source| KmodError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                self.walk(&path)?;
            } else if let Some(name) = name_of(&path) {
                let rel = self.rel(&path);
                // The first of equal names wins, like depmod's search order
                // would pick one; sorted walk keeps it deterministic.
                self.paths.entry(name).or_insert(rel);
            }
        }
        Ok(())
    }

    /// Whether modules.dep was there.
    pub fn has_modules_dep(&self) -> bool {
        self.deps.is_some()
    }

    /// The modules directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What loading `name` takes; None when the kernel has no such module
    /// (neither a file nor built in).
    ///
    /// # Errors
    /// [`KmodError`] when a dependency is missing or a module's .modinfo
    /// cannot be read.
    pub fn chain(&self, name: &str) -> Result<Option<Chain>, KmodError> {
        let name = normalize(name);
        if !self.paths.contains_key(&name) {
            return Ok(self.builtin.contains(&name).then_some(Chain::Builtin));
        }
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        self.visit(&name, &mut seen, &mut order)?;
        Ok(Some(Chain::Files(order)))
    }

    /// Depth-first, dependencies before dependents; `seen` stops cycles.
    fn visit(
        &self,
        name: &str,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<ModuleFile>,
    ) -> Result<(), KmodError> {
        if !seen.insert(name.to_string()) {
            return Ok(());
        }
        for dep in self.deps_of(name)? {
            if self.paths.contains_key(&dep) {
                self.visit(&dep, seen, order)?;
            } else if !self.builtin.contains(&dep) {
                return Err(KmodError::MissingDependency {
                    module: name.to_string(),
                    dependency: dep,
                    dir: self.dir.clone(),
                });
            }
        }
        if let Some(rel) = self.paths.get(name) {
            let compression = rel
                .file_name()
                .and_then(|f| f.to_str())
                .and_then(Compression::of)
                .unwrap_or(Compression::None);
            order.push(ModuleFile {
                name: name.to_string(),
                rel_path: rel.clone(),
                compression,
            });
        }
        Ok(())
    }

    fn deps_of(&self, name: &str) -> Result<Vec<String>, KmodError> {
        if let Some(deps) = &self.deps {
            return Ok(deps.get(name).cloned().unwrap_or_default());
        }
        let Some(rel) = self.paths.get(name) else {
            return Ok(Vec::new());
        };
        let path = self.dir.join(rel);
        let is_plain = path
            .file_name()
            .and_then(|f| f.to_str())
            .and_then(Compression::of)
            == Some(Compression::None);
        if !is_plain {
            return Err(KmodError::NeedsDepmod {
                path,
                dir: self.dir.clone(),
            });
        }
        let bytes = std::fs::read(&path).map_err(|source| KmodError::Read {
            path: path.clone(),
            source,
        })?;
        let info = elf::modinfo(&bytes).map_err(|source| KmodError::Elf {
            path: path.clone(),
            source,
        })?;
        Ok(info
            .iter()
            .filter(|(k, _)| k == "depends")
            .flat_map(|(_, v)| {
                v.split(',')
                    .filter(|d| !d.is_empty())
                    .map(normalize)
                    .collect::<Vec<_>>()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(chain: &Option<Chain>) -> Vec<String> {
        match chain {
            Some(Chain::Files(f)) => f.iter().map(|m| m.name.clone()).collect(),
            Some(Chain::Builtin) => vec!["<builtin>".into()],
            None => vec![],
        }
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nestlab-kmod-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn modules_dep_chains() {
        let d = tmp("dep");
        std::fs::write(
            d.join("modules.dep"),
            "kernel/drivers/net/ethernet/intel/igb/igb.ko.xz: kernel/drivers/dca/dca.ko.xz kernel/drivers/i2c/algos/i2c-algo-bit.ko.xz\n\
             kernel/drivers/dca/dca.ko.xz:\n\
             kernel/drivers/i2c/algos/i2c-algo-bit.ko.xz:\n\
             kernel/arch/x86/kvm/kvm-amd.ko.zst: kernel/arch/x86/kvm/kvm.ko.zst kernel/drivers/crypto/ccp/ccp.ko.zst kernel/virt/lib/irqbypass.ko.zst\n\
             kernel/arch/x86/kvm/kvm.ko.zst: kernel/virt/lib/irqbypass.ko.zst\n\
             kernel/drivers/crypto/ccp/ccp.ko.zst:\n\
             kernel/virt/lib/irqbypass.ko.zst:\n\
             kernel/x/broken.ko: kernel/x/gone.ko\n",
        )
        .unwrap();
        std::fs::write(
            d.join("modules.builtin"),
            "kernel/drivers/virtio/virtio.ko\n",
        )
        .unwrap();
        let idx = ModuleIndex::load(&d).unwrap();
        assert!(idx.has_modules_dep());
        assert_eq!(
            names(&idx.chain("igb").unwrap()),
            ["dca", "i2c_algo_bit", "igb"]
        );
        assert_eq!(
            names(&idx.chain("kvm-amd").unwrap()),
            ["irqbypass", "kvm", "ccp", "kvm_amd"]
        );
        assert_eq!(names(&idx.chain("virtio").unwrap()), ["<builtin>"]);
        assert_eq!(idx.chain("nope").unwrap(), None);
        assert!(
            matches!(idx.chain("broken"), Err(KmodError::MissingDependency { dependency, .. }) if dependency == "gone")
        );
        let Some(Chain::Files(f)) = idx.chain("igb").unwrap() else {
            panic!()
        };
        assert_eq!(f[2].compression, Compression::Xz);
        assert_eq!(
            f[2].rel_path,
            Path::new("kernel/drivers/net/ethernet/intel/igb/igb.ko.xz")
        );
        std::fs::write(d.join("modules.dep"), "no colon here\n").unwrap();
        assert!(matches!(
            ModuleIndex::load(&d),
            Err(KmodError::BadDepLine { line: 1, .. })
        ));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn missing_dir_is_an_error() {
        let e = ModuleIndex::load(Path::new("/nonexistent/lib/modules/0")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/lib/modules/0"), "{e}");
    }

    #[test]
    fn names_of_files() {
        assert_eq!(
            name_of(Path::new("a/kvm-amd.ko")).as_deref(),
            Some("kvm_amd")
        );
        assert_eq!(
            name_of(Path::new("a/vfio-pci.ko.zst")).as_deref(),
            Some("vfio_pci")
        );
        assert_eq!(name_of(Path::new("a/modules.order")), None);
    }
}

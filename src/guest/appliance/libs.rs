//! Host programs and the shared libraries they need: where a program is
//! ([`find_program`], in [`BIN_DIRS`]), and the closure of what it needs
//! to run ([`add_libraries`]: its loader and `DT_NEEDED` libraries, found
//! along `DT_RUNPATH` and then [`LIB_DIRS`], transitively).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::elf;
use super::plan::{Node, Plan, Source};
use super::{read_err, ApplianceError};

/// Where host programs are looked for.
pub(super) const BIN_DIRS: &[&str] = &["/usr/bin", "/bin", "/usr/sbin", "/sbin"];

/// Where shared libraries are looked for (after `DT_RUNPATH`), in the
/// order of the glibc loader's built-in path on Debian x86-64.
pub(super) const LIB_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// The first of [`BIN_DIRS`] that has `name`.
///
/// # Errors
/// [`ApplianceError::ToolMissing`], naming `package`, when none has it.
pub(super) fn find_program(name: &str, package: &str) -> Result<PathBuf, ApplianceError> {
    BIN_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| ApplianceError::ToolMissing {
            tool: name.to_string(),
            package: package.to_string(),
        })
}

/// Adds a program's loader and shared libraries (transitively), each at
/// the path where the host has it; a file the plan has under another name
/// already becomes a symlink. Records the library directories used.
pub(super) fn add_libraries(
    plan: &mut Plan,
    program: &Path,
    by_real_path: &mut BTreeMap<PathBuf, String>,
    lib_dirs: &mut BTreeSet<String>,
) -> Result<(), ApplianceError> {
    let mut queue = vec![program.to_path_buf()];
    let mut done = BTreeSet::new();
    while let Some(file) = queue.pop() {
        if !done.insert(file.clone()) {
            continue;
        }
        let bytes = fs::read(&file).map_err(read_err(&file))?;
        let dynamic = elf::dynamic(&bytes).map_err(|source| ApplianceError::Elf {
            path: file.clone(),
            source,
        })?;
        let mut wanted = Vec::new();
        if let Some(interp) = dynamic.interp {
            wanted.push((interp.clone(), PathBuf::from(&interp)));
        }
        let origin = file
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut searched: Vec<String> = dynamic
            .runpath
            .iter()
            .map(|r| r.replace("$ORIGIN", &origin).replace("${ORIGIN}", &origin))
            .collect();
        searched.extend(LIB_DIRS.iter().map(|d| d.to_string()));
        for soname in dynamic.needed {
            let found = searched
                .iter()
                .map(|d| Path::new(d).join(&soname))
                .find(|p| p.is_file())
                .ok_or_else(|| ApplianceError::LibraryMissing {
                    library: soname.clone(),
                    needed_by: file.clone(),
                    searched: searched.clone(),
                })?;
            if let Some(dir) = found.parent().and_then(Path::to_str) {
                lib_dirs.insert(dir.to_string());
            }
            wanted.push((found.to_string_lossy().into_owned(), found));
        }
        for (archive_path, host_path) in wanted {
            if plan.has(&archive_path) {
                continue;
            }
            let real = fs::canonicalize(&host_path).map_err(read_err(&host_path))?;
            match by_real_path.get(&real) {
                Some(first) => plan.add(&archive_path, Node::Symlink(first.clone())),
                None => {
                    by_real_path.insert(real, archive_path.clone());
                    plan.add(
                        &archive_path,
                        Node::File {
                            perm: 0o755,
                            source: Source::Host(host_path.clone()),
                        },
                    );
                    queue.push(host_path);
                }
            }
        }
    }
    Ok(())
}

//! The host side of the workload step: the run folder shared into the
//! guest (`control/` written here before the boot and at the gate,
//! `artifacts/` written by the workloads), the scripts the agent runs, and
//! what comes back (the artifacts, JUnit files among them).
//!
//! ```text
//! <run dir>/share/control/order          the workloads' names, in order
//! <run dir>/share/control/<name>.sh      cd, environment, numactl, the command
//! <run dir>/share/control/<name>.timeout seconds
//! <run dir>/share/control/gate           "go", or "stop <why>" (at the gate)
//! <run dir>/share/artifacts/             $NESTLAB_ARTIFACTS, writable
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use super::BootError;
use crate::model::workload::{sh_quote, ARTIFACTS_GUEST_DIR};
use crate::model::{Topology, Workload};

/// The run folder of a run directory.
pub fn run_folder(dir: &Path) -> PathBuf {
    dir.join("share")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BootError + '_ {
    move |source| BootError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write(path: &Path, text: &str) -> Result<(), BootError> {
    fs::write(path, text).map_err(io(path))
}

/// The script the agent runs for a workload: its folder, its environment
/// (`NESTLAB_ARTIFACTS` included), its NUMA binding, its command (exec'd,
/// so its exit code is the script's).
pub fn script(w: &Workload) -> String {
    let workdir = w
        .workdir
        .clone()
        .or_else(|| w.shares.first().map(|s| s.guest.clone()))
        .unwrap_or_else(|| "/".into());
    let mut s = format!(
        "# nestlab workload {} (generated; runs under the agent's timeout)\n",
        w.name
    );
    s.push_str(&format!("cd {} || exit 126\n", sh_quote(&workdir)));
    for (k, v) in &w.environment {
        s.push_str(&format!("{k}={}\nexport {k}\n", sh_quote(v)));
    }
    s.push_str(&format!(
        "NESTLAB_ARTIFACTS={ARTIFACTS_GUEST_DIR}\nexport NESTLAB_ARTIFACTS\n"
    ));
    let mut numactl = Vec::new();
    if let Some(n) = w.cpunodebind {
        numactl.push(format!("--cpunodebind={n}"));
    }
    if let Some(n) = w.membind {
        numactl.push(format!("--membind={n}"));
    }
    let prefix = if numactl.is_empty() {
        String::new()
    } else {
        format!("numactl {} -- ", numactl.join(" "))
    };
    s.push_str(&format!("exec {prefix}{}\n", w.command.to_sh()));
    s
}

/// Makes the run folder of a topology with workloads: `control/` with the
/// order, each workload's script and timeout, and an empty `artifacts/`.
/// The folders are open to the hypervisor's user (QEMU runs as libvirt's
/// qemu user and serves the 9p share with its rights); the run directory
/// above them is made traversable for it. `None` without workloads.
///
/// # Errors
/// When a folder or file cannot be written.
pub fn prepare_run_folder(t: &Topology, dir: &Path) -> Result<Option<PathBuf>, BootError> {
    if t.profile.workloads.is_empty() {
        return Ok(None);
    }
    use std::os::unix::fs::PermissionsExt;
    let root = run_folder(dir);
    let control = root.join("control");
    let artifacts = root.join("artifacts");
    for d in [&root, &control, &artifacts] {
        fs::create_dir_all(d).map_err(io(d))?;
    }
    let mut order = String::new();
    for w in &t.profile.workloads {
        order.push_str(&w.name);
        order.push('\n');
        write(&control.join(format!("{}.sh", w.name)), &script(w))?;
        write(
            &control.join(format!("{}.timeout", w.name)),
            &format!("{}\n", w.timeout_secs),
        )?;
    }
    write(&control.join("order"), &order)?;
    let _ = fs::remove_file(control.join("gate"));
    let mode =
        |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).map_err(io(p));
    mode(dir, 0o711)?;
    mode(&root, 0o755)?;
    mode(&control, 0o755)?;
    mode(&artifacts, 0o777)?;
    Ok(Some(root))
}

/// The host's word at the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Run the workloads.
    Go,
    /// Do not, and why.
    Stop(String),
}

/// Writes the host's word for the agent waiting at the gate (a temporary
/// file renamed into place, so the agent never reads half of it).
///
/// # Errors
/// When it cannot be written.
pub fn write_gate(root: &Path, gate: &Gate) -> Result<(), BootError> {
    let control = root.join("control");
    let tmp = control.join(".gate");
    let text = match gate {
        Gate::Go => "go\n".to_string(),
        Gate::Stop(why) => format!("stop {}\n", why.replace('\n', " ")),
    };
    write(&tmp, &text)?;
    let path = control.join("gate");
    fs::rename(&tmp, &path).map_err(io(&path))
}

/// After the run: the artifacts move to `<run dir>/artifacts`, the control
/// files go. Returns the artifacts folder.
///
/// # Errors
/// When the folders cannot be moved.
pub fn finish_run_folder(dir: &Path) -> Result<Option<PathBuf>, BootError> {
    let root = run_folder(dir);
    if !root.exists() {
        return Ok(None);
    }
    let from = root.join("artifacts");
    let to = dir.join("artifacts");
    if from.exists() {
        fs::rename(&from, &to).map_err(io(&to))?;
        // The guest's files arrive owned by the hypervisor's user: hand them
        // to whoever ran nestlab.
        own(&to, 0);
    }
    fs::remove_dir_all(&root).map_err(io(&root))?;
    Ok(to.exists().then_some(to))
}

/// Gives `path` and everything under it to this process's user (best
/// effort: what cannot be changed stays as it is).
fn own(path: &Path, depth: u32) {
    use std::os::unix::fs::MetadataExt;
    let Ok(me) = fs::metadata("/proc/self") else {
        return;
    };
    let _ = std::os::unix::fs::lchown(path, Some(me.uid()), Some(me.gid()));
    if depth < 32 && path.is_dir() && !path.is_symlink() {
        if let Ok(entries) = fs::read_dir(path) {
            for e in entries.flatten() {
                own(&e.path(), depth + 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Command, NodeId, Share, ShareMode};

    fn workload() -> Workload {
        Workload {
            name: "pinned".into(),
            command: Command::Argv(vec!["sh".into(), "-c".into(), "echo 'hi'".into()]),
            shares: vec![Share {
                host: "/src".into(),
                guest: "/src".into(),
                mode: ShareMode::Ro,
            }],
            timeout_secs: 30,
            environment: [("RUST_LOG".to_string(), "it's".to_string())].into(),
            cpunodebind: Some(NodeId(2)),
            membind: Some(NodeId(2)),
            workdir: None,
        }
    }

    #[test]
    fn scripts_quote_and_bind() {
        let s = script(&workload());
        assert!(s.contains("cd '/src' || exit 126\n"), "{s}");
        assert!(s.contains("RUST_LOG='it'\\''s'\nexport RUST_LOG\n"), "{s}");
        assert!(
            s.contains("NESTLAB_ARTIFACTS=/run/nestlab/artifacts\n"),
            "{s}"
        );
        assert!(
            s.ends_with(
                "exec numactl --cpunodebind=2 --membind=2 -- 'sh' '-c' 'echo '\\''hi'\\'''\n"
            ),
            "{s}"
        );
        // sh reads it as one command with those arguments.
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(&s)
            .output()
            .unwrap();
        assert!(out.status.success());
    }

    #[test]
    fn the_gate_is_written_whole() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("control")).unwrap();
        write_gate(d.path(), &Gate::Stop("numa.nodes\nfailed".into())).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("control/gate")).unwrap(),
            "stop numa.nodes failed\n"
        );
        write_gate(d.path(), &Gate::Go).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("control/gate")).unwrap(),
            "go\n"
        );
    }
}

//! `[[workload]]` and the command line's `--share ... -- CMD`: names,
//! commands, shares (existing, readable host folders; guest paths that do
//! not clash with the guest's own), timeouts, environment, NUMA binding.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{Errors, Problem, ValidationErrors};
use crate::front::wire::{CommandFile, WorkloadFile};
use crate::model::workload::{
    guest_path_problem, CLI_WORKLOAD, DEFAULT_WORKLOAD_TIMEOUT_SECS, MAX_WORKLOAD_TIMEOUT_SECS,
};
use crate::model::{Command, Node, NodeId, Share, ShareArg, Workload};

/// Longest workload name.
pub const MAX_WORKLOAD_NAME: usize = 40;

fn check_name(name: &str, field: &str, errs: &mut Errors) {
    if name.is_empty() {
        return errs.push(field, Problem::Empty);
    }
    if name.len() > MAX_WORKLOAD_NAME {
        errs.push(
            field,
            Problem::TooLong {
                len: name.chars().count(),
                max: MAX_WORKLOAD_NAME,
            },
        );
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        errs.push(field, Problem::NameChar(c.to_string()));
    }
}

/// A share as the user wrote it -> a share with an existing host folder
/// (relative to `base`) and a guest path that is the guest's to give.
fn check_share(arg: &ShareArg, base: &Path, field: &str, errs: &mut Errors) -> Option<Share> {
    let joined = base.join(&arg.host);
    let problem = match std::fs::metadata(&joined) {
        Err(e) => Some(format!("host folder {}: {e}", joined.display())),
        Ok(m) if !m.is_dir() => Some(format!(
            "{} is not a folder (only folders can be shared)",
            joined.display()
        )),
        Ok(_) => std::fs::read_dir(&joined)
            .err()
            .map(|e| format!("host folder {} cannot be read: {e}", joined.display())),
    };
    if let Some(why) = problem {
        errs.push(field, Problem::Share(why));
        return None;
    }
    let host = match std::fs::canonicalize(&joined) {
        Ok(p) => p,
        Err(e) => {
            errs.push(
                field,
                Problem::Share(format!("host folder {}: {e}", joined.display())),
            );
            return None;
        }
    };
    let guest = match &arg.guest {
        Some(g) => g.clone(),
        None => host.display().to_string(),
    };
    if let Some(why) = guest_path_problem(&guest) {
        errs.push(field, Problem::Share(format!("guest path {why}")));
        return None;
    }
    Some(Share {
        host,
        guest: guest.trim_end_matches('/').to_string(),
        mode: arg.mode,
    })
}

fn check_environment(env: &BTreeMap<String, String>, field: &str, errs: &mut Errors) {
    for (k, v) in env {
        let ok_key = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok_key {
            errs.push(
                format!("{field}.{k}"),
                Problem::Workload("not a variable name: use letters, digits and '_'".into()),
            );
        } else if k.starts_with("NESTLAB_") {
            errs.push(
                format!("{field}.{k}"),
                Problem::Workload("NESTLAB_* variables are nestlab's".into()),
            );
        }
        if v.chars().any(|c| c == '\0') {
            errs.push(
                format!("{field}.{k}"),
                Problem::Workload("the value holds a NUL character".into()),
            );
        }
    }
}

fn check_node(
    n: Option<u32>,
    nodes: &[Node],
    cpus: bool,
    field: &str,
    errs: &mut Errors,
) -> Option<NodeId> {
    let n = n?;
    match nodes.get(n as usize) {
        None => {
            errs.push(
                field,
                Problem::Workload(format!(
                    "node {n} does not exist (the profile has {} nodes)",
                    nodes.len()
                )),
            );
            None
        }
        Some(node) if cpus && node.cpus.is_empty() => {
            errs.push(
                field,
                Problem::Workload(format!("node {n} has no CPUs to run on")),
            );
            None
        }
        Some(_) => Some(NodeId(n)),
    }
}

fn check_command(c: &CommandFile, field: &str, errs: &mut Errors) -> Command {
    match c {
        CommandFile::Shell(s) => {
            if s.trim().is_empty() {
                errs.push(field, Problem::Empty);
            } else if s.contains('\0') {
                errs.push(field, Problem::Workload("holds a NUL character".into()));
            }
            Command::Shell(s.clone())
        }
        CommandFile::Argv(v) => {
            if v.first().map_or(true, |a| a.trim().is_empty()) {
                errs.push(field, Problem::Empty);
            } else if v.iter().any(|a| a.contains('\0')) {
                errs.push(
                    field,
                    Problem::Workload("an argument holds a NUL character".into()),
                );
            }
            Command::Argv(v.clone())
        }
    }
}

/// Checks every `[[workload]]`; relative share folders are relative to
/// `base` (the profile's folder).
pub(super) fn check_workloads(
    files: &[WorkloadFile],
    nodes: &[Node],
    base: &Path,
    errs: &mut Errors,
) -> Vec<Workload> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (i, w) in files.iter().enumerate() {
        let f = |x: &str| format!("workload[{i}].{x}");
        check_name(&w.name, &f("name"), errs);
        if !names.insert(w.name.clone()) {
            errs.push(
                f("name"),
                Problem::Workload(format!(
                    "'{}' is already the name of another workload",
                    w.name
                )),
            );
        }
        let command = check_command(&w.command, &f("command"), errs);
        let mut shares = Vec::new();
        for (j, s) in w.shares.iter().enumerate() {
            let field = format!("workload[{i}].shares[{j}]");
            match s.parse::<ShareArg>() {
                Ok(arg) => shares.extend(check_share(&arg, base, &field, errs)),
                Err(why) => errs.push(field, Problem::Share(why)),
            }
        }
        check_guest_paths(&shares, &f("shares"), errs);
        let timeout_secs = w.timeout.unwrap_or(DEFAULT_WORKLOAD_TIMEOUT_SECS);
        if !(1..=MAX_WORKLOAD_TIMEOUT_SECS).contains(&timeout_secs) {
            errs.push(
                f("timeout"),
                Problem::OutOfRange {
                    value: timeout_secs.into(),
                    min: 1,
                    max: MAX_WORKLOAD_TIMEOUT_SECS.into(),
                },
            );
        }
        check_environment(&w.environment, &f("environment"), errs);
        let cpunodebind = check_node(w.cpunodebind, nodes, true, &f("cpunodebind"), errs);
        let membind = check_node(w.membind, nodes, false, &f("membind"), errs);
        if let Some(d) = &w.workdir {
            if !d.starts_with('/') {
                errs.push(
                    f("workdir"),
                    Problem::Workload(format!("'{d}' is not an absolute path")),
                );
            }
        }
        out.push(Workload {
            name: w.name.clone(),
            command,
            shares,
            timeout_secs,
            environment: w.environment.clone(),
            cpunodebind,
            membind,
            workdir: w.workdir.clone(),
        });
    }
    out
}

/// Two shares may not take the same guest path (nestlab's run folder
/// is under /run, which no share may take).
fn check_guest_paths(shares: &[Share], field: &str, errs: &mut Errors) {
    let mut seen = BTreeSet::new();
    for s in shares {
        if !seen.insert(s.guest.clone()) {
            errs.push(
                field,
                Problem::Share(format!("two shares are mounted at {}", s.guest)),
            );
        }
    }
}

/// The workload of `nestlab run PROFILE [--share ...]... -- CMD [ARGS...]`:
/// CMD run as it is, in `cwd`, which is shared read-only at the same path
/// (unless a `--share` already mounts something there), with the
/// `--share`s. Errors name the argument (`--share`, `CMD`).
///
/// # Errors
/// Every problem found.
pub fn cli_workload(
    argv: &[String],
    shares: &[String],
    cwd: &Path,
    nodes: &[Node],
) -> Result<Workload, ValidationErrors> {
    let mut errs = Errors(Vec::new());
    let command = check_command(
        &CommandFile::Argv(argv.to_vec()),
        "CMD (after --)",
        &mut errs,
    );
    let mut out = Vec::new();
    for s in shares {
        let field = format!("--share {s}");
        match s.parse::<ShareArg>() {
            Ok(arg) => out.extend(check_share(&arg, cwd, &field, &mut errs)),
            Err(why) => errs.push(field, Problem::Share(why)),
        }
    }
    let cwd_abs: PathBuf = std::fs::canonicalize(cwd).unwrap_or_else(|_| cwd.to_path_buf());
    let cwd_guest = cwd_abs.display().to_string();
    if !out.iter().any(|s| s.guest == cwd_guest) {
        let arg = ShareArg {
            host: cwd_abs.display().to_string(),
            guest: None,
            mode: crate::model::ShareMode::Ro,
        };
        out.extend(check_share(
            &arg,
            cwd,
            "the current folder (shared read-only by default)",
            &mut errs,
        ));
    }
    check_guest_paths(&out, "--share", &mut errs);
    let _ = nodes;
    if !errs.0.is_empty() {
        return Err(ValidationErrors(errs.0));
    }
    Ok(Workload {
        name: CLI_WORKLOAD.into(),
        command,
        shares: out,
        timeout_secs: DEFAULT_WORKLOAD_TIMEOUT_SECS,
        environment: BTreeMap::new(),
        cpunodebind: None,
        membind: None,
        workdir: Some(cwd_guest),
    })
}

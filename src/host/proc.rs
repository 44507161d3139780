//! QEMU's threads on this machine, read from `/proc`: only meaningful for a
//! local libvirt connection, where QEMU runs here. The text written is what
//! `grep -E '^(Name|Cpus_allowed_list|Mems_allowed_list):'
//! /proc/PID/task/*/status` prints ([`crate::capture::HOST_THREADS`]).

use std::fs;
use std::path::Path;

use super::HostError;

/// Finds the QEMU process of `domain` under `proc_root` (its command line
/// has `-name guest=<domain>,...`, as libvirt starts it) and returns its
/// threads' `Name`, `Cpus_allowed_list` and `Mems_allowed_list` lines.
///
/// # Errors
/// When no such process exists or its threads cannot be read.
pub fn qemu_threads_in(proc_root: &Path, domain: &str) -> Result<String, HostError> {
    let op = || format!("cannot read the QEMU threads of {domain}");
    let pid = find_qemu(proc_root, domain).ok_or_else(|| {
        HostError::other(
            op(),
            format!("no process under {} runs it", proc_root.display()),
        )
    })?;
    let task = proc_root.join(pid.to_string()).join("task");
    let mut tids: Vec<u32> = fs::read_dir(&task)
        .map_err(|e| HostError::other(op(), format!("{}: {e}", task.display())))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    let mut out = String::new();
    for tid in tids {
        // A thread may end between the listing and the read.
        let Ok(status) = fs::read_to_string(task.join(tid.to_string()).join("status")) else {
            continue;
        };
        for line in status.lines() {
            if ["Name:", "Cpus_allowed_list:", "Mems_allowed_list:"]
                .iter()
                .any(|f| line.starts_with(f))
            {
                out.push_str(&format!("/proc/{pid}/task/{tid}/status:{line}\n"));
            }
        }
    }
    if out.is_empty() {
        return Err(HostError::other(
            op(),
            format!("{} has no readable thread", task.display()),
        ));
    }
    Ok(out)
}

fn find_qemu(proc_root: &Path, domain: &str) -> Option<u32> {
    let want = format!("guest={domain},");
    let exact = format!("guest={domain}");
    fs::read_dir(proc_root)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let Ok(cmd) = fs::read(proc_root.join(pid.to_string()).join("cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            args.windows(2).any(|w| {
                w[0] == b"-name" && (w[1].starts_with(want.as_bytes()) || w[1] == exact.as_bytes())
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_threads_of_the_domains_qemu() {
        let root = tempfile::tempdir().unwrap();
        let mk = |pid: u32, cmdline: &str, tasks: &[(u32, &str)]| {
            let p = root.path().join(pid.to_string());
            fs::create_dir_all(p.join("task")).unwrap();
            fs::write(p.join("cmdline"), cmdline.replace(' ', "\0")).unwrap();
            for (tid, name) in tasks {
                let t = p.join("task").join(tid.to_string());
                fs::create_dir_all(&t).unwrap();
                fs::write(
                    t.join("status"),
                    format!("Name:\t{name}\nUmask:\t0022\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\nMems_allowed_list:\t0\n"),
                )
                .unwrap();
            }
        };
        mk(
            10,
            "/usr/bin/qemu-system-x86_64 -name guest=nestlab-a-1,debug-threads=on",
            &[(10, "qemu-system-x86"), (12, "CPU 0/TCG")],
        );
        mk(
            20,
            "/usr/bin/qemu-system-x86_64 -name guest=nestlab-a-10,debug-threads=on",
            &[(20, "qemu-system-x86")],
        );
        fs::write(root.path().join("self"), "").unwrap();
        let text = qemu_threads_in(root.path(), "nestlab-a-1").unwrap();
        assert_eq!(
            text,
            "/proc/10/task/10/status:Name:\tqemu-system-x86\n/proc/10/task/10/status:Cpus_allowed_list:\t0-1\n/proc/10/task/10/status:Mems_allowed_list:\t0\n\
             /proc/10/task/12/status:Name:\tCPU 0/TCG\n/proc/10/task/12/status:Cpus_allowed_list:\t0-1\n/proc/10/task/12/status:Mems_allowed_list:\t0\n"
        );
        let parsed = crate::observe::host_threads::parse(&text).unwrap();
        assert_eq!(parsed.pid, Some(10));
        assert!(qemu_threads_in(root.path(), "nestlab-b").is_err());
    }
}

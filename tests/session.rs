//! `--connect qemu:///session` as a non-root user: a throwaway user boots
//! `minimal` through its own session libvirtd, and is removed afterwards
//! with everything it started. Root only (it creates the user); outside CI
//! it says it is skipped, inside CI (CI=true) it fails instead.

use std::process::Command;

const USER: &str = "nestlab-session-test";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Removes the user, its processes (its session libvirtd and QEMU) and home.
struct ThrowawayUser;

impl Drop for ThrowawayUser {
    fn drop(&mut self) {
        let _ = Command::new("pkill").args(["-KILL", "-u", USER]).status();
        std::thread::sleep(std::time::Duration::from_millis(500));
        let _ = Command::new("userdel").args(["-r", "-f", USER]).output();
        let _ = std::fs::remove_dir_all(format!("/tmp/{USER}-run"));
        if let Ok(d) = std::fs::read_dir("/tmp") {
            for e in d.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{USER}-xdg-"))
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

#[test]
fn e2e_session_mode_as_a_non_root_user() {
    let kernel = std::fs::read_dir("/var/cache/nestlab/kernel/boot")
        .ok()
        .and_then(|d| {
            d.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
            })
        });
    let have_tools = Command::new("useradd").arg("--help").output().is_ok()
        && Command::new("runuser").arg("--help").output().is_ok();
    if !(is_root() && kernel.is_some() && have_tools) {
        assert!(
            !in_ci(),
            "CI=true but not root, no guest kernel in /var/cache/nestlab, or no useradd/runuser"
        );
        eprintln!("SKIPPED: the session-mode test needs root (to make a throwaway user) and ./dev setup's kernel");
        return;
    }
    let kernel = kernel.unwrap();
    let _ = Command::new("userdel").args(["-r", "-f", USER]).output();
    let made = Command::new("useradd")
        .args(["-m", "-s", "/bin/sh", USER])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let _user = ThrowawayUser;
    // The test binary's target dir may sit under /root (0700): copy nestlab out.
    let dir = format!("/tmp/{USER}-run");
    std::fs::create_dir_all(&dir).unwrap();
    let bin = format!("{dir}/nestlab");
    std::fs::copy(env!("CARGO_BIN_EXE_nestlab"), &bin).unwrap();
    Command::new("chmod")
        .args(["-R", "755", &dir])
        .status()
        .unwrap();
    let uid = String::from_utf8(
        Command::new("id")
            .args(["-u", USER])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let script = format!(
        "export XDG_RUNTIME_DIR=/tmp/{USER}-xdg-{uid}; mkdir -p -m 700 $XDG_RUNTIME_DIR; cd; \
         NESTLAB_KERNEL={} {bin} run minimal --connect qemu:///session --json; echo \"exit=$?\" >&2; \
         virsh -c qemu:///session list --all --name",
        kernel.display()
    );
    let out = Command::new("runuser")
        .args(["-u", USER, "--", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(stderr.contains("exit=0"), "session run failed:\n{stderr}");
    assert!(stdout.contains("\"verdict\": \"pass\""), "{stdout}");
    assert!(
        !stdout.lines().any(|l| l.starts_with("nestlab-")),
        "session domain left: {stdout}"
    );
    eprintln!("session: minimal passed as the unprivileged user {USER} on qemu:///session");
}

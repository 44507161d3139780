//! Tests of [`super`], in a file of their own to keep the module short.
use super::*;
use std::path::Path;
use std::process::Command;

#[test]
fn scripts_carry_every_capture() {
    let cap = capture_script();
    let init = init_script();
    for c in in_scope(Scope::Topology) {
        let command = c.command.unwrap();
        assert!(
            cap.contains(&format!("( {} ) >\"$dir/{}\"", command, c.file)),
            "{}",
            c.file
        );
        assert!(init.contains(&capture_line(c.file, command)), "{}", c.file);
    }
    for f in crate::capture::NESTED_FILES {
        assert!(init.contains(&format!("put {f} ")), "{f}");
        assert!(!cap.contains(f), "{f} is not for the capture script");
    }
    for placeholder in [
        "@QEMU@",
        "@KERNEL@",
        "@INITRD@",
        "@FIRMWARE@",
        "@MEMORY@",
        "@MARKER@",
    ] {
        assert!(!init.contains(placeholder), "{placeholder} left in /init");
    }
    assert!(init.ends_with("poweroff -f\n"));
    // Probe mode stays up after `done` until the host destroys it (or
    // the linger ends): powering off at once lost in-flight output.
    let done = init.find("mark \"done:").unwrap();
    let linger = init.find("sleep \"$linger\"").unwrap();
    assert!(done < linger && linger < init.rfind("poweroff -f").unwrap());
    assert!(init.contains(&format!("linger={LINGER_SECS}\n")));
}

/// Whether `shell` is here; outside CI a missing one is skipped with
/// the reason, in CI (where ./dev installs busybox-static) it fails.
fn have(shell: &str) -> bool {
    if Path::new(shell).exists() {
        return true;
    }
    crate::test_support::skip_or_fail(&format!(
        "{shell} is missing (apt-get install busybox-static dash)"
    ));
    false
}

fn syntax_ok(shell: &str, script: &str) -> Option<bool> {
    if !have(shell) {
        return None;
    }
    let shell_args: Vec<&str> = if shell.ends_with("busybox") {
        vec!["sh", "-n", "-c"]
    } else {
        vec!["-n", "-c"]
    };
    let out = Command::new(shell)
        .args(&shell_args)
        .arg(script)
        .output()
        .ok()?;
    Some(out.status.success())
}

#[test]
fn the_agent_is_the_init_without_pid1_duties() {
    let agent = agent_script();
    let init = init_script();
    assert!(agent.starts_with("#!/bin/sh\n"));
    for pid1 in [
        "mount -t proc",
        "poweroff -f",
        "setsid cttyhack",
        "sleep \"$linger\"",
    ] {
        assert!(!agent.contains(pid1), "{pid1} is PID 1's");
        assert!(init.contains(pid1), "{pid1}");
    }
    let body = agent.split_once("set -f\n").unwrap().1;
    assert!(
        init.replace(&switch_root_block(), "").contains(body),
        "the appliance runs the same agent"
    );
    // A disk-image guest: /init installs the agent and hands over.
    assert!(init.contains("exec switch_root /newroot /sbin/init"));
    assert!(!agent.contains("switch_root"));
    // After `done`, only the disk guest's shell hand-over (nestlab up).
    let (_, after) = agent
        .split_once("mark \"done:$(uptime_s)\"\n")
        .expect("the agent marks done");
    assert!(after.contains("serial-getty@ttyS0"), "{after}");
    assert!(!after.contains("put "), "nothing is captured after done");
    assert_eq!(after.matches("mark ").count(), 1, "only `mark shell`");
}

#[test]
fn scripts_parse_under_dash_and_busybox() {
    for shell in ["/bin/sh", "/bin/busybox"] {
        for script in [
            capture_script(),
            init_script(),
            agent_script(),
            nested_init_script(),
        ] {
            if let Some(ok) = syntax_ok(shell, &script) {
                assert!(ok, "{shell} -n rejects:\n{script}");
            }
        }
    }
}

/// /init's `put` run by this host's shells (busybox's gzip and base64
/// when it has them): small outputs go plain, big ones compressed, and
/// the console reader gets the bytes back either way.
#[test]
fn put_frames_what_the_reader_reads() {
    let init = init_script();
    let start = init.find("mark() {").unwrap();
    let end = init.find("mark \"init:").unwrap();
    let funcs = &init[start..end];
    let dir = std::env::temp_dir().join(format!(
        "nestlab-put-{}-{}",
        std::process::id(),
        crate::guest::protocol::Nonce::generate()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let small = "0000:00:00.0 Host bridge [0600]: Intel Corporation 82G33 [8086:29c0]\n";
    let big: String = (0..300)
        .map(|i| format!("[ {i}.000000] DMAR: line {i} \u{e9}\n"))
        .collect();
    std::fs::write(dir.join("small"), small).unwrap();
    std::fs::write(dir.join("big"), &big).unwrap();
    let script = format!(
        "nonce=ab\nPATH=/bin:/usr/bin\n{funcs}\nmark init:1\n\
         capture_out=\"$1/small\" put lspci.txt 0\ncapture_out=\"$1/big\" put dmesg.txt 3\nmark done:2\n"
    );
    for shell in ["/bin/sh", "/bin/busybox"] {
        if !have(shell) {
            continue;
        }
        let mut cmd = Command::new(shell);
        if shell.ends_with("busybox") {
            // Its own applets, as in the appliance.
            cmd.arg("sh").env("PATH", "/nonexistent");
            let bin = dir.join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            for applet in ["gzip", "base64", "wc", "cat"] {
                let _ = std::os::unix::fs::symlink("/bin/busybox", bin.join(applet));
            }
        }
        let script = if shell.ends_with("busybox") {
            script.replace(
                "PATH=/bin:/usr/bin",
                &format!("PATH={}", dir.join("bin").display()),
            )
        } else {
            script.clone()
        };
        let out = cmd
            .arg("-c")
            .arg(&script)
            .arg("sh")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let has_gz = text.contains("::nestlab:ab:begin-gz:dmesg.txt::");
        assert!(
            text.contains("::nestlab:ab:begin:lspci.txt::"),
            "{shell}: {text}"
        );
        let mut r = crate::guest::protocol::ConsoleReader::new(&"ab".parse().unwrap());
        r.feed(&out.stdout);
        let set = r.finish().unwrap();
        assert_eq!(set.get("lspci.txt"), Some(small));
        assert_eq!(
            set.get("dmesg.txt"),
            Some(big.as_str()),
            "{shell} (gz: {has_gz})"
        );
        assert_eq!(set.exit_code("dmesg.txt"), Some(3));
        if shell.ends_with("busybox") {
            assert!(has_gz, "busybox has gzip and base64");
            assert!(
                out.stdout.len() < big.len() / 2,
                "{} bytes",
                out.stdout.len()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The nested step on this host with devices that do not exist: it
/// writes nothing to sysfs, reports each device unbound, does not start
/// QEMU, and says why in the format `nested.txt` is read in.
#[test]
fn nested_step_without_the_devices_says_why() {
    let dir = std::env::temp_dir().join(format!(
        "nestlab-nested-step-{}-{}",
        std::process::id(),
        crate::guest::protocol::Nonce::generate()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let script = format!(
        "nonce=ab\nmark() {{ printf '::nestlab:%s:%s::\\n' \"$nonce\" \"$1\"; }}\n\
         fail() {{ printf '::nestlab:%s:error:%s:%s::\\n' \"$nonce\" \"$1\" \"$2\"; }}\n\
         uptime_s() {{ printf 1.0; }}\n{}\n\
         assign=nic0@0000:ff:1f.7,nic1.vf0@0000:fe:10.0\nnested_timeout=5\nntmp=\"$1\"\n\
         nested_step\necho \"rc=$nested_lspci_rc/$nested_qemu_rc\"\n",
        nested_step()
    );
    for shell in ["/bin/sh", "/bin/busybox"] {
        if !have(shell) {
            continue;
        }
        let mut cmd = Command::new(shell);
        if shell.ends_with("busybox") {
            cmd.arg("sh");
        }
        let out = cmd
            .arg("-c")
            .arg(&script)
            .arg("sh")
            .arg(&dir)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shell}: {stdout}");
        assert!(
            stdout.contains("::nestlab:ab:error:nested:nic0: no device 0000:ff:1f.7"),
            "{stdout}"
        );
        assert!(stdout.ends_with("rc=1/1\n"), "{stdout}");
        let text = std::fs::read_to_string(dir.join("nested.txt")).unwrap();
        let facts = crate::observe::nested::parse(&text).unwrap();
        assert_eq!(facts.devices.len(), 2, "{text}");
        assert!(facts
            .devices
            .iter()
            .all(|d| d.driver.is_none() && !d.vfio_dev));
        assert_eq!(facts.devices[1].id, "nic1.vf0");
        let why = facts.boot.unwrap().unwrap_err();
        assert!(
            why == "no /dev/kvm in the virtual host"
                || why == "not bound to vfio-pci: nic0 nic1.vf0",
            "{why}"
        );
        assert!(std::fs::read_to_string(dir.join("nested-lspci.txt"))
            .unwrap()
            .is_empty());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn capture_script_runs_and_records_every_file() {
    let dir = std::env::temp_dir().join(format!(
        "nestlab-capture-{}-{}",
        std::process::id(),
        crate::guest::protocol::Nonce::generate()
    ));
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(capture_script())
        .arg("sh")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let set = crate::capture::CaptureSet::read_dir(&dir).unwrap();
    assert!(set.missing().is_empty(), "{:?}", set.missing());
    for c in in_scope(Scope::Topology) {
        assert!(set.exit_code(c.file).is_some(), "{}", c.file);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

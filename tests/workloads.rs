//! The user's own commands on the verified virtual host, for real (TCG
//! here): the README's examples. Needs libvirtd and a guest kernel (./dev
//! setup); outside CI, finding none, it says it is skipped; with CI=true it
//! fails instead.
//!
//! One test function, so the leak checks at the end see only its own runs.

use std::path::Path;
use std::process::{Command, Stdio};

mod support;
use support::*;

#[test]
fn e2e_workloads_run_on_the_verified_topology() {
    let daemon = Command::new("virsh")
        .args(["-c", "qemu:///system", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let kernel =
        String::from_utf8_lossy(&nestlab(&["doctor"], here).stdout).contains("ok   guest kernel");
    if !(daemon && kernel) {
        assert!(
            !in_ci(),
            "CI=true but libvirtd ({daemon}) or a guest kernel ({kernel}) is missing"
        );
        eprintln!("SKIPPED: workload boots need libvirtd and a guest kernel (run ./dev setup)");
        return;
    }
    let before_tmp = temp_leftovers();
    let before_domains = domains();
    let work = tempfile::tempdir().unwrap();

    // 0. A workload that prints nothing for 5 minutes, then succeeds: it
    // runs in the background while the rest of this test goes on.
    let quiet = Command::new(env!("CARGO_BIN_EXE_nestlab"))
        .args([
            "run",
            "minimal",
            "--accel",
            "tcg",
            "--",
            "sh",
            "-c",
            "sleep 300; echo slept",
        ])
        .current_dir(work.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();

    // 1. The example: the guest's output on stdout, exit 0.
    let o = nestlab(
        &[
            "run",
            "two-socket",
            "--accel",
            "tcg",
            "--",
            "sh",
            "-c",
            "numactl --hardware | grep available",
        ],
        work.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "available: 2 nodes (0-1)",
        "{}",
        show(&o)
    );

    // 2. A NUMA-pinned command sees node 2's CPUs only (the reference's
    // node 2 is CPUs 6-7).
    let o = nestlab(
        &[
            "run",
            "reference",
            "--skip-nested",
            "--accel",
            "tcg",
            "--",
            "numactl",
            "--cpunodebind=2",
            "--membind=2",
            "sh",
            "-c",
            "grep Cpus_allowed_list /proc/self/status",
        ],
        work.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Cpus_allowed_list:\t6-7"), "{}", show(&o));

    // 3. A failing command: exit 1, a failed workload testcase in JUnit.
    let junit = work.path().join("false.xml");
    let o = nestlab(
        &[
            "run",
            "two-socket",
            "--accel",
            "tcg",
            "--junit",
            junit.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "echo about to fail; false",
        ],
        work.path(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let j = std::fs::read_to_string(&junit).unwrap();
    assert!(
        j.contains("<testcase classname=\"two-socket\" name=\"workload.command\">\n      <failure"),
        "{j}"
    );
    assert!(
        j.contains("about to fail"),
        "the output's tail is in the report: {j}"
    );

    // 4. A [[workload]] profile whose test writes JUnit into the artifacts:
    // merged under the profile's suite; the artifacts kept in --out.
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("test.sh"),
        "#!/bin/sh\nset -e\nn=$(nproc)\necho \"tests on $n CPUs, GREETING=$GREETING\"\n\
         cat >\"$NESTLAB_ARTIFACTS/junit.xml\" <<EOF\n<testsuite name=\"mine\">\n\
         <testcase classname=\"mine.cpus\" name=\"nproc\"/>\n\
         <testcase classname=\"mine.cpus\" name=\"more\"><skipped/></testcase>\n</testsuite>\nEOF\n",
    )
    .unwrap();
    let profile = work.path().join("with-tests.toml");
    std::fs::write(
        &profile,
        "name = \"with-tests\"\nvcpus = 4\n[[node]]\ncpus = \"0-1\"\nmemory = \"512 MiB\"\n\
         [[node]]\ncpus = \"2-3\"\nmemory = \"512 MiB\"\n[[nic]]\nmodel = \"e1000e\"\nnode = 1\n\
         [[workload]]\nname = \"unit\"\ncommand = [\"sh\", \"test.sh\"]\nshares = [\"src:/src\"]\n\
         timeout = 120\nenvironment = { GREETING = \"hello there\" }\ncpunodebind = 1\nmembind = 1\n",
    )
    .unwrap();
    let out_dir = work.path().join("out");
    let junit = work.path().join("mine.xml");
    let o = nestlab(
        &[
            "run",
            profile.to_str().unwrap(),
            "--accel",
            "tcg",
            "--out",
            out_dir.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ],
        work.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("tests on 2 CPUs, GREETING=hello there"),
        "bound to node 1's two CPUs, with its environment: {}",
        show(&o)
    );
    let j = std::fs::read_to_string(&junit).unwrap();
    assert!(
        j.contains("<testcase classname=\"with-tests.mine.cpus\" name=\"nproc\"/>"),
        "{j}"
    );
    assert!(j.contains("name=\"workload.unit\"/>"), "{j}");
    assert!(out_dir.join("with-tests/artifacts/junit.xml").is_file());
    assert!(out_dir
        .join("with-tests/capture/workload-unit.log")
        .is_file());
    assert!(
        !out_dir.join("with-tests/share").exists(),
        "control files left"
    );

    // 5. Bad input: a share that does not exist, exit 2, nothing started.
    let o = nestlab(
        &[
            "run",
            "minimal",
            "--share",
            "/nonexistent/folder",
            "--",
            "true",
        ],
        work.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--share /nonexistent/folder"), "{err}");
    assert!(!err.contains("booting"), "{err}");

    // 0, continued: the quiet workload passed.
    let o = quiet.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "slept");
    eprintln!(
        "workloads: 5 quiet minutes, then success: passed after {:.0} s",
        t0.elapsed().as_secs_f64()
    );

    // Nothing left behind but --out.
    let new_domains: Vec<String> = domains()
        .into_iter()
        .filter(|d| !before_domains.contains(d))
        .collect();
    assert!(new_domains.is_empty(), "domains left: {new_domains:?}");
    let leaked: Vec<String> = temp_leftovers()
        .into_iter()
        .filter(|n| !before_tmp.contains(n))
        .collect();
    assert!(leaked.is_empty(), "temporary run folders left: {leaked:?}");
}

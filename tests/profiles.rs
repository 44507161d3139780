//! Good and bad profiles side by side (as libvirt pairs its test cases):
//! every file in tests/profiles/good must load, every file in
//! tests/profiles/bad must be refused with the message in its snapshot, and
//! the CLI must exit 2 for it without a panic.

use std::path::Path;
use std::process::Command;

use nestlab::load_profile_file;

fn rel(path: &Path) -> &Path {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
}

#[test]
fn good_profiles_load_and_render() {
    insta::glob!("profiles/good/*.toml", |path| {
        let p = load_profile_file(rel(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let t = nestlab::resolve::resolve(&p).unwrap();
        let xml = nestlab::xml::render::render(
            &t,
            nestlab::model::Accel::Tcg,
            &nestlab::xml::render::BootSpec::placeholder(),
        )
        .to_xml()
        .unwrap();
        insta::assert_snapshot!(xml);
    });
}

#[test]
fn bad_profiles_give_their_error() {
    insta::glob!("profiles/bad/*.toml", |path| {
        let err = load_profile_file(rel(path)).expect_err("a bad profile loaded");
        insta::assert_snapshot!(err.to_string());
    });
}

#[test]
fn cli_exits_2_on_every_bad_profile() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/profiles/bad");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        for args in [vec!["validate"], vec!["xml"]] {
            let out = Command::new(env!("CARGO_BIN_EXE_nestlab"))
                .args(&args)
                .arg(&path)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{} {args:?}: {stderr}",
                path.display()
            );
            assert!(stderr.starts_with("error: "), "{stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
            assert!(out.stdout.is_empty(), "{} printed XML", path.display());
        }
        n += 1;
    }
    assert!(n >= 40, "only {n} bad profiles");
}

#[test]
fn huge_file_is_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.toml");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(100 * 1024 * 1024).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nestlab"))
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("too large for a profile"));
}

#[test]
fn not_utf8_and_directories_and_missing() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin.toml");
    std::fs::write(&bin, [0xff, 0xfe, 0x00, 0x41]).unwrap();
    for (arg, want) in [
        (bin.display().to_string(), "not UTF-8"),
        (dir.path().display().to_string(), "is a directory"),
        (
            "no-such-profile".to_string(),
            "no profile 'no-such-profile'",
        ),
        ("/no/such/file.toml".to_string(), "cannot read profile"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_nestlab"))
            .args(["validate", &arg])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{arg}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{arg}: {stderr}");
    }
}

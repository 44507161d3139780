//! Tests of [`super`], in a file of their own to keep the module short.
use super::*;
use std::time::Duration;

fn nonce() -> Nonce {
    "abc123".parse().unwrap()
}

/// A console as the appliance prints it, with the awkward bits: CRLF,
/// boot noise, a printk inside a file, an output without final newline,
/// forged markers, invalid UTF-8, an error marker.
fn sample() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(b"\x1b[2J\x1b[01;01HSeaBIOS (version 1.16)\r\n");
    v.extend_from_slice(b"[    0.000000] Linux version 6.1.0-56-amd64\r\n");
    v.extend_from_slice(b"[    0.000000] Command line: console=ttyS0 nestlab.nonce=abc123\r\n");
    v.extend_from_slice(b"::nestlab:abc123:init:1.73::\r\n");
    v.extend_from_slice(b"::nestlab:abc123:error:insmod:kvm_intel: insmod: can't insert 'kvm-intel.ko': Operation not supported ::\r\n");
    v.extend_from_slice(b"::nestlab:abc123:begin:lspci.txt::\r\n");
    v.extend_from_slice(
        b"0000:00:00.0 Host bridge [0600]: Intel Corporation 82G33 [8086:29c0]\r\n",
    );
    v.extend_from_slice(b"::nestlab:ffff:end:lspci.txt:0::\r\n");
    v.extend_from_slice(b"[    3.100000] e1000e 0000:b5:00.0: link up\r\n");
    v.extend_from_slice(b"bad \xff\xfe utf8\r\n");
    v.extend_from_slice(b"::nestlab:abc123:end:lspci.txt:0::\r\n");
    v.extend_from_slice(b"::nestlab:abc123:begin:kvm.txt::\r\n");
    v.extend_from_slice(b"no newline here::nestlab:abc123:end:kvm.txt:1::\r\n");
    v.extend_from_slice(b"::nestlab:abc123:begin:sriov.txt::\r\n");
    v.extend_from_slice(b"::nestlab:abc123:end:dmesg.txt:0::\r\n");
    v.extend_from_slice(b"::nestlab:abc123:end:sriov.txt:0::\r\n");
    v.extend_from_slice(b"::nestlab:abc123:done:9.5::\r\n");
    v.extend_from_slice(b"[   10.000000] reboot: Power down\r\n");
    v
}

#[test]
fn reads_the_sample() {
    let mut r = ConsoleReader::new(&nonce());
    let events = r.feed(&sample());
    assert_eq!(
        events,
        vec![
            ConsoleEvent::InitStarted,
            ConsoleEvent::StepFailed(StepError {
                step: "insmod".into(),
                detail: "kvm_intel: insmod: can't insert 'kvm-intel.ko': Operation not supported"
                    .into()
            }),
            ConsoleEvent::FileBegun("lspci.txt".into()),
            ConsoleEvent::FileDone("lspci.txt".into()),
            ConsoleEvent::FileBegun("kvm.txt".into()),
            ConsoleEvent::FileDone("kvm.txt".into()),
            ConsoleEvent::FileBegun("sriov.txt".into()),
            ConsoleEvent::FileDone("sriov.txt".into()),
            ConsoleEvent::Done,
        ]
    );
    let set = r.finish().unwrap();
    assert_eq!(
        set.get("lspci.txt").unwrap(),
        "0000:00:00.0 Host bridge [0600]: Intel Corporation 82G33 [8086:29c0]\n\
         ::nestlab:ffff:end:lspci.txt:0::\n\
         [    3.100000] e1000e 0000:b5:00.0: link up\n\
         bad \u{fffd}\u{fffd} utf8\n"
    );
    assert_eq!(set.exit_code("lspci.txt"), Some(0));
    assert_eq!(set.get("kvm.txt"), Some("no newline here"));
    assert_eq!(set.exit_code("kvm.txt"), Some(1));
    assert_eq!(
        set.get("sriov.txt"),
        Some("::nestlab:abc123:end:dmesg.txt:0::\n")
    );
    assert_eq!(set.init_uptime, Some(Duration::from_millis(1730)));
    assert_eq!(set.done_uptime, Some(Duration::from_millis(9500)));
    assert_eq!(set.step_errors.len(), 1);
    assert_eq!(
        r.tail(1),
        vec!["[   10.000000] reboot: Power down".to_string()]
    );
}

fn run_chunked(
    data: &[u8],
    cuts: &[usize],
) -> (Vec<ConsoleEvent>, Result<CaptureSet, ConsoleError>) {
    let mut r = ConsoleReader::new(&nonce());
    let mut events = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
        events.extend(r.feed(&data[from..cut]));
        from = cut;
    }
    (events, r.finish())
}

#[test]
fn chunking_at_every_byte_boundary_gives_the_same_result() {
    let data = sample();
    let whole = run_chunked(&data, &[]);
    assert!(whole.1.is_ok());
    for i in 0..=data.len() {
        assert_eq!(run_chunked(&data, &[i]), whole, "split at {i}");
    }
    let every: Vec<usize> = (1..data.len()).collect();
    assert_eq!(run_chunked(&data, &every), whole, "byte by byte");
    // A truncated stream, too: every prefix read whole or bytewise agrees.
    for end in (0..data.len()).step_by(7) {
        let part = &data[..end];
        let bytewise: Vec<usize> = (1..part.len()).collect();
        assert_eq!(
            run_chunked(part, &bytewise),
            run_chunked(part, &[]),
            "prefix {end}"
        );
    }
}

/// `gzip -c | base64` as busybox prints it: 76 characters a line.
fn gz_b64(data: &[u8]) -> String {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    let zipped = enc.finish().unwrap();
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::new();
    for chunk in zipped.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                text.push('=');
            }
        }
    }
    let mut out = String::new();
    for line in text.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out
}

/// A console with compressed captures: CRLF, a kernel message between
/// payload lines, an output without final newline, invalid UTF-8.
fn gz_sample() -> Vec<u8> {
    let dmesg: String = (0..400)
        .map(|i| format!("[    {i}.000000] pci 0000:b5:00.0: line {i}\n"))
        .collect();
    let mut v = b"SeaBIOS\r\n::nestlab:abc123:init:1.5::\r\n".to_vec();
    v.extend_from_slice(b"::nestlab:abc123:begin-gz:dmesg.txt::\r\n");
    let payload = gz_b64(dmesg.as_bytes());
    let lines: Vec<&str> = payload.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        v.extend_from_slice(l.as_bytes());
        v.extend_from_slice(b"\r\n");
        if i == 1 {
            v.extend_from_slice(b"[    3.100000] e1000e 0000:b5:00.0: link up\r\n");
        }
    }
    v.extend_from_slice(b"::nestlab:abc123:end:dmesg.txt:0::\r\n");
    v.extend_from_slice(b"::nestlab:abc123:begin-gz:kvm.txt::\r\n");
    v.extend_from_slice(
        gz_b64(b"no newline \xff here")
            .replace('\n', "\r\n")
            .as_bytes(),
    );
    v.extend_from_slice(b"::nestlab:abc123:end:kvm.txt:1::\r\n");
    v.extend_from_slice(b"::nestlab:abc123:begin:sriov.txt::\r\nplain still works\r\n");
    v.extend_from_slice(b"::nestlab:abc123:end:sriov.txt:0::\r\n");
    v.extend_from_slice(b"::nestlab:abc123:done:2.5::\r\n[    3.2] reboot: Power down\r\n");
    v
}

#[test]
fn reads_compressed_captures() {
    let data = gz_sample();
    let mut r = ConsoleReader::new(&nonce());
    let events = r.feed(&data);
    assert_eq!(
        events,
        vec![
            ConsoleEvent::InitStarted,
            ConsoleEvent::FileBegun("dmesg.txt".into()),
            ConsoleEvent::FileDone("dmesg.txt".into()),
            ConsoleEvent::FileBegun("kvm.txt".into()),
            ConsoleEvent::FileDone("kvm.txt".into()),
            ConsoleEvent::FileBegun("sriov.txt".into()),
            ConsoleEvent::FileDone("sriov.txt".into()),
            ConsoleEvent::Done,
        ]
    );
    let set = r.finish().unwrap();
    let dmesg = set.get("dmesg.txt").unwrap();
    assert_eq!(dmesg.lines().count(), 400);
    assert!(dmesg.starts_with("[    0.000000] pci 0000:b5:00.0: line 0\n"));
    assert!(
        !dmesg.contains("link up"),
        "a kernel message is not payload"
    );
    assert_eq!(set.get("kvm.txt"), Some("no newline \u{fffd} here"));
    assert_eq!(set.exit_code("kvm.txt"), Some(1));
    assert_eq!(set.get("sriov.txt"), Some("plain still works\n"));
    // The payload stays out of the tail; the kernel message is in it.
    let tail = r.tail(200);
    assert!(tail.iter().any(|l| l.contains("link up")));
    assert!(!tail.iter().any(|l| l.starts_with("H4sI")), "{tail:?}");
    assert!(
        data.len() < 4000,
        "{} bytes for 16 KB of output",
        data.len()
    );
}

#[test]
fn compressed_chunking_at_every_byte_boundary_gives_the_same_result() {
    let data = gz_sample();
    let whole = run_chunked(&data, &[]);
    assert!(whole.1.is_ok());
    for i in 0..=data.len() {
        assert_eq!(run_chunked(&data, &[i]), whole, "split at {i}");
    }
    let every: Vec<usize> = (1..data.len()).collect();
    assert_eq!(run_chunked(&data, &every), whole, "byte by byte");
    for end in (0..data.len()).step_by(11) {
        let part = &data[..end];
        let bytewise: Vec<usize> = (1..part.len()).collect();
        assert_eq!(
            run_chunked(part, &bytewise),
            run_chunked(part, &[]),
            "prefix {end}"
        );
    }
}

#[test]
fn compressed_cut_short_keeps_what_decodes() {
    let text: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    let payload = gz_b64(text.as_bytes());
    let mut d = b"::nestlab:abc123:init:1::\n::nestlab:abc123:begin-gz:dmesg.txt::\n".to_vec();
    d.extend_from_slice(&payload.as_bytes()[..payload.len() / 2]);
    let mut r = ConsoleReader::new(&nonce());
    r.feed(&d);
    let err = r.finish().unwrap_err();
    assert!(matches!(&err, ConsoleError::Truncated { file, .. } if file == "dmesg.txt"));
    let got = &r.files()["dmesg.txt"];
    assert_eq!(got.exit_code, None);
    assert!(text.starts_with(&got.content), "a prefix of the output");
}

#[test]
fn corrupt_compressed_captures_are_errors_naming_the_file() {
    let good = gz_b64(b"hello\n");
    let mut flipped = good.clone().into_bytes();
    flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for (payload, why) in [
        ("SGVsbG8=\n".to_string(), "gzip"),
        ("H4sI=AAA\n".to_string(), "not valid base64"),
        ("H4sIAAA\n".to_string(), "not valid base64"),
        (flipped, ""),
        (good[..good.len() - 9].to_string() + "\n", ""),
    ] {
        let mut d = b"::nestlab:abc123:init:1::\n::nestlab:abc123:begin-gz:lspci.txt::\n".to_vec();
        d.extend_from_slice(payload.as_bytes());
        d.extend_from_slice(b"::nestlab:abc123:end:lspci.txt:0::\n::nestlab:abc123:done:2::\n");
        let mut r = ConsoleReader::new(&nonce());
        let events = r.feed(&d);
        assert!(!events.contains(&ConsoleEvent::FileDone("lspci.txt".into())));
        let err = r.finish().unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(&err, ConsoleError::Corrupt { file, why: w, .. } if file == "lspci.txt" && w.contains(why)),
            "{payload:?}: {msg}"
        );
        assert!(
            msg.starts_with("capture lspci.txt came compressed but cannot be decoded"),
            "{msg}"
        );
    }
    assert_eq!(base64_decode("aGk=", false).unwrap(), b"hi");
    assert_eq!(base64_decode("aGk", true).unwrap(), b"");
    assert_eq!(base64_decode("aGV5", false).unwrap(), b"hey");
    assert!(base64_decode("a*==", false).is_err());
    assert!(base64_decode("a===", false).is_err());
}

#[test]
fn nested_marker_makes_the_nested_files_expected() {
    let head = b"::nestlab:abc123:init:1::\n::nestlab:abc123:begin:kvm.txt::\ncrw\n::nestlab:abc123:end:kvm.txt:0::\n";
    // Without the marker: a plain run, the nested files are not missing.
    let mut r = ConsoleReader::new(&nonce());
    r.feed(head);
    r.feed(b"::nestlab:abc123:done:2::\n");
    let set = r.finish().unwrap();
    assert!(!set.nested);
    assert!(!set.missing().iter().any(|f| f.starts_with("nested")));
    // With it: they are, until they come.
    let mut r = ConsoleReader::new(&nonce());
    r.feed(head);
    assert_eq!(
        r.feed(b"::nestlab:abc123:nested:2::\n::nestlab:abc123:begin:nested.txt::\nboot ok\n::nestlab:abc123:end:nested.txt:0::\n"),
        vec![
            ConsoleEvent::NestedStarted(2),
            ConsoleEvent::FileBegun("nested.txt".into()),
            ConsoleEvent::FileDone("nested.txt".into()),
        ]
    );
    r.feed(b"::nestlab:abc123:done:2::\n");
    let set = r.finish().unwrap();
    assert!(set.nested);
    let missing = set.missing();
    assert!(missing.contains(&"nested-lspci.txt") && !missing.contains(&"nested.txt"));
    assert_eq!(Marker::parse("nested:x::"), None);
    assert_eq!(Marker::parse("nested:3::"), Some(Marker::Nested(3)));
}

#[test]
fn forged_markers_are_text() {
    let mut r = ConsoleReader::new(&nonce());
    let events = r.feed(
        b"::nestlab:abc124:init:1.0::\n::nestlab:ABC123:init::\n::nestlab::init::\nnestlab:abc123:init::\n",
    );
    assert!(events.is_empty());
    assert!(matches!(r.finish(), Err(ConsoleError::NoInit { .. })));
}

#[test]
fn panic_is_reported() {
    let mut r = ConsoleReader::new(&nonce());
    let ev = r.feed(
        b"[ 1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n[ 1.0] ---[ end",
    );
    assert_eq!(
        ev,
        vec![ConsoleEvent::KernelPanic(
            "Kernel panic - not syncing: VFS: Unable to mount root fs".into()
        )]
    );
    let err = r.finish().unwrap_err();
    assert!(matches!(&err, ConsoleError::KernelPanic { tail, .. } if tail.len() == 2));
    assert!(
        err.to_string()
            .contains("last console lines:\n  | [ 1.0] Kernel panic"),
        "{err}"
    );
}

#[test]
fn truncated_and_not_done() {
    let mut r = ConsoleReader::new(&nonce());
    r.feed(b"::nestlab:abc123:init:1::\n::nestlab:abc123:begin:dmesg.txt::\n[ 0.0] Linux");
    assert_eq!(r.current_file(), Some("dmesg.txt"));
    assert!(matches!(r.finish(), Err(ConsoleError::Truncated { file, .. }) if file == "dmesg.txt"));
    assert_eq!(
        r.files().get("dmesg.txt").map(|f| f.content.as_str()),
        Some("[ 0.0] Linux")
    );
    let mut r = ConsoleReader::new(&nonce());
    r.feed(b"::nestlab:abc123:init:1::\n::nestlab:abc123:begin:a.txt::\nx\n::nestlab:abc123:end:a.txt:0::\n");
    assert!(matches!(
        r.finish(),
        Err(ConsoleError::NotDone { done_count: 1, .. })
    ));
    let mut r = ConsoleReader::new(&nonce());
    assert!(r
        .finish()
        .unwrap_err()
        .to_string()
        .ends_with("the console was empty"));
}

#[test]
fn long_lines_and_garbage_never_panic() {
    // Deterministic pseudo-random bytes mixed with marker fragments.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut data = Vec::new();
    let pieces: [&[u8]; 8] = [
        b"::nestlab:abc123:",
        b"begin:a.txt::",
        b"begin-gz:a.txt::",
        b"H4sIAAAAAAAAA0tMSk5JTUvPyMzKzsnNyy8oKCopLQEA\n",
        b"end:a.txt:",
        b"::\n",
        b"\r\n",
        "\u{00e9}".as_bytes(),
    ];
    for _ in 0..20000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x % 5 == 0 {
            data.extend_from_slice(pieces[(x >> 8) as usize % pieces.len()]);
        } else {
            data.push((x >> 24) as u8);
        }
    }
    data.extend(vec![b'y'; 3 * MAX_LINE + 5]);
    let whole = run_chunked(&data, &[]);
    let cuts: Vec<usize> = (1..data.len()).step_by(997).collect();
    assert_eq!(run_chunked(&data, &cuts), whole);
    // A long line inside a file stays one line.
    let mut r = ConsoleReader::new(&nonce());
    let mut d = b"::nestlab:abc123:init:1::\n::nestlab:abc123:begin:a.txt::\n".to_vec();
    d.extend(vec![b'z'; MAX_LINE * 2 + 3]);
    d.extend_from_slice(b"\n::nestlab:abc123:end:a.txt:0::\n::nestlab:abc123:done::\n");
    r.feed(&d);
    let set = r.finish().unwrap();
    assert_eq!(set.get("a.txt").map(str::len), Some(MAX_LINE * 2 + 4));
}

#[test]
fn marker_parsing() {
    assert_eq!(Marker::parse("begin:x.txt::"), Some(Marker::Begin("x.txt")));
    assert_eq!(Marker::parse("begin:../x::"), None);
    assert_eq!(
        Marker::parse("end:x.txt:-1::junk"),
        Some(Marker::End {
            file: "x.txt",
            code: -1
        })
    );
    assert_eq!(Marker::parse("end:x.txt::"), None);
    assert_eq!(Marker::parse("init::"), Some(Marker::Init(None)));
    assert_eq!(
        Marker::parse("done:2.50::"),
        Some(Marker::Done(Some(Duration::from_millis(2500))))
    );
    assert_eq!(
        Marker::parse("error:sriov:0000:b5:00.0: no::"),
        Some(Marker::Error {
            step: "sriov",
            detail: "0000:b5:00.0: no"
        })
    );
    assert_eq!(Marker::parse("shell::"), Some(Marker::Shell));
    assert_eq!(Marker::parse("what::"), None);
    assert_eq!(Marker::parse("init"), None);
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/probe/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Real consoles, recorded from QEMU TCG boots of the appliance (see
/// tests/fixtures/probe/README.md), read whole, in odd chunks, cut short.
/// The consoles were recorded before the capture table had these files:
/// the only ones they may lack.
fn recorded_before(missing: &[&str]) -> bool {
    let newer = [
        crate::capture::CPU_TOPOLOGY.file,
        crate::capture::HUGEPAGES.file,
        crate::capture::HMAT.file,
    ];
    missing.iter().all(|m| newer.contains(m))
}

#[test]
fn real_consoles() {
    for (name, nonce) in [
        ("igb-sriov-2node", "5eed01"),
        ("e1000e-2node-verbose", "abc123"),
        ("reference-nested-gz", "652deee906234bca"),
    ] {
        let data = fixture(&format!("{name}.console"));
        let nonce: Nonce = nonce.parse().unwrap();
        let mut r = ConsoleReader::new(&nonce);
        let events = r.feed(&data);
        assert_eq!(events.first(), Some(&ConsoleEvent::InitStarted), "{name}");
        assert_eq!(events.last(), Some(&ConsoleEvent::Done), "{name}");
        let set = r.finish().unwrap();
        assert!(
            recorded_before(&set.missing()),
            "{name}: {:?}",
            set.missing()
        );
        assert!(set.files.values().all(|f| f.exit_code.is_some()), "{name}");
        // The directory form next to it was written from this console.
        let dir = CaptureSet::read_dir(std::path::Path::new(&format!(
            "{}/tests/fixtures/probe/{name}",
            env!("CARGO_MANIFEST_DIR")
        )))
        .unwrap();
        assert_eq!(dir.files, set.files, "{name}");
        // Odd chunk sizes give the same.
        let mut r2 = ConsoleReader::new(&nonce);
        let mut events2 = Vec::new();
        let mut at = 0;
        let mut size = 1;
        while at < data.len() {
            let end = (at + size).min(data.len());
            events2.extend(r2.feed(&data[at..end]));
            at = end;
            size = size * 7 % 4093 + 1;
        }
        assert_eq!(events2, events, "{name}");
        assert_eq!(r2.finish(), Ok(set.clone()), "{name}");
        // Another boot's nonce sees nothing.
        let mut r3 = ConsoleReader::new(&"0be7".parse().unwrap());
        assert!(r3.feed(&data).is_empty(), "{name}");
        assert!(
            matches!(r3.finish(), Err(ConsoleError::NoInit { .. })),
            "{name}"
        );
        // Cut short anywhere: an error, never a panic, never a wrong Ok.
        for cut in (0..data.len()).step_by(1009) {
            let mut r4 = ConsoleReader::new(&nonce);
            r4.feed(&data[..cut]);
            assert!(r4.finish().is_err(), "{name} cut at {cut}");
        }
    }
}

#[test]
fn real_igb_sriov_console_content() {
    let mut r = ConsoleReader::new(&"5eed01".parse().unwrap());
    r.feed(&fixture("igb-sriov-2node.console"));
    let set = r.finish().unwrap();
    assert_eq!(
        set.get("sriov.txt"),
        Some("0000:b5:00.0 totalvfs=7 numvfs=3\n")
    );
    assert_eq!(
        set.get("lspci.txt")
            .map(|s| s.matches("[8086:10ca]").count()),
        Some(3)
    );
    assert_eq!(set.exit_code("kvm.txt"), Some(0));
    assert!(set.get("kvm.txt").is_some_and(|s| s.contains("/dev/kvm")));
    assert_eq!(set.step_errors.len(), 1);
    assert_eq!(set.step_errors[0].step, "insmod");
    assert!(set.step_errors[0]
        .detail
        .starts_with("kvm_intel: insmod: can't insert"));
    assert!(set.init_uptime.is_some() && set.done_uptime > set.init_uptime);
}

/// A real `nestlab run reference` console: dmesg compressed, the
/// nested step's files after the `nested` marker.
#[test]
fn real_nested_gz_console_content() {
    let data = fixture("reference-nested-gz.console");
    let mut r = ConsoleReader::new(&"652deee906234bca".parse().unwrap());
    let events = r.feed(&data);
    assert!(events.contains(&ConsoleEvent::NestedStarted(1)));
    let set = r.finish().unwrap();
    assert!(set.nested);
    assert!(recorded_before(&set.missing()), "{:?}", set.missing());
    let dmesg = set.get("dmesg.txt").unwrap();
    assert!(dmesg.contains("DMAR: Intel(R) Virtualization Technology for Directed I/O"));
    assert!(dmesg.len() > 2 * data.len() / 3, "dmesg came compressed");
    assert_eq!(
        set.get("nested.txt"),
        Some("device nic8 0000:df:00.0 driver=vfio-pci group=10 vfio_dev=yes\nboot ok\n")
    );
    assert!(set
        .get("nested-lspci.txt")
        .is_some_and(|s| s.contains("[8086:10d3]")));
}

#[test]
fn real_verbose_console_content() {
    let mut r = ConsoleReader::new(&"abc123".parse().unwrap());
    r.feed(&fixture("e1000e-2node-verbose.console"));
    let set = r.finish().unwrap();
    assert_eq!(set.exit_code("kvm.txt"), Some(1));
    assert!(set
        .get("dmesg.txt")
        .is_some_and(|s| s.contains("DMAR: Intel(R) Virtualization Technology for Directed I/O")));
    assert!(set
        .get("lspci-tree.txt")
        .is_some_and(|s| s.contains("[0000:b4]")));
    assert!(set
        .get("lspci.txt")
        .is_some_and(|s| s.contains("[8086:10d3]")));
    assert_eq!(r.tail(1).len(), 1);
}

//! Tests of [`super`], in a file of their own to keep the module short.
use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../tests/fixtures/observe/lspci_tree/", $name))
    };
}

fn b(s: &str) -> Bdf {
    s.parse().unwrap()
}
fn buses(list: &[u8]) -> Vec<BusNr> {
    list.iter().map(|&x| BusNr(x)).collect()
}

/// The seed topology, whatever the root order or naming.
fn assert_seed_structure(t: &PciTree) {
    assert_eq!(t.root_buses(), buses(&[0x00, 0xb4, 0xc8, 0xdc]));
    assert_eq!(t.len(), 7 + 18);
    for (root, first) in [(0xb4u8, 0xb5u8), (0xc8, 0xc9), (0xdc, 0xdd)] {
        for k in 0..3u8 {
            let port = t.device(Bdf::new(root, k, 0)).unwrap();
            assert_eq!(port.parent, None);
            assert_eq!(port.root_bus, BusNr(root));
            let range = port.bridge.unwrap();
            assert_eq!(range.secondary, BusNr(first + k));
            assert_eq!(range.subordinate, BusNr(first + k));
            let nic = t.device(Bdf::new(first + k, 0, 0)).unwrap();
            assert_eq!(nic.parent, Some(port.bdf));
            assert_eq!(nic.root_bus, BusNr(root));
            assert_eq!(nic.bridge, None);
            assert_eq!(t.children(port.bdf).len(), 1);
        }
    }
    assert_eq!(t.on_root(BusNr(0)).len(), 7);
    assert!(t.device(b("00:1f.3")).is_some());
}

#[test]
fn seed() {
    let t = parse(fixture!("seed.txt")).unwrap();
    assert_seed_structure(&t);
    let nic = t.device(b("b6:00.0")).unwrap();
    assert_eq!(nic.parent, Some(b("b4:01.0")));
    assert!(nic.name.as_deref().unwrap().contains("82574L"));
    assert_eq!(nic.id, None);
    assert_eq!(nic.line, 9);
    let pxb = t.device(b("00:02.0")).unwrap();
    assert_eq!(
        pxb.name.as_deref(),
        Some("Red Hat, Inc. QEMU PCIe Expander bridge")
    );
    // A bridge line shows no name for the bridge itself.
    assert_eq!(t.device(b("b4:01.0")).unwrap().name, None);
    let sata = t.device(b("00:1f.2")).unwrap();
    assert_eq!(
        sata.name.as_deref(),
        Some("Intel Corporation 82801IR/IO/IH (ICH9R/DO/DH) 6 port SATA Controller [AHCI mode]")
    );
    assert_eq!(sata.id, None);
    assert!(t.skipped_lines().is_empty());
    assert_eq!(t.devices().len(), t.len());
}

#[test]
fn reverse_root_order() {
    let t = parse(fixture!("seed-reverse-order.txt")).unwrap();
    assert_seed_structure(&t);
    assert_eq!(t.devices()[0].bdf, b("dc:00.0"));
    assert_eq!(t.device(b("dd:00.0")).unwrap().line, 1);
    // Identical content to the ascending tree once sorted.
    let mut a = t.devices();
    let mut s = parse(fixture!("seed.txt")).unwrap().devices();
    a.sort_by_key(|d| d.bdf);
    s.sort_by_key(|d| d.bdf);
    let strip = |v: Vec<TreeDevice>| {
        v.into_iter()
            .map(|d| TreeDevice { line: 0, ..d })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(a), strip(s));
}

#[test]
fn old_pciids_names() {
    let t = parse(fixture!("seed-old-pciids.txt")).unwrap();
    assert_seed_structure(&t);
    let pxb = t.device(b("00:01.0")).unwrap();
    assert_eq!(pxb.name.as_deref(), Some("Red Hat, Inc. Device 000b"));
    assert_eq!(pxb.id, None);
}

#[test]
fn no_pciids_names_carry_ids() {
    let t = parse(fixture!("seed-no-pciids.txt")).unwrap();
    assert_seed_structure(&t);
    let pxb = t.device(b("00:03.0")).unwrap();
    assert_eq!(pxb.name.as_deref(), Some("Device 1b36:000b"));
    assert_eq!(pxb.id, Some(PciId::new(0x1b36, 0x000b)));
    assert_eq!(
        t.device(b("df:00.0")).unwrap().id,
        Some(PciId::new(0x8086, 0x10d3))
    );
}

#[test]
fn no_names_at_all() {
    let t = parse(fixture!("seed-no-names.txt")).unwrap();
    assert_seed_structure(&t);
    assert!(t.iter().all(|d| d.name.is_none() && d.id.is_none()));
}

#[test]
fn numeric_and_nn_ids() {
    let n = parse(fixture!("seed-numeric.txt")).unwrap();
    assert_seed_structure(&n);
    let nic = n.device(b("c9:00.0")).unwrap();
    assert_eq!(
        (nic.name.as_deref(), nic.id),
        (None, Some(PciId::new(0x8086, 0x10d3)))
    );

    let nn = parse(fixture!("seed-nn.txt")).unwrap();
    assert_seed_structure(&nn);
    let nic = nn.device(b("c9:00.0")).unwrap();
    assert_eq!(
        nic.name.as_deref(),
        Some("Intel Corporation 82574L Gigabit Network Connection")
    );
    assert_eq!(nic.id, Some(PciId::new(0x8086, 0x10d3)));
    let sata = nn.device(b("00:1f.2")).unwrap();
    assert!(sata.name.as_deref().unwrap().ends_with("[AHCI mode]"));
    assert_eq!(sata.id, Some(PciId::new(0x8086, 0x2922)));
}

#[test]
fn sriov_functions_share_the_pf_bus() {
    let t = parse(fixture!("sriov.txt")).unwrap();
    assert_eq!(t.root_buses(), buses(&[0x00, 0xb4, 0xc8, 0xdc]));
    let port = b("c8:00.0");
    let kids: Vec<Bdf> = t.children(port).iter().map(|d| d.bdf).collect();
    assert_eq!(
        kids,
        vec![b("c9:00.0"), b("c9:10.0"), b("c9:10.2"), b("c9:10.4")]
    );
    for vf in &kids[1..] {
        let d = t.device(*vf).unwrap();
        assert_eq!(d.root_bus, BusNr(0xc8));
        assert!(d
            .name
            .as_deref()
            .unwrap()
            .contains("82576 Virtual Function"));
    }
    // The list of VFs closes before the next root port continues.
    let virtio = t.device(b("ca:00.0")).unwrap();
    assert_eq!(virtio.parent, Some(b("c8:01.0")));
    assert_eq!(
        virtio.name.as_deref(),
        Some("Red Hat, Inc. Virtio 1.0 network device")
    );
    assert_eq!(t.device(b("cb:00.0")).unwrap().parent, Some(b("c8:02.0")));
    assert_eq!(t.device(b("dd:00.0")).unwrap().parent, Some(b("dc:00.0")));
}

#[test]
fn crlf_console_noise_and_cut_lines() {
    let t = parse(fixture!("sriov-crlf-console.txt")).unwrap();
    let clean = parse(fixture!("sriov.txt")).unwrap();
    let key = |t: &PciTree| {
        t.iter()
            .map(|d| (d.bdf, d.name.clone(), d.parent, d.root_bus, d.bridge))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&t), key(&clean));
    // The lspci warning and four kernel lines; line 16 is the tail of line 15.
    assert_eq!(t.skipped_lines(), &[1, 4, 11, 20, 25]);
    let vf = t.device(b("c9:10.0")).unwrap();
    assert_eq!(
        vf.name.as_deref(),
        Some("Intel Corporation 82576 Virtual Function")
    );
    assert_eq!(vf.line, 15);
}

#[test]
fn extras_nested_bridges_empty_bridges_and_ranges() {
    let t = parse(fixture!("extras.txt")).unwrap();
    assert_eq!(t.root_buses(), buses(&[0x00, 0xb4, 0xc8, 0xdc]));
    let qxl = t.device(b("00:01.0")).unwrap();
    assert!(qxl.name.as_deref().unwrap().contains("QXL"));
    assert!(t
        .device(b("01:00.0"))
        .unwrap()
        .name
        .as_deref()
        .unwrap()
        .contains("XHCI"));
    // Empty root port: a bridge with no children.
    let empty = t.device(b("00:07.0")).unwrap();
    assert_eq!(empty.bridge.unwrap().secondary, BusNr(3));
    assert!(t.children(empty.bdf).is_empty());
    let empty2 = t.device(b("dc:03.0")).unwrap();
    assert_eq!(empty2.bridge.unwrap().secondary, BusNr(0xe0));
    assert!(t.children(empty2.bdf).is_empty());
    // A bus range: devices on the secondary bus.
    let ranged = t.device(b("00:08.0")).unwrap();
    assert_eq!(
        ranged.bridge,
        Some(BusRange {
            secondary: BusNr(4),
            subordinate: BusNr(5)
        })
    );
    assert_eq!(t.device(b("04:00.0")).unwrap().parent, Some(ranged.bdf));
    // dmi-to-pci bridge -> pci-bridge -> two virtio devices.
    let dmi = t.device(b("00:1e.0")).unwrap();
    assert_eq!(dmi.bridge.unwrap().subordinate, BusNr(7));
    let pci_bridge = t.device(b("06:01.0")).unwrap();
    assert_eq!(pci_bridge.parent, Some(dmi.bdf));
    assert_eq!(pci_bridge.bridge.unwrap().secondary, BusNr(7));
    let net = t.device(b("07:01.0")).unwrap();
    let console = t.device(b("07:02.0")).unwrap();
    assert_eq!(net.parent, Some(pci_bridge.bdf));
    assert_eq!(console.parent, Some(pci_bridge.bdf));
    assert_eq!(console.root_bus, BusNr(0));
    assert_eq!(console.line, 11);
    // The root bus continues after the nested list.
    assert_eq!(t.device(b("00:1f.0")).unwrap().parent, None);
    assert_eq!(t.len(), 13 + 6 + 18 + 1);
}

#[test]
fn single_root_form() {
    let t = parse(fixture!("single-root.txt")).unwrap();
    assert_eq!(t.root_buses(), buses(&[0]));
    assert_eq!(t.device(b("01:00.0")).unwrap().parent, Some(b("00:01.0")));
    let vfs = t.children(b("00:02.0"));
    assert_eq!(vfs.len(), 3);
    assert_eq!(vfs[2].bdf, b("02:10.2"));
    assert_eq!(t.device(b("00:03.0")).unwrap().parent, None);
    assert_eq!(t.len(), 11);

    let host = parse(fixture!("host-virtio.txt")).unwrap();
    assert_eq!(host.root_buses(), buses(&[0]));
    assert_eq!(host.len(), 6);
    assert_eq!(
        host.device(b("00:00.0")).unwrap().name.as_deref(),
        Some("Intel Corporation Device 0d57")
    );

    let one = parse(fixture!("one-device.txt")).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one.devices()[0].bdf, b("00:00.0"));
}

#[test]
fn bridge_with_a_list_of_buses() {
    let t = parse(fixture!("bridge-bus-list.txt")).unwrap();
    assert_eq!(t.root_buses(), buses(&[0]));
    let br = b("00:1c.0");
    assert_eq!(
        t.device(br).unwrap().bridge,
        Some(BusRange {
            secondary: BusNr(1),
            subordinate: BusNr(3)
        })
    );
    let kids: Vec<Bdf> = t.children(br).iter().map(|d| d.bdf).collect();
    assert_eq!(kids, vec![b("01:00.0"), b("03:00.0")]);
    assert_eq!(t.device(b("00:1f.3")).unwrap().parent, None);
}

#[test]
fn bad_inputs_name_the_line() {
    let e = parse(fixture!("bad-truncated.txt")).unwrap_err();
    assert_eq!(e.line, 10);
    assert!(e.message.contains("bridge"), "{e}");
    assert!(e.to_string().starts_with("line 10: "), "{e}");

    let e = parse(fixture!("bad-orphan-continuation.txt")).unwrap_err();
    assert_eq!(e.line, 4);
    assert!(e.message.contains("no open branch"), "{e}");

    let e = parse(fixture!("bad-address.txt")).unwrap_err();
    assert_eq!(e.line, 5);
    assert!(e.message.contains("a device like 00.0"), "{e}");

    let e = parse(fixture!("bad-not-lspci.txt")).unwrap_err();
    assert_eq!(e.to_string(), "line 1: cannot read 'sh: lspci: not found'");

    let e = parse("").unwrap_err();
    assert_eq!(e.message, "no PCI tree in the output");
    let e = parse("[    1.000000] only the kernel spoke\n").unwrap_err();
    assert_eq!(e.message, "no PCI tree in the output");
}

#[test]
fn odd_shapes() {
    // -vv prints base address lines under devices: skipped.
    let vv = "-[0000:00]-+-00.0  Host\n           |  Memory at fe000000 (32-bit, prefetchable) [size=8M]\n           \\-01.0  Other\n";
    let t = parse(vv).unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t.skipped_lines(), &[2]);
    // An empty root bus.
    let t = parse("-[0000:00]-\n").unwrap();
    assert!(t.is_empty());
    assert_eq!(t.root_buses(), buses(&[0]));
    // Domains other than 0.
    let t = parse("-+-[0000:00]---00.0\n \\-[0001:00]---00.0\n").unwrap();
    assert_eq!(t.devices()[1].bdf.domain, 1);
    // A cut at the very end of a line leaves an empty tail.
    let cut = "-[0000:00]-+-00.0  A[   1.000000] msg\n\n           \\-01.0  B\n";
    let t = parse(cut).unwrap();
    assert_eq!(t.devices()[0].name.as_deref(), Some("A"));
    assert_eq!(t.len(), 2);
    // Slot and function limits.
    assert!(parse("-[0000:00]---20.0\n").is_err());
    assert!(parse("-[0000:00]---00.8\n").is_err());
    assert!(parse("-[0000:00]---00.0junk\n").is_err());
    assert!(parse("-[0000:0x]---00.0\n").is_err());
    assert!(parse("-[0000:00]---00.0-[0g]--\n").is_err());
}

#[test]
fn huge_lines_do_not_overflow() {
    let deep = format!(
        "-[0000:00]---{}00.0-[01]--",
        "00.0-[01]----".repeat(199_999)
    );
    let t = parse(&deep).unwrap();
    assert_eq!(t.len(), 200_000);
    assert_eq!(t.devices()[199_999].parent, Some(Bdf::new(1, 0, 0)));
    let wide = format!("-[0000:00]-{}", "+-".repeat(300_000));
    assert!(parse(&wide).is_err());
    let name = format!("-[0000:00]---00.0  {}", "é".repeat(500_000));
    assert_eq!(parse(&name).unwrap().len(), 1);
}

#[test]
fn split_name_forms() {
    assert_eq!(split_name(""), (None, None));
    assert_eq!(
        split_name("  8086:10d3"),
        (None, Some(PciId::new(0x8086, 0x10d3)))
    );
    assert_eq!(
        split_name("  Foo [AHCI mode] [8086:2922]"),
        (
            Some("Foo [AHCI mode]".into()),
            Some(PciId::new(0x8086, 0x2922))
        )
    );
    assert_eq!(
        split_name("  Foo [AHCI mode]"),
        (Some("Foo [AHCI mode]".into()), None)
    );
    assert_eq!(
        split_name("  Device 1b36:000b"),
        (
            Some("Device 1b36:000b".into()),
            Some(PciId::new(0x1b36, 0x000b))
        )
    );
    assert_eq!(split_name("  Red Hat, Inc. Device 000b").1, None);
}

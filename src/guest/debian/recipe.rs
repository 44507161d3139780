//! What goes into the Debian virtual host's image: the packages, what dpkg
//! leaves out, and the customize hook (the image's configuration), all as
//! text whose hash names the cache entry.
//!
//! Measured on this project's machine kind (2 cores, TCG, a loaded host):
//! `--variant=essential` with the packages below and no recommends builds in
//! 80-150 s into a 583 MB root (224 MB of it kernel modules); the sound,
//! GPU, media, wireless, InfiniBand, IIO, staging, Bluetooth and ISDN
//! module trees are left out; update-initramfs is kept from running (nestlab
//! boots the image with its own initramfs, about 55 s saved). With a fixed
//! `SOURCE_DATE_EPOCH` two builds give bit-identical file trees.
//!
//! The image knows nothing of nestlab's agent: the initramfs installs the
//! agent and its unit at every boot (into the run's overlay), so a new
//! nestlab version does not need a new image.

use crate::guest::agent;

/// The Debian release.
pub const SUITE: &str = "bookworm";
/// mmdebstrap's variant: Essential:yes packages plus the includes.
pub const VARIANT: &str = "essential";
/// Files get this time (2025-06-01), so builds are reproducible.
pub const SOURCE_DATE_EPOCH: &str = "1748736000";
/// The image's size (sparse; about 650 MB are used).
pub const IMAGE_SIZE: &str = "2G";

/// Packages besides the kernel (`linux-image-<version>`, pinned to the
/// version nestlab boots so that its modules match).
pub const PACKAGES: &[&str] = &[
    "systemd-sysv",
    "udev",
    "kmod",
    "passwd",
    "libvirt-daemon-system",
    "libvirt-clients",
    "qemu-system-x86",
    "numactl",
    "pciutils",
    "busybox-static",
    "iproute2",
    "procps",
    "python3",
    "python3-libvirt",
];

/// Paths dpkg does not install.
pub const DPKG_EXCLUDES: &[&str] = &[
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/share/lintian/*",
    "/lib/modules/*/kernel/sound/*",
    "/lib/modules/*/kernel/drivers/gpu/*",
    "/lib/modules/*/kernel/drivers/media/*",
    "/lib/modules/*/kernel/drivers/net/wireless/*",
    "/lib/modules/*/kernel/net/wireless/*",
    "/lib/modules/*/kernel/net/mac80211/*",
    "/lib/modules/*/kernel/drivers/infiniband/*",
    "/lib/modules/*/kernel/drivers/iio/*",
    "/lib/modules/*/kernel/drivers/staging/*",
    "/lib/modules/*/kernel/drivers/bluetooth/*",
    "/lib/modules/*/kernel/net/bluetooth/*",
    "/lib/modules/*/kernel/drivers/isdn/*",
    // No initramfs: nestlab boots the image with its own.
    "/etc/kernel/postinst.d/initramfs-tools",
];

/// Units that only cost time in a throwaway virtual host under TCG.
pub const MASKED_UNITS: &[&str] = &[
    "libvirt-guests.service",
    "systemd-logind.service",
    "modprobe@drm.service",
    "modprobe@efi_pstore.service",
    "modprobe@fuse.service",
    "modprobe@loop.service",
    "modprobe@dm_mod.service",
    "modprobe@configfs.service",
    "systemd-pstore.service",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-fs-fuse-connections.mount",
    "sys-kernel-config.mount",
    "dev-mqueue.mount",
    "systemd-update-utmp.service",
    "systemd-update-utmp-runlevel.service",
    "systemd-random-seed.service",
    "systemd-journal-flush.service",
    "dpkg-db-backup.timer",
    "fstrim.timer",
    "logrotate.timer",
    "systemd-tmpfiles-clean.timer",
    "getty@tty1.service",
    "serial-getty@ttyS0.service",
    "proc-sys-fs-binfmt_misc.automount",
    "systemd-ask-password-wall.path",
    "systemd-ask-password-console.path",
];

/// Where the image keeps the nested guest's initramfs (busybox, lspci).
pub const L2_INITRD: &str = "/usr/local/share/nestlab/l2-initrd.img";

/// Units whose sandboxing (seccomp filters, BPF programs, namespaces)
/// costs seconds of emulated CPU at every boot under TCG.
const UNSANDBOXED: &[&str] = &[
    "systemd-udevd.service",
    "systemd-journald.service",
    "systemd-machined.service",
];

/// The customize hook mmdebstrap runs with the new root as `$1`.
pub fn customize_hook() -> String {
    let masks = MASKED_UNITS.join(" ");
    let unsandboxed = UNSANDBOXED.join(" ");
    let l2_init = agent::nested_init_script_waiting();
    format!(
        r#"#!/bin/sh
# nestlab's customize hook for the Debian virtual host (generated; its text
# is part of the image's cache key).
set -eu
R=$1

# Identity: a fixed hostname, no machine-id (systemd makes one per boot).
echo vhost >"$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 vhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$R/etc/hosts"
: >"$R/etc/resolv.conf"
: >"$R/etc/machine-id"
printf '/dev/vda / ext4 rw,noatime 0 0\n' >"$R/etc/fstab"

# root has no password: logins happen only on the serial console (no sshd).
chroot "$R" passwd -d root
mkdir -p "$R/etc/systemd/system/serial-getty@ttyS0.service.d"
cat >"$R/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 - $TERM
EOF

# The journal in memory only; nothing on the console but the agent.
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nForwardToConsole=no\n' >"$R/etc/systemd/journald.conf.d/nestlab.conf"

# What only costs time here: masked (the serial getty too: the agent starts
# it for `nestlab up`).
for u in {masks}; do ln -sf /dev/null "$R/etc/systemd/system/$u"; done
for u in {unsandboxed}; do
	mkdir -p "$R/etc/systemd/system/$u.d"
	printf '[Service]\nSystemCallFilter=\nSystemCallArchitectures=\nIPAddressDeny=\nRestrictAddressFamilies=\nMemoryDenyWriteExecute=no\nRestrictNamespaces=no\nLockPersonality=no\n' >"$R/etc/systemd/system/$u.d/nestlab.conf"
done

# libvirt: no idle exit, no default NAT network.
echo 'LIBVIRTD_ARGS=""' >>"$R/etc/default/libvirtd"
rm -f "$R/etc/libvirt/qemu/networks/autostart/default.xml"

# The nested guest's initramfs: static busybox, lspci with its libraries,
# an /init that prints lspci -nn between markers and waits to be destroyed.
T="$R/tmp/nestlab-l2"
rm -rf "$T"
mkdir -p "$T/bin" "$T/usr/bin" "$T/usr/share/misc" "$T/proc" "$T/sys" "$T/dev"
cp "$R/bin/busybox" "$T/bin/busybox"
for a in $(chroot "$R" /bin/busybox --list); do
	[ -e "$T/bin/$a" ] || ln -s busybox "$T/bin/$a"
done
lspci=$(chroot "$R" sh -c 'command -v lspci')
cp "$R$lspci" "$T/usr/bin/lspci"
for lib in $(chroot "$R" ldd "$lspci" | awk '/=> \//{{print $3}} /^\t\/[^ ]*ld-linux/{{print $1}}'); do
	mkdir -p "$T$(dirname "$lib")"
	cp -L "$R$lib" "$T$lib"
done
[ -e "$R/usr/share/misc/pci.ids" ] && cp "$R/usr/share/misc/pci.ids" "$T/usr/share/misc/"
cat >"$T/init" <<'EOF'
{l2_init}EOF
chmod 755 "$T/init"
mkdir -p "$R$(dirname {L2_INITRD})"
(cd "$T" && find . -exec touch -h -d @"$SOURCE_DATE_EPOCH" {{}} + && find . | LC_ALL=C sort | cpio -o -H newc --quiet --reproducible | gzip -9n) >"$R{L2_INITRD}"
rm -rf "$T"
"#
    )
}

/// The text the image's cache key hashes: everything that decides what the
/// build makes.
pub fn inputs(kernel_version: &str, mmdebstrap_version: &str) -> String {
    let mut s = format!(
        "nestlab debian image, format 1\nsuite {SUITE}\nvariant {VARIANT}\nsource-date-epoch {SOURCE_DATE_EPOCH}\nsize {IMAGE_SIZE}\nkernel linux-image-{kernel_version}\nmmdebstrap {mmdebstrap_version}\n"
    );
    for p in PACKAGES {
        s.push_str(&format!("package {p}\n"));
    }
    for d in DPKG_EXCLUDES {
        s.push_str(&format!("exclude {d}\n"));
    }
    s.push_str("hook\n");
    s.push_str(&customize_hook());
    s
}

//! The kernel command line the appliance boots with
//! ([`default_cmdline`]), and the guest kernel's build configuration
//! ([`kernel_config`]), whose `CONFIG_HZ` gives `lpj=` under TCG
//! ([`crate::guest::tcg_boot_args`], with the TSC frequency the host's
//! libvirt reports).

use std::fs;

use super::GuestKernel;

/// The kernel command line the appliance is meant to boot with, before
/// `intel_iommu=on` and the `nestlab.*` parameters
/// ([`AgentParams::to_cmdline`](crate::guest::agent::AgentParams::to_cmdline)).
///
/// - `console=ttyS0`: the probe talks on the first serial port.
/// - `panic=-1`: a panic reboots at once; with `on_reboot=destroy` (QEMU
///   `-no-reboot`) the guest then goes away instead of hanging forever.
/// - `quiet`: nothing but emergencies on the serial console before /init
///   (about 0.3 s less under TCG); the whole log is still captured as
///   `dmesg.txt`.
/// - `mitigations=off`, `nokaslr`, `cryptomgr.notests`, `8250.nr_uarts=1`:
///   skip work that only costs time in a throwaway guest (together about
///   0.2 s under TCG, within the noise one by one).
///
/// - `maxcpus=1`: the kernel boots on CPU 0 alone and /init brings every
///   other present CPU online after loading the modules, while the PCI
///   captures run. Loading kvm and kvm_amd took 2.8 s with the reference's
///   8 CPUs online under TCG and 0.35 s with one: kvm patches hundreds of
///   static calls, and each patch waits for every online CPU. numactl is
///   captured only once every CPU is online.
/// - `rcupdate.rcu_expedited=1`: bringing a CPU online waits for RCU grace
///   periods; expedited, the 7 extra CPUs of the reference come online in
///   0.8 s instead of 1.2 s.
///
/// - `no_timer_check`: the kernel checks early that the I/O APIC delivers
///   the timer interrupt within a few ticks; a TCG vCPU starved by a busy
///   host fails that check, and with interrupt remapping on the kernel
///   then panics ("timer doesn't work through Interrupt-remapped IO-APIC",
///   seen in a `reference` boot on a 2-core machine with a load of 6).
///   QEMU's I/O APIC delivers the timer; the check only measures the host's
///   load.
///
/// Under TCG [`crate::guest::tcg_boot_args`] adds `lpj=`.
///
/// Left out on purpose: `tsc=reliable` (TCG vCPUs' TSCs are not
/// synchronised, so telling the kernel they are is wrong), `earlyprintk`
/// (debugging only).
pub fn default_cmdline() -> &'static str {
    "console=ttyS0 panic=-1 quiet mitigations=off nokaslr cryptomgr.notests 8250.nr_uarts=1 maxcpus=1 rcupdate.rcu_expedited=1 no_timer_check"
}

/// The guest kernel's build configuration, `config-<version>` beside its
/// image (where Debian's packages put it), when readable.
pub fn kernel_config(kernel: &GuestKernel) -> Option<String> {
    let dir = kernel.vmlinuz.parent()?;
    fs::read_to_string(dir.join(format!("config-{}", kernel.version))).ok()
}

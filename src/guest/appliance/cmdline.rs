//! The kernel command line the appliance boots with
//! ([`default_cmdline`]), and what a guest under TCG gets on top of it
//! ([`boot_args_for_tcg`]: `lpj=` from the host's TSC frequency and the
//! guest kernel's `CONFIG_HZ`, read by [`kernel_config`]).

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
/// Under TCG [`boot_args_for_tcg`] adds `lpj=`.
///
/// Left out on purpose: `tsc=reliable` and `no_timer_check` (no measurable
/// gain; TCG vCPUs' TSCs are not synchronised, so telling the kernel they
/// are is wrong), `earlyprintk` (debugging only).
pub fn default_cmdline() -> &'static str {
    "console=ttyS0 panic=-1 quiet mitigations=off nokaslr cryptomgr.notests 8250.nr_uarts=1 maxcpus=1 rcupdate.rcu_expedited=1"
}

/// Extra kernel arguments for a guest under TCG: `lpj=` (loops per jiffy)
/// from the host's TSC frequency and the guest kernel's `CONFIG_HZ`, when
/// both are known.
///
/// Under TCG the guest's TSC is the host's, and the boot CPU derives its
/// `lpj` from the TSC, but every other CPU measures it again with timer
/// interrupts (about 60 ms each under TCG, and the kernel often gives up:
/// "failed to get a good estimate for loops_per_jiffy ... Consider using
/// lpj="). `udelay` counts TSC cycles scaled by `lpj`, so the value the
/// boot CPU would compute is the right one for all of them.
pub fn boot_args_for_tcg(cpuinfo: &str, kernel_config: Option<&str>) -> Option<String> {
    let hz: u64 = kernel_config?
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ="))?
        .trim()
        .parse()
        .ok()
        .filter(|hz| *hz > 0)?;
    let mhz: f64 = cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()
        .filter(|m: &f64| m.is_finite() && *m >= 100.0 && *m <= 100_000.0)?;
    let lpj = (mhz * 1e6 / hz as f64).round() as u64;
    Some(format!("lpj={lpj}"))
}

/// The guest kernel's build configuration, `config-<version>` beside its
/// image (where Debian's packages put it), when readable.
pub fn kernel_config(kernel: &GuestKernel) -> Option<String> {
    let dir = kernel.vmlinuz.parent()?;
    fs::read_to_string(dir.join(format!("config-{}", kernel.version))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lpj_from_host_mhz_and_kernel_hz() {
        let cpuinfo = "processor\t: 0\ncpu MHz\t\t: 2596.128\nflags\t: fpu\n";
        assert_eq!(
            boot_args_for_tcg(cpuinfo, Some("CONFIG_X=y\nCONFIG_HZ=250\n")),
            Some("lpj=10384512".into())
        );
        assert_eq!(
            boot_args_for_tcg(cpuinfo, Some("CONFIG_HZ=1000\n")),
            Some("lpj=2596128".into())
        );
        // Either unknown: nothing added (the kernel measures as usual).
        assert_eq!(boot_args_for_tcg(cpuinfo, None), None);
        assert_eq!(boot_args_for_tcg(cpuinfo, Some("CONFIG_HZ_250=y\n")), None);
        assert_eq!(
            boot_args_for_tcg("flags: fpu\n", Some("CONFIG_HZ=250\n")),
            None
        );
        assert_eq!(
            boot_args_for_tcg("cpu MHz : nan\n", Some("CONFIG_HZ=250\n")),
            None
        );
        assert_eq!(
            boot_args_for_tcg("cpu MHz : 2000\n", Some("CONFIG_HZ=0\n")),
            None
        );
    }
}

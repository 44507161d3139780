//! /dev/kvm in the virtual host.

use super::not_captured;
use crate::capture;
use crate::expect::Expected;
use crate::observe::Observed;
use crate::report::Check;

pub(super) fn check(e: &Expected, o: &Observed, out: &mut Vec<Check>) {
    if !e.kvm {
        return;
    }
    match &o.kvm {
        None => out.push(Check::skip(
            "kvm.present",
            "/dev/kvm",
            not_captured(&capture::KVM),
        )),
        Some(k) => {
            let ok = k.present && k.is_char_device;
            out.push(Check::judge(
                "kvm.present",
                ok,
                "/dev/kvm, a character device",
                if ok { format!("/dev/kvm {}", k.mode.clone().unwrap_or_default()) } else if k.present { "/dev/kvm is not a character device".into() } else { "no /dev/kvm".into() },
                if ok { "nested virtualisation is available".to_string() } else { "the guest has no /dev/kvm: nested guests cannot run (is nested virtualisation on in the host's kvm module?)".to_string() },
            ));
        }
    }
}

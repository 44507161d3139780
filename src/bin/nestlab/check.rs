//! `nestlab check`: judge a capture directory against a profile.

use crate::args::CheckArgs;
use crate::common::{load_topology_as, print_error};
use crate::exit;

pub fn main(a: CheckArgs) -> u8 {
    let t = match load_topology_as(&a.profile, a.guest) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let observed = match nestlab::observe::Observed::from_dir(&a.from) {
        Ok(o) => o,
        Err(e) => {
            print_error(&e);
            return exit::INVALID;
        }
    };
    if !t.profile.guest.has_libvirt() && observed.libvirt_caps.is_some() {
        eprintln!(
            "nestlab: {} holds libvirt's view (a Debian guest's capture); --guest debian checks it and the guest's disk",
            a.from.display()
        );
    }
    let checks = nestlab::verify::verify(&nestlab::expect::expect(&t), &observed);
    let report = nestlab::report::Report::from_checks(&t.profile.name, checks, a.require_all);
    if a.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_human(a.verbose));
    }
    match report.verdict {
        nestlab::report::Verdict::Pass => exit::OK,
        _ => exit::FAIL,
    }
}

//! A profile from arbitrary bytes through every stage that needs no
//! hypervisor: `load_profile_str` (parse + validate) must refuse or accept
//! without panicking; a profile it accepts must resolve or be refused, and
//! a resolved topology must render to XML that `Domain::from_xml` reads
//! back into an equal model (for both accelerators), and give an expected
//! guest view.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nestlab::xml::domain::Domain;
use nestlab::model::Accel;
use nestlab::xml::render::{self, BootSpec};

fuzz_target!(|data: &[u8]| {
    // `load_profile_file` refuses what is not UTF-8 before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(profile) = nestlab::load_profile_str(text, "fuzz") else {
        return;
    };
    let Ok(topology) = nestlab::resolve::resolve(&profile) else {
        return;
    };
    let boot = BootSpec::placeholder();
    for accel in [Accel::Tcg, Accel::Kvm] {
        let domain = render::render(&topology, accel, &boot);
        let xml = domain.to_xml().expect("a rendered domain serialises");
        let back = Domain::from_xml(&xml)
            .unwrap_or_else(|e| panic!("rendered XML does not parse back: {e}\n{xml}"));
        assert_eq!(domain, back, "XML round trip changed the domain:\n{xml}");
    }
    let _ = render::cmdline(&topology, &boot);
    let _ = nestlab::expect::expect(&topology);
});

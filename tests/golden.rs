//! golden/: the domain XML of every shipped profile, for KVM and TCG, as
//! insta snapshots. Drift fails; CI never accepts snapshots.

use nestlab::front::parse::{load_profile_arg, SHIPPED};
use nestlab::model::Accel;
use nestlab::xml::render::{render, BootSpec};

#[test]
fn golden_xml_of_shipped_profiles() {
    for (name, _) in SHIPPED {
        let t = nestlab::resolve::resolve(&load_profile_arg(name).unwrap()).unwrap();
        for accel in [Accel::Kvm, Accel::Tcg] {
            let xml = render(&t, accel, &BootSpec::placeholder())
                .to_xml()
                .unwrap();
            insta::with_settings!({snapshot_path => "../golden", prepend_module_to_snapshot => false, omit_expression => true}, {
                insta::assert_snapshot!(format!("{name}-{accel}"), xml);
            });
        }
    }
}

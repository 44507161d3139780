//! `nestlab profiles`: the shipped profiles and their descriptions.

use nestlab::front::{load_profile_arg, SHIPPED};

use crate::exit;

pub fn main() -> u8 {
    for (name, _) in SHIPPED {
        let desc = load_profile_arg(name)
            .ok()
            .and_then(|p| p.description)
            .unwrap_or_default();
        println!("{name:<12} {desc}");
    }
    exit::OK
}

//! `nestlab down`: remove virtual hosts nestlab started, and only those.

use crate::args::DownArgs;
use crate::common::{connect, print_error, uris};
use crate::exit;

pub fn main(a: DownArgs) -> u8 {
    let uris = match uris(&a.hosts) {
        Ok(u) => u,
        Err(c) => return c,
    };
    // With several hosts, a NAME is looked for on each; --all and --list
    // cover them all. The worst exit code wins.
    let mut code = exit::OK;
    let mut found = false;
    for uri in &uris {
        let c = on_host(&a, uri, uris.len() > 1, &mut found);
        code = code.max(c);
    }
    if let (Some(n), false, true) = (&a.name, found, uris.len() > 1) {
        eprintln!("error: no domain named {n} on any of {}", uris.join(", "));
        return exit::INVALID.max(code);
    }
    code
}

fn on_host(a: &DownArgs, uri: &str, several: bool, found: &mut bool) -> u8 {
    let host = match connect(uri, &a.hosts.pool) {
        Ok(h) => h,
        Err(c) => return c,
    };
    let owned = match host.owned_domains() {
        Ok(o) => o,
        Err(e) => {
            print_error(&e);
            return exit::INFRA;
        }
    };
    if a.list || (a.name.is_none() && !a.all) {
        if owned.is_empty() {
            eprintln!("no nestlab domains on {uri}");
        }
        for d in &owned {
            let state = if d.active { "running" } else { "defined" };
            if several {
                println!("{}\t{state}\t{uri}", d.name);
            } else {
                println!("{}\t{state}", d.name);
            }
        }
        if !a.list {
            eprintln!("give a NAME or --all to remove");
            return exit::INVALID;
        }
        return exit::OK;
    }
    let targets: Vec<String> = match &a.name {
        // On a pool, only the host that has it.
        Some(n) if several && !owned.iter().any(|d| &d.name == n) => {
            return match host.remove_owned(n) {
                Ok(false) => {
                    *found = true;
                    eprintln!("error: {n} on {uri} is not a nestlab domain (no nestlab metadata): left alone");
                    exit::INVALID
                }
                _ => exit::OK,
            };
        }
        Some(n) => vec![n.clone()],
        None => owned.iter().map(|d| d.name.clone()).collect(),
    };
    *found = true;
    let mut code = exit::OK;
    for n in targets {
        match host.remove_owned(&n) {
            Ok(true) if several => eprintln!("removed {n} from {uri}"),
            Ok(true) => eprintln!("removed {n}"),
            Ok(false) => {
                eprintln!("error: {n} is not a nestlab domain (no nestlab metadata): left alone");
                code = exit::INVALID;
            }
            Err(e) if e.is_no_domain() => {
                eprintln!("error: no domain named {n} on {uri} (see nestlab down --list)");
                code = exit::INVALID;
            }
            Err(e) => {
                print_error(&e);
                code = exit::INFRA;
            }
        }
    }
    code
}

//! `ls -l /dev/kvm`: whether nested virtualisation gave the guest a KVM device.
//!
//! A listing looks like `crw-rw----    1 root     kvm       10, 232 Jan  1 00:00 /dev/kvm`
//! (busybox) or `crw-rw---- 1 root kvm 10, 232 Nov 20 11:16 /dev/kvm` (GNU).
//! Absent: `ls: /dev/kvm: No such file or directory` (busybox) or
//! `ls: cannot access '/dev/kvm': No such file or directory` (GNU).

use serde::{Deserialize, Serialize};

use super::text;

/// What `ls -l /dev/kvm` showed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvmFacts {
    /// A listing of /dev/kvm was printed. False for "No such file",
    /// "cannot access", an empty capture, or anything unrecognised.
    pub present: bool,
    /// The listing's type is `c` (character device).
    pub is_char_device: bool,
    /// The mode string, e.g. `crw-rw----`.
    pub mode: Option<String>,
    /// Owner and group, e.g. `("root", "kvm")`.
    pub owner: Option<(String, String)>,
    /// Major and minor device numbers (10, 232 for KVM).
    pub device_numbers: Option<(u32, u32)>,
}

/// Reads the facts from `ls -l /dev/kvm` output. Never fails.
pub fn parse(input: &str) -> KvmFacts {
    for (_, line) in text::lines(input) {
        let t = line.trim();
        if t.is_empty() || text::is_kernel_line(line) {
            continue;
        }
        if t.contains("No such file") || t.contains("cannot access") {
            return KvmFacts::default();
        }
        if let Some(facts) = listing(t) {
            return facts;
        }
    }
    KvmFacts::default()
}

fn listing(t: &str) -> Option<KvmFacts> {
    let words: Vec<&str> = t.split_whitespace().collect();
    let mode = *words.first()?;
    let kinds = ['-', 'b', 'c', 'd', 'l', 'p', 's'];
    let mut chars = mode.chars();
    let kind = chars.next()?;
    let perms: String = chars.take(9).collect();
    if !kinds.contains(&kind)
        || perms.chars().count() != 9
        || !perms.chars().all(|c| "rwxsStT-".contains(c))
        || !t.contains("/dev/kvm")
    {
        return None;
    }
    let owner = match (words.get(2), words.get(3)) {
        (Some(u), Some(g)) => Some((u.to_string(), g.to_string())),
        _ => None,
    };
    let is_char_device = kind == 'c';
    let device_numbers = if is_char_device {
        let major = words
            .get(4)
            .and_then(|w| w.strip_suffix(','))
            .and_then(text::decimal);
        let minor = words.get(5).and_then(|w| text::decimal(w));
        major.zip(minor)
    } else {
        None
    };
    Some(KvmFacts {
        present: true,
        is_char_device,
        mode: Some(mode.to_string()),
        owner,
        device_numbers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/observe/kvm/", $name))
        };
    }

    #[test]
    fn present() {
        for input in [fixture!("present-busybox.txt"), fixture!("present-gnu.txt")] {
            let k = parse(input);
            assert_eq!(
                k,
                KvmFacts {
                    present: true,
                    is_char_device: true,
                    mode: Some("crw-rw----".into()),
                    owner: Some(("root".into(), "kvm".into())),
                    device_numbers: Some((10, 232)),
                }
            );
        }
        let k = parse(fixture!("root-only.txt"));
        assert!(k.present && k.is_char_device);
        assert_eq!(k.mode.as_deref(), Some("crw-------"));
    }

    #[test]
    fn absent() {
        for input in [
            fixture!("absent-busybox.txt"),
            fixture!("absent-gnu.txt"),
            fixture!("empty.txt"),
            "sh: ls: not found\n",
        ] {
            assert_eq!(parse(input), KvmFacts::default());
        }
    }

    #[test]
    fn not_a_device() {
        let k = parse(fixture!("regular-file.txt"));
        assert!(k.present && !k.is_char_device);
        assert_eq!(k.device_numbers, None);
    }
}

//! docs/configuration.md documents every flag of every binary by hand (with
//! the reasons a `--help` line has no room for), so this test holds it to
//! the binaries' own `--help`: a flag a binary has that the page does not
//! list, or one the page lists that the binary no longer has, fails it.

use std::collections::BTreeSet;
use std::process::Command;

use test_support::process::bin_path;

const BINARIES: &[&str] = &[
    "frame-producer",
    "stream-gateway",
    "stream-director",
    "object-detector",
    "frame-recorder",
    "event-stage",
];

/// The long flags a binary's `--help` lists (`--help`, `--version` aside).
fn help_flags(binary: &str) -> BTreeSet<String> {
    // A cleared environment, so no `[env: X=value]` of this machine shows.
    let out = Command::new(bin_path(binary))
        .arg("--help")
        .env_clear()
        .output()
        .unwrap_or_else(|e| panic!("{binary} --help: {e}"));
    assert!(out.status.success(), "{binary} --help failed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix('-')
                .filter(|r| !r.starts_with('-'))
                .map_or(l, |r| {
                    // "-t, --threads": the short form first.
                    r.split_once(", ").map_or(r, |(_, long)| long)
                });
            let name = l.strip_prefix("--")?;
            let name: String = name
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            (!name.is_empty()).then(|| format!("--{name}"))
        })
        .filter(|f| f != "--help" && f != "--version")
        .collect()
}

/// The flags the documentation's table for `binary` names in its first column.
fn documented_flags(doc: &str, binary: &str) -> BTreeSet<String> {
    let heading = format!("### {binary}");
    let start = doc
        .find(&heading)
        .unwrap_or_else(|| panic!("docs/configuration.md has no '{heading}' section"));
    let section = &doc[start + heading.len()..];
    let section = &section[..section.find("\n### ").unwrap_or(section.len())];
    section
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .flat_map(|l| {
            let first = l.split('|').nth(1).unwrap_or_default();
            first
                .split('`')
                .filter(|s| s.starts_with("--"))
                .map(|s| s.split([' ', '=']).next().unwrap_or(s).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_flag_of_every_binary_is_documented_and_nothing_else() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let doc = std::fs::read_to_string(path).expect("read docs/configuration.md");
    let mut problems = Vec::new();
    for binary in BINARIES {
        let help = help_flags(binary);
        let documented = documented_flags(&doc, binary);
        assert!(!help.is_empty(), "{binary}: no flags parsed from --help");
        for f in help.difference(&documented) {
            problems.push(format!("{binary}: {f} is in --help but not documented"));
        }
        for f in documented.difference(&help) {
            problems.push(format!("{binary}: {f} is documented but not in --help"));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/configuration.md:\n{}",
        problems.join("\n")
    );
}

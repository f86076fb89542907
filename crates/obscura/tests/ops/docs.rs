//! `docs/configuration.md` cannot drift from `obscura relay --help`: every
//! flag (and its environment variable) in one must be in the other.

use std::collections::BTreeSet;

/// `--flag` names at the start of `--help` option lines.
fn help_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter_map(|line| {
            // "-h, --help" or "--listen <ADDR>"
            let line = line.strip_prefix("-h, ").unwrap_or(line);
            let flag = line.strip_prefix("--")?;
            let name: String = flag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            Some(format!("--{name}"))
        })
        .filter(|f| f != "--help")
        .collect()
}

/// `OBSCURA_*` names in `[env: …]` annotations.
fn help_envs(help: &str) -> BTreeSet<String> {
    help.split("[env: ")
        .skip(1)
        .filter_map(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

/// The first cell of every table row that starts with a `--flag`.
fn documented_flags(doc: &str) -> BTreeSet<String> {
    doc.lines()
        .filter_map(|line| {
            let cell = line.strip_prefix("| `--")?;
            let name: String = cell
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            Some(format!("--{name}"))
        })
        .collect()
}

#[test]
fn configuration_md_lists_exactly_the_relay_flags() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_obscura"))
        .args(["relay", "--help"])
        .output()
        .expect("obscura runs");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).expect("UTF-8 help");
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let doc = std::fs::read_to_string(doc_path).expect("docs/configuration.md");

    let in_help = help_flags(&help);
    let in_doc = documented_flags(&doc);
    assert!(
        in_help.len() > 20,
        "parsed too few flags from --help: {in_help:?}"
    );
    let undocumented: Vec<_> = in_help.difference(&in_doc).collect();
    let stale: Vec<_> = in_doc.difference(&in_help).collect();
    assert!(
        undocumented.is_empty(),
        "flags missing from docs/configuration.md: {undocumented:?}"
    );
    assert!(
        stale.is_empty(),
        "docs/configuration.md lists flags `obscura relay --help` does not have: {stale:?}"
    );
    for env in help_envs(&help) {
        assert!(
            doc.contains(&format!("`{env}`")),
            "{env} is not in docs/configuration.md"
        );
    }
}

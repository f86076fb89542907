//! `docs/vault-configuration.md` against the real `--help`: every option
//! documented with its environment variable and default, and nothing
//! documented that the binary does not have.

use std::collections::BTreeMap;

use crate::common::BIN;

const DOC: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/vault-configuration.md"
));

/// What the docs say, or `--help` prints, about one option.
#[derive(Debug, PartialEq, Eq)]
struct Facts {
    env: Option<String>,
    default: Option<String>,
}

/// `obscura guardian <args> --help`, with no `OBSCURA_GUARDIAN_*` variable
/// set (clap would print their values as the environment's).
fn help(args: &[&str]) -> String {
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("guardian").args(args).arg("--help");
    for (k, _) in std::env::vars() {
        if k.starts_with("OBSCURA_GUARDIAN_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("obscura runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("utf-8 help")
}

/// `--flag` → env and default, from clap's long help: a line naming the
/// flag, then its description with `[env: NAME=]` and `[default: X]`.
fn options_in_help(text: &str) -> BTreeMap<String, Facts> {
    let bracket = |line: &str, tag: &str| {
        line.split_once(&format!("[{tag}: "))
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(v, _)| v.to_string())
    };
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('-') {
            current = trimmed
                .split([' ', ','])
                .find(|w| w.starts_with("--"))
                .map(str::to_string)
                .filter(|f| f != "--help");
            if let Some(flag) = &current {
                out.insert(
                    flag.clone(),
                    Facts {
                        env: None,
                        default: None,
                    },
                );
            }
        } else if let Some(opt) = current.as_ref().and_then(|f| out.get_mut(f)) {
            if let Some(env) = bracket(line, "env") {
                opt.env = Some(env.trim_end_matches('=').to_string());
            }
            if let Some(default) = bracket(line, "default") {
                opt.default = Some(default);
            }
        }
    }
    out
}

/// The options table: `| `--flag` | `ENV` | default | meaning |`. A default
/// written as one code span is a value; anything else (prose, "none") is
/// not one clap knows.
fn options_in_doc() -> BTreeMap<String, Facts> {
    let code = |cell: &str| {
        let cell = cell.trim();
        cell.strip_prefix('`')
            .and_then(|c| c.strip_suffix('`'))
            .filter(|c| !c.contains('`'))
            .map(str::to_string)
    };
    DOC.lines()
        .filter(|l| l.starts_with("| `--"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').collect();
            assert!(cells.len() >= 5, "malformed row: {l}");
            let flag = code(cells[1]).unwrap_or_else(|| panic!("flag cell: {l}"));
            (
                flag,
                Facts {
                    env: code(cells[2]),
                    default: code(cells[3]),
                },
            )
        })
        .collect()
}

#[test]
fn configuration_doc_matches_guardian_help() {
    let from_help = options_in_help(&help(&[]));
    let from_doc = options_in_doc();
    assert!(from_help.len() >= 20, "help parsed badly: {from_help:?}");
    let undocumented: Vec<_> = from_help
        .keys()
        .filter(|f| !from_doc.contains_key(*f))
        .collect();
    let unknown: Vec<_> = from_doc
        .keys()
        .filter(|f| !from_help.contains_key(*f))
        .collect();
    assert!(
        undocumented.is_empty(),
        "options missing from the doc: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "documented options the binary lacks: {unknown:?}"
    );
    for (flag, opt) in &from_help {
        assert_eq!(&from_doc[flag], opt, "{flag}: doc vs --help");
        assert!(opt.env.is_some(), "{flag} has no environment variable");
    }
}

#[test]
fn verify_command_doc_matches_its_help() {
    let from_help = options_in_help(&help(&["verify"]));
    let section = DOC
        .split_once("## Operator command")
        .and_then(|(_, rest)| rest.split("\n## ").next())
        .expect("operator command section");
    let mut documented: Vec<&str> = section
        .split(|c: char| c.is_whitespace() || "[]`".contains(c))
        .filter(|w| w.starts_with("--"))
        .collect();
    documented.sort();
    documented.dedup();
    let expected: Vec<&str> = from_help.keys().map(String::as_str).collect();
    assert_eq!(documented, expected);
}

//! Input generators shared by the property tests of the STIX modules.

use proptest::prelude::*;
use proptest::test_runner::Config;

pub(super) fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

pub(super) fn label_strategy() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        Just("severity".to_string()),
        Just("SeVeRiTy".to_string()),
        Just("confidence".to_string()),
        Just("CONFIDENCE".to_string()),
        Just("high".to_string()),
        Just("Medium".to_string()),
        Just("LOW".to_string()),
        Just("100".to_string()),
        Just("ſ".to_string()),
        "[0-9]{1,4}",
        "[a-zA-Z0-9]{0,3}",
        "[a-z_ .\\n]{1,2}",
    ];
    let sep = prop_oneof![4 => Just("-"), 1 => Just(""), 1 => Just("--")];
    proptest::collection::vec((part, sep), 0..6).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (p, s))| if i == 0 { p } else { format!("{s}{p}") })
            .collect()
    })
}

/// Pieces of patterns, valid and broken, for [`token_soup`].
const SOUP: &[&str] = &[
    "[",
    "]",
    "(",
    ")",
    "ipv4-addr",
    "url",
    "file",
    ":",
    "value",
    "hashes",
    ".",
    "'SHA-256'",
    "=",
    "!=",
    "<",
    "'1.2.3.4'",
    "'http://a/'",
    "'",
    "\\",
    "\"",
    "AND",
    "or",
    "NOT",
    "IN",
    "EXISTS",
    "WITHIN",
    "SECONDS",
    "START",
    "STOP",
    "t'2026-01-01T00:00:00Z'",
    "h'",
    "b'AA=='",
    "-",
    "+1",
    "007",
    ".5",
    "*",
    ",",
    "/*",
    "*/",
    "//",
    "\n",
];

pub(super) fn token_soup() -> impl Strategy<Value = String> {
    let any_tok = prop_oneof![
        10 => proptest::sample::select(SOUP).prop_map(str::to_string),
        1 => "\\PC{0,3}",
    ];
    (proptest::collection::vec(any_tok, 0..24), any::<bool>())
        .prop_map(|(v, spaced)| v.join(if spaced { " " } else { "" }))
}

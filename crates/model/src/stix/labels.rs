//! The SMS rules that read a severity or a confidence out of an indicator's labels.

use crate::severity::Severity;

/// The `-`-separated segments of a label when each is a non-empty run of ASCII letters and digits,
/// i.e. when the label is `([a-z0-9]+-)*[a-z0-9]+` ignoring ASCII case.
fn segments(label: &str) -> Option<Vec<&str>> {
    let segs: Vec<&str> = label.split('-').collect();
    segs.iter()
        .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(segs)
}

/// The SMS severity rule: a label matching `(?i)^([a-z0-9]+-)*severity-([a-z0-9]+-)?(high|low|medium)$`
/// gives that severity (`tlp-severity-x-high` → High; `severity-very-big-high` → none).
///
/// The regex is read with ASCII semantics, as Java (the SMS) applies it without its UNICODE flags:
/// `(?i)` folds ASCII letters only (`ſ` is not `s`, `K` is not `k`), and `$` is the end of the
/// label (no trailing newline).
///
/// Every word of the regex is `[a-z0-9]+`, so a match is a label made of non-empty alphanumeric
/// segments joined by `-` whose last segment is the level, and whose second or third segment from
/// the end is `severity`.
pub fn severity_label(label: &str) -> Option<Severity> {
    let segs = segments(label)?;
    let n = segs.len();
    let level = segs[n - 1];
    let level = [
        ("high", Severity::High),
        ("medium", Severity::Medium),
        ("low", Severity::Low),
    ]
    .into_iter()
    .find(|(w, _)| level.eq_ignore_ascii_case(w))?
    .1;
    let word_at = |back: usize| n > back && segs[n - 1 - back].eq_ignore_ascii_case("severity");
    (word_at(1) || word_at(2)).then_some(level)
}

/// The SMS confidence rule: a label matching `(?i)^([a-z0-9]+-)*confidence-(\d|[1-9]\d|100)$`
/// gives that confidence, 0–100 (`x-confidence-85` → 85; `confidence-085`, `confidence-101` →
/// none). Read with ASCII semantics like [`severity_label`]: `\d` is `[0-9]`.
///
/// A match is a label of non-empty alphanumeric `-`-separated segments whose last segment is the
/// number, written without leading zeros, and whose second segment from the end is `confidence`.
pub fn confidence_label(label: &str) -> Option<u8> {
    let segs = segments(label)?;
    let n = segs.len();
    if n < 2 || !segs[n - 2].eq_ignore_ascii_case("confidence") {
        return None;
    }
    let num = segs[n - 1];
    let canonical = match num.len() {
        1 => true,
        2 => !num.starts_with('0'),
        3 => num == "100",
        _ => false,
    };
    if !canonical || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse().ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::strategies::{config, label_strategy};
    use super::*;

    #[test]
    fn severity_labels() {
        for (l, s) in [
            ("severity-high", Severity::High),
            ("SEVERITY-HIGH", Severity::High),
            ("Severity-Medium", Severity::Medium),
            ("severity-low", Severity::Low),
            ("tlp-severity-x-high", Severity::High),
            ("a-b-c-severity-low", Severity::Low),
            ("x1-severity-2-medium", Severity::Medium),
            ("severity-severity-high", Severity::High),
            ("severity-high-high", Severity::High),
            ("severity-low-medium", Severity::Medium),
        ] {
            assert_eq!(severity_label(l), Some(s), "{l}");
        }
        for l in [
            "",
            "high",
            "severity",
            "severity-",
            "severity-critical",
            "xseverity-high",
            "severity-high-",
            "-severity-high",
            "severity--high",
            "severity-very-big-high",
            "severity_high",
            "severity high",
            "severity-high\n",
            "severity-highs",
            "ſeverity-high",
            "severity-\u{212A}",
            "sev-erity-high",
            "severity-x_y-high",
        ] {
            assert_eq!(severity_label(l), None, "{l:?}");
        }
    }

    #[test]
    fn confidence_labels() {
        for (l, c) in [
            ("confidence-0", 0),
            ("confidence-9", 9),
            ("confidence-10", 10),
            ("confidence-99", 99),
            ("confidence-100", 100),
            ("X-Confidence-85", 85),
            ("a-b-CONFIDENCE-50", 50),
            ("confidence-confidence-1", 1),
        ] {
            assert_eq!(confidence_label(l), Some(c), "{l}");
        }
        for l in [
            "confidence",
            "confidence-",
            "confidence-101",
            "confidence-1000",
            "confidence-00",
            "confidence-01",
            "confidence-007",
            "confidence--5",
            "confidence-x-50",
            "confidence-50-x",
            "xconfidence-50",
            "confidence-٥",
            "confidence-5\n",
            "confidence-+5",
            "confidence-high",
        ] {
            assert_eq!(confidence_label(l), None, "{l:?}");
        }
    }

    /// The regexes, transcribed position by position (prefix `([a-z0-9]+-)*` ending at every
    /// possible place), as an oracle independent of the segment-based matchers.
    fn oracle_prefix(b: &[u8]) -> bool {
        b.is_empty()
            || (b.ends_with(b"-")
                && b[..b.len() - 1]
                    .split(|&c| c == b'-')
                    .all(|w| !w.is_empty() && w.iter().all(u8::is_ascii_alphanumeric)))
    }

    fn oracle_word(b: &[u8]) -> bool {
        !b.is_empty() && b.iter().all(u8::is_ascii_alphanumeric)
    }

    fn oracle_severity(label: &str) -> Option<Severity> {
        let lower = label.to_ascii_lowercase();
        let b = lower.as_bytes();
        for p in 0..=b.len() {
            if !oracle_prefix(&b[..p]) {
                continue;
            }
            let Some(rest) = b[p..].strip_prefix(b"severity-".as_slice()) else {
                continue;
            };
            for (w, s) in [
                ("high", Severity::High),
                ("low", Severity::Low),
                ("medium", Severity::Medium),
            ] {
                if rest == w.as_bytes() {
                    return Some(s);
                }
                if let Some(mid) = rest.strip_suffix(w.as_bytes()) {
                    if let Some(word) = mid.strip_suffix(b"-") {
                        if oracle_word(word) {
                            return Some(s);
                        }
                    }
                }
            }
        }
        None
    }

    fn oracle_confidence(label: &str) -> Option<u8> {
        let lower = label.to_ascii_lowercase();
        let b = lower.as_bytes();
        for p in 0..=b.len() {
            if !oracle_prefix(&b[..p]) {
                continue;
            }
            let Some(rest) = b[p..].strip_prefix(b"confidence-".as_slice()) else {
                continue;
            };
            let ok = match rest {
                [d] => d.is_ascii_digit(),
                [a, b] => (b'1'..=b'9').contains(a) && b.is_ascii_digit(),
                b"100" => true,
                _ => false,
            };
            if ok {
                return std::str::from_utf8(rest).ok()?.parse().ok();
            }
        }
        None
    }

    proptest! {
        #![proptest_config(config(4096))]

        #[test]
        fn labels_agree_with_the_regexes(label in label_strategy()) {
            prop_assert_eq!(severity_label(&label), oracle_severity(&label), "{:?}", label);
            prop_assert_eq!(confidence_label(&label), oracle_confidence(&label), "{:?}", label);
        }

        #[test]
        fn labels_agree_on_any_text(label in "\\PC{0,24}") {
            prop_assert_eq!(severity_label(&label), oracle_severity(&label));
            prop_assert_eq!(confidence_label(&label), oracle_confidence(&label));
        }
    }
}

//! Sync answers (docs/sync-protocol.md): NDJSON, a header line then one line per operation. The
//! agent's state files use the same format, so one strict parser reads both.
//!
//! Strict means: the header's counts must match the lines (a truncated stream is an error, never
//! a smaller filter set), every line must be a valid operation, and the first bad line is reported
//! by number. Unknown fields are ignored, so a newer hub can add some.

use std::collections::HashMap;
use std::sync::Arc;

use rephub_model::{ActionSet, Entry, Kind};
use serde::Deserialize;

/// What the agent keeps for one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub action: ActionSet,
    /// The filter that selected the entry (shared: a few filters, a million entries).
    pub filter: Arc<str>,
    /// Unix seconds.
    pub expires: Option<i64>,
}

/// One answer, parsed and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    pub cursor: u64,
    /// The lines are the whole filter set.
    pub snapshot: bool,
    pub upserts: Vec<(Entry, Rule)>,
    pub deletes: Vec<Entry>,
}

impl Answer {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnswerError {
    #[error("empty answer")]
    Empty,
    #[error("line 1 (header): {0}")]
    Header(String),
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("truncated: the header announces {expected} operations, {found} arrived")]
    Truncated { expected: u64, found: u64 },
    #[error("more lines than the header announces ({expected})")]
    TooLong { expected: u64 },
}

#[derive(Deserialize)]
struct Header {
    cursor: u64,
    snapshot: bool,
    upserts: u64,
    deletes: u64,
}

#[derive(Deserialize)]
struct Op<'a> {
    op: &'a str,
    kind: &'a str,
    #[serde(borrow)]
    value: std::borrow::Cow<'a, str>,
    #[serde(default)]
    action: Option<&'a str>,
    #[serde(default, borrow)]
    filter: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    expires: Option<i64>,
}

/// Parse one answer from `text`; returns it and the bytes it used (state journals hold several).
pub fn parse_one(text: &[u8]) -> Result<(Answer, usize), AnswerError> {
    let mut lines = LineIter { text, pos: 0 };
    let Some(head) = lines.next() else {
        return Err(AnswerError::Empty);
    };
    let head: Header =
        serde_json::from_slice(head).map_err(|e| AnswerError::Header(e.to_string()))?;
    let expected = head.upserts.saturating_add(head.deletes);
    let mut answer = Answer {
        cursor: head.cursor,
        snapshot: head.snapshot,
        upserts: Vec::with_capacity(head.upserts.min(1 << 20) as usize),
        deletes: Vec::with_capacity(head.deletes.min(1 << 20) as usize),
    };
    let mut filters: HashMap<String, Arc<str>> = HashMap::new();
    let mut found = 0u64;
    while found < expected {
        let Some(line) = lines.next() else {
            return Err(AnswerError::Truncated { expected, found });
        };
        let n = found as usize + 2;
        let bad = |reason: String| AnswerError::Line { line: n, reason };
        let op: Op<'_> = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
        let kind: Kind = op
            .kind
            .parse()
            .map_err(|e: rephub_model::UnknownKind| bad(e.to_string()))?;
        let entry = Entry::parse(kind, &op.value).map_err(|e| bad(e.to_string()))?;
        match op.op {
            "upsert" => {
                if answer.upserts.len() as u64 >= head.upserts {
                    return Err(bad("more upserts than the header announces".into()));
                }
                let action: ActionSet = op
                    .action
                    .ok_or_else(|| bad("an upsert needs an action".into()))?
                    .parse()
                    .map_err(bad)?;
                let name = op.filter.as_deref().unwrap_or("");
                let filter = match filters.get(name) {
                    Some(f) => f.clone(),
                    None => {
                        let f: Arc<str> = Arc::from(name);
                        filters.insert(name.to_string(), f.clone());
                        f
                    }
                };
                answer.upserts.push((
                    entry,
                    Rule {
                        action,
                        filter,
                        expires: op.expires,
                    },
                ));
            }
            "delete" => {
                if answer.deletes.len() as u64 >= head.deletes {
                    return Err(bad("more deletes than the header announces".into()));
                }
                answer.deletes.push(entry);
            }
            other => return Err(bad(format!("unknown op {other:?}"))),
        }
        found += 1;
    }
    // An upsert replaces whatever the device had for that value; a delete of the same value in the
    // same answer (an entry deleted and written again) must not undo it.
    if !answer.deletes.is_empty() && !answer.upserts.is_empty() {
        let written: std::collections::HashSet<&Entry> =
            answer.upserts.iter().map(|(e, _)| e).collect();
        answer.deletes.retain(|e| !written.contains(e));
    }
    Ok((answer, lines.pos))
}

/// A whole answer: exactly one, nothing after it.
pub fn parse(text: &[u8]) -> Result<Answer, AnswerError> {
    let (answer, used) = parse_one(text)?;
    if text[used..].iter().any(|b| !b.is_ascii_whitespace()) {
        return Err(AnswerError::TooLong {
            expected: (answer.upserts.len() + answer.deletes.len()) as u64,
        });
    }
    Ok(answer)
}

/// Write an answer in the wire format (the state files).
pub fn write(answer: &Answer, out: &mut Vec<u8>) {
    let head = serde_json::json!({"cursor": answer.cursor, "snapshot": answer.snapshot,
        "upserts": answer.upserts.len(), "deletes": answer.deletes.len()});
    let _ = serde_json::to_writer(&mut *out, &head);
    out.push(b'\n');
    for (e, r) in &answer.upserts {
        write_upsert(e, r, out);
    }
    for e in &answer.deletes {
        let v =
            serde_json::json!({"op": "delete", "kind": e.kind().as_str(), "value": e.to_string()});
        let _ = serde_json::to_writer(&mut *out, &v);
        out.push(b'\n');
    }
}

pub(crate) fn write_upsert(e: &Entry, r: &Rule, out: &mut Vec<u8>) {
    let mut v = serde_json::json!({"op": "upsert", "kind": e.kind().as_str(), "value": e.to_string(),
        "action": r.action.as_str(), "filter": &*r.filter});
    if let Some(t) = r.expires {
        v["expires"] = serde_json::json!(t);
    }
    let _ = serde_json::to_writer(&mut *out, &v);
    out.push(b'\n');
}

/// Lines without their `\n` (a last line without one counts), skipping nothing.
struct LineIter<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for LineIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.pos >= self.text.len() {
            return None;
        }
        let rest = &self.text[self.pos..];
        match rest.iter().position(|b| *b == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                Some(&rest[..i])
            }
            None => {
                self.pos = self.text.len();
                Some(rest)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"cursor": 7, "snapshot": false, "upserts": 2, "deletes": 1}
{"op": "upsert", "kind": "ipv4", "value": "203.0.113.0/24", "action": "block", "filter": "block High", "expires": 1800000000}
{"op": "upsert", "kind": "domain", "value": "evil.example", "action": "notify", "filter": "n", "new_field": 1}
{"op": "delete", "kind": "domain", "value": "gone.example"}
"#;

    #[test]
    fn a_good_answer_round_trips() {
        let a = parse(GOOD.as_bytes()).unwrap_or_default();
        assert_eq!(a.cursor, 7);
        assert_eq!(a.upserts.len(), 2);
        assert_eq!(a.upserts[0].1.expires, Some(1_800_000_000));
        assert_eq!(a.deletes.len(), 1);
        let mut out = Vec::new();
        write(&a, &mut out);
        assert_eq!(parse(&out), Ok(a));
    }

    #[test]
    fn bad_answers_name_the_line() {
        let truncated = &GOOD[..GOOD.find("{\"op\": \"delete\"").unwrap_or(0)];
        assert!(matches!(
            parse(truncated.as_bytes()),
            Err(AnswerError::Truncated {
                expected: 3,
                found: 2
            })
        ));
        let cut_mid_line = &GOOD[..GOOD.len() - 10];
        assert!(matches!(
            parse(cut_mid_line.as_bytes()),
            Err(AnswerError::Line { line: 4, .. })
        ));
        let bad_value = GOOD.replace("203.0.113.0/24", "203.0.113.0/33");
        assert!(matches!(
            parse(bad_value.as_bytes()),
            Err(AnswerError::Line { line: 2, .. })
        ));
        let bad_action = GOOD.replace("\"notify\"", "\"explode\"");
        assert!(matches!(
            parse(bad_action.as_bytes()),
            Err(AnswerError::Line { line: 3, .. })
        ));
        assert!(matches!(
            parse(b"<html>oops</html>"),
            Err(AnswerError::Header(_))
        ));
        assert_eq!(parse(b""), Err(AnswerError::Empty));
        let extra = format!(
            "{GOOD}{}\n",
            r#"{"op": "delete", "kind": "domain", "value": "x.example"}"#
        );
        assert!(matches!(
            parse(extra.as_bytes()),
            Err(AnswerError::TooLong { .. })
        ));
        let wrong_mix = GOOD.replace(
            "\"upserts\": 2, \"deletes\": 1",
            "\"upserts\": 1, \"deletes\": 2",
        );
        assert!(matches!(
            parse(wrong_mix.as_bytes()),
            Err(AnswerError::Line { line: 3, .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn never_panics_on_near_misses(cut in 0usize..400, flip in 0usize..400, b in proptest::num::u8::ANY) {
            let mut v = GOOD.as_bytes().to_vec();
            if flip < v.len() { v[flip] = b; }
            v.truncate(cut.min(v.len()));
            let _ = parse(&v);
        }
    }
}

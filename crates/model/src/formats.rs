//! Import and export formats: the SMS CSV import file (and the `TagData` parameter, which uses the
//! same quoting), JSON lines, and the SMS query/export line.
//!
//! SMS CSV: one entry a line; `#` lines are comments; first field the address, then
//! `category,value` pairs in any order; URL files use `|` instead of `,`; a field may be enclosed in
//! double quotes (required when it holds the separator), a quote inside written `""`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io::BufRead;

use serde::{Deserialize, Serialize};

use crate::kind::Kind;
use crate::tags::{LIST_SEPARATOR, TagValue};

/// A line that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number in the input.
    pub line: u64,
    pub reason: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for LineError {}

/// One syntactically valid line of an SMS CSV file, before the address and tags are validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub line: u64,
    pub address: String,
    /// `(category, value)` in file order. A trailing category without a value gets an empty value,
    /// which drops the pair like any empty value.
    pub pairs: Vec<(String, String)>,
}

/// `text` without the byte-order mark (U+FEFF) that Excel and Notepad write at the start of a UTF-8
/// file. Readers of import text call it on the start of the input only (the first line): a U+FEFF
/// anywhere else is data, and an address or name holding one is rejected like any bad value.
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// The lines of an import file that carry data: numbered from 1, without line terminators; blank
/// lines and `#` comment lines are skipped but counted. A line that is not UTF-8 is reported with its
/// number and the reading goes on. A byte-order mark before line 1 is dropped ([`strip_bom`]).
pub struct Lines<R: BufRead> {
    input: R,
    line: u64,
    position: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead> fmt::Debug for Lines<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lines")
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl<R: BufRead> Lines<R> {
    pub fn new(input: R) -> Lines<R> {
        Lines {
            input,
            line: 0,
            position: 0,
            buf: Vec::with_capacity(256),
            done: false,
        }
    }

    /// Bytes consumed so far (for progress).
    pub fn position(&self) -> u64 {
        self.position
    }
}

impl<R: BufRead> Lines<R> {
    /// The next line with data, borrowed from the reader's buffer until the next call: what
    /// [`Iterator::next`] gives, without a copy (an import reads millions of lines).
    pub fn next_line(&mut self) -> Option<Result<(u64, &str), LineError>> {
        let data = loop {
            if self.done {
                return None;
            }
            self.buf.clear();
            let n = match self.input.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(n) => n,
                Err(e) => {
                    // An I/O error would repeat forever; report it once and stop.
                    self.done = true;
                    return Some(Err(LineError {
                        line: self.line + 1,
                        reason: format!("read error: {e}"),
                    }));
                }
            };
            self.position += n as u64;
            self.line += 1;
            let text = match std::str::from_utf8(&self.buf) {
                Ok(t) => t,
                Err(e) => {
                    return Some(Err(LineError {
                        line: self.line,
                        reason: format!("not valid UTF-8 (at byte {})", e.valid_up_to() + 1),
                    }));
                }
            };
            let after_bom = if self.line == 1 {
                strip_bom(text)
            } else {
                text
            };
            let start = text.len() - after_bom.len();
            let text = after_bom.strip_suffix('\n').unwrap_or(after_bom);
            let text = text.strip_suffix('\r').unwrap_or(text);
            let trimmed = text.trim_start();
            if !(trimmed.is_empty() || trimmed.starts_with('#')) {
                // Where the data lies in the buffer, not a borrow of it: a borrow cannot leave a
                // loop that clears the buffer on its other turns.
                break start..start + text.len();
            }
        };
        // Valid UTF-8 (checked above) cut at character boundaries: this cannot fail.
        let text = std::str::from_utf8(&self.buf[data]).ok()?;
        Some(Ok((self.line, text)))
    }
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = Result<(u64, String), LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_line()
            .map(|l| l.map(|(line, text)| (line, text.to_string())))
    }
}

/// Reads an SMS CSV import file record by record; never fails on content, only reports.
///
/// Line-oriented on purpose: an SMS file holds one entry a line, and every error must carry the
/// exact line number, comment and blank lines included.
pub struct SmsCsvReader<R: BufRead> {
    lines: Lines<R>,
    separator: char,
}

impl<R: BufRead> fmt::Debug for SmsCsvReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsCsvReader")
            .field("lines", &self.lines)
            .finish_non_exhaustive()
    }
}

impl<R: BufRead> SmsCsvReader<R> {
    /// `separator` is `,`, or `|` for URL files.
    pub fn new(input: R, separator: char) -> SmsCsvReader<R> {
        SmsCsvReader {
            lines: Lines::new(input),
            separator,
        }
    }

    /// Bytes consumed so far (for progress).
    pub fn position(&self) -> u64 {
        self.lines.position()
    }
}

impl<R: BufRead> SmsCsvReader<R> {
    /// The next record handed to `f` as borrowed text: its line number, its address and its
    /// `(category, value)` pairs, each trimmed, as [`RawRecord`] holds them; a line that does not
    /// split is the error. No copy of the fields (an import reads millions of lines).
    pub fn next_with<T>(
        &mut self,
        f: impl for<'t> FnOnce(u64, &'t str, &mut dyn Iterator<Item = (&'t str, &'t str)>) -> T,
    ) -> Option<Result<T, LineError>> {
        let (line, text) = match self.lines.next_line()? {
            Ok(l) => l,
            Err(e) => return Some(Err(e)),
        };
        Some(match split_fields(text, self.separator) {
            Ok(fields) => {
                let mut it = fields.iter().map(|f| f.trim());
                let address = it.next().unwrap_or_default();
                let mut pairs = std::iter::from_fn(|| {
                    let cat = it.next()?;
                    Some((cat, it.next().unwrap_or_default()))
                });
                Ok(f(line, address, &mut pairs))
            }
            Err(reason) => Err(LineError { line, reason }),
        })
    }
}

impl<R: BufRead> Iterator for SmsCsvReader<R> {
    type Item = Result<RawRecord, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with(|line, address, pairs| RawRecord {
            line,
            address: address.to_string(),
            pairs: pairs.map(|(c, v)| (c.to_string(), v.to_string())).collect(),
        })
    }
}

/// Split one line into fields. A field that starts with `"` (after spaces) is quoted: it ends at the
/// next lone `"`, and `""` inside stands for one quote. A quote inside an unquoted field is kept as is.
/// Fields borrow from the line; only a quoted field with `""` in it is copied (an import splits
/// millions of lines: one allocation per line, not one per character).
pub(crate) fn split_fields(line: &str, sep: char) -> Result<Vec<Cow<'_, str>>, String> {
    let mut fields = Vec::with_capacity(12);
    let mut rest = line;
    loop {
        rest = rest.trim_start_matches(' ');
        if let Some(quoted) = rest.strip_prefix('"') {
            // The closing quote is the first `"` not followed by another.
            let mut field: Option<String> = None;
            let mut from = 0;
            let close = loop {
                let Some(q) = quoted[from..].find('"').map(|q| from + q) else {
                    return Err(format!("field {}: missing closing quote", fields.len() + 1));
                };
                if quoted[q + 1..].starts_with('"') {
                    field
                        .get_or_insert_with(String::new)
                        .push_str(&quoted[from..=q]);
                    from = q + 2;
                } else {
                    break q;
                }
            };
            fields.push(match field {
                Some(mut f) => {
                    f.push_str(&quoted[from..close]);
                    Cow::Owned(f)
                }
                None => Cow::Borrowed(&quoted[..close]),
            });
            rest = quoted[close + 1..].trim_start_matches(' ');
            let mut chars = rest.chars();
            match chars.next() {
                None => return Ok(fields),
                Some(c) if c == sep => rest = chars.as_str(),
                Some(c) => {
                    return Err(format!(
                        "field {}: unexpected {c:?} after closing quote",
                        fields.len()
                    ));
                }
            }
        } else {
            match rest.find(sep) {
                Some(at) => {
                    fields.push(Cow::Borrowed(&rest[..at]));
                    rest = &rest[at + sep.len_utf8()..];
                }
                None => {
                    fields.push(Cow::Borrowed(rest));
                    return Ok(fields);
                }
            }
        }
    }
}

/// Parse the SMS Web API `TagData` parameter: `category,value` pairs separated by commas, values
/// optionally double-quoted.
pub fn parse_tag_data(s: &str) -> Result<Vec<(String, String)>, String> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    if s.contains(['\n', '\r']) {
        return Err("TagData: must be a single line".into());
    }
    let fields = split_fields(s, ',').map_err(|e| format!("TagData: {e}"))?;
    if fields.len() % 2 != 0 {
        return Err(format!(
            "TagData: {} fields; expected category,value pairs",
            fields.len()
        ));
    }
    Ok(fields
        .chunks(2)
        .map(|p| (p[0].trim().to_string(), p[1].trim().to_string()))
        .collect())
}

/// Raw `(category, value)` pairs, before validation against the catalog.
pub type Pairs = Vec<(String, String)>;

/// One line of the JSON lines import format.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonLine {
    pub value: String,
    #[serde(default)]
    pub kind: Option<String>,
    /// Category name → a string, a number, a boolean, or an array of strings (multi-value list).
    #[serde(default)]
    pub tags: BTreeMap<String, serde_json::Value>,
    /// Written by `rephub export --format jsonl`; ignored on import (the importing source owns what it
    /// imports).
    #[serde(default)]
    pub sources: Option<serde_json::Value>,
}

/// Parse one JSON line into its kind (if given), value and raw `(category, value)` pairs.
pub fn parse_json_line(line: &str) -> Result<(Option<Kind>, String, Pairs), String> {
    let j: JsonLine = serde_json::from_str(line).map_err(|e| format!("bad JSON: {e}"))?;
    let kind = match j.kind.as_deref() {
        None | Some("auto") => None,
        Some(k) => Some(k.parse::<Kind>().map_err(|e| e.to_string())?),
    };
    let mut pairs = Vec::with_capacity(j.tags.len());
    for (cat, v) in j.tags {
        let raw = match v {
            serde_json::Value::Null => String::new(),
            serde_json::Value::String(s) => s,
            serde_json::Value::Bool(b) => if b { "yes" } else { "no" }.to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Array(items) => {
                let mut parts = Vec::with_capacity(items.len());
                for i in items {
                    match i {
                        serde_json::Value::String(s) => parts.push(s),
                        other => {
                            return Err(format!(
                                "tag {cat:?}: list items must be strings, got {other}"
                            ));
                        }
                    }
                }
                parts.join(LIST_SEPARATOR)
            }
            serde_json::Value::Object(_) => return Err(format!("tag {cat:?}: value is an object")),
        };
        pairs.push((cat, raw));
    }
    Ok((kind, j.value, pairs))
}

/// The JSON lines export record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportRecord<'a> {
    pub kind: Kind,
    pub value: String,
    pub tags: BTreeMap<&'a str, serde_json::Value>,
    pub sources: Vec<&'a str>,
}

impl Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'a> ExportRecord<'a> {
    pub fn tag_json(v: &TagValue) -> serde_json::Value {
        match v {
            TagValue::List(items) if items.len() > 1 => serde_json::Value::from(items.clone()),
            TagValue::Number(n) => serde_json::Value::from(*n),
            TagValue::YesNo(b) => serde_json::Value::from(*b),
            other => serde_json::Value::from(other.to_string()),
        }
    }
}

/// One line of an SMS CSV file or SMS query answer: `address,cat,value,...` with fields quoted where
/// needed; no line terminator.
pub fn format_sms_line<'a>(
    address: &str,
    pairs: impl IntoIterator<Item = (&'a str, String)>,
    separator: char,
) -> String {
    let mut out = String::with_capacity(128);
    push_field(&mut out, address, separator);
    for (c, v) in pairs {
        out.push(separator);
        push_field(&mut out, c, separator);
        out.push(separator);
        push_field(&mut out, &v, separator);
    }
    out
}

fn push_field(out: &mut String, f: &str, sep: char) {
    let needs = f.contains(sep)
        || f.contains(['"', '\n', '\r'])
        || f.starts_with('#')
        // On line 1 the reader would take it for a byte-order mark and drop it.
        || f.starts_with('\u{feff}')
        || f.starts_with(' ')
        || f.ends_with(' ');
    if needs {
        out.push('"');
        out.push_str(&f.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read(s: &str, sep: char) -> Vec<Result<RawRecord, LineError>> {
        SmsCsvReader::new(s.as_bytes(), sep).collect()
    }

    /// The splitting rules written the obvious way, one character at a time (the implementation
    /// before fields borrowed from the line): the oracle of the property below.
    fn split_by_char(line: &str, sep: char) -> Result<Vec<String>, String> {
        let mut fields = Vec::new();
        let mut chars = line.chars().peekable();
        loop {
            while chars.peek() == Some(&' ') {
                chars.next();
            }
            let mut field = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        None => {
                            return Err(format!(
                                "field {}: missing closing quote",
                                fields.len() + 1
                            ));
                        }
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => field.push(c),
                    }
                }
                while chars.peek() == Some(&' ') {
                    chars.next();
                }
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(c) if c == sep => fields.push(field),
                    Some(c) => {
                        return Err(format!(
                            "field {}: unexpected {c:?} after closing quote",
                            fields.len() + 1
                        ));
                    }
                }
            } else {
                loop {
                    match chars.next() {
                        None => {
                            fields.push(field);
                            return Ok(fields);
                        }
                        Some(c) if c == sep => break,
                        Some(c) => field.push(c),
                    }
                }
                fields.push(field);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        /// Lines made of the characters that matter (quotes, spaces, both separators, a
        /// multi-byte letter) split exactly as the character-at-a-time rules say, errors included.
        #[test]
        fn fields_split_as_the_rules_say(line in "[a\" ,|é]{0,24}", pipe in any::<bool>()) {
            let sep = if pipe { '|' } else { ',' };
            let got = split_fields(&line, sep)
                .map(|f| f.into_iter().map(Cow::into_owned).collect::<Vec<_>>());
            prop_assert_eq!(got, split_by_char(&line, sep));
        }
    }

    #[test]
    fn sms_example_file() {
        let file = "# comment\n1.2.3.0/24,Country,United States,Approved,yes\n3.4.5.0/24,Approved,yes,Country,China\n1.2.3.0/24,Country,United States,Approved,yes,Comment,\"This comment, contains a comma\"\n2.3.0.0/16\n";
        let recs: Vec<RawRecord> = read(file, ',').into_iter().map(Result::unwrap).collect();
        assert_eq!(recs.len(), 4);
        assert_eq!(recs[0].line, 2);
        assert_eq!(recs[1].line, 3);
        assert_eq!(recs[0].address, "1.2.3.0/24");
        assert_eq!(
            recs[2].pairs[2],
            ("Comment".into(), "This comment, contains a comma".into())
        );
        assert_eq!(recs[3].pairs, vec![]);
        assert_eq!(recs[3].line, 5);
    }

    #[test]
    fn url_files_use_pipes_and_quotes() {
        let recs = read(
            "http://a.com/x,y|Trend Micro Severity|High\n\"http://b.com/|q\"|C|\"say \"\"hi\"\"\"\n",
            '|',
        );
        let r0 = recs[0].as_ref().unwrap();
        assert_eq!(r0.address, "http://a.com/x,y");
        let r1 = recs[1].as_ref().unwrap();
        assert_eq!(r1.address, "http://b.com/|q");
        assert_eq!(r1.pairs, vec![("C".into(), "say \"hi\"".into())]);
    }

    #[test]
    fn missing_value_and_bad_utf8() {
        let recs = read("1.1.1.1,Country\n", ',');
        assert_eq!(
            recs[0].as_ref().unwrap().pairs,
            vec![("Country".into(), String::new())]
        );
        let mut bytes = b"1.1.1.1,C,ok\n2.2.2.2,C,".to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe, b'\n']);
        bytes.extend_from_slice(b"3.3.3.3\n");
        let recs: Vec<_> = SmsCsvReader::new(&bytes[..], ',').collect();
        assert!(recs[0].is_ok());
        let err = recs[1].as_ref().unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.reason.contains("UTF-8"), "{}", err.reason);
        assert_eq!(recs[2].as_ref().unwrap().line, 3);
    }

    /// Excel and Notepad start UTF-8 files with a byte-order mark; line 1 used to be rejected.
    #[test]
    fn byte_order_mark_keeps_line_1() {
        let recs = read("\u{feff}1.2.3.4,Country,China\n5.6.7.8\n", ',');
        let r0 = recs[0].as_ref().unwrap();
        assert_eq!((r0.line, r0.address.as_str()), (1, "1.2.3.4"));
        assert_eq!(r0.pairs, vec![("Country".into(), "China".into())]);
        assert_eq!(recs.len(), 2);

        let plain: Vec<_> = Lines::new("\u{feff}evil.example\r\nb.example\n".as_bytes())
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            plain,
            vec![(1, "evil.example".into()), (2, "b.example".into())]
        );
        // A comment or a JSON line behind the mark is still one.
        let recs = read("\u{feff}# exported by Excel\n1.2.3.4\n", ',');
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].as_ref().unwrap().line, 2);
        let (line, text) = Lines::new("\u{feff}{\"value\":\"1.2.3.4\"}\n".as_bytes())
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(line, 1);
        assert_eq!(parse_json_line(&text).unwrap().1, "1.2.3.4");
        // Only the very start of the input is a byte-order mark.
        let recs = read("a.example\n\u{feff}b.example\n", ',');
        assert_eq!(recs[1].as_ref().unwrap().address, "\u{feff}b.example");
        // The writer quotes a field that starts with one, so that it is read back on line 1 too.
        let line = format_sms_line("\u{feff}x", [], ',');
        assert_eq!(line, "\"\u{feff}x\"");
        assert_eq!(read(&line, ',')[0].as_ref().unwrap().address, "\u{feff}x");
    }

    #[test]
    fn strip_bom_only_strips_one_leading_mark() {
        assert_eq!(strip_bom("\u{feff}1.2.3.4"), "1.2.3.4");
        assert_eq!(strip_bom("1.2.3.4"), "1.2.3.4");
        assert_eq!(strip_bom("\u{feff}\u{feff}x"), "\u{feff}x");
        assert_eq!(strip_bom("x\u{feff}"), "x\u{feff}");
        assert_eq!(strip_bom(""), "");
    }

    #[test]
    fn tag_data() {
        assert_eq!(
            parse_tag_data("MalwareIpType,infectedHost,CreatedDate,\"Jan 22, 2014\"").unwrap(),
            vec![
                ("MalwareIpType".into(), "infectedHost".into()),
                ("CreatedDate".into(), "Jan 22, 2014".into())
            ]
        );
        assert_eq!(parse_tag_data("").unwrap(), vec![]);
        assert!(parse_tag_data("a,b,c").is_err());
        assert!(parse_tag_data("a,b\nc,d").is_err());
        assert!(parse_tag_data("a,\"b").is_err());
        assert!(parse_tag_data("a,\"b\"x").is_err());
    }

    #[test]
    fn json_lines() {
        let (k, v, p) = parse_json_line(r#"{"value":"1.2.3.4","kind":"ipv4","tags":{"A":"x","B":["y","z"],"C":5,"D":true,"E":null}}"#).unwrap();
        assert_eq!(k, Some(Kind::Ipv4));
        assert_eq!(v, "1.2.3.4");
        assert_eq!(
            p,
            vec![
                ("A".into(), "x".into()),
                ("B".into(), "y~~~z".into()),
                ("C".into(), "5".into()),
                ("D".into(), "yes".into()),
                ("E".into(), String::new())
            ]
        );
        assert!(
            parse_json_line(r#"{"value":"x","colour":"red"}"#)
                .unwrap_err()
                .contains("colour")
        );
        assert!(parse_json_line(r#"{"value":"x","kind":"mac"}"#).is_err());
        assert!(parse_json_line("not json").is_err());
    }

    #[test]
    fn formatting_round_trips() {
        let line = format_sms_line(
            "1.2.3.4",
            [
                ("Comment", "a, \"b\"".to_string()),
                ("Trend Micro Severity", "High".to_string()),
            ],
            ',',
        );
        assert_eq!(
            line,
            "1.2.3.4,Comment,\"a, \"\"b\"\"\",Trend Micro Severity,High"
        );
        let rec = read(&line, ',').remove(0).unwrap();
        assert_eq!(rec.pairs[0].1, "a, \"b\"");
    }
}

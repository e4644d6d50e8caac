//! STIX 2.0 and 2.1 indicators → reputation entries, as the SMS's STIX/TAXII ingest takes them.
//!
//! Pure: the caller brings the JSON (a TAXII envelope's `objects`, or a bundle posted to the SMS
//! TAXII endpoint) and gets one [`ObjectOutcome`] per object. Nothing here reads the clock, so an
//! indicator whose `valid_until` has passed is still reported; the caller compares it with its
//! [`Clock`](crate::Clock).
//!
//! What is taken (`shared/reference/sms-webapi.md`, "STIX/TAXII 2.0 ingest on the SMS"):
//! - an `indicator` whose pattern is one observation holding one comparison `=` (or `==`) on
//!   `ipv4-addr:value`, `ipv6-addr:value`, `domain-name:value`, `url:value`, or, beyond the SMS 2.0
//!   ingest, `file:hashes.'SHA-256'` / `file:hashes.'SHA-1'`;
//! - everything else is *skipped* (counted, never fatal): other object types, compound patterns,
//!   qualifiers, other operators, other properties, MD5, `pattern_type` other than `stix`;
//! - an indicator that is malformed is *invalid* (counted as rejected, never fatal either).
//!
//! Patterns are parsed with the full STIX patterning grammar (OASIS `STIXPattern.g4`), so that
//! "well-formed but not taken" (skipped) and "malformed" (rejected) are told apart exactly, not by
//! looking for keywords. The parser is lenient where the 2.0 and 2.1 grammars differ: keywords in
//! any case (2.0), hyphens and double quotes in unquoted property names (2.0), string-literal
//! property names (2.1).
//!
//! Revocation: the SMS deletes "the entry with that STIX id", so a revoked indicator is reported
//! as [`ObjectOutcome::Revoked`] whenever it has an id — even when its pattern is not one rephub
//! takes — with the entry when the pattern gives one. The caller removes the entries tagged
//! `STIX - ID` = id (and the entry itself, if it prefers).

use chrono::DateTime;
use serde_json::{Map, Value};

use crate::entry::Entry;
use crate::kind::Kind;
use crate::severity::Severity;
use crate::tags::{Catalog, MAX_TEXT, Tags, builtin};
use crate::time::format_utc;

/// Why a pattern gives no entry. The two variants are the whole classification: the caller counts
/// the first as skipped and the second as rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// A well-formed pattern that rephub does not take: several comparisons or observations,
    /// qualifiers (`WITHIN`, `REPEATS`, `START … STOP`), operators other than `=`, `NOT`, object
    /// types or properties other than the supported ones, hash algorithms other than SHA-1 and
    /// SHA-256 (MD5 included), a URL holding `*`.
    #[error("unsupported pattern: {0}")]
    Unsupported(String),
    /// Not a STIX pattern (syntax error), or a value that is not a valid address, name, URL or
    /// hash.
    #[error("invalid pattern: {0}")]
    Invalid(String),
}

/// Why a JSON value is not a STIX bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StixError {
    /// The text is not JSON.
    #[error("not JSON: {0}")]
    Json(String),
    /// JSON, but not `{"type": "bundle", "objects": [...]}`.
    #[error("not a STIX bundle: {0}")]
    NotABundle(String),
}

/// An indicator rephub takes: one entry and what its tags are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indicator {
    /// The STIX id (`indicator--<uuid>`), the value of `STIX - ID`.
    pub id: String,
    /// The entry the pattern names, in canonical form.
    pub entry: Entry,
    /// `valid_until`, seconds since the Unix epoch: the entry's `Reputation Entries TTL`. `None`:
    /// the indicator does not expire upstream (the caller may give its default TTL).
    pub valid_until: Option<i64>,
    /// From the first label that matches the SMS severity rule (see [`severity_label`]).
    pub severity: Option<Severity>,
    /// From the first label that matches the SMS confidence rule (see [`confidence_label`]), else
    /// from the STIX 2.1 `confidence` property.
    pub confidence: Option<u8>,
    /// A `benign` label (any case), or `benign` among the STIX 2.1 `indicator_types`. The SMS skips
    /// such indicators; the caller decides (skip, or remove an entry it holds).
    pub benign: bool,
    /// `modified`, seconds since the Unix epoch: which of two versions of one indicator is newer.
    pub modified: Option<i64>,
}

/// What one STIX object means to rephub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectOutcome {
    /// An indicator to take (unless [`Indicator::benign`]).
    Indicator(Indicator),
    /// A revoked indicator (`"revoked": true`): remove what was taken under this id. Reported
    /// whatever its pattern, `pattern_type`, labels or timestamps.
    Revoked {
        /// The STIX id: the caller removes the entries whose `STIX - ID` is this.
        id: String,
        /// The entry, when the pattern is one rephub takes.
        entry: Option<Entry>,
        /// `modified`, seconds since the Unix epoch, when present and well-formed.
        modified: Option<i64>,
    },
    /// Not an indicator, or an indicator rephub does not take (unsupported pattern, MD5,
    /// `pattern_type` other than `stix`): counted as skipped.
    Skipped {
        /// The object's id, when it has one.
        id: Option<String>,
        /// The object's `type` (`indicator`, `malware`, `relationship`, …).
        kind: String,
        /// Why it was skipped, for the log.
        reason: String,
    },
    /// A malformed object or indicator (not a JSON object, no type, missing or bad id, missing or
    /// invalid pattern, a value that is not an address, a bad timestamp, a property of the wrong
    /// type): counted as rejected.
    Invalid {
        /// The object's id, when it has one (even a malformed one), for the log.
        id: Option<String>,
        /// What is wrong, naming the property.
        reason: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Patterns
// ---------------------------------------------------------------------------------------------

/// Parse an indicator pattern that names one entry.
///
/// Accepts exactly one comparison in one observation, `[<object>:<path> = '<value>']`, on
/// `ipv4-addr:value` (address or CIDR), `ipv6-addr:value`, `domain-name:value`, `url:value`,
/// `file:hashes.'SHA-256'` and `file:hashes.'SHA-1'`. Whitespace and comments may appear between
/// tokens, `==` is `=`, redundant parentheses are allowed. Hash keys are matched ignoring case and
/// hyphens (`'SHA-256'`, `SHA256`, `'sha256'`), and may be quoted or not. The value is a
/// single-quoted string whose only escapes are `\'` and `\\`; it goes through the entry's canonical
/// form ([`Entry::parse`]). A domain value may not be written `[name]` (rephub's exact-match form),
/// and a URL value may not hold `*` (rephub's prefix mark), which STIX would take literally.
pub fn parse_pattern(pattern: &str) -> Result<Entry, PatternError> {
    let tokens = lex(pattern)?;
    let observation = Parser::new(tokens).pattern()?;
    entry_of(observation)
}

/// Longest quoted input in a message.
const ECHO: usize = 60;

fn short(s: &str) -> String {
    if s.chars().count() <= ECHO {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(ECHO).collect();
        format!("{head:?}…")
    }
}

fn invalid(msg: impl Into<String>) -> PatternError {
    PatternError::Invalid(msg.into())
}

fn unsupported(msg: impl Into<String>) -> PatternError {
    PatternError::Unsupported(msg.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    LBrack,
    RBrack,
    LParen,
    RParen,
    Colon,
    Dot,
    Comma,
    Star,
    Op(Op),
    /// `[A-Za-z_][A-Za-z0-9_-]*`: object types, property names, keywords (told apart by position).
    Ident(String),
    /// A STIX 2.0 double-quoted identifier, `""` unescaped.
    Quoted(String),
    /// A single-quoted string, unescaped.
    Str(String),
    /// An integer or decimal number, as written.
    Num {
        text: String,
        float: bool,
    },
    /// `h'…'`, `b'…'` or `t'…'`, by its prefix.
    Typed(char),
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "the end of the pattern".into(),
        Some(Tok::LBrack) => "'['".into(),
        Some(Tok::RBrack) => "']'".into(),
        Some(Tok::LParen) => "'('".into(),
        Some(Tok::RParen) => "')'".into(),
        Some(Tok::Colon) => "':'".into(),
        Some(Tok::Dot) => "'.'".into(),
        Some(Tok::Comma) => "','".into(),
        Some(Tok::Star) => "'*'".into(),
        Some(Tok::Op(o)) => format!("operator {}", op_name(*o)),
        Some(Tok::Ident(s)) => short(s),
        Some(Tok::Quoted(s)) => format!("quoted name {}", short(s)),
        Some(Tok::Str(s)) => format!("string {}", short(s)),
        Some(Tok::Num { text, .. }) => format!("number {}", short(text)),
        Some(Tok::Typed(c)) => format!("{c}'…' literal"),
    }
}

fn op_name(o: Op) -> &'static str {
    match o {
        Op::Eq => "=",
        Op::Ne => "!=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Gt => ">",
        Op::Ge => ">=",
    }
}

/// The grammar's whitespace (skipped between tokens).
fn is_space(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t'
            | '\r'
            | '\n'
            | '\u{0B}'
            | '\u{0C}'
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'
            ..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

fn lex(input: &str) -> Result<Vec<Tok>, PatternError> {
    let cs: Vec<char> = input.chars().collect();
    let at = |i: usize| cs.get(i).copied();
    let digit = |i: usize| at(i).is_some_and(|c| c.is_ascii_digit());
    let mut toks = Vec::new();
    let mut i = 0;
    while let Some(c) = at(i) {
        if is_space(c) {
            i += 1;
            continue;
        }
        let next = at(i + 1);
        let (tok, len) = match c {
            '/' if next == Some('*') => {
                let end = (i + 2..cs.len().saturating_sub(1))
                    .find(|&j| cs[j] == '*' && cs[j + 1] == '/')
                    .ok_or_else(|| invalid("unterminated /* comment"))?;
                i = end + 2;
                continue;
            }
            '/' if next == Some('/') => {
                while at(i).is_some_and(|c| c != '\r' && c != '\n') {
                    i += 1;
                }
                continue;
            }
            '[' => (Tok::LBrack, 1),
            ']' => (Tok::RBrack, 1),
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            ':' => (Tok::Colon, 1),
            ',' => (Tok::Comma, 1),
            '*' => (Tok::Star, 1),
            '=' if next == Some('=') => (Tok::Op(Op::Eq), 2),
            '=' => (Tok::Op(Op::Eq), 1),
            '!' if next == Some('=') => (Tok::Op(Op::Ne), 2),
            '<' if next == Some('>') => (Tok::Op(Op::Ne), 2),
            '<' if next == Some('=') => (Tok::Op(Op::Le), 2),
            '<' => (Tok::Op(Op::Lt), 1),
            '>' if next == Some('=') => (Tok::Op(Op::Ge), 2),
            '>' => (Tok::Op(Op::Gt), 1),
            '\'' => {
                let (s, end) = string_literal(&cs, i + 1)?;
                (Tok::Str(s), end - i)
            }
            '"' => {
                let (s, end) = quoted_name(&cs, i + 1)?;
                (Tok::Quoted(s), end - i)
            }
            '+' | '-' if digit(i + 1) || (next == Some('.') && digit(i + 2)) => number(&cs, i)?,
            '.' if digit(i + 1) => number(&cs, i)?,
            '0'..='9' => number(&cs, i)?,
            '.' => (Tok::Dot, 1),
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut end = i + 1;
                while at(end).is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                    end += 1;
                }
                if end == i + 1 && matches!(c, 'h' | 'b' | 't') && at(end) == Some('\'') {
                    typed_literal(&cs, i)?
                } else {
                    (Tok::Ident(cs[i..end].iter().collect()), end - i)
                }
            }
            other => return Err(invalid(format!("unexpected character {other:?}"))),
        };
        toks.push(tok);
        i += len;
    }
    Ok(toks)
}

/// A single-quoted string from just after its opening quote: `\'` and `\\` are the only escapes.
/// Returns the value and the index just after the closing quote.
fn string_literal(cs: &[char], mut i: usize) -> Result<(String, usize), PatternError> {
    let unterminated = || invalid("unterminated string: the closing quote ' is missing");
    let mut s = String::new();
    loop {
        match cs.get(i) {
            None => return Err(unterminated()),
            Some('\'') => return Ok((s, i + 1)),
            Some('\\') => {
                match cs.get(i + 1) {
                    Some(&c @ ('\'' | '\\')) => s.push(c),
                    Some(c) => {
                        return Err(invalid(format!(
                            "bad escape \\{c} in a string (only \\' and \\\\ are allowed)"
                        )));
                    }
                    None => return Err(unterminated()),
                }
                i += 2;
            }
            Some(&c) => {
                s.push(c);
                i += 1;
            }
        }
    }
}

/// A STIX 2.0 double-quoted identifier from just after its opening quote (`""` is a quote).
fn quoted_name(cs: &[char], mut i: usize) -> Result<(String, usize), PatternError> {
    let mut s = String::new();
    loop {
        match cs.get(i) {
            None => {
                return Err(invalid(
                    "unterminated name: the closing quote \" is missing",
                ));
            }
            Some('"') if cs.get(i + 1) == Some(&'"') => {
                s.push('"');
                i += 2;
            }
            Some('"') => return Ok((s, i + 1)),
            Some(&c) => {
                s.push(c);
                i += 1;
            }
        }
    }
}

/// `[+-]? ('0' | [1-9][0-9]*)` or `[+-]? [0-9]* '.' [0-9]+`.
fn number(cs: &[char], start: usize) -> Result<(Tok, usize), PatternError> {
    let digit = |i: usize| cs.get(i).is_some_and(|c| c.is_ascii_digit());
    let mut i = start;
    if matches!(cs.get(i), Some('+' | '-')) {
        i += 1;
    }
    let int_start = i;
    while digit(i) {
        i += 1;
    }
    let int_digits = i - int_start;
    let float = cs.get(i) == Some(&'.') && digit(i + 1);
    if float {
        i += 1;
        while digit(i) {
            i += 1;
        }
    } else if int_digits > 1 && cs[int_start] == '0' {
        return Err(invalid("an integer may not start with 0"));
    }
    let text: String = cs[start..i].iter().collect();
    Ok((Tok::Num { text, float }, i - start))
}

/// `h'<hex pairs>'`, `b'<base64>'`, `t'<RFC 3339 UTC timestamp>'`, from the prefix letter.
fn typed_literal(cs: &[char], start: usize) -> Result<(Tok, usize), PatternError> {
    let prefix = cs[start];
    let body_start = start + 2;
    let end = (body_start..cs.len())
        .find(|&j| cs[j] == '\'')
        .ok_or_else(|| invalid(format!("unterminated {prefix}'…' literal")))?;
    let body: String = cs[body_start..end].iter().collect();
    let ok = match prefix {
        'h' => body.len() % 2 == 0 && body.bytes().all(|b| b.is_ascii_hexdigit()),
        'b' => {
            let data = body.trim_end_matches('=');
            !body.is_empty()
                && body.len() % 4 == 0
                && body.len() - data.len() <= 2
                && data
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        }
        _ => body.ends_with('Z') && DateTime::parse_from_rfc3339(&body).is_ok(),
    };
    if !ok {
        return Err(invalid(format!("bad {prefix}'…' literal {}", short(&body))));
    }
    Ok((Tok::Typed(prefix), end + 1 - start))
}

/// One step of an object path after the object type.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    /// `[n]` or `[*]`.
    Index,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ObjectPath {
    object: String,
    steps: Vec<Step>,
}

impl ObjectPath {
    fn show(&self) -> String {
        let mut s = format!("{}:", self.object);
        for (n, step) in self.steps.iter().enumerate() {
            match step {
                Step::Key(k) => {
                    if n > 0 {
                        s.push('.');
                    }
                    if k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                        s.push_str(k);
                    } else {
                        s.push_str(&format!("'{k}'"));
                    }
                }
                Step::Index => s.push_str("[…]"),
            }
        }
        short(&s)
    }
}

/// The value side of a comparison, as far as rephub cares.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Literal {
    Str(String),
    /// A number, boolean, binary, hex or timestamp literal, or a set (`IN`), or none (`EXISTS`).
    Other(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Comparison {
    Test {
        path: ObjectPath,
        negated: bool,
        op: &'static str,
        value: Literal,
    },
    /// Several comparisons joined with this keyword.
    Joined(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Observation {
    Simple(Comparison),
    /// Several observations joined with this keyword.
    Joined(&'static str),
    /// An observation with this qualifier.
    Qualified(&'static str),
}

/// Parentheses nested deeper than this are refused (bounded recursion on hostile input).
const MAX_DEPTH: usize = 64;

/// Recursive descent over the STIX patterning grammar. Keywords are recognised where the grammar
/// expects them, in any case, so a property may be called `start` and `and` joins like `AND`.
struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn new(toks: Vec<Tok>) -> Parser {
        Parser {
            toks,
            pos: 0,
            depth: 0,
        }
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn bump(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn at_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw))
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        let yes = self.at_keyword(kw);
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn expect(&mut self, want: &Tok, what: &str) -> Result<(), PatternError> {
        if self.peek() == Some(want) {
            self.pos += 1;
            Ok(())
        } else {
            Err(invalid(format!(
                "expected {what}, found {}",
                describe(self.peek())
            )))
        }
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), PatternError> {
        if self.eat_keyword(kw) {
            Ok(())
        } else {
            Err(invalid(format!(
                "expected {kw}, found {}",
                describe(self.peek())
            )))
        }
    }

    fn nest(&mut self) -> Result<(), PatternError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(invalid(format!(
                "parentheses nested more than {MAX_DEPTH} deep"
            )));
        }
        Ok(())
    }

    fn pattern(mut self) -> Result<Observation, PatternError> {
        if self.toks.is_empty() {
            return Err(invalid("empty pattern"));
        }
        let o = self.observations()?;
        match self.peek() {
            None => Ok(o),
            t => Err(invalid(format!(
                "unexpected {} after the end of the pattern",
                describe(t)
            ))),
        }
    }

    /// `observationExpressions`: `FOLLOWEDBY` binds loosest, then `OR`, then `AND`.
    fn observations(&mut self) -> Result<Observation, PatternError> {
        let mut o = self.observations_or()?;
        while self.eat_keyword("FOLLOWEDBY") {
            self.observations_or()?;
            o = Observation::Joined("FOLLOWEDBY");
        }
        Ok(o)
    }

    fn observations_or(&mut self) -> Result<Observation, PatternError> {
        let mut o = self.observations_and()?;
        while self.eat_keyword("OR") {
            self.observations_and()?;
            o = Observation::Joined("OR");
        }
        Ok(o)
    }

    fn observations_and(&mut self) -> Result<Observation, PatternError> {
        let mut o = self.qualified()?;
        while self.eat_keyword("AND") {
            self.qualified()?;
            o = Observation::Joined("AND");
        }
        Ok(o)
    }

    fn qualified(&mut self) -> Result<Observation, PatternError> {
        let mut o = self.observation()?;
        loop {
            if self.eat_keyword("WITHIN") {
                match self.bump() {
                    Some(Tok::Num { text, .. }) if !text.starts_with('-') => {}
                    t => {
                        return Err(invalid(format!(
                            "expected a number of seconds after WITHIN, found {}",
                            describe(t.as_ref())
                        )));
                    }
                }
                self.expect_keyword("SECONDS")?;
                o = Observation::Qualified("WITHIN");
            } else if self.eat_keyword("REPEATS") {
                match self.bump() {
                    Some(Tok::Num { text, float: false }) if !text.starts_with('-') => {}
                    t => {
                        return Err(invalid(format!(
                            "expected a whole number after REPEATS, found {}",
                            describe(t.as_ref())
                        )));
                    }
                }
                self.expect_keyword("TIMES")?;
                o = Observation::Qualified("REPEATS");
            } else if self.eat_keyword("START") {
                self.time_literal("START")?;
                self.expect_keyword("STOP")?;
                self.time_literal("STOP")?;
                o = Observation::Qualified("START/STOP");
            } else {
                return Ok(o);
            }
        }
    }

    fn time_literal(&mut self, after: &str) -> Result<(), PatternError> {
        match self.bump() {
            Some(Tok::Str(_) | Tok::Typed('t')) => Ok(()),
            t => Err(invalid(format!(
                "expected a timestamp after {after}, found {}",
                describe(t.as_ref())
            ))),
        }
    }

    fn observation(&mut self) -> Result<Observation, PatternError> {
        match self.bump() {
            Some(Tok::LBrack) => {
                let c = self.comparisons()?;
                self.expect(&Tok::RBrack, "']' closing the observation")?;
                Ok(Observation::Simple(c))
            }
            Some(Tok::LParen) => {
                self.nest()?;
                let o = self.observations()?;
                self.expect(&Tok::RParen, "')'")?;
                self.depth -= 1;
                Ok(o)
            }
            t => Err(invalid(format!(
                "expected '[' opening an observation, found {}",
                describe(t.as_ref())
            ))),
        }
    }

    /// `comparisonExpression`: `OR` binds looser than `AND`.
    fn comparisons(&mut self) -> Result<Comparison, PatternError> {
        let mut c = self.comparisons_and()?;
        while self.eat_keyword("OR") {
            self.comparisons_and()?;
            c = Comparison::Joined("OR");
        }
        Ok(c)
    }

    fn comparisons_and(&mut self) -> Result<Comparison, PatternError> {
        let mut c = self.comparison()?;
        while self.eat_keyword("AND") {
            self.comparison()?;
            c = Comparison::Joined("AND");
        }
        Ok(c)
    }

    fn comparison(&mut self) -> Result<Comparison, PatternError> {
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            self.nest()?;
            let c = self.comparisons()?;
            self.expect(&Tok::RParen, "')'")?;
            self.depth -= 1;
            return Ok(c);
        }
        // STIX 2.1 `EXISTS <path>`; `exists:…` would be an object type.
        if self.at_keyword("EXISTS") && self.toks.get(self.pos + 1) != Some(&Tok::Colon) {
            self.pos += 1;
            let path = self.object_path()?;
            return Ok(Comparison::Test {
                path,
                negated: false,
                op: "EXISTS",
                value: Literal::Other("none"),
            });
        }
        let path = self.object_path()?;
        let negated = self.eat_keyword("NOT");
        let (op, value) = match self.bump() {
            Some(Tok::Op(o)) => {
                let allow_bool = matches!(o, Op::Eq | Op::Ne);
                (op_name(o), self.literal(allow_bool)?)
            }
            Some(Tok::Ident(k)) if k.eq_ignore_ascii_case("IN") => {
                self.set_literal()?;
                ("IN", Literal::Other("set"))
            }
            Some(Tok::Ident(k)) => {
                let op = ["LIKE", "MATCHES", "ISSUBSET", "ISSUPERSET"]
                    .into_iter()
                    .find(|op| k.eq_ignore_ascii_case(op))
                    .ok_or_else(|| {
                        invalid(format!(
                            "expected a comparison operator after {}, found {}",
                            path.show(),
                            short(&k)
                        ))
                    })?;
                match self.bump() {
                    Some(Tok::Str(s)) => (op, Literal::Str(s)),
                    t => {
                        return Err(invalid(format!(
                            "expected a string after {op}, found {}",
                            describe(t.as_ref())
                        )));
                    }
                }
            }
            t => {
                return Err(invalid(format!(
                    "expected a comparison operator after {}, found {}",
                    path.show(),
                    describe(t.as_ref())
                )));
            }
        };
        Ok(Comparison::Test {
            path,
            negated,
            op,
            value,
        })
    }

    fn object_path(&mut self) -> Result<ObjectPath, PatternError> {
        let object = match self.bump() {
            Some(Tok::Ident(s)) => s,
            t => {
                return Err(invalid(format!(
                    "expected an object type such as ipv4-addr, found {}",
                    describe(t.as_ref())
                )));
            }
        };
        self.expect(&Tok::Colon, "':' after the object type")?;
        let mut steps = vec![Step::Key(self.path_key(&object)?)];
        loop {
            match self.peek() {
                Some(Tok::Dot) => {
                    self.pos += 1;
                    steps.push(Step::Key(self.path_key(&object)?));
                }
                Some(Tok::LBrack) => {
                    self.pos += 1;
                    match self.bump() {
                        Some(Tok::Star | Tok::Num { float: false, .. }) => {}
                        t => {
                            return Err(invalid(format!(
                                "expected an index or '*' in a path, found {}",
                                describe(t.as_ref())
                            )));
                        }
                    }
                    self.expect(&Tok::RBrack, "']' closing the index")?;
                    steps.push(Step::Index);
                }
                _ => return Ok(ObjectPath { object, steps }),
            }
        }
    }

    fn path_key(&mut self, object: &str) -> Result<String, PatternError> {
        match self.bump() {
            Some(Tok::Ident(s) | Tok::Str(s) | Tok::Quoted(s)) => Ok(s),
            t => Err(invalid(format!(
                "expected a property name in a path of {}, found {}",
                short(object),
                describe(t.as_ref())
            ))),
        }
    }

    fn literal(&mut self, allow_bool: bool) -> Result<Literal, PatternError> {
        match self.bump() {
            Some(Tok::Str(s)) => Ok(Literal::Str(s)),
            Some(Tok::Num { .. }) => Ok(Literal::Other("number")),
            Some(Tok::Typed(_)) => Ok(Literal::Other("typed literal")),
            Some(Tok::Ident(s))
                if allow_bool
                    && (s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false")) =>
            {
                Ok(Literal::Other("boolean"))
            }
            t => Err(invalid(format!(
                "expected a value, found {}",
                describe(t.as_ref())
            ))),
        }
    }

    /// `( )` or `( lit, lit, … )`.
    fn set_literal(&mut self) -> Result<(), PatternError> {
        self.expect(&Tok::LParen, "'(' opening the set after IN")?;
        if self.peek() == Some(&Tok::RParen) {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.literal(true)?;
            match self.bump() {
                Some(Tok::Comma) => {}
                Some(Tok::RParen) => return Ok(()),
                t => {
                    return Err(invalid(format!(
                        "expected ',' or ')' in a set, found {}",
                        describe(t.as_ref())
                    )));
                }
            }
        }
    }
}

/// The one entry a parsed pattern names, or why it names none.
fn entry_of(o: Observation) -> Result<Entry, PatternError> {
    let c = match o {
        Observation::Simple(c) => c,
        Observation::Joined(kw) => {
            return Err(unsupported(format!(
                "several observations joined with {kw} (only one comparison is taken)"
            )));
        }
        Observation::Qualified(q) => {
            return Err(unsupported(format!("{q} qualifier")));
        }
    };
    let (path, negated, op, value) = match c {
        Comparison::Test {
            path,
            negated,
            op,
            value,
        } => (path, negated, op, value),
        Comparison::Joined(kw) => {
            return Err(unsupported(format!(
                "several comparisons joined with {kw} (only one is taken)"
            )));
        }
    };
    if negated {
        return Err(unsupported(format!("NOT {op} (only = is taken)")));
    }
    if op != "=" {
        return Err(unsupported(format!("operator {op} (only = is taken)")));
    }
    let kind = kind_of(&path)?;
    let value = match value {
        Literal::Str(s) => s,
        Literal::Other(what) => {
            return Err(invalid(format!(
                "{} compared with a {what}, not a string",
                path.show()
            )));
        }
    };
    match kind {
        Kind::Domain if value.trim_start().starts_with('[') => {
            return Err(invalid(format!("{} is not a domain name", short(&value))));
        }
        Kind::Url if value.contains('*') => {
            return Err(unsupported(format!(
                "URL {} holds '*', which rephub's URL entries reserve for prefix entries",
                short(&value)
            )));
        }
        _ => {}
    }
    Entry::parse(kind, &value).map_err(|e| invalid(e.to_string()))
}

/// The entry kind an object path names.
fn kind_of(path: &ObjectPath) -> Result<Kind, PatternError> {
    let value_kind = match path.object.as_str() {
        "ipv4-addr" => Some(Kind::Ipv4),
        "ipv6-addr" => Some(Kind::Ipv6),
        "domain-name" => Some(Kind::Domain),
        "url" => Some(Kind::Url),
        _ => None,
    };
    if let Some(kind) = value_kind {
        return match path.steps.as_slice() {
            [Step::Key(k)] if k == "value" => Ok(kind),
            _ => Err(unsupported(format!(
                "property {} (only {}:value is taken)",
                path.show(),
                path.object
            ))),
        };
    }
    if path.object == "file" {
        return match path.steps.as_slice() {
            [Step::Key(h), Step::Key(alg)] if h == "hashes" => {
                let norm = alg.replace('-', "").to_ascii_uppercase();
                match norm.as_str() {
                    "SHA256" => Ok(Kind::Sha256),
                    "SHA1" => Ok(Kind::Sha1),
                    "MD5" => Err(unsupported("MD5 hashes (only SHA-1 and SHA-256 are taken)")),
                    _ => Err(unsupported(format!(
                        "{} hashes (only SHA-1 and SHA-256 are taken)",
                        short(alg)
                    ))),
                }
            }
            _ => Err(unsupported(format!(
                "property {} (only file:hashes.'SHA-256' and 'SHA-1' are taken)",
                path.show()
            ))),
        };
    }
    Err(unsupported(format!(
        "object type {} (taken: ipv4-addr, ipv6-addr, domain-name, url, file hashes)",
        short(&path.object)
    )))
}

// ---------------------------------------------------------------------------------------------
// Labels
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Objects and bundles
// ---------------------------------------------------------------------------------------------

/// Read one STIX 2.0 or 2.1 object. Never panics.
///
/// Read the same way whatever the `spec_version`: the 2.1-only properties (`pattern_type`,
/// `confidence`, `indicator_types`) are honoured when present, and a missing `pattern_type` means
/// `stix`. Required-but-unused properties (`created`, `valid_from`, and the 2.0 `labels`) are not
/// demanded: rephub takes what it can use. Properties that are present and used must be
/// well-formed: `id` (`indicator--…`, at most 255 characters), `pattern`, `revoked` (boolean),
/// `valid_until` and `modified` (RFC 3339), `labels` and `indicator_types` (lists of strings),
/// `confidence` (integer 0–100); a `null` counts as absent.
pub fn read_object(v: &Value) -> ObjectOutcome {
    let Some(obj) = v.as_object() else {
        return ObjectOutcome::Invalid {
            id: None,
            reason: "not a JSON object".into(),
        };
    };
    let id = obj.get("id").and_then(Value::as_str).map(str::to_string);
    let kind = match obj.get("type") {
        Some(Value::String(t)) => t,
        _ => {
            return ObjectOutcome::Invalid {
                id,
                reason: "no \"type\" string".into(),
            };
        }
    };
    if kind != "indicator" {
        return ObjectOutcome::Skipped {
            id,
            kind: kind.clone(),
            reason: format!("{} objects carry no entry", short(kind)),
        };
    }
    indicator(obj).unwrap_or_else(|reason| ObjectOutcome::Invalid { id, reason })
}

fn indicator(obj: &Map<String, Value>) -> Result<ObjectOutcome, String> {
    let id = match obj.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("\"id\" is not a string".into()),
        None => return Err("no \"id\"".into()),
    };
    check_id(&id)?;
    let revoked = match present(obj, "revoked") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("\"revoked\" is not true or false".into()),
    };
    let pattern_type = match present(obj, "pattern_type") {
        None => None,
        Some(Value::String(t)) => Some(t.as_str()),
        Some(_) => return Err("\"pattern_type\" is not a string".into()),
    };
    let stix = pattern_type.is_none_or(|t| t == "stix");
    let pattern = present(obj, "pattern");
    if revoked {
        // Only the id is needed to remove what was taken; the rest is best effort.
        let entry = match pattern {
            Some(Value::String(p)) if stix => parse_pattern(p).ok(),
            _ => None,
        };
        let modified = timestamp(obj, "modified").ok().flatten();
        return Ok(ObjectOutcome::Revoked {
            id,
            entry,
            modified,
        });
    }
    if let Some(t) = pattern_type.filter(|_| !stix) {
        return Ok(ObjectOutcome::Skipped {
            id: Some(id),
            kind: "indicator".into(),
            reason: format!("pattern_type {} (only stix patterns)", short(t)),
        });
    }
    let pattern = match pattern {
        Some(Value::String(p)) => p,
        Some(_) => return Err("\"pattern\" is not a string".into()),
        None => return Err("no \"pattern\"".into()),
    };
    let entry = match parse_pattern(pattern) {
        Ok(e) => e,
        Err(e @ PatternError::Unsupported(_)) => {
            return Ok(ObjectOutcome::Skipped {
                id: Some(id),
                kind: "indicator".into(),
                reason: e.to_string(),
            });
        }
        Err(e @ PatternError::Invalid(_)) => return Err(e.to_string()),
    };
    let valid_until = timestamp(obj, "valid_until")?;
    let modified = timestamp(obj, "modified")?;
    let labels = strings(obj, "labels")?;
    let types = strings(obj, "indicator_types")?;
    let confidence_property = match present(obj, "confidence") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .filter(|n| *n <= 100)
                .ok_or("\"confidence\" is not a whole number from 0 to 100")?,
        ),
    };
    // Labels win: the SMS rule is label-based; the 2.1 property is the fallback.
    let confidence = labels
        .iter()
        .find_map(|l| confidence_label(l))
        .or(confidence_property);
    Ok(ObjectOutcome::Indicator(Indicator {
        id,
        entry,
        valid_until,
        severity: labels.iter().find_map(|l| severity_label(l)),
        confidence,
        benign: labels
            .iter()
            .chain(&types)
            .any(|l| l.eq_ignore_ascii_case("benign")),
        modified,
    }))
}

/// A property that is there and not `null`.
fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn check_id(id: &str) -> Result<(), String> {
    let rest = id
        .strip_prefix("indicator--")
        .ok_or_else(|| format!("id {} does not start with indicator--", short(id)))?;
    if rest.is_empty() || rest.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("bad id {}", short(id)));
    }
    if id.chars().count() > MAX_TEXT {
        return Err(format!("id is longer than {MAX_TEXT} characters"));
    }
    Ok(())
}

/// An RFC 3339 timestamp property, as seconds since the Unix epoch (fractions dropped).
fn timestamp(obj: &Map<String, Value>, key: &str) -> Result<Option<i64>, String> {
    match present(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.timestamp()))
            .map_err(|_| format!("\"{key}\" {} is not an RFC 3339 timestamp", short(s))),
        Some(_) => Err(format!("\"{key}\" is not a string")),
    }
}

/// A list-of-strings property (absent: empty).
fn strings<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Vec<&'a str>, String> {
    match present(obj, key) {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| format!("\"{key}\" holds a value that is not a string"))
            })
            .collect(),
        Some(_) => Err(format!("\"{key}\" is not a list")),
    }
}

/// Read a bundle, `{"type": "bundle", "id": …, "objects": [...]}`: one outcome per object, in
/// order. STIX 2.0 bundles carry `spec_version`, 2.1 bundles do not (their objects do); both are
/// read. A bundle without `objects` is empty. Errors only when `v` is not a bundle; odd objects are
/// outcomes, never errors.
pub fn read_bundle(v: &Value) -> Result<Vec<ObjectOutcome>, StixError> {
    let Some(obj) = v.as_object() else {
        return Err(StixError::NotABundle("not a JSON object".into()));
    };
    match obj.get("type") {
        Some(Value::String(t)) if t == "bundle" => {}
        Some(Value::String(t)) => {
            return Err(StixError::NotABundle(format!(
                "type is {}, not bundle",
                short(t)
            )));
        }
        _ => return Err(StixError::NotABundle("no \"type\" string".into())),
    }
    match present(obj, "objects") {
        None => Ok(Vec::new()),
        Some(Value::Array(objects)) => Ok(objects.iter().map(read_object).collect()),
        Some(_) => Err(StixError::NotABundle("\"objects\" is not a list".into())),
    }
}

/// [`read_bundle`] from JSON text (the body POSTed to the SMS TAXII endpoint).
pub fn parse_bundle(text: &str) -> Result<Vec<ObjectOutcome>, StixError> {
    let v: Value = serde_json::from_str(text).map_err(|e| StixError::Json(e.to_string()))?;
    read_bundle(&v)
}

/// The tags rephub writes for an indicator, as the SMS STIX ingest does: `STIX - ID` = the id,
/// `STIX - Severity` (High, Medium, Low) from the severity label, `STIX - Confidence` (0–100) from
/// the confidence label or else the STIX 2.1 `confidence` property (see [`Indicator::confidence`]),
/// `Reputation Entries TTL` = `valid_until`. A category missing from `catalog`, or whose definition
/// refuses the value (a user-changed list, say), is left out; so is a tag with nothing to say.
pub fn indicator_tags(ind: &Indicator, catalog: &Catalog) -> Tags {
    let mut values = vec![(builtin::STIX_ID, ind.id.clone())];
    if let Some(s) = ind.severity {
        values.push((builtin::STIX_SEVERITY, s.tag_value().to_string()));
    }
    if let Some(c) = ind.confidence {
        values.push((builtin::STIX_CONFIDENCE, c.to_string()));
    }
    if let Some(t) = ind.valid_until {
        values.push((builtin::TTL, format_utc(t)));
    }
    let mut tags = Tags::new();
    for (category, raw) in values {
        if let Ok(Some((id, value))) = catalog.parse_pair(category, &raw) {
            tags.insert(id, value);
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::Config;
    use serde_json::json;

    use super::*;
    use crate::tags::{Category, CategoryType, TagValue, builtin_categories};

    fn entry(kind: Kind, s: &str) -> Entry {
        Entry::parse(kind, s).unwrap()
    }

    fn is_unsupported(p: &str) -> bool {
        matches!(parse_pattern(p), Err(PatternError::Unsupported(_)))
    }

    fn is_invalid(p: &str) -> bool {
        matches!(parse_pattern(p), Err(PatternError::Invalid(_)))
    }

    const SHA256: &str = "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f";
    const SHA1: &str = "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12";
    const ID: &str = "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f";

    #[test]
    fn supported_kinds() {
        let cases = [
            (
                "[ipv4-addr:value = '1.2.3.4']",
                entry(Kind::Ipv4, "1.2.3.4"),
            ),
            (
                "[ipv4-addr:value = '10.1.2.3/8']",
                entry(Kind::Ipv4, "10.0.0.0/8"),
            ),
            (
                "[ipv6-addr:value = '2001:DB8::1']",
                entry(Kind::Ipv6, "2001:db8::1"),
            ),
            (
                "[ipv6-addr:value = '2001:db8::/32']",
                entry(Kind::Ipv6, "2001:db8::/32"),
            ),
            (
                "[domain-name:value = 'Evil.Example.']",
                entry(Kind::Domain, "evil.example"),
            ),
            (
                "[domain-name:value = 'bücher.example']",
                entry(Kind::Domain, "xn--bcher-kva.example"),
            ),
            (
                "[url:value = 'HTTP://X.Example/p?q=1#frag']",
                entry(Kind::Url, "http://x.example/p?q=1"),
            ),
            (
                &format!("[file:hashes.'SHA-256' = '{}']", SHA256.to_uppercase()),
                entry(Kind::Sha256, SHA256),
            ),
            (
                &format!("[file:hashes.'SHA-1' = '{SHA1}']"),
                entry(Kind::Sha1, SHA1),
            ),
        ];
        for (p, want) in cases {
            assert_eq!(parse_pattern(p), Ok(want), "{p}");
        }
        // Hash key spellings seen in feeds: case and hyphen do not matter, quoted or not.
        for key in [
            "'SHA-256'",
            "'SHA256'",
            "SHA256",
            "sha256",
            "'sha-256'",
            "\"SHA-256\"",
            "SHA-256",
        ] {
            let p = format!("[file:hashes.{key} = '{SHA256}']");
            assert_eq!(parse_pattern(&p), Ok(entry(Kind::Sha256, SHA256)), "{p}");
        }
        for key in ["'SHA-1'", "SHA1", "'sha1'"] {
            let p = format!("[file:hashes.{key} = '{SHA1}']");
            assert_eq!(parse_pattern(&p), Ok(entry(Kind::Sha1, SHA1)), "{p}");
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(
            parse_pattern(r"[url:value = 'http://x.example/it\'s']"),
            Ok(entry(Kind::Url, "http://x.example/it's"))
        );
        assert_eq!(
            parse_pattern(r"[url:value = 'http://x.example/a\\b']"),
            Ok(entry(Kind::Url, r"http://x.example/a\b"))
        );
        assert_eq!(lex(r"'a\'b\\c'"), Ok(vec![Tok::Str(r"a'b\c".into())]));
        for bad in [
            r"[url:value = 'http://x.example/\n']",
            r"[url:value = 'http://x.example/\x41']",
            r"[url:value = 'http://x.example/\']",
            r"[url:value = 'http://x.example/\",
        ] {
            assert!(is_invalid(bad), "{bad:?}");
        }
        // A backslash is not allowed in a domain name.
        assert!(is_invalid(r"[domain-name:value = 'evil\\.example']"));
    }

    #[test]
    fn whitespace_comments_and_parentheses() {
        let want = Ok(entry(Kind::Ipv4, "1.2.3.4"));
        for p in [
            "[ipv4-addr:value='1.2.3.4']",
            "  [ ipv4-addr : value  =  '1.2.3.4' ]  ",
            "\t[\nipv4-addr:value\r\n=\t'1.2.3.4'\n]\n",
            "\u{a0}[ipv4-addr:value\u{2003}=\u{3000}'1.2.3.4']",
            "[ipv4-addr:value == '1.2.3.4']",
            "[ipv4-addr:value = /* the C2 */ '1.2.3.4']",
            "[ipv4-addr:value = '1.2.3.4'] // seen 2026-01-02",
            "([ipv4-addr:value = '1.2.3.4'])",
            "(( [ipv4-addr:value = '1.2.3.4'] ))",
            "[(ipv4-addr:value = '1.2.3.4')]",
        ] {
            assert_eq!(parse_pattern(p), want, "{p:?}");
        }
        // Inside the quotes, spaces belong to the value (and Entry::parse trims them).
        assert_eq!(parse_pattern("[ipv4-addr:value = ' 1.2.3.4 ']"), want);
    }

    #[test]
    fn unsupported_forms() {
        for p in [
            "[ipv4-addr:value = '1.2.3.4' AND ipv4-addr:value = '5.6.7.8']",
            "[ipv4-addr:value = '1.2.3.4' OR domain-name:value = 'a.example']",
            "[ipv4-addr:value = '1.2.3.4' and ipv4-addr:value = '5.6.7.8']",
            "[ipv4-addr:value = '1.2.3.4'] AND [ipv4-addr:value = '5.6.7.8']",
            "[ipv4-addr:value = '1.2.3.4'] OR [ipv4-addr:value = '5.6.7.8']",
            "[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [url:value = 'http://a/']",
            "([ipv4-addr:value = '1.2.3.4'] OR [ipv4-addr:value = '5.6.7.8'])",
            "[ipv4-addr:value != '1.2.3.4']",
            "[ipv4-addr:value <> '1.2.3.4']",
            "[ipv4-addr:value NOT = '1.2.3.4']",
            "[ipv4-addr:value MATCHES '^1\\\\.2']",
            "[domain-name:value LIKE '%.example']",
            "[ipv4-addr:value IN ('1.2.3.4', '5.6.7.8')]",
            "[ipv4-addr:value ISSUBSET '10.0.0.0/8']",
            "[file:size > 1000]",
            "[ipv4-addr:value = '1.2.3.4'] WITHIN 300 SECONDS",
            "[ipv4-addr:value = '1.2.3.4'] REPEATS 5 TIMES",
            "[ipv4-addr:value = '1.2.3.4'] START t'2026-01-01T00:00:00Z' STOP t'2026-02-01T00:00:00Z'",
            "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']",
            "[file:hashes.'MD5' = 'd41d8cd98f00b204e9800998ecf8427e']",
            "[file:hashes.'SHA-512' = 'abcd']",
            "[file:name = 'evil.exe']",
            "[x509-certificate:hashes.'SHA-256' = 'aa']",
            "[email-addr:value = 'a@b.example']",
            "[network-traffic:dst_ref.value = '1.2.3.4']",
            "[ipv4-addr:resolves_to_refs[*].value = '00:11:22:33:44:55']",
            "[IPv4-Addr:value = '1.2.3.4']",
            "[EXISTS ipv4-addr:value]",
            "[url:value = 'http://x.example/*']",
        ] {
            assert!(is_unsupported(p), "{p:?}: {:?}", parse_pattern(p));
        }
        // `start` is a property name here, not the START keyword.
        assert!(is_unsupported(
            "[network-traffic:start = '2026-01-01T00:00:00Z']"
        ));
    }

    #[test]
    fn invalid_forms() {
        for p in [
            "",
            "   ",
            "/* nothing */",
            "[ipv4-addr:value = '1.2.3.4]",
            "[ipv4-addr:value = '1.2.3.4'",
            "ipv4-addr:value = '1.2.3.4'",
            "ipv4-addr:value = '1.2.3.4']",
            "[ipv4-addr:value = '300.1.2.3']",
            "[ipv4-addr:value = '1.2.3.4/33']",
            "[ipv4-addr:value = '2001:db8::1']",
            "[ipv6-addr:value = '1.2.3.4']",
            "[ipv4-addr:value = '']",
            "[ipv4-addr:value = 1.2.3.4]",
            "[ipv4-addr:value = 5]",
            "[ipv4-addr:value = true]",
            "[ipv4-addr:value =]",
            "[ipv4-addr:value '1.2.3.4']",
            "[ipv4-addr = '1.2.3.4']",
            "[]",
            "[ipv4-addr:value = '1.2.3.4'] junk",
            "[ipv4-addr:value = '1.2.3.4'] AND",
            "[ipv4-addr:value = '1.2.3.4'] WITHIN SECONDS",
            "[ipv4-addr:value = '1.2.3.4' AND]",
            "([ipv4-addr:value = '1.2.3.4']",
            "[ipv4-addr:value = '1.2.3.4'] /* open",
            "[domain-name:value = '[evil.example]']",
            "[domain-name:value = 'evil..example']",
            "[url:value = 'http://']",
            &format!("[file:hashes.'SHA-256' = '{SHA1}']"),
            &format!("[file:hashes.'SHA-1' = '{SHA256}']"),
            "[file:hashes.'SHA-256' = 'zz']",
            "[ipv4-addr:value = h'0102']",
            "[ipv4-addr:value IN ('a',)]",
            "[ipv4-addr:value = '1.2.3.4'] START t'nope' STOP t'2026-01-01T00:00:00Z'",
            "[ipv4-addr:value = '1.2.3.4'] REPEATS 007 TIMES",
            "[ipv4-addr:value ~ '1.2.3.4']",
            "[ipv4-addr:value = \"1.2.3.4\"]",
        ] {
            assert!(is_invalid(p), "{p:?}: {:?}", parse_pattern(p));
        }
        let deep = format!(
            "{}[ipv4-addr:value = '1.2.3.4']{}",
            "(".repeat(10_000),
            ")".repeat(10_000)
        );
        assert!(is_invalid(&deep));
        let ok = format!(
            "{}[ipv4-addr:value = '1.2.3.4']{}",
            "(".repeat(MAX_DEPTH),
            ")".repeat(MAX_DEPTH)
        );
        assert_eq!(parse_pattern(&ok), Ok(entry(Kind::Ipv4, "1.2.3.4")));
    }

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

    fn label_strategy() -> impl Strategy<Value = String> {
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

    fn config(cases: u32) -> Config {
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        }
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

    fn obj(extra: Value) -> Value {
        let mut v = json!({
            "type": "indicator",
            "spec_version": "2.1",
            "id": ID,
            "created": "2026-01-02T03:04:05.000Z",
            "modified": "2026-01-02T03:04:05.000Z",
            "pattern": "[ipv4-addr:value = '1.2.3.4']",
            "pattern_type": "stix",
            "valid_from": "2026-01-02T03:04:05Z",
        });
        if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
            for (k, x) in e {
                if x.is_null() {
                    m.remove(&k);
                } else {
                    m.insert(k, x);
                }
            }
        }
        v
    }

    fn indicator_of(v: &Value) -> Indicator {
        match read_object(v) {
            ObjectOutcome::Indicator(i) => i,
            o => panic!("not an indicator: {o:?}"),
        }
    }

    #[test]
    fn stix21_indicator() {
        let i = indicator_of(&obj(json!({
            "valid_until": "2027-01-02T03:04:05.250Z",
            "labels": ["severity-medium", "confidence-20"],
            "confidence": 75,
        })));
        assert_eq!(
            i,
            Indicator {
                id: ID.into(),
                entry: entry(Kind::Ipv4, "1.2.3.4"),
                valid_until: Some(1_798_859_045),
                severity: Some(Severity::Medium),
                confidence: Some(20),
                benign: false,
                modified: Some(1_767_323_045),
            }
        );
        // Without a confidence label, the 2.1 property.
        let i = indicator_of(&obj(json!({"confidence": 75})));
        assert_eq!(
            (i.confidence, i.severity, i.valid_until),
            (Some(75), None, None)
        );
        // The first matching label wins.
        let i = indicator_of(&obj(json!({
            "labels": ["x", "Severity-High", "severity-low", "confidence-1", "confidence-2"]
        })));
        assert_eq!((i.severity, i.confidence), (Some(Severity::High), Some(1)));
    }

    #[test]
    fn stix20_indicator() {
        let v = json!({
            "type": "indicator",
            "id": ID,
            "created": "2017-01-02T03:04:05.000Z",
            "modified": "2017-01-02T03:04:05.000Z",
            "labels": ["malicious-activity", "tlp-severity-x-high"],
            "pattern": "[domain-name:value = 'evil.example']",
            "valid_from": "2017-01-02T03:04:05Z",
            "valid_until": "2027-10-25T11:15:00Z"
        });
        let i = indicator_of(&v);
        assert_eq!(i.entry, entry(Kind::Domain, "evil.example"));
        assert_eq!(i.severity, Some(Severity::High));
        assert_eq!(i.valid_until, Some(1_824_462_900));
    }

    #[test]
    fn benign() {
        assert!(indicator_of(&obj(json!({"labels": ["BENIGN"]}))).benign);
        assert!(indicator_of(&obj(json!({"indicator_types": ["benign"]}))).benign);
        assert!(!indicator_of(&obj(json!({"labels": ["benign-ish"]}))).benign);
    }

    #[test]
    fn revoked() {
        assert_eq!(
            read_object(&obj(json!({"revoked": true}))),
            ObjectOutcome::Revoked {
                id: ID.into(),
                entry: Some(entry(Kind::Ipv4, "1.2.3.4")),
                modified: Some(1_767_323_045),
            }
        );
        // Whatever the pattern or its type, the id is enough to remove what was taken.
        for extra in [
            json!({"revoked": true, "pattern": "[ipv4-addr:value = '300.1.1.1']"}),
            json!({"revoked": true, "pattern": "[a:b = 'c'] AND [d:e = 'f']"}),
            json!({"revoked": true, "pattern": null, "modified": "yesterday"}),
            json!({"revoked": true, "pattern_type": "snort", "pattern": "alert tcp any any"}),
        ] {
            match read_object(&obj(extra.clone())) {
                ObjectOutcome::Revoked {
                    id, entry: None, ..
                } => assert_eq!(id, ID),
                o => panic!("{extra}: {o:?}"),
            }
        }
        assert!(matches!(
            read_object(&obj(json!({"revoked": true, "id": null}))),
            ObjectOutcome::Invalid { id: None, .. }
        ));
        assert!(matches!(
            read_object(&obj(json!({"revoked": "yes"}))),
            ObjectOutcome::Invalid { id: Some(_), .. }
        ));
        assert!(matches!(
            read_object(&obj(json!({"revoked": false}))),
            ObjectOutcome::Indicator(_)
        ));
    }

    #[test]
    fn skipped_objects() {
        for (v, kind) in [
            (
                json!({"type": "identity", "id": "identity--1", "name": "ACME", "identity_class": "organization"}),
                "identity",
            ),
            (
                json!({"type": "malware", "id": "malware--1", "name": "x", "is_family": false}),
                "malware",
            ),
            (
                json!({"type": "relationship", "id": "relationship--1", "relationship_type": "indicates",
                       "source_ref": ID, "target_ref": "malware--1"}),
                "relationship",
            ),
            (
                json!({"type": "x-acme-thing", "id": "x-acme-thing--1"}),
                "x-acme-thing",
            ),
            (
                obj(json!({"pattern_type": "snort", "pattern": "alert tcp any any"})),
                "indicator",
            ),
            (obj(json!({"pattern_type": "yara"})), "indicator"),
            (
                obj(json!({"pattern": "[email-addr:value = 'a@b.example']"})),
                "indicator",
            ),
            (
                obj(json!({"pattern": "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']"})),
                "indicator",
            ),
        ] {
            match read_object(&v) {
                ObjectOutcome::Skipped {
                    id: Some(_),
                    kind: k,
                    ..
                } => assert_eq!(k, kind),
                o => panic!("{v}: {o:?}"),
            }
        }
    }

    #[test]
    fn invalid_objects() {
        for v in [
            json!("indicator"),
            json!(null),
            json!([1, 2]),
            json!({"id": ID}),
            json!({"type": 5}),
            obj(json!({"id": null})),
            obj(json!({"id": 7})),
            obj(json!({"id": "malware--1"})),
            obj(json!({"id": "indicator--"})),
            obj(json!({"id": "indicator--a b"})),
            obj(json!({"id": format!("indicator--{}", "a".repeat(250))})),
            obj(json!({"pattern": null})),
            obj(json!({"pattern": 5})),
            obj(json!({"pattern": "[ipv4-addr:value = '1.2.3.4'"})),
            obj(json!({"pattern": "[ipv4-addr:value = '1.2.3.400']"})),
            obj(json!({"pattern_type": 1})),
            obj(json!({"valid_until": "2027-01-02"})),
            obj(json!({"valid_until": "tomorrow"})),
            obj(json!({"valid_until": 1_798_859_045})),
            obj(json!({"modified": "2026-13-01T00:00:00Z"})),
            obj(json!({"labels": "severity-high"})),
            obj(json!({"labels": ["severity-high", 3]})),
            obj(json!({"indicator_types": "benign"})),
            obj(json!({"confidence": 101})),
            obj(json!({"confidence": -1})),
            obj(json!({"confidence": 50.5})),
            obj(json!({"confidence": "50"})),
        ] {
            assert!(
                matches!(read_object(&v), ObjectOutcome::Invalid { .. }),
                "{v}: {:?}",
                read_object(&v)
            );
        }
        // The id is kept for the log even when the rest is bad.
        assert_eq!(
            read_object(&obj(json!({"valid_until": "tomorrow"}))),
            ObjectOutcome::Invalid {
                id: Some(ID.into()),
                reason: "\"valid_until\" \"tomorrow\" is not an RFC 3339 timestamp".into(),
            }
        );
        // `null` is absent.
        let i = indicator_of(&obj(json!({"labels": null, "valid_until": null})));
        assert_eq!(i.valid_until, None);
    }

    #[test]
    fn bundles() {
        // STIX 2.0: spec_version on the bundle, none on the objects.
        let text = r#"{
            "type": "bundle",
            "id": "bundle--44af6c39-c09b-49c5-9de2-394224b04982",
            "spec_version": "2.0",
            "objects": [
                {"type": "identity", "id": "identity--1", "name": "ACME", "identity_class": "organization"},
                {"type": "indicator", "id": "indicator--1", "labels": ["malicious-activity"],
                 "pattern": "[url:value = 'http://x.example/p']", "valid_from": "2017-01-01T00:00:00Z"},
                {"type": "indicator", "id": "indicator--2", "labels": ["malicious-activity"],
                 "pattern": "[ipv4-addr:value = '1.2.3.4'] AND [ipv4-addr:value = '5.6.7.8']"},
                {"type": "indicator", "id": "indicator--3", "labels": ["malicious-activity"],
                 "pattern": "[ipv4-addr:value = '1.2.3'"},
                7
            ]
        }"#;
        let out = parse_bundle(text).unwrap();
        assert_eq!(out.len(), 5);
        assert!(matches!(&out[0], ObjectOutcome::Skipped { kind, .. } if kind == "identity"));
        assert!(
            matches!(&out[1], ObjectOutcome::Indicator(i) if i.entry == entry(Kind::Url, "http://x.example/p"))
        );
        assert!(matches!(&out[2], ObjectOutcome::Skipped { kind, .. } if kind == "indicator"));
        assert!(
            matches!(&out[3], ObjectOutcome::Invalid { id: Some(id), .. } if id == "indicator--3")
        );
        assert!(matches!(&out[4], ObjectOutcome::Invalid { id: None, .. }));

        assert_eq!(
            read_bundle(&json!({"type": "bundle", "id": "bundle--1"})),
            Ok(vec![])
        );
        for bad in [
            json!({"type": "indicator", "objects": []}),
            json!({"objects": []}),
            json!({"type": "bundle", "objects": {}}),
            json!([]),
        ] {
            assert!(
                matches!(read_bundle(&bad), Err(StixError::NotABundle(_))),
                "{bad}"
            );
        }
        assert!(matches!(parse_bundle("{"), Err(StixError::Json(_))));
    }

    #[test]
    fn tags() {
        let catalog = Catalog::new(builtin_categories());
        let mut i = indicator_of(&obj(json!({
            "valid_until": "2027-01-02T03:04:05Z",
            "labels": ["severity-high", "confidence-85"],
        })));
        let tags = indicator_tags(&i, &catalog);
        let named: Vec<(String, TagValue)> = catalog
            .named(&tags)
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        let id_of = |n: &str| catalog.by_name(n).unwrap().id;
        assert_eq!(tags.len(), 4, "{named:?}");
        assert_eq!(
            tags.get(id_of(builtin::STIX_ID)),
            Some(&TagValue::Text(ID.into()))
        );
        assert_eq!(
            tags.get(id_of(builtin::STIX_SEVERITY)),
            Some(&TagValue::List(vec!["High".into()]))
        );
        assert_eq!(
            tags.get(id_of(builtin::STIX_CONFIDENCE)),
            Some(&TagValue::Number(85))
        );
        assert_eq!(
            tags.get(id_of(builtin::TTL)),
            Some(&TagValue::Date(1_798_859_045))
        );

        // Nothing to say: only the id.
        i.severity = None;
        i.confidence = None;
        i.valid_until = None;
        assert_eq!(indicator_tags(&i, &catalog).len(), 1);

        // Categories missing from the catalog, or refusing the value, are left out.
        i.severity = Some(Severity::Low);
        let only_severity = Catalog::new(vec![Category {
            id: 9,
            name: builtin::STIX_SEVERITY.into(),
            kind: CategoryType::List {
                values: vec!["High".into()],
                multiple: false,
            },
            description: String::new(),
            builtin: false,
        }]);
        assert!(indicator_tags(&i, &only_severity).is_empty());
        assert!(indicator_tags(&i, &Catalog::default()).is_empty());
    }

    // ---- never panics ----

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

    fn token_soup() -> impl Strategy<Value = String> {
        let any_tok = prop_oneof![
            10 => proptest::sample::select(SOUP).prop_map(str::to_string),
            1 => "\\PC{0,3}",
        ];
        (proptest::collection::vec(any_tok, 0..24), any::<bool>())
            .prop_map(|(v, spaced)| v.join(if spaced { " " } else { "" }))
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("type".to_string()),
            Just("id".to_string()),
            Just("pattern".to_string()),
            Just("pattern_type".to_string()),
            Just("labels".to_string()),
            Just("indicator_types".to_string()),
            Just("revoked".to_string()),
            Just("valid_until".to_string()),
            Just("modified".to_string()),
            Just("confidence".to_string()),
            Just("objects".to_string()),
            "\\PC{0,4}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            Just(json!("indicator")),
            Just(json!("bundle")),
            Just(json!(ID)),
            Just(json!("2026-01-02T03:04:05Z")),
            token_soup().prop_map(Value::String),
            "\\PC{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((key.clone(), inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(config(2048))]

        #[test]
        fn parse_pattern_never_panics(s in "\\PC{0,40}") {
            let _ = parse_pattern(&s);
        }

        #[test]
        fn token_soup_never_panics(s in token_soup()) {
            if let Ok(e) = parse_pattern(&s) {
                prop_assert_eq!(Entry::parse(e.kind(), &e.to_string()), Ok(e));
            }
        }

        #[test]
        fn read_object_never_panics(v in json_value()) {
            let _ = read_object(&v);
            let _ = read_bundle(&v);
            let _ = parse_bundle(&v.to_string());
        }

        #[test]
        fn indicator_outcome_follows_its_pattern(pattern in token_soup(), label in label_strategy()) {
            let v = obj(json!({"pattern": pattern, "labels": [label]}));
            match (read_object(&v), parse_pattern(&pattern)) {
                (ObjectOutcome::Indicator(i), Ok(e)) => prop_assert_eq!(i.entry, e),
                (ObjectOutcome::Skipped { .. }, Err(PatternError::Unsupported(_))) => {}
                (ObjectOutcome::Invalid { .. }, Err(PatternError::Invalid(_))) => {}
                (o, r) => prop_assert!(false, "{:?} for {:?}", o, r),
            }
        }

        #[test]
        fn string_escapes_round_trip(s in "\\PC{0,20}") {
            let escaped = s.replace('\\', "\\\\").replace('\'', "\\'");
            prop_assert_eq!(lex(&format!("'{escaped}'")), Ok(vec![Tok::Str(s)]));
        }

        #[test]
        fn ipv4_values_match_entry_parse(a in any::<[u8; 4]>(), len in 0u8..=40) {
            let ip = std::net::Ipv4Addr::from(a);
            let value = if len > 32 { ip.to_string() } else { format!("{ip}/{len}") };
            let p = format!("[ipv4-addr:value = '{value}']");
            prop_assert_eq!(parse_pattern(&p), Ok(entry(Kind::Ipv4, &value)));
        }
    }
}

//! STIX indicator patterns: the full STIX patterning grammar (OASIS `STIXPattern.g4`), lexer and
//! recursive-descent parser, reduced to the one entry a pattern names or to why it names none.
//!
//! The whole grammar is parsed, not searched for keywords, so that "well-formed but not taken"
//! ([`PatternError::Unsupported`]) and "malformed" ([`PatternError::Invalid`]) are told apart
//! exactly. The parser is lenient where the 2.0 and 2.1 grammars differ: keywords in any case
//! (2.0), hyphens and double quotes in unquoted property names (2.0), string-literal property
//! names (2.1).

use chrono::DateTime;

use crate::entry::Entry;
use crate::kind::Kind;

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

/// `s` quoted for a message, cut after [`ECHO`] characters (the object reader uses it too).
pub(super) fn short(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::strategies::{config, token_soup};
    use super::*;

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

    // ---- never panics ----

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

//! The `TMV1-Filter` header: `eq`, `and`, `or`, `not` and parentheses over item fields, e.g.
//! `type eq 'url' and riskLevel eq 'high'`. `not` binds tightest, then `and`, then `or`. Values are
//! single-quoted; a quote inside is doubled (`'it''s'`). Field names and values compare as Vision
//! One writes them (values of `type`, `scanAction` and `riskLevel` case-insensitively).

use serde_json::{Map, Value};

/// Longest filter accepted (the Vision One limit).
pub(crate) const MAX_LEN: usize = 4000;

const FIELDS: [&str; 9] = [
    "type",
    "url",
    "domain",
    "ip",
    "senderMailAddress",
    "fileSha1",
    "fileSha256",
    "scanAction",
    "riskLevel",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    Eq(&'static str, String),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Str(String),
    Open,
    Close,
}

fn tokens(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => out.push(Tok::Open),
            ')' => out.push(Tok::Close),
            '\'' => {
                let mut v = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\'')) if matches!(chars.peek(), Some((_, '\''))) => {
                            chars.next();
                            v.push('\'');
                        }
                        Some((_, '\'')) => break,
                        Some((_, c)) => v.push(c),
                        None => return Err(format!("unterminated string at {i}")),
                    }
                }
                out.push(Tok::Str(v));
            }
            c if c.is_ascii_alphanumeric() => {
                let mut w = String::from(c);
                while let Some((_, c)) = chars.peek() {
                    if c.is_ascii_alphanumeric() {
                        w.push(*c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Tok::Word(w));
            }
            other => return Err(format!("unexpected {other:?} at {i}")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while self.peek_word("and") {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        // Bounded nesting: a hostile header must not overflow the stack.
        self.depth += 1;
        if self.depth > 64 {
            return Err("nested too deeply".into());
        }
        let e = self.primary();
        self.depth -= 1;
        e
    }

    fn primary(&mut self) -> Result<Expr, String> {
        if self.peek_word("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        match self.toks.get(self.pos).cloned() {
            Some(Tok::Open) => {
                self.pos += 1;
                let e = self.or()?;
                if self.toks.get(self.pos) != Some(&Tok::Close) {
                    return Err("missing ')'".into());
                }
                self.pos += 1;
                Ok(e)
            }
            Some(Tok::Word(field)) => {
                let Some(f) = FIELDS.iter().find(|f| **f == field) else {
                    return Err(format!("unknown field {field:?}"));
                };
                self.pos += 1;
                if !self.peek_word("eq") {
                    return Err(format!("expected 'eq' after {field}"));
                }
                self.pos += 1;
                match self.toks.get(self.pos).cloned() {
                    Some(Tok::Str(v)) => {
                        self.pos += 1;
                        Ok(Expr::Eq(f, v))
                    }
                    _ => Err(format!("expected a quoted value after {field} eq")),
                }
            }
            Some(t) => Err(format!("unexpected {t:?}")),
            None => Err("unexpected end".into()),
        }
    }
}

pub(crate) fn parse(s: &str) -> Result<Expr, String> {
    if s.len() > MAX_LEN {
        return Err(format!("longer than {MAX_LEN} characters"));
    }
    let mut p = Parser {
        toks: tokens(s)?,
        pos: 0,
        depth: 0,
    };
    let e = p.or()?;
    if p.pos != p.toks.len() {
        return Err(format!("unexpected {:?}", p.toks[p.pos]));
    }
    Ok(e)
}

impl Expr {
    /// Whether an item (as served) matches.
    pub(crate) fn matches(&self, item: &Map<String, Value>) -> bool {
        match self {
            Expr::Eq(field, v) => {
                let Some(have) = item.get(*field).and_then(Value::as_str) else {
                    return false;
                };
                match *field {
                    "type" | "scanAction" | "riskLevel" => have.eq_ignore_ascii_case(v),
                    "domain" | "fileSha1" | "fileSha256" => have.eq_ignore_ascii_case(v.trim()),
                    _ => have == v.trim(),
                }
            }
            Expr::Not(e) => !e.matches(item),
            Expr::And(a, b) => a.matches(item) && b.matches(item),
            Expr::Or(a, b) => a.matches(item) || b.matches(item),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn precedence_and_matching() {
        let url = item(json!({"type": "url", "url": "http://x.example/", "riskLevel": "high"}));
        let ip = item(json!({"type": "ip", "ip": "1.2.3.4", "riskLevel": "low"}));
        let f = parse("type eq 'url' and riskLevel eq 'high'").unwrap();
        assert!(f.matches(&url) && !f.matches(&ip));
        let f = parse("type eq 'ip' or type eq 'url' and riskLevel eq 'low'").unwrap();
        assert!(
            f.matches(&ip) && !f.matches(&url),
            "and binds tighter than or"
        );
        let f = parse("(type eq 'ip' or type eq 'url') and not riskLevel eq 'low'").unwrap();
        assert!(f.matches(&url) && !f.matches(&ip));
        let f = parse("ip eq '1.2.3.4'").unwrap();
        assert!(f.matches(&ip) && !f.matches(&url));
        assert_eq!(
            parse("url eq 'it''s'").unwrap(),
            Expr::Eq("url", "it's".into())
        );
    }

    #[test]
    fn bad_filters_are_refused() {
        for bad in [
            "",
            "type",
            "type eq",
            "type eq url",
            "type ne 'url'",
            "colour eq 'red'",
            "(type eq 'url'",
            "type eq 'url')",
            "type eq 'url' and",
            "type eq 'url",
            "type = 'url'",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let deep = format!("{}type eq 'url'{}", "(".repeat(500), ")".repeat(500));
        assert!(parse(&deep).is_err());
        let nots = format!("{}type eq 'url'", "not ".repeat(500));
        assert!(parse(&nots).is_err());
        assert!(parse(&"x".repeat(MAX_LEN + 1)).is_err());
    }

    proptest::proptest! {
        /// A header is untrusted input: any text parses or is refused, never panics.
        #[test]
        fn any_text_is_parsed_or_refused(s in "\\PC{0,300}") {
            let _ = parse(&s);
        }

        /// Sequences of the grammar's own pieces: parsed or refused; a parsed filter evaluates.
        #[test]
        fn any_sequence_of_tokens(parts in proptest::collection::vec(proptest::sample::select(vec![
            "type", "eq", "'url'", "and", "or", "not", "(", ")", "'it''s'", "ip", "riskLevel", "'high'", "''",
        ]), 0..80)) {
            if let Ok(e) = parse(&parts.join(" ")) {
                let item = json!({"type": "url", "url": "it's", "riskLevel": "high"});
                if let Value::Object(m) = item {
                    let _ = e.matches(&m);
                }
            }
        }
    }
}

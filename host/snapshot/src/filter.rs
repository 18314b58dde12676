//! containerd's filter syntax, as its snapshots API uses it for Walk/List.
//!
//! ```text
//! filter    := selector ("," selector)*        every selector must match
//! selector  := fieldpath [operator value]      no operator: the field is present
//! fieldpath := field ("." field)*              field: [A-Za-z0-9_]+ or "quoted"
//! operator  := "==" | "!=" | "~="              ~= matches a regular expression
//! value     := "quoted" | /quoted/ | bare      bare: up to the next ","
//! ```
//!
//! Several filters are OR-ed by the caller ([`Filters`]). Fields of a
//! snapshot: `kind` (`active`, `view`, `committed`), `name`, `parent`
//! (`""` when it has none, as containerd), `labels.KEY`. An unknown field is
//! absent, as in containerd: it matches nothing rather than failing.

use regex::Regex;

use crate::{Error, Info, Result};

#[derive(Debug, Clone)]
enum Op {
    Present,
    Equal(String),
    NotEqual(String),
    Matches(Regex),
}

#[derive(Debug, Clone)]
struct Selector {
    fieldpath: Vec<String>,
    op: Op,
}

/// One parsed filter: its selectors all match (AND).
#[derive(Debug, Clone)]
pub struct Filter {
    selectors: Vec<Selector>,
}

/// Parsed filters: any matches (OR); none at all matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filters(Vec<Filter>);

impl Filters {
    pub fn parse(filters: &[String]) -> Result<Filters> {
        let parsed = filters.iter().filter(|f| !f.trim().is_empty()).map(|f| Filter::parse(f)).collect::<Result<_>>()?;
        Ok(Filters(parsed))
    }

    pub fn matches(&self, info: &Info) -> bool {
        self.0.is_empty() || self.0.iter().any(|f| f.matches(info))
    }
}

impl Filter {
    pub fn parse(input: &str) -> Result<Filter> {
        let mut parser = Parser { input, chars: input.char_indices().collect(), pos: 0 };
        let mut selectors = Vec::new();
        loop {
            selectors.push(parser.selector()?);
            parser.skip_spaces();
            match parser.peek() {
                None => break,
                Some(',') => parser.pos += 1,
                Some(c) => return Err(parser.error(&format!("unexpected {c:?}"))),
            }
        }
        Ok(Filter { selectors })
    }

    pub fn matches(&self, info: &Info) -> bool {
        self.selectors.iter().all(|s| s.matches(info))
    }
}

/// The value of `fieldpath` for `info`, `None` when absent.
fn field<'a>(info: &'a Info, fieldpath: &[String]) -> Option<std::borrow::Cow<'a, str>> {
    match fieldpath.first().map(String::as_str)? {
        "kind" if fieldpath.len() == 1 => Some(info.kind.filter_name().into()),
        "name" if fieldpath.len() == 1 => Some(info.name.as_str().into()),
        "parent" if fieldpath.len() == 1 => Some(info.parent.as_deref().unwrap_or("").into()),
        // Label keys may themselves contain dots: `labels.a.b` is key `a.b`.
        "labels" if fieldpath.len() > 1 => info.labels.get(&fieldpath[1..].join(".")).map(|v| v.as_str().into()),
        _ => None,
    }
}

impl Selector {
    fn matches(&self, info: &Info) -> bool {
        let value = field(info, &self.fieldpath);
        match &self.op {
            Op::Present => value.is_some(),
            Op::Equal(want) => value.is_some_and(|v| v == want.as_str()),
            Op::NotEqual(want) => value.as_deref().unwrap_or("") != want.as_str(),
            Op::Matches(re) => value.is_some_and(|v| re.is_match(&v)),
        }
    }
}

struct Parser<'a> {
    input: &'a str,
    chars: Vec<(usize, char)>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|(_, c)| *c)
    }

    fn error(&self, what: &str) -> Error {
        let at = self.chars.get(self.pos).map(|(i, _)| *i).unwrap_or(self.input.len());
        Error::InvalidArgument(format!("filter {:?}: {what} at offset {at}", self.input))
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn selector(&mut self) -> Result<Selector> {
        self.skip_spaces();
        let mut fieldpath = vec![self.field()?];
        while self.peek() == Some('.') {
            self.pos += 1;
            fieldpath.push(self.field()?);
        }
        self.skip_spaces();
        let op = match (self.peek(), self.chars.get(self.pos + 1).map(|(_, c)| *c)) {
            (Some('='), Some('=')) => "==",
            (Some('!'), Some('=')) => "!=",
            (Some('~'), Some('=')) => "~=",
            (None | Some(','), _) => return Ok(Selector { fieldpath, op: Op::Present }),
            (Some(c), _) => return Err(self.error(&format!("expected an operator (==, !=, ~=), found {c:?}"))),
        };
        self.pos += 2;
        self.skip_spaces();
        let value = self.value()?;
        let op = match op {
            "==" => Op::Equal(value),
            "!=" => Op::NotEqual(value),
            _ => Op::Matches(Regex::new(&value).map_err(|e| self.error(&format!("bad regular expression {value:?}: {e}")))?),
        };
        Ok(Selector { fieldpath, op })
    }

    fn field(&mut self) -> Result<String> {
        if self.peek() == Some('"') {
            return self.quoted('"');
        }
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.error("expected a field name"));
        }
        Ok(self.chars[start..self.pos].iter().map(|(_, c)| c).collect())
    }

    fn value(&mut self) -> Result<String> {
        match self.peek() {
            Some(q @ ('"' | '/')) => self.quoted(q),
            _ => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c != ',') {
                    self.pos += 1;
                }
                let value: String = self.chars[start..self.pos].iter().map(|(_, c)| c).collect();
                let value = value.trim_end().to_string();
                if value.is_empty() {
                    return Err(self.error("expected a value"));
                }
                Ok(value)
            }
        }
    }

    /// A string between `quote`s; backslash escapes `\n`, `\t`, `\\`, the quote.
    fn quoted(&mut self, quote: char) -> Result<String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error(&format!("unterminated {quote}-quoted string"))),
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some(c @ ('\\' | '"' | '/')) => out.push(c),
                        // In /regex/ keep other escapes for the regex engine.
                        Some(c) if quote == '/' => {
                            out.push('\\');
                            out.push(c);
                        }
                        _ => return Err(self.error("bad escape")),
                    }
                    self.pos += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;
    use std::time::SystemTime;

    fn info(name: &str, kind: Kind, parent: Option<&str>, labels: &[(&str, &str)]) -> Info {
        Info {
            kind,
            name: name.into(),
            parent: parent.map(String::from),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            created: SystemTime::UNIX_EPOCH,
            updated: SystemTime::UNIX_EPOCH,
        }
    }

    fn m(filters: &[&str], info: &Info) -> bool {
        Filters::parse(&filters.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap().matches(info)
    }

    #[test]
    fn selectors() {
        let a = info("a-wl", Kind::Active, Some("p-wl"), &[("l", "2"), ("containerd.io/gc.root", "x")]);
        let p = info("p", Kind::Committed, None, &[]);
        assert!(m(&[], &a));
        assert!(m(&["kind==active"], &a) && !m(&["kind==active"], &p));
        assert!(m(&["labels.\"containerd.io/gc.root\"==x"], &a));
        assert!(m(&["name==a-wl,labels.l"], &a) && !m(&["name==a-wl,labels.zz"], &a));
        assert!(m(&["parent!=\"\""], &a) && !m(&["parent!=\"\""], &p));
        assert!(m(&["name==zz", "kind==active"], &a), "OR of filters");
        assert!(m(&["name~=^a-"], &a) && m(&["name~=/w.$/"], &a) && !m(&["name~=^p"], &a));
        assert!(!m(&["bogus==1"], &a), "unknown fields are absent");
        assert!(m(&[" kind == active , labels.l==2 "], &a));
    }

    #[test]
    fn syntax_errors_are_invalid_argument() {
        for bad in ["kind=active", "==x", "labels.\"open", "name~=(", "kind==a,", "kind=="] {
            let err = Filters::parse(&[bad.to_string()]).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad}: {err}");
        }
    }
}

//! `google.api.HttpRule` path templates: parsing, matching a request path
//! and capturing its variables.
//!
//! Grammar (from `google/api/http.proto`):
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```
//!
//! `**` may only be the last segment. Knows nothing of descriptors or HTTP.

use std::fmt;

/// One segment of a template once variables are flattened.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// Exactly this text.
    Literal(String),
    /// Any one segment (`*`, or a bare `{var}`).
    Single,
    /// Zero or more segments (`**`); only last.
    Multi,
}

/// A variable of a template: the field it sets and the segments it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Variable {
    /// The field path, e.g. `["actor", "type"]`.
    pub(crate) field_path: Vec<String>,
    /// The first segment it covers.
    start: usize,
    /// One past the last segment it covers.
    end: usize,
}

impl Variable {
    /// The field path joined with dots, as written in the template.
    pub(crate) fn name(&self) -> String {
        self.field_path.join(".")
    }

    /// The name of the variable in the OpenAPI document: the field path
    /// joined with `_`, since many OpenAPI tools read `{a.b}` in a path as
    /// an attribute access.
    pub(crate) fn openapi_name(&self) -> String {
        self.field_path.join("_")
    }
}

/// A parsed path template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Template {
    segments: Vec<Segment>,
    verb: Option<String>,
    variables: Vec<Variable>,
    /// The template as written, for messages and the OpenAPI document.
    source: String,
}

/// A template that does not follow the grammar.
#[derive(Debug, thiserror::Error)]
#[error("bad path template {template:?}: {reason}")]
pub(crate) struct ParseError {
    template: String,
    reason: &'static str,
}

/// Why a path that matched a template could not be captured.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CaptureError {
    /// A segment is not valid percent-encoded UTF-8.
    BadEncoding,
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    segments: Vec<Segment>,
    variables: Vec<Variable>,
}

impl Template {
    /// Parses `template`.
    pub(crate) fn parse(template: &str) -> Result<Self, ParseError> {
        let fail = |reason| ParseError { template: template.to_owned(), reason };
        let rest = template.strip_prefix('/').ok_or_else(|| fail("must start with '/'"))?;
        let mut parser = Parser { input: rest.as_bytes(), pos: 0, segments: Vec::new(), variables: Vec::new() };
        parser.segments(false).map_err(fail)?;
        let verb = match parser.peek() {
            None => None,
            Some(b':') => {
                let verb = &rest[parser.pos + 1..];
                if verb.is_empty() || verb.contains(['/', '{', '}', '*']) {
                    return Err(fail("bad verb"));
                }
                Some(verb.to_owned())
            }
            Some(_) => return Err(fail("unexpected character")),
        };
        let segments = parser.segments;
        if segments.iter().rev().skip(1).any(|s| *s == Segment::Multi) {
            return Err(fail("'**' must be the last segment"));
        }
        let mut names: Vec<String> = parser.variables.iter().map(Variable::name).collect();
        names.sort();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(fail("a variable appears twice"));
        }
        Ok(Self { segments, verb, variables: parser.variables, source: template.to_owned() })
    }

    /// The variables, in template order.
    pub(crate) fn variables(&self) -> &[Variable] {
        &self.variables
    }

    /// The template with every variable written `{field_path}` (see
    /// [`Variable::openapi_name`]), as OpenAPI wants it.
    pub(crate) fn openapi_path(&self) -> String {
        self.render(true)
    }

    /// The template with variables unnamed (`/a/{}`): two templates of one
    /// shape match the same paths.
    pub(crate) fn shape(&self) -> String {
        self.render(false)
    }

    fn render(&self, named: bool) -> String {
        let mut out = String::new();
        let mut index = 0;
        while index < self.segments.len() {
            out.push('/');
            if let Some(var) = self.variables.iter().find(|v| v.start == index) {
                out.push('{');
                if named {
                    out.push_str(&var.openapi_name());
                }
                out.push('}');
                index = var.end.max(index + 1);
                continue;
            }
            match &self.segments[index] {
                Segment::Literal(l) => out.push_str(l),
                Segment::Single => out.push('*'),
                Segment::Multi => out.push_str("**"),
            }
            index += 1;
        }
        if let Some(verb) = &self.verb {
            out.push(':');
            out.push_str(verb);
        }
        out
    }

    /// Whether a variable can span several segments (`{var=**}`), so its
    /// value may contain `/`.
    pub(crate) fn is_multi_segment(&self, variable: &Variable) -> bool {
        self.segments[variable.start..variable.end].contains(&Segment::Multi) || variable.end - variable.start > 1
    }

    /// A sort key: templates with more literal segments earlier are tried
    /// first, so `/a/b` wins over `/a/{x}` and `/a/{x}` over `/a/{x=**}`.
    pub(crate) fn specificity(&self) -> Vec<u8> {
        let mut key: Vec<u8> = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 0,
                Segment::Single => 1,
                Segment::Multi => 2,
            })
            .collect();
        key.push(if self.verb.is_some() { 0 } else { 1 });
        key
    }

    /// Matches a raw (still percent-encoded) request path. `None` if it does
    /// not match; otherwise the decoded value of every variable, in template
    /// order.
    pub(crate) fn matches(&self, path: &str) -> Option<Result<Vec<(Variable, String)>, CaptureError>> {
        let mut rest = path.strip_prefix('/')?;
        if let Some(verb) = &self.verb {
            rest = rest.strip_suffix(verb.as_str())?.strip_suffix(':')?;
        }
        let raw: Vec<&str> = rest.split('/').collect();
        let multi = self.segments.last() == Some(&Segment::Multi);
        let fixed = self.segments.len() - usize::from(multi);
        if raw.len() < fixed || (!multi && raw.len() != fixed) {
            return None;
        }
        // A lone empty segment after the fixed ones is `/a/b/` or, for
        // `**`, nothing at all.
        let multi_raw: &[&str] =
            if multi && !(raw.len() == fixed + 1 && raw[fixed].is_empty() && fixed > 0) { &raw[fixed..] } else { &[] };
        for (segment, raw) in self.segments.iter().zip(&raw) {
            if let Segment::Literal(literal) = segment
                && literal != raw
            {
                return None;
            }
        }
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().map(|c| c.into_owned());
        let mut captured = Vec::with_capacity(self.variables.len());
        for var in &self.variables {
            let mut parts: Vec<&str> = Vec::new();
            for (segment, raw) in self.segments[var.start..var.end].iter().zip(&raw[var.start..]) {
                match segment {
                    Segment::Multi => parts.extend_from_slice(multi_raw),
                    _ => parts.push(raw),
                }
            }
            let mut value = String::new();
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    value.push('/');
                }
                match decode(part) {
                    Ok(decoded) => value.push_str(&decoded),
                    Err(_) => return Some(Err(CaptureError::BadEncoding)),
                }
            }
            captured.push((var.clone(), value));
        }
        Some(Ok(captured))
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    /// Parses `Segment { "/" Segment }`, inside a variable when `nested`.
    fn segments(&mut self, nested: bool) -> Result<(), &'static str> {
        loop {
            self.segment(nested)?;
            if self.peek() == Some(b'/') {
                self.pos += 1;
            } else {
                return Ok(());
            }
        }
    }

    fn segment(&mut self, nested: bool) -> Result<(), &'static str> {
        match self.peek() {
            Some(b'{') if !nested => self.variable(),
            Some(b'{') => Err("nested variables are not allowed"),
            Some(b'*') if self.input.get(self.pos + 1) == Some(&b'*') => {
                self.pos += 2;
                self.segments.push(Segment::Multi);
                Ok(())
            }
            Some(b'*') => {
                self.pos += 1;
                self.segments.push(Segment::Single);
                Ok(())
            }
            _ => {
                let start = self.pos;
                while let Some(c) = self.peek() {
                    if matches!(c, b'/' | b'{' | b'}' | b'*' | b':' | b'=') {
                        break;
                    }
                    self.pos += 1;
                }
                if self.pos == start {
                    return Err("empty segment");
                }
                let literal = std::str::from_utf8(&self.input[start..self.pos]).map_err(|_| "not UTF-8")?;
                self.segments.push(Segment::Literal(literal.to_owned()));
                Ok(())
            }
        }
    }

    fn variable(&mut self) -> Result<(), &'static str> {
        self.pos += 1;
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == b'=' || c == b'}' {
                break;
            }
            self.pos += 1;
        }
        let path = std::str::from_utf8(&self.input[start..self.pos]).map_err(|_| "not UTF-8")?;
        let field_path: Vec<String> = path.split('.').map(str::to_owned).collect();
        if field_path.iter().any(|p| p.is_empty() || !p.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')) {
            return Err("bad field path");
        }
        let first = self.segments.len();
        match self.peek() {
            Some(b'=') => {
                self.pos += 1;
                self.segments(true)?;
            }
            Some(b'}') => self.segments.push(Segment::Single),
            _ => return Err("unterminated variable"),
        }
        if self.peek() != Some(b'}') {
            return Err("unterminated variable");
        }
        self.pos += 1;
        self.variables.push(Variable { field_path, start: first, end: self.segments.len() });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(template: &str, path: &str) -> Option<Vec<(String, String)>> {
        let template = Template::parse(template).expect("parses");
        template.matches(path).map(|r| r.expect("decodes").into_iter().map(|(v, s)| (v.name(), s)).collect())
    }

    fn pairs(list: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(list.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect())
    }

    #[test]
    fn nested_field_paths_are_captured() {
        assert_eq!(
            capture("/kar/v1/actor/{actor.type}/{actor.id}/call/{method}", "/kar/v1/actor/Echo/a%2Fb/call/ping"),
            pairs(&[("actor.type", "Echo"), ("actor.id", "a/b"), ("method", "ping")])
        );
    }

    #[test]
    fn a_double_star_variable_takes_the_rest_of_the_path() {
        let t = "/kar/v1/service/{service}/call/{method=**}";
        assert_eq!(capture(t, "/kar/v1/service/s/call/a/b/c"), pairs(&[("service", "s"), ("method", "a/b/c")]));
        assert_eq!(capture(t, "/kar/v1/service/s/call/x"), pairs(&[("service", "s"), ("method", "x")]));
        assert_eq!(capture(t, "/kar/v1/service/s/call"), pairs(&[("service", "s"), ("method", "")]));
        assert_eq!(capture(t, "/kar/v1/service/s/tell/x"), None);
    }

    #[test]
    fn variables_with_segment_patterns_and_verbs_match() {
        assert_eq!(
            capture("/v1/{name=shelves/*/books/*}:publish", "/v1/shelves/1/books/2:publish"),
            pairs(&[("name", "shelves/1/books/2")])
        );
        assert_eq!(capture("/v1/{name=shelves/*/books/*}:publish", "/v1/shelves/1/books/2"), None);
        assert_eq!(capture("/v1/{name=shelves/*}/books/*", "/v1/shelves/1/books/x"), pairs(&[("name", "shelves/1")]));
    }

    #[test]
    fn lengths_and_literals_must_agree() {
        let t = "/kar/v1/actor/{actor.type}/{actor.id}/state";
        assert_eq!(capture(t, "/kar/v1/actor/a/b/state/"), None);
        assert_eq!(capture(t, "/kar/v1/actor/a/state"), None);
        assert_eq!(capture(t, "/kar/v1/actor/a/b/stat"), None);
        assert_eq!(capture(t, "/kar/v1/actor//b/state"), pairs(&[("actor.type", ""), ("actor.id", "b")]));
    }

    #[test]
    fn bad_templates_are_rejected() {
        for bad in ["kar", "/a/{b", "/a/**/c", "/a/{b}/{b}", "/a/{b.}/c", "/a//b", "/a/{b={c}}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_openapi_path_names_each_variable_once() {
        let t = Template::parse("/kar/v1/service/{service}/call/{method=**}").expect("parses");
        assert_eq!(t.openapi_path(), "/kar/v1/service/{service}/call/{method}");
        let t = Template::parse("/v1/{name=shelves/*}:get").expect("parses");
        assert_eq!(t.openapi_path(), "/v1/{name}:get");
        let t = Template::parse("/v1/{actor.type}/x").expect("parses");
        assert_eq!(t.openapi_path(), "/v1/{actor_type}/x");
    }

    #[test]
    fn invalid_percent_encoding_is_reported() {
        let t = Template::parse("/a/{b}").expect("parses");
        assert_eq!(t.matches("/a/%FF"), Some(Err(CaptureError::BadEncoding)));
    }
}

//! Label selectors as apimachinery's `labels.Parse` reads them (`pkg/labels/selector.go`): its
//! lexer (identifiers end at whitespace or one of `=!(),<>`; the longest operator wins; `in`
//! and `notin` are keywords only where an operator is expected), its parser and its error
//! texts, and `NewRequirement`'s checks (keys are qualified names, values label values, the
//! value of `>` and `<` an integer). Matching is `Requirement.Matches`.

use std::collections::BTreeSet;

use super::validation::{go_quote, label_value_errors, qualified_name_errors};

/// One label requirement (`labels.Requirement`).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Gt(String, i64),
    Lt(String, i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn is_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn token_of(s: &[u8]) -> Option<Tok> {
    Some(match s {
        b")" => Tok::ClosedPar,
        b"," => Tok::Comma,
        b"!" => Tok::DoesNotExist,
        b"==" => Tok::DoubleEquals,
        b"=" => Tok::Equals,
        b">" => Tok::GreaterThan,
        b"in" => Tok::In,
        b"<" => Tok::LessThan,
        b"!=" => Tok::NotEquals,
        b"notin" => Tok::NotIn,
        b"(" => Tok::OpenPar,
        _ => return None,
    })
}

/// The lexer's tokens, ending with `End`. As in Go, a NUL byte where a token starts ends the
/// input, and one that ends a token is skipped.
fn lex(s: &str) -> Vec<(Tok, String)> {
    let b = s.as_bytes();
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while at(i) != 0 && is_whitespace(at(i)) {
            i += 1;
        }
        let c = at(i);
        if c == 0 {
            out.push((Tok::End, String::new()));
            return out;
        }
        let start = i;
        if is_special(c) {
            // The longest run of special characters that is an operator.
            let mut last = None;
            while at(i) != 0 && is_special(at(i)) {
                match token_of(&b[start..=i]) {
                    Some(t) => last = Some((t, i + 1)),
                    None if last.is_some() => break,
                    None => {}
                }
                i += 1;
            }
            // Every single special character is a token, so `last` is set.
            let (t, end) = last.unwrap_or((Tok::Identifier, i));
            out.push((t, String::from_utf8_lossy(&b[start..end]).into_owned()));
            // Go's scan reads the NUL byte that stops it and does not put it back.
            i = if end == i && i < b.len() && at(i) == 0 {
                i + 1
            } else {
                end
            };
        } else {
            while at(i) != 0 && !is_special(at(i)) && !is_whitespace(at(i)) {
                i += 1;
            }
            let lit = String::from_utf8_lossy(&b[start..i]).into_owned();
            if i < b.len() && at(i) == 0 {
                i += 1;
            }
            let t = token_of(lit.as_bytes()).unwrap_or(Tok::Identifier);
            out.push((t, lit));
        }
    }
}

struct Parser {
    items: Vec<(Tok, String)>,
    pos: usize,
}

impl Parser {
    /// The next token; where values are expected, `in` and `notin` are identifiers.
    fn peek(&self, values: bool) -> (Tok, String) {
        let (t, l) = self
            .items
            .get(self.pos)
            .cloned()
            .unwrap_or((Tok::End, String::new()));
        match t {
            Tok::In | Tok::NotIn if values => (Tok::Identifier, l),
            _ => (t, l),
        }
    }

    fn next(&mut self, values: bool) -> (Tok, String) {
        let r = self.peek(values);
        self.pos += 1;
        r
    }

    fn requirement(&mut self) -> Result<LabelReq, String> {
        let (mut t, mut key) = self.next(true);
        let mut not_exists = false;
        if t == Tok::DoesNotExist {
            not_exists = true;
            (t, key) = self.next(true);
        }
        if t != Tok::Identifier {
            return Err(format!("found '{key}', expected: identifier"));
        }
        let key_errs = qualified_name_errors(&key);
        if !key_errs.is_empty() {
            return Err(format!(
                "<nil>: Invalid value: {}: {}",
                go_quote(&key),
                key_errs.join("; ")
            ));
        }
        let (ahead, _) = self.peek(true);
        if not_exists {
            return Ok(LabelReq::NotExists(key));
        }
        if matches!(ahead, Tok::End | Tok::Comma) {
            return Ok(LabelReq::Exists(key));
        }
        let (op, lit) = self.next(false);
        let values: Vec<String> = match op {
            Tok::In | Tok::NotIn => self.values()?.into_iter().collect(),
            Tok::Equals | Tok::DoubleEquals | Tok::NotEquals | Tok::GreaterThan | Tok::LessThan => {
                vec![self.exact_value()?]
            }
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ));
            }
        };
        // NewRequirement's checks, aggregated.
        let mut errs = Vec::new();
        let mut number = None;
        if matches!(op, Tok::GreaterThan | Tok::LessThan) {
            match values[0].parse::<i64>() {
                Ok(n) => number = Some(n),
                Err(_) => errs.push(format!(
                    "values[0]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                    go_quote(&values[0])
                )),
            }
        }
        for (i, v) in values.iter().enumerate() {
            let msgs = label_value_errors(v);
            if !msgs.is_empty() {
                errs.push(format!(
                    "values[{i}][{key}]: Invalid value: {}: {}",
                    go_quote(v),
                    msgs.join("; ")
                ));
            }
        }
        match errs.len() {
            0 => {}
            1 => return Err(errs.remove(0)),
            _ => return Err(format!("[{}]", errs.join(", "))),
        }
        let one = || values[0].clone();
        Ok(match (op, number) {
            (Tok::In, _) => LabelReq::In(key, values),
            (Tok::NotIn, _) => LabelReq::NotIn(key, values),
            (Tok::NotEquals, _) => LabelReq::NotEq(key, one()),
            (Tok::GreaterThan, Some(n)) => LabelReq::Gt(key, n),
            (Tok::LessThan, Some(n)) => LabelReq::Lt(key, n),
            _ => LabelReq::Eq(key, one()),
        })
    }

    /// `parseValues`: `(a,b)`; `()` is the set of the empty value.
    fn values(&mut self) -> Result<BTreeSet<String>, String> {
        let (t, lit) = self.next(true);
        if t != Tok::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (t, lit) = self.peek(true);
        match t {
            Tok::Identifier | Tok::Comma => {
                let set = self.identifiers()?;
                let (t, _) = self.next(true);
                if t != Tok::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(set)
            }
            Tok::ClosedPar => {
                self.next(true);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    /// `parseIdentifiersList`: identifiers and commas up to `)`; empty places are "".
    fn identifiers(&mut self) -> Result<BTreeSet<String>, String> {
        let mut set = BTreeSet::new();
        loop {
            let (t, lit) = self.next(true);
            match t {
                Tok::Identifier => {
                    set.insert(lit);
                    let (t2, lit2) = self.peek(true);
                    match t2 {
                        Tok::Comma => continue,
                        Tok::ClosedPar => return Ok(set),
                        _ => return Err(format!("found '{lit2}', expected: ',' or ')'")),
                    }
                }
                Tok::Comma => {
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    let (t2, _) = self.peek(true);
                    if t2 == Tok::ClosedPar {
                        set.insert(String::new());
                        return Ok(set);
                    }
                    if t2 == Tok::Comma {
                        set.insert(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    /// `parseExactValue`: one identifier, or "" before `,` or the end.
    fn exact_value(&mut self) -> Result<String, String> {
        let (t, _) = self.peek(true);
        if matches!(t, Tok::End | Tok::Comma) {
            return Ok(String::new());
        }
        let (t, lit) = self.next(true);
        if t == Tok::Identifier {
            Ok(lit)
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

/// `labels.Parse`: the requirements of `s`, or the apiserver's 400 message.
pub(super) fn parse_label_selector(s: &str) -> Result<Vec<LabelReq>, String> {
    let mut p = Parser {
        items: lex(s),
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        let (t, lit) = p.peek(true);
        match t {
            Tok::Identifier | Tok::DoesNotExist => {
                out.push(
                    p.requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?,
                );
                let (t, lit) = p.next(true);
                match t {
                    Tok::End => return Ok(out),
                    Tok::Comma => {
                        let (t2, lit2) = p.peek(true);
                        if !matches!(t2, Tok::Identifier | Tok::DoesNotExist) {
                            return Err(format!("found '{lit2}', expected: identifier after ','"));
                        }
                    }
                    _ => return Err(format!("found '{lit}', expected: ',' or 'end of string'")),
                }
            }
            Tok::End => return Ok(out),
            _ => {
                return Err(format!(
                    "found '{lit}', expected: !, identifier, or 'end of string'"
                ));
            }
        }
    }
}

/// `Requirement.Matches` for every requirement.
pub(super) fn labels_match(
    labels: Option<&std::collections::BTreeMap<String, String>>,
    sel: &[LabelReq],
) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k));
    let int = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok());
    sel.iter().all(|r| match r {
        LabelReq::Eq(k, v) => get(k) == Some(v),
        LabelReq::NotEq(k, v) => get(k) != Some(v),
        LabelReq::Exists(k) => get(k).is_some(),
        LabelReq::NotExists(k) => get(k).is_none(),
        LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.contains(x)),
        LabelReq::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(x)),
        LabelReq::Gt(k, n) => int(k).is_some_and(|x| x > *n),
        LabelReq::Lt(k, n) => int(k).is_some_and(|x| x < *n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers of kube-apiserver 1.37.2 to these selectors (`?labelSelector=`), recorded from
    /// the real apiserver; `tests/kube_real.rs` asks it again.
    #[test]
    fn errors_are_the_apiservers() {
        for (sel, want) in [
            (
                "==",
                "found '==', expected: !, identifier, or 'end of string'",
            ),
            ("a=b=c", "found '=', expected: ',' or 'end of string'"),
            ("a,", "found '', expected: identifier after ','"),
            (
                "a b",
                "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "a=(b)",
                "unable to parse requirement: found '(', expected: identifier",
            ),
            (
                "a in (b",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "a notin b",
                "unable to parse requirement: found 'b' expected: '('",
            ),
            (
                "a in (=)",
                "unable to parse requirement: found '=', expected: ',', ')' or identifier",
            ),
            (
                "!!a",
                "unable to parse requirement: found '!', expected: identifier",
            ),
            (
                "a<=1",
                "unable to parse requirement: found '=', expected: identifier",
            ),
            (
                "a<x",
                "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer",
            ),
        ] {
            assert_eq!(parse_label_selector(sel).unwrap_err(), want, "{sel}");
        }
    }

    #[test]
    fn matches_as_requirements_do() {
        let labels: std::collections::BTreeMap<String, String> =
            [("n".to_owned(), "5".to_owned())].into();
        for (sel, want) in [
            ("n>4", true),
            ("n<5", false),
            ("n in (,5,)", true),
            ("n notin (5,,)", false),
            ("a in ()", false),
            (" n = 5 , !a ", true),
            ("n\0=5", true),
            ("in=1", false),
        ] {
            let reqs = parse_label_selector(sel).unwrap();
            assert_eq!(labels_match(Some(&labels), &reqs), want, "{sel}");
        }
    }
}

//! An error and its causes on one line, for log lines and messages built from another error.
//!
//! The crate's errors print each cause once: a `Display` text says what failed at its own
//! step, and the cause is its [`source`](std::error::Error::source), never repeated in the
//! text. Whoever prints an error for a person therefore prints the chain, with [`Chain`].

use std::error::Error;
use std::fmt;

/// Displays an error followed by each of its sources, `: `-separated
/// (`cannot read /x: No such file or directory (os error 2)`).
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            write!(f, ": {cause}")?;
            next = cause.source();
        }
        Ok(())
    }
}

/// A cause kept as its text: the copy of an error whose own source cannot be cloned.
#[derive(Debug)]
pub(crate) struct CauseText(pub(crate) String);

impl fmt::Display for CauseText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for CauseText {}

/// Checks a table of errors of one type: each `Display` is exactly the expected text, a
/// lower-case message without a trailing period that does not repeat the `Display` of the
/// error's source (the cause is printed once, by whoever walks the chain); and the rows cover
/// all `variants` variants, which `variant` names (an exhaustive `match`, so that a new variant
/// does not compile until it is named, counted and given a row).
#[cfg(test)]
pub(crate) fn check_table<E: Error>(
    rows: &[(E, &str)],
    variant: fn(&E) -> &'static str,
    variants: usize,
) {
    let mut covered = std::collections::BTreeSet::new();
    for (e, want) in rows {
        let name = variant(e);
        covered.insert(name);
        let got = e.to_string();
        assert_eq!(got, *want, "{name}");
        assert!(
            got.chars().next().is_some_and(|c| !c.is_uppercase()) && !got.ends_with('.'),
            "{name}: {got:?} is not a lower-case message without a trailing period"
        );
        if let Some(source) = e.source() {
            let cause = source.to_string();
            assert!(
                !got.contains(&cause),
                "{name}: the message {got:?} repeats its source {cause:?}"
            );
        }
    }
    assert_eq!(
        covered.len(),
        variants,
        "variants without a row: covered {covered:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cannot read /x")
        }
    }
    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn chain_prints_each_cause_once_in_order() {
        let e = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(Chain(&e).to_string(), "cannot read /x: disk on fire");
        let t = CauseText("plain".into());
        assert_eq!(Chain(&t).to_string(), "plain");
    }
}

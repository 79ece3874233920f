//! The humorous replies a press gets back: a plain text file, one per line,
//! compiled in from `responses.txt`; `--responses FILE` replaces it.

use std::path::Path;

use rand::Rng;

/// The built-in reply list.
pub const BUILT_IN: &str = include_str!("../responses.txt");

/// A non-empty list of replies.
#[derive(Debug, Clone)]
pub struct Replies(Vec<String>);

impl Replies {
    /// Parses one reply per line, skipping blank lines and `#` comments.
    pub fn parse(text: &str) -> Result<Self, String> {
        let lines: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        if lines.is_empty() {
            return Err("the reply list is empty: put one reply per line".into());
        }
        Ok(Replies(lines))
    }

    /// The built-in list.
    pub fn built_in() -> Self {
        Self::parse(BUILT_IN).expect("responses.txt has replies")
    }

    /// The list in `path`, or the built-in one.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        use anyhow::Context;
        let Some(path) = path else {
            return Ok(Self::built_in());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the reply list {}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// How many replies there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: the list is never empty.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Reply number `i`, if it exists.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.0.get(i).map(String::as_str)
    }

    /// A random reply index, never `previous` when there is a choice, so two
    /// presses in a row always read differently.
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R, previous: Option<usize>) -> usize {
        match previous {
            Some(p) if p < self.0.len() && self.0.len() > 1 => {
                let i = rng.random_range(0..self.0.len() - 1);
                if i >= p { i + 1 } else { i }
            }
            _ => rng.random_range(0..self.0.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn built_in_list_has_at_least_twenty_replies() {
        assert!(Replies::built_in().len() >= 20);
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let r = Replies::parse("# header\n\n  one  \n#two\nthree\n").unwrap();
        assert_eq!(
            (r.len(), r.get(0), r.get(1)),
            (2, Some("one"), Some("three"))
        );
    }

    #[test]
    fn empty_list_is_refused() {
        assert!(
            Replies::parse("# only a comment\n\n")
                .unwrap_err()
                .contains("empty")
        );
    }

    #[test]
    fn pick_never_repeats_the_previous_reply_and_reaches_all() {
        let r = Replies::built_in();
        let mut rng = StdRng::seed_from_u64(1);
        let mut seen = vec![false; r.len()];
        let mut prev = None;
        for _ in 0..5_000 {
            let i = r.pick(&mut rng, prev);
            assert_ne!(Some(i), prev);
            seen[i] = true;
            prev = Some(i);
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn single_reply_list_still_answers() {
        let r = Replies::parse("only\n").unwrap();
        assert_eq!(r.pick(&mut rand::rng(), Some(0)), 0);
    }
}

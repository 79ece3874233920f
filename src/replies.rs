//! The humorous replies a press gets back: a plain text file, one per line,
//! compiled in from `responses.txt`; `--responses FILE` replaces it. Now and then
//! ([`GEO_ODDS`]) a reply names where the visitor is, from the location their
//! session already has: nothing new is looked up or kept.

use std::path::Path;

use rand::Rng;

use crate::domain::Location;

/// Replies that name the visitor's place; `{place}` is "City, Country" or the
/// country. Their indices follow the list's own, so a reply is still one number
/// (the page without JavaScript shows a reply by its index).
pub const GEO: [&str; 6] = [
    "Somewhere in {place}, a button did nothing. It was this one.",
    "Breaking news from {place}: nothing happened.",
    "{place} has pressed nothing once more. The world takes note.",
    "Even in {place}, this button does nothing.",
    "Greetings to {place}. Nothing else to report.",
    "Nothing happened in {place}. We checked.",
];

/// One press in this many gets a reply naming the visitor's place (when known).
pub const GEO_ODDS: u32 = 5;

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

    /// Reply number `i` for a visitor from `location`: one of the list, or (past
    /// its end) one of [`GEO`] naming their place, when it is known.
    pub fn text(&self, i: usize, location: &Location) -> Option<String> {
        if let Some(reply) = self.get(i) {
            return Some(reply.to_owned());
        }
        let template = GEO.get(i - self.0.len())?;
        place(location).map(|place| template.replace("{place}", &place))
    }

    /// A random reply index for a visitor from `location`: now and then one that
    /// names their place, otherwise one of the list; never `previous`.
    pub fn pick_for<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        previous: Option<usize>,
        location: &Location,
    ) -> usize {
        if place(location).is_some() && rng.random_ratio(1, GEO_ODDS) {
            let previous_geo = previous.and_then(|p| p.checked_sub(self.0.len()));
            let mut g = rng.random_range(0..GEO.len());
            if Some(g) == previous_geo {
                g = (g + 1) % GEO.len();
            }
            return self.0.len() + g;
        }
        self.pick(rng, previous)
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

/// "Helsinki, Finland", "Finland", or none for an unknown place.
fn place(l: &Location) -> Option<String> {
    if l.country_code == Location::UNKNOWN_CODE || l.country_name.is_empty() {
        return None;
    }
    Some(if l.city_name.is_empty() {
        l.country_name.clone()
    } else {
        format!("{}, {}", l.city_name, l.country_name)
    })
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

    fn finland(city: &str) -> Location {
        Location {
            country_code: "FI".into(),
            country_name: "Finland".into(),
            city_name: city.into(),
            ..Location::unknown()
        }
    }

    #[test]
    fn now_and_then_a_reply_names_the_visitors_place() {
        let r = Replies::built_in();
        let mut rng = StdRng::seed_from_u64(3);
        let mut geo = 0;
        let mut prev = None;
        for _ in 0..5_000 {
            let i = r.pick_for(&mut rng, prev, &finland("Helsinki"));
            assert_ne!(Some(i), prev);
            let text = r.text(i, &finland("Helsinki")).unwrap();
            if i >= r.len() {
                geo += 1;
                assert!(text.contains("Helsinki, Finland"), "{text}");
            }
            prev = Some(i);
        }
        // One in five, give or take.
        assert!((800..1200).contains(&geo), "{geo}");
        assert_eq!(
            r.text(r.len(), &finland("")).unwrap(),
            GEO[0].replace("{place}", "Finland")
        );
    }

    #[test]
    fn an_unknown_place_is_never_named() {
        let r = Replies::built_in();
        let mut rng = StdRng::seed_from_u64(4);
        for _ in 0..1_000 {
            assert!(r.pick_for(&mut rng, None, &Location::unknown()) < r.len());
        }
        assert_eq!(r.text(r.len(), &Location::unknown()), None);
        assert_eq!(r.text(r.len() + GEO.len(), &finland("")), None);
    }
}

//! Literal prefilters for rule regexes: from a pattern's syntax tree, a set of strings at least
//! one of which occurs (ignoring ASCII case) in every text the pattern matches. A value holding
//! none of them cannot match, so the regex is not run — most values skip most rules this way
//! with one multi-string scan (aho-corasick, SIMD-accelerated for small sets).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_syntax::hir::{Class, Hir, HirKind};

/// Most alternatives a set may hold while it is built.
const MAX_SET: usize = 64;
/// A class with more distinct (lower-cased) bytes than this is not enumerated.
const MAX_CLASS: usize = 10;

/// What a piece of a pattern tells about the texts it matches.
#[derive(Default, Clone)]
struct Lits {
    /// Every text the piece can match (lower-cased), when that is a small finite set.
    exact: Option<Vec<Vec<u8>>>,
    /// Strings one of which occurs in every match.
    required: Option<Vec<Vec<u8>>>,
}

impl Lits {
    fn exact(set: Vec<Vec<u8>>) -> Lits {
        let mut set = set;
        set.sort();
        set.dedup();
        Lits {
            exact: Some(set),
            required: None,
        }
    }

    /// The best set known to be required: `required`, or `exact` itself.
    fn best(&self) -> Option<&Vec<Vec<u8>>> {
        better(self.required.as_ref(), useful(self.exact.as_ref()))
    }
}

/// A set is useful as a prefilter only if none of its strings is empty.
fn useful(set: Option<&Vec<Vec<u8>>>) -> Option<&Vec<Vec<u8>>> {
    set.filter(|s| !s.is_empty() && s.iter().all(|l| !l.is_empty()))
}

fn score(set: &[Vec<u8>]) -> (usize, std::cmp::Reverse<usize>) {
    let shortest = set.iter().map(Vec::len).min().unwrap_or(0);
    (shortest.min(16), std::cmp::Reverse(set.len()))
}

fn better<'a>(
    a: Option<&'a Vec<Vec<u8>>>,
    b: Option<&'a Vec<Vec<u8>>>,
) -> Option<&'a Vec<Vec<u8>>> {
    match (useful(a), useful(b)) {
        (Some(x), Some(y)) => Some(if score(y) > score(x) { y } else { x }),
        (x, y) => x.or(y),
    }
}

fn cross(a: &[Vec<u8>], b: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    if a.len() * b.len() > MAX_SET {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let mut s = x.clone();
            s.extend_from_slice(y);
            out.push(s);
        }
    }
    out.sort();
    out.dedup();
    Some(out)
}

fn lits(hir: &Hir) -> Lits {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Lits::exact(vec![Vec::new()]),
        HirKind::Literal(lit) => Lits::exact(vec![lit.0.to_ascii_lowercase()]),
        HirKind::Class(class) => {
            let mut bytes: Vec<u8> = Vec::new();
            match class {
                Class::Bytes(c) => {
                    for r in c.iter() {
                        if usize::from(r.end() - r.start()) >= 2 * MAX_CLASS {
                            return Lits::default();
                        }
                        bytes.extend((r.start()..=r.end()).map(|b| b.to_ascii_lowercase()));
                    }
                }
                Class::Unicode(c) => {
                    for r in c.iter() {
                        if (r.end() as u32).saturating_sub(r.start() as u32) >= 2 * MAX_CLASS as u32
                            || !r.end().is_ascii()
                        {
                            return Lits::default();
                        }
                        bytes.extend(
                            (r.start() as u8..=r.end() as u8).map(|b| b.to_ascii_lowercase()),
                        );
                    }
                }
            }
            bytes.sort_unstable();
            bytes.dedup();
            if bytes.is_empty() || bytes.len() > MAX_CLASS {
                return Lits::default();
            }
            Lits::exact(bytes.into_iter().map(|b| vec![b]).collect())
        }
        HirKind::Capture(cap) => lits(&cap.sub),
        HirKind::Repetition(rep) => {
            let sub = lits(&rep.sub);
            if rep.min == 0 {
                return match (rep.max, sub.exact) {
                    (Some(1), Some(mut e)) if e.len() < MAX_SET => {
                        e.push(Vec::new());
                        Lits::exact(e)
                    }
                    _ => Lits::default(),
                };
            }
            let required = sub.best().cloned();
            let exact = match (&sub.exact, rep.max) {
                (Some(e), Some(max)) if max == rep.min && rep.min <= 3 => {
                    let mut acc = vec![Vec::new()];
                    for _ in 0..rep.min {
                        match cross(&acc, e) {
                            Some(next) => acc = next,
                            None => {
                                return Lits {
                                    exact: None,
                                    required,
                                };
                            }
                        }
                    }
                    Some(acc)
                }
                _ => None,
            };
            Lits { exact, required }
        }
        HirKind::Concat(children) => {
            let parts: Vec<Lits> = children.iter().map(lits).collect();
            let mut best: Option<Vec<Vec<u8>>> = None;
            for p in &parts {
                if let Some(b) = p.best() {
                    best = better(best.as_ref(), Some(b)).cloned();
                }
            }
            // Runs of exact pieces, joined: longer strings make better filters.
            for start in 0..parts.len() {
                let mut acc: Vec<Vec<u8>> = vec![Vec::new()];
                for p in &parts[start..] {
                    let Some(e) = &p.exact else { break };
                    let Some(next) = cross(&acc, e) else { break };
                    acc = next;
                    best = better(best.as_ref(), Some(&acc)).cloned();
                }
            }
            let mut exact: Option<Vec<Vec<u8>>> = Some(vec![Vec::new()]);
            for p in &parts {
                exact = match (&exact, &p.exact) {
                    (Some(acc), Some(e)) => cross(acc, e),
                    _ => None,
                };
            }
            Lits {
                exact,
                required: best,
            }
        }
        HirKind::Alternation(children) => {
            let parts: Vec<Lits> = children.iter().map(lits).collect();
            let mut exact = Some(Vec::new());
            let mut required = Some(Vec::new());
            for p in &parts {
                exact = match (exact, &p.exact) {
                    (Some(mut acc), Some(e)) if acc.len() + e.len() <= MAX_SET => {
                        acc.extend(e.iter().cloned());
                        Some(acc)
                    }
                    _ => None,
                };
                required = match (required, p.best()) {
                    (Some(mut acc), Some(b)) => {
                        acc.extend(b.iter().cloned());
                        Some(acc)
                    }
                    _ => None,
                };
            }
            let tidy = |set: Option<Vec<Vec<u8>>>| {
                set.map(|mut s| {
                    s.sort();
                    s.dedup();
                    s
                })
            };
            Lits {
                exact: tidy(exact),
                required: tidy(required),
            }
        }
    }
}

/// Drops every string that contains another string of the set (the shorter one is found
/// whenever the longer one is).
fn minimal(mut set: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    set.sort_by_key(Vec::len);
    let mut kept: Vec<Vec<u8>> = Vec::new();
    for s in set {
        if !kept
            .iter()
            .any(|k| s.windows(k.len()).any(|w| w == k.as_slice()))
        {
            kept.push(s);
        }
    }
    kept
}

/// The strings (lower-cased) one of which every match of a pattern holds, or `None` when
/// nothing useful is required. The pattern is in the `regex` crate's byte syntax, as
/// [`crate::operator::compile_regex`] builds it.
pub fn literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .dot_matches_new_line(true)
        .multi_line(true)
        .build()
        .parse(pattern)
        .ok()?;
    Some(minimal(lits(&hir).best()?.clone()))
}

/// A regex's prefilter: its required strings and one automaton over them.
#[derive(Debug)]
pub struct Prefilter {
    automaton: AhoCorasick,
    literals: Vec<Vec<u8>>,
}

impl Prefilter {
    /// Whether `haystack` holds one of the strings (ignoring ASCII case).
    pub fn is_match(&self, haystack: &[u8]) -> bool {
        self.automaton.is_match(haystack)
    }

    pub fn literals(&self) -> &[Vec<u8>] {
        &self.literals
    }
}

/// The prefilter of a pattern (see [`literals`]).
pub fn for_pattern(pattern: &str) -> Option<Prefilter> {
    let literals = literals(pattern)?;
    let automaton = AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(&literals)
        .ok()?;
    Some(Prefilter {
        automaton,
        literals,
    })
}

/// Which of a group's prefilters a value passes: bit `i` for the group's `i`-th one.
pub type Passed = smallvec::SmallVec<[u64; 4]>;

/// The prefilters of many rules that see values through the same transformations, merged
/// into one automaton: one scan of a value tells every rule of the group whether its regex
/// can match, instead of one scan per rule.
#[derive(Debug)]
pub struct MergedPrefilter {
    /// Walked byte by byte: the search iterators cost more per match than a whole walk, and
    /// benign text holds many short required strings.
    automaton: aho_corasick::dfa::DFA,
    /// The members (bits) each string of the automaton stands for.
    owners: Vec<Vec<u32>>,
    members: usize,
}

impl MergedPrefilter {
    /// Merges the string sets of `members` prefilters (member `i` gets bit `i`).
    pub fn build<'a>(members: impl IntoIterator<Item = &'a [Vec<u8>]>) -> Option<MergedPrefilter> {
        let mut strings: Vec<Vec<u8>> = Vec::new();
        let mut owners: Vec<Vec<u32>> = Vec::new();
        let mut index: std::collections::HashMap<Vec<u8>, usize> = Default::default();
        let mut count = 0;
        for (member, set) in members.into_iter().enumerate() {
            count += 1;
            for literal in set {
                let literal = literal.to_ascii_lowercase();
                let at = *index.entry(literal.clone()).or_insert_with(|| {
                    strings.push(literal);
                    owners.push(Vec::new());
                    strings.len() - 1
                });
                owners[at].push(u32::try_from(member).ok()?);
            }
        }
        // A full DFA: one table lookup per byte (its memory is bounded by the rule set, not
        // by traffic).
        let automaton = aho_corasick::dfa::DFA::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&strings)
            .ok()?;
        Some(MergedPrefilter {
            automaton,
            owners,
            members: count,
        })
    }

    /// The members whose prefilter `haystack` passes.
    pub fn scan(&self, haystack: &[u8]) -> Passed {
        use aho_corasick::Anchored;
        use aho_corasick::automaton::Automaton;
        let words = self.members.div_ceil(64);
        let dfa = &self.automaton;
        let Ok(mut state) = dfa.start_state(Anchored::No) else {
            // Cannot happen for an unanchored automaton; if it did, every member passes.
            return smallvec::smallvec![u64::MAX; words];
        };
        let mut passed: Passed = smallvec::smallvec![0; words];
        let mut left = self.members;
        for &byte in haystack {
            state = dfa.next_state(Anchored::No, state, byte);
            if !dfa.is_special(state) {
                continue;
            }
            if dfa.is_dead(state) {
                break;
            }
            // Special states also include the start state, which holds no match.
            if !dfa.is_match(state) {
                continue;
            }
            // Every string ending here (Standard semantics keeps the shorter ones too).
            for index in 0..dfa.match_len(state) {
                let pattern = dfa.match_pattern(state, index);
                for &member in &self.owners[pattern.as_usize()] {
                    let (word, bit) = (member as usize / 64, 1u64 << (member % 64));
                    if passed[word] & bit == 0 {
                        passed[word] |= bit;
                        left -= 1;
                    }
                }
            }
            if left == 0 {
                break;
            }
        }
        passed
    }
}

/// Whether member `member` passed, in a [`MergedPrefilter::scan`] result.
pub fn passed(passed: &Passed, member: u32) -> bool {
    passed
        .get(member as usize / 64)
        .is_some_and(|w| w & 1u64 << (member % 64) != 0)
}

/// The strings a pattern's prefilter looks for (for tests and diagnostics).
pub fn required_strings(pattern: &str) -> Option<Vec<String>> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .ok()?;
    let set = minimal(lits(&hir).best()?.clone());
    Some(
        set.iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req(p: &str) -> Option<Vec<String>> {
        required_strings(p).map(|mut v| {
            v.sort();
            v
        })
    }

    #[test]
    fn required_strings_of_typical_rule_patterns() {
        assert_eq!(req("abc"), Some(vec!["abc".into()]));
        assert_eq!(req("(?i)select\\s+from"), Some(vec!["select".into()]));
        assert_eq!(
            req("(?i)\\b(?:union|select)\\b"),
            Some(vec!["select".into(), "union".into()])
        );
        assert_eq!(req("<script[^>]*>"), Some(vec!["<script".into()]));
        assert_eq!(req("a|b*"), None, "one branch can be empty");
        assert_eq!(req(".*"), None);
        assert_eq!(req("x?y?"), None);
        assert_eq!(req("[a-z]+"), None, "too many bytes to be worth a scan");
        assert_eq!(
            req("[;|&`]+x?"),
            Some(vec!["&".into(), ";".into(), "`".into(), "|".into()])
        );
        assert_eq!(req("(?:ab|cd)ef"), Some(vec!["abef".into(), "cdef".into()]));
        assert_eq!(
            req("on(?:load|error)="),
            Some(vec!["onerror=".into(), "onload=".into()])
        );
    }

    fn regex(p: &str) -> regex::bytes::Regex {
        regex::bytes::RegexBuilder::new(p)
            .unicode(false)
            .dot_matches_new_line(true)
            .multi_line(true)
            .build()
            .unwrap()
    }

    proptest! {
        /// Whatever a pattern matches holds one of its required strings: a prefilter never
        /// hides a match.
        #[test]
        fn a_prefilter_never_hides_a_match(
            pattern in "(?:[abcAB]|\\(\\?i\\)|\\||\\(\\?:|\\)|\\*|\\+|\\?|\\[ab\\]|\\\\b|\\.){1,12}",
            text in "[abcABx .]{0,16}",
        ) {
            let Ok(re) = regex::bytes::RegexBuilder::new(&pattern).unicode(false).build() else {
                return Ok(());
            };
            if let Some(ac) = for_pattern(&pattern)
                && re.is_match(text.as_bytes())
            {
                prop_assert!(ac.is_match(text.as_bytes()), "{pattern:?} on {text:?}");
            }
        }
    }

    proptest! {
        /// A merged prefilter passes a member exactly when that member's own prefilter would.
        #[test]
        fn merged_prefilters_agree_with_each_member(
            sets in prop::collection::vec(prop::collection::vec("[abAB<(]{1,3}", 1..4), 1..80),
            text in "[abcAB<( ]{0,24}",
        ) {
            let sets: Vec<Vec<Vec<u8>>> = sets
                .iter()
                .map(|set| set.iter().map(|s| s.as_bytes().to_vec()).collect())
                .collect();
            let merged = MergedPrefilter::build(sets.iter().map(Vec::as_slice)).unwrap();
            let passes = merged.scan(text.as_bytes());
            for (member, set) in sets.iter().enumerate() {
                let own = AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .build(set)
                    .unwrap()
                    .is_match(text.as_bytes());
                prop_assert_eq!(passed(&passes, member as u32), own, "member {}", member);
            }
        }
    }

    #[test]
    fn crs_like_patterns_keep_their_matches() {
        for (p, text) in [
            (
                r"(?i)\b(?:d(?:atabas|b_nam)e[^0-9A-Z_a-z]*\(|sys(?:cat|tables))",
                "SELECT DATABASE ()",
            ),
            (r"(?i)<script[^>]*>[\s\S]*?", "<SCRIPT src=x>"),
            (r"(?:\.\./|\.\.\\)", "a/../b"),
            (
                r"(?i)(?:\$(?:\((?:\(.*\)|.*)\)|\{.*\})|[<>]\(.*\))",
                "x$(id)",
            ),
        ] {
            let re = regex(p);
            assert!(re.is_match(text.as_bytes()), "{p}");
            if let Some(ac) = for_pattern(p) {
                assert!(ac.is_match(text.as_bytes()), "{p} prefilter hides {text:?}");
            }
        }
    }
}

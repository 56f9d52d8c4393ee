//! Accuracy measures against ground truth, as the corpus's BASELINE.md defines them: the
//! character error rate (CER) over normalized text, and F1 over the multiset of words.
//! Used by `pagemill eval` and by the accuracy tests.

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;

/// NFC, and every whitespace run collapsed to one space.
/// Tokens of `text` found in `words` (a lowercase word list), ignoring surrounding
/// punctuation, case and one-letter tokens: how many real words a page yields.
pub fn dictionary_words(text: &str, words: &std::collections::HashSet<String>) -> usize {
    text.split_whitespace()
        .map(|t| {
            t.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|t| t.chars().count() > 1 && words.contains(t))
        .count()
}

pub fn normalize(text: &str) -> String {
    let nfc: String = text.nfc().collect();
    nfc.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Edit distance between the normalized texts, and the normalized reference's length in
/// characters: the two sums an overall CER is made of.
pub fn char_errors(ocr: &str, reference: &str) -> (usize, usize) {
    let (o, r) = (normalize(ocr), normalize(reference));
    (strsim::levenshtein(&o, &r), r.chars().count())
}

/// Character error rate: Levenshtein distance / reference length, after [`normalize`].
pub fn cer(ocr: &str, reference: &str) -> f64 {
    match char_errors(ocr, reference) {
        (0, 0) => 0.0,
        (_, 0) => 1.0,
        (errors, len) => errors as f64 / len as f64,
    }
}

/// Word counts for F1: words found in both, in the OCR text, in the reference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WordMatch {
    pub common: usize,
    pub ocr: usize,
    pub reference: usize,
}

impl WordMatch {
    /// F1 over the multiset of whitespace-separated words (reading order does not matter).
    pub fn f1(&self) -> f64 {
        if self.ocr + self.reference == 0 {
            return 1.0;
        }
        2.0 * self.common as f64 / (self.ocr + self.reference) as f64
    }
}

impl std::ops::Add for WordMatch {
    type Output = WordMatch;

    fn add(self, other: WordMatch) -> WordMatch {
        WordMatch {
            common: self.common + other.common,
            ocr: self.ocr + other.ocr,
            reference: self.reference + other.reference,
        }
    }
}

/// Matches the words of the two normalized texts as multisets.
pub fn word_match(ocr: &str, reference: &str) -> WordMatch {
    fn bag(text: &str) -> HashMap<String, usize> {
        let mut bag = HashMap::new();
        for word in normalize(text).split(' ').filter(|w| !w.is_empty()) {
            *bag.entry(word.to_string()).or_insert(0) += 1;
        }
        bag
    }
    let (o, r) = (bag(ocr), bag(reference));
    WordMatch {
        common: o
            .iter()
            .map(|(w, n)| (*n).min(r.get(w).copied().unwrap_or(0)))
            .sum(),
        ocr: o.values().sum(),
        reference: r.values().sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cer_counts_edits_over_the_normalized_reference() {
        assert_eq!(cer("hello  world\n", "hello world"), 0.0);
        assert_eq!(cer("hallo world", "hello world"), 1.0 / 11.0);
        assert_eq!(cer("", ""), 0.0);
        assert_eq!(cer("x", ""), 1.0);
    }

    #[test]
    fn word_f1_ignores_order_but_counts_repeats() {
        let m = word_match("b a a", "a b c");
        assert_eq!(
            m,
            WordMatch {
                common: 2,
                ocr: 3,
                reference: 3
            }
        );
        assert!((m.f1() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(word_match("x y", "y x").f1(), 1.0);
    }
}

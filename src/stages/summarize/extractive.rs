//! Local extractive summary: the sentences that best represent the document.
//!
//! Classic frequency scoring (Luhn): words are counted without stop words (English and German
//! lists), each sentence scores the mean weight of its content words, and the best sentences
//! are returned in document order. No model, no network, stable output.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

const STOP_WORDS_EN: &str = "a about above after again against all am an and any are as at be because been before being below between both but by can could did do does doing down during each few for from further had has have having he her here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only or other our ours ourselves out over own same she should so some such than that the their theirs them themselves then there these they this those through to too under until up very was we were what when where which while who whom why will with would you your yours yourself yourselves also may one two new used use";
const STOP_WORDS_DE: &str = "aber alle allem allen aller alles als also am an ander andere anderem anderen anderer anderes anderm andern anders auch auf aus bei bin bis bist da damit dann das dass dasselbe dazu dein deine dem den denn der des desselben dessen dich die dies diese dieselbe dieselben diesem diesen dieser dieses dir doch dort du durch ein eine einem einen einer eines einig einige einigem einigen einiger einiges einmal er es etwas euch euer eure für gegen gewesen hab habe haben hat hatte hatten hier hin hinter ich ihm ihn ihnen ihr ihre ihrem ihren ihrer ihres im in indem ins ist jede jedem jeden jeder jedes jene jenem jenen jener jenes jetzt kann kein keine keinem keinen keiner keines können könnte machen man manche manchem manchen mancher manches mein meine mich mir mit muss musste nach nicht nichts noch nun nur ob oder ohne sehr sein seine seinem seinen seiner seines selbst sich sie sind so solche solchem solchen solcher solches soll sollte sondern sonst über um und uns unser unsere unter viel vom von vor während war waren warst was weg weil weiter welche welchem welchen welcher welches wenn werde werden wie wieder will wir wird wirst wo wollen wollte würde würden zu zum zur zwar zwischen";

fn stop_words() -> &'static HashSet<&'static str> {
    static WORDS: OnceLock<HashSet<&'static str>> = OnceLock::new();
    WORDS.get_or_init(|| {
        STOP_WORDS_EN
            .split_whitespace()
            .chain(STOP_WORDS_DE.split_whitespace())
            .collect()
    })
}

/// Splits text into sentences at `.`, `!` or `?` followed by whitespace, and at blank lines.
/// Line breaks inside a paragraph (and hyphenated line ends) are joined.
pub fn split_sentences(text: &str) -> Vec<String> {
    let mut sentences = Vec::new();
    for paragraph in text.split(['\u{c}']).flat_map(|p| p.split("\n\n")) {
        let joined = paragraph
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .fold(String::new(), |mut acc, line| {
                if acc.ends_with('-') && line.starts_with(|c: char| c.is_lowercase()) {
                    acc.pop();
                } else if !acc.is_empty() {
                    acc.push(' ');
                }
                acc.push_str(line);
                acc
            });
        let mut current = String::new();
        let mut chars = joined.chars().peekable();
        while let Some(c) = chars.next() {
            current.push(c);
            if matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|n| n.is_whitespace()) {
                push_sentence(&mut sentences, &mut current);
            }
        }
        push_sentence(&mut sentences, &mut current);
    }
    sentences
}

fn push_sentence(out: &mut Vec<String>, current: &mut String) {
    let s = current.trim();
    // Fragments without a few real words (headers, page numbers, OCR noise) are not sentences.
    if s.split_whitespace()
        .filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 2)
        .count()
        >= 4
    {
        out.push(s.to_string());
    }
    current.clear();
}

fn content_words(sentence: &str) -> impl Iterator<Item = String> + '_ {
    sentence
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3 && w.chars().any(char::is_alphabetic))
        .map(str::to_lowercase)
        .filter(|w| !stop_words().contains(w.as_str()))
}

/// The `max_sentences` most representative sentences of `text`, in document order.
pub fn summarize(text: &str, max_sentences: usize) -> String {
    let sentences = split_sentences(text);
    let mut freq: HashMap<String, f64> = HashMap::new();
    for s in &sentences {
        for w in content_words(s) {
            *freq.entry(w).or_default() += 1.0;
        }
    }
    let max = freq.values().cloned().fold(1.0, f64::max);
    let mut scored: Vec<(usize, f64)> = sentences
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let words: Vec<String> = content_words(s).collect();
            let score = if words.is_empty() {
                0.0
            } else {
                words.iter().map(|w| freq[w] / max).sum::<f64>() / (words.len() as f64).sqrt()
            };
            (i, score)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut chosen: Vec<usize> = scored
        .into_iter()
        .take(max_sentences)
        .map(|(i, _)| i)
        .collect();
    chosen.sort_unstable();
    chosen
        .into_iter()
        .map(|i| sentences[i].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_central_sentences_in_order() {
        let text = "Optical character recognition turns scanned pages into text.\n\
                    The weather was pleasant on that day in June.\n\n\
                    Character recognition of scanned pages needs clean page images.\n\
                    Recognition quality of scanned text depends on the page images.";
        let summary = summarize(text, 2);
        assert!(
            summary.starts_with("Optical character recognition"),
            "{summary}"
        );
        assert!(!summary.contains("weather"), "{summary}");
    }

    #[test]
    fn german_stop_words_do_not_dominate() {
        let text = "Die Topologie untersucht die Eigenschaften von Räumen und Abbildungen. \
                    Und die und der und das und die und der sind hier nur Füllwörter heute. \
                    Stetige Abbildungen zwischen topologischen Räumen erhalten Eigenschaften.";
        let summary = summarize(text, 1);
        assert!(!summary.contains("Füllwörter"), "{summary}");
    }

    #[test]
    fn empty_text_gives_empty_summary() {
        assert_eq!(summarize("", 3), "");
    }
}

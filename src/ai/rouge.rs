//! ROUGE-1, ROUGE-2 and ROUGE-L F1 (Lin, 2004) of a summary against one reference: tokens
//! are lower-cased alphanumeric runs, no stemming, no stop words removed; ROUGE-L is the
//! longest common subsequence over the whole token sequences (sentence-level, which reads
//! lower than summary-level ROUGE-Lsum).

use std::collections::HashMap;

/// F1 scores in [0, 1].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scores {
    pub rouge1: f64,
    pub rouge2: f64,
    pub rouge_l: f64,
}

/// Lower-cased alphanumeric tokens of `text`.
pub fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn f1(overlap: usize, candidate: usize, reference: usize) -> f64 {
    if overlap == 0 || candidate == 0 || reference == 0 {
        return 0.0;
    }
    let p = overlap as f64 / candidate as f64;
    let r = overlap as f64 / reference as f64;
    2.0 * p * r / (p + r)
}

fn ngram_f1(candidate: &[String], reference: &[String], n: usize) -> f64 {
    fn grams(t: &[String], n: usize) -> HashMap<&[String], usize> {
        let mut m: HashMap<&[String], usize> = HashMap::new();
        for g in t.windows(n) {
            *m.entry(g).or_default() += 1;
        }
        m
    }
    let (c, r) = (grams(candidate, n), grams(reference, n));
    let overlap: usize = c
        .iter()
        .map(|(g, n)| (*n).min(r.get(g).copied().unwrap_or(0)))
        .sum();
    f1(
        overlap,
        candidate.len().saturating_sub(n - 1),
        reference.len().saturating_sub(n - 1),
    )
}

fn lcs(a: &[String], b: &[String]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y {
                diagonal + 1
            } else {
                above.max(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The scores of `candidate` against `reference`.
pub fn score(candidate: &str, reference: &str) -> Scores {
    let (c, r) = (tokens(candidate), tokens(reference));
    Scores {
        rouge1: ngram_f1(&c, &r, 1),
        rouge2: ngram_f1(&c, &r, 2),
        rouge_l: f1(lcs(&c, &r), c.len(), r.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_texts_score_one_and_disjoint_zero() {
        let s = score("Amanda will text Larry.", "amanda WILL text larry");
        assert_eq!((s.rouge1, s.rouge2, s.rouge_l), (1.0, 1.0, 1.0));
        assert_eq!(score("a b c", "d e f"), Scores::default());
    }

    #[test]
    fn partial_overlap_matches_hand_computed_figures() {
        // candidate: the cat sat on the mat (6); reference: the cat is on the mat (6).
        let s = score("the cat sat on the mat", "the cat is on the mat");
        // unigrams: the×2, cat, on, mat = 5 of 6.
        assert!((s.rouge1 - 5.0 / 6.0).abs() < 1e-9);
        // bigrams: "the cat", "on the", "the mat" = 3 of 5.
        assert!((s.rouge2 - 3.0 / 5.0).abs() < 1e-9);
        // LCS: the cat on the mat = 5.
        assert!((s.rouge_l - 5.0 / 6.0).abs() < 1e-9);
    }
}

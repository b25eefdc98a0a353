//! Prompt-based classification with a decoder (LM-BFF / PET): each input is written into a
//! template whose answer slot is at the end, and each class has a label word; the class score
//! is the language model's logit of the word at the last real position, or, when a word has
//! several tokens, the summed log-probability of its tokens
//! ([`crate::method::subspace::Subspace::forward`]).
//!
//! Templates use `{s}` for the sentence of a single-sentence task, `{s1}` and `{s2}` for the
//! two texts of a pair task. Words carry their leading space (`" great"`): they are the
//! continuation of the template.
//!
//! A regression task (STS-B) takes two words, its two poles, as in LM-BFF: the predicted score
//! is `lo + (hi − lo) · P(high word)`, the probability of the second word against the first,
//! with `lo` and `hi` the lowest and highest score of the train pool (STS-B: 0 and 5).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A template and one label word per class, in the task's class order (in a run's
/// `results.json`: `prompt`, with `template` and `label_words`, the config keys' names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    /// The template, e.g. `{s} It was`.
    pub template: String,
    /// The label words, e.g. `[" terrible", " great"]`.
    #[serde(rename = "label_words")]
    pub words: Vec<String>,
}

impl Prompt {
    /// The default prompt of a task (the task's class order: `label_names`) for a model;
    /// `instruct`: an instruction-tuned model, which prefers an instruction-style template on
    /// sentiment (SmolLM2-135M-Instruct, first 200 SST-2 dev sentences, zero-shot: 0.745
    /// against 0.505 for `{s} It was` → terrible / great, which answers "great" 196 times).
    /// STS-B gets two poles (`" No"`, `" Yes"`: not similar, similar). A user's task (`pairs`:
    /// its examples have two texts) takes its class names as the words; `None` for a user's
    /// regression task (no words to guess).
    pub fn default_for(task: &str, label_names: &[String], instruct: bool, pairs: bool) -> Option<Prompt> {
        let p =
            |t: &str, w: &[&str]| Prompt { template: t.to_string(), words: w.iter().map(|s| s.to_string()).collect() };
        let pair = "{s1} ? {s2} Answer:";
        let prompt = match task {
            "sst2" | "polarity" if instruct => {
                p("Review: {s}\nSentiment (positive or negative):", &[" negative", " positive"])
            }
            "sst2" | "polarity" => p("{s} It was", &[" terrible", " great"]),
            "cola" => p("{s} This is", &[" incorrect", " correct"]),
            "mrpc" | "qqp" | "wnli" => p(pair, &[" No", " Yes"]),
            // entailment, not_entailment
            "rte" | "qnli" => p(pair, &[" Yes", " No"]),
            // contradiction, entailment, neutral
            "mnli" => p(pair, &[" No", " Yes", " Maybe"]),
            // the low pole (score 0), the high pole (score 5)
            "stsb" => p(pair, &[" No", " Yes"]),
            _ if label_names.is_empty() => return None,
            // A user task: the class names themselves are the words.
            _ => Prompt {
                template: if pairs { pair } else { "{s}\nAnswer:" }.into(),
                words: label_names.iter().map(|n| format!(" {n}")).collect(),
            },
        };
        Some(prompt)
    }

    /// The prompt in one line, as the config keys would take it: `template = "{s} It was",
    /// label_words = [" terrible", " great"]` (no words: a linear head reads the last token).
    pub fn describe(&self) -> String {
        let words = if self.words.is_empty() {
            "no label words (a linear head reads the last token)".to_string()
        } else {
            format!("label_words = {:?}", self.words)
        };
        format!("template = {:?}, {words}", self.template)
    }

    /// Checks the template against the task (`pairs`: a pair task) and the words against
    /// the number of classes (0: a regression task, which takes two words, its poles).
    pub fn check(&self, pairs: bool, classes: usize) -> Result<()> {
        let t = &self.template;
        let err = |m: String| Err(Error::Input(m));
        if pairs {
            if !(t.contains("{s1}") && t.contains("{s2}")) {
                return err(format!(
                    "template = {t:?}: a pair task needs {{s1}} and {{s2}} in the template (e.g. \"{{s1}} ? {{s2}} Answer:\")"
                ));
            }
        } else if !t.contains("{s}") {
            return err(format!(
                "template = {t:?}: a single-sentence task needs {{s}} in the template (e.g. \"{{s}} It was\")"
            ));
        }
        if classes == 0 && self.words.len() != 2 {
            return err(format!(
                "label_words = {:?}: a regression task takes two words, the low pole then the high pole (e.g. [\" No\", \" Yes\"])",
                self.words
            ));
        }
        if classes > 0 && self.words.len() != classes {
            return err(format!("label_words = {:?}: expected one word per class ({classes} classes)", self.words));
        }
        if self.words.iter().any(|w| w.trim().is_empty()) {
            return err(format!("label_words = {:?}: a label word cannot be empty", self.words));
        }
        Ok(())
    }

    /// The index of the word that a labelled example's answer is written with (in-context
    /// demonstrations, prefixes started from text): its class, or for a score in `range` the
    /// nearer pole (the high one from the middle up).
    pub fn word_index(&self, label: crate::data::Label, range: Option<(f64, f64)>) -> Option<usize> {
        match (label, range) {
            (crate::data::Label::Class(c), _) => (c < self.words.len()).then_some(c),
            (crate::data::Label::Score(s), Some((lo, hi))) if self.words.len() == 2 => {
                Some(usize::from(s as f64 >= (lo + hi) / 2.0))
            }
            _ => None,
        }
    }

    /// The template filled with an input.
    pub fn fill(&self, a: &str, b: Option<&str>) -> String {
        match b {
            Some(b) => self.template.replace("{s1}", a).replace("{s2}", b),
            None => self.template.replace("{s}", a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_checks() {
        let names: Vec<String> = vec!["0".into(), "1".into()];
        let p = Prompt::default_for("sst2", &names, false, false).unwrap();
        assert_eq!(p.fill("a fine film", None), "a fine film It was");
        p.check(false, 2).unwrap();
        assert!(p.check(true, 2).is_err());
        assert!(p.check(false, 3).is_err());
        let q = Prompt::default_for("rte", &names, false, true).unwrap();
        assert_eq!(q.fill("A", Some("B")), "A ? B Answer:");
        let sts = Prompt::default_for("stsb", &[], false, true).unwrap();
        sts.check(true, 0).unwrap();
        assert!(Prompt { words: vec![" No".into()], ..sts.clone() }.check(true, 0).is_err());
        use crate::data::Label;
        assert_eq!(sts.word_index(Label::Score(2.4), Some((0.0, 5.0))), Some(0));
        assert_eq!(sts.word_index(Label::Score(2.5), Some((0.0, 5.0))), Some(1));
        assert_eq!(sts.word_index(Label::Score(2.5), None), None);
        assert_eq!(q.word_index(Label::Class(1), None), Some(1));
        assert!(Prompt::default_for("user", &[], false, false).is_none());
        let u = Prompt::default_for("user", &["spam".into(), "ham".into()], false, false).unwrap();
        assert_eq!(u.words, vec![" spam", " ham"]);
        u.check(false, 2).unwrap();
        // A user's pair task gets a template with both texts, which its own check accepts.
        let v = Prompt::default_for("user", &["no".into(), "yes".into()], true, true).unwrap();
        v.check(true, 2).unwrap();
        assert_eq!(v.fill("A", Some("B")), "A ? B Answer:");
    }
}

//! Few-shot train/dev sampling from a pool of examples (LM-BFF protocol: train and dev are
//! disjoint samples of the same size and class balance, both drawn from the train file).
//!
//! Sampling is deterministic in the seed and platform-independent: it uses its own
//! `ChaCha8Rng::seed_from_u64(seed)` and its own Fisher-Yates shuffle on `next_u64`.
//!
//! Regression pools (all labels [`Label::Score`], no label names) are stratified by score bucket
//! instead of class: [0, 1), [1, 2), [2, 3), [3, 4), [4, 5] (scores below 0 fall in the first
//! bucket, scores of 4 and above in the last).

use rand::RngCore;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{DataError, Example, Label, Result};

/// Number of score buckets used to stratify regression pools.
pub const SCORE_BUCKETS: usize = 5;

/// How a few-shot split was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// K examples per class (or score bucket) for train, and a disjoint K per class for dev.
    PerClass,
    /// K examples in total, stratified by class frequency, for train and for dev.
    Total,
    /// Read from LM-BFF's pre-sampled `k-shot/<K>-<seed>/` files.
    KShotFiles,
}

/// Few-shot train and dev sets.
#[derive(Debug, Clone, PartialEq)]
pub struct FewShotSplit {
    /// How the split was made.
    pub protocol: Protocol,
    /// K: per class for [`Protocol::PerClass`] and [`Protocol::KShotFiles`], in total for
    /// [`Protocol::Total`].
    pub k: usize,
    /// The sampling seed.
    pub seed: u64,
    /// Train examples, in a seeded shuffled order.
    pub train: Vec<Example>,
    /// Dev examples (disjoint from train), in a seeded shuffled order.
    pub dev: Vec<Example>,
}

/// What is written to `split.json` to record a few-shot split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitSummary {
    /// How the split was made.
    pub protocol: Protocol,
    /// K (see [`FewShotSplit::k`]).
    pub k: usize,
    /// The sampling seed.
    pub seed: u64,
    /// Ids of the train examples, in order.
    pub train_ids: Vec<String>,
    /// Ids of the dev examples, in order.
    pub dev_ids: Vec<String>,
    /// [`FewShotSplit::split_hash`].
    pub hash: String,
}

impl FewShotSplit {
    /// Lower-case hex SHA-256 of the train ids, one per line (each followed by `\n`), then an
    /// empty line, then the dev ids, one per line.
    pub fn split_hash(&self) -> String {
        let mut hasher = Sha256::new();
        for e in &self.train {
            hasher.update(e.id.as_bytes());
            hasher.update(b"\n");
        }
        hasher.update(b"\n");
        for e in &self.dev {
            hasher.update(e.id.as_bytes());
            hasher.update(b"\n");
        }
        hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The serialisable record of this split.
    pub fn summary(&self) -> SplitSummary {
        SplitSummary {
            protocol: self.protocol,
            k: self.k,
            seed: self.seed,
            train_ids: self.train.iter().map(|e| e.id.clone()).collect(),
            dev_ids: self.dev.iter().map(|e| e.id.clone()).collect(),
            hash: self.split_hash(),
        }
    }
}

/// Samples `k` examples per class for train and a disjoint `k` per class for dev (LM-BFF).
/// `label_names` are the pool's classes; empty means a regression pool, sampled `k` per score
/// bucket (see the module docs). Fails, naming the class, if one has fewer than `2 * k`
/// examples.
pub fn sample_per_class(pool: &[Example], label_names: &[String], k: usize, seed: u64) -> Result<FewShotSplit> {
    if k == 0 {
        return Err(DataError::Sampling("k must be at least 1".to_string()));
    }
    let (strata, names) = strata(pool, label_names)?;
    let quota = vec![k; names.len()];
    let (train, dev) = draw(pool, &strata, &names, &quota, seed)?;
    Ok(FewShotSplit { protocol: Protocol::PerClass, k, seed, train, dev })
}

/// Samples `k_total` train examples stratified by class (each class gets a share proportional
/// to its frequency in the pool, largest-remainder rounding, at least one per class) and a
/// disjoint dev set of the same size and composition. `label_names` as for
/// [`sample_per_class`].
pub fn sample_total(pool: &[Example], label_names: &[String], k_total: usize, seed: u64) -> Result<FewShotSplit> {
    let (strata, names) = strata(pool, label_names)?;
    let mut counts = vec![0usize; names.len()];
    for &s in &strata {
        counts[s] += 1;
    }
    let quota = proportional_quota(&counts, k_total).map_err(DataError::Sampling)?;
    let (train, dev) = draw(pool, &strata, &names, &quota, seed)?;
    Ok(FewShotSplit { protocol: Protocol::Total, k: k_total, seed, train, dev })
}

/// Shuffles `items` with a Fisher-Yates shuffle driven by `rng.next_u64()` (unbiased by
/// rejection), so the order depends only on the generator's output stream.
pub fn shuffle<T>(items: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// A uniform integer in `0..n` (`n >= 1`).
fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    // Accept only values below the largest multiple of n that fits in 2^64.
    let reject = (u64::MAX - n + 1) % n; // = 2^64 mod n
    loop {
        let x = rng.next_u64();
        if x <= u64::MAX - reject {
            return x % n;
        }
    }
}

/// The stratum (class or score bucket) of every pool example, and the strata's display names.
fn strata(pool: &[Example], label_names: &[String]) -> Result<(Vec<usize>, Vec<String>)> {
    let regression = label_names.is_empty();
    let names: Vec<String> = if regression {
        (0..SCORE_BUCKETS)
            .map(|b| {
                let close = if b + 1 == SCORE_BUCKETS { ']' } else { ')' };
                format!("score bucket [{b}, {}{close}", b + 1)
            })
            .collect()
    } else {
        label_names.iter().map(|n| format!("class {n:?}")).collect()
    };
    let strata = pool
        .iter()
        .map(|e| match (e.label, regression) {
            (Label::Class(c), false) if c < label_names.len() => Ok(c),
            (Label::Score(s), true) => Ok((s.floor().max(0.0) as usize).min(SCORE_BUCKETS - 1)),
            (label, _) => Err(DataError::Sampling(format!(
                "example {} has label {label:?}, which does not fit the {} label names given",
                e.id,
                label_names.len()
            ))),
        })
        .collect::<Result<Vec<usize>>>()?;
    Ok((strata, names))
}

/// Per-class train sizes summing to `k_total`, proportional to `counts` by largest remainder
/// (ties to the lower class index), then moved so that every class gets at least one.
pub(crate) fn proportional_quota(counts: &[usize], k_total: usize) -> std::result::Result<Vec<usize>, String> {
    let classes = counts.len();
    let n: usize = counts.iter().sum();
    if k_total < classes {
        return Err(format!(
            "k_total = {k_total} is smaller than the number of classes ({classes}); each class needs at least one example"
        ));
    }
    if n == 0 {
        return Err("the pool is empty".to_string());
    }
    let mut quota: Vec<usize> = counts.iter().map(|&c| k_total * c / n).collect();
    let mut by_remainder: Vec<usize> = (0..classes).collect();
    by_remainder.sort_by_key(|&i| std::cmp::Reverse(k_total * counts[i] % n));
    let missing = k_total - quota.iter().sum::<usize>();
    for &i in by_remainder.iter().take(missing) {
        quota[i] += 1;
    }
    while let Some(empty) = quota.iter().position(|&q| q == 0) {
        // Take one from the largest share (lowest index among equals); it has >= 2 because
        // k_total >= classes and some class is at 0.
        let largest = (0..classes).max_by_key(|&i| (quota[i], std::cmp::Reverse(i))).unwrap_or(0);
        quota[largest] -= 1;
        quota[empty] += 1;
    }
    Ok(quota)
}

/// Walks the pool in seeded shuffled order, giving each example to train while its stratum's
/// train quota is open, then to dev while its dev quota (same size) is open.
fn draw(
    pool: &[Example],
    strata: &[usize],
    names: &[String],
    quota: &[usize],
    seed: u64,
) -> Result<(Vec<Example>, Vec<Example>)> {
    let mut available = vec![0usize; names.len()];
    for &s in strata {
        available[s] += 1;
    }
    for (i, name) in names.iter().enumerate() {
        if available[i] < 2 * quota[i] {
            return Err(DataError::TooFewExamples {
                class: name.clone(),
                count: available[i],
                needed: 2 * quota[i],
                train: quota[i],
                dev: quota[i],
            });
        }
    }
    let mut order: Vec<usize> = (0..pool.len()).collect();
    shuffle(&mut order, &mut ChaCha8Rng::seed_from_u64(seed));
    let mut in_train = vec![0usize; names.len()];
    let mut in_dev = vec![0usize; names.len()];
    let (mut train, mut dev) = (Vec::new(), Vec::new());
    for i in order {
        let s = strata[i];
        if in_train[s] < quota[s] {
            in_train[s] += 1;
            train.push(pool[i].clone());
        } else if in_dev[s] < quota[s] {
            in_dev[s] += 1;
            dev.push(pool[i].clone());
        }
    }
    Ok((train, dev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn pool(counts: &[usize]) -> Vec<Example> {
        let mut v = Vec::new();
        let mut line = 2;
        for (class, &n) in counts.iter().enumerate() {
            for _ in 0..n {
                v.push(Example {
                    id: format!("train.tsv:{line}"),
                    text_a: format!("text {line}"),
                    text_b: None,
                    label: Label::Class(class),
                });
                line += 1;
            }
        }
        v
    }

    fn names(n: usize) -> Vec<String> {
        ["contradiction", "entailment", "neutral", "other"][..n].iter().map(|s| s.to_string()).collect()
    }

    fn per_class(examples: &[Example], classes: usize) -> Vec<usize> {
        let mut c = vec![0; classes];
        for e in examples {
            if let Label::Class(i) = e.label {
                c[i] += 1;
            }
        }
        c
    }

    fn ids(examples: &[Example]) -> Vec<String> {
        examples.iter().map(|e| e.id.clone()).collect()
    }

    #[test]
    fn per_class_counts_and_disjoint() {
        let p = pool(&[40, 100, 33]);
        let s = sample_per_class(&p, &names(3), 16, 13).unwrap();
        assert_eq!(per_class(&s.train, 3), [16, 16, 16]);
        assert_eq!(per_class(&s.dev, 3), [16, 16, 16]);
        let train: HashSet<_> = ids(&s.train).into_iter().collect();
        assert_eq!(train.len(), 48);
        assert!(s.dev.iter().all(|e| !train.contains(&e.id)));
        // Not grouped by class: no class fills the first 16 positions.
        let first_classes = per_class(&s.train[..16], 3);
        assert!(first_classes.iter().all(|&c| c < 16), "{first_classes:?}");
    }

    #[test]
    fn per_class_deterministic_in_seed() {
        let p = pool(&[50, 50]);
        let a = sample_per_class(&p, &names(2), 8, 42).unwrap();
        let b = sample_per_class(&p, &names(2), 8, 42).unwrap();
        let c = sample_per_class(&p, &names(2), 8, 43).unwrap();
        assert_eq!(ids(&a.train), ids(&b.train));
        assert_eq!(ids(&a.dev), ids(&b.dev));
        assert_eq!(a.split_hash(), b.split_hash());
        assert_ne!(ids(&a.train), ids(&c.train));
        assert_ne!(a.split_hash(), c.split_hash());
    }

    #[test]
    fn sampling_is_pinned_across_platforms() {
        // Pins the exact stream: ChaCha8 output and our shuffle must never change silently.
        let mut v: Vec<usize> = (0..10).collect();
        shuffle(&mut v, &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!(v, PINNED_SHUFFLE);
    }

    const PINNED_SHUFFLE: [usize; 10] = [7, 8, 9, 0, 1, 5, 4, 6, 3, 2];

    #[test]
    fn per_class_too_few_names_class() {
        let p = pool(&[40, 20]);
        let err = sample_per_class(&p, &names(2), 16, 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "few-shot sampling: class \"entailment\" has 20 examples in the pool but 32 are needed (16 for train + 16 for dev)"
        );
        assert!(matches!(sample_per_class(&p, &names(2), 0, 1), Err(DataError::Sampling(_))));
    }

    #[test]
    fn label_outside_names_is_an_error() {
        let p = pool(&[3, 3, 3]);
        let err = sample_per_class(&p, &names(2), 1, 1).unwrap_err();
        assert!(err.to_string().contains("train.tsv:8"), "{err}");
    }

    #[test]
    fn regression_buckets() {
        let p: Vec<Example> = (0..100)
            .map(|i| Example {
                id: format!("train.tsv:{}", i + 2),
                text_a: "a".into(),
                text_b: Some("b".into()),
                label: Label::Score(i as f32 / 20.0), // 0.0 ..= 4.95, 20 per bucket
            })
            .collect();
        let s = sample_per_class(&p, &[], 4, 5).unwrap();
        assert_eq!((s.train.len(), s.dev.len()), (20, 20));
        let mut buckets = [0; 5];
        for e in &s.train {
            if let Label::Score(x) = e.label {
                buckets[x.floor() as usize] += 1;
            }
        }
        assert_eq!(buckets, [4; 5]);
        let err = sample_per_class(&p, &[], 11, 5).unwrap_err();
        assert!(err.to_string().contains("score bucket [0, 1) has 20 examples"), "{err}");
    }

    #[test]
    fn total_k_stratification() {
        // 60/30/10 of 100 with k_total = 16: exact shares 9.6/4.8/1.6 -> floors 9/4/1 (sum 14);
        // the two left go to the largest remainders: class 1 (0.8), then class 0 (0.6, ties
        // with class 2 go to the lower index) -> 10/5/1.
        let p = pool(&[60, 30, 10]);
        let s = sample_total(&p, &names(3), 16, 3).unwrap();
        assert_eq!(per_class(&s.train, 3), [10, 5, 1]);
        assert_eq!(per_class(&s.dev, 3), [10, 5, 1]);
        let train: HashSet<_> = ids(&s.train).into_iter().collect();
        assert!(s.dev.iter().all(|e| !train.contains(&e.id)));
        assert_eq!(s.protocol, Protocol::Total);
    }

    #[test]
    fn total_k_at_least_one_per_class() {
        assert_eq!(proportional_quota(&[98, 1, 1], 4).unwrap(), [2, 1, 1]);
        assert_eq!(proportional_quota(&[50, 50], 8).unwrap(), [4, 4]);
        assert_eq!(proportional_quota(&[1, 1, 1], 4).unwrap(), [2, 1, 1]);
        assert!(proportional_quota(&[10, 10, 10], 2).is_err());
        let p = pool(&[98, 1, 1]);
        let err = sample_total(&p, &names(3), 4, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "few-shot sampling: class \"entailment\" has 1 examples in the pool but 2 are needed (1 for train + 1 for dev)"
        );
        let p = pool(&[98, 2, 2]);
        let s = sample_total(&p, &names(3), 4, 0).unwrap();
        assert_eq!(per_class(&s.train, 3), [2, 1, 1]);
    }

    #[test]
    fn summary_and_hash() {
        let p = pool(&[10, 10]);
        let s = sample_per_class(&p, &names(2), 2, 9).unwrap();
        let sum = s.summary();
        assert_eq!(sum.train_ids.len(), 4);
        assert_eq!(sum.hash.len(), 64);
        let json = serde_json::to_value(&sum).unwrap();
        assert_eq!(json["protocol"], "per_class");
        assert_eq!(json["k"], 2);
        let back: SplitSummary = serde_json::from_value(json).unwrap();
        assert_eq!(back, sum);
        // Moving an id from train to dev changes the hash.
        let mut moved = s.clone();
        let e = moved.train.pop().unwrap();
        moved.dev.insert(0, e);
        assert_ne!(moved.split_hash(), s.split_hash());
    }
}

//! Order statistics over latency samples: the median and p90 the reports quote.

use serde::{Deserialize, Serialize};

/// What a series of samples (in milliseconds) boils down to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// The middle sample (the mean of the two middle ones for an even count).
    pub median: f64,
    /// The 90th percentile, nearest-rank: the smallest sample with at least 90% of all
    /// samples at or below it.
    pub p90: f64,
    /// The fastest sample.
    pub min: f64,
    /// The slowest sample.
    pub max: f64,
    /// The arithmetic mean.
    pub mean: f64,
}

/// Summarizes `samples`; `None` when there are none (or any is NaN).
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() || samples.iter().any(|s| s.is_nan()) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    Some(Summary {
        n,
        median,
        p90: percentile_nearest_rank(&sorted, 90.0),
        min: sorted[0],
        max: sorted[n - 1],
        mean: sorted.iter().sum::<f64>() / n as f64,
    })
}

/// Nearest-rank percentile of already sorted, non-empty samples.
fn percentile_nearest_rank(sorted: &[f64], pct: f64) -> f64 {
    let n = sorted.len();
    let rank = ((pct / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_has_no_summary() {
        assert_eq!(summarize(&[]), None);
        assert_eq!(summarize(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn odd_count_median_is_the_middle_sample() {
        let s = summarize(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!(s.median, 3.0);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 5.0);
        assert_eq!(s.mean, 3.0);
        assert_eq!(s.n, 3);
    }

    #[test]
    fn even_count_median_is_the_mean_of_the_middle_two() {
        let s = summarize(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
    }

    #[test]
    fn p90_of_twenty_is_the_eighteenth_sample() {
        let samples: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        let s = summarize(&samples).unwrap();
        assert_eq!(s.p90, 18.0);
        assert_eq!(s.median, 10.5);
    }

    #[test]
    fn p90_of_fifty_is_the_forty_fifth_sample() {
        let samples: Vec<f64> = (1..=50).map(f64::from).collect();
        assert_eq!(summarize(&samples).unwrap().p90, 45.0);
    }

    #[test]
    fn p90_of_one_sample_is_that_sample() {
        let s = summarize(&[7.5]).unwrap();
        assert_eq!((s.median, s.p90), (7.5, 7.5));
    }
}

//! The pod's traffic shaping from the kubelet's annotations `kubernetes.io/ingress-bandwidth`
//! and `kubernetes.io/egress-bandwidth`: Kubernetes quantities in bits per second ("10M",
//! "1Gi", "500k"), read as the kubelet reads them (between 1k and 1P, rounded up), for the
//! CNI `bandwidth` capability.

use std::collections::HashMap;

use crius_net::Bandwidth;

use crate::error::{Error, Result};

/// Traffic into the pod.
pub const INGRESS: &str = "kubernetes.io/ingress-bandwidth";
/// Traffic out of the pod.
pub const EGRESS: &str = "kubernetes.io/egress-bandwidth";

/// The smallest and largest rates Kubernetes accepts (1 kbit/s, 1 Pbit/s).
const MIN_RATE: u64 = 1_000;
const MAX_RATE: u64 = 1_000_000_000_000_000;

/// A Kubernetes quantity (`resource.Quantity`) as a whole number, rounded up: digits with
/// an optional fraction, then a binary (Ki..Ei), decimal (m, k..E) or exponent (e6) suffix.
pub fn parse_quantity(text: &str) -> std::result::Result<u64, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number = number.strip_prefix('+').unwrap_or(number);
    let well_formed = !number.is_empty()
        && number.matches('.').count() <= 1
        && number.chars().any(|c| c.is_ascii_digit());
    if !well_formed {
        return Err(format!("{text:?} is not a quantity"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a quantity"))?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..]
                .parse()
                .map_err(|_| format!("{text:?} has a bad exponent"))?;
            10f64.powi(exp)
        }
        s => return Err(format!("{text:?} has an unknown suffix {s:?}")),
    };
    let whole = (value * factor).ceil();
    if !whole.is_finite() || whole >= u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(whole as u64)
}

fn rate(annotations: &HashMap<String, String>, key: &str) -> Result<u64> {
    let Some(text) = annotations.get(key) else {
        return Ok(0);
    };
    let bad = |why: String| Error::InvalidArgument(format!("annotation {key}: {why}"));
    let value = parse_quantity(text.trim()).map_err(bad)?;
    if value < MIN_RATE {
        return Err(bad(format!("{text:?} is under 1k (bits per second)")));
    }
    if value > MAX_RATE {
        return Err(bad(format!("{text:?} is over 1P (bits per second)")));
    }
    Ok(value)
}

/// The shaping a pod's annotations ask for; `None` when they ask for none. A bad value is
/// `InvalidArgument` naming the annotation.
pub fn from_annotations(annotations: &HashMap<String, String>) -> Result<Option<Bandwidth>> {
    let ingress_rate = rate(annotations, INGRESS)?;
    let egress_rate = rate(annotations, EGRESS)?;
    if ingress_rate == 0 && egress_rate == 0 {
        return Ok(None);
    }
    Ok(Some(Bandwidth {
        ingress_rate,
        egress_rate,
        ..Bandwidth::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_kubernetes_reads_them() {
        for (text, want) in [
            ("1000", 1000),
            ("10M", 10_000_000),
            ("1.5k", 1500),
            ("1Ki", 1024),
            ("2Mi", 2 * 1024 * 1024),
            ("1G", 1_000_000_000),
            ("1e6", 1_000_000),
            ("1E3", 1000),
            ("1500m", 2),
            ("+7", 7),
        ] {
            assert_eq!(parse_quantity(text), Ok(want), "{text}");
        }
        for bad in ["", "M", "1x", "1.2.3", "-5", "1e", "ten", "1 M"] {
            assert!(parse_quantity(bad).is_err(), "{bad:?}");
        }
    }

    fn annotations(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn annotations_give_rates_in_bits_per_second() {
        assert_eq!(from_annotations(&HashMap::new()).unwrap(), None);
        let bw = from_annotations(&annotations(&[(INGRESS, "1M"), (EGRESS, "2M")]))
            .unwrap()
            .unwrap();
        assert_eq!((bw.ingress_rate, bw.egress_rate), (1_000_000, 2_000_000));
        let bw = from_annotations(&annotations(&[(EGRESS, "10Mi")]))
            .unwrap()
            .unwrap();
        assert_eq!((bw.ingress_rate, bw.egress_rate), (0, 10 * 1024 * 1024));
    }

    #[test]
    fn bad_or_unreasonable_rates_name_the_annotation() {
        for (value, why) in [
            ("fast", "not a quantity"),
            ("999", "under 1k"),
            ("2P", "over 1P"),
        ] {
            let err = from_annotations(&annotations(&[(INGRESS, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(INGRESS) && err.contains(why), "{value}: {err}");
        }
    }
}

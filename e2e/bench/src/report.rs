//! Puts two runs side by side: the plain-text table (metric, A, B, ratio A/B) and one
//! JSON file with both runs, the ratios, the tar floor and critest's own medians.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::bench::RunResult;
use crate::floor::FloorResult;
use crate::stats::summarize;

/// Which files to compare.
#[derive(Clone, Debug, clap::Args)]
pub struct ReportArgs {
    /// Dir holding A.json, B.json and, when present, floor.json and critest-A/, critest-B/.
    #[arg(long)]
    pub results: PathBuf,
    /// The runtime in the numerator of the ratios.
    #[arg(long, default_value = "crius")]
    pub a: String,
    /// The runtime in the denominator.
    #[arg(long, default_value = "containerd")]
    pub b: String,
}

/// One row of the comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// The metric's key.
    pub key: String,
    /// What it measures.
    pub label: String,
    /// Its unit.
    pub unit: String,
    /// The figure of A, if A has it.
    pub a: Option<f64>,
    /// The figure of B, if B has it.
    pub b: Option<f64>,
    /// a / b, when both exist and b is not 0.
    pub ratio: Option<f64>,
}

/// The whole comparison, as written to summary.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// Name of A.
    pub a: String,
    /// Name of B.
    pub b: String,
    /// Our series.
    pub rows: Vec<Row>,
    /// critest -benchmark medians, when it ran.
    pub critest: Vec<Row>,
    /// The tar floor under the pull series, when measured.
    pub floor: Option<FloorResult>,
    /// Both raw runs.
    pub runs: Vec<RunResult>,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

/// Rows for every metric of either run: A's order first, then metrics only B has.
pub fn compare(a: &RunResult, b: &RunResult, floor: Option<&FloorResult>) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for m in a.metrics.iter().chain(b.metrics.iter()) {
        if rows.iter().any(|r| r.key == m.key) {
            continue;
        }
        let find = |run: &RunResult| run.metrics.iter().find(|x| x.key == m.key).map(|x| x.value);
        let (va, vb) = (find(a), find(b));
        rows.push(Row {
            key: m.key.clone(),
            label: m.label.clone(),
            unit: m.unit.clone(),
            a: va,
            b: vb,
            ratio: ratio(va, vb),
        });
    }
    if let Some(floor) = floor {
        let floor_ms = floor.median_ms;
        let over = |run: &RunResult| {
            run.metrics
                .iter()
                .find(|x| x.key == "pull_multilayer.median")
                .map(|x| x.value / floor_ms)
        };
        let pos = rows
            .iter()
            .position(|r| r.key == "pull_multilayer.median")
            .map(|p| p + 1)
            .unwrap_or(rows.len());
        let (oa, ob) = (over(a), over(b));
        rows.insert(
            pos,
            Row {
                key: "pull_multilayer.over_floor".to_string(),
                label: format!("  multilayer pull / tar floor ({floor_ms:.0} ms)"),
                unit: "x".to_string(),
                a: oa,
                b: ob,
                ratio: ratio(oa, ob),
            },
        );
    }
    rows
}

fn fmt_value(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "-".to_string(),
        Some(v) => match unit {
            "ms" if v >= 100.0 => format!("{v:.0} ms"),
            "ms" => format!("{v:.1} ms"),
            "MiB" => format!("{v:.1} MiB"),
            "count" => format!("{v:.0}"),
            "x" => format!("{v:.1}x"),
            _ => format!("{v:.2} {unit}"),
        },
    }
}

/// The plain-text table.
pub fn table(a: &str, b: &str, rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:>12}  {:>12}  {:>8}",
        "metric",
        a,
        b,
        format!("{a}/{b}")
    );
    let _ = writeln!(out, "{}", "-".repeat(width + 38));
    for r in rows {
        let ratio = r
            .ratio
            .map(|x| format!("{x:.2}"))
            .unwrap_or_else(|| "-".to_string());
        let _ = writeln!(
            out,
            "{:<width$}  {:>12}  {:>12}  {:>8}",
            r.label,
            fmt_value(r.a, &r.unit),
            fmt_value(r.b, &r.unit),
            ratio
        );
    }
    out
}

/// Medians (ms) per operation from a critest -benchmark output dir: every `*.json` with
/// `operationsNames` and `datapoints[].operationsDurationsNs` (the lifecycle benchmarks),
/// keyed "file: operation".
pub fn critest_medians(dir: &Path) -> BTreeMap<String, f64> {
    let mut medians = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return medians;
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("?")
            .trim_end_matches("_benchmark_data")
            .to_string();
        for (op, samples) in critest_series(&json) {
            if let Some(s) = summarize(&samples) {
                medians.insert(format!("{stem}: {op}"), s.median);
            }
        }
    }
    medians
}

/// A field of a critest result, in critest 1.32's camelCase or in Go's default
/// capitalized spelling.
fn field<'a>(json: &'a serde_json::Value, camel: &str) -> &'a serde_json::Value {
    let value = &json[camel];
    if !value.is_null() {
        return value;
    }
    let mut chars = camel.chars();
    let capitalized = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
        None => String::new(),
    };
    &json[capitalized.as_str()]
}

/// (operation, samples in ms) from one critest result file; "whole" is each datapoint's
/// end minus start.
fn critest_series(json: &serde_json::Value) -> Vec<(String, Vec<f64>)> {
    let names: Vec<String> = field(json, "operationsNames")
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| n.as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default();
    let Some(points) = field(json, "datapoints").as_array() else {
        return Vec::new();
    };
    let mut series: Vec<(String, Vec<f64>)> =
        names.iter().map(|n| (n.clone(), Vec::new())).collect();
    let mut whole = Vec::new();
    for p in points {
        if let Some(durations) = field(p, "operationsDurationsNs").as_array() {
            for (i, d) in durations.iter().enumerate() {
                if let (Some(slot), Some(ns)) = (series.get_mut(i), d.as_f64()) {
                    slot.1.push(ns / 1e6);
                }
            }
        }
        if let (Some(s), Some(e)) = (field(p, "startTime").as_f64(), field(p, "endTime").as_f64()) {
            if e > s {
                whole.push((e - s) / 1e6);
            }
        }
    }
    if !whole.is_empty() {
        series.push(("whole".to_string(), whole));
    }
    series
}

fn load<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a result file", path.display()))
}

/// Reads the runs, prints the table, writes summary.json and table.txt into the results dir.
pub fn run(args: &ReportArgs) -> anyhow::Result<Summary> {
    let a: RunResult = load(&args.results.join(format!("{}.json", args.a)))?;
    let b: RunResult = load(&args.results.join(format!("{}.json", args.b)))?;
    let floor_path = args.results.join("floor.json");
    let floor: Option<FloorResult> = if floor_path.exists() {
        Some(load(&floor_path)?)
    } else {
        None
    };
    let rows = compare(&a, &b, floor.as_ref());
    let ca = critest_medians(&args.results.join(format!("critest-{}", args.a)));
    let cb = critest_medians(&args.results.join(format!("critest-{}", args.b)));
    let mut critest = Vec::new();
    for key in ca.keys().chain(cb.keys()) {
        if critest.iter().any(|r: &Row| &r.key == key) {
            continue;
        }
        let (va, vb) = (ca.get(key).copied(), cb.get(key).copied());
        critest.push(Row {
            key: key.clone(),
            label: key.clone(),
            unit: "ms".to_string(),
            a: va,
            b: vb,
            ratio: ratio(va, vb),
        });
    }

    let mut text = table(&args.a, &args.b, &rows);
    let _ = writeln!(
        text,
        "\n{}: {} {}; {}: {} {}",
        args.a, a.runtime_name, a.runtime_version, args.b, b.runtime_name, b.runtime_version
    );
    if let Some(f) = &floor {
        let _ = writeln!(
            text,
            "tar floor: {:.0} ms median over {} unpacks of {} layers ({:.1} MB compressed): {}",
            f.median_ms,
            f.samples.len(),
            f.layers.len(),
            f.layers.iter().map(|l| l.size).sum::<u64>() as f64 / 1e6,
            f.method
        );
    }
    for run in [&a, &b] {
        for note in &run.notes {
            let _ = writeln!(text, "note ({}): {note}", run.name);
        }
        for err in &run.errors {
            let _ = writeln!(text, "FAILED ({}): {err}", run.name);
        }
    }
    if !critest.is_empty() {
        let _ = writeln!(text, "\ncritest -benchmark medians:");
        text.push_str(&table(&args.a, &args.b, &critest));
        let _ = writeln!(
            text,
            "note: critest's image_lifecycle removes its image by tag. A runtime that only \
             untags while another tag still names the image (crius, as CRI-O) re-pulls just \
             the manifest, one that deletes the image (containerd) downloads it again: \
             compare pulls in the table above, which remove by image id."
        );
    }
    print!("{text}");
    std::fs::write(args.results.join("table.txt"), &text)?;
    let summary = Summary {
        a: args.a.clone(),
        b: args.b.clone(),
        rows,
        critest,
        floor,
        runs: vec![a, b],
    };
    std::fs::write(
        args.results.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Metric;

    fn run(name: &str, metrics: &[(&str, f64)]) -> RunResult {
        RunResult {
            name: name.to_string(),
            metrics: metrics
                .iter()
                .map(|(k, v)| Metric {
                    key: k.to_string(),
                    label: k.to_string(),
                    unit: "ms".to_string(),
                    value: *v,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn rows_pair_metrics_and_divide() {
        let a = run("a", &[("x", 10.0), ("only_a", 1.0)]);
        let b = run("b", &[("x", 40.0), ("only_b", 2.0)]);
        let rows = compare(&a, &b, None);
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, vec!["x", "only_a", "only_b"]);
        assert_eq!(rows[0].ratio, Some(0.25));
        assert_eq!(rows[1].b, None);
        assert_eq!(rows[1].ratio, None);
        assert_eq!(rows[2].a, None);
    }

    #[test]
    fn zero_denominator_has_no_ratio() {
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
    }

    #[test]
    fn floor_row_follows_the_pull_row() {
        let a = run("a", &[("pull_multilayer.median", 300.0), ("y", 1.0)]);
        let b = run("b", &[("pull_multilayer.median", 600.0), ("y", 1.0)]);
        let floor = FloorResult {
            oci_layout: PathBuf::new(),
            layers: Vec::new(),
            samples: vec![150.0],
            median_ms: 150.0,
            method: String::new(),
        };
        let rows = compare(&a, &b, Some(&floor));
        assert_eq!(rows[1].key, "pull_multilayer.over_floor");
        assert_eq!(rows[1].a, Some(2.0));
        assert_eq!(rows[1].b, Some(4.0));
        assert_eq!(rows[1].ratio, Some(0.5));
    }

    #[test]
    fn table_shows_values_with_units_and_dashes() {
        let rows = vec![Row {
            key: "k".to_string(),
            label: "RunPodSandbox median".to_string(),
            unit: "ms".to_string(),
            a: Some(12.34),
            b: None,
            ratio: None,
        }];
        let text = table("crius", "containerd", &rows);
        assert!(text.contains("crius/containerd"), "{text}");
        let line = text.lines().nth(2).unwrap();
        assert!(line.starts_with("RunPodSandbox median"), "{line}");
        assert!(line.contains("12.3 ms"), "{line}");
        assert!(line.trim_end().ends_with('-'), "{line}");
    }

    #[test]
    fn critest_files_give_medians_per_operation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("pod_benchmark_data.json"),
            r#"{"OperationsNames":["Create","Stop"],
                "Datapoints":[
                  {"StartTime":0,"EndTime":3000000,"OperationsDurationsNs":[1000000,2000000]},
                  {"StartTime":0,"EndTime":5000000,"OperationsDurationsNs":[3000000,2000000]},
                  {"StartTime":0,"EndTime":4000000,"OperationsDurationsNs":[2000000,4000000]}]}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("image_listing_benchmark_data.json"),
            r#"{"operationsNames":["ListImages"],"numParallel":1,
                "datapoints":[
                  {"sampleIndex":0,"startTime":10,"endTime":1000010,"operationsDurationsNs":[1000000],"metaInfo":null},
                  {"sampleIndex":1,"startTime":10,"endTime":3000010,"operationsDurationsNs":[3000000],"metaInfo":null}]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("junk.json"), "not json").unwrap();
        let m = critest_medians(dir.path());
        assert_eq!(m.get("pod: Create"), Some(&2.0));
        assert_eq!(m.get("pod: Stop"), Some(&2.0));
        assert_eq!(m.get("pod: whole"), Some(&4.0));
        assert_eq!(m.get("image_listing: ListImages"), Some(&2.0));
        assert_eq!(m.get("image_listing: whole"), Some(&2.0));
        assert_eq!(m.len(), 5);
    }
}

//! Puts runs side by side: plain-text tables (metric, one column per run, one ratio column
//! per compared pair) and one JSON file with every run, the ratios, the tar floor and
//! critest's own medians.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::bench::RunResult;
use crate::floor::FloorResult;
use crate::stats::summarize;

/// Which files to compare.
#[derive(Clone, Debug, clap::Args)]
pub struct ReportArgs {
    /// Dir holding NAME.json per run and, when present, floor.json and critest-NAME/.
    #[arg(long)]
    pub results: PathBuf,
    /// One table: comma-separated pairs A:B (A in the numerator of the ratio), e.g.
    /// `crius:containerd-1.6,crius-runc15:containerd-2.4`. Repeat for more tables. A pair
    /// whose result files are missing is left out with a note.
    #[arg(long = "table", required = true)]
    pub tables: Vec<String>,
}

/// Two runs compared: the ratio is a / b.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    /// The numerator's run name.
    pub a: String,
    /// The denominator's run name.
    pub b: String,
}

/// One row of a table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    /// The metric's key.
    pub key: String,
    /// What it measures.
    pub label: String,
    /// Its unit.
    pub unit: String,
    /// The figure of each run of the table's columns, in their order (None: not measured).
    pub values: Vec<Option<f64>>,
    /// a / b per pair of the table, when both exist and b is not 0.
    pub ratios: Vec<Option<f64>>,
}

/// One table: its runs (columns), the pairs it divides, its rows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Table {
    /// Run names, in column order: each pair's a then b.
    pub columns: Vec<String>,
    /// The compared pairs.
    pub pairs: Vec<Pair>,
    /// Our series.
    pub rows: Vec<Row>,
    /// critest -benchmark medians, when it ran for these runs.
    pub critest: Vec<Row>,
}

/// The whole comparison, as written to summary.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// The tables, in the order printed.
    pub tables: Vec<Table>,
    /// The tar floor under the pull series, when measured.
    pub floor: Option<FloorResult>,
    /// Every raw run that was found.
    pub runs: Vec<RunResult>,
    /// Pairs left out (a result file missing), and why.
    pub missing: Vec<String>,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

/// Parses `A:B,C:D` into pairs.
pub fn parse_pairs(spec: &str) -> anyhow::Result<Vec<Pair>> {
    spec.split(',')
        .map(|p| match p.trim().split_once(':') {
            Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok(Pair {
                a: a.to_string(),
                b: b.to_string(),
            }),
            _ => bail!("{p:?} in --table {spec:?} is not A:B"),
        })
        .collect()
}

/// The columns of a table: each pair's a and b, each run once, in first-seen order.
fn columns(pairs: &[Pair]) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    for name in pairs.iter().flat_map(|p| [&p.a, &p.b]) {
        if !cols.contains(name) {
            cols.push(name.clone());
        }
    }
    cols
}

/// A row from one value per column, with the pairs' ratios.
fn row(
    key: &str,
    label: &str,
    unit: &str,
    cols: &[String],
    pairs: &[Pair],
    values: Vec<Option<f64>>,
) -> Row {
    let value_of = |name: &str| cols.iter().position(|c| c == name).and_then(|i| values[i]);
    let ratios = pairs
        .iter()
        .map(|p| ratio(value_of(&p.a), value_of(&p.b)))
        .collect();
    Row {
        key: key.to_string(),
        label: label.to_string(),
        unit: unit.to_string(),
        values,
        ratios,
    }
}

/// Rows for every metric of any run of the table, in the order the runs list them (the
/// first run's order first), with the multilayer pull over the tar floor after its row.
pub fn compare(runs: &[&RunResult], pairs: &[Pair], floor: Option<&FloorResult>) -> Table {
    let cols = columns(pairs);
    let run_of = |name: &str| runs.iter().find(|r| r.name == name).copied();
    let value = |name: &str, key: &str| {
        run_of(name)
            .and_then(|run| run.metrics.iter().find(|x| x.key == key))
            .map(|x| x.value)
    };
    let mut rows: Vec<Row> = Vec::new();
    for m in cols
        .iter()
        .filter_map(|c| run_of(c))
        .flat_map(|run| run.metrics.iter())
    {
        if rows.iter().any(|r| r.key == m.key) {
            continue;
        }
        let values = cols.iter().map(|c| value(c, &m.key)).collect();
        rows.push(row(&m.key, &m.label, &m.unit, &cols, pairs, values));
    }
    if let Some(floor) = floor {
        if let Some(pos) = rows.iter().position(|r| r.key == "pull_multilayer.median") {
            let floor_ms = floor.median_ms;
            let values = rows[pos]
                .values
                .iter()
                .map(|v| v.map(|v| v / floor_ms))
                .collect();
            let label = format!("  multilayer pull / tar floor ({floor_ms:.0} ms)");
            rows.insert(
                pos + 1,
                row(
                    "pull_multilayer.over_floor",
                    &label,
                    "x",
                    &cols,
                    pairs,
                    values,
                ),
            );
        }
    }
    Table {
        columns: cols,
        pairs: pairs.to_vec(),
        rows,
        critest: Vec::new(),
    }
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

/// The plain-text table: the label, each run's figure, then each pair's ratio.
pub fn table(columns: &[String], pairs: &[Pair], rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    let col_width = |name: &str| name.chars().count().max(10);
    let ratio_names: Vec<String> = pairs.iter().map(|p| format!("{}/{}", p.a, p.b)).collect();
    let mut out = String::new();
    let _ = write!(out, "{:<width$}", "metric");
    for c in columns {
        let _ = write!(out, "  {:>w$}", c, w = col_width(c));
    }
    for r in &ratio_names {
        let _ = write!(out, "  {:>w$}", r, w = col_width(r));
    }
    out.push('\n');
    let total = width
        + columns.iter().map(|c| col_width(c) + 2).sum::<usize>()
        + ratio_names.iter().map(|r| col_width(r) + 2).sum::<usize>();
    let _ = writeln!(out, "{}", "-".repeat(total));
    for r in rows {
        let _ = write!(out, "{:<width$}", r.label);
        for (c, v) in columns.iter().zip(&r.values) {
            let _ = write!(out, "  {:>w$}", fmt_value(*v, &r.unit), w = col_width(c));
        }
        for (name, x) in ratio_names.iter().zip(&r.ratios) {
            let text = x
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "-".to_string());
            let _ = write!(out, "  {:>w$}", text, w = col_width(name));
        }
        out.push('\n');
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

/// Reads the runs, prints the tables, writes summary.json and table.txt into the results dir.
pub fn run(args: &ReportArgs) -> anyhow::Result<Summary> {
    let floor_path = args.results.join("floor.json");
    let floor: Option<FloorResult> = if floor_path.exists() {
        Some(load(&floor_path)?)
    } else {
        None
    };
    let mut runs: Vec<RunResult> = Vec::new();
    let mut missing = Vec::new();
    let mut specs = Vec::new();
    for spec in &args.tables {
        let mut pairs = Vec::new();
        for pair in parse_pairs(spec)? {
            let mut ok = true;
            for name in [&pair.a, &pair.b] {
                if runs.iter().any(|r| &r.name == name) {
                    continue;
                }
                let path = args.results.join(format!("{name}.json"));
                if path.exists() {
                    runs.push(load(&path)?);
                } else {
                    missing.push(format!("{}:{}: no {}", pair.a, pair.b, path.display()));
                    ok = false;
                }
            }
            if ok {
                pairs.push(pair);
            }
        }
        if !pairs.is_empty() {
            specs.push(pairs);
        }
    }
    if specs.is_empty() {
        bail!(
            "no pair to compare in {}: {}",
            args.results.display(),
            missing.join("; ")
        );
    }

    let mut text = String::new();
    let mut tables = Vec::new();
    for pairs in specs {
        let table_runs: Vec<&RunResult> = columns(&pairs)
            .iter()
            .filter_map(|c| runs.iter().find(|r| &r.name == c))
            .collect();
        let mut t = compare(&table_runs, &pairs, floor.as_ref());
        let medians: Vec<BTreeMap<String, f64>> = t
            .columns
            .iter()
            .map(|c| critest_medians(&args.results.join(format!("critest-{c}"))))
            .collect();
        for key in medians.iter().flat_map(|m| m.keys()) {
            if t.critest.iter().any(|r| &r.key == key) {
                continue;
            }
            let values = medians.iter().map(|m| m.get(key).copied()).collect();
            t.critest
                .push(row(key, key, "ms", &t.columns, &t.pairs, values));
        }
        text.push_str(&table(&t.columns, &t.pairs, &t.rows));
        for run in &table_runs {
            let _ = writeln!(
                text,
                "{}: {} {}",
                run.name, run.runtime_name, run.runtime_version
            );
        }
        if !t.critest.is_empty() {
            let _ = writeln!(text, "\ncritest -benchmark medians:");
            text.push_str(&table(&t.columns, &t.pairs, &t.critest));
            let _ = writeln!(
                text,
                "note: critest's image_lifecycle removes its image by tag. A runtime that only \
                 untags while another tag still names the image (crius, as CRI-O) re-pulls \
                 just the manifest, one that deletes the image (containerd) downloads it \
                 again: compare pulls in the table above, which remove by image id."
            );
        }
        text.push('\n');
        tables.push(t);
    }
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
    for run in &runs {
        for note in &run.notes {
            let _ = writeln!(text, "note ({}): {note}", run.name);
        }
        for err in &run.errors {
            let _ = writeln!(text, "FAILED ({}): {err}", run.name);
        }
    }
    for m in &missing {
        let _ = writeln!(text, "left out: {m}");
    }
    print!("{text}");
    std::fs::write(args.results.join("table.txt"), &text)?;
    let summary = Summary {
        tables,
        floor,
        runs,
        missing,
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

    fn pairs(spec: &str) -> Vec<Pair> {
        parse_pairs(spec).unwrap()
    }

    #[test]
    fn rows_pair_metrics_and_divide() {
        let a = run("a", &[("x", 10.0), ("only_a", 1.0)]);
        let b = run("b", &[("x", 40.0), ("only_b", 2.0)]);
        let t = compare(&[&a, &b], &pairs("a:b"), None);
        let keys: Vec<&str> = t.rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, vec!["x", "only_a", "only_b"]);
        assert_eq!(t.rows[0].ratios, vec![Some(0.25)]);
        assert_eq!(t.rows[1].values, vec![Some(1.0), None]);
        assert_eq!(t.rows[1].ratios, vec![None]);
        assert_eq!(t.rows[2].values, vec![None, Some(2.0)]);
    }

    #[test]
    fn two_pairs_share_rows_and_each_gets_its_ratio() {
        let a = run("crius", &[("x", 10.0)]);
        let b = run("old", &[("x", 20.0)]);
        let c = run("crius-new", &[("x", 12.0)]);
        let d = run("new", &[("x", 48.0)]);
        let t = compare(&[&a, &b, &c, &d], &pairs("crius:old,crius-new:new"), None);
        assert_eq!(t.columns, vec!["crius", "old", "crius-new", "new"]);
        assert_eq!(t.rows.len(), 1);
        assert_eq!(
            t.rows[0].values,
            vec![Some(10.0), Some(20.0), Some(12.0), Some(48.0)]
        );
        assert_eq!(t.rows[0].ratios, vec![Some(0.5), Some(0.25)]);
        // A run in two pairs is one column.
        let t = compare(&[&a, &b, &d], &pairs("crius:old,crius:new"), None);
        assert_eq!(t.columns, vec!["crius", "old", "new"]);
        assert_eq!(t.rows[0].ratios, vec![Some(0.5), Some(10.0 / 48.0)]);
    }

    #[test]
    fn bad_pairs_are_refused() {
        assert!(parse_pairs("a").is_err());
        assert!(parse_pairs("a:b,:c").is_err());
        assert_eq!(pairs(" a:b ,c:d").len(), 2);
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
        let t = compare(&[&a, &b], &pairs("a:b"), Some(&floor));
        assert_eq!(t.rows[1].key, "pull_multilayer.over_floor");
        assert_eq!(t.rows[1].values, vec![Some(2.0), Some(4.0)]);
        assert_eq!(t.rows[1].ratios, vec![Some(0.5)]);
        // No pull series (the kubelet's runs): no floor row.
        let t = compare(&[&run("k", &[("y", 1.0)])], &pairs("k:k"), Some(&floor));
        assert_eq!(t.rows.len(), 1);
    }

    #[test]
    fn table_shows_values_with_units_and_dashes() {
        let p = pairs("crius:containerd");
        let cols = columns(&p);
        let rows = vec![row(
            "k",
            "RunPodSandbox median",
            "ms",
            &cols,
            &p,
            vec![Some(12.34), None],
        )];
        let text = table(&cols, &p, &rows);
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

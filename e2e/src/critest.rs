//! critest's results against an expected-results file kept in the repository
//! (`e2e/critest/expected-*.txt`): reading Ginkgo's JUnit report, reading the file, and
//! the comparison CI acts on. A spec that the file says passes and that does not pass now
//! is a regression; a spec listed as failing or skipped that passes now is reported so the
//! file can be updated.
//!
//! The file has one entry per spec, its state and its full name, and for a spec expected
//! to fail or to skip the reason on the next, indented line:
//!
//! ```text
//! # comments and blank lines are ignored
//! pass [k8s.io] Container runtime should support basic operations ... [Conformance]
//! fail [k8s.io] Image Manager public image with digest should be pulled and removed [Conformance] [Serial]
//!      reason: the image critest pins by digest cannot be rebuilt offline
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use anyhow::{anyhow, bail, Context};

/// What became of one spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Passed,
    Failed,
    Skipped,
}

impl Outcome {
    fn keyword(self) -> &'static str {
        match self {
            Outcome::Passed => "pass",
            Outcome::Failed => "fail",
            Outcome::Skipped => "skip",
        }
    }

    fn from_keyword(word: &str) -> Option<Outcome> {
        match word {
            "pass" => Some(Outcome::Passed),
            "fail" => Some(Outcome::Failed),
            "skip" => Some(Outcome::Skipped),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        })
    }
}

/// One spec of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecResult {
    /// The spec's full text, without Ginkgo's `[It] ` prefix.
    pub name: String,
    pub outcome: Outcome,
    /// The failure's or the skip's message, when the report has one.
    pub message: String,
}

/// A run read from Ginkgo's JUnit report: the specs, and the suite-level nodes
/// (`[BeforeSuite]` and the like), which are not specs but fail the whole run when they fail.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub specs: Vec<SpecResult>,
    pub suite_nodes: Vec<SpecResult>,
}

/// Reads a JUnit report as Ginkgo writes it (`-ginkgo.junit-report`): every `testcase`
/// has a `status` of passed, failed, skipped or pending; specs are named `[It] TEXT`.
pub fn parse_junit(xml: &str) -> anyhow::Result<Report> {
    let doc = roxmltree::Document::parse(xml).context("the JUnit report is not XML")?;
    let mut report = Report::default();
    for case in doc.descendants().filter(|n| n.has_tag_name("testcase")) {
        let full = case
            .attribute("name")
            .ok_or_else(|| anyhow!("a testcase has no name"))?;
        let child_message = |tag: &str| {
            case.children()
                .find(|c| c.has_tag_name(tag))
                .map(|c| c.attribute("message").unwrap_or("").to_string())
        };
        let (outcome, message) = match case.attribute("status") {
            Some("passed") => (Outcome::Passed, String::new()),
            Some("skipped" | "pending") => (
                Outcome::Skipped,
                child_message("skipped").unwrap_or_default(),
            ),
            // Ginkgo writes failed, panicked, interrupted, aborted, timedout.
            Some(_) => (
                Outcome::Failed,
                child_message("failure")
                    .or_else(|| child_message("error"))
                    .unwrap_or_default(),
            ),
            None => bail!("testcase {full:?} has no status"),
        };
        match full.strip_prefix("[It] ") {
            Some(name) => report.specs.push(SpecResult {
                name: name.to_string(),
                outcome,
                message,
            }),
            None => report.suite_nodes.push(SpecResult {
                name: full.to_string(),
                outcome,
                message,
            }),
        }
    }
    if report.specs.is_empty() {
        bail!("the JUnit report holds no spec");
    }
    Ok(report)
}

/// One entry of the expected-results file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedSpec {
    pub outcome: Outcome,
    /// Why the spec fails or skips (required for `fail`).
    pub reason: String,
}

/// The expected-results file, by spec name.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    pub specs: BTreeMap<String, ExpectedSpec>,
}

/// Reads the expected-results file (format in the module's doc).
pub fn parse_expected(text: &str) -> anyhow::Result<Expected> {
    let mut expected = Expected::default();
    let mut last: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            let reason = trimmed
                .strip_prefix("reason:")
                .ok_or_else(|| anyhow!("line {lineno}: an indented line must be `reason: ...`"))?
                .trim();
            let name = last
                .as_ref()
                .ok_or_else(|| anyhow!("line {lineno}: a reason before any spec"))?;
            let entry = expected.specs.get_mut(name).expect("the last entry exists");
            if !entry.reason.is_empty() {
                bail!("line {lineno}: a second reason for {name:?}");
            }
            entry.reason = reason.to_string();
            continue;
        }
        let (word, name) = trimmed
            .split_once(' ')
            .ok_or_else(|| anyhow!("line {lineno}: expected `pass|fail|skip SPEC`"))?;
        let outcome = Outcome::from_keyword(word)
            .ok_or_else(|| anyhow!("line {lineno}: unknown state {word:?} (pass, fail or skip)"))?;
        let name = name.trim().to_string();
        let entry = ExpectedSpec {
            outcome,
            reason: String::new(),
        };
        if expected.specs.insert(name.clone(), entry).is_some() {
            bail!("line {lineno}: {name:?} is listed twice");
        }
        last = Some(name);
    }
    for (name, entry) in &expected.specs {
        if entry.outcome == Outcome::Failed && entry.reason.is_empty() {
            bail!("{name:?} is expected to fail but has no `reason:` line");
        }
    }
    Ok(expected)
}

/// One thing that fails the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Regression {
    /// The spec, when it ran and did not pass (a rerun of it may clear it).
    pub spec: Option<String>,
    /// What to print.
    pub line: String,
}

/// What a run means against the expected results.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    /// What fails the run: specs expected to pass that did not, specs that fail without
    /// being listed as failing, failed suite nodes.
    pub regressions: Vec<Regression>,
    /// Specs that did not pass, then passed when run again on their own.
    pub flaky: Vec<String>,
    /// Specs listed as failing or skipped that pass now, and new specs that pass: the
    /// file can be updated.
    pub improvements: Vec<String>,
    /// Everything else worth a line: listed specs the run did not have, failures whose
    /// spec was already listed as failing, skips that changed.
    pub notes: Vec<String>,
}

impl Comparison {
    /// The summary line CI prints, e.g. `critest: 97 passed, 1 failed, 20 skipped`.
    pub fn summary(&self, label: &str) -> String {
        format!(
            "{label}: {} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }

    /// The specs whose regression a rerun may clear (they ran and did not pass).
    pub fn rerunnable(&self) -> Vec<String> {
        self.regressions
            .iter()
            .filter_map(|r| r.spec.clone())
            .collect()
    }

    /// Takes a rerun of [`Self::rerunnable`] into account: a spec that passed in it is no
    /// longer a regression but flaky. The counts stay those of the first run.
    pub fn apply_rerun(&mut self, rerun: &Report) {
        let passed: BTreeSet<&str> = rerun
            .specs
            .iter()
            .filter(|s| s.outcome == Outcome::Passed)
            .map(|s| s.name.as_str())
            .collect();
        let mut kept = Vec::new();
        for r in self.regressions.drain(..) {
            match &r.spec {
                Some(name) if passed.contains(name.as_str()) => self
                    .flaky
                    .push(format!("{}; it passed when run again", r.line)),
                _ => kept.push(r),
            }
        }
        self.regressions = kept;
    }
}

/// A `-ginkgo.focus` expression matching exactly the spec `name` (Go's RE2 syntax).
pub fn focus_on(name: &str) -> String {
    let mut re = String::from("^");
    for c in name.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            re.push('\\');
        }
        re.push(c);
    }
    re.push('$');
    re
}

/// Compares a run with the expected results. With `partial` (a focused run) skipped specs
/// and listed specs missing from the run are not reported.
pub fn compare(expected: &Expected, report: &Report, partial: bool) -> Comparison {
    let mut c = Comparison::default();
    for node in &report.suite_nodes {
        if node.outcome == Outcome::Failed {
            c.regressions.push(Regression {
                spec: None,
                line: format!("{} failed: {}", node.name, first_line(&node.message)),
            });
        }
    }
    let mut seen = BTreeSet::new();
    for spec in &report.specs {
        seen.insert(spec.name.as_str());
        match spec.outcome {
            Outcome::Passed => c.passed += 1,
            Outcome::Failed => c.failed += 1,
            Outcome::Skipped => c.skipped += 1,
        }
        let want = expected.specs.get(&spec.name);
        match (want.map(|w| w.outcome), spec.outcome) {
            (Some(w), now) if w == now => {}
            // A focused run reports what it left out as skipped.
            (_, Outcome::Skipped) if partial => {}
            (Some(Outcome::Passed), now) => c.regressions.push(Regression {
                spec: Some(spec.name.clone()),
                line: format!(
                    "{} {now} (expected to pass){}",
                    spec.name,
                    detail(&spec.message)
                ),
            }),
            (_, Outcome::Failed) => c.regressions.push(Regression {
                spec: Some(spec.name.clone()),
                line: format!(
                    "{} failed ({}){}",
                    spec.name,
                    match want {
                        Some(_) => "expected to skip",
                        None => "not in the expected results",
                    },
                    detail(&spec.message)
                ),
            }),
            (Some(w), Outcome::Passed) => c.improvements.push(format!(
                "{} passes now (listed as {w}: {})",
                spec.name,
                want.map(|w| w.reason.as_str()).unwrap_or_default()
            )),
            (None, Outcome::Passed) => c.improvements.push(format!(
                "{} passes (not in the expected results)",
                spec.name
            )),
            (Some(w), Outcome::Skipped) => c.notes.push(format!(
                "{} skipped (listed as {w}){}",
                spec.name,
                detail(&spec.message)
            )),
            (None, Outcome::Skipped) => c.notes.push(format!(
                "{} skipped (not in the expected results){}",
                spec.name,
                detail(&spec.message)
            )),
        }
    }
    if !partial {
        for (name, want) in &expected.specs {
            if !seen.contains(name.as_str()) {
                let line = format!("{name} did not run (listed as {})", want.outcome);
                if want.outcome == Outcome::Passed {
                    c.regressions.push(Regression { spec: None, line });
                } else {
                    c.notes.push(line);
                }
            }
        }
    }
    c
}

/// The expected-results file for `report`, specs in name order (critest runs them in a
/// random order), keeping the reasons of `old` where a spec's state is unchanged (else the
/// report's message, or a placeholder to fill in), under `header`.
pub fn render_expected(header: &str, report: &Report, old: &Expected) -> String {
    let mut out = String::new();
    for line in header.lines() {
        out.push_str(line);
        out.push('\n');
    }
    let mut specs: Vec<&SpecResult> = report.specs.iter().collect();
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    for spec in specs {
        out.push_str(spec.outcome.keyword());
        out.push(' ');
        out.push_str(&spec.name);
        out.push('\n');
        let kept = old
            .specs
            .get(&spec.name)
            .filter(|w| w.outcome == spec.outcome && !w.reason.is_empty())
            .map(|w| w.reason.clone());
        let reason = match (spec.outcome, kept) {
            (_, Some(reason)) => Some(reason),
            (Outcome::Passed, None) => None,
            (_, None) if !spec.message.is_empty() => Some(first_line(&spec.message).to_string()),
            (_, None) => Some("FILL IN".to_string()),
        };
        if let Some(reason) = reason {
            out.push_str("     reason: ");
            out.push_str(&reason);
            out.push('\n');
        }
    }
    out
}

fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

fn detail(message: &str) -> String {
    match first_line(message) {
        "" => String::new(),
        line => format!(": {line}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JUNIT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="5" disabled="1" errors="0" failures="1" time="3.1">
  <testsuite name="CRI validation" tests="5" skipped="1" failures="1">
    <testcase name="[BeforeSuite]" classname="CRI validation" status="passed" time="0.1"></testcase>
    <testcase name="[It] [k8s.io] A should pass [Conformance]" classname="CRI validation" status="passed" time="1"></testcase>
    <testcase name="[It] [k8s.io] B Uid|Username should fail" classname="CRI validation" status="failed" time="1">
      <failure message="[FAILED] failed to pull image&#xA;more" type="failed">details</failure>
    </testcase>
    <testcase name="[It] [k8s.io] C should skip" classname="CRI validation" status="skipped" time="0">
      <skipped message="skipped - AppArmor is disabled on this host"></skipped>
    </testcase>
    <testcase name="[It] [k8s.io] D timed out" classname="CRI validation" status="timedout" time="0">
      <failure message="timed out" type="timedout"></failure>
    </testcase>
  </testsuite>
</testsuites>"#;

    fn report() -> Report {
        parse_junit(JUNIT).unwrap()
    }

    #[test]
    fn junit_specs_suite_nodes_and_messages() {
        let r = report();
        assert_eq!(r.suite_nodes.len(), 1);
        assert_eq!(r.suite_nodes[0].name, "[BeforeSuite]");
        let got: Vec<(&str, Outcome)> = r
            .specs
            .iter()
            .map(|s| (s.name.as_str(), s.outcome))
            .collect();
        assert_eq!(
            got,
            [
                ("[k8s.io] A should pass [Conformance]", Outcome::Passed),
                ("[k8s.io] B Uid|Username should fail", Outcome::Failed),
                ("[k8s.io] C should skip", Outcome::Skipped),
                ("[k8s.io] D timed out", Outcome::Failed),
            ]
        );
        assert_eq!(r.specs[1].message, "[FAILED] failed to pull image\nmore");
        assert_eq!(
            r.specs[2].message,
            "skipped - AppArmor is disabled on this host"
        );
    }

    #[test]
    fn junit_without_specs_or_broken_is_an_error() {
        assert!(parse_junit("<testsuites></testsuites>").is_err());
        assert!(parse_junit("<testsuites>").is_err());
        assert!(parse_junit(r#"<testsuites><testcase name="[It] x"/></testsuites>"#).is_err());
    }

    #[test]
    fn expected_file_entries_and_reasons() {
        let e = parse_expected(
            "# header\n\npass [k8s.io] A\nfail [k8s.io] B Uid|Username\n     reason: offline\nskip [k8s.io] C\n",
        )
        .unwrap();
        assert_eq!(e.specs.len(), 3);
        assert_eq!(e.specs["[k8s.io] B Uid|Username"].reason, "offline");
        assert_eq!(e.specs["[k8s.io] C"].outcome, Outcome::Skipped);
    }

    #[test]
    fn expected_file_errors_name_the_line() {
        for (text, needle) in [
            ("fail [k8s.io] B\n", "no `reason:`"),
            ("maybe [k8s.io] B\n", "line 1: unknown state"),
            ("pass A\npass A\n", "line 2: \"A\" is listed twice"),
            ("  reason: x\n", "line 1: a reason before any spec"),
            ("pass A\n  because: x\n", "line 2: an indented line"),
            (
                "fail A\n  reason: x\n  reason: y\n",
                "line 3: a second reason",
            ),
            ("pass\n", "line 1: expected"),
        ] {
            let err = format!("{:#}", parse_expected(text).unwrap_err());
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_listed_pass_that_fails_is_a_regression() {
        let e = parse_expected(
            "pass [k8s.io] A should pass [Conformance]\npass [k8s.io] B Uid|Username should fail\n\
             skip [k8s.io] C should skip\nfail [k8s.io] D timed out\n  reason: slow\n",
        )
        .unwrap();
        let c = compare(&e, &report(), false);
        assert_eq!((c.passed, c.failed, c.skipped), (1, 2, 1));
        assert_eq!(c.regressions.len(), 1, "{:?}", c.regressions);
        assert!(c.regressions[0].line.starts_with("[k8s.io] B Uid|Username should fail failed (expected to pass): [FAILED] failed to pull image"));
        assert_eq!(c.rerunnable(), ["[k8s.io] B Uid|Username should fail"]);
        assert!(c.improvements.is_empty());
        assert_eq!(
            c.summary("critest"),
            "critest: 1 passed, 2 failed, 1 skipped"
        );
    }

    #[test]
    fn unlisted_failures_fail_and_newly_passing_specs_are_reported() {
        let e = parse_expected(
            "fail [k8s.io] A should pass [Conformance]\n  reason: was broken\nskip [k8s.io] C should skip\n\
             pass [k8s.io] E gone\nskip [k8s.io] F gone too\n",
        )
        .unwrap();
        let c = compare(&e, &report(), false);
        let joined: Vec<&str> = c.regressions.iter().map(|r| r.line.as_str()).collect();
        let joined = joined.join("\n");
        assert!(joined.contains("B Uid|Username should fail failed (not in the expected results)"));
        assert!(joined.contains("D timed out failed (not in the expected results): timed out"));
        assert!(joined.contains("E gone did not run (listed as passed)"));
        assert_eq!(c.regressions.len(), 3);
        assert_eq!(
            c.improvements,
            ["[k8s.io] A should pass [Conformance] passes now (listed as failed: was broken)"]
        );
        assert_eq!(
            c.notes,
            ["[k8s.io] F gone too did not run (listed as skipped)"]
        );
        // A focused run does not miss the specs it did not select.
        let c = compare(&e, &report(), true);
        assert_eq!(c.regressions.len(), 2);
        let e = parse_expected("pass [k8s.io] C should skip\n").unwrap();
        assert!(
            compare(&e, &report(), true).regressions.len() == 2,
            "C skipped is no regression"
        );
    }

    #[test]
    fn a_failed_suite_node_is_a_regression() {
        let xml = JUNIT.replace(
            r#"name="[BeforeSuite]" classname="CRI validation" status="passed""#,
            r#"name="[BeforeSuite]" classname="CRI validation" status="failed""#,
        );
        let r = parse_junit(&xml).unwrap();
        let e = parse_expected("").unwrap();
        let c = compare(&e, &r, true);
        assert!(c.regressions[0].line.starts_with("[BeforeSuite] failed"));
        assert_eq!(c.regressions[0].spec, None, "a suite node is not rerun");
    }

    #[test]
    fn a_spec_that_passes_when_run_again_is_flaky_not_a_regression() {
        let e = parse_expected(
            "pass [k8s.io] B Uid|Username should fail\npass [k8s.io] D timed out\npass [k8s.io] E gone\n",
        )
        .unwrap();
        let mut c = compare(&e, &report(), false);
        assert_eq!(
            c.rerunnable(),
            [
                "[k8s.io] B Uid|Username should fail",
                "[k8s.io] D timed out"
            ]
        );
        // In the rerun B passes and D fails again.
        let rerun = JUNIT.replacen(r#"status="failed""#, r#"status="passed""#, 1);
        c.apply_rerun(&parse_junit(&rerun).unwrap());
        assert_eq!(c.flaky.len(), 1, "{:?}", c.flaky);
        assert!(c.flaky[0].starts_with("[k8s.io] B Uid|Username should fail failed"));
        let left: Vec<&str> = c.regressions.iter().map(|r| r.line.as_str()).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left[0].starts_with("[k8s.io] D timed out failed"));
        assert!(left[1].starts_with("[k8s.io] E gone did not run"));
        assert_eq!((c.passed, c.failed), (1, 2), "counts stay the first run's");
    }

    #[test]
    fn focus_matches_exactly_one_spec_name() {
        assert_eq!(
            focus_on("[k8s.io] a Uid|Username (x) 1.5 [Conformance]"),
            r"^\[k8s\.io\] a Uid\|Username \(x\) 1\.5 \[Conformance\]$"
        );
    }

    #[test]
    fn rendered_file_reads_back_with_kept_reasons() {
        let old =
            parse_expected("fail [k8s.io] D timed out\n  reason: the runner is slow\n").unwrap();
        let text = render_expected("# header", &report(), &old);
        let e = parse_expected(&text).unwrap();
        assert_eq!(e.specs.len(), 4);
        assert_eq!(e.specs["[k8s.io] D timed out"].reason, "the runner is slow");
        assert_eq!(
            e.specs["[k8s.io] B Uid|Username should fail"].reason,
            "[FAILED] failed to pull image"
        );
        assert_eq!(
            e.specs["[k8s.io] C should skip"].reason,
            "skipped - AppArmor is disabled on this host"
        );
        assert!(compare(&e, &report(), false).regressions.is_empty());
    }
}

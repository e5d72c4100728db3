//! Every input kept for a fuzz target, run through it on stable: the seeds and what the
//! fuzzer added under `fuzz/corpus/TARGET`, and each input that once crashed crius under
//! `fuzz/regressions/TARGET` (named for what it found). Each target must have seeds.

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn every_kept_input_runs_through_its_target_without_a_panic() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut report = Vec::new();
    for (name, body) in crius_fuzz::TARGETS {
        let seeds = inputs(&fuzz.join("corpus").join(name));
        let regressions = inputs(&fuzz.join("regressions").join(name));
        assert!(
            !seeds.is_empty(),
            "target {name} has no seeds in fuzz/corpus/{name}"
        );
        for file in seeds.iter().chain(&regressions) {
            let data = std::fs::read(file).unwrap();
            let result = std::panic::catch_unwind(|| body(&data));
            assert!(result.is_ok(), "{name}: {} panics", file.display());
        }
        report.push(format!(
            "{name}: {} seeds, {} regressions",
            seeds.len(),
            regressions.len()
        ));
    }
    crius_fuzz::layer::remove_scratch();
    println!("{}", report.join("\n"));
}

#[test]
fn every_target_has_a_cargo_fuzz_binary() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
    for (name, _) in crius_fuzz::TARGETS {
        let file = dir.join(format!("{name}.rs"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            text.contains(&format!("crius_fuzz::target(\"{name}\")")),
            "{} does not run target {name}",
            file.display()
        );
    }
}

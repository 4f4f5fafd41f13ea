//! The fuzzing campaign's corpus and crash reproducers, replayed in the normal suite
//! (FUZZING.md): every kept input of every target goes through the same function the fuzzer
//! calls, so a fixed crash stays fixed and the corpus keeps its coverage honest.

use std::path::Path;
use std::time::{Duration, Instant};

/// The inputs kept for `target`: the minimized corpus and the crash reproducers.
fn inputs(target: &str) -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in [
        root.join("corpus").join(target),
        root.join("regressions").join(target),
    ] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            files.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
        }
    }
    files.sort();
    files
}

#[test]
fn every_kept_fuzz_input_runs_without_a_panic_or_a_hang() {
    let targets: Vec<&str> = chatctl::fuzz::TARGETS.iter().map(|t| t.0).collect();
    // Every target has a fuzz_targets file, and every fuzz_targets file a target.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.trim_end_matches(".rs").to_owned()
        })
        .collect();
    files.sort();
    let mut sorted = targets.clone();
    sorted.sort();
    assert_eq!(files, sorted);

    for (target, run) in chatctl::fuzz::TARGETS {
        let kept = inputs(target);
        assert!(!kept.is_empty(), "{target} has no corpus");
        for path in kept {
            let data = std::fs::read(&path).unwrap();
            let started = Instant::now();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target} panics on {}", path.display());
            // libFuzzer's own bound is 10 s (`-timeout=10`); the debug build gets a tenth of
            // it per input, which a fixed hang would still exceed.
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{target} took {:?} on {}",
                started.elapsed(),
                path.display()
            );
        }
    }
}

//! Conventions checked by `cargo test`: layering, docs that match the code.

use std::path::{Path, PathBuf};

use chatctl::error::ExitCode;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

#[test]
fn commands_hold_no_sql() {
    for f in rust_files(&root().join("src/commands")) {
        let text = std::fs::read_to_string(&f).unwrap();
        for banned in ["sqlx::", "query(", "query_as(", "raw_sql("] {
            assert!(
                !text.contains(banned),
                "{} uses `{banned}`: SQL belongs in the library",
                f.display()
            );
        }
    }
}

#[test]
fn only_the_output_modules_print() {
    for f in rust_files(&root().join("src")) {
        let name = f.file_name().unwrap().to_str().unwrap();
        if name == "output.rs" || name == "progress.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for banned in ["println!", "eprintln!", "print!(", "eprint!(", "dbg!("] {
            assert!(
                !text.contains(banned),
                "{} uses {banned}; print through output.rs",
                f.display()
            );
        }
    }
}

#[test]
fn only_config_reads_the_environment() {
    for f in rust_files(&root().join("src")) {
        if f.ends_with("config/mod.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for banned in ["env::var(", "env::var_os(", "env::vars("] {
            assert!(
                !text.contains(banned),
                "{} reads the environment; go through chatctl::config",
                f.display()
            );
        }
    }
}

#[test]
fn readme_lists_every_command() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    use clap::CommandFactory as _;
    for sub in chatctl::commands::Cli::command().get_subcommands() {
        let name = sub.get_name();
        assert!(
            readme.contains(&format!("chatctl {name}")),
            "README.md does not show `chatctl {name}`"
        );
    }
}

#[test]
fn readme_exit_codes_match_the_code() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("## Exit codes")
        .nth(1)
        .expect("README has an Exit codes section");
    let documented: Vec<u8> = section
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split('|').next()?.trim().parse().ok())
        .collect();
    let actual: Vec<u8> = ExitCode::ALL.iter().map(|c| c.code()).collect();
    assert_eq!(
        documented, actual,
        "README's exit-code table and chatctl::error::ExitCode disagree"
    );
}

#[test]
fn every_migration_has_a_down() {
    let dir = root().join("migrations");
    let mut ups = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if let Some(stem) = name.strip_suffix(".up.sql") {
            ups += 1;
            assert!(
                dir.join(format!("{stem}.down.sql")).is_file(),
                "{name} has no .down.sql"
            );
            assert!(
                stem.len() > 5
                    && stem[..4].chars().all(|c| c.is_ascii_digit())
                    && &stem[4..5] == "_",
                "{name}: NNNN_name"
            );
        } else {
            assert!(
                name.ends_with(".down.sql"),
                "unexpected file in migrations/: {name}"
            );
        }
    }
    assert!(ups >= 3);
}

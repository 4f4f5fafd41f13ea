//! Identity and role invariants (issue 15): people are who Supabase Auth says verified the
//! address, a person is never taken for a bot, and a workspace keeps its owner.

use chatctl::provision::{self, Actor, PlanOptions, spec};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::support::TestDb;

fn actor() -> Actor {
    Actor {
        operator: "tester@ci".into(),
        command: "test".into(),
    }
}

/// Signs someone up in Supabase Auth with `email`, confirmed or not, with no profile.
async fn sign_up(c: &mut PgConnection, email: &str, confirmed: bool) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "insert into auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
            confirmation_token, recovery_token, email_change_token_new, email_change,
            raw_app_meta_data, raw_user_meta_data, created_at, updated_at)
         values ('00000000-0000-0000-0000-000000000000', $1, 'authenticated', 'authenticated', $2, '',
            case when $3 then now() end, '', '', '', '', '{}', '{}', now(), now())",
    )
    .bind(id)
    .bind(email)
    .bind(confirmed)
    .execute(&mut *c)
    .await
    .unwrap();
    id
}

/// Runs `sql` as the signed-in `user`, the way PostgREST does; the error text on refusal.
async fn as_user(c: &mut PgConnection, user: Uuid, sql: &str) -> Result<u64, String> {
    let mut tx = sqlx::Connection::begin(&mut *c).await.unwrap();
    chatctl::db::app_queries::act_as(&mut tx, "authenticated", Some(user))
        .await
        .unwrap();
    let result = sqlx::query(sql).execute(&mut *tx).await;
    match result {
        Ok(done) => {
            tx.commit().await.map_err(|e| e.to_string())?;
            Ok(done.rows_affected())
        }
        Err(e) => Err(e.to_string()),
    }
}

async fn plan_text(c: &mut PgConnection, dir: &tempfile::TempDir, yaml: &str) -> provision::Plan {
    try_plan(c, dir, yaml).await.unwrap()
}

async fn try_plan(
    c: &mut PgConnection,
    dir: &tempfile::TempDir,
    yaml: &str,
) -> Result<provision::Plan, String> {
    let path = dir.path().join("spec.yaml");
    std::fs::write(&path, yaml).unwrap();
    let files = spec::read(&[path]).unwrap();
    provision::plan(c, &files, &PlanOptions { prune: false })
        .await
        .map_err(|e| format!("{e:#}"))
}

async fn apply_text(c: &mut PgConnection, dir: &tempfile::TempDir, yaml: &str) {
    let plan = plan_text(c, dir, yaml).await;
    provision::apply::apply(c, &plan.changes, &actor())
        .await
        .unwrap();
}

async fn scalar<T>(c: &mut PgConnection, sql: &str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sql).fetch_one(c).await.unwrap()
}

const NEWHIRE: &str = "people:
  - { email: newhire@example.com, name: New Hire }
workspaces:
  - slug: acme
    name: Acme
    owners: [newhire@example.com]
    channels:
      - name: board
        private: true
        members: [newhire@example.com]
";

#[tokio::test]
async fn an_account_that_claims_an_address_first_is_never_given_its_roles() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let dir = tempfile::tempdir().unwrap();

    // An attacker signs up with the new hire's address (they cannot confirm it) and makes
    // a profile: the address they send is refused, the one they get is none.
    let attacker = sign_up(&mut c, "newhire@example.com", false).await;
    let forged = format!(
        "insert into users (id, username, name, email) values ('{attacker}', 'newhire', 'New Hire', 'newhire@example.com')"
    );
    let err = as_user(&mut c, attacker, &forged).await.unwrap_err();
    assert!(err.contains("permission denied"), "{err}");
    let own = format!(
        "insert into users (id, username, name) values ('{attacker}', 'newhire', 'New Hire')"
    );
    as_user(&mut c, attacker, &own).await.unwrap();
    let email: Option<String> = scalar(
        &mut c,
        &format!("select email from users where id = '{attacker}'"),
    )
    .await;
    assert_eq!(email, None, "an unverified address is nobody's");

    // The operator's apply refuses to give that account the new hire's roles.
    let err = try_plan(&mut c, &dir, NEWHIRE).await.unwrap_err();
    assert!(
        err.contains("spec.yaml:2: `newhire@example.com` belongs to an account")
            && err.contains("has not verified it"),
        "{err}"
    );
    assert_eq!(
        scalar::<i64>(&mut c, "select count(*) from workspaces").await,
        0
    );

    // A profile whose email was written behind the database's back is reported, not
    // adopted, even when no auth user holds the address.
    sqlx::raw_sql(&format!(
        "alter table users disable trigger users_identity;
         update users set email = 'cto@example.com' where id = '{attacker}';
         alter table users enable trigger users_identity;"
    ))
    .execute(&mut c)
    .await
    .unwrap();
    let err = try_plan(
        &mut c,
        &dir,
        "people:\n  - { email: cto@example.com, name: CTO }\n",
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("spec.yaml:2: the profile `newhire`") && err.contains("is not adopted"),
        "{err}"
    );
}

#[tokio::test]
async fn a_confirmed_sign_up_is_the_person_and_their_profile_follows_their_address() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let dir = tempfile::tempdir().unwrap();
    // The new hire signed up (and confirmed) before the operator's apply, without a
    // profile: apply gives them one and the roles, and makes no second account.
    let hire = sign_up(&mut c, "newhire@example.com", true).await;
    apply_text(&mut c, &dir, NEWHIRE).await;
    let (id, email): (Uuid, String) = sqlx::query_as(
        "select u.id, u.email from users u join workspace_members m on m.user_id = u.id and m.role = 'owner'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!((id, email.as_str()), (hire, "newhire@example.com"));
    assert_eq!(
        scalar::<i64>(&mut c, "select count(*) from auth.users").await,
        1
    );
    assert!(plan_text(&mut c, &dir, NEWHIRE).await.is_empty());

    // Their address changes in Supabase Auth: the profile follows; unconfirmed, it goes.
    sqlx::query("update auth.users set email = 'hire@example.com' where id = $1")
        .bind(hire)
        .execute(&mut c)
        .await
        .unwrap();
    let email: Option<String> = scalar(
        &mut c,
        &format!("select email from users where id = '{hire}'"),
    )
    .await;
    assert_eq!(email.as_deref(), Some("hire@example.com"));
    sqlx::query("update auth.users set email_confirmed_at = null where id = $1")
        .bind(hire)
        .execute(&mut c)
        .await
        .unwrap();
    let email: Option<String> = scalar(
        &mut c,
        &format!("select email from users where id = '{hire}'"),
    )
    .await;
    assert_eq!(email, None);
}

#[tokio::test]
async fn a_person_is_never_taken_for_a_bot() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let pool = db.pool().await;
    let dir = tempfile::tempdir().unwrap();
    let bot = |name: &str| chatctl::bots::spec::BotSpec::named(name);

    // Someone signs up with a bot's address (where confirmation is off, they are
    // "confirmed") and makes a profile: it is a person's, and no bot acts as it.
    let person = sign_up(&mut c, "helpbot@bots.chatctl.invalid", true).await;
    let own = format!(
        "insert into users (id, username, name, is_bot) values ('{person}', 'helpbot', 'Help', true)"
    );
    let err = as_user(&mut c, person, &own).await.unwrap_err();
    assert!(
        err.contains("permission denied"),
        "only operators make bots: {err}"
    );
    let own =
        format!("insert into users (id, username, name) values ('{person}', 'helpbot', 'Help')");
    as_user(&mut c, person, &own).await.unwrap();
    let err = chatctl::bots::runtime::prepare(&pool, vec![bot("helpbot")], &actor())
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("belongs to a person's account"),
        "{err:#}"
    );
    let err = try_plan(&mut c, &dir, "bots:\n  - { name: helpbot }\n")
        .await
        .unwrap_err();
    assert!(err.contains("a person is never taken for a bot"), "{err}");

    // An account made outside chatctl with a bot's address and no profile: not adopted
    // either (its maker knows its password).
    sign_up(&mut c, "digestbot@bots.chatctl.invalid", true).await;
    let err = chatctl::bots::runtime::prepare(&pool, vec![bot("digestbot")], &actor())
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("made outside chatctl"),
        "{err:#}"
    );

    // A bot chatctl makes is a bot, found again by the next run.
    let made = chatctl::bots::runtime::prepare(&pool, vec![bot("newsbot")], &actor())
        .await
        .unwrap();
    let again = chatctl::bots::runtime::prepare(&pool, vec![bot("newsbot")], &actor())
        .await
        .unwrap();
    assert_eq!(made[0].user_id, again[0].user_id);
    assert!(
        scalar::<bool>(
            &mut c,
            &format!("select is_bot from users where id = '{}'", made[0].user_id)
        )
        .await
    );
}

#[tokio::test]
async fn roles_change_only_where_the_spec_names_them_and_an_owner_is_kept() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let dir = tempfile::tempdir().unwrap();
    let people = "people:
  - { email: ada@example.com, name: Ada }
  - { email: bob@example.com, name: Bob }
";
    apply_text(
        &mut c,
        &dir,
        &format!(
            "{people}workspaces:
  - slug: acme
    name: Acme
    owners: [ada@example.com]
    members: [bob@example.com]
"
        ),
    )
    .await;

    // Ada appears only as a channel member: she stays the owner (no change at all).
    let only_channel = format!(
        "{people}workspaces:
  - slug: acme
    name: Acme
    members: [bob@example.com]
    channels:
      - name: general
        members: [ada@example.com, bob@example.com]
"
    );
    let plan = plan_text(&mut c, &dir, &only_channel).await;
    assert!(
        !plan
            .changes
            .iter()
            .any(|ch| ch.object_type == "workspace_member"),
        "{:?}",
        plan.changes
    );
    assert!(
        plan.warnings.is_empty(),
        "acme keeps its owner: {:?}",
        plan.warnings
    );
    provision::apply::apply(&mut c, &plan.changes, &actor())
        .await
        .unwrap();
    let role: String = scalar(
        &mut c,
        "select m.role from workspace_members m join users u on u.id = m.user_id where u.email = 'ada@example.com'",
    )
    .await;
    assert_eq!(role, "owner");

    // Naming her a member would leave acme without an owner: refused before anything runs.
    let demoted = format!(
        "{people}workspaces:
  - slug: acme
    name: Acme
    members: [ada@example.com, bob@example.com]
"
    );
    let err = try_plan(&mut c, &dir, &demoted).await.unwrap_err();
    assert!(
        err.contains("workspace `acme` would be left without an owner"),
        "{err}"
    );
    // With a new owner named, the same change goes through.
    let handed_over = format!(
        "{people}workspaces:
  - slug: acme
    name: Acme
    owners: [bob@example.com]
    members: [ada@example.com]
"
    );
    apply_text(&mut c, &dir, &handed_over).await;
    let owner: String = scalar(
        &mut c,
        "select u.email from workspace_members m join users u on u.id = m.user_id where m.role = 'owner'",
    )
    .await;
    assert_eq!(owner, "bob@example.com");

    // A workspace with no owner at all is reported.
    let ownerless = format!(
        "{people}workspaces:
  - slug: beta
    name: Beta
    members: [ada@example.com]
"
    );
    let plan = plan_text(&mut c, &dir, &ownerless).await;
    assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
    assert!(plan.warnings[0].contains("workspace `beta` has no owner"));

    // The database holds the rule for every writer, operators included: at commit.
    let err = sqlx::raw_sql("begin; delete from workspace_members where role = 'owner'; commit;")
        .execute(&mut c)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("would be left without an owner"),
        "{err}"
    );
}

// Existing data (issue 15): migration 0009 repairs what it can and reports the rest, where
// the operator running `chatctl migrate up` sees it.
#[tokio::test]
async fn the_migration_repairs_direct_messages_and_emails_and_reports_ownerless_workspaces() {
    let db = TestDb::empty().await;
    let env = [("DATABASE_URL", db.url.as_str())];
    crate::support::chatctl(&env)
        .args(["migrate", "up", "--to", "8", "-q"])
        .assert()
        .success();
    let mut c = db.conn().await;
    let (a, b) = (
        sign_up(&mut c, "a@example.com", true).await,
        sign_up(&mut c, "b@example.com", true).await,
    );
    let mut key = [a.to_string(), b.to_string()];
    key.sort();
    sqlx::raw_sql(&format!(
        "insert into users (id, username, email) values ('{a}', 'a', 'a@example.com'), ('{b}', 'b', 'ceo@example.com');
         insert into workspaces (id, slug, name) values ('00000000-0000-4000-8000-0000000000aa', 'lonely', 'Lonely');
         insert into workspace_members values ('00000000-0000-4000-8000-0000000000aa', '{a}', 'member'),
             ('00000000-0000-4000-8000-0000000000aa', '{b}', 'member');
         insert into channels (id, workspace_id, kind, dm_key)
             values ('00000000-0000-4000-8000-0000000000dd', '00000000-0000-4000-8000-0000000000aa', 'dm', '{},{}');
         insert into members values ('00000000-0000-4000-8000-0000000000dd', '{a}', 'owner'),
             ('00000000-0000-4000-8000-0000000000dd', '{b}', 'member');",
        key[0], key[1]
    ))
    .execute(&mut c)
    .await
    .unwrap();

    let out = crate::support::chatctl(&env)
        .args(["migrate", "up"])
        .output()
        .unwrap();
    let (_, stderr) = crate::support::outputs(&out);
    assert!(out.status.success(), "{stderr}");
    for said in [
        "1 profile(s) had an email their auth user has not verified",
        "1 member(s) of direct messages had a moderating role; now plain members",
        "workspaces without an owner: lonely",
    ] {
        assert!(stderr.contains(said), "`{said}` in:\n{stderr}");
    }
    let roles: Vec<String> = sqlx::query_scalar("select role from members")
        .fetch_all(&mut c)
        .await
        .unwrap();
    assert_eq!(roles, ["member", "member"]);
    let email: Option<String> =
        scalar(&mut c, &format!("select email from users where id = '{b}'")).await;
    assert_eq!(email.as_deref(), Some("b@example.com"), "the verified one");
}

/// `users.last_login` (the outline's name) is Supabase Auth's last sign-in: it follows each
/// sign-in, a new profile starts from it, and no writer can make the two differ (issue 20).
#[tokio::test]
async fn last_login_is_supabase_auths_last_sign_in() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let id = sign_up(&mut c, "grace@example.com", true).await;
    // Each step, then the profile's last_login.
    let steps = [
        // Signed in before their profile was made: the profile starts from it.
        (
            "update auth.users set last_sign_in_at = '2026-12-01 09:00:00+00' where id = $1",
            None,
        ),
        (
            "insert into users (id, username, name) values ($1, 'grace', 'Grace')",
            Some("2026-12-01 09:00"),
        ),
        // A sign-in: the profile follows.
        (
            "update auth.users set last_sign_in_at = '2026-12-02 18:30:00+00' where id = $1",
            Some("2026-12-02 18:30"),
        ),
        // Written directly, even by the table's owner: Supabase Auth's value stays.
        (
            "update users set last_login = '1999-01-01' where id = $1",
            Some("2026-12-02 18:30"),
        ),
    ];
    for (sql, want) in steps {
        sqlx::query(sql).bind(id).execute(&mut c).await.unwrap();
        if let Some(want) = want {
            let got: Option<String> = sqlx::query_scalar(
                "select to_char(last_login at time zone 'UTC', 'YYYY-MM-DD HH24:MI') from users where id = $1",
            )
            .bind(id)
            .fetch_one(&mut c)
            .await
            .unwrap();
            assert_eq!(got.as_deref(), Some(want), "after {sql}");
        }
    }
}

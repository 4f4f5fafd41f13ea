//! The row-level-security matrix: every table × every kind of caller × every operation,
//! executed as the real role with `request.jwt.claims` set the way PostgREST sets them.

use std::collections::BTreeMap;

use sqlx::PgConnection;
use uuid::Uuid;

use crate::support::{TestDb, user};

/// The kinds of caller.
const CALLERS: &[&str] = &[
    "anon",       // not signed in
    "ws_member",  // member of the home workspace, in no channel
    "ch_member",  // member of the home workspace and of every channel (and the DM)
    "non_member", // signed in, in no workspace at all
    "other_ws",   // member of another workspace only
    "shared_ws",  // member of a workspace the public and private channels are shared with
    "moderator",  // home workspace member, moderator of the channels, in the DM
    "admin",      // admin of the home workspace, in no channel
    "service_role",
];

struct Fixture {
    ids: BTreeMap<&'static str, Uuid>,
}

impl Fixture {
    fn sql(&self, template: &str, caller: &str) -> String {
        let mut s = template.to_owned();
        let me = self
            .ids
            .get(caller)
            .map_or("null".to_owned(), |id| format!("'{id}'::uuid"));
        s = s.replace("{me}", &me);
        // Longest names first, so {pub_msg_mod} is not eaten by {pub}.
        let mut names: Vec<_> = self.ids.iter().collect();
        names.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
        for (name, id) in names {
            s = s.replace(&format!("{{{name}}}"), &format!("'{id}'::uuid"));
        }
        s
    }
}

async fn q(c: &mut PgConnection, sql: &str) -> Uuid {
    sqlx::query_scalar(sql).fetch_one(c).await.unwrap()
}

async fn fixture(c: &mut PgConnection) -> Fixture {
    let mut ids: BTreeMap<&'static str, Uuid> = BTreeMap::new();
    for name in [
        "ws_member",
        "ch_member",
        "non_member",
        "other_ws",
        "shared_ws",
        "moderator",
        "admin",
        "outsider_target",
    ] {
        ids.insert(name, user(c, &name.replace('_', "-")).await);
    }
    let no_profile = Uuid::new_v4();
    sqlx::query("insert into auth.users (id, aud, role, email, raw_app_meta_data, raw_user_meta_data, created_at, updated_at) values ($1, 'authenticated', 'authenticated', 'np@example.com', '{}', '{}', now(), now())")
        .bind(no_profile).execute(&mut *c).await.unwrap();
    ids.insert("no_profile", no_profile);
    let home = q(
        c,
        "insert into workspaces (slug, name) values ('home', 'Home') returning id",
    )
    .await;
    let other = q(
        c,
        "insert into workspaces (slug, name) values ('other', 'Other') returning id",
    )
    .await;
    let shared = q(
        c,
        "insert into workspaces (slug, name) values ('partner', 'Partner') returning id",
    )
    .await;
    ids.insert("home", home);
    ids.insert("other", other);
    ids.insert("partner", shared);
    let f = Fixture { ids };
    let setup = r#"
        insert into workspace_members (workspace_id, user_id, role) values
            ({home}, {ws_member}, 'member'), ({home}, {ch_member}, 'member'), ({home}, {moderator}, 'member'),
            ({home}, {admin}, 'admin'), ({other}, {other_ws}, 'member'), ({partner}, {shared_ws}, 'member'),
            ({other}, {outsider_target}, 'member');
    "#;
    sqlx::raw_sql(&f.sql(setup, ""))
        .execute(&mut *c)
        .await
        .unwrap();
    let mut ids = f.ids;
    let f0 = Fixture { ids: ids.clone() };
    ids.insert("pub", q(c, &f0.sql("insert into channels (workspace_id, name, kind) values ({home}, 'pub', 'public') returning id", "")).await);
    ids.insert("priv", q(c, &f0.sql("insert into channels (workspace_id, name, kind) values ({home}, 'priv', 'private') returning id", "")).await);
    ids.insert("dm", q(c, &f0.sql("insert into channels (workspace_id, kind, dm_key) values ({home}, 'dm', 'x') returning id", "")).await);
    ids.insert("other_pub", q(c, &f0.sql("insert into channels (workspace_id, name, kind) values ({other}, 'elsewhere', 'public') returning id", "")).await);
    let f1 = Fixture { ids: ids.clone() };
    let setup = r#"
        insert into members (channel_id, user_id, role) values
            ({pub}, {ch_member}, 'member'), ({pub}, {moderator}, 'moderator'),
            ({priv}, {ch_member}, 'member'), ({priv}, {moderator}, 'moderator'),
            ({dm}, {ch_member}, 'member'), ({dm}, {moderator}, 'member'),
            ({other_pub}, {other_ws}, 'member');
        insert into shared_channels (channel_id, workspace_id) values ({pub}, {partner}), ({priv}, {partner});
    "#;
    sqlx::raw_sql(&f1.sql(setup, ""))
        .execute(&mut *c)
        .await
        .unwrap();
    for (key, chan, author) in [
        ("pub_msg", "pub", "ch_member"),
        ("pub_msg_mod", "pub", "moderator"),
        ("priv_msg", "priv", "ch_member"),
        ("dm_msg", "dm", "ch_member"),
        ("other_msg", "other_pub", "other_ws"),
    ] {
        let sql = format!(
            "insert into chat (channel_id, user_id, message) values ({{{chan}}}, {{{author}}}, '{{\"text\":\"{key}\"}}') returning id"
        );
        ids.insert(key, q(c, &f1.sql(&sql, "")).await);
    }
    let f2 = Fixture { ids: ids.clone() };
    let setup = r#"
        insert into emojis (message_id, user_id, emoji) values ({pub_msg}, {ch_member}, 'eyes'), ({priv_msg}, {ch_member}, 'eyes'), ({dm_msg}, {ch_member}, 'eyes');
        insert into attachments (message_id, bucket_id, object_path, name, size_bytes) values
            ({pub_msg}, 'files', 'a/pub.pdf', 'pub.pdf', 1), ({priv_msg}, 'files', 'a/priv.pdf', 'priv.pdf', 1), ({dm_msg}, 'files', 'a/dm.pdf', 'dm.pdf', 1);
        insert into read_receipts (message_id, user_id) values ({pub_msg}, {ch_member}), ({priv_msg}, {ch_member}), ({dm_msg}, {ch_member});
        insert into user_status (user_id, presence) values ({ch_member}, 'online'), ({outsider_target}, 'online');
    "#;
    sqlx::raw_sql(&f2.sql(setup, ""))
        .execute(&mut *c)
        .await
        .unwrap();
    f2
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Select,
    Insert,
    Update,
    Delete,
}

/// One row of the matrix: an operation on a table, and who may do it.
struct Case {
    table: &'static str,
    op: Op,
    what: &'static str,
    sql: &'static str,
    allowed: &'static [&'static str],
}

const ALL_SIGNED_IN: &[&str] = &[
    "ws_member",
    "ch_member",
    "non_member",
    "other_ws",
    "shared_ws",
    "moderator",
    "admin",
    "service_role",
];
const HOME: &[&str] = &[
    "ws_member",
    "ch_member",
    "moderator",
    "admin",
    "service_role",
];
const READ_PUB: &[&str] = &[
    "ws_member",
    "ch_member",
    "shared_ws",
    "moderator",
    "admin",
    "service_role",
];
const IN_CHANNELS: &[&str] = &["ch_member", "moderator", "service_role"];

const CASES: &[Case] = &[
    // users
    Case {
        table: "users",
        op: Op::Select,
        what: "a user of the same workspace",
        sql: "select count(*) from users where id = {ch_member}",
        allowed: &[
            "ws_member",
            "ch_member",
            "moderator",
            "admin",
            "service_role",
        ],
    },
    Case {
        table: "users",
        op: Op::Select,
        what: "a user of another workspace",
        sql: "select count(*) from users where id = {outsider_target}",
        allowed: &["other_ws", "service_role"],
    },
    Case {
        table: "users",
        op: Op::Insert,
        what: "a profile for someone else",
        sql: "insert into users (id, username) values ({no_profile}, 'np')",
        allowed: &["service_role"],
    },
    Case {
        table: "users",
        op: Op::Update,
        what: "their own profile",
        sql: "update users set display_name = 'Me' where id = coalesce({me}, {ch_member})",
        allowed: ALL_SIGNED_IN,
    },
    Case {
        table: "users",
        op: Op::Update,
        what: "someone else's profile",
        sql: "update users set display_name = 'Hacked' where id = {outsider_target}",
        allowed: &["service_role"],
    },
    Case {
        table: "users",
        op: Op::Delete,
        what: "a profile",
        sql: "delete from users where id = {outsider_target}",
        allowed: &["service_role"],
    },
    // workspaces
    Case {
        table: "workspaces",
        op: Op::Select,
        what: "the home workspace",
        sql: "select count(*) from workspaces where id = {home}",
        allowed: HOME,
    },
    Case {
        table: "workspaces",
        op: Op::Insert,
        what: "a new workspace",
        sql: "insert into workspaces (slug, name) values ('new', 'New')",
        allowed: &["service_role"],
    },
    Case {
        table: "workspaces",
        op: Op::Update,
        what: "the home workspace",
        sql: "update workspaces set name = 'Renamed' where id = {home}",
        allowed: &["admin", "service_role"],
    },
    Case {
        table: "workspaces",
        op: Op::Delete,
        what: "the home workspace",
        sql: "delete from workspaces where id = {home}",
        allowed: &["service_role"],
    },
    // workspace_members
    Case {
        table: "workspace_members",
        op: Op::Select,
        what: "the home workspace's members",
        sql: "select count(*) from workspace_members where workspace_id = {home}",
        allowed: HOME,
    },
    Case {
        table: "workspace_members",
        op: Op::Insert,
        what: "someone into the home workspace",
        sql: "insert into workspace_members (workspace_id, user_id) values ({home}, {outsider_target})",
        allowed: &["admin", "service_role"],
    },
    Case {
        table: "workspace_members",
        op: Op::Update,
        what: "a member's role",
        sql: "update workspace_members set role = 'admin' where workspace_id = {home} and user_id = {ws_member}",
        allowed: &["admin", "service_role"],
    },
    Case {
        table: "workspace_members",
        op: Op::Delete,
        what: "another member",
        sql: "delete from workspace_members where workspace_id = {home} and user_id = {ws_member}",
        allowed: &["ws_member", "admin", "service_role"],
    },
    // channels
    Case {
        table: "channels",
        op: Op::Select,
        what: "the public channel",
        sql: "select count(*) from channels where id = {pub}",
        allowed: READ_PUB,
    },
    Case {
        table: "channels",
        op: Op::Select,
        what: "the private channel",
        sql: "select count(*) from channels where id = {priv}",
        allowed: IN_CHANNELS,
    },
    Case {
        table: "channels",
        op: Op::Select,
        what: "the DM",
        sql: "select count(*) from channels where id = {dm}",
        allowed: IN_CHANNELS,
    },
    Case {
        table: "channels",
        op: Op::Insert,
        what: "a channel in the home workspace",
        sql: "insert into channels (workspace_id, name, created_by) values ({home}, 'fresh', coalesce({me}, {ws_member}))",
        allowed: HOME,
    },
    Case {
        table: "channels",
        op: Op::Update,
        what: "the private channel's topic",
        sql: "update channels set topic = 'x' where id = {priv}",
        allowed: &["moderator", "service_role"],
    },
    Case {
        table: "channels",
        op: Op::Delete,
        what: "the public channel",
        sql: "delete from channels where id = {pub}",
        allowed: &["admin", "service_role"],
    },
    // members
    Case {
        table: "members",
        op: Op::Select,
        what: "the private channel's members",
        sql: "select count(*) from members where channel_id = {priv}",
        allowed: IN_CHANNELS,
    },
    Case {
        table: "members",
        op: Op::Insert,
        what: "themselves into the public channel",
        sql: "insert into members (channel_id, user_id) values ({pub}, coalesce({me}, {ws_member})) on conflict do nothing",
        allowed: &["ws_member", "shared_ws", "admin", "service_role"],
    },
    Case {
        table: "members",
        op: Op::Insert,
        what: "ws_member into the private channel",
        sql: "insert into members (channel_id, user_id) values ({priv}, {ws_member})",
        allowed: &["moderator", "service_role"],
    },
    Case {
        table: "members",
        op: Op::Insert,
        what: "themselves into the private channel",
        sql: "insert into members (channel_id, user_id) values ({priv}, coalesce({me}, {ws_member})) on conflict do nothing",
        allowed: &["service_role"],
    },
    Case {
        table: "members",
        op: Op::Update,
        what: "another member's settings",
        sql: "update members set muted = true where channel_id = {priv} and user_id = {ch_member}",
        allowed: &["ch_member", "service_role"],
    },
    Case {
        table: "members",
        op: Op::Delete,
        what: "a member of the private channel",
        sql: "delete from members where channel_id = {priv} and user_id = {ch_member}",
        allowed: &["ch_member", "moderator", "service_role"],
    },
    // shared_channels
    Case {
        table: "shared_channels",
        op: Op::Select,
        what: "the public channel's sharing",
        sql: "select count(*) from shared_channels where channel_id = {pub}",
        allowed: &[
            "ws_member",
            "ch_member",
            "shared_ws",
            "moderator",
            "admin",
            "service_role",
        ],
    },
    Case {
        table: "shared_channels",
        op: Op::Insert,
        what: "the public channel into another workspace",
        sql: "insert into shared_channels (channel_id, workspace_id) values ({pub}, {other})",
        allowed: &["admin", "service_role"],
    },
    Case {
        table: "shared_channels",
        op: Op::Update,
        what: "a sharing",
        sql: "update shared_channels set shared_by = {ws_member} where channel_id = {pub}",
        allowed: &["service_role"],
    },
    Case {
        table: "shared_channels",
        op: Op::Delete,
        what: "a sharing",
        sql: "delete from shared_channels where channel_id = {pub}",
        allowed: &["admin", "service_role"],
    },
    // chat
    Case {
        table: "chat",
        op: Op::Select,
        what: "a public channel's message",
        sql: "select count(*) from chat where id = {pub_msg}",
        allowed: READ_PUB,
    },
    Case {
        table: "chat",
        op: Op::Select,
        what: "a private channel's message",
        sql: "select count(*) from chat where id = {priv_msg}",
        allowed: IN_CHANNELS,
    },
    Case {
        table: "chat",
        op: Op::Select,
        what: "a DM's message",
        sql: "select count(*) from chat where id = {dm_msg}",
        allowed: IN_CHANNELS,
    },
    Case {
        table: "chat",
        op: Op::Select,
        what: "another workspace's message",
        sql: "select count(*) from chat where id = {other_msg}",
        allowed: &["other_ws", "service_role"],
    },
    Case {
        table: "chat",
        op: Op::Select,
        what: "every private message, by scanning",
        sql: "select count(*) from chat where channel_id in ({priv}, {dm})",
        allowed: IN_CHANNELS,
    },
    Case {
        table: "chat",
        op: Op::Insert,
        what: "as themselves into the public channel",
        sql: "insert into chat (channel_id, user_id, message) values ({pub}, coalesce({me}, {ch_member}), '{\"text\":\"hi\"}')",
        allowed: IN_CHANNELS,
    },
    Case {
        table: "chat",
        op: Op::Insert,
        what: "as themselves into the private channel",
        sql: "insert into chat (channel_id, user_id, message) values ({priv}, coalesce({me}, {ch_member}), '{\"text\":\"hi\"}')",
        allowed: IN_CHANNELS,
    },
    Case {
        table: "chat",
        op: Op::Insert,
        what: "as someone else",
        sql: "insert into chat (channel_id, user_id, message) values ({pub}, {ch_member}, '{\"text\":\"spoof\"}')",
        allowed: &["ch_member", "service_role"],
    },
    Case {
        table: "chat",
        op: Op::Update,
        what: "ch_member's message",
        sql: "update chat set message = '{\"text\":\"edited\"}' where id = {pub_msg}",
        allowed: &["ch_member", "service_role"],
    },
    Case {
        table: "chat",
        op: Op::Update,
        what: "a message's author",
        sql: "update chat set user_id = coalesce({me}, {moderator}) where id = {pub_msg}",
        allowed: &["service_role"],
    },
    Case {
        table: "chat",
        op: Op::Delete,
        what: "ch_member's public message",
        sql: "delete from chat where id = {pub_msg}",
        allowed: &["ch_member", "moderator", "admin", "service_role"],
    },
    Case {
        table: "chat",
        op: Op::Delete,
        what: "ch_member's private message",
        sql: "delete from chat where id = {priv_msg}",
        allowed: IN_CHANNELS,
    },
    // emojis
    Case {
        table: "emojis",
        op: Op::Select,
        what: "reactions in the private channel",
        sql: "select count(*) from emojis where message_id = {priv_msg}",
        allowed: IN_CHANNELS,
    },
    Case {
        table: "emojis",
        op: Op::Select,
        what: "reactions in the DM",
        sql: "select count(*) from emojis where message_id = {dm_msg}",
        allowed: IN_CHANNELS,
    },
    Case {
        table: "emojis",
        op: Op::Insert,
        what: "a reaction as themselves in the public channel",
        sql: "insert into emojis (message_id, user_id, emoji) values ({pub_msg}, coalesce({me}, {moderator}), 'tada')",
        allowed: IN_CHANNELS,
    },
    Case {
        table: "emojis",
        op: Op::Update,
        what: "a reaction",
        sql: "update emojis set emoji = 'fire' where message_id = {pub_msg}",
        allowed: &["service_role"],
    },
    Case {
        table: "emojis",
        op: Op::Delete,
        what: "ch_member's reaction",
        sql: "delete from emojis where message_id = {pub_msg}",
        allowed: &["ch_member", "service_role"],
    },
    // attachments
    Case {
        table: "attachments",
        op: Op::Select,
        what: "a DM's attachment",
        sql: "select count(*) from attachments where message_id = {dm_msg}",
        allowed: IN_CHANNELS,
    },
    Case {
        table: "attachments",
        op: Op::Insert,
        what: "to ch_member's message",
        sql: "insert into attachments (message_id, bucket_id, object_path, name, size_bytes) values ({pub_msg}, 'files', 'b', 'b', 1)",
        allowed: &["ch_member", "service_role"],
    },
    Case {
        table: "attachments",
        op: Op::Update,
        what: "an attachment",
        sql: "update attachments set name = 'x' where message_id = {pub_msg}",
        allowed: &["service_role"],
    },
    Case {
        table: "attachments",
        op: Op::Delete,
        what: "a private attachment",
        sql: "delete from attachments where message_id = {priv_msg}",
        allowed: IN_CHANNELS,
    },
    // read_receipts
    Case {
        table: "read_receipts",
        op: Op::Select,
        what: "receipts in the DM",
        sql: "select count(*) from read_receipts where message_id = {dm_msg}",
        allowed: IN_CHANNELS,
    },
    Case {
        table: "read_receipts",
        op: Op::Insert,
        what: "their own receipt on a private message",
        sql: "insert into read_receipts (message_id, user_id) values ({priv_msg}, coalesce({me}, {moderator})) on conflict do nothing",
        allowed: &["moderator", "service_role"],
    },
    Case {
        table: "read_receipts",
        op: Op::Update,
        what: "ch_member's receipt",
        sql: "update read_receipts set read_at = now() where message_id = {pub_msg} and user_id = {ch_member}",
        allowed: &["ch_member", "service_role"],
    },
    Case {
        table: "read_receipts",
        op: Op::Delete,
        what: "ch_member's receipt",
        sql: "delete from read_receipts where message_id = {pub_msg} and user_id = {ch_member}",
        allowed: &["ch_member", "service_role"],
    },
    // user_status
    Case {
        table: "user_status",
        op: Op::Select,
        what: "a co-worker's presence",
        sql: "select count(*) from user_status where user_id = {ch_member}",
        allowed: &[
            "ws_member",
            "ch_member",
            "moderator",
            "admin",
            "service_role",
        ],
    },
    Case {
        table: "user_status",
        op: Op::Insert,
        what: "their own status",
        sql: "insert into user_status (user_id, presence) values (coalesce({me}, {moderator}), 'away') on conflict (user_id) do update set presence = 'away'",
        allowed: ALL_SIGNED_IN,
    },
    Case {
        table: "user_status",
        op: Op::Update,
        what: "someone else's status",
        sql: "update user_status set presence = 'dnd' where user_id = {ch_member}",
        allowed: &["ch_member", "service_role"],
    },
    Case {
        table: "user_status",
        op: Op::Delete,
        what: "someone else's status",
        sql: "delete from user_status where user_id = {ch_member}",
        allowed: &["ch_member", "service_role"],
    },
];

/// Runs `sql` as `caller` in a transaction that is rolled back; whether it was allowed.
async fn attempt(
    c: &mut PgConnection,
    f: &Fixture,
    caller: &str,
    case: &Case,
) -> Result<bool, String> {
    let mut tx = sqlx::Connection::begin(&mut *c).await.unwrap();
    let role = match caller {
        "anon" | "service_role" => caller,
        _ => "authenticated",
    };
    let claims = match f.ids.get(caller) {
        Some(id) => format!(r#"{{"sub":"{id}","role":"authenticated","aud":"authenticated"}}"#),
        None => format!(r#"{{"role":"{role}"}}"#),
    };
    sqlx::query("select set_config('request.jwt.claims', $1, true)")
        .bind(&claims)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::raw_sql(&format!("set local role {role}"))
        .execute(&mut *tx)
        .await
        .unwrap();
    let sql = f.sql(case.sql, caller);
    let result = if case.op == Op::Select {
        sqlx::query_scalar::<_, i64>(&sql)
            .fetch_one(&mut *tx)
            .await
            .map(|n| n > 0)
    } else {
        sqlx::query(&sql)
            .execute(&mut *tx)
            .await
            .map(|r| r.rows_affected() > 0)
    };
    tx.rollback().await.unwrap();
    match result {
        Ok(allowed) => Ok(allowed),
        Err(e) => {
            let msg = e.to_string();
            // RLS and grants refuse with "permission denied" / "violates row-level security".
            if msg.contains("row-level security") || msg.contains("permission denied") {
                Ok(false)
            } else {
                Err(msg)
            }
        }
    }
}

#[tokio::test]
async fn rls_matrix() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let f = fixture(&mut c).await;
    let mut failures = Vec::new();
    let mut covered: BTreeMap<&str, Vec<Op>> = BTreeMap::new();
    for case in CASES {
        covered.entry(case.table).or_default().push(case.op);
        for caller in CALLERS {
            let expected = case.allowed.contains(caller);
            match attempt(&mut c, &f, caller, case).await {
                Ok(actual) if actual == expected => {}
                Ok(actual) => failures.push(format!(
                    "{} {:?} {}: {caller} was {} but should be {}",
                    case.table,
                    case.op,
                    case.what,
                    if actual { "allowed" } else { "denied" },
                    if expected { "allowed" } else { "denied" }
                )),
                Err(e) => failures.push(format!(
                    "{} {:?} {}: {caller}: unexpected error: {e}",
                    case.table, case.op, case.what
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} RLS expectations failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Every table in public is in the matrix, with all four operations.
    let tables: Vec<String> = sqlx::query_scalar("select relname::text from pg_class where relnamespace = 'public'::regnamespace and relkind = 'r' order by 1")
        .fetch_all(&mut c).await.unwrap();
    for t in &tables {
        let ops = covered.get(t.as_str()).cloned().unwrap_or_default();
        for op in [Op::Select, Op::Insert, Op::Update, Op::Delete] {
            assert!(
                ops.contains(&op),
                "the matrix has no {op:?} case for table {t}"
            );
        }
    }
}

//! The schema's own rules: threads and reply counts, names, DMs, sharing, Realtime, and
//! running unchanged where Supabase's objects already exist.

use std::time::Duration;

use chatctl::db::migrate::{self, Migrations, Source, UpOptions};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::support::{TestDb, user};

struct World {
    ws: Uuid,
    channel: Uuid,
    alice: Uuid,
}

async fn world(c: &mut PgConnection) -> World {
    let alice = user(c, "alice").await;
    let ws: Uuid = sqlx::query_scalar(
        "insert into workspaces (slug, name) values ('acme', 'Acme') returning id",
    )
    .fetch_one(&mut *c)
    .await
    .unwrap();
    let channel: Uuid = sqlx::query_scalar(
        "insert into channels (workspace_id, name) values ($1, 'general') returning id",
    )
    .bind(ws)
    .fetch_one(&mut *c)
    .await
    .unwrap();
    World { ws, channel, alice }
}

async fn post(c: &mut PgConnection, w: &World, parent: Option<Uuid>, text: &str) -> Uuid {
    sqlx::query_scalar("insert into chat (channel_id, user_id, parent_id, message) values ($1, $2, $3, jsonb_build_object('text', $4::text)) returning id")
        .bind(w.channel)
        .bind(w.alice)
        .bind(parent)
        .bind(text)
        .fetch_one(&mut *c)
        .await
        .unwrap()
}

async fn replies(c: &mut PgConnection, id: Uuid) -> i32 {
    sqlx::query_scalar("select total_replies from chat where id = $1")
        .bind(id)
        .fetch_one(c)
        .await
        .unwrap()
}

#[tokio::test]
async fn total_replies_follows_inserts_soft_deletes_and_deletes() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let w = world(&mut c).await;
    let root = post(&mut c, &w, None, "root").await;
    let r1 = post(&mut c, &w, Some(root), "one").await;
    post(&mut c, &w, Some(root), "two").await;
    assert_eq!(replies(&mut c, root).await, 2);

    // Many replies in one statement count once each.
    sqlx::query("insert into chat (channel_id, user_id, parent_id, message) select $1, $2, $3, '{\"text\":\"bulk\"}' from generate_series(1, 10)")
        .bind(w.channel).bind(w.alice).bind(root).execute(&mut c).await.unwrap();
    assert_eq!(replies(&mut c, root).await, 12);

    sqlx::query("update chat set is_deleted = true where id = $1")
        .bind(r1)
        .execute(&mut c)
        .await
        .unwrap();
    assert_eq!(
        replies(&mut c, root).await,
        11,
        "a soft-deleted reply no longer counts"
    );
    sqlx::query("update chat set is_deleted = false where id = $1")
        .bind(r1)
        .execute(&mut c)
        .await
        .unwrap();
    assert_eq!(replies(&mut c, root).await, 12);
    sqlx::query("delete from chat where id = $1")
        .bind(r1)
        .execute(&mut c)
        .await
        .unwrap();
    assert_eq!(replies(&mut c, root).await, 11);
    let last: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select last_reply_at from chat where id = $1")
            .bind(root)
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert!(last.is_some());
}

/// A channel (or its workspace) goes with its messages and every count kept of them, also
/// when someone reacted to several of its messages (migration 0016: the counters' rows were
/// updated twice in the cascade, and the second update failed its foreign key check).
#[tokio::test]
async fn a_channel_whose_messages_have_reactions_is_deleted_whole() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let w = world(&mut c).await;
    let bob = user(&mut c, "bob").await;
    let mut messages = Vec::new();
    for i in 0..3 {
        let root = post(&mut c, &w, None, &format!("message {i}")).await;
        post(&mut c, &w, Some(root), "a reply").await;
        messages.push(root);
    }
    for (who, emoji) in [(bob, "👍"), (w.alice, "👀"), (bob, "🎉")] {
        sqlx::query("insert into emojis (chat_id, user_id, emoji_uni_code) select unnest($1::uuid[]), $2, $3")
            .bind(&messages)
            .bind(who)
            .bind(emoji)
            .execute(&mut c)
            .await
            .unwrap();
    }
    let other: Uuid = sqlx::query_scalar(
        "insert into channels (workspace_id, name) values ($1, 'random') returning id",
    )
    .bind(w.ws)
    .fetch_one(&mut c)
    .await
    .unwrap();
    let w2 = World {
        channel: other,
        ..w
    };
    let kept = post(&mut c, &w2, None, "elsewhere").await;
    sqlx::query("insert into emojis (chat_id, user_id, emoji_uni_code) values ($1, $2, '👍'), ($1, $3, '👍')")
        .bind(kept)
        .bind(bob)
        .bind(w2.alice)
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("delete from channels where id = $1")
        .bind(w.channel)
        .execute(&mut c)
        .await
        .unwrap();
    let left: (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from chat), (select count(*) from emojis),
                (select coalesce(sum(reactions), 0)::bigint from user_activity)",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(
        left,
        (1, 2, 2),
        "the other channel's message, reactions and counts stay"
    );
    sqlx::query("delete from workspaces where id = $1")
        .bind(w.ws)
        .execute(&mut c)
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar("select count(*) from user_activity")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn concurrent_replies_to_one_thread_are_all_counted() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let w = world(&mut c).await;
    let root = post(&mut c, &w, None, "root").await;
    let pool = db.pool().await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let pool = pool.clone();
            let (ch, alice) = (w.channel, w.alice);
            tokio::spawn(async move {
                sqlx::query("insert into chat (channel_id, user_id, parent_id, message) values ($1, $2, $3, jsonb_build_object('text', $4::text))")
                    .bind(ch).bind(alice).bind(root).bind(format!("reply {i}"))
                    .execute(&pool).await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(replies(&mut c, root).await, 40);
    // And a profile's counters of them (`user_activity`, spread over as many rows as there
    // were writers at once), written by every one of those transactions: none lost, the
    // thread started once.
    let counted: (i64, i64, i64) = sqlx::query_as(
        "select sum(messages)::bigint, sum(replies)::bigint, sum(threads_started)::bigint
           from user_activity where user_id = $1 and channel_id = $2",
    )
    .bind(w.alice)
    .bind(w.channel)
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(counted, (41, 40, 1));
}

#[tokio::test]
async fn threads_are_one_level_and_stay_in_their_channel() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let w = world(&mut c).await;
    let root = post(&mut c, &w, None, "root").await;
    let reply = post(&mut c, &w, Some(root), "reply").await;
    let nested = sqlx::query("insert into chat (channel_id, user_id, parent_id, message) values ($1, $2, $3, '{\"text\":\"x\"}')")
        .bind(w.channel).bind(w.alice).bind(reply).execute(&mut c).await.unwrap_err();
    assert!(
        nested.to_string().contains("threads are one level deep"),
        "{nested}"
    );

    let other: Uuid = sqlx::query_scalar(
        "insert into channels (workspace_id, name) values ($1, 'random') returning id",
    )
    .bind(w.ws)
    .fetch_one(&mut c)
    .await
    .unwrap();
    let elsewhere = sqlx::query("insert into chat (channel_id, user_id, parent_id, message) values ($1, $2, $3, '{\"text\":\"x\"}')")
        .bind(other).bind(w.alice).bind(root).execute(&mut c).await.unwrap_err();
    assert!(
        elsewhere
            .to_string()
            .contains("in the channel of its parent"),
        "{elsewhere}"
    );

    let bad_shape = sqlx::query(
        "insert into chat (channel_id, user_id, message) values ($1, $2, '{\"text\": 5}')",
    )
    .bind(w.channel)
    .bind(w.alice)
    .execute(&mut c)
    .await
    .unwrap_err();
    assert!(
        bad_shape.to_string().contains("chat_message_shape"),
        "{bad_shape}"
    );
}

#[tokio::test]
async fn channel_names_follow_slacks_rules() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let w = world(&mut c).await;
    let long = "x".repeat(81);
    for bad in ["Has-Upper", "has space", "has.period", long.as_str()] {
        let err = sqlx::query("insert into channels (workspace_id, name) values ($1, $2)")
            .bind(w.ws)
            .bind(bad)
            .execute(&mut c)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("channels_name_format"),
            "{bad}: {err}"
        );
    }
    let ok = "x".repeat(80);
    sqlx::query("insert into channels (workspace_id, name) values ($1, $2)")
        .bind(w.ws)
        .bind(&ok)
        .execute(&mut c)
        .await
        .unwrap();
    let dup = sqlx::query("insert into channels (workspace_id, name) values ($1, 'general')")
        .bind(w.ws)
        .execute(&mut c)
        .await
        .unwrap_err();
    assert!(
        dup.to_string().contains("channels_workspace_name_key"),
        "{dup}"
    );
}

#[tokio::test]
async fn one_dm_per_pair_and_no_sharing_into_the_home_workspace() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let w = world(&mut c).await;
    let key = "a,b";
    sqlx::query("insert into channels (workspace_id, kind, dm_key) values ($1, 'dm', $2)")
        .bind(w.ws)
        .bind(key)
        .execute(&mut c)
        .await
        .unwrap();
    let again =
        sqlx::query("insert into channels (workspace_id, kind, dm_key) values ($1, 'dm', $2)")
            .bind(w.ws)
            .bind(key)
            .execute(&mut c)
            .await
            .unwrap_err();
    assert!(
        again.to_string().contains("channels_workspace_dm_key"),
        "{again}"
    );
    let named_dm = sqlx::query(
        "insert into channels (workspace_id, kind, name, dm_key) values ($1, 'dm', 'x', 'c,d')",
    )
    .bind(w.ws)
    .execute(&mut c)
    .await
    .unwrap_err();
    assert!(
        named_dm.to_string().contains("channels_name_iff_not_dm"),
        "{named_dm}"
    );

    let home =
        sqlx::query("insert into shared_channels (channel_id, workspace_id) values ($1, $2)")
            .bind(w.channel)
            .bind(w.ws)
            .execute(&mut c)
            .await
            .unwrap_err();
    assert!(
        home.to_string()
            .contains("cannot be shared into its own workspace"),
        "{home}"
    );
}

#[tokio::test]
async fn chat_tables_are_published_to_realtime_with_full_old_rows() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let published: Vec<String> = sqlx::query_scalar("select tablename::text from pg_publication_tables where pubname = 'supabase_realtime' order by 1")
        .fetch_all(&mut c).await.unwrap();
    assert_eq!(
        published,
        vec!["channels", "chat", "emojis", "members", "mentions"]
    );
    let identity: String = sqlx::query_scalar(
        "select relreplident::text from pg_class where oid = 'public.chat'::regclass",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(identity, "f");
    let without_rls: Vec<String> = sqlx::query_scalar("select relname::text from pg_class where relnamespace = 'public'::regnamespace and relkind = 'r' and not relrowsecurity")
        .fetch_all(&mut c).await.unwrap();
    assert!(
        without_rls.is_empty(),
        "every public table has RLS: {without_rls:?}"
    );
}

/// What a Supabase project already has, approximated: its own auth and storage schemas
/// (with columns and bodies ours lack), its functions, and its publication.
const SUPABASE_LIKE: &str = r#"
create schema auth;
create table auth.users (
    instance_id uuid, id uuid primary key, aud varchar(255), role varchar(255), email varchar(255),
    encrypted_password varchar(255), email_confirmed_at timestamptz, confirmation_token varchar(255),
    recovery_token varchar(255), email_change_token_new varchar(255), email_change varchar(255),
    raw_app_meta_data jsonb, raw_user_meta_data jsonb, created_at timestamptz, updated_at timestamptz,
    last_sign_in_at timestamptz,
    is_sso_user boolean not null default false, supabase_only_column text default 'theirs'
);
create table auth.identities (id uuid primary key default gen_random_uuid(), user_id uuid references auth.users(id),
    provider_id text not null, provider text not null, identity_data jsonb not null);
create function auth.uid() returns uuid language sql stable as $$
    select nullif((nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'), '')::uuid -- supabase's
$$;
create function auth.role() returns text language sql stable as $$ select 'theirs'::text $$;
create function auth.jwt() returns jsonb language sql stable as $$ select '{}'::jsonb $$;
create schema storage;
create table storage.buckets (id text primary key, name text not null, owner uuid, created_at timestamptz default now(),
    updated_at timestamptz default now(), public boolean default false, avif_autodetection boolean default false,
    file_size_limit bigint, allowed_mime_types text[], owner_id text);
create table storage.objects (id uuid primary key default gen_random_uuid(), bucket_id text references storage.buckets(id),
    name text, owner uuid, created_at timestamptz default now(), updated_at timestamptz default now(),
    last_accessed_at timestamptz default now(), metadata jsonb, version text, owner_id text, user_metadata jsonb);
create publication supabase_realtime;
"#;

#[tokio::test]
async fn migrations_run_unchanged_where_supabase_objects_already_exist() {
    let db = TestDb::empty().await;
    let mut c = db.conn().await;
    sqlx::raw_sql(SUPABASE_LIKE).execute(&mut c).await.unwrap();
    let m = Migrations::load(&Source::Embedded).await.unwrap();
    let mut mc = migrate::connect(&db.url, Duration::from_secs(10))
        .await
        .unwrap();
    let opts = UpOptions {
        target: None,
        dry_run: false,
        lock_timeout: Duration::from_secs(30),
    };
    migrate::up(&mut mc, &m, &opts).await.unwrap();

    // Nothing of theirs was replaced...
    let created: i64 = sqlx::query_scalar("select count(*) from chatctl.bootstrap_objects")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(created, 0, "the bootstrap created nothing: it all existed");
    let body: String =
        sqlx::query_scalar("select prosrc from pg_proc where oid = 'auth.uid()'::regprocedure")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert!(body.contains("supabase's"), "{body}");
    let col: bool = sqlx::query_scalar("select exists (select 1 from information_schema.columns where table_schema = 'auth' and table_name = 'users' and column_name = 'supabase_only_column')")
        .fetch_one(&mut c).await.unwrap();
    assert!(col);
    // ...our tables joined their publication...
    let published: i64 = sqlx::query_scalar(
        "select count(*) from pg_publication_tables where pubname = 'supabase_realtime'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(published, 5);
    // ...the schema works on their auth.users...
    let alice = user(&mut c, "alice").await;
    assert_ne!(alice, Uuid::nil());

    // ...and reverting everything leaves their objects alone.
    let down = migrate::DownOptions {
        target: migrate::DownTarget::Version(0),
        dry_run: false,
        lock_timeout: Duration::from_secs(30),
    };
    migrate::down(&mut mc, &m, &down).await.unwrap();
    let still: Vec<Option<String>> = sqlx::query_scalar("select to_regclass(t)::text from unnest(array['auth.users', 'auth.identities', 'storage.buckets', 'storage.objects']) t")
        .fetch_all(&mut c).await.unwrap();
    assert!(still.iter().all(Option::is_some), "{still:?}");
    let publication: bool = sqlx::query_scalar(
        "select exists (select 1 from pg_publication where pubname = 'supabase_realtime')",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert!(publication);
}

#[tokio::test]
async fn on_plain_postgres_the_bootstrap_creates_what_supabase_would_have() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let created: Vec<String> =
        sqlx::query_scalar("select kind || ' ' || name from chatctl.bootstrap_objects order by 1")
            .fetch_all(&mut c)
            .await
            .unwrap();
    for want in [
        "table auth.users",
        "table auth.identities",
        "function auth.uid()",
        "table storage.objects",
        "publication supabase_realtime",
    ] {
        assert!(created.contains(&want.to_owned()), "{want} in {created:?}");
    }
    // auth.uid() reads request.jwt.claims as PostgREST sets it.
    let id = Uuid::new_v4();
    sqlx::query("select set_config('request.jwt.claims', $1, false)")
        .bind(format!(r#"{{"sub":"{id}","role":"authenticated"}}"#))
        .execute(&mut c)
        .await
        .unwrap();
    let (uid, role): (Uuid, String) = sqlx::query_as("select auth.uid(), auth.role()")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!((uid, role.as_str()), (id, "authenticated"));
    // confirmed_at is generated, as in Supabase.
    let alice = user(&mut c, "alice").await;
    let confirmed: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select confirmed_at from auth.users where id = $1")
            .bind(alice)
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert!(confirmed.is_some());
}

/// The outline's `channels.is_private` and chatctl's `kind` are one thing: either may be
/// written, and they never disagree (issue 20).
#[tokio::test]
async fn is_private_and_kind_are_kept_one_thing() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let w = world(&mut c).await;
    let kind_of = |name: &'static str| {
        sqlx::query_as::<_, (String, bool)>("select kind, is_private from channels where name = $1")
            .bind(name)
    };
    // Written through the outline's name only, as a client of the outline would.
    sqlx::query(
        "insert into channels (workspace_id, name, is_private) values ($1, 'secret', true)",
    )
    .bind(w.ws)
    .execute(&mut c)
    .await
    .unwrap();
    let got = kind_of("secret").fetch_one(&mut c).await.unwrap();
    assert_eq!(got, ("private".to_owned(), true));
    // Neither: public, as before.
    let got = kind_of("general").fetch_one(&mut c).await.unwrap();
    assert_eq!(got, ("public".to_owned(), false));
    // Both, disagreeing: refused, by the constraint's name.
    let e = sqlx::query(
        "insert into channels (workspace_id, name, kind, is_private) values ($1, 'odd', 'public', true)",
    )
    .bind(w.ws)
    .execute(&mut c)
    .await
    .unwrap_err();
    assert!(e.to_string().contains("is_private"), "{e}");
    // A change of either changes the other.
    sqlx::query("update channels set is_private = true where name = 'general'")
        .execute(&mut c)
        .await
        .unwrap();
    let got = kind_of("general").fetch_one(&mut c).await.unwrap();
    assert_eq!(got, ("private".to_owned(), true));
    sqlx::query("update channels set kind = 'public' where name = 'secret'")
        .execute(&mut c)
        .await
        .unwrap();
    let got = kind_of("secret").fetch_one(&mut c).await.unwrap();
    assert_eq!(got, ("public".to_owned(), false));
    // A direct message is private, and stays a direct message.
    let dm: bool = sqlx::query_scalar(
        "insert into channels (workspace_id, kind, dm_key) values ($1, 'dm', 'a,b') returning is_private",
    )
    .bind(w.ws)
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert!(dm);
    let e = sqlx::query("update channels set is_private = false where kind = 'dm'")
        .execute(&mut c)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("direct message"), "{e}");
    // Even with the trigger set aside (a bulk load, a repair by hand), the table refuses
    // the two apart.
    sqlx::raw_sql("alter table channels disable trigger channels_derive_kind")
        .execute(&mut c)
        .await
        .unwrap();
    let e = sqlx::query("update channels set is_private = false where name = 'general'")
        .execute(&mut c)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("channels_is_private_kind"), "{e}");
}

/// `chat.modified_at` (the outline's name): null until the author changes the message; an
/// edit of the text sets it, a reply does not, and a client that sends it gets the
/// database's time, never its own (issue 20).
#[tokio::test]
async fn modified_at_says_when_the_author_last_changed_the_message() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let w = world(&mut c).await;
    for join in [
        "insert into workspace_members (workspace_id, user_id) select workspace_id, $2 from channels where id = $1",
        "insert into members (channel_id, user_id) values ($1, $2)",
    ] {
        sqlx::query(join)
            .bind(w.channel)
            .bind(w.alice)
            .execute(&mut c)
            .await
            .unwrap();
    }
    let id = post(&mut c, &w, None, "first draft").await;
    let modified = |id: Uuid| {
        sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
            "select modified_at from chat where id = $1",
        )
        .bind(id)
    };
    assert_eq!(modified(id).fetch_one(&mut c).await.unwrap(), None);
    post(&mut c, &w, Some(id), "a reply").await;
    assert_eq!(
        modified(id).fetch_one(&mut c).await.unwrap(),
        None,
        "a reply is not a change by the author"
    );
    sqlx::query("update chat set message = '{\"text\": \"second draft\"}' where id = $1")
        .bind(id)
        .execute(&mut c)
        .await
        .unwrap();
    let edited = modified(id).fetch_one(&mut c).await.unwrap();
    assert!(edited.is_some(), "an edit of the text sets it");

    // As the web app of the outline does it: the author sends modified_at with a forged time.
    let mut tx = sqlx::Connection::begin(&mut c).await.unwrap();
    chatctl::db::app_queries::act_as(&mut tx, "authenticated", Some(w.alice))
        .await
        .unwrap();
    let done = sqlx::query(
        "update public.chat set message = '{\"text\": \"final\"}', modified_at = '2001-01-01' where id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await
    .unwrap();
    assert_eq!(done.rows_affected(), 1);
    tx.commit().await.unwrap();
    let stamped = modified(id).fetch_one(&mut c).await.unwrap().unwrap();
    assert!(
        stamped >= edited.unwrap() && stamped.format("%Y").to_string() != "2001",
        "{stamped}"
    );
}

/// `shared_channels` in the outline's names: the target may be given as `workspace_id` or
/// `target_workspace_id`, and the origin, name, topic and privacy are the channel's, kept
/// so when the channel changes (issue 20).
#[tokio::test]
async fn a_sharing_carries_the_outlines_columns_and_follows_its_channel() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let w = world(&mut c).await;
    let partner: Uuid = sqlx::query_scalar(
        "insert into workspaces (slug, name) values ('partner', 'Partner') returning id",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    // Through the outline's name only.
    sqlx::query("insert into shared_channels (channel_id, target_workspace_id) values ($1, $2)")
        .bind(w.channel)
        .bind(partner)
        .execute(&mut c)
        .await
        .unwrap();
    let row = || {
        sqlx::query_as::<_, (Uuid, Uuid, Uuid, String, String, bool)>(
            "select workspace_id, target_workspace_id, origin_workspace_id, name, topic, is_private
               from shared_channels where channel_id = $1",
        )
        .bind(w.channel)
    };
    let got = row().fetch_one(&mut c).await.unwrap();
    assert_eq!(
        got,
        (
            partner,
            partner,
            w.ws,
            "general".into(),
            String::new(),
            false
        )
    );
    // The channel changes: the sharing follows.
    sqlx::query("update channels set name = 'town-square', topic = 'all hands' where id = $1")
        .bind(w.channel)
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("update channels set is_private = true where id = $1")
        .bind(w.channel)
        .execute(&mut c)
        .await
        .unwrap();
    let got = row().fetch_one(&mut c).await.unwrap();
    assert_eq!(
        (got.3.as_str(), got.4.as_str(), got.5),
        ("town-square", "all hands", true)
    );
    // A forged copy is replaced by the channel's; two targets that disagree are refused.
    sqlx::query("update shared_channels set name = 'forged', origin_workspace_id = $2 where channel_id = $1")
        .bind(w.channel)
        .bind(partner)
        .execute(&mut c)
        .await
        .unwrap();
    let got = row().fetch_one(&mut c).await.unwrap();
    assert_eq!((got.2, got.3.as_str()), (w.ws, "town-square"));
    let e = sqlx::query(
        "insert into shared_channels (channel_id, workspace_id, target_workspace_id)
         select $1, $2, id from workspaces where slug = 'acme'",
    )
    .bind(w.channel)
    .bind(partner)
    .execute(&mut c)
    .await
    .unwrap_err();
    assert!(e.to_string().contains("target_workspace_id"), "{e}");
}

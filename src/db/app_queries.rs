//! The queries the product's web app sends through PostgREST as the signed-in user, in the
//! shape PostgREST writes them: every screen pays their row level security, so they are a
//! contract the policies must keep fast. The `rls` benchmark times them against the service
//! role, and a test asserts their plans (no scan of a large table) on generated data.
//!
//! Each query names the values it binds ([`Param`]); [`pick`] chooses them from a seeded
//! database: a member with many mentions, their busiest channel, a public channel they
//! have not joined, and so on.

use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::{Error, Result};

/// A value a query binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// The signed-in user.
    Me,
    /// A busy channel they are a member of.
    Channel,
    /// A busy public channel of their workspace they have not joined.
    Browsed,
    /// A time deep in the channel's history (a keyset page far back).
    Deep,
    /// A thread root of the channel with the most replies.
    Root,
    /// The ids of the channel's newest page of 50 messages.
    Page,
    /// The channel's workspace.
    Workspace,
    /// Another member of the workspace (a profile the app shows).
    Other,
    /// `["public","private"]`, the kinds of a channel list.
    ChannelKinds,
    /// `["dm","group_dm"]`, the kinds of a DM list.
    DmKinds,
    /// `["<me>"]` as jsonb: what the old "mentions of me" filter contained.
    MeAsJson,
}

/// One query of the app.
#[derive(Debug, Clone, Copy)]
pub struct AppQuery {
    pub name: &'static str,
    pub what: &'static str,
    /// The request the app makes (for the reader).
    pub request: &'static str,
    pub sql: &'static str,
    pub params: &'static [Param],
    /// Tables that must not be scanned whole under row level security.
    pub large: &'static [&'static str],
    /// A page of a list that grows without bound (a timeline, mentions): read in index
    /// order, never all of it fetched and sorted.
    pub ordered: bool,
}

/// PostgREST's envelope around a read (`pgrst_source` is the query proper).
macro_rules! postgrest {
    ($source:literal) => {
        concat!(
            "WITH pgrst_source AS (",
            $source,
            ") SELECT null::bigint AS total_result_set, pg_catalog.count(_postgrest_t) AS page_total, \
             coalesce(json_agg(_postgrest_t), '[]') AS body, \
             nullif(current_setting('response.headers', true), '') AS response_headers, \
             nullif(current_setting('response.status', true), '') AS response_status, \
             '' AS response_inserted FROM (SELECT * FROM pgrst_source) AS _postgrest_t"
        )
    };
}

const TIMELINE: &str = postgrest!(
    r#"SELECT "public"."chat".* FROM "public"."chat" WHERE "public"."chat"."channel_id" = $1 ORDER BY "public"."chat"."created_at" DESC LIMIT 50 OFFSET 0"#
);

/// The queries, in the order the benchmark reports them.
pub const QUERIES: &[AppQuery] = &[
    AppQuery {
        name: "timeline",
        what: "a channel's newest 50 messages",
        request: "GET /chat?channel_id=eq.C&order=created_at.desc&limit=50",
        sql: TIMELINE,
        params: &[Param::Channel],
        large: &["chat"],
        ordered: true,
    },
    AppQuery {
        name: "timeline_browsed",
        what: "the same, of a public channel not joined",
        request: "GET /chat?channel_id=eq.B&order=created_at.desc&limit=50",
        sql: TIMELINE,
        params: &[Param::Browsed],
        large: &["chat"],
        ordered: true,
    },
    AppQuery {
        name: "timeline_deep",
        what: "a keyset page deep in history",
        request: "GET /chat?channel_id=eq.C&created_at=lt.T&order=created_at.desc&limit=50",
        sql: postgrest!(
            r#"SELECT "public"."chat".* FROM "public"."chat" WHERE "public"."chat"."channel_id" = $1 AND "public"."chat"."created_at" < $2 ORDER BY "public"."chat"."created_at" DESC LIMIT 50 OFFSET 0"#
        ),
        params: &[Param::Channel, Param::Deep],
        large: &["chat"],
        ordered: true,
    },
    AppQuery {
        name: "thread",
        what: "a thread's replies",
        request: "GET /chat?parent_id=eq.R&order=created_at.asc&limit=100",
        sql: postgrest!(
            r#"SELECT "public"."chat".* FROM "public"."chat" WHERE "public"."chat"."parent_id" = $1 ORDER BY "public"."chat"."created_at" ASC LIMIT 100 OFFSET 0"#
        ),
        params: &[Param::Root],
        large: &["chat"],
        ordered: false,
    },
    AppQuery {
        name: "reactions",
        what: "the reactions of a page of 50",
        request: "GET /emojis?chat_id=in.(…50 ids)",
        sql: postgrest!(
            r#"SELECT "public"."emojis".* FROM "public"."emojis" WHERE "public"."emojis"."chat_id" = ANY($1)"#
        ),
        params: &[Param::Page],
        large: &["chat", "emojis"],
        ordered: false,
    },
    AppQuery {
        name: "attachments",
        what: "the files of a page of 50",
        request: "GET /attachments?message_id=in.(…50 ids)",
        sql: postgrest!(
            r#"SELECT "public"."attachments".* FROM "public"."attachments" WHERE "public"."attachments"."message_id" = ANY($1)"#
        ),
        params: &[Param::Page],
        // `dev seed` writes no files: the table is empty there.
        large: &["chat"],
        ordered: false,
    },
    AppQuery {
        name: "channels",
        what: "a page of the workspace's channel browser",
        request: "GET /channels?workspace_id=eq.W&kind=in.(public,private)&select=id,name,kind,topic,archived_at&order=name&limit=100",
        sql: postgrest!(
            r#"SELECT "public"."channels"."id", "public"."channels"."name", "public"."channels"."kind", "public"."channels"."topic", "public"."channels"."archived_at" FROM "public"."channels" WHERE "public"."channels"."workspace_id" = $1 AND "public"."channels"."kind" = ANY($2) ORDER BY "public"."channels"."name" ASC LIMIT 100 OFFSET 0"#
        ),
        params: &[Param::Workspace, Param::ChannelKinds],
        large: &["chat", "members"],
        ordered: false,
    },
    AppQuery {
        name: "dms",
        what: "their DMs and group DMs",
        request: "GET /members?user_id=eq.ME&select=channel_id,last_read_at,channels!inner(id,kind,dm_key)&channels.kind=in.(dm,group_dm)",
        sql: postgrest!(
            r#"SELECT "public"."members"."channel_id", "public"."members"."last_read_at", row_to_json("members_channels_1".*)::jsonb AS "channels" FROM "public"."members" INNER JOIN LATERAL (SELECT "channels_1"."id", "channels_1"."kind", "channels_1"."dm_key" FROM "public"."channels" AS "channels_1" WHERE "channels_1"."id" = "public"."members"."channel_id" AND "channels_1"."kind" = ANY($2)) AS "members_channels_1" ON TRUE WHERE "public"."members"."user_id" = $1"#
        ),
        params: &[Param::Me, Param::DmKinds],
        large: &["chat", "members"],
        ordered: false,
    },
    AppQuery {
        name: "members",
        what: "a page of 100 members of a channel, with their profiles",
        request: "GET /members?channel_id=eq.C&select=user_id,role,users(id,username,name,avatar_url)&order=user_id&limit=100",
        sql: postgrest!(
            r#"SELECT "public"."members"."user_id", "public"."members"."role", row_to_json("members_users_1".*)::jsonb AS "users" FROM "public"."members" LEFT JOIN LATERAL (SELECT "users_1"."id", "users_1"."username", "users_1"."name", "users_1"."avatar_url" FROM "public"."users" AS "users_1" WHERE "users_1"."id" = "public"."members"."user_id") AS "members_users_1" ON TRUE WHERE "public"."members"."channel_id" = $1 ORDER BY "public"."members"."user_id" ASC LIMIT 100 OFFSET 0"#
        ),
        params: &[Param::Channel],
        large: &["chat", "members"],
        ordered: true,
    },
    AppQuery {
        name: "mentions",
        what: "their 20 newest mentions, with the messages",
        request: "GET /mentions?user_id=eq.ME&order=created_at.desc&limit=20&select=message_id,channel_id,created_at,chat(id,user_id,message,created_at)",
        sql: postgrest!(
            r#"SELECT "public"."mentions"."message_id", "public"."mentions"."channel_id", "public"."mentions"."created_at", row_to_json("mentions_chat_1".*)::jsonb AS "chat" FROM "public"."mentions" LEFT JOIN LATERAL (SELECT "chat_1"."id", "chat_1"."user_id", "chat_1"."message", "chat_1"."created_at" FROM "public"."chat" AS "chat_1" WHERE "chat_1"."id" = "public"."mentions"."message_id") AS "mentions_chat_1" ON TRUE WHERE "public"."mentions"."user_id" = $1 ORDER BY "public"."mentions"."created_at" DESC LIMIT 20 OFFSET 0"#
        ),
        params: &[Param::Me],
        large: &["chat", "mentions"],
        ordered: true,
    },
    AppQuery {
        name: "unread",
        what: "unread counts per channel (RPC)",
        request: "POST /rpc/unread_counts",
        sql: postgrest!(r#"SELECT "pgrst_call".* FROM "public"."unread_counts"() AS "pgrst_call""#),
        params: &[],
        large: &["members"],
        ordered: false,
    },
    AppQuery {
        name: "profile",
        what: "a profile and status",
        request: "GET /users?id=eq.U&select=id,username,name,avatar_url,user_status(presence,status_text,status_emoji)",
        sql: postgrest!(
            r#"SELECT "public"."users"."id", "public"."users"."username", "public"."users"."name", "public"."users"."avatar_url", row_to_json("users_user_status_1".*)::jsonb AS "user_status" FROM "public"."users" LEFT JOIN LATERAL (SELECT "user_status_1"."presence", "user_status_1"."status_text", "user_status_1"."status_emoji" FROM "public"."user_status" AS "user_status_1" WHERE "user_status_1"."user_id" = "public"."users"."id") AS "users_user_status_1" ON TRUE WHERE "public"."users"."id" = $1"#
        ),
        params: &[Param::Other],
        large: &["chat", "members", "workspace_members"],
        ordered: false,
    },
    AppQuery {
        name: "readable",
        what: "the channels they may read (search's filter)",
        request: "chatctl search --as: select id from channels",
        sql: "select id from public.channels",
        params: &[],
        large: &["chat", "members"],
        ordered: false,
    },
];

/// "Mentions of me" before migration 0009 (a filter on `chat.message`): the baseline.
pub const MENTIONS_BEFORE: AppQuery = AppQuery {
    name: "mentions",
    what: "their 20 newest mentions (filtering chat.message)",
    request: "GET /chat?message->mentions=cs.[\"ME\"]&order=created_at.desc&limit=20",
    sql: postgrest!(
        r#"SELECT "public"."chat".* FROM "public"."chat" WHERE ("public"."chat"."message" -> 'mentions') @> $1 ORDER BY "public"."chat"."created_at" DESC LIMIT 20 OFFSET 0"#
    ),
    params: &[Param::MeAsJson],
    large: &["chat"],
    ordered: true,
};

/// The values the queries bind, chosen from the data.
#[derive(Debug, Clone, Serialize)]
pub struct Picks {
    pub me: Uuid,
    pub channel: Uuid,
    pub browsed: Option<Uuid>,
    pub deep: chrono::DateTime<chrono::Utc>,
    pub root: Uuid,
    pub page: Vec<Uuid>,
    pub workspace: Uuid,
    pub other: Uuid,
}

/// A bound value.
pub enum Value {
    Uuid(Uuid),
    Uuids(Vec<Uuid>),
    Time(chrono::DateTime<chrono::Utc>),
    Texts(Vec<String>),
    Json(serde_json::Value),
}

impl Value {
    /// The value as an SQL literal (for EXPLAIN, which takes no parameters).
    pub fn literal(&self) -> String {
        let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let array = |items: Vec<String>, ty: &str| format!("array[{}]::{ty}[]", items.join(", "));
        match self {
            Value::Uuid(u) => format!("{}::uuid", quote(&u.to_string())),
            Value::Uuids(us) => array(us.iter().map(|u| quote(&u.to_string())).collect(), "uuid"),
            Value::Time(t) => format!("{}::timestamptz", quote(&t.to_rfc3339())),
            Value::Texts(ts) => array(ts.iter().map(|t| quote(t)).collect(), "text"),
            Value::Json(j) => format!("{}::jsonb", quote(&j.to_string())),
        }
    }

    /// The SQL type of the value.
    pub fn sql_type(&self) -> &'static str {
        match self {
            Value::Uuid(_) => "uuid",
            Value::Uuids(_) => "uuid[]",
            Value::Time(_) => "timestamptz",
            Value::Texts(_) => "text[]",
            Value::Json(_) => "jsonb",
        }
    }
}

impl Picks {
    /// The value of `p`, or `None` when the data has none (no public channel left to browse).
    pub fn value(&self, p: Param) -> Option<Value> {
        Some(match p {
            Param::Me => Value::Uuid(self.me),
            Param::Channel => Value::Uuid(self.channel),
            Param::Browsed => Value::Uuid(self.browsed?),
            Param::Deep => Value::Time(self.deep),
            Param::Root => Value::Uuid(self.root),
            Param::Page => Value::Uuids(self.page.clone()),
            Param::Workspace => Value::Uuid(self.workspace),
            Param::Other => Value::Uuid(self.other),
            Param::ChannelKinds => Value::Texts(vec!["public".into(), "private".into()]),
            Param::DmKinds => Value::Texts(vec!["dm".into(), "group_dm".into()]),
            Param::MeAsJson => Value::Json(serde_json::json!([self.me])),
        })
    }

    /// The values of `query`, or `None` when the data lacks one.
    pub fn values(&self, query: &AppQuery) -> Option<Vec<Value>> {
        query.params.iter().map(|p| self.value(*p)).collect()
    }

    /// `query`'s SQL with its values written in as literals.
    pub fn inline(&self, query: &AppQuery) -> Option<String> {
        let values = self.values(query)?;
        let mut sql = query.sql.to_owned();
        // Highest first: $10 before $1.
        for (i, v) in values.iter().enumerate().rev() {
            sql = sql.replace(&format!("${}", i + 1), &v.literal());
        }
        Some(sql)
    }

    /// `query` with its values bound, ready to run.
    pub fn bind<'q>(
        &self,
        query: &AppQuery,
    ) -> Option<sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>> {
        let mut q = sqlx::query(query.sql);
        for p in query.params {
            q = match self.value(*p)? {
                Value::Uuid(v) => q.bind(v),
                Value::Uuids(v) => q.bind(v),
                Value::Time(v) => q.bind(v),
                Value::Texts(v) => q.bind(v),
                Value::Json(v) => q.bind(v),
            };
        }
        Some(q)
    }
}

/// Chooses the values from a seeded database (as a role that reads everything): the
/// workspace member (not an owner or admin) mentioned most, their busiest public channel,
/// the busiest public channel of their workspace they have not joined, and so on.
pub async fn pick(conn: &mut PgConnection) -> Result<Picks> {
    let me: Option<Uuid> = sqlx::query_scalar(
        "select m.user_id from public.mentions m
           join public.workspace_members w on w.user_id = m.user_id and w.role = 'member'
          group by m.user_id order by count(*) desc, m.user_id limit 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let me = me.ok_or_else(|| Error::failed("no member is mentioned: seed the database first"))?;
    let (channel, workspace): (Uuid, Uuid) = sqlx::query_as(
        "select c.id, c.workspace_id from public.members m join public.channels c on c.id = m.channel_id
          where m.user_id = $1 and c.kind = 'public'
          order by (select count(*) from public.chat x where x.channel_id = c.id) desc, c.id limit 1",
    )
    .bind(me)
    .fetch_one(&mut *conn)
    .await?;
    let browsed: Option<Uuid> = sqlx::query_scalar(
        "select c.id from public.channels c
          where c.workspace_id = $2 and c.kind = 'public'
            and not exists (select 1 from public.members m where m.channel_id = c.id and m.user_id = $1)
          order by (select count(*) from public.chat x where x.channel_id = c.id) desc, c.id limit 1",
    )
    .bind(me)
    .bind(workspace)
    .fetch_optional(&mut *conn)
    .await?;
    let deep: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "select created_at from public.chat where channel_id = $1
          order by created_at desc
          offset least(20000, (select count(*) / 2 from public.chat where channel_id = $1)) limit 1",
    )
    .bind(channel)
    .fetch_one(&mut *conn)
    .await?;
    let root: Uuid = sqlx::query_scalar(
        "select id from public.chat where channel_id = $1 and parent_id is null
          order by total_replies desc, id limit 1",
    )
    .bind(channel)
    .fetch_one(&mut *conn)
    .await?;
    let page: Vec<Uuid> = sqlx::query_scalar(
        "select id from public.chat where channel_id = $1 order by created_at desc limit 50",
    )
    .bind(channel)
    .fetch_all(&mut *conn)
    .await?;
    let other: Uuid = sqlx::query_scalar(
        "select user_id from public.members where channel_id = $1 and user_id <> $2
          order by user_id limit 1",
    )
    .bind(channel)
    .bind(me)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Picks {
        me,
        channel,
        browsed,
        deep,
        root,
        page,
        workspace,
        other,
    })
}

/// A transaction run as PostgREST runs a request with a verified user's token (the
/// `authenticated` role, the token's `claims`), begun in one round trip: `BEGIN` and the
/// settings go as one simple query.
pub async fn begin_as(
    pool: &sqlx::PgPool,
    claims: &serde_json::Value,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let claims = claims.to_string();
    // A dollar quote whose tag the text does not contain (the text is a verified token's
    // JSON, but nothing is assumed of it).
    let mut tag = String::from("c");
    while claims.contains(&format!("${tag}$")) {
        tag.push('c');
    }
    let begin = format!(
        "begin; select set_config('request.jwt.claims', ${tag}${claims}${tag}$, true), \
         set_config('role', 'authenticated', true)"
    );
    Ok(pool.begin_with(begin).await?)
}

/// Runs the rest of the transaction as PostgREST runs a request with a verified user's token:
/// the `authenticated` role, and the token's `claims` as `request.jwt.claims`.
pub async fn act_as_claims(conn: &mut PgConnection, claims: &serde_json::Value) -> Result<()> {
    sqlx::query(
        "select set_config('request.jwt.claims', $1, true), set_config('role', 'authenticated', true)",
    )
    .bind(claims.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Runs the rest of the transaction as `role` with the JWT claims PostgREST would set (`sub`
/// is the user; the service role's key names none). [`act_as_claims`] takes a verified
/// token's own claims.
pub async fn act_as(conn: &mut PgConnection, role: &str, user: Option<Uuid>) -> Result<()> {
    let claims = match user {
        Some(u) => serde_json::json!({ "sub": u, "role": role, "aud": "authenticated" }),
        None => serde_json::json!({ "role": role }),
    };
    sqlx::query("select set_config('request.jwt.claims', $1, true), set_config('role', $2, true)")
        .bind(claims.to_string())
        .bind(role)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

//! Digests: the one path the daemon's scheduled digests and `chatctl summarize` take (and
//! the HTTP API's channel summary). [`window_digest`] writes a window's digest;
//! [`post_digest`] claims (bot, channel, window) and posts it, once.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::ai::voice::Voice;
use crate::error::Result;

/// A window's digest, for printing.
#[derive(Debug, Clone)]
pub struct WindowDigest {
    /// How many messages the window holds.
    pub messages: usize,
    /// The digest and its text as posted; `None` for an empty window.
    pub digest: Option<(crate::ai::Digest, String)>,
}

/// The digest of `channel`'s messages in `[start, end)` (people's, not bots'), written in
/// `voice`; an engine failure is an error. With `as_user` (a verified token's claims), the
/// messages are read as that user under row level security.
pub async fn window_digest(
    pool: &PgPool,
    voice: &Voice,
    channel: Uuid,
    name: &str,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    tz: chrono_tz::Tz,
    as_user: Option<&serde_json::Value>,
) -> Result<WindowDigest> {
    let mut tx = pool.begin().await?;
    if let Some(claims) = as_user {
        crate::db::app_queries::act_as_claims(&mut tx, claims).await?;
    }
    let digest = stream_digest(
        &mut tx,
        voice,
        Uuid::nil(),
        channel,
        name,
        (start, end),
        true,
    )
    .await?;
    tx.rollback().await?;
    if digest.messages == 0 {
        return Ok(WindowDigest {
            messages: 0,
            digest: None,
        });
    }
    let text = crate::ai::digest_post(&digest, name, start, end, tz);
    Ok(WindowDigest {
        messages: digest.messages,
        digest: Some((digest, text)),
    })
}

/// The digest of `channel`'s window in `voice`, its messages read from `conn` as a stream
/// (never held whole). When the engine fails and not `strict`, the offline engine's, the
/// window read again.
async fn stream_digest(
    conn: &mut sqlx::PgConnection,
    voice: &Voice,
    bot: Uuid,
    channel: Uuid,
    name: &str,
    window: (DateTime<Utc>, DateTime<Utc>),
    strict: bool,
) -> Result<crate::ai::Digest> {
    let messages = crate::db::messages::window_stream(&mut *conn, bot, channel, window);
    match voice
        .engine
        .digest_stream(voice.ask(name, &[]), messages)
        .await
    {
        Ok(d) => Ok(d),
        Err(e) if strict => Err(e),
        Err(e) => {
            voice.fell_back("digest", &e);
            let messages = crate::db::messages::window_stream(conn, bot, channel, window);
            crate::ai::offline::digest_stream(messages).await
        }
    }
}

/// A channel's digest as `chatctl summarize -o json` prints it and the HTTP API answers.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    /// The workspace's slug.
    pub workspace: String,
    /// The channel's name (`direct message` for a DM).
    pub channel: String,
    #[serde(skip)]
    pub channel_id: Uuid,
    pub window: Window,
    pub engine: String,
    pub messages: usize,
    /// The digest; `null` for an empty window or a window posted already.
    pub digest: Option<crate::ai::Digest>,
    /// The digest as text (as posted).
    pub text: Option<String>,
    /// With `--post`: what happened to the (bot, channel, window) claim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post: Option<DigestPost>,
}

/// The `[start, end)` a digest covers, and the time zone its text names them in.
#[derive(Debug, serde::Serialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(serialize_with = "tz_name")]
    pub tz: chrono_tz::Tz,
}

fn tz_name<S: serde::Serializer>(tz: &chrono_tz::Tz, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

impl crate::report::Report for Summary {
    fn human(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        match &self.text {
            Some(text) => writeln!(out, "{text}"),
            None => Ok(()),
        }
    }
}

/// `summary` (its channel and window set) with the window's digest written in `voice`, the
/// messages read as `as_user` (a verified token's claims) when given.
pub async fn summary(
    pool: &PgPool,
    voice: &Voice,
    mut summary: Summary,
    as_user: Option<&serde_json::Value>,
) -> Result<Summary> {
    let written = window_digest(
        pool,
        voice,
        summary.channel_id,
        &summary.channel,
        (summary.window.start, summary.window.end),
        summary.window.tz,
        as_user,
    )
    .await?;
    summary.engine = voice.engine.name();
    summary.messages = written.messages;
    if let Some((digest, text)) = written.digest {
        summary.digest = Some(digest);
        summary.text = Some(text);
    }
    Ok(summary)
}

/// What [`post_digest`] did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DigestPost {
    /// The digest was posted as this message.
    Posted {
        message_id: Uuid,
        #[serde(skip)]
        digest: crate::ai::Digest,
        #[serde(skip)]
        text: String,
    },
    /// The window had no messages: nothing posted, the window claimed.
    Empty,
    /// Another run (a replica, `chatctl summarize --post`, the previous firing still at a
    /// long window) is writing this window's digest now: not started a second time, not
    /// waited for.
    Running,
    /// Someone (a daemon, an earlier run) claimed this window already.
    AlreadyClaimed {
        claimed_by: String,
        claimed_at: DateTime<Utc>,
        message_id: Option<Uuid>,
    },
}

/// Claims (bot, channel, window) and posts the window's digest as the bot, in one
/// transaction: a restart, a second replica or a re-run of `chatctl summarize --post` never
/// posts it twice, and a failure posts nothing and leaves the window unclaimed. `strict`:
/// an engine failure fails the post (the command line) instead of falling back to the
/// offline engine (the daemon).
#[allow(clippy::too_many_arguments)]
pub async fn post_digest(
    pool: &PgPool,
    voice: &Voice,
    bot_user: Uuid,
    instance: &str,
    channel: Uuid,
    name: &str,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    tz: chrono_tz::Tz,
    strict: bool,
) -> Result<DigestPost> {
    let mut tx = pool.begin().await?;
    // The claim below would wait for a run that holds it uncommitted; this lock says so at
    // once. Held until this transaction ends.
    let free: bool = sqlx::query_scalar(
        "select pg_try_advisory_xact_lock(hashtextextended('chatctl digest ' || $1 || ' ' || $2::text || ' ' || $3::text, 0))",
    )
    .bind(&voice.bot)
    .bind(channel)
    .bind(start)
    .fetch_one(&mut *tx)
    .await?;
    if !free {
        return Ok(DigestPost::Running);
    }
    let claimed = sqlx::query(
        "insert into chatctl.bot_digests (bot, channel_id, window_start, window_end, claimed_by)
         values ($1, $2, $3, $4, $5) on conflict do nothing",
    )
    .bind(&voice.bot)
    .bind(channel)
    .bind(start)
    .bind(end)
    .bind(instance)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !claimed {
        drop(tx);
        let (claimed_by, claimed_at, message_id): (String, DateTime<Utc>, Option<Uuid>) =
            sqlx::query_as(
                "select claimed_by, claimed_at, message_id from chatctl.bot_digests
                  where bot = $1 and channel_id = $2 and window_start = $3",
            )
            .bind(&voice.bot)
            .bind(channel)
            .bind(start)
            .fetch_one(pool)
            .await?;
        return Ok(DigestPost::AlreadyClaimed {
            claimed_by,
            claimed_at,
            message_id,
        });
    }
    let digest = stream_digest(
        &mut tx,
        voice,
        bot_user,
        channel,
        name,
        (start, end),
        strict,
    )
    .await?;
    if digest.messages == 0 {
        // An empty window posts nothing, but stays claimed.
        tx.commit().await?;
        return Ok(DigestPost::Empty);
    }
    let text = crate::ai::digest_post(&digest, name, start, end, tz);
    let id: Uuid = sqlx::query_scalar(
        "insert into public.chat (channel_id, user_id, message) values ($1, $2, jsonb_build_object('text', $3::text)) returning id",
    )
    .bind(channel)
    .bind(bot_user)
    .bind(&text)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("update chatctl.bot_digests set message_id = $4 where bot = $1 and channel_id = $2 and window_start = $3")
        .bind(&voice.bot)
        .bind(channel)
        .bind(start)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(target: "chatctl::action", bot = %voice.bot, channel = %name, %start, %end, "digest posted");
    Ok(DigestPost::Posted {
        message_id: id,
        digest,
        text,
    })
}

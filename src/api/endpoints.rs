//! The endpoints. Each reads as the caller (their verified claims, the `authenticated` role,
//! row level security), so what a caller cannot read is not there for them: a channel they
//! may not read answers 404, like one that does not exist.

use std::sync::{Arc, LazyLock};

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use super::{Api, ApiError, Caller};
use crate::ai::voice::Voice;

type Answer<T> = std::result::Result<Json<T>, ApiError>;

/// A transaction as `caller`: their claims, the `authenticated` role, row level security.
async fn as_caller(api: &Api, caller: &Caller) -> Result<Transaction<'static, Postgres>, ApiError> {
    Ok(crate::db::app_queries::begin_as(&api.pool, &caller.claims).await?)
}

/// The voice the API answers in: the default assistant, its tokens paid from the caller's
/// daily budget.
fn voice(api: &Api, caller: &Caller) -> Voice {
    let mut voice = crate::bots::spec::BotSpec::named("chatctl").voice(
        api.engine.clone(),
        api.settings.daily_token_budget,
        None,
    );
    voice.payer = Some(format!("user:{}", caller.user_id));
    voice
}

/// An engine failure as the API answers it: a spent budget is the caller's 429 (until the
/// next UTC day), anything else a 503.
fn ai_failed(e: anyhow::Error, what: &str) -> ApiError {
    let spent = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<crate::ai::AiError>(),
            Some(crate::ai::AiError::BudgetSpent { .. })
        )
    });
    if spent {
        let now = Utc::now();
        let tomorrow = (now.date_naive() + chrono::Days::new(1))
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc();
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "budget_spent",
            "your daily AI token budget is spent; it renews at midnight UTC",
        )
        .retry_after((tomorrow - now).num_seconds().max(1) as u64);
    }
    tracing::warn!(error = %crate::error::render(&e).message, "the AI could not write the {what}");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ai_unavailable",
        format!("the AI could not write the {what}; try again later"),
    )
    .retry_after(30)
}

/// `GET /readyz`: the database answers (and whether this replica's search index is built).
pub async fn ready(State(api): State<Arc<Api>>) -> impl IntoResponse {
    let db = sqlx::query("select 1").execute(&api.pool).await.is_ok();
    let index = matches!(api.indexer.dir().current_name(), Ok(Some(_)));
    let body = serde_json::json!({
        "database": if db { "ok" } else { "down" },
        "search_index": if index { "ready" } else { "building (searches use PostgreSQL)" },
    });
    let status = if db {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// `GET /metrics`.
pub async fn metrics(State(api): State<Arc<Api>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        api.metrics.render(),
    )
}

/// The OpenAPI document, as written in `openapi.yaml`.
pub static OPENAPI: LazyLock<serde_json::Value> = LazyLock::new(|| {
    serde_yaml::from_str(include_str!("openapi.yaml")).expect("openapi.yaml is valid YAML")
});

/// `GET /api/openapi.json`.
pub async fn openapi() -> Json<&'static serde_json::Value> {
    Json(&OPENAPI)
}

/// `POST /api/chat/generate-response`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    pub channel_id: Uuid,
    pub user_id: Uuid,
    pub last_message: String,
    #[serde(default)]
    pub thread_id: Option<Uuid>,
}

#[derive(Debug, Serialize)]
pub struct GenerateResponse {
    pub ai_response: String,
    /// The earlier messages the reply draws on (ids), best first.
    pub cited_message_ids: Vec<String>,
    pub engine: String,
}

pub async fn generate_response(
    State(api): State<Arc<Api>>,
    caller: Caller,
    body: std::result::Result<Json<GenerateRequest>, JsonRejection>,
) -> Answer<GenerateResponse> {
    let Json(req) = body.map_err(ApiError::body)?;
    if req.user_id != caller.user_id {
        return Err(ApiError::forbidden("user_id must be the signed-in user's"));
    }
    if req.last_message.trim().is_empty() {
        return Err(ApiError::invalid("last_message is empty"));
    }
    let mut tx = as_caller(&api, &caller).await?;
    let channel = readable_channel(&mut tx, req.channel_id).await?;
    let author: Option<String> =
        sqlx::query_scalar("select username from public.users where id = $1")
            .bind(caller.user_id)
            .fetch_optional(&mut *tx)
            .await?;
    if let Some(root) = req.thread_id {
        let in_channel: bool = sqlx::query_scalar(
            "select exists (select 1 from public.chat
                             where id = $1 and channel_id = $2 and parent_id is null)",
        )
        .bind(root)
        .bind(req.channel_id)
        .fetch_one(&mut *tx)
        .await?;
        if !in_channel {
            return Err(ApiError::not_found("no such thread in this channel"));
        }
    }
    tx.rollback().await?;
    let voice = voice(&api, &caller);
    let index = api.indexer.dir().clone();
    let suggested = crate::bots::reply::suggest_reply(
        &api.pool,
        &voice,
        &crate::bots::reply::ReplyRequest {
            reader: Uuid::nil(),
            channel: req.channel_id,
            channel_name: &channel.name,
            thread: req.thread_id,
            at: Utc::now(),
            author: author.as_deref().unwrap_or("someone"),
            text: &req.last_message,
            prompt: None,
            index: Some(&index),
            strict: true,
        },
    )
    .await
    .map_err(|e| ai_failed(e, "reply"))?;
    Ok(Json(GenerateResponse {
        ai_response: suggested.text,
        cited_message_ids: suggested.related,
        engine: voice.engine.name(),
    }))
}

/// A channel the caller may read.
struct Readable {
    /// Its name (`direct message` for a DM).
    name: String,
    workspace: String,
}

/// The channel `id` as the caller sees it: 404 when they may not read it (or it is not there).
async fn readable_channel(conn: &mut PgConnection, id: Uuid) -> Result<Readable, ApiError> {
    // A channel shared from a workspace the caller is not in has no slug for them.
    let row: Option<(Option<String>, String)> = sqlx::query_as(
        "select c.name, coalesce(w.slug, '') from public.channels c
           left join public.workspaces w on w.id = c.workspace_id
          where c.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let (name, workspace) = row.ok_or_else(|| ApiError::not_found("no such channel"))?;
    Ok(Readable {
        name: name.unwrap_or_else(|| "direct message".into()),
        workspace,
    })
}

/// `GET /api/users/{user_id}/profile`: what the caller may see of a user.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Profile {
    pub id: Uuid,
    /// The display name (the username when none is set).
    pub name: String,
    pub username: String,
    /// Shown to the user themselves and to people of a workspace they share; `null` otherwise.
    pub email: Option<String>,
    pub avatar_url: Option<String>,
    pub is_bot: bool,
    pub created_at: DateTime<Utc>,
    pub deactivated_at: Option<DateTime<Utc>>,
    #[sqlx(json)]
    pub roles: Vec<Role>,
    #[sqlx(flatten)]
    pub stats: Stats,
}

/// A role the user holds, as the product names it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Role {
    /// `workspace_owner`, `workspace_admin`, `workspace_member`, `workspace_guest`,
    /// `channel_owner` or `channel_moderator`.
    pub role: String,
    pub workspace_id: Uuid,
    pub workspace: String,
    pub channel_id: Option<Uuid>,
    pub channel: Option<String>,
}

/// What the user did, counted over what the caller may read.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Stats {
    pub messages_sent: i64,
    pub threads_started: i64,
    pub replies_sent: i64,
    pub reactions_given: i64,
    pub channels_joined: i64,
    pub workspaces: i64,
    pub last_message_at: Option<DateTime<Utc>>,
}

pub async fn profile(
    State(api): State<Arc<Api>>,
    caller: Caller,
    user: std::result::Result<Path<Uuid>, PathRejection>,
) -> Answer<Profile> {
    let Path(user) = user.map_err(ApiError::path)?;
    match read_profile(&api.pool, &caller.claims, user).await? {
        Some(p) => Ok(Json(p)),
        None => Err(ApiError::not_found("no such user")),
    }
}

/// What the user with these verified `claims` may see of `user` (`None`: nothing, or no such
/// user): the profile endpoint's reads, one transaction as the caller.
pub async fn read_profile(
    pool: &sqlx::PgPool,
    claims: &serde_json::Value,
    user: Uuid,
) -> crate::error::Result<Option<Profile>> {
    let mut tx = crate::db::app_queries::begin_as(pool, claims).await?;
    // One statement: every part under the caller's policies.
    let profile: Option<Profile> = sqlx::query_as(
        // The person's workspace and channel memberships are read once each (materialized),
        // for their roles and their counts: each read evaluates its policies' helpers. Their
        // statistics are the counters of `user_activity` (a row per channel, kept by
        // triggers) that the caller may read: the same numbers as counting the messages and
        // reactions the caller may read, at a cost that does not grow with them.
        "with wm as materialized (
                select wm.role, wm.workspace_id, w.slug
                  from public.workspace_members wm
                  left join public.workspaces w on w.id = wm.workspace_id
                 where wm.user_id = $1),
              mc as materialized (
                select m.role, c.id, c.name, c.workspace_id
                  from public.members m join public.channels c on c.id = m.channel_id
                 where m.user_id = $1 and c.kind in ('public', 'private'))
         select u.id, coalesce(nullif(u.name, ''), u.username) as name, u.username,
                u.avatar_url, u.is_bot, u.created_at, u.deactivated_at,
                (select e.email from public.user_emails(array[u.id]) e) as email,
                coalesce((
                    select json_agg(r order by r.workspace, r.channel nulls first, r.role)
                      from (select 'workspace_' || wm.role as role, wm.workspace_id,
                                   wm.slug as workspace, null::uuid as channel_id, null::text as channel
                              from wm where wm.slug is not null
                            union all
                            select 'channel_' || mc.role, w.id, w.slug, mc.id, mc.name
                              from mc join public.workspaces w on w.id = mc.workspace_id
                             where mc.role <> 'member') r), '[]') as roles,
                s.messages_sent, s.threads_started, s.replies_sent, s.last_message_at,
                s.reactions_given,
                (select count(*) from mc) as channels_joined,
                (select count(*) from wm) as workspaces
           from public.users u
          cross join lateral (
                select coalesce(sum(a.messages), 0)::bigint as messages_sent,
                       coalesce(sum(a.threads_started), 0)::bigint as threads_started,
                       coalesce(sum(a.replies), 0)::bigint as replies_sent,
                       coalesce(sum(a.reactions), 0)::bigint as reactions_given,
                       max(a.last_message_at) as last_message_at
                  from public.user_activity a where a.user_id = u.id) s
          where u.id = $1",
    )
    .bind(user)
    .fetch_optional(&mut *tx)
    .await?;
    tx.rollback().await?;
    Ok(profile)
}

/// `POST /api/channels/{channel_id}/summary`.
pub async fn summary(
    State(api): State<Arc<Api>>,
    caller: Caller,
    channel: std::result::Result<Path<Uuid>, PathRejection>,
    body: std::result::Result<Json<crate::ai::window::Named>, JsonRejection>,
) -> Answer<crate::bots::digest::Summary> {
    let Path(channel) = channel.map_err(ApiError::path)?;
    let Json(named) = body.map_err(ApiError::body)?;
    let (start, end) = named.resolve(Utc::now()).map_err(ApiError::invalid)?;
    let mut tx = as_caller(&api, &caller).await?;
    let readable = readable_channel(&mut tx, channel).await?;
    tx.rollback().await?;
    let voice = voice(&api, &caller);
    let summary = crate::bots::digest::Summary {
        workspace: readable.workspace,
        channel: readable.name,
        channel_id: channel,
        window: crate::bots::digest::Window {
            start,
            end,
            tz: named.zone().map_err(ApiError::invalid)?,
        },
        engine: voice.engine.name(),
        messages: 0,
        digest: None,
        text: None,
        post: None,
    };
    let summary = crate::bots::digest::summary(&api.pool, &voice, summary, Some(&caller.claims))
        .await
        .map_err(|e| ai_failed(e, "summary"))?;
    Ok(Json(summary))
}

/// `GET /api/search` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    pub q: String,
    #[serde(default)]
    pub limit: Option<u16>,
    /// A workspace's slug.
    #[serde(default)]
    pub workspace: Option<String>,
}

pub async fn search(
    State(api): State<Arc<Api>>,
    caller: Caller,
    params: std::result::Result<Query<SearchParams>, QueryRejection>,
) -> Answer<crate::search::Results> {
    let Query(params) = params.map_err(ApiError::query)?;
    let limit = params.limit.unwrap_or(20);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit must be from 1 to 1000"));
    }
    if params.q.trim().is_empty() {
        return Err(ApiError::invalid("q is empty"));
    }
    // Who the caller is, the workspace they name and the channels they may read: one
    // statement as the caller.
    let mut tx = as_caller(&api, &caller).await?;
    let (username, workspace, readable): (Option<String>, Option<Uuid>, Vec<Uuid>) =
        sqlx::query_as(
            "select (select username from public.users where id = $1),
                    (select id from public.workspaces where slug = $2),
                    array(select id from public.channels)",
        )
        .bind(caller.user_id)
        .bind(&params.workspace)
        .fetch_one(&mut *tx)
        .await?;
    tx.rollback().await?;
    let username =
        username.ok_or_else(|| ApiError::forbidden("the signed-in user has no profile here"))?;
    if let (Some(slug), None) = (&params.workspace, workspace) {
        return Err(ApiError::not_found(format!("no such workspace `{slug}`")));
    }
    let reader = api.reader()?;
    let request = crate::search::Request {
        text: &params.q,
        as_user: Some((caller.user_id, username)),
        readable: Some(readable),
        workspace,
        limit: limit.into(),
    };
    match crate::search::search(&api.pool, reader.as_deref(), &request).await {
        Ok(results) => Ok(Json(results)),
        Err(crate::search::ResolveError::Query(e)) => Err(ApiError::invalid(e.to_string())),
        Err(crate::search::ResolveError::Other(e)) => Err(ApiError::internal(&e)),
    }
}

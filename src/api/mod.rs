//! `chatctl serve`: the product's backend endpoints, for the web app, behind Supabase access
//! tokens. Each endpoint calls the library path the CLI and the daemon use (a reply is
//! [`crate::bots::reply::suggest_reply`]), and what a caller may reach is decided by running
//! the reading queries as the caller under row level security, not by checks written here.
//!
//! Built so far (issue 19 has the rest): token verification (HS256 with the project's JWT
//! secret), `POST /api/chat/generate-response`, `/healthz`, and JSON errors with a stable
//! `code` for every refusal.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::Result;

/// What the endpoints share: the database, how tokens are verified, the AI engine and the
/// search index.
pub struct Api {
    pub pool: PgPool,
    /// The project's JWT secret (HS256), which signs Supabase access tokens.
    pub jwt_secret: String,
    pub engine: Arc<dyn crate::ai::LanguageModel>,
    pub daily_token_budget: Option<u64>,
    pub index: crate::search::IndexDir,
}

/// A server bound and ready: [`serve`] runs it.
pub struct Bound {
    pub addr: std::net::SocketAddr,
    pub listener: tokio::net::TcpListener,
    pub api: Arc<Api>,
}

/// The API of the database at `url`, bound to `listen` (port 0: any free one).
pub async fn bind(config: &crate::config::Config, url: &str, listen: &str) -> Result<Bound> {
    let jwt_secret = config
        .supabase_jwt_secret()
        .ok_or_else(|| {
            crate::error::Error::usage(
                "serve needs the project's JWT secret to verify access tokens",
            )
            .with_help("set SUPABASE_JWT_SECRET (Supabase dashboard: Settings, API, JWT secret)")
        })?
        .to_owned();
    let pool = crate::db::daemon_pool(url, config).await?;
    let engine = crate::ai::engine(config, Some(pool.clone()), Default::default())?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        anyhow::Error::from(e).context(crate::error::Error::usage(format!(
            "cannot listen on {listen}"
        )))
    })?;
    let addr = listener.local_addr()?;
    Ok(Bound {
        addr,
        listener,
        api: Arc::new(Api {
            pool,
            jwt_secret,
            engine,
            daily_token_budget: config.ai.daily_token_budget,
            index: crate::search::IndexDir::new(config.search_index_dir()),
        }),
    })
}

/// The endpoints.
pub fn router(api: Arc<Api>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/chat/generate-response", post(generate_response))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .with_state(api)
}

/// Serves `api` on `listener` until `shutdown` resolves; requests in flight finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Arc<Api>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router(api))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// A refusal or a failure, as JSON: `{"code": "...", "message": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// A failure of ours: logged with its causes, answered without them.
    fn internal(e: &anyhow::Error) -> ApiError {
        tracing::error!(error = %crate::error::render(e).message, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server could not answer; it is logged",
        )
    }

    fn body(rejection: JsonRejection) -> ApiError {
        let (status, code) = match &rejection {
            JsonRejection::MissingJsonContentType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            JsonRejection::JsonDataError(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
            }
            _ => (StatusCode::BAD_REQUEST, "bad_request"),
        };
        ApiError::new(status, code, rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code, "message": self.message });
        (self.status, Json(body)).into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        ApiError::internal(&e)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> ApiError {
        ApiError::internal(&e.into())
    }
}

/// The signed-in user a request comes from: a Supabase access token, verified.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: Uuid,
}

/// The claims chatctl reads from a Supabase access token.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: Uuid,
    role: String,
}

impl FromRequestParts<Arc<Api>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        api: &Arc<Api>,
    ) -> std::result::Result<Caller, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "send the user's Supabase access token: Authorization: Bearer TOKEN",
                )
            })?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_audience(&["authenticated"]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(
            token.trim(),
            &jsonwebtoken::DecodingKey::from_secret(api.jwt_secret.as_bytes()),
            &validation,
        )
        .map_err(|e| ApiError::unauthorized(format!("the access token is not valid: {e}")))?
        .claims;
        if claims.role != "authenticated" {
            return Err(ApiError::unauthorized(
                "the access token is not a signed-in user's",
            ));
        }
        Ok(Caller {
            user_id: claims.sub,
        })
    }
}

/// `POST /api/chat/generate-response`.
#[derive(Debug, Deserialize)]
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

async fn generate_response(
    State(api): State<Arc<Api>>,
    caller: Caller,
    body: std::result::Result<Json<GenerateRequest>, JsonRejection>,
) -> std::result::Result<Json<GenerateResponse>, ApiError> {
    let Json(req) = body.map_err(ApiError::body)?;
    if req.user_id != caller.user_id {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "user_id must be the signed-in user's",
        ));
    }
    if req.last_message.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "last_message is empty",
        ));
    }
    // What the caller may read decides, as row level security says it (a channel they
    // cannot read is not there for them).
    let (channel_name, author, thread_ok) =
        as_caller_read(&api.pool, &caller, req.channel_id, req.thread_id).await?;
    let Some(channel_name) = channel_name else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such channel",
        ));
    };
    if !thread_ok {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such thread in this channel",
        ));
    }
    let voice = crate::bots::spec::BotSpec::named("chatctl").voice(
        api.engine.clone(),
        api.daily_token_budget,
        None,
    );
    let suggested = crate::bots::reply::suggest_reply(
        &api.pool,
        &voice,
        &crate::bots::reply::ReplyRequest {
            reader: Uuid::nil(),
            channel: req.channel_id,
            channel_name: &channel_name,
            thread: req.thread_id,
            at: chrono::Utc::now(),
            author: &author,
            text: &req.last_message,
            prompt: None,
            index: Some(&api.index),
            strict: true,
        },
    )
    .await
    .map_err(|e| {
        tracing::warn!(error = %crate::error::render(&e).message, "the AI could not write a reply");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ai_unavailable",
            "the AI could not write a reply; try again later",
        )
    })?;
    Ok(Json(GenerateResponse {
        ai_response: suggested.text,
        cited_message_ids: suggested.related,
        engine: voice.engine.name(),
    }))
}

/// As the caller, under row level security: the channel's name (`direct message` for a DM;
/// `None` when they cannot read it), their username, and whether `thread` (if given) is a
/// thread of that channel they can read.
async fn as_caller_read(
    pool: &PgPool,
    caller: &Caller,
    channel: Uuid,
    thread: Option<Uuid>,
) -> Result<(Option<String>, String, bool)> {
    let mut tx = pool.begin().await?;
    crate::db::app_queries::act_as(&mut tx, "authenticated", Some(caller.user_id)).await?;
    let name: Option<Option<String>> =
        sqlx::query_scalar("select name from public.channels where id = $1")
            .bind(channel)
            .fetch_optional(&mut *tx)
            .await?;
    let author: Option<String> =
        sqlx::query_scalar("select username from public.users where id = $1")
            .bind(caller.user_id)
            .fetch_optional(&mut *tx)
            .await?;
    let thread_ok = match thread {
        None => true,
        Some(root) => {
            sqlx::query_scalar(
                "select exists (select 1 from public.chat
                             where id = $1 and channel_id = $2 and parent_id is null)",
            )
            .bind(root)
            .bind(channel)
            .fetch_one(&mut *tx)
            .await?
        }
    };
    tx.rollback().await?;
    Ok((
        name.map(|n| n.unwrap_or_else(|| "direct message".into())),
        author.unwrap_or_else(|| "someone".into()),
        thread_ok,
    ))
}

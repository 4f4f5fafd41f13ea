//! Event sources for the bot daemon: Supabase Realtime over a websocket ([`supabase`]) and
//! PostgreSQL LISTEN/NOTIFY ([`listen`], the embedded default).
//!
//! Neither is trusted to deliver everything: Realtime delivery is at most once, and a NOTIFY
//! is lost while the listener reconnects. An event only *wakes* the runtime, which then reads
//! `public.chat` from each bot's persisted cursor; so what a source drops costs latency, never
//! a message.

pub mod listen;
pub mod phoenix;
pub mod supabase;
pub mod token;

use std::future::Future;
use std::pin::Pin;

use uuid::Uuid;

use crate::config::Config;
use crate::error::{Error, Result};

pub use listen::ListenSource;
pub use supabase::{RealtimeOptions, RealtimeSource};

/// At most this many ids in one [`Wake::Inserted`]; a bigger burst is read from the cursor.
pub const MAX_IDS_PER_WAKE: usize = 2000;

/// Why the runtime woke up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// Changes were announced, without saying which.
    Notified,
    /// These messages were inserted: read them (and only them) now.
    Inserted(Vec<Uuid>),
    /// The source is (again) fully subscribed: whatever happened meanwhile must be read.
    Connected,
    /// The source lost (part of) its subscriptions; it reconnects by itself. Nothing to read.
    Disconnected,
}

/// What the runtime wants to hear about: one bot's user and the chat channels it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub bot: String,
    pub user_id: Uuid,
    /// Sorted, without duplicates.
    pub channels: Vec<Uuid>,
}

/// Tells a source that a bot is preparing a reply in a channel (a typing indicator).
#[derive(Debug, Clone)]
pub struct TypingSink(tokio::sync::mpsc::UnboundedSender<(Uuid, Uuid)>);

impl TypingSink {
    pub fn new(tx: tokio::sync::mpsc::UnboundedSender<(Uuid, Uuid)>) -> TypingSink {
        TypingSink(tx)
    }

    /// `bot_user` is typing in `channel`; the source throttles what it sends.
    pub fn typing(&self, bot_user: Uuid, channel: Uuid) {
        let _ = self.0.send((bot_user, channel));
    }
}

/// Where wake-ups come from.
pub trait EventSource: Send {
    fn name(&self) -> &'static str;

    /// The next wake-up. An error is a failure the runtime logs and retries.
    fn next(&mut self) -> Pin<Box<dyn Future<Output = Result<Wake>> + Send + '_>>;

    /// The channels to listen to, per bot; called at start and whenever they may have changed.
    /// A source that hears every change anyway ignores it.
    fn watch(&mut self, _watches: &[Watch]) {}

    /// Where to send typing indicators, if this source can show them.
    fn typing_sink(&self) -> Option<TypingSink> {
        None
    }
}

pub use crate::config::SourceKind;

/// The Realtime websocket endpoint of the configured URL (`realtime.url`, else
/// `supabase.url`): a project's URL gets Realtime's path, a ws:// or wss:// URL is taken as
/// it is.
pub fn websocket_url(config: &Config) -> Result<Option<url::Url>> {
    match &config.realtime.url {
        Some(u) => Ok(Some(
            RealtimeOptions::websocket_url(u.as_str()).map_err(Error::usage)?,
        )),
        None => Ok(None),
    }
}

/// Connects the event source the configuration asks for.
pub async fn connect(config: &Config, pool: &sqlx::PgPool) -> Result<Box<dyn EventSource>> {
    let kind = match config.bots.event_source {
        SourceKind::Auto if config.realtime.url.is_some() => SourceKind::Realtime,
        SourceKind::Auto => SourceKind::Listen,
        k => k,
    };
    match kind {
        SourceKind::Realtime => {
            let url = websocket_url(config)?.ok_or_else(|| {
                Error::usage("bots.event_source is `realtime` but no Realtime URL is configured")
                    .with_help("set SUPABASE_URL (or realtime.url)")
            })?;
            let apikey = config.supabase_service_role_key().ok_or_else(|| {
                Error::usage("the Realtime event source needs the project's service-role key")
                    .with_help("set SUPABASE_SERVICE_ROLE_KEY")
            })?;
            let tokens = match config.supabase_jwt_secret() {
                Some(secret) => token::Tokens::Minted {
                    secret: secret.to_owned(),
                    ttl: config.realtime.token_ttl,
                },
                None => token::Tokens::Fixed(apikey.to_owned()),
            };
            let mut opts = RealtimeOptions::new(url, apikey.to_owned());
            opts.heartbeat = config.realtime.heartbeat;
            Ok(Box::new(RealtimeSource::new(opts, tokens)))
        }
        _ => Ok(Box::new(ListenSource::connect(pool).await?)),
    }
}

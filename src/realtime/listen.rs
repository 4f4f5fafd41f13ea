//! PostgreSQL LISTEN/NOTIFY on `chatctl_events`: the embedded default.
//!
//! The `chat_notify` trigger that sends the notifications is created disabled and switched on
//! here: a NOTIFY takes a global lock at commit that serialises every writer of the database,
//! a fair price on the embedded default, not on a busy Supabase project (which uses Realtime).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

use super::{EventSource, Wake};

/// The message id of a `chat_notify` payload (`{"op": "insert", "id": …, "channel_id": …}`).
fn inserted_id(payload: &str) -> Option<uuid::Uuid> {
    #[derive(serde::Deserialize)]
    struct Payload {
        op: String,
        id: uuid::Uuid,
    }
    serde_json::from_str::<Payload>(payload)
        .ok()
        .filter(|p| p.op == "insert")
        .map(|p| p.id)
}
use crate::error::{Error, Result};

/// LISTEN/NOTIFY on `chatctl_events`; switches the notify trigger on.
pub struct ListenSource {
    listener: PgListener,
    first: bool,
}

impl ListenSource {
    pub async fn connect(pool: &PgPool) -> Result<ListenSource> {
        sqlx::raw_sql("alter table public.chat enable trigger chat_notify")
            .execute(pool)
            .await
            .map_err(|e| {
                Error::failed(format!("cannot switch on the chat_notify trigger: {e}"))
                    .with_help("the LISTEN/NOTIFY source needs the owner of public.chat")
            })?;
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen("chatctl_events").await?;
        Ok(ListenSource {
            listener,
            first: true,
        })
    }
}

impl EventSource for ListenSource {
    fn name(&self) -> &'static str {
        "listen"
    }

    fn next(&mut self) -> Pin<Box<dyn Future<Output = Result<Wake>> + Send + '_>> {
        Box::pin(async move {
            if self.first {
                self.first = false;
                return Ok(Wake::Connected);
            }
            // `try_recv` gives None when the connection was lost and re-established.
            let Some(first) = self.listener.try_recv().await? else {
                return Ok(Wake::Connected);
            };
            // Coalesce a burst into one wake-up, keeping the ids the payloads name.
            let mut ids = Vec::new();
            let mut all_named = true;
            let mut note = |payload: &str| match inserted_id(payload) {
                Some(id) if ids.len() < super::MAX_IDS_PER_WAKE => ids.push(id),
                _ => all_named = false,
            };
            note(first.payload());
            while let Ok(Ok(Some(n))) =
                tokio::time::timeout(Duration::ZERO, self.listener.try_recv()).await
            {
                note(n.payload());
            }
            Ok(if all_named {
                Wake::Inserted(ids)
            } else {
                Wake::Notified
            })
        })
    }
}

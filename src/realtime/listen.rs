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
use crate::error::{Error, Result};

/// The message id of a `chat_notify` payload (`{"op": "insert", "id": …, "channel_id": …}`).
pub(crate) fn inserted_id(payload: &str) -> Option<uuid::Uuid> {
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
/// What the listening task forwards: a notification's payload, `None` when the connection
/// was lost and re-established (anything may have been missed), or an error.
type Item = std::result::Result<Option<String>, String>;

/// LISTEN/NOTIFY on `chatctl_events`; switches the notify trigger on.
///
/// A task of its own owns the listener and forwards every notification, so no read of the
/// connection is ever cancelled half-way (coalescing a burst only drains the channel).
pub struct ListenSource {
    items: tokio::sync::mpsc::UnboundedReceiver<Item>,
    task: tokio::task::JoinHandle<()>,
    first: bool,
}

impl Drop for ListenSource {
    fn drop(&mut self) {
        self.task.abort();
    }
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
        let (tx, items) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let item = match listener.try_recv().await {
                    Ok(n) => Ok(n.map(|n| n.payload().to_owned())),
                    Err(e) => Err(crate::error::scrub(&e.to_string())),
                };
                let failed = item.is_err();
                if tx.send(item).is_err() {
                    return;
                }
                if failed {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
        Ok(ListenSource {
            items,
            task,
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
            let first = match self.items.recv().await {
                None => return Err(Error::failed("the LISTEN connection task stopped").into()),
                Some(Err(e)) => return Err(Error::failed(format!("LISTEN failed: {e}")).into()),
                Some(Ok(None)) => return Ok(Wake::Connected),
                Some(Ok(Some(payload))) => payload,
            };
            // Coalesce a burst into one wake-up, keeping the ids the payloads name.
            let mut ids = Vec::new();
            let mut all_named = true;
            let mut item = Ok(Some(first));
            loop {
                match item.as_ref().map(|p| p.as_deref().and_then(inserted_id)) {
                    Ok(Some(id)) if ids.len() < super::MAX_IDS_PER_WAKE => ids.push(id),
                    // Too many, not an insert, a reconnect or an error: read everything
                    // (the sweep) rather than these.
                    _ => all_named = false,
                }
                match self.items.try_recv() {
                    Ok(next) => item = next,
                    Err(_) => break,
                }
            }
            Ok(if all_named {
                Wake::Inserted(ids)
            } else {
                Wake::Notified
            })
        })
    }
}

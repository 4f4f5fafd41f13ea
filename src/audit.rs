//! The audit log (`chatctl.audit_log`): who changed what, with the before and after.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;

use crate::error::Result;
use crate::report::{self, Report};

/// One entry to record.
#[derive(Debug, Clone)]
pub struct Entry {
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Records entries in one statement, inside the caller's transaction.
pub async fn record(
    conn: &mut PgConnection,
    actor: &str,
    command: &str,
    entries: &[Entry],
) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    let types: Vec<&str> = entries.iter().map(|e| e.object_type.as_str()).collect();
    let ids: Vec<&str> = entries.iter().map(|e| e.object_id.as_str()).collect();
    let before: Vec<Option<Value>> = entries.iter().map(|e| e.before.clone()).collect();
    let after: Vec<Option<Value>> = entries.iter().map(|e| e.after.clone()).collect();
    sqlx::query(
        "insert into chatctl.audit_log (actor, command, action, object_type, object_id, before, after)
         select $1, $2, a, t, i, b, f from unnest($3::text[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[]) as x(a, t, i, b, f)",
    )
    .bind(actor)
    .bind(command)
    .bind(&actions)
    .bind(&types)
    .bind(&ids)
    .bind(&before)
    .bind(&after)
    .execute(conn)
    .await?;
    Ok(())
}

/// A recorded entry.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Recorded {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub command: String,
    pub action: String,
    pub object_type: String,
    pub object_id: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// `chatctl audit list`.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub entries: Vec<Recorded>,
}

impl Report for AuditReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut t = report::table(["AT", "ACTOR", "ACTION", "TYPE", "OBJECT", "COMMAND"]);
        for e in &self.entries {
            t.add_row(vec![
                e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                e.actor.clone(),
                e.action.clone(),
                e.object_type.clone(),
                e.object_id.clone().unwrap_or_default(),
                e.command.clone(),
            ]);
        }
        report::write_table(out, &t)?;
        writeln!(
            out,
            "\n{} entr{}",
            self.entries.len(),
            if self.entries.len() == 1 { "y" } else { "ies" }
        )
    }
}

/// Entries since `since` (newest first), at most `limit`.
pub async fn list(
    conn: &mut PgConnection,
    since: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<AuditReport> {
    let entries = sqlx::query_as::<_, Recorded>(
        "select id, at, actor, command, action, object_type, object_id, before, after
           from chatctl.audit_log where $1::timestamptz is null or at >= $1
          order by id desc limit $2",
    )
    .bind(since)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(AuditReport { entries })
}

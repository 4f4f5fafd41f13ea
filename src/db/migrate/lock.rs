//! The migration lock: one run at a time per database, a session advisory lock polled with
//! a deadline, whose holder is named when the wait runs out.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::Row as _;
use sqlx::postgres::PgConnection;

use crate::error::{Error, Kind, Result};

/// The advisory lock key of migration runs ("chatctl\0").
const LOCK_KEY: i64 = 0x6368_6174_6374_6c00;

/// Takes the session's migration lock, polling until `timeout`; returns how long it waited.
/// Released by [`release_lock`], or with the session, so an early return cannot leak it.
pub(crate) async fn acquire_lock(conn: &mut PgConnection, timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    let mut announced = false;
    loop {
        let got: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut *conn)
            .await
            .context("cannot take the migration lock")?;
        if got {
            return Ok(start.elapsed());
        }
        let holder = lock_holder(conn)
            .await
            .unwrap_or_else(|_| "another session".into());
        if start.elapsed() >= timeout {
            return Err(Error::new(
                Kind::TempFail,
                format!(
                    "gave up after {:.0?} waiting for the migration lock, held by {holder}",
                    timeout
                ),
            )
            .with_help("wait for that run to finish, stop it, or raise --lock-timeout")
            .into());
        }
        if !announced {
            tracing::warn!(holder = %holder, "another migration run holds the lock; waiting");
            announced = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Names the session holding the migration lock.
async fn lock_holder(conn: &mut PgConnection) -> Result<String> {
    let row = sqlx::query(
        "select a.pid, coalesce(nullif(a.application_name, ''), 'unnamed client') as app,
                coalesce(host(a.client_addr), 'local') as addr, a.usename::text as usename,
                a.backend_start
           from pg_locks l join pg_stat_activity a on a.pid = l.pid
          where l.locktype = 'advisory' and l.granted
            and l.database = (select oid from pg_database where datname = current_database())
            and l.classid::bigint = ($1 >> 32) and l.objid::bigint = ($1 & 4294967295)
            and l.objsubid = 1
          limit 1",
    )
    .bind(LOCK_KEY)
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some(r) => {
            let pid: i32 = r.try_get("pid")?;
            let app: String = r.try_get("app")?;
            let addr: String = r.try_get("addr")?;
            let user: Option<String> = r.try_get("usename")?;
            let since: Option<DateTime<Utc>> = r.try_get("backend_start")?;
            format!(
                "`{app}` (server pid {pid}, user {}, from {addr}, connected since {})",
                user.unwrap_or_default(),
                since
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_default()
            )
        }
        None => "another session".into(),
    })
}

pub(crate) async fn release_lock(conn: &mut PgConnection) {
    let _ = sqlx::query("select pg_advisory_unlock($1)")
        .bind(LOCK_KEY)
        .execute(conn)
        .await;
}

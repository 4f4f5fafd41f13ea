//! `chatctl doctor`: what an operator would otherwise check by hand, each check with a
//! status, a one-line reason and the fix. Made for a cron job or a monitoring probe: the
//! exit code is 0 when all is well, 2 with warnings, 1 with failures.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use crate::config::Config;
use crate::error::Result;
use crate::report::{self, Report};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Not applicable here (a feature not configured).
    Skip,
    Warn,
    Fail,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &str, status: Status, reason: impl Into<String>, fix: Option<&str>) -> Check {
        Check {
            name: name.to_owned(),
            status,
            reason: reason.into(),
            fix: fix.map(str::to_owned),
        }
    }
}

/// Every check, in order.
#[derive(Debug, Clone, Serialize)]
pub struct Examination {
    pub checks: Vec<Check>,
    /// The worst status.
    pub status: Status,
}

impl Examination {
    /// 0 all good (skips included), 2 warnings, 1 failures.
    pub fn exit_code(&self) -> crate::error::ExitCode {
        match self.status {
            Status::Ok | Status::Skip => crate::error::ExitCode::Success,
            Status::Warn => crate::error::ExitCode::ChangesPending,
            Status::Fail => crate::error::ExitCode::Failure,
        }
    }
}

impl Report for Examination {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut t = report::table(["CHECK", "STATUS", "WHY", "FIX"]);
        for c in &self.checks {
            let status = match c.status {
                Status::Ok => "ok",
                Status::Skip => "skip",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            t.add_row(vec![
                c.name.clone(),
                status.to_owned(),
                c.reason.clone(),
                c.fix.clone().unwrap_or_default(),
            ]);
        }
        report::write_table(out, &t)
    }
}

/// A bot's cursor lagging more than this behind is a warning (a daemon that stopped).
const CURSOR_LAG: chrono::TimeDelta = chrono::TimeDelta::minutes(10);
/// A claim held longer than this without being done is stuck.
const STUCK_CLAIM: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
/// A search index this many entries behind is a warning.
const SEARCH_BACKLOG: u64 = 10_000;

/// Runs every check against the database at `url` (`reached`: a pool on it, or why there
/// is none).
pub async fn examine(
    config: &Config,
    url: &str,
    reached: std::result::Result<&crate::db::Pool, String>,
) -> Result<Examination> {
    let mut checks = Vec::new();
    let mut held = match reached {
        Ok(pool) => Ok((pool, pool.acquire().await?)),
        Err(why) => Err(why),
    };
    match held.as_mut().map(|(pool, conn)| (*pool, &mut **conn)) {
        Err(why) => checks.push(Check::new(
            "database",
            Status::Fail,
            why.clone(),
            Some("check DATABASE_URL (or --database-url) and that the server is up"),
        )),
        Ok((pool, conn)) => {
            let version: String = sqlx::query_scalar("show server_version")
                .fetch_one(&mut *conn)
                .await?;
            checks.push(Check::new(
                "database",
                Status::Ok,
                format!("reachable, PostgreSQL {version}"),
                None,
            ));
            checks.push(connection(url));
            checks.push(migrations(conn).await?);
            checks.push(row_level_security(conn).await?);
            checks.push(search_index(pool, config).await?);
            checks.extend(bots(conn).await?);
            checks.push(ai_budget(conn, config).await?);
            checks.push(backups(conn).await?);
            checks.push(files(conn).await?);
        }
    }
    checks.push(realtime(config).await);
    let status = checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok);
    Ok(Examination { checks, status })
}

fn connection(url: &str) -> Check {
    match crate::urls::transaction_pooler_reason(url) {
        Some(why) => Check::new(
            "connection",
            Status::Warn,
            format!(
                "a transaction pooler ({why}): migrate, backup and the LISTEN daemon need a session"
            ),
            Some("use the direct connection string (port 5432) for those"),
        ),
        None => Check::new(
            "connection",
            Status::Ok,
            "direct (a session of its own)",
            None,
        ),
    }
}

async fn migrations(conn: &mut PgConnection) -> Result<Check> {
    let migrations =
        crate::db::migrate::Migrations::load(&crate::db::migrate::Source::Embedded).await?;
    let s = crate::db::migrate::status(conn, &migrations).await?;
    let version = s.version.unwrap_or(0);
    Ok(if s.drift > 0 {
        Check::new(
            "migrations",
            Status::Fail,
            format!(
                "{} drifted from chatctl's files (at version {version})",
                s.drift
            ),
            Some("chatctl migrate verify shows which; chatctl migrate status"),
        )
    } else if s.pending > 0 {
        Check::new(
            "migrations",
            Status::Warn,
            format!("{} pending (at version {version})", s.pending),
            Some("chatctl migrate up"),
        )
    } else {
        Check::new(
            "migrations",
            Status::Ok,
            format!("up to date at version {version}"),
            None,
        )
    })
}

/// Objects this much older than their upload with no attachment are abandoned.
const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

async fn files(conn: &mut PgConnection) -> Result<Check> {
    let ready: bool = sqlx::query_scalar(
        "select to_regclass('chatctl.storage_buckets') is not null and to_regclass('storage.objects') is not null",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !ready {
        return Ok(Check::new(
            "files",
            Status::Skip,
            "the schema predates chatctl's buckets",
            Some("chatctl migrate up"),
        ));
    }
    let (missing, orphans) = crate::files::reconcile::counts(conn, ORPHAN_GRACE).await?;
    Ok(if missing == 0 && orphans == 0 {
        Check::new(
            "files",
            Status::Ok,
            "every attachment has its object; no orphaned object older than 24h",
            None,
        )
    } else {
        Check::new(
            "files",
            Status::Warn,
            format!(
                "{missing} attachment(s) whose object is missing, {orphans} orphaned object(s) older than 24h"
            ),
            Some("chatctl files reconcile lists them (--delete --yes removes the orphans)"),
        )
    })
}

async fn row_level_security(conn: &mut PgConnection) -> Result<Check> {
    // The schemas PostgREST and Realtime expose: every table there must have RLS on.
    let open: Vec<String> = sqlx::query_scalar(
        "select n.nspname || '.' || c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where c.relkind in ('r', 'p') and n.nspname in ('public', 'storage')
            and not c.relrowsecurity order by 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(match open.is_empty() {
        true => Check::new(
            "row level security",
            Status::Ok,
            "on for every table of public and storage",
            None,
        ),
        false => Check::new(
            "row level security",
            Status::Fail,
            format!("off for {}", open.join(", ")),
            Some("alter table … enable row level security (and give it policies)"),
        ),
    })
}

async fn search_index(pool: &crate::db::Pool, config: &Config) -> Result<Check> {
    let dir = crate::search::IndexDir::new(config.search_index_dir());
    let status = crate::search::status(pool, &dir).await;
    let Ok(crate::search::Status {
        backlog: Some(backlog),
        synced_at,
        ..
    }) = status
    else {
        return Ok(Check::new(
            "search index",
            Status::Warn,
            format!("none in {} (searches use PostgreSQL)", dir.path.display()),
            Some("chatctl search reindex"),
        ));
    };
    let behind = synced_at.map(|t| Utc::now() - t);
    Ok(if backlog > SEARCH_BACKLOG {
        Check::new(
            "search index",
            Status::Warn,
            format!("{backlog} changes behind the database"),
            Some("run the daemon (it keeps the index fresh) or chatctl search reindex"),
        )
    } else {
        Check::new(
            "search index",
            Status::Ok,
            match (backlog, behind) {
                (0, _) => "up to date".to_owned(),
                (n, Some(d)) => format!("{n} change(s) to apply; synced {}s ago", d.num_seconds()),
                (n, None) => format!("{n} change(s) to apply"),
            },
            None,
        )
    })
}

/// A bot's state, as `bots` reads it.
#[derive(sqlx::FromRow)]
struct BotState {
    bot: String,
    updated_at: DateTime<Utc>,
    stuck: i64,
    digest: Option<DateTime<Utc>>,
}

async fn bots(conn: &mut PgConnection) -> Result<Vec<Check>> {
    let rows: Vec<BotState> =
        sqlx::query_as(
            "select b.bot, b.updated_at,
                    (select count(*) from chatctl.bot_claims c
                      where c.bot = b.bot and c.done_at is null and c.claimed_at < now() - $1::interval) as stuck,
                    (select max(d.window_end) from chatctl.bot_digests d
                      where d.bot = b.bot and d.message_id is not null) as digest
               from chatctl.bot_cursors b order by b.bot",
        )
        .bind(format!("{} seconds", STUCK_CLAIM.num_seconds()))
        .fetch_all(&mut *conn)
        .await?;
    if rows.is_empty() {
        return Ok(vec![Check::new(
            "bots",
            Status::Skip,
            "no bot has run against this database",
            None,
        )]);
    }
    let now = Utc::now();
    Ok(rows
        .into_iter()
        .map(|BotState { bot, updated_at, stuck, digest }| {
            let lag = now - updated_at;
            let last = match digest {
                Some(t) => format!("last digest up to {}", t.format("%Y-%m-%d %H:%M UTC")),
                None => "no digest posted".to_owned(),
            };
            let name = format!("bot {bot}");
            if stuck > 0 {
                Check::new(
                    &name,
                    Status::Warn,
                    format!("{stuck} claim(s) held over {} minutes without a reply; {last}", STUCK_CLAIM.num_minutes()),
                    Some("a replica died mid-reply: the claims are taken over when their lease ends; check the daemon's log"),
                )
            } else if lag > CURSOR_LAG {
                Check::new(
                    &name,
                    Status::Warn,
                    format!("its cursor last moved {} minutes ago; {last}", lag.num_minutes()),
                    Some("is `chatctl bots run` (or `up`) running? see its /readyz"),
                )
            } else {
                Check::new(
                    &name,
                    Status::Ok,
                    format!("cursor moved {}s ago; {last}", lag.num_seconds()),
                    None,
                )
            }
        })
        .collect())
}

async fn ai_budget(conn: &mut PgConnection, config: &Config) -> Result<Check> {
    let rows: Vec<(String, i64, i32)> = sqlx::query_as(
        "select bot, tokens, refusals from chatctl.ai_usage
          where day = (now() at time zone 'utc')::date order by tokens desc",
    )
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(Check::new(
            "ai budget",
            Status::Ok,
            "nothing spent today (UTC)",
            None,
        ));
    }
    let refused: Vec<String> = rows
        .iter()
        .filter(|r| r.2 > 0)
        .map(|(bot, _, n)| format!("{bot} ({n} refused)"))
        .collect();
    let spent: i64 = rows.iter().map(|r| r.1).sum();
    let budget = config
        .ai
        .daily_token_budget
        .map_or("no global budget".to_owned(), |b| {
            format!("budget {b} each")
        });
    Ok(match refused.is_empty() {
        true => Check::new(
            "ai budget",
            Status::Ok,
            format!(
                "{spent} tokens spent today by {} asker(s) ({budget})",
                rows.len()
            ),
            None,
        ),
        false => Check::new(
            "ai budget",
            Status::Warn,
            format!("spent today, requests refused: {}", refused.join(", ")),
            Some(
                "raise ai.daily_token_budget (or the bot's daily_token_budget), or wait for tomorrow (UTC)",
            ),
        ),
    })
}

/// A backup older than this is a warning (a nightly job that stopped).
const BACKUP_AGE: chrono::TimeDelta = chrono::TimeDelta::hours(26);

async fn backups(conn: &mut PgConnection) -> Result<Check> {
    Ok(match crate::backup::last_taken(conn).await? {
        None => Check::new(
            "backups",
            Status::Warn,
            "none taken with chatctl (its audit log records each)",
            Some("chatctl backup create --out DIR|s3://BUCKET/PREFIX/, nightly"),
        ),
        Some((at, location)) if Utc::now() - at > BACKUP_AGE => Check::new(
            "backups",
            Status::Warn,
            format!(
                "the last one is {} hours old ({location})",
                (Utc::now() - at).num_hours()
            ),
            Some("is the nightly backup job running? chatctl backup create"),
        ),
        Some((at, location)) => Check::new(
            "backups",
            Status::Ok,
            format!(
                "the last one {} hours ago ({location})",
                (Utc::now() - at).num_hours()
            ),
            None,
        ),
    })
}

async fn realtime(config: &Config) -> Check {
    let Some(url) = &config.realtime.url else {
        return Check::new(
            "realtime",
            Status::Skip,
            "not configured (the bots use LISTEN/NOTIFY)",
            None,
        );
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return Check::new(
            "realtime",
            Status::Fail,
            format!("{url} names no host"),
            None,
        );
    };
    let connect = tokio::net::TcpStream::connect((host, port));
    match tokio::time::timeout(std::time::Duration::from_secs(5), connect).await {
        Ok(Ok(_)) => Check::new(
            "realtime",
            Status::Ok,
            format!("{host}:{port} accepts connections"),
            None,
        ),
        Ok(Err(e)) => Check::new(
            "realtime",
            Status::Fail,
            format!("{host}:{port}: {e}"),
            Some("check SUPABASE_URL (or realtime.url) and the network"),
        ),
        Err(_) => Check::new(
            "realtime",
            Status::Fail,
            format!("{host}:{port} did not answer within 5 s"),
            Some("check SUPABASE_URL (or realtime.url) and the network"),
        ),
    }
}

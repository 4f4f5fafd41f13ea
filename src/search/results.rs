//! A search as the command line and the HTTP API run it: the query parsed and resolved,
//! run as a user (or as the service role), and the hits named, in one JSON shape.

use std::io::Write;
use std::time::Instant;

use serde::Serialize;
use uuid::Uuid;

use super::{Engine, Reader, ResolveError, Scope};
use crate::db::Pool;
use crate::report::Report;

/// What to search, as whom.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub text: &'a str,
    /// Search as this user (id, username): only what they may read. `None`: everything.
    pub as_user: Option<(Uuid, String)>,
    /// The channels `as_user` may read, when the caller has just read them as that user
    /// (through row level security); `None`: read here.
    pub readable: Option<Vec<Uuid>>,
    pub workspace: Option<Uuid>,
    pub limit: usize,
}

/// A matching message, named.
#[derive(Debug, Serialize)]
pub struct ResultRow {
    pub id: Uuid,
    pub channel: String,
    pub workspace: String,
    pub author: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub thread: Option<Uuid>,
    pub score: f32,
    pub snippet: String,
}

/// A matching channel, named.
#[derive(Debug, Serialize)]
pub struct ChannelRow {
    pub id: Uuid,
    pub name: String,
    pub workspace: String,
    pub score: f32,
}

/// What a search found, as `search query -o json` prints it and `GET /api/search` answers.
#[derive(Debug, Serialize)]
pub struct Results {
    pub query: String,
    pub engine: Engine,
    #[serde(rename = "as")]
    pub as_user: Option<String>,
    pub total: Option<u64>,
    pub took_ms: f64,
    pub results: Vec<ResultRow>,
    pub channels: Vec<ChannelRow>,
}

/// Runs `req` on the index (`reader`) or, without one, on PostgreSQL full-text search.
pub async fn search(
    pool: &Pool,
    reader: Option<&Reader>,
    req: &Request<'_>,
) -> Result<Results, ResolveError> {
    let started = Instant::now();
    let parsed = super::query::parse(req.text).map_err(ResolveError::Query)?;
    let engine = match reader {
        Some(_) => Engine::Tantivy,
        None => Engine::Postgres,
    };
    let mut scope = Scope {
        workspace: req.workspace,
        ..Scope::default()
    };
    if let Some((id, _)) = &req.as_user {
        scope.as_user = Some(*id);
        if engine == Engine::Tantivy {
            scope.readable = Some(match &req.readable {
                Some(r) => r.clone(),
                None => super::readable_channels(pool, *id).await?,
            });
        }
    }
    let plan = match super::resolve(pool, parsed, &scope).await {
        Ok(p) => p,
        Err(ResolveError::Query(mut e)) => {
            e.query = req.text.to_owned();
            return Err(ResolveError::Query(e));
        }
        Err(e) => return Err(e),
    };
    let found = super::run(pool, reader, &plan, &scope, req.limit).await?;
    let names = super::names(pool, &found).await?;
    let channel = |id: &Uuid| {
        names
            .channels
            .get(id)
            .cloned()
            .unwrap_or_else(|| (id.to_string(), String::new()))
    };
    let results = found
        .hits
        .iter()
        .map(|h| {
            let (channel, workspace) = channel(&h.channel_id);
            ResultRow {
                id: h.id,
                channel,
                workspace,
                author: names.users.get(&h.author_id).cloned().unwrap_or_default(),
                created_at: h.created_at,
                thread: h.thread,
                score: h.score,
                snippet: h.snippet.clone(),
            }
        })
        .collect();
    let channels = found
        .channels
        .iter()
        .map(|c| {
            let (name, workspace) = channel(&c.id);
            ChannelRow {
                id: c.id,
                name,
                workspace,
                score: c.score,
            }
        })
        .collect();
    let took_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(Results {
        query: req.text.to_owned(),
        engine,
        as_user: req.as_user.as_ref().map(|(_, name)| name.clone()),
        total: found.total,
        took_ms: (took_ms * 10.0).round() / 10.0,
        results,
        channels,
    })
}

impl Report for Results {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let total = self
            .total
            .map_or(String::new(), |t| format!(" of {t} matching"));
        writeln!(
            out,
            "{} message(s){total} ({:?}, {} ms)",
            self.results.len(),
            self.engine,
            self.took_ms
        )?;
        for c in &self.channels {
            writeln!(out, "channel {} ({})", c.name, c.workspace)?;
        }
        for r in &self.results {
            writeln!(
                out,
                "\n{} · @{} · {} · {}",
                r.channel,
                r.author,
                r.created_at.format("%Y-%m-%d %H:%M UTC"),
                r.id
            )?;
            writeln!(out, "  {}", r.snippet.replace('\n', "\n  "))?;
        }
        Ok(())
    }
}

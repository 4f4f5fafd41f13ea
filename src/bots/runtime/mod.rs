//! The dispatcher: reads new messages from each bot's cursor, decides which bots act, and
//! acts exactly once per (bot, message) through a claim.
//!
//! Events only wake it up ([`EventSource`]); what to do is always read from `public.chat`,
//! from the bot's persisted cursor minus an overlap window (rows can commit out of order),
//! so a missed notification, a restart or a second replica loses and doubles nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::digest::{DigestPost, post_digest};
use super::metrics::Metrics;
use super::schedule::{Clock, SystemClock};
pub use super::trigger::{Bot, Message, Reply, ReplyKind, dry_run};
pub use super::users::{find_bot, prepare};

mod daemon;
mod post;

pub use crate::ai::voice::Voice;
use crate::error::Result;
pub use crate::realtime::{EventSource, ListenSource, Wake};
use crate::realtime::{TypingSink, Watch};
use post::{PostJob, Work};

/// A chat row (`c`) a bot still has to look at: not deleted, and not done (or in flight
/// here) for the bot (`$2`; `$3` this instance). The overlap re-reads recent rows, the claims
/// say what is settled.
///
/// The claims are probed per row through their primary key: a scalar subquery is never turned
/// into a join. A NOT EXISTS let the planner, trusting the statistics of tables that had just
/// grown from nothing (a new daemon's first minutes), rescan every claim of the bot for every
/// message: 300 ms and more per batch at 5,000 messages/s.
const UNSETTLED: &str = "not c.is_deleted
       and (select true from chatctl.bot_claims b
             where b.bot = $2 and b.message_id = c.id and (b.done_at is not null or b.claimed_by = $3)
             limit 1) is null";

/// A bot's view of `public.chat`, as the dispatcher reads it: the chat rows `rows` yields as
/// `c` (in the bot's channels, [`UNSETTLED`]), with their author and place, then `tail`.
/// `$1` the bot's user, `$2` its name, `$3` this instance, `$4` whether thread positions are
/// needed; callers add parameters from `$5`.
fn messages(rows: &str, tail: &str) -> String {
    format!(
        "select c.id, c.channel_id, c.user_id, c.parent_id, coalesce(c.message ->> 'text', '') as text,
           coalesce(c.message -> 'mentions', '[]') as mentions, c.created_at,
           c.message ? 'imported' as imported,
           u.username as author, u.is_bot as author_is_bot, w.slug as workspace, ch.name as channel_name,
           case when $4 and c.parent_id is not null then
               (select count(*) from public.chat r
                 where r.parent_id = c.parent_id and not r.is_deleted and r.user_id <> $1
                   and (r.created_at, r.id) <= (c.created_at, c.id)) end as thread_position
      from {rows}
      join public.users u on u.id = c.user_id
      join public.channels ch on ch.id = c.channel_id
      join public.workspaces w on w.id = ch.workspace_id
      {tail}"
    )
}

/// The reply caps and the claims of a batch, as one statement's common part (see
/// [`Runtime::claim`]). `$1` bot, `$2` messages, `$3` their channels, `$4` their threads,
/// `$5` this instance, `$6` reply ids (when posting), `$7` the lease, `$8` the bot's user,
/// `$9` reply texts, `$10`/`$11` the caps per channel/thread per hour, `$12` whether the claims
/// are taken done (the reply is posted in the same statement).
///
/// Caps count replies per fixed hourly window (`chatctl.bot_reply_counts`), the batch's own
/// in order; what they allow is claimed, unless another holder has the claim (done, or alive
/// within its lease); the counters are bumped for what was claimed. What they hold back is
/// dropped: claimed done without a reply (`claimed_by` says why), so it is counted once and
/// never answered later (not re-read every sweep, nor answered in a burst when the hour
/// rolls over).
const CLAIM: &str = "
    with x as (
        select * from unnest($2::uuid[], $3::uuid[], $4::uuid[], $9::text[]) with ordinality as x(m, c, t, txt, ord)
    ), counts as (
        select scope, scope_id, replies from chatctl.bot_reply_counts
         where bot = $1 and window_start = date_trunc('hour', now())
           and (scope, scope_id) in (select 'channel', c from x union select 'thread', t from x)
    ), ranked as (
        select x.*,
               coalesce((select replies from counts k where k.scope = 'channel' and k.scope_id = x.c), 0)
                 + row_number() over (partition by x.c order by x.ord) as nc,
               coalesce((select replies from counts k where k.scope = 'thread' and k.scope_id = x.t), 0)
                 + row_number() over (partition by x.t order by x.ord) as nt
          from x
    ), allowed as (
        select r.*, ($6::uuid[])[r.ord] as reply_id from ranked r where r.nc <= $10 and r.nt <= $11
    ), claimed as (
        insert into chatctl.bot_claims (bot, message_id, channel_id, thread_id, claimed_by, done_at, reply_id)
        select $1, a.m, a.c, a.t, $5, case when $12 then now() end, a.reply_id from allowed a
        on conflict (bot, message_id) do update
           set claimed_by = excluded.claimed_by, claimed_pid = pg_backend_pid(), claimed_at = now(),
               done_at = excluded.done_at, reply_id = excluded.reply_id,
               channel_id = excluded.channel_id, thread_id = excluded.thread_id
         where bot_claims.done_at is null
           and (bot_claims.claimed_at < now() - $7::interval
                or not exists (select 1 from pg_stat_activity s where s.pid = bot_claims.claimed_pid))
        returning message_id, channel_id, thread_id, reply_id
    ), dropped as (
        insert into chatctl.bot_claims (bot, message_id, channel_id, thread_id, claimed_by, done_at)
        select $1, r.m, r.c, r.t, $5 || ' (reply cap reached)', now()
          from ranked r where not (r.nc <= $10 and r.nt <= $11)
        on conflict (bot, message_id) do nothing
    ), bumped as (
        insert into chatctl.bot_reply_counts (bot, scope, scope_id, window_start, replies)
        select $1, 'channel', channel_id, date_trunc('hour', now()), count(*) from claimed group by channel_id
        union all
        select $1, 'thread', thread_id, date_trunc('hour', now()), count(*) from claimed group by thread_id
        on conflict (bot, scope, scope_id, window_start)
           do update set replies = bot_reply_counts.replies + excluded.replies
    )";

/// A message and what a bot would post for it.
type Todo<'a> = (&'a Message, &'a Reply);

/// What [`Runtime::claim`] did: how many the caps held back, and the messages claimed (and,
/// when posting, replied to).
struct Claimed {
    capped: usize,
    claimed: Vec<Uuid>,
}

/// Settings of the dispatcher.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// This process, as recorded in claims (`host:pid`).
    pub instance: String,
    /// How far before its cursor each catch-up re-reads (rows committed out of order).
    pub overlap: Duration,
    /// After how long an unfinished claim may be taken over (its holder died).
    pub lease: Duration,
    /// A poll even without events, in case a notification was lost.
    pub poll: Duration,
}

impl RuntimeOptions {
    /// The defaults for a daemon: this host and pid, a 10 s overlap, a 60 s lease, a 5 s poll.
    pub fn for_this_process() -> RuntimeOptions {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        RuntimeOptions {
            instance: format!("{}:{}", host.trim(), std::process::id()),
            overlap: Duration::from_secs(10),
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(5),
        }
    }
}

/// What one catch-up did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    pub digests: usize,
    pub read: usize,
    pub replied: usize,
    pub lost_claims: usize,
    pub capped: usize,
    /// Messages dated past the sweep's horizon, seen (and logged) for the first time.
    pub ahead: usize,
}

/// The dispatcher.
pub struct Runtime {
    pool: PgPool,
    bots: Vec<Bot>,
    opts: RuntimeOptions,
    metrics: std::sync::Arc<super::metrics::Metrics>,
    clock: std::sync::Arc<dyn Clock>,
    /// Set by [`Runtime::run`]: posting runs in tasks beside the next catch-up.
    pipelined: std::sync::atomic::AtomicBool,
    inflight: std::sync::Mutex<tokio::task::JoinSet<Result<Pass>>>,
    /// Where typing indicators go, when the event source can show them.
    typing: std::sync::OnceLock<TypingSink>,
    /// Replies this process posted whose insert notification has not come back yet: they
    /// wake nobody (a bot never answers itself).
    posted: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<Uuid>>>,
    /// Claim statements of this process run one at a time (the sweep and the hot path both
    /// claim, and both bump the same counter rows: at once, they could deadlock).
    claiming: tokio::sync::Mutex<()>,
    /// Each bot's `started_at`, known once it has caught up.
    started: std::sync::Mutex<std::collections::HashMap<String, DateTime<Utc>>>,
    /// What writes summaries and replies (the offline engine unless configured).
    engine: std::sync::Arc<dyn crate::ai::LanguageModel>,
    /// Each bot's daily token budget unless its YAML sets one.
    daily_token_budget: Option<u64>,
    /// Keeps the search index fresh, told of every new message.
    indexer: Option<std::sync::Arc<crate::search::indexer::Indexer>>,
    /// Upkeep of the runtime's own tables (see [`Runtime::upkeep`]).
    claims_made: std::sync::atomic::AtomicU64,
    analyzed_at: std::sync::atomic::AtomicU64,
    pruned: std::sync::Mutex<Option<std::time::Instant>>,
    /// Messages dated past the sweep's horizon that were logged already (once each).
    ahead: std::sync::Mutex<std::collections::HashSet<Uuid>>,
}

/// How far ahead of the database's clock a message may be dated and still be read by the
/// sweep (another writer's clock may run ahead). Later ones wait for their time, logged.
/// Whatever the sweep reads, a bot's persisted cursor never passes the database's `now()`:
/// a message dated ahead would otherwise carry it past every real message to come (one
/// dated 2099 ended the sweep's reading until 2099). Clients cannot date their messages
/// (the database stamps them); an import or an operator can.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

impl Runtime {
    pub fn new(pool: PgPool, bots: Vec<Bot>, opts: RuntimeOptions) -> Runtime {
        Runtime {
            pool,
            bots,
            opts,
            metrics: Default::default(),
            clock: std::sync::Arc::new(SystemClock),
            pipelined: Default::default(),
            inflight: Default::default(),
            typing: Default::default(),
            started: Default::default(),
            posted: Default::default(),
            claiming: Default::default(),
            engine: std::sync::Arc::new(crate::ai::offline::OfflineEngine),
            daily_token_budget: None,
            indexer: None,
            claims_made: Default::default(),
            analyzed_at: Default::default(),
            pruned: Default::default(),
            ahead: Default::default(),
        }
    }

    /// The same runtime keeping a search index fresh: `run` runs the indexer beside the
    /// bots and tells it of every new message.
    pub fn with_indexer(
        mut self,
        indexer: std::sync::Arc<crate::search::indexer::Indexer>,
    ) -> Runtime {
        let _ = self.metrics.search.set(indexer.stats.clone());
        self.indexer = Some(indexer);
        self
    }

    fn index_soon(&self) {
        if let Some(ix) = &self.indexer {
            ix.notify();
        }
    }

    /// The same runtime writing with another engine (built on [`Runtime::metrics`]' AI
    /// counters), `budget` the bots' default daily token budget.
    pub fn with_engine(
        mut self,
        engine: std::sync::Arc<dyn crate::ai::LanguageModel>,
        budget: Option<u64>,
    ) -> Runtime {
        self.engine = engine;
        self.daily_token_budget = budget;
        self
    }

    /// The same runtime on another clock (tests drive scheduled digests with it).
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn Clock>) -> Runtime {
        self.clock = clock;
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The counters `/metrics` shows.
    pub fn metrics(&self) -> std::sync::Arc<super::metrics::Metrics> {
        self.metrics.clone()
    }

    /// What each bot listens to: the channels its user is a member of, within its scope.
    pub async fn watches(&self) -> Result<Vec<Watch>> {
        let users: Vec<Uuid> = self.bots.iter().map(|b| b.user_id).collect();
        let rows: Vec<(Uuid, Uuid, String, Option<String>)> = sqlx::query_as(
            "select m.user_id, c.id, w.slug, c.name from public.members m
               join public.channels c on c.id = m.channel_id
               join public.workspaces w on w.id = c.workspace_id
              where m.user_id = any($1) and c.archived_at is null
              order by c.id",
        )
        .bind(&users)
        .fetch_all(&self.pool)
        .await?;
        Ok(self
            .bots
            .iter()
            .map(|b| Watch {
                bot: b.spec.name.clone(),
                user_id: b.user_id,
                channels: rows
                    .iter()
                    .filter(|(u, _, w, n)| *u == b.user_id && b.covers(w, n.as_deref()))
                    .map(|(_, c, _, _)| *c)
                    .collect(),
            })
            .collect())
    }

    /// Reads every bot's new messages and acts on them.
    pub async fn catch_up(&self) -> Result<Pass> {
        self.upkeep().await;
        let mut total = Pass::default();
        for bot in &self.bots {
            total.digests += self.digests(bot).await?;
            let p = self.catch_up_bot(bot).await?;
            total.read += p.read;
            total.replied += p.replied;
            total.lost_claims += p.lost_claims;
            total.capped += p.capped;
            total.ahead += p.ahead;
        }
        Ok(total)
    }

    /// Keeps the runtime's own tables fit for the hot path, from the sweep (never in front of
    /// an event): reply counters of past hours are deleted (every 10 minutes at most), and
    /// the claim tables are analyzed each time this process's claims double from 1,000 up
    /// to a million. A new install's claim tables grow from nothing at up to thousands of
    /// rows a second, and plans made while they were tiny (a sequential scan of the claims
    /// per message) would otherwise stay cached until autovacuum's next look, a minute on.
    async fn upkeep(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let made = self.claims_made.load(Relaxed);
        let last = self.analyzed_at.load(Relaxed);
        if made >= 1_000 && made >= 2 * last && last < 1_000_000 {
            self.analyzed_at.store(made, Relaxed);
            if let Err(e) = sqlx::raw_sql("analyze chatctl.bot_claims, chatctl.bot_reply_counts")
                .execute(&self.pool)
                .await
            {
                tracing::debug!(error = %e, "cannot analyze the claim tables; autovacuum will");
            }
        }
        let due = {
            let mut pruned = self.pruned.lock().unwrap_or_else(|e| e.into_inner());
            let due = pruned.is_none_or(|t| t.elapsed() >= Duration::from_secs(600));
            if due {
                *pruned = Some(std::time::Instant::now());
            }
            due
        };
        if due {
            let pruned = sqlx::query(
                "delete from chatctl.bot_reply_counts where window_start < date_trunc('hour', now())",
            )
            .execute(&self.pool)
            .await;
            match pruned {
                Ok(done) if done.rows_affected() > 0 => {
                    tracing::debug!(rows = done.rows_affected(), "old reply counters deleted")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot delete old reply counters"),
            }
        }
    }

    async fn catch_up_bot(&self, bot: &Bot) -> Result<Pass> {
        let name = &bot.spec.name;
        // A new bot starts at "now", without the overlap: it does not answer history.
        let created: Option<DateTime<Utc>> = sqlx::query_scalar(
            "insert into chatctl.bot_cursors (bot, read_at, read_id) values ($1, now(), '00000000-0000-0000-0000-000000000000')
             on conflict (bot) do nothing returning read_at",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let (read_at, started): (DateTime<Utc>, DateTime<Utc>) = match created {
            Some(t) => (t, t),
            None => {
                let (mut t, started, ahead): (DateTime<Utc>, DateTime<Utc>, bool) = sqlx::query_as(
                    "select read_at, started_at, read_at > now() from chatctl.bot_cursors where bot = $1",
                )
                .bind(name)
                .fetch_one(&self.pool)
                .await?;
                if ahead {
                    // A cursor a future-dated message carried ahead (before chatctl held it
                    // back) comes back to now.
                    let now: DateTime<Utc> = sqlx::query_scalar(
                        "update chatctl.bot_cursors set read_at = now(), updated_at = now()
                          where bot = $1 returning read_at",
                    )
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await?;
                    tracing::warn!(bot = %name, cursor = %t, now = %now,
                        "the bot's cursor was in the future (a message dated ahead carried it): moved back to now");
                    t = now;
                }
                let overlap = chrono::Duration::from_std(self.opts.overlap).unwrap_or_default();
                ((t - overlap).max(started), started)
            }
        };
        self.started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), started);
        let mut after: (DateTime<Utc>, Uuid) = (read_at, Uuid::nil());
        let mut pass = Pass::default();
        // One query reads up to PAGE rows in order, handled 500 at a time: the overlap window
        // (10 s of traffic: 50,000 rows at 5,000 messages/s) takes a few reads, not one per
        // 500 that each re-sorted the rest of the window (which a fresh table's missing
        // statistics made the planner do). The page is read whole before it is handled, so
        // the sweep never holds a connection while it claims (a pool of one still works).
        const PAGE: usize = 5_000;
        const CHUNK: usize = 500;
        let sql = messages(
            &format!(
                "public.members m
                 cross join lateral (
                     select c.* from public.chat c
                      where c.channel_id = m.channel_id and (c.created_at, c.id) > ($5, $6)
                        and c.created_at <= now() + $7::interval
                        and {UNSETTLED}
                      order by c.created_at, c.id limit {PAGE}) c"
            ),
            &format!("where m.user_id = $1 order by c.created_at, c.id limit {PAGE}"),
        );
        loop {
            let page: Vec<Message> = sqlx::query_as(&sql)
                .bind(bot.user_id)
                .bind(name)
                .bind(&self.opts.instance)
                .bind(bot.needs_thread_position())
                .bind(after.0)
                .bind(after.1)
                .bind(CLOCK_SKEW)
                .fetch_all(&self.pool)
                .await?;
            for chunk in page.chunks(CHUNK) {
                self.handle(bot, chunk, &mut pass).await?;
                let last = chunk.last().expect("chunks are never empty");
                after = (last.created_at, last.id);
                sqlx::query(
                    "update chatctl.bot_cursors
                        set read_at = greatest(least(read_at, now()), least($2, now())), read_id = $3, updated_at = now()
                      where bot = $1",
                )
                .bind(name)
                .bind(last.created_at)
                .bind(last.id)
                .execute(&self.pool)
                .await?;
            }
            if page.len() < PAGE {
                pass.ahead += self.log_ahead(bot).await?;
                return Ok(pass);
            }
        }
    }

    /// Logs (once each) the messages of the bot's channels dated past the sweep's horizon:
    /// the sweep leaves them until their time comes, and says so.
    async fn log_ahead(&self, bot: &Bot) -> Result<usize> {
        let ahead: Vec<(Uuid, Uuid, DateTime<Utc>)> = sqlx::query_as(
            "select c.id, c.channel_id, c.created_at from public.members m
              cross join lateral (
                  select c.id, c.channel_id, c.created_at from public.chat c
                   where c.channel_id = m.channel_id and c.created_at > now() + $2::interval
                   order by c.created_at limit 10) c
              where m.user_id = $1
              limit 100",
        )
        .bind(bot.user_id)
        .bind(CLOCK_SKEW)
        .fetch_all(&self.pool)
        .await?;
        let mut seen = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        let mut new = 0;
        for (id, channel, at) in ahead {
            if seen.insert(id) {
                new += 1;
                tracing::warn!(bot = %bot.spec.name, message = %id, channel = %channel, created_at = %at,
                    "a message is dated in the future: the sweep reads it when its time comes, its cursor stays at now");
            }
        }
        if seen.len() > 100_000 {
            seen.clear();
        }
        Ok(new)
    }

    /// Reads exactly these new messages (an event source named them) and acts on them. The
    /// cursor does not move: only a catch-up, which sees every row, moves it.
    pub async fn handle_inserted(&self, ids: &[Uuid]) -> Result<Pass> {
        let mut pass = Pass::default();
        let ids: Vec<Uuid> = {
            let mut posted = self.posted.lock().unwrap_or_else(|e| e.into_inner());
            let fresh = ids
                .iter()
                .copied()
                .filter(|id| !posted.remove(id))
                .collect();
            if posted.len() > 100_000 {
                // Notifications that never came back (lost): forget them.
                posted.clear();
            }
            fresh
        };
        if ids.is_empty() {
            return Ok(pass);
        }
        for bot in &self.bots {
            let started = self
                .started
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&bot.spec.name)
                .copied();
            let Some(started) = started else {
                // Not caught up once yet: that reads these too.
                return self.catch_up().await;
            };
            let batch: Vec<Message> = sqlx::query_as(&messages(
                // Each named id is looked up by the primary key (LIMIT keeps the LATERAL from
                // being flattened: a plan made while the table was small scanned the
                // channel's timeline since the bot started instead, 500 ms at 5,000/s).
                &format!(
                    "unnest($5::uuid[]) as named (id)
                     cross join lateral (
                         select c.* from public.chat c
                          where c.id = named.id and c.created_at >= $6 and {UNSETTLED}
                          limit 1) c
                     join public.members m on m.channel_id = c.channel_id and m.user_id = $1"
                ),
                "order by c.created_at, c.id",
            ))
            .bind(bot.user_id)
            .bind(&bot.spec.name)
            .bind(&self.opts.instance)
            .bind(bot.needs_thread_position())
            .bind(&ids)
            .bind(started)
            .fetch_all(&self.pool)
            .await?;
            self.handle(bot, &batch, &mut pass).await?;
        }
        tracing::debug!(
            read = pass.read,
            replied = pass.replied,
            capped = pass.capped,
            "event handled"
        );
        Ok(pass)
    }

    /// Decides what `bot` does with each message and acts on it.
    async fn handle(&self, bot: &Bot, batch: &[Message], pass: &mut Pass) -> Result<()> {
        let mut todo: Vec<(&Message, Reply)> = Vec::new();
        self.metrics
            .bot(&bot.spec.name)
            .messages
            .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
        for m in batch {
            pass.read += 1;
            Metrics::inc(&self.metrics.messages_handled);
            if let Some(reply) = bot.decide(m) {
                todo.push((m, reply));
            }
        }
        if !todo.is_empty() {
            let p = self.act(bot, &todo).await?;
            pass.replied += p.replied;
            pass.lost_claims += p.lost_claims;
            pass.capped += p.capped;
        }
        Ok(())
    }

    /// Acts on a batch of (message, reply), a few statements whatever its size. A template
    /// reply is ready at once: nothing is in flight, so the reply caps, its claim, completion
    /// and post are ONE statement. Replies that take time to write (summaries; the AI's later)
    /// are claimed first (caps applied), show 👀, and are posted when written, only while the
    /// claim is still held.
    #[tracing::instrument(level = "debug", skip_all, fields(bot = %bot.spec.name, messages = todo.len()))]
    async fn act(&self, bot: &Bot, todo: &[(&Message, Reply)]) -> Result<Pass> {
        let mut pass = Pass::default();
        let (instant, slow): (Vec<Todo>, Vec<Todo>) = todo
            .iter()
            .map(|(m, r)| (*m, r))
            .partition(|(_, r)| r.kind == ReplyKind::Template);
        if let Some(sink) = self.typing.get() {
            let mut shown = std::collections::HashSet::new();
            for (m, _) in todo {
                if shown.insert(m.channel_id) {
                    sink.typing(bot.user_id, m.channel_id);
                }
            }
        }
        if !instant.is_empty() {
            let reply_ids: Vec<Uuid> = instant.iter().map(|_| Uuid::new_v4()).collect();
            self.posted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(reply_ids.iter().copied());
            let claim = self.claim(bot, &instant, &reply_ids, true).await?;
            pass.capped += claim.capped;
            pass.replied += claim.claimed.len();
            pass.lost_claims += instant.len() - claim.capped - claim.claimed.len();
        }
        if slow.is_empty() {
            return Ok(pass);
        }
        let claim = self.claim(bot, &slow, &[], false).await?;
        pass.capped += claim.capped;
        pass.lost_claims += slow.len() - claim.capped - claim.claimed.len();
        let claimed: std::collections::HashSet<Uuid> = claim.claimed.into_iter().collect();
        let mine: Vec<(&Message, &Reply)> = slow
            .into_iter()
            .filter(|(m, _)| claimed.contains(&m.id))
            .collect();
        if mine.is_empty() {
            return Ok(pass);
        }
        // Summaries and AI replies are written once the messages are ours, 👀 showing.
        let job = PostJob {
            pool: self.pool.clone(),
            posted: self.posted.clone(),
            metrics: self.metrics.clone(),
            voice: self.voice(bot),
            bot_user: bot.user_id,
            instance: self.opts.instance.clone(),
            messages: mine.iter().map(|(m, r)| ((*m).clone(), r.kind)).collect(),
            threads: mine.iter().map(|(_, r)| r.thread_id).collect(),
            work: mine
                .iter()
                .map(|(_, r)| match r.kind {
                    ReplyKind::ThreadSummary => Work::ThreadSummary(r.thread_id),
                    ReplyKind::Template => Work::Ready(r.text.clone()),
                    ReplyKind::Ai => Work::Reply {
                        prompt: r.prompt.clone(),
                    },
                })
                .collect(),
            index: self.indexer.as_ref().map(|i| i.dir().clone()),
        };
        if self.pipelined.load(std::sync::atomic::Ordering::Relaxed) {
            // The daemon posts beside reading and claiming the next batch.
            // Under the event's span: its log lines belong to the event that caused them.
            self.inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .spawn(tracing::Instrument::instrument(
                    job.run(),
                    tracing::Span::current(),
                ));
        } else {
            let p = job.run().await?;
            pass.replied += p.replied;
            pass.lost_claims += p.lost_claims;
        }
        Ok(pass)
    }

    /// Applies the reply caps and claims what they allow, in one statement, bumping the caps'
    /// counters for what it claimed. With `reply_ids` (ready replies), the claims are taken
    /// done and the replies posted in the same statement.
    async fn claim(
        &self,
        bot: &Bot,
        todo: &[(&Message, &Reply)],
        reply_ids: &[Uuid],
        post: bool,
    ) -> Result<Claimed> {
        let _one_at_a_time = self.claiming.lock().await;
        let now = Utc::now();
        let sql = if post {
            format!(
                "{CLAIM},
                 posted as (
                     insert into public.chat (id, channel_id, user_id, parent_id, message)
                     select cl.reply_id, a.c, $8, a.t, jsonb_build_object('text', a.txt)
                       from claimed cl join allowed a on a.m = cl.message_id
                     returning id)
                 select (select count(*) from x) - (select count(*) from allowed),
                        array(select cl.message_id from claimed cl join posted p on p.id = cl.reply_id)"
            )
        } else {
            format!(
                "{CLAIM}
                 select (select count(*) from x) - (select count(*) from allowed),
                        array(select message_id from claimed)"
            )
        };
        let texts: Vec<&str> = todo.iter().map(|(_, r)| r.text.as_str()).collect();
        // A large batch is planned for its own size: the cached plan, made for the 10 rows
        // an array parameter is guessed at, joins the statement's parts by nested loops,
        // quadratic in the batch (700 ms for 1,000 messages, against a millisecond to plan).
        // Its text differs: the statement cache, keyed by text, would hand back the cached
        // plan whatever `persistent` says.
        let cached = todo.len() <= 64;
        let sql = if cached {
            sql
        } else {
            sql + "\n-- planned for this batch"
        };
        let (capped, claimed): (i64, Vec<Uuid>) = sqlx::query_as(&sql)
            .persistent(cached)
            .bind(&bot.spec.name)
            .bind(todo.iter().map(|(m, _)| m.id).collect::<Vec<_>>())
            .bind(todo.iter().map(|(m, _)| m.channel_id).collect::<Vec<_>>())
            .bind(todo.iter().map(|(_, r)| r.thread_id).collect::<Vec<_>>())
            .bind(&self.opts.instance)
            .bind(reply_ids)
            .bind(format!("{} milliseconds", self.opts.lease.as_millis()))
            .bind(bot.user_id)
            .bind(&texts)
            .bind(i64::from(bot.spec.limits.per_channel_per_hour))
            .bind(i64::from(bot.spec.limits.per_thread_per_hour))
            .bind(post)
            .fetch_one(&self.pool)
            .await?;
        let capped = capped.max(0) as usize;
        let per_bot = self.metrics.bot(&bot.spec.name);
        for _ in 0..capped {
            Metrics::inc(&self.metrics.replies_capped);
            Metrics::inc(&per_bot.capped);
        }
        if capped > 0 {
            tracing::warn!(bot = %bot.spec.name, capped, "reply cap reached; not replying");
        }
        self.claims_made
            .fetch_add(claimed.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let lost = todo.len() - capped - claimed.len();
        for _ in 0..lost {
            Metrics::inc(&self.metrics.claims_lost);
        }
        for (m, r) in todo.iter().filter(|(m, _)| claimed.contains(&m.id)) {
            let waited = (now - m.created_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
            self.metrics.observe_latency(&bot.spec.name, waited);
            if post {
                Metrics::inc(&self.metrics.replies_posted);
                Metrics::inc(&per_bot.replies);
                post::log_reply(&bot.spec.name, m, r.kind, waited);
            }
        }
        Ok(Claimed { capped, claimed })
    }
}

impl Runtime {
    /// What the bot says with: the engine, its persona, prompts and budget.
    fn voice(&self, bot: &Bot) -> std::sync::Arc<Voice> {
        let metrics = self.metrics.clone();
        let per_bot = self.metrics.bot(&bot.spec.name);
        std::sync::Arc::new(bot.spec.voice(
            self.engine.clone(),
            self.daily_token_budget,
            Some(std::sync::Arc::new(move || {
                Metrics::inc(&metrics.errors);
                Metrics::inc(&per_bot.errors);
            })),
        ))
    }

    /// Posts each due digest once per (bot, channel, window), in every channel the bot is a
    /// member of (and in scope); the claim and the post commit together.
    async fn digests(&self, bot: &Bot) -> Result<usize> {
        let now = self.clock.now();
        let mut posted = 0;
        for (schedule, post_missed) in &bot.schedules {
            let Some((start, end)) = schedule.last_window(now) else {
                continue;
            };
            if !post_missed && now - end > chrono::Duration::minutes(5) {
                continue;
            }
            let channels: Vec<(Uuid, String, String)> = sqlx::query_as(
                "select c.id, w.slug, c.name from public.members m join public.channels c on c.id = m.channel_id
                   join public.workspaces w on w.id = c.workspace_id
                  where m.user_id = $1 and c.name is not null and c.archived_at is null
                    and not exists (select 1 from chatctl.bot_digests d
                                     where d.bot = $2 and d.channel_id = c.id and d.window_start = $3)",
            )
            .bind(bot.user_id)
            .bind(&bot.spec.name)
            .bind(start)
            .fetch_all(&self.pool)
            .await?;
            for (channel, workspace, name) in channels {
                if bot.covers(&workspace, Some(&name))
                    && matches!(
                        post_digest(
                            &self.pool,
                            &self.voice(bot),
                            bot.user_id,
                            &self.opts.instance,
                            channel,
                            &name,
                            (start, end),
                            schedule.tz(),
                            false,
                        )
                        .await?,
                        DigestPost::Posted { .. }
                    )
                {
                    posted += 1;
                }
            }
        }
        Ok(posted)
    }
}

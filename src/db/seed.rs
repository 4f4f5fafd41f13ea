//! `chatctl dev seed`: a deterministic generator of realistic chat data, loaded with COPY.
//!
//! The same options and seed give the same rows, ids included. What makes it realistic:
//! words drawn from a Zipf distribution over a vocabulary ranked by frequency, channel
//! activity and authorship also Zipf-skewed, threads (replies to recent messages), @mentions
//! of channel members, links, questions, reactions, DMs, group DMs and private channels.
//! Everything is loaded in one transaction: a failure leaves the database as it was.

use std::fmt::Write as _;
use std::io::Write;
use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};
use serde::Serialize;
use sqlx::postgres::PgPool;
use uuid::Uuid;

use crate::db::bulk::{CopyStream, esc, ts};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::report::{self, Report};

/// Marks generated users, so a second seed into the same database is refused clearly.
pub const SOURCE: &str = "chatctl-seed";

/// The most messages one seed plans (about 48 bytes each in memory until loaded: 4.8 GB).
pub const MAX_MESSAGES: u64 = 100_000_000;
/// The most users, channels and workspaces one seed makes.
pub const MAX_USERS: u32 = 10_000_000;
pub const MAX_CHANNELS: u32 = 1_000_000;
pub const MAX_WORKSPACES: u32 = 10_000;

/// The time the data of tests and benchmarks ends at (2026-01-01), so that it does not
/// change with the day they run on.
pub const REFERENCE: DateTime<Utc> = DateTime::from_timestamp(1_767_225_600, 0).expect("valid");

/// What to generate.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub users: u32,
    pub channels: u32,
    pub messages: u64,
    pub workspaces: u32,
    pub seed: u64,
    /// The messages span the 90 days before this time; the same seed and time give the same
    /// rows. `dev seed` ends them now, so `--since 6h` finds the last hours' messages.
    pub until: DateTime<Utc>,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
}

/// What was generated.
#[derive(Debug, Clone, Serialize)]
pub struct SeedReport {
    pub seed: u64,
    pub until: DateTime<Utc>,
    pub workspaces: u64,
    pub users: u64,
    pub channels: u64,
    pub memberships: u64,
    pub messages: u64,
    pub replies: u64,
    pub reactions: u64,
    pub elapsed_ms: u64,
    pub messages_per_sec: u64,
}

impl Report for SeedReport {
    fn human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut t = report::table(["WHAT", "ROWS"]);
        for (k, v) in [
            ("workspaces", self.workspaces),
            ("users", self.users),
            ("channels", self.channels),
            ("memberships", self.memberships),
            ("messages", self.messages),
            ("  of which replies", self.replies),
            ("reactions", self.reactions),
        ] {
            t.add_row(vec![k.to_owned(), v.to_string()]);
        }
        report::write_table(out, &t)?;
        writeln!(
            out,
            "seeded in {:.1} s ({} messages/s, seed {}, until {}: the same again with --seed {} --until {})",
            self.elapsed_ms as f64 / 1000.0,
            self.messages_per_sec,
            self.seed,
            self.until.format("%Y-%m-%d %H:%M:%S UTC"),
            self.seed,
            self.until
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

const FIRST: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yusuf", "zoe",
    "amara", "bruno", "chen", "dmitri", "elena", "farah", "goran", "hana", "ingrid", "jamal",
    "kenji", "lucia", "mateo", "nadia", "oskar", "priya", "quinn", "rosa", "sven", "tariq", "uma",
    "vera", "wei", "ximena", "yara",
];
const LAST: &[&str] = &[
    "smith",
    "garcia",
    "müller",
    "nguyen",
    "kowalski",
    "okafor",
    "rossi",
    "tanaka",
    "silva",
    "novak",
    "jensen",
    "dubois",
    "haddad",
    "ivanova",
    "kim",
    "larsen",
    "moreau",
    "patel",
    "quispe",
    "reyes",
    "schmidt",
    "takahashi",
    "usman",
    "varga",
    "wang",
    "yilmaz",
    "zhang",
    "andersson",
    "brown",
    "costa",
];

/// The vocabulary, most frequent first (Zipf rank order): function words, then the nouns and
/// verbs of a software team's chat.
const WORDS: &str = "the to i a and is it you that of in for this on we be have with can not do but \
are just so if what it's at or was my will there from get how an as about all me one yes no they \
like think should need know up out now would when here more then also any did see some could going \
time work make try back still because new sure let thanks ok good today check same use look way \
which thing other why got only right well issue build test deploy release branch merge review fix \
bug error server client api database query index migration schema table user channel message \
thread search config file logs version update change commit push pull request ticket meeting \
morning tomorrow week team customer support question answer problem works broken slow fast \
cache memory cpu disk network timeout latency error rate alert dashboard metric incident postmortem \
rollback hotfix staging production cluster node pod container image docker kubernetes terraform \
ci pipeline job failed passed green red flaky retry backup restore replica primary failover \
postgres redis kafka queue worker cron schedule token auth login password session cookie jwt \
role permission policy rls admin owner member guest invite workspace project department design \
doc spec draft plan estimate sprint standup retro demo feedback launch roadmap priority blocker \
lunch coffee weekend holiday vacation sick remote office call zoom link slides notes agenda \
great awesome nice cool weird strange interesting annoying done ready waiting blocked started \
finished closed opened assigned reviewed approved shipped reverted pinned archived muted";

/// Reactions as Unicode (`emojis.emoji_uni_code`).
const EMOJIS: &[&str] = &["👍", "👀", "🎉", "❤️", "✅", "😂", "🙏", "🚀", "🤔", "🔥"];

struct Gen {
    rng: ChaCha8Rng,
}

impl Gen {
    fn uuid(&mut self) -> Uuid {
        let bytes: [u8; 16] = self.rng.random();
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

/// A COPY text-format field.
struct Channel {
    id: Uuid,
    workspace: usize,
    members: Vec<usize>,
}

/// Generates and loads the data set.
pub async fn seed(pool: &PgPool, opts: &SeedOptions) -> Result<SeedReport> {
    if opts.messages > MAX_MESSAGES
        || opts.users > MAX_USERS
        || opts.channels > MAX_CHANNELS
        || opts.workspaces > MAX_WORKSPACES
    {
        return Err(Error::usage(format!(
            "dev seed makes at most {MAX_USERS} users, {MAX_CHANNELS} channels, {MAX_WORKSPACES} workspaces and {MAX_MESSAGES} messages at once"
        ))
        .into());
    }
    if opts.workspaces < 1 || opts.users < 2 * opts.workspaces || opts.channels < opts.workspaces {
        return Err(Error::usage(format!(
            "dev seed needs at least 2 users and 1 channel per workspace (got {} users, {} channels, {} workspaces)",
            opts.users, opts.channels, opts.workspaces
        ))
        .into());
    }
    let started = Instant::now();
    let mut conn = pool.acquire().await?;
    let already: bool =
        sqlx::query_scalar("select exists (select 1 from public.users where external_source = $1)")
            .bind(SOURCE)
            .fetch_one(&mut *conn)
            .await
            .context("cannot read public.users; has `chatctl migrate up` run?")?;
    if already {
        return Err(Error::usage("this database already holds seeded data")
            .with_help(
                "seed a fresh database (e.g. `chatctl migrate down --to 0 --yes && chatctl migrate up`)",
            )
            .into());
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(opts.seed),
    };
    let now = opts.until;
    let start = now - ChronoDuration::days(90);
    let bar = Progress::new(opts.messages, "messages", !opts.progress);

    // Users: auth.users + auth.identities (as Supabase Auth writes them) + public.users.
    let n_users = opts.users as usize;
    let user_ids: Vec<Uuid> = (0..n_users).map(|_| g.uuid()).collect();
    let mut usernames: Vec<String> = Vec::with_capacity(n_users);
    let mut display: Vec<String> = Vec::with_capacity(n_users);
    for i in 0..n_users {
        let f = FIRST[g.rng.random_range(0..FIRST.len())];
        let l = LAST[g.rng.random_range(0..LAST.len())];
        usernames.push(format!("{f}.{l}{i}"));
        display.push(format!(
            "{}{} {}{}",
            f[..1].to_uppercase(),
            &f[1..],
            l[..1].to_uppercase(),
            &l[1..]
        ));
    }
    let created = ts(start - ChronoDuration::days(30));
    {
        // Through the one path that creates accounts (staged, then written set-based).
        crate::users::accounts::prepare(&mut tx).await?;
        let mut c = CopyStream::open(
            &mut tx,
            "copy pg_temp.chatctl_new_users (id, email, username, display_name, external_source,
                external_id, confirmed_at, created_at) from stdin",
        )
        .await?;
        for i in 0..n_users {
            let _ = write!(c.buf, "{}\t", user_ids[i]);
            esc(&mut c.buf, &format!("{}@example.com", usernames[i]));
            c.buf.push('\t');
            esc(&mut c.buf, &usernames[i]);
            c.buf.push('\t');
            esc(&mut c.buf, &display[i]);
            let _ = write!(c.buf, "\t{SOURCE}\t{i}\t{created}\t{created}");
            c.row_done().await?;
        }
        c.finish().await?;
        crate::users::accounts::create_staged(&mut tx).await?;
    }

    // Workspaces: users are spread round-robin; the first of each is its owner.
    let n_ws = opts.workspaces as usize;
    let ws_ids: Vec<Uuid> = (0..n_ws).map(|_| g.uuid()).collect();
    let ws_users: Vec<Vec<usize>> = (0..n_ws)
        .map(|w| (w..n_users).step_by(n_ws).collect())
        .collect();
    {
        let mut c = CopyStream::open(
            &mut tx,
            "copy public.workspaces (id, slug, name, created_by, created_at) from stdin",
        )
        .await?;
        for (w, id) in ws_ids.iter().enumerate() {
            let _ = write!(
                c.buf,
                "{id}\tseed-{w}\tSeeded workspace {w}\t{}\t{created}",
                user_ids[ws_users[w][0]]
            );
            c.row_done().await?;
        }
        c.finish().await?;
        let mut c = CopyStream::open(
            &mut tx,
            "copy public.workspace_members (workspace_id, user_id, role) from stdin",
        )
        .await?;
        for (w, users) in ws_users.iter().enumerate() {
            for (k, &u) in users.iter().enumerate() {
                let roll: f64 = g.rng.random();
                let role = if k == 0 {
                    "owner"
                } else if roll < 0.01 {
                    "admin"
                } else if roll < 0.03 {
                    "guest"
                } else {
                    "member"
                };
                let _ = write!(c.buf, "{}\t{}\t{role}", ws_ids[w], user_ids[u]);
                c.row_done().await?;
            }
        }
        c.finish().await?;
    }

    // Channels: 70% public, 15% private, 10% DMs, 5% group DMs. Channel 0 of each workspace
    // is #general with everyone in it; other sizes are Zipf-skewed.
    let mut channels: Vec<Channel> = Vec::with_capacity(opts.channels as usize);
    let mut dm_keys = std::collections::HashSet::new();
    let size_zipf = Zipf::new(500.0, 1.2).expect("valid zipf");
    let purposes = ["department", "project", "support", "general"];
    let mut memberships = 0u64;
    {
        let mut cc = String::new();
        let mut mc = String::new();
        for i in 0..opts.channels as usize {
            let w = i % n_ws;
            let pool_users = &ws_users[w];
            let id = g.uuid();
            let roll: f64 = g.rng.random();
            let general = i < n_ws;
            let kind = if general || roll < 0.70 || pool_users.len() < 3 {
                "public"
            } else if roll < 0.85 {
                "private"
            } else if roll < 0.95 {
                "dm"
            } else {
                "group_dm"
            };
            let mut members: Vec<usize> = if general {
                pool_users.clone()
            } else {
                let want = match kind {
                    "dm" => 2,
                    "group_dm" => g.rng.random_range(3..=8usize.min(pool_users.len())),
                    _ => (size_zipf.sample(&mut g.rng) as usize + 2).min(pool_users.len()),
                };
                let mut picked = std::collections::BTreeSet::new();
                while picked.len() < want {
                    picked.insert(pool_users[g.rng.random_range(0..pool_users.len())]);
                }
                picked.into_iter().collect()
            };
            let dm_key = if kind == "dm" || kind == "group_dm" {
                let mut ids: Vec<String> =
                    members.iter().map(|&u| user_ids[u].to_string()).collect();
                ids.sort();
                let key = ids.join(",");
                if !dm_keys.insert((w, key.clone())) {
                    continue; // the same set of users already has its DM
                }
                Some(key)
            } else {
                None
            };
            let creator = members[0];
            let _ = write!(cc, "{id}\t{}\t", ws_ids[w]);
            match kind {
                "public" | "private" => {
                    let name = if general {
                        "general".to_owned()
                    } else {
                        format!("{}-{i}", word_at(g.rng.random_range(60..300)))
                    };
                    let purpose = if general {
                        "general"
                    } else {
                        purposes[g.rng.random_range(0..purposes.len())]
                    };
                    let _ = write!(
                        cc,
                        "{name}\t{kind}\tDiscussion about {name}\t{purpose}\t\\N"
                    );
                }
                _ => {
                    let _ = write!(
                        cc,
                        "\\N\t{kind}\t\t\\N\t{}",
                        dm_key.as_deref().unwrap_or_default()
                    );
                }
            }
            let _ = writeln!(cc, "\t{}\t{created}", user_ids[creator]);
            members.sort_unstable();
            let direct = kind == "dm" || kind == "group_dm";
            for (k, &u) in members.iter().enumerate() {
                // The roll happens as before, so a seed gives the same rows it always gave
                // (but for the roles): a direct message's people are plain members.
                let role = if k == 0 {
                    "owner"
                } else if k < 3 && kind != "dm" && g.rng.random_bool(0.3) {
                    "moderator"
                } else {
                    "member"
                };
                let role = if direct { "member" } else { role };
                let _ = writeln!(mc, "{id}\t{}\t{role}", user_ids[u]);
                memberships += 1;
            }
            channels.push(Channel {
                id,
                workspace: w,
                members,
            });
        }
        let mut c = CopyStream::open(
            &mut tx,
            "copy public.channels (id, workspace_id, name, kind, topic, purpose, dm_key, created_by, created_at) from stdin",
        )
        .await?;
        c.buf = cc;
        c.rows = channels.len() as u64;
        c.finish().await?;
        let mut c = CopyStream::open(
            &mut tx,
            "copy public.members (channel_id, user_id, role) from stdin",
        )
        .await?;
        c.buf = mc;
        c.finish().await?;
        for (w, id) in ws_ids.iter().enumerate() {
            let general = channels.iter().find(|c| c.workspace == w).map(|c| c.id);
            sqlx::query("update public.workspaces set channel_id = $1 where id = $2")
                .bind(general)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
    }

    // Messages, in two passes. The first decides each message's channel, author, time and
    // thread (cheap, 48 bytes a message), so every root's reply count is known before it is
    // written; the second writes the text, roots first then replies (every parent exists),
    // each message from its own seeded generator.
    let n_channels = channels.len();
    let channel_zipf = Zipf::new(n_channels as f64, 1.1).expect("valid zipf");
    let author_zipf: Vec<Zipf<f64>> = channels
        .iter()
        .map(|c| Zipf::new(c.members.len() as f64, 1.3).expect("valid zipf"))
        .collect();
    let span_us = ChronoDuration::days(90).num_microseconds().expect("fits") as f64;
    let mut plan: Vec<Planned> = Vec::new();
    plan.try_reserve_exact(opts.messages as usize)
        .map_err(|_| {
            Error::failed(format!(
                "not enough memory to plan {} messages (about {} MiB)",
                opts.messages,
                (opts.messages * std::mem::size_of::<Planned>() as u64) >> 20
            ))
            .with_help("seed fewer messages at once")
        })?;
    // Recent top-level messages per channel: candidates for replies.
    let mut recent: Vec<std::collections::VecDeque<u32>> = vec![Default::default(); n_channels];
    for i in 0..opts.messages {
        let ch = channel_zipf.sample(&mut g.rng) as usize - 1;
        let members = &channels[ch].members;
        let author =
            members[(author_zipf[ch].sample(&mut g.rng) as usize - 1).min(members.len() - 1)];
        let at = (span_us * (i as f64 + g.rng.random::<f64>()) / opts.messages as f64) as i64;
        let r = &mut recent[ch];
        let parent = if !r.is_empty() && g.rng.random_bool(0.2) {
            r[r.len() - 1 - g.rng.random_range(0..r.len().min(20))]
        } else {
            NO_PARENT
        };
        if parent == NO_PARENT {
            r.push_back(i as u32);
            if r.len() > 50 {
                r.pop_front();
            }
        }
        plan.push(Planned {
            id: g.uuid(),
            ch: ch as u32,
            author: author as u32,
            parent,
            at,
            seed: g.rng.random(),
        });
    }
    let mut replies = vec![0u32; plan.len()];
    let mut last_reply = vec![i64::MIN; plan.len()];
    for p in plan.iter().filter(|p| p.parent != NO_PARENT) {
        replies[p.parent as usize] += 1;
        last_reply[p.parent as usize] = last_reply[p.parent as usize].max(p.at);
    }

    // Into an empty table the load is a bulk load, as pg_restore does it: indexes and foreign
    // keys are built once afterwards, and the per-row thread triggers are off (the counts
    // above are written directly), with a set-based check of the same rules afterwards.
    let empty: bool = sqlx::query_scalar("select not exists (select 1 from public.chat)")
        .fetch_one(&mut *tx)
        .await?;
    sqlx::raw_sql("set local maintenance_work_mem = '256MB'")
        .execute(&mut *tx)
        .await?;
    let deferred = if empty {
        sqlx::raw_sql(
            "alter table public.chat disable trigger chat_check_parent, disable trigger chat_replies_insert",
        )
        .execute(&mut *tx)
        .await?;
        Some(crate::db::bulk::defer(&mut tx, &["public.chat", "public.emojis"]).await?)
    } else {
        None
    };

    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let text_gen = TextGen {
        words: &words,
        word_zipf: Zipf::new(words.len() as f64, 1.07).expect("valid zipf"),
        usernames: &usernames,
        user_ids: &user_ids,
    };
    let mut reactions_buf = String::with_capacity(1 << 20);
    let (mut n_replies, mut n_reactions) = (0u64, 0u64);
    let mut written = 0u64;
    for pass in [Pass::Roots, Pass::Replies] {
        let mut c = CopyStream::open(
            &mut tx,
            "copy public.chat (id, channel_id, user_id, parent_id, message, created_at, updated_at, \
             total_replies, last_reply_at) from stdin",
        )
        .await?;
        for (i, p) in plan.iter().enumerate() {
            let is_reply = p.parent != NO_PARENT;
            if is_reply != (pass == Pass::Replies) {
                continue;
            }
            let chan = &channels[p.ch as usize];
            let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
            let message = text_gen.message(&mut rng, i, chan, p.author as usize);
            let t = ts(start + ChronoDuration::microseconds(p.at));
            let _ = write!(
                c.buf,
                "{}\t{}\t{}\t",
                p.id, chan.id, user_ids[p.author as usize]
            );
            if is_reply {
                let _ = write!(c.buf, "{}\t", plan[p.parent as usize].id);
                n_replies += 1;
            } else {
                c.buf.push_str("\\N\t");
            }
            esc(&mut c.buf, &message.to_string());
            let _ = write!(c.buf, "\t{t}\t{t}\t");
            // Without the bulk path the triggers count replies as they arrive.
            match (replies[i], &deferred) {
                (n, Some(_)) if n > 0 => {
                    let _ = write!(
                        c.buf,
                        "{n}\t{}",
                        ts(start + ChronoDuration::microseconds(last_reply[i]))
                    );
                }
                _ => c.buf.push_str("0\t\\N"),
            }
            c.row_done().await?;
            if rng.random_bool(0.1) {
                let k = rng.random_range(1..=3usize.min(chan.members.len()));
                let mut who = std::collections::BTreeSet::new();
                for _ in 0..k {
                    who.insert(chan.members[rng.random_range(0..chan.members.len())]);
                }
                let emoji = EMOJIS[rng.random_range(0..EMOJIS.len())];
                for u in who {
                    let _ = writeln!(reactions_buf, "{}\t{}\t{emoji}", p.id, user_ids[u]);
                    n_reactions += 1;
                }
            }
            written += 1;
            if written.is_multiple_of(10_000) {
                bar.advance(10_000);
            }
        }
        c.finish().await?;
    }
    bar.advance(written % 10_000);
    let mut c = CopyStream::open(
        &mut tx,
        "copy public.emojis (chat_id, user_id, emoji_uni_code) from stdin",
    )
    .await?;
    c.buf = reactions_buf;
    c.finish().await?;
    if deferred.is_some() {
        check_threads(&mut tx).await?;
        sqlx::raw_sql(
            "alter table public.chat enable trigger chat_check_parent, enable trigger chat_replies_insert",
        )
        .execute(&mut *tx)
        .await?;
    }
    if let Some(d) = deferred {
        bar.set_message("indexing");
        d.restore(&mut tx).await?;
        crate::db::bulk::recount_activity(&mut tx).await?;
    }
    bar.set_message("committing");
    tx.commit().await.context("cannot commit the seeded data")?;
    bar.finish();

    let elapsed = started.elapsed();
    Ok(SeedReport {
        seed: opts.seed,
        until: opts.until,
        workspaces: n_ws as u64,
        users: n_users as u64,
        channels: channels.len() as u64,
        memberships,
        messages: opts.messages,
        replies: n_replies,
        reactions: n_reactions,
        elapsed_ms: elapsed.as_millis() as u64,
        messages_per_sec: (opts.messages as f64 / elapsed.as_secs_f64().max(1e-9)) as u64,
    })
}

const NO_PARENT: u32 = u32::MAX;

/// A message decided by the first pass.
struct Planned {
    id: Uuid,
    ch: u32,
    author: u32,
    /// Index of the root in the plan, or [`NO_PARENT`].
    parent: u32,
    /// Microseconds after the start of the window.
    at: i64,
    /// Seed of the message's own generator (text, mentions, reactions).
    seed: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Roots,
    Replies,
}

struct TextGen<'a> {
    words: &'a [&'a str],
    word_zipf: Zipf<f64>,
    usernames: &'a [String],
    user_ids: &'a [Uuid],
}

impl TextGen<'_> {
    /// A message body: Zipf-distributed words, sometimes a mention, a link, a question or an
    /// attachment.
    fn message(
        &self,
        rng: &mut ChaCha8Rng,
        i: usize,
        chan: &Channel,
        author: usize,
    ) -> serde_json::Value {
        let mut text = String::with_capacity(200);
        let mut mentions: Vec<Uuid> = Vec::new();
        if rng.random_bool(0.06) && chan.members.len() > 1 {
            let m = chan.members[rng.random_range(0..chan.members.len())];
            if m != author {
                let _ = write!(text, "@{} ", self.usernames[m]);
                mentions.push(self.user_ids[m]);
            }
        }
        let len = 3 + (rng.random::<f64>().powi(2) * 25.0) as usize;
        for k in 0..len {
            if k > 0 {
                text.push(' ');
            }
            text.push_str(self.words[self.word_zipf.sample(rng) as usize - 1]);
        }
        if rng.random_bool(0.03) {
            let _ = write!(
                text,
                " https://example.com/{}/{}",
                self.words[rng.random_range(100..self.words.len())],
                i % 997
            );
        }
        text.push(if rng.random_bool(0.15) { '?' } else { '.' });
        let mut message = serde_json::json!({ "text": text });
        if !mentions.is_empty() {
            message["mentions"] = serde_json::json!(mentions);
        }
        if rng.random_bool(0.02) {
            message["attachments"] = serde_json::json!([{ "name": format!("report-{i}.pdf"), "mime_type": "application/pdf" }]);
        }
        message
    }
}

/// The rules the thread triggers enforce row by row, checked once over the whole table after
/// a bulk load: replies point at a top-level message of their own channel, and every root's
/// reply count is right.
async fn check_threads(conn: &mut sqlx::PgConnection) -> Result<()> {
    let (bad_parents, bad_counts): (i64, i64) = sqlx::query_as(
        "select
            (select count(*) from public.chat r join public.chat p on p.id = r.parent_id
              where p.parent_id is not null or p.channel_id <> r.channel_id),
            (select count(*) from public.chat p
               left join (select parent_id, count(*) as n from public.chat
                           where parent_id is not null and not is_deleted group by parent_id) r
                 on r.parent_id = p.id
              where p.parent_id is null and p.total_replies <> coalesce(r.n, 0))",
    )
    .fetch_one(conn)
    .await?;
    if bad_parents > 0 || bad_counts > 0 {
        return Err(Error::failed(format!(
            "the generated threads are inconsistent ({bad_parents} bad parents, {bad_counts} wrong reply counts); nothing was loaded"
        ))
        .into());
    }
    Ok(())
}

fn word_at(rank: usize) -> &'static str {
    WORDS.split_whitespace().nth(rank).unwrap_or("misc")
}

//! Supabase Realtime over a websocket (Phoenix protocol, `vsn=1.0.0`), as
//! `../shared/REALTIME.md` describes the server.
//!
//! Each bot has its own socket (a topic can be joined once per socket, and each bot has its
//! own identity and presence), with up to 100 topics on it, one per chat channel:
//! `realtime:channel:<uuid>`, joined with `postgres_changes` filtered on `channel_id`,
//! presence keyed by the bot's user id, and broadcast with `ack` for typing indicators.
//!
//! What it does, because the server does not:
//! - a topic counts as live only after `system` "Subscribed to PostgreSQL" (changes committed
//!   between the join reply and that message are never delivered), and every time the
//!   socket's topics are all live again the runtime is told [`Wake::Connected`], so it reads
//!   what it missed from the database;
//! - heartbeats every 25 s; an unanswered one closes the socket (1000 "heartbeat timeout");
//! - reconnects with backoff and jitter (1, 2, 5, 10 s), rejoins after `phx_error`, join
//!   errors and join timeouts, and resubscribes after `phx_close` (realtime-js does not);
//! - pushes a fresh `access_token` on every joined topic before the old one expires;
//! - tracks presence once per join (the server allows 5 per 30 s per channel) and sends at
//!   most one typing broadcast per channel every 3 s (every delivery counts against the
//!   project's message quota).
//!
//! Over 900 lines, on purpose: one connection's state machine (join, heartbeat, token
//! refresh, presence, reconnect and catch-up) reads best whole.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::Utc;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use uuid::Uuid;

use super::phoenix::{Backoff, Frame};
use super::token::{Token, Tokens};
use super::{EventSource, TypingSink, Wake, Watch};
use crate::error::{Error, Result};

/// Settings of the Realtime client; [`RealtimeOptions::new`] gives realtime-js's values.
#[derive(Debug, Clone)]
pub struct RealtimeOptions {
    /// The websocket endpoint, without query (`wss://REF.supabase.co/realtime/v1/websocket`).
    pub url: url::Url,
    /// Sent as `apikey`; a secret.
    pub apikey: String,
    pub heartbeat: Duration,
    /// A join with no reply after this long is left and retried.
    pub join_timeout: Duration,
    pub reconnect: Backoff,
    pub rejoin: Backoff,
    /// At most one typing broadcast per channel per this interval.
    pub typing_interval: Duration,
    /// The server's `max_channels_per_client`.
    pub topics_per_socket: usize,
}

impl RealtimeOptions {
    pub fn new(url: url::Url, apikey: String) -> RealtimeOptions {
        RealtimeOptions {
            url,
            apikey,
            heartbeat: Duration::from_secs(25),
            join_timeout: Duration::from_secs(10),
            reconnect: Backoff::reconnect(),
            rejoin: Backoff::reconnect(),
            typing_interval: Duration::from_secs(3),
            topics_per_socket: 100,
        }
    }

    /// The websocket URL of a Supabase project URL (`https://REF.supabase.co` →
    /// `wss://REF.supabase.co/realtime/v1/websocket`). A `ws(s)://` URL is taken as the
    /// endpoint itself (a self-hosted server's `/socket/websocket`).
    pub fn websocket_url(project: &str) -> std::result::Result<url::Url, String> {
        let mut u = url::Url::parse(project.trim()).map_err(|e| e.to_string())?;
        match u.scheme() {
            "ws" | "wss" => return Ok(u),
            "http" => u.set_scheme("ws").map_err(|_| "bad scheme")?,
            "https" => u.set_scheme("wss").map_err(|_| "bad scheme")?,
            s => {
                return Err(format!(
                    "unsupported scheme `{s}` (expected https, http, wss or ws)"
                ));
            }
        }
        let path = format!("{}/realtime/v1/websocket", u.path().trim_end_matches('/'));
        u.set_path(&path);
        u.set_query(None);
        Ok(u)
    }
}

/// The topic of a chat channel.
pub fn topic_of(channel: Uuid) -> String {
    format!("realtime:channel:{channel}")
}

/// The largest websocket message read from Realtime. A change of a chat row is a few KiB
/// (a message's text is at most 40,000 characters); a larger one ends the connection, and
/// the reconnection reads what it missed from the database.
pub const MAX_FRAME_BYTES: usize = 4 << 20;

pub(crate) fn channel_of(topic: &str) -> Option<Uuid> {
    topic.strip_prefix("realtime:channel:")?.parse().ok()
}

/// Which socket: a bot's user and the shard of its channels.
type ConnKey = (Uuid, usize);

enum Event {
    /// Every topic of this socket is subscribed.
    Live(ConnKey),
    /// This socket lost a subscription (or the connection).
    Down(ConnKey),
    /// A change was delivered: the inserted message's id, or `None` for "read everything".
    Change(Option<Uuid>),
}

enum Command {
    Topics(Vec<Uuid>),
    Typing(Uuid),
}

struct ConnHandle {
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

/// The Supabase Realtime event source.
pub struct RealtimeSource {
    opts: std::sync::Arc<RealtimeOptions>,
    tokens: std::sync::Arc<Tokens>,
    events_tx: mpsc::Sender<Event>,
    events: mpsc::Receiver<Event>,
    typing_tx: mpsc::UnboundedSender<(Uuid, Uuid)>,
    typing: mpsc::UnboundedReceiver<(Uuid, Uuid)>,
    conns: HashMap<ConnKey, ConnHandle>,
    /// channel → the socket carrying it, per bot user.
    routes: HashMap<(Uuid, Uuid), ConnKey>,
    down: HashSet<ConnKey>,
    /// Told the runtime it is connected (and not disconnected since).
    announced: Option<bool>,
    /// An event read while coalescing a burst, handled next.
    pending: Option<Event>,
}

impl RealtimeSource {
    pub fn new(opts: RealtimeOptions, tokens: Tokens) -> RealtimeSource {
        let (events_tx, events) = mpsc::channel(1024);
        let (typing_tx, typing) = mpsc::unbounded_channel();
        RealtimeSource {
            opts: std::sync::Arc::new(opts),
            tokens: std::sync::Arc::new(tokens),
            events_tx,
            events,
            typing_tx,
            typing,
            conns: HashMap::new(),
            routes: HashMap::new(),
            down: HashSet::new(),
            announced: None,
            pending: None,
        }
    }

    /// The wake-up the current state calls for, if it changed.
    fn status_change(&mut self) -> Option<Wake> {
        let connected = self.down.is_empty();
        // Not yet connected at start is no news; only a loss after connecting is.
        if self.announced == Some(connected) || (self.announced.is_none() && !connected) {
            return None;
        }
        self.announced = Some(connected);
        Some(if connected {
            Wake::Connected
        } else {
            Wake::Disconnected
        })
    }
}

impl Drop for RealtimeSource {
    fn drop(&mut self) {
        for c in self.conns.values() {
            c.task.abort();
        }
    }
}

impl EventSource for RealtimeSource {
    fn name(&self) -> &'static str {
        "realtime"
    }

    fn watch(&mut self, watches: &[Watch]) {
        let mut wanted: HashMap<ConnKey, (String, Vec<Uuid>)> = HashMap::new();
        self.routes.clear();
        for w in watches {
            for (shard, chunk) in w
                .channels
                .chunks(self.opts.topics_per_socket.max(1))
                .enumerate()
            {
                let key = (w.user_id, shard);
                for c in chunk {
                    self.routes.insert((w.user_id, *c), key);
                }
                wanted.insert(key, (w.bot.clone(), chunk.to_vec()));
            }
        }
        self.conns.retain(|key, c| {
            let keep = wanted.contains_key(key);
            if !keep {
                c.task.abort();
            }
            keep
        });
        self.down.retain(|k| wanted.contains_key(k));
        for (key, (bot, channels)) in wanted {
            match self.conns.get(&key) {
                Some(c) => {
                    let _ = c.commands.send(Command::Topics(channels));
                }
                None => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let conn = Conn {
                        key,
                        bot,
                        opts: self.opts.clone(),
                        tokens: self.tokens.clone(),
                        events: self.events_tx.clone(),
                        commands: rx,
                        topics: channels.into_iter().map(|c| (c, Topic::new())).collect(),
                        token: None,
                        next_ref: 0,
                        heartbeat_pending: None,
                        live_reported: false,
                    };
                    self.down.insert(key);
                    self.conns.insert(
                        key,
                        ConnHandle {
                            commands: tx,
                            task: tokio::spawn(conn.run()),
                        },
                    );
                }
            }
        }
    }

    fn typing_sink(&self) -> Option<TypingSink> {
        Some(TypingSink::new(self.typing_tx.clone()))
    }

    fn next(&mut self) -> Pin<Box<dyn Future<Output = Result<Wake>> + Send + '_>> {
        Box::pin(async move {
            if let Some(w) = self.status_change() {
                return Ok(w);
            }
            loop {
                let pending = self.pending.take();
                tokio::select! {
                    ev = async { match pending { Some(ev) => Some(ev), None => self.events.recv().await } } => {
                        let Some(ev) = ev else {
                            return Err(Error::failed("the Realtime connections stopped").into());
                        };
                        match ev {
                            Event::Change(first) => {
                                // Coalesce a burst into one wake-up, keeping the ids.
                                let mut ids: Vec<Uuid> = first.into_iter().collect();
                                let mut all_named = !ids.is_empty();
                                let mut other = None;
                                while let Ok(ev) = self.events.try_recv() {
                                    match ev {
                                        Event::Change(Some(id)) if ids.len() < super::MAX_IDS_PER_WAKE => ids.push(id),
                                        Event::Change(_) => all_named = false,
                                        ev => {
                                            other = Some(ev);
                                            break;
                                        }
                                    }
                                }
                                if let Some(ev) = other {
                                    // A status change arrived behind the burst: keep it for next time.
                                    self.pending = Some(ev);
                                }
                                return Ok(if all_named { Wake::Inserted(ids) } else { Wake::Notified });
                            }
                            Event::Live(k) => {
                                self.down.remove(&k);
                                // Each subscription going live needs a catch-up.
                                return Ok(self.status_change().unwrap_or(Wake::Notified));
                            }
                            Event::Down(k) => {
                                if self.conns.contains_key(&k) {
                                    self.down.insert(k);
                                }
                                if let Some(w) = self.status_change() {
                                    return Ok(w);
                                }
                            }
                        }
                    }
                    Some((user, channel)) = self.typing.recv() => {
                        if let Some(c) = self.routes.get(&(user, channel)).and_then(|k| self.conns.get(k)) {
                            let _ = c.commands.send(Command::Typing(channel));
                        }
                    }
                }
            }
        })
    }
}

#[derive(Debug)]
enum TopicState {
    /// To be joined at this time.
    Idle {
        at: Instant,
    },
    Joining {
        join_ref: String,
        sent: Instant,
    },
    Joined {
        join_ref: String,
        ids: Vec<i64>,
        live: bool,
    },
}

#[derive(Debug)]
struct Topic {
    state: TopicState,
    /// Failed joins in a row.
    attempts: usize,
    last_typing: Option<Instant>,
    /// Presence pushes in the last 30 s (the server allows 5).
    tracks: VecDeque<Instant>,
}

impl Topic {
    fn new() -> Topic {
        Topic {
            state: TopicState::Idle { at: Instant::now() },
            attempts: 0,
            last_typing: None,
            tracks: VecDeque::new(),
        }
    }

    fn join_ref(&self) -> Option<&str> {
        match &self.state {
            TopicState::Joining { join_ref, .. } | TopicState::Joined { join_ref, .. } => {
                Some(join_ref)
            }
            TopicState::Idle { .. } => None,
        }
    }
}

/// Why a session ended.
enum Ended {
    Lost(String),
    Stopped,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One socket of one bot.
struct Conn {
    key: ConnKey,
    bot: String,
    opts: std::sync::Arc<RealtimeOptions>,
    tokens: std::sync::Arc<Tokens>,
    events: mpsc::Sender<Event>,
    commands: mpsc::UnboundedReceiver<Command>,
    topics: BTreeMap<Uuid, Topic>,
    token: Option<Token>,
    next_ref: u64,
    heartbeat_pending: Option<String>,
    live_reported: bool,
}

impl Conn {
    fn user(&self) -> Uuid {
        self.key.0
    }

    fn make_ref(&mut self) -> u64 {
        self.next_ref += 1;
        self.next_ref
    }

    fn report(&self, ev: Event) {
        // A full queue already holds wake-ups: dropping one loses nothing.
        let _ = self.events.try_send(ev);
    }

    fn report_down(&mut self) {
        self.live_reported = false;
        self.report(Event::Down(self.key));
    }

    async fn run(mut self) {
        let mut attempt = 0usize;
        loop {
            let ended = match self.connect().await {
                Ok(ws) => {
                    attempt = 0;
                    self.session(ws).await
                }
                Err(e) => Ended::Lost(e),
            };
            match ended {
                Ended::Stopped => return,
                Ended::Lost(why) => {
                    self.report_down();
                    let wait = self.opts.reconnect.delay(attempt);
                    attempt += 1;
                    tracing::warn!(bot = %self.bot, reason = %why, retry_in = ?wait, "Realtime connection lost; reconnecting");
                    if self.idle(wait).await {
                        return;
                    }
                }
            }
        }
    }

    /// Sleeps while disconnected, still taking commands; true when told to stop.
    async fn idle(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return false,
                cmd = self.commands.recv() => match cmd {
                    None => return true,
                    Some(Command::Topics(t)) => self.set_topics(t),
                    Some(Command::Typing(_)) => {}
                },
            }
        }
    }

    fn set_topics(&mut self, channels: Vec<Uuid>) {
        let wanted: HashSet<Uuid> = channels.iter().copied().collect();
        self.topics.retain(|c, _| wanted.contains(c));
        for c in channels {
            self.topics.entry(c).or_insert_with(Topic::new);
        }
    }

    async fn connect(&mut self) -> std::result::Result<Ws, String> {
        let mut url = self.opts.url.clone();
        url.query_pairs_mut()
            .append_pair("apikey", &self.opts.apikey)
            .append_pair("vsn", "1.0.0")
            .append_pair("log_level", "error");
        let limits = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME_BYTES))
            .max_frame_size(Some(MAX_FRAME_BYTES));
        let connect =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(limits), true);
        match tokio::time::timeout(self.opts.join_timeout, connect).await {
            Err(_) => Err("timed out opening the websocket".into()),
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
                let body = resp
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default()
                    .into_owned();
                Err(format!(
                    "the server refused the websocket: HTTP {} {}",
                    resp.status(),
                    crate::error::scrub(body.trim())
                ))
            }
            Ok(Err(e)) => Err(crate::error::scrub(&e.to_string())),
        }
    }

    fn token(&mut self) -> &Token {
        let user = self.user();
        let stale = self
            .token
            .as_ref()
            .is_none_or(|t| t.refresh_at.is_some_and(|r| r <= Utc::now()));
        if stale {
            match self.tokens.issue(user, Utc::now()) {
                Ok(t) => self.token = Some(t),
                Err(e) => {
                    tracing::error!(bot = %self.bot, error = %e, "cannot issue a Realtime token")
                }
            }
        }
        self.token.get_or_insert_with(|| Token {
            jwt: String::new(),
            expires_at: None,
            refresh_at: None,
        })
    }

    async fn session(&mut self, ws: Ws) -> Ended {
        let (mut sink, mut stream) = ws.split();
        self.heartbeat_pending = None;
        let now = Instant::now();
        for t in self.topics.values_mut() {
            t.state = TopicState::Idle { at: now };
        }
        if let Some(exp) = self.token().expires_at
            && self.token.as_ref().is_some_and(|t| t.refresh_at.is_none())
            && exp - Utc::now() < chrono::Duration::days(1)
        {
            tracing::warn!(bot = %self.bot, expires_at = %exp, "the Realtime key expires soon and cannot be refreshed; set SUPABASE_JWT_SECRET so chatctl mints its own tokens");
        }
        let mut heartbeat =
            tokio::time::interval_at(now + self.opts.heartbeat, self.opts.heartbeat);
        let tick = (self.opts.heartbeat / 5).min(Duration::from_millis(250));
        let mut housekeeping = tokio::time::interval(tick);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut out: Vec<Frame> = Vec::new();
            tokio::select! {
                msg = stream.next() => match msg {
                    None => return Ended::Lost("the connection dropped".into()),
                    Some(Err(e)) => return Ended::Lost(format!("the connection failed: {e}")),
                    Some(Ok(Message::Text(text))) => match Frame::decode(&text) {
                        Some(f) => self.on_frame(f, &mut out),
                        None => tracing::debug!(bot = %self.bot, "ignoring a frame that is not a Phoenix message"),
                    },
                    Some(Ok(Message::Close(c))) => {
                        let (code, reason) = c.map(|c| (u16::from(c.code), c.reason.to_string())).unwrap_or((1005, String::new()));
                        return Ended::Lost(format!("the server closed the connection ({code} {reason})"));
                    }
                    Some(Ok(_)) => {}
                },
                _ = heartbeat.tick() => {
                    if self.heartbeat_pending.is_some() {
                        let _ = sink.send(Message::Close(Some(CloseFrame {
                            code: CloseCode::Normal,
                            reason: "heartbeat timeout".into(),
                        }))).await;
                        return Ended::Lost("heartbeat timeout".into());
                    }
                    let r = self.make_ref();
                    self.heartbeat_pending = Some(r.to_string());
                    out.push(Frame::push("phoenix", "heartbeat", json!({}), r, None));
                }
                _ = housekeeping.tick() => self.housekeeping(&mut out),
                cmd = self.commands.recv() => match cmd {
                    None => {
                        let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))).await;
                        return Ended::Stopped;
                    }
                    Some(Command::Topics(t)) => {
                        for (c, topic) in &self.topics {
                            if !t.contains(c) && let Some(j) = topic.join_ref() {
                                let j = j.to_owned();
                                let r = self.next_ref + 1;
                                self.next_ref = r;
                                out.push(Frame::push(&topic_of(*c), "phx_leave", json!({}), r, Some(&j)));
                            }
                        }
                        self.set_topics(t);
                    }
                    Some(Command::Typing(channel)) => self.typing(channel, &mut out),
                },
            }
            for f in out {
                if let Err(e) = sink.send(Message::text(f.encode())).await {
                    return Ended::Lost(format!("cannot send: {e}"));
                }
            }
        }
    }

    fn join_frame(&mut self, channel: Uuid) -> (Frame, String) {
        let r = self.make_ref();
        let user = self.user();
        let jwt = self.token().jwt.clone();
        let payload = json!({
            "config": {
                "broadcast": {"ack": true, "self": false},
                "presence": {"enabled": true, "key": user.to_string()},
                "postgres_changes": [subscription(channel)],
                "private": false,
            },
            "access_token": jwt,
        });
        let join_ref = r.to_string();
        (
            Frame::push(&topic_of(channel), "phx_join", payload, r, Some(&join_ref)),
            join_ref,
        )
    }

    /// Joins due topics, times out silent joins, refreshes the token.
    fn housekeeping(&mut self, out: &mut Vec<Frame>) {
        let now = Instant::now();
        let refresh = self
            .token
            .as_ref()
            .and_then(|t| t.refresh_at)
            .is_some_and(|r| r <= Utc::now());
        if refresh {
            let jwt = self.token().jwt.clone();
            tracing::debug!(bot = %self.bot, "pushing a fresh access token");
            let joined: Vec<(Uuid, String)> = self
                .topics
                .iter()
                .filter_map(|(c, t)| match &t.state {
                    TopicState::Joined { join_ref, .. } => Some((*c, join_ref.clone())),
                    _ => None,
                })
                .collect();
            for (c, j) in joined {
                let r = self.make_ref();
                out.push(Frame::push(
                    &topic_of(c),
                    "access_token",
                    json!({"access_token": jwt}),
                    r,
                    Some(&j),
                ));
            }
        }
        let channels: Vec<Uuid> = self.topics.keys().copied().collect();
        for c in channels {
            let due = match &self.topics[&c].state {
                TopicState::Idle { at } => *at <= now,
                TopicState::Joining { sent, join_ref } => {
                    if now.duration_since(*sent) >= self.opts.join_timeout {
                        tracing::warn!(bot = %self.bot, channel = %c, "no reply to a join; leaving and retrying");
                        let j = join_ref.clone();
                        let r = self.make_ref();
                        out.push(Frame::push(
                            &topic_of(c),
                            "phx_leave",
                            json!({}),
                            r,
                            Some(&j),
                        ));
                        self.retry_later(c);
                    }
                    false
                }
                TopicState::Joined { .. } => false,
            };
            if due {
                let (frame, join_ref) = self.join_frame(c);
                out.push(frame);
                if let Some(t) = self.topics.get_mut(&c) {
                    t.state = TopicState::Joining {
                        join_ref,
                        sent: now,
                    };
                }
            }
        }
    }

    /// The topic failed: join again after the rejoin backoff.
    fn retry_later(&mut self, channel: Uuid) {
        let delay = {
            let Some(t) = self.topics.get_mut(&channel) else {
                return;
            };
            let d = self.opts.rejoin.delay(t.attempts);
            t.attempts += 1;
            t.state = TopicState::Idle {
                at: Instant::now() + d,
            };
            d
        };
        tracing::debug!(bot = %self.bot, %channel, retry_in = ?delay, "rejoining later");
        if self.live_reported {
            self.report_down();
        }
    }

    fn on_frame(&mut self, f: Frame, out: &mut Vec<Frame>) {
        if f.topic == "phoenix" {
            if f.event == "phx_reply"
                && f.reference.is_some()
                && f.reference == self.heartbeat_pending
            {
                self.heartbeat_pending = None;
            }
            return;
        }
        let Some(channel) = channel_of(&f.topic) else {
            return;
        };
        let Some(topic) = self.topics.get(&channel) else {
            return;
        };
        let current = topic.join_ref().map(str::to_owned);
        match f.event.as_str() {
            "phx_reply" => {
                let joining = matches!(&topic.state, TopicState::Joining { join_ref, .. } if Some(join_ref) == f.reference.as_ref());
                if joining {
                    self.on_join_reply(channel, &f, out);
                } else if f.status() == Some("error") {
                    tracing::warn!(bot = %self.bot, %channel, reason = %f.reason(), "the server refused a push");
                }
            }
            "system" => self.on_system(channel, &f),
            "phx_close" | "phx_error" if f.reference.is_some() && f.reference == current => {
                if f.event == "phx_close" {
                    tracing::warn!(bot = %self.bot, %channel, "the server closed the channel; resubscribing");
                } else {
                    tracing::warn!(bot = %self.bot, %channel, payload = %f.payload, "the channel crashed on the server; rejoining");
                }
                self.retry_later(channel);
            }
            "postgres_changes" => {
                let TopicState::Joined { ids, .. } = &topic.state else {
                    return;
                };
                let matched = f
                    .payload
                    .get("ids")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().filter_map(Value::as_i64).any(|i| ids.contains(&i)));
                if !matched {
                    tracing::debug!(bot = %self.bot, %channel, "a change for no subscription of ours");
                    return;
                }
                let data = f.payload.get("data").cloned().unwrap_or_default();
                if let Some(errors) = data.get("errors").filter(|e| !e.is_null()) {
                    tracing::warn!(bot = %self.bot, %channel, %errors, "a change arrived with errors; reading from the database instead");
                    self.report(Event::Change(None));
                    return;
                }
                // Bots act on new messages; edits and deletes (a root's reply counter moving
                // with every reply) wake nobody.
                if data.get("type").and_then(Value::as_str) == Some("INSERT") {
                    let id = data
                        .pointer("/record/id")
                        .and_then(Value::as_str)
                        .and_then(|i| i.parse().ok());
                    self.report(Event::Change(id));
                }
            }
            _ => {}
        }
    }

    fn on_join_reply(&mut self, channel: Uuid, f: &Frame, out: &mut Vec<Frame>) {
        if f.status() != Some("ok") {
            let reason = f.reason();
            let permanent = [
                "Unauthorized",
                "MalformedJWT",
                "JwtSignatureError",
                "JwtSignerError",
                "PrivateOnly",
                "TopicNameRequired",
                "RealtimeDisabledForTenant",
                "TenantNotFound",
                "unmatched topic",
            ]
            .iter()
            .any(|p| reason.starts_with(p));
            if reason.starts_with("InvalidJWTToken") {
                // Force a fresh token for the next join.
                self.token = None;
            }
            if permanent {
                tracing::error!(bot = %self.bot, %channel, %reason, "Realtime refused the join; check the project's settings and keys (retrying)");
            } else {
                tracing::warn!(bot = %self.bot, %channel, %reason, "Realtime refused the join; retrying");
            }
            self.retry_later(channel);
            return;
        }
        let entries = f
            .payload
            .pointer("/response/postgres_changes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let want = subscription(channel);
        let same = entries.len() == 1
            && ["event", "schema", "table", "filter"]
                .iter()
                .all(|k| entries[0].get(k) == want.get(k));
        let ids: Vec<i64> = entries
            .iter()
            .filter_map(|e| e.get("id")?.as_i64())
            .collect();
        if !same || ids.is_empty() {
            tracing::error!(bot = %self.bot, %channel, reply = %f.payload, "the server's subscriptions do not match the join; leaving and rejoining");
            let j = f.reference.clone().unwrap_or_default();
            let r = self.make_ref();
            out.push(Frame::push(&f.topic, "phx_leave", json!({}), r, Some(&j)));
            self.retry_later(channel);
            return;
        }
        let join_ref = f.reference.clone().unwrap_or_default();
        let now = Instant::now();
        let user = self.user();
        let bot = self.bot.clone();
        let track_ref = self.make_ref();
        let Some(t) = self.topics.get_mut(&channel) else {
            return;
        };
        t.state = TopicState::Joined {
            join_ref: join_ref.clone(),
            ids,
            live: false,
        };
        // Presence: once per join, never more than 4 per 30 s (the server's limit is 5).
        while t
            .tracks
            .front()
            .is_some_and(|x| now.duration_since(*x) > Duration::from_secs(30))
        {
            t.tracks.pop_front();
        }
        if t.tracks.len() < 4 {
            t.tracks.push_back(now);
            out.push(Frame::push(
                &f.topic,
                "presence",
                json!({"type": "presence", "event": "track", "payload": {
                    "user_id": user, "name": bot, "status": "online", "bot": true,
                    "online_at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                }}),
                track_ref,
                Some(&join_ref),
            ));
        }
    }

    fn on_system(&mut self, channel: Uuid, f: &Frame) {
        let p = &f.payload;
        let extension = p.get("extension").and_then(Value::as_str).unwrap_or("");
        let message = p.get("message").and_then(Value::as_str).unwrap_or("");
        match (extension, f.status()) {
            ("postgres_changes", Some("ok")) => {
                let Some(t) = self.topics.get_mut(&channel) else {
                    return;
                };
                let TopicState::Joined { live, .. } = &mut t.state else {
                    return;
                };
                *live = true;
                t.attempts = 0;
                tracing::debug!(bot = %self.bot, %channel, "subscribed to PostgreSQL");
                let all = self
                    .topics
                    .values()
                    .all(|t| matches!(t.state, TopicState::Joined { live: true, .. }));
                if all {
                    if !self.live_reported {
                        tracing::info!(bot = %self.bot, channels = self.topics.len(), "Realtime subscriptions live");
                    }
                    self.live_reported = true;
                    self.report(Event::Live(self.key));
                } else {
                    // Catch up on this channel now; the others follow when they are live.
                    self.report(Event::Change(None));
                }
            }
            ("postgres_changes", _) => {
                tracing::warn!(bot = %self.bot, %channel, %message, "the Postgres Changes subscription failed; the channel stays joined, its messages are picked up by the poll");
                if let Some(Topic {
                    state: TopicState::Joined { live, .. },
                    ..
                }) = self.topics.get_mut(&channel)
                {
                    *live = false;
                }
                if self.live_reported {
                    self.report_down();
                }
            }
            (_, Some("error")) => {
                if message.contains("Token") || message.contains("JWT") {
                    self.token = None;
                }
                tracing::warn!(bot = %self.bot, %channel, %message, "Realtime is closing the channel");
            }
            _ if message == "Server requested disconnect" => {
                tracing::info!(bot = %self.bot, "Realtime asked to reconnect (service restart)");
            }
            _ => {}
        }
    }

    fn typing(&mut self, channel: Uuid, out: &mut Vec<Frame>) {
        let interval = self.opts.typing_interval;
        let user = self.user();
        let r = self.next_ref + 1;
        let Some(t) = self.topics.get_mut(&channel) else {
            return;
        };
        let TopicState::Joined { join_ref, .. } = &t.state else {
            return;
        };
        let now = Instant::now();
        if t.last_typing
            .is_some_and(|l| now.duration_since(l) < interval)
        {
            return;
        }
        t.last_typing = Some(now);
        self.next_ref = r;
        out.push(Frame::push(
            &topic_of(channel),
            "broadcast",
            json!({"type": "broadcast", "event": "typing", "payload": {"user_id": user, "typing": true}}),
            r,
            Some(join_ref),
        ));
    }
}

/// The Postgres Changes subscription of a chat channel's topic.
fn subscription(channel: Uuid) -> Value {
    json!({"event": "*", "schema": "public", "table": "chat", "filter": format!("channel_id=eq.{channel}")})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_urls_become_websocket_endpoints() {
        let u = RealtimeOptions::websocket_url("https://abcdefghijklmnopqrst.supabase.co").unwrap();
        assert_eq!(
            u.as_str(),
            "wss://abcdefghijklmnopqrst.supabase.co/realtime/v1/websocket"
        );
        let u = RealtimeOptions::websocket_url("http://localhost:54321/").unwrap();
        assert_eq!(u.as_str(), "ws://localhost:54321/realtime/v1/websocket");
        let u = RealtimeOptions::websocket_url("ws://localhost:4000/socket/websocket").unwrap();
        assert_eq!(u.as_str(), "ws://localhost:4000/socket/websocket");
        assert!(RealtimeOptions::websocket_url("ftp://x").is_err());
    }

    #[test]
    fn topics_name_their_channel() {
        let c = Uuid::new_v4();
        assert_eq!(channel_of(&topic_of(c)), Some(c));
        assert_eq!(channel_of("realtime:room-a"), None);
    }
}

//! A stand-in for Supabase Realtime (which cannot run here): a real websocket server that
//! speaks the frames of `../shared/fixtures/realtime/v1/` (REALTIME.md §16), with the
//! faults a test needs: join errors, token expiry, server-side closes, `phx_error`, "Server
//! requested disconnect" + 1012, refused handshakes, silent heartbeats and dropped
//! connections. The test feeds it the rows it inserts (`insert`); like the real server, it
//! delivers a change only to topics subscribed at that moment.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use uuid::Uuid;

fn fixtures_dir() -> PathBuf {
    super::fixtures("realtime/v1")
}

/// The `n`-th server frame with `event` in a fixture file (templates for what we send).
pub fn fixture_frame(file: &str, event: &str, n: usize) -> Value {
    let text = std::fs::read_to_string(fixtures_dir().join(format!("{file}.jsonl")))
        .unwrap_or_else(|e| panic!("fixture {file}: {e} (shared/ must sit beside the checkout)"));
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["dir"] == "server" && l["frame"]["event"] == event)
        .nth(n)
        .unwrap_or_else(|| panic!("no server frame {event} #{n} in {file}"))["frame"]
        .clone()
}

/// The `n`-th client frame with `event` in a fixture file (what the client should send).
pub fn fixture_client_frame(file: &str, event: &str, n: usize) -> Value {
    let text = std::fs::read_to_string(fixtures_dir().join(format!("{file}.jsonl"))).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["dir"] == "client" && l["frame"]["event"] == event)
        .nth(n)
        .unwrap_or_else(|| panic!("no client frame {event} #{n} in {file}"))["frame"]
        .clone()
}

enum Out {
    Frame(Value),
    Close(u16, String),
    /// Drop the TCP connection without a close frame.
    Drop,
}

struct Joined {
    join_ref: String,
    sub_id: i64,
    channel: Uuid,
    token: String,
    exp: Option<i64>,
    subscribed: bool,
}

struct Conn {
    tx: mpsc::UnboundedSender<Out>,
    topics: HashMap<String, Joined>,
}

#[derive(Default)]
struct State {
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    /// Every client frame, in order: (connection, frame).
    received: Vec<(u64, Value)>,
    /// Close frames the clients sent: (code, reason).
    client_closes: Vec<(u16, String)>,
    /// What the server closed (phx_close), per topic.
    server_closes: Vec<String>,
    refuse: VecDeque<(u16, String)>,
    refused: usize,
    fail_joins: VecDeque<String>,
    silent_heartbeats: bool,
    delivered: usize,
}

/// Timings and checks of the stand-in.
#[derive(Clone)]
pub struct ServerOptions {
    /// Verify access tokens (HS256) with this secret, and end channels when they expire.
    pub jwt_secret: Option<String>,
    /// Between the join reply and "Subscribed to PostgreSQL" (real server: ~0.8 s and more).
    pub subscribe_delay: Duration,
    /// Before a join error reply (real server: 5 s); the socket stalls meanwhile.
    pub join_error_delay: Duration,
}

pub struct FakeRealtime {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    opts: ServerOptions,
}

impl FakeRealtime {
    pub async fn start(opts: ServerOptions) -> FakeRealtime {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let (st, o) = (state.clone(), opts.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp, st.clone(), o.clone()));
            }
        });
        FakeRealtime { addr, state, opts }
    }

    /// The endpoint, as a self-hosted server mounts it.
    pub fn url(&self) -> url::Url {
        format!("ws://{}/socket/websocket", self.addr)
            .parse()
            .unwrap()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Delivers an INSERT of `record` (a `to_jsonb(chat)` row) to the topics subscribed to its
    /// channel right now, in the fixture's `postgres_changes` shape.
    pub fn insert(&self, record: &Value) {
        let channel: Uuid = record["channel_id"].as_str().unwrap().parse().unwrap();
        let template = fixture_frame("insert-event", "postgres_changes", 0);
        self.with(|s| {
            for c in s.conns.values() {
                for (topic, j) in &c.topics {
                    if j.channel != channel || !j.subscribed {
                        continue;
                    }
                    let mut f = template.clone();
                    f["topic"] = json!(topic);
                    f["payload"]["ids"] = json!([j.sub_id]);
                    f["payload"]["data"]["record"] = record.clone();
                    f["payload"]["data"]["commit_timestamp"] = json!(
                        chrono::Utc::now()
                            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                            .to_string()
                    );
                    let _ = c.tx.send(Out::Frame(f));
                    s.delivered += 1;
                }
            }
        });
    }

    /// Ends the channel's topics the way a quota or token error does: system error, then
    /// `phx_close` (no automatic rejoin in realtime-js).
    pub fn system_close(&self, channel: Uuid, message: &str) {
        let mut sys = fixture_frame("system-error-close", "system", 1);
        sys["payload"]["message"] = json!(message);
        self.end_topics(channel, Some(sys), "phx_close");
    }

    /// The channel process crashed: `phx_error {}`.
    pub fn phx_error(&self, channel: Uuid) {
        self.end_topics(channel, None, "phx_error");
    }

    fn end_topics(&self, channel: Uuid, system: Option<Value>, event: &str) {
        let template = fixture_frame(
            if event == "phx_error" {
                "phx-error-rejoin"
            } else {
                "system-error-close"
            },
            event,
            0,
        );
        self.with(|s| {
            for c in s.conns.values_mut() {
                let ended: Vec<String> = c
                    .topics
                    .iter()
                    .filter(|(_, j)| j.channel == channel)
                    .map(|(t, _)| t.clone())
                    .collect();
                for t in ended {
                    let j = c.topics.remove(&t).unwrap();
                    if let Some(mut sys) = system.clone() {
                        sys["topic"] = json!(t);
                        sys["payload"]["channel"] = json!(t.trim_start_matches("realtime:"));
                        let _ = c.tx.send(Out::Frame(sys));
                    }
                    let mut f = template.clone();
                    f["topic"] = json!(t);
                    f["ref"] = json!(j.join_ref);
                    let _ = c.tx.send(Out::Frame(f));
                    s.server_closes.push(t);
                }
            }
        });
    }

    /// "Server requested disconnect" on every topic, then close 1012 (service restart).
    pub fn server_disconnect(&self) {
        let sys = fixture_frame("server-disconnect", "system", 1);
        self.with(|s| {
            for c in s.conns.values_mut() {
                for t in c.topics.keys() {
                    let mut f = sys.clone();
                    f["topic"] = json!(t);
                    let _ = c.tx.send(Out::Frame(f));
                }
                c.topics.clear();
                let _ = c.tx.send(Out::Close(1012, String::new()));
            }
        });
    }

    /// Drops every connection without a close frame.
    pub fn drop_connections(&self) {
        self.with(|s| {
            for c in s.conns.values_mut() {
                c.topics.clear();
                let _ = c.tx.send(Out::Drop);
            }
        });
    }

    /// Refuses the next handshakes with this HTTP status and `{"error": message}`.
    pub fn refuse_next(&self, n: usize, status: u16, message: &str) {
        self.with(|s| {
            for _ in 0..n {
                s.refuse.push_back((status, message.to_owned()));
            }
        });
    }

    /// Refuses the next joins with these reasons (after `join_error_delay`).
    pub fn fail_next_joins(&self, reasons: &[&str]) {
        self.with(|s| s.fail_joins.extend(reasons.iter().map(|r| (*r).to_owned())));
    }

    pub fn silent_heartbeats(&self, on: bool) {
        self.with(|s| s.silent_heartbeats = on);
    }

    /// How many `postgres_changes` frames `insert` has delivered to subscribed topics.
    pub fn delivered(&self) -> usize {
        self.with(|s| s.delivered)
    }

    /// Client frames with this event.
    pub fn frames(&self, event: &str) -> Vec<Value> {
        self.with(|s| {
            s.received
                .iter()
                .filter(|(_, f)| f["event"] == event)
                .map(|(_, f)| f.clone())
                .collect()
        })
    }

    /// How many websocket connections were accepted; refused handshakes.
    pub fn connections(&self) -> (u64, usize) {
        self.with(|s| (s.next_conn, s.refused))
    }

    pub fn client_closes(&self) -> Vec<(u16, String)> {
        self.with(|s| s.client_closes.clone())
    }

    /// Topics subscribed right now (joined, and "Subscribed to PostgreSQL" sent).
    pub fn subscribed(&self) -> usize {
        self.with(|s| {
            s.conns
                .values()
                .flat_map(|c| c.topics.values())
                .filter(|j| j.subscribed)
                .count()
        })
    }

    pub fn server_closes(&self) -> Vec<String> {
        self.with(|s| s.server_closes.clone())
    }

    /// Waits until `n` websocket connections have been accepted in all.
    pub async fn wait_connections(&self, n: u64, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.connections().0 < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} connections accepted after {within:?}",
                self.connections().0
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `n` topics are subscribed.
    pub async fn wait_subscribed(&self, n: usize, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.subscribed() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} topics subscribed after {within:?}",
                self.subscribed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn reply(topic: &str, reference: &Value, status: &str, response: Value) -> Value {
    let mut f = fixture_frame("heartbeat", "phx_reply", 0);
    f["topic"] = json!(topic);
    f["ref"] = reference.clone();
    f["payload"] = json!({"status": status, "response": response});
    f
}

/// Checks a token: `Ok(exp)`, or the server's message for it.
fn check_token(opts: &ServerOptions, token: &str) -> Result<Option<i64>, String> {
    let Some(secret) = &opts.jwt_secret else {
        return Ok(None);
    };
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: i64,
        role: String,
    }
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.validate_aud = false;
    v.validate_exp = false;
    let claims = jsonwebtoken::decode::<Claims>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
        &v,
    )
    .map_err(|_| "The token provided is not a valid JWT".to_owned())?
    .claims;
    if claims.role.is_empty() {
        return Err("Fields `role` and `exp` are required in JWT".into());
    }
    let now = chrono::Utc::now().timestamp();
    if claims.exp <= now {
        return Err(format!(
            "Token has expired {} seconds ago",
            now - claims.exp
        ));
    }
    Ok(Some(claims.exp))
}

async fn serve(tcp: tokio::net::TcpStream, state: Arc<Mutex<State>>, opts: ServerOptions) {
    let refuse = state.lock().unwrap().refuse.pop_front();
    // tungstenite's callback type fixes the large error variant.
    #[allow(clippy::result_large_err)]
    let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let error = |status: u16, msg: &str| {
            let mut r = ErrorResponse::new(Some(json!({"error": msg}).to_string()));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            r
        };
        let query: HashMap<String, String> = req
            .uri()
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        if !req.uri().path().ends_with("/websocket") {
            return Err(error(404, "Not found"));
        }
        if query
            .get("vsn")
            .is_some_and(|v| v != "1.0.0" && v != "2.0.0")
        {
            return Err(error(403, ""));
        }
        if !query.contains_key("apikey") && !req.headers().contains_key("x-api-key") {
            return Err(error(401, "API key is missing"));
        }
        if let Some((status, msg)) = &refuse {
            return Err(error(*status, msg));
        }
        Ok(resp)
    };
    let ws = match tokio_tungstenite::accept_hdr_async(tcp, check).await {
        Ok(ws) => ws,
        Err(_) => {
            state.lock().unwrap().refused += 1;
            return;
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    let id = {
        let mut s = state.lock().unwrap();
        s.next_conn += 1;
        let id = s.next_conn;
        s.conns.insert(
            id,
            Conn {
                tx: tx.clone(),
                topics: HashMap::new(),
            },
        );
        id
    };
    let (mut sink, mut stream) = ws.split();
    let mut expiry = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                    // The server requires topic, event, payload and ref (ref may be null).
                    if ["topic", "event", "payload", "ref"].iter().any(|k| frame.get(k).is_none()) {
                        continue;
                    }
                    state.lock().unwrap().received.push((id, frame.clone()));
                    if let Some(delay) = handle(id, &frame, &state, &opts, &tx) {
                        // A failing join stalls the whole socket, as the real one does.
                        tokio::time::sleep(delay).await;
                    }
                }
                Some(Ok(Message::Close(c))) => {
                    let c = c.map(|c| (u16::from(c.code), c.reason.to_string())).unwrap_or((1005, String::new()));
                    state.lock().unwrap().client_closes.push(c);
                    break;
                }
                Some(Ok(_)) => {}
                _ => break,
            },
            out = rx.recv() => match out {
                Some(Out::Frame(f)) => {
                    if sink.send(Message::text(f.to_string())).await.is_err() { break; }
                }
                Some(Out::Close(code, reason)) => {
                    let _ = sink.send(Message::Close(Some(CloseFrame { code: code.into(), reason: reason.into() }))).await;
                    break;
                }
                Some(Out::Drop) | None => break,
            },
            _ = expiry.tick() => {
                // The server's periodic token check: an expired token ends the channel.
                let now = chrono::Utc::now().timestamp();
                let expired: Vec<Uuid> = state.lock().unwrap().conns.get(&id).map(|c| {
                    c.topics.values().filter(|j| j.exp.is_some_and(|e| e <= now)).map(|j| j.channel).collect()
                }).unwrap_or_default();
                for ch in expired {
                    end_on(&state, id, ch, "Token has expired 0 seconds ago");
                }
            }
        }
    }
    state.lock().unwrap().conns.remove(&id);
}

fn end_on(state: &Arc<Mutex<State>>, id: u64, channel: Uuid, message: &str) {
    let mut s = state.lock().unwrap();
    let Some(c) = s.conns.get_mut(&id) else {
        return;
    };
    let topics: Vec<String> = c
        .topics
        .iter()
        .filter(|(_, j)| j.channel == channel)
        .map(|(t, _)| t.clone())
        .collect();
    let mut closed = Vec::new();
    for t in topics {
        let j = c.topics.remove(&t).unwrap();
        let mut sys = fixture_frame("token-expiry", "system", 1);
        sys["topic"] = json!(t);
        sys["payload"]["channel"] = json!(t.trim_start_matches("realtime:"));
        sys["payload"]["message"] = json!(message);
        let _ = c.tx.send(Out::Frame(sys));
        let mut close = fixture_frame("token-expiry", "phx_close", 0);
        close["topic"] = json!(t);
        close["ref"] = json!(j.join_ref);
        let _ = c.tx.send(Out::Frame(close));
        closed.push(t);
    }
    s.server_closes.extend(closed);
}

/// Sends "Subscribed to PostgreSQL" after the delay, if the join is still the same.
fn subscribe_later(
    state: &Arc<Mutex<State>>,
    id: u64,
    topic: &str,
    join_ref: &str,
    delay: Duration,
) {
    let (state, topic, join_ref) = (state.clone(), topic.to_owned(), join_ref.to_owned());
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let mut s = state.lock().unwrap();
        let Some(c) = s.conns.get_mut(&id) else {
            return;
        };
        let Some(j) = c.topics.get_mut(&topic).filter(|j| j.join_ref == join_ref) else {
            return;
        };
        j.subscribed = true;
        let mut f = fixture_frame("join-postgres-changes-ok", "system", 0);
        f["topic"] = json!(topic);
        f["payload"]["channel"] = json!(topic.trim_start_matches("realtime:"));
        let _ = c.tx.send(Out::Frame(f));
    });
}

/// Answers one client frame; returns how long to stall the socket (a failing join).
fn handle(
    id: u64,
    frame: &Value,
    state: &Arc<Mutex<State>>,
    opts: &ServerOptions,
    tx: &mpsc::UnboundedSender<Out>,
) -> Option<Duration> {
    let topic = frame["topic"].as_str().unwrap_or_default().to_owned();
    let event = frame["event"].as_str().unwrap_or_default();
    let reference = frame["ref"].clone();
    let send = |f: Value| {
        let _ = tx.send(Out::Frame(f));
    };
    match event {
        "heartbeat" if topic == "phoenix" && !state.lock().unwrap().silent_heartbeats => {
            send(reply("phoenix", &reference, "ok", json!({})));
        }
        "phx_join" => {
            if !topic.starts_with("realtime:") {
                send(reply(
                    &topic,
                    &reference,
                    "error",
                    json!({"reason": "unmatched topic"}),
                ));
                return None;
            }
            let failure = state.lock().unwrap().fail_joins.pop_front();
            if let Some(reason) = failure {
                send(reply(
                    &topic,
                    &reference,
                    "error",
                    json!({"reason": reason}),
                ));
                return Some(opts.join_error_delay);
            }
            let payload = &frame["payload"];
            let token = payload["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let exp = match check_token(opts, &token) {
                Ok(exp) => exp,
                Err(msg) => {
                    let code = if msg.starts_with("Token has expired") {
                        "InvalidJWTToken"
                    } else {
                        "MalformedJWT"
                    };
                    send(reply(
                        &topic,
                        &reference,
                        "error",
                        json!({"reason": format!("{code}: {msg}")}),
                    ));
                    return Some(opts.join_error_delay);
                }
            };
            let changes = payload["config"]["postgres_changes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let channel: Option<Uuid> = changes
                .first()
                .and_then(|c| c["filter"].as_str())
                .and_then(|f| f.strip_prefix("channel_id=eq."))
                .and_then(|u| u.parse().ok());
            // The id is a hash of the requested entry: the same request, the same id.
            let sub_id = changes
                .first()
                .map(|c| {
                    use std::hash::{Hash as _, Hasher as _};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    c.to_string().hash(&mut h);
                    (h.finish() % (1 << 27)) as i64
                })
                .unwrap_or(0);
            let join_ref = reference.as_str().unwrap_or_default().to_owned();
            {
                let mut s = state.lock().unwrap();
                let c = s.conns.get_mut(&id).unwrap();
                // A duplicate join closes the old one first.
                if let Some(old) = c.topics.remove(&topic) {
                    let mut close = fixture_frame("duplicate-join", "phx_close", 0);
                    close["topic"] = json!(topic);
                    close["ref"] = json!(old.join_ref);
                    send(close);
                }
                if let Some(channel) = channel {
                    c.topics.insert(
                        topic.clone(),
                        Joined {
                            join_ref: join_ref.clone(),
                            sub_id,
                            channel,
                            token,
                            exp,
                            subscribed: false,
                        },
                    );
                }
            }
            let echoed: Vec<Value> = changes
                .iter()
                .map(|c| {
                    let mut c = c.clone();
                    c["id"] = json!(sub_id);
                    c
                })
                .collect();
            let mut ok = fixture_frame("join-postgres-changes-ok", "phx_reply", 0);
            ok["topic"] = json!(topic);
            ok["ref"] = reference.clone();
            ok["payload"]["response"]["postgres_changes"] = json!(echoed);
            send(ok);
            if payload["config"]["presence"]["enabled"] == true {
                let mut p = fixture_frame("join-postgres-changes-ok", "presence_state", 0);
                p["topic"] = json!(topic);
                send(p);
            }
            if channel.is_some() {
                subscribe_later(state, id, &topic, &join_ref, opts.subscribe_delay);
            }
        }
        "access_token" => {
            let token = frame["payload"]["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let same = state
                .lock()
                .unwrap()
                .conns
                .get(&id)
                .and_then(|c| c.topics.get(&topic))
                .is_none_or(|j| j.token == token);
            if same || token.starts_with("sb_") {
                return None;
            }
            match check_token(opts, &token) {
                Ok(exp) => {
                    let join_ref = {
                        let mut s = state.lock().unwrap();
                        let j = s
                            .conns
                            .get_mut(&id)
                            .unwrap()
                            .topics
                            .get_mut(&topic)
                            .unwrap();
                        j.token = token;
                        j.exp = exp;
                        j.subscribed = false;
                        j.join_ref.clone()
                    };
                    // The subscription is re-created with the new claims, and said so again.
                    subscribe_later(state, id, &topic, &join_ref, opts.subscribe_delay);
                }
                Err(msg) => {
                    let channel = state.lock().unwrap().conns[&id].topics[&topic].channel;
                    end_on(state, id, channel, &msg);
                }
            }
        }
        "presence" => {
            send(reply(&topic, &reference, "ok", json!({})));
            let mut diff = fixture_frame("presence-track-and-diff", "presence_diff", 0);
            diff["topic"] = json!(topic);
            send(diff);
        }
        "broadcast" => send(reply(&topic, &reference, "ok", json!({}))),
        "phx_leave" => {
            send(reply(&topic, &reference, "ok", json!({})));
            let old = state
                .lock()
                .unwrap()
                .conns
                .get_mut(&id)
                .and_then(|c| c.topics.remove(&topic));
            let mut close = fixture_frame("leave", "phx_close", 0);
            close["topic"] = json!(topic);
            close["ref"] = json!(old.map(|o| o.join_ref).unwrap_or_default());
            send(close);
        }
        _ => {}
    }
    None
}

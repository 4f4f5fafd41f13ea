//! The bot runtime over Supabase Realtime: the real client against a websocket stand-in that
//! speaks the fixture frames (support/realtime_server.rs), on the real database. Every fault
//! ends the same way: the client reconnects or resubscribes, catches up from the database,
//! and every mention gets exactly one reply.

use crate::support::SpawnGuarded as _;
use std::time::Duration;

use chatctl::bots::metrics::Metrics;
use chatctl::bots::runtime::{Bot, Runtime};
use chatctl::realtime::phoenix::Backoff;
use chatctl::realtime::token::Tokens;
use chatctl::realtime::{RealtimeOptions, RealtimeSource};
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::bots::{BOT, options, post, replies, setup};
use crate::support::TestDb;
use crate::support::realtime_server::{FakeRealtime, ServerOptions, fixture_client_frame};

const SECRET: &str = "a-test-jwt-secret-of-at-least-32-characters";

fn server_options() -> ServerOptions {
    ServerOptions {
        jwt_secret: Some(SECRET.into()),
        subscribe_delay: Duration::from_millis(100),
        join_error_delay: Duration::from_millis(300),
    }
}

/// realtime-js's behaviour on a faster clock.
fn client_options(server: &FakeRealtime) -> RealtimeOptions {
    let mut o = RealtimeOptions::new(server.url(), "test-apikey".into());
    o.heartbeat = Duration::from_millis(300);
    o.join_timeout = Duration::from_secs(3);
    let fast = Backoff([50, 100, 200].map(Duration::from_millis).to_vec());
    o.reconnect = fast.clone();
    o.rejoin = fast;
    o
}

fn minted(ttl: Duration) -> Tokens {
    Tokens::Minted {
        secret: SECRET.into(),
        ttl,
    }
}

/// `chatctl bots run` in-process: the runtime on a Realtime source, until stopped.
struct Daemon {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<chatctl::Result<()>>,
    metrics: std::sync::Arc<Metrics>,
}

impl Daemon {
    /// On `server`, as realtime-js connects (faster clock), with hour-long minted tokens.
    fn on(server: &FakeRealtime, pool: PgPool, bots: Vec<Bot>) -> Daemon {
        let source = RealtimeSource::new(client_options(server), minted(Duration::from_secs(3600)));
        Daemon::start(pool, bots, source)
    }

    fn start(pool: PgPool, bots: Vec<Bot>, source: RealtimeSource) -> Daemon {
        Daemon::start_with(pool, bots, source, options("realtime"))
    }

    fn start_with(
        pool: PgPool,
        bots: Vec<Bot>,
        source: RealtimeSource,
        opts: chatctl::bots::runtime::RuntimeOptions,
    ) -> Daemon {
        let rt = Runtime::new(pool, bots, opts);
        let metrics = rt.metrics();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut source = source;
            rt.run(&mut source, async {
                stopped.await.ok();
            })
            .await
        });
        Daemon {
            stop,
            task,
            metrics,
        }
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the daemon stops within its grace")
            .unwrap()
            .unwrap();
    }
}

/// Ada posts in `channel`; the server delivers the INSERT if the topic is subscribed.
async fn say(c: &mut PgConnection, server: &FakeRealtime, channel: &str, text: &str) -> Uuid {
    let id = post(c, "ada@example.com", channel, text, None).await;
    let row: Value = sqlx::query_scalar("select to_jsonb(m) from chat m where m.id = $1")
        .bind(id)
        .fetch_one(&mut *c)
        .await
        .unwrap();
    server.insert(&row);
    id
}

async fn channel_id(c: &mut PgConnection, name: &str) -> Uuid {
    sqlx::query_scalar("select id from channels where name = $1")
        .bind(name)
        .fetch_one(c)
        .await
        .unwrap()
}

/// Waits for `n` replies of the bot; returns how many there are.
async fn wait_replies(c: &mut PgConnection, n: usize, within: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = replies(c).await.len();
        if got >= n || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn claims(jwt: &str) -> Value {
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.set_audience(&["authenticated"]);
    jsonwebtoken::decode::<Value>(
        jwt,
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        &v,
    )
    .expect("the token verifies with the project's secret")
    .claims
}

#[tokio::test]
async fn over_realtime_a_mention_is_answered_once_and_the_bot_shows_online_and_typing() {
    let db = TestDb::new().await;
    let (pool, bots) = setup(&db, BOT).await;
    let bot_user = bots[0].user_id;
    let server = FakeRealtime::start(server_options()).await;
    let d = Daemon::on(&server, pool, bots);
    // summarybot is a member of #general and #engineering: one topic each.
    server.wait_subscribed(2, Duration::from_secs(5)).await;
    let mut c = db.conn().await;
    let fixture = fixture_client_frame("join-postgres-changes-ok", "phx_join", 0);
    let joins = server.frames("phx_join");
    assert_eq!(joins.len(), 2);
    let mut topics = Vec::new();
    for j in &joins {
        let topic = j["topic"].as_str().unwrap();
        let channel = topic.strip_prefix("realtime:channel:").unwrap();
        topics.push(topic.to_owned());
        let config = &j["payload"]["config"];
        assert_eq!(
            config["broadcast"],
            fixture["payload"]["config"]["broadcast"]
        );
        assert_eq!(config["private"], false);
        assert_eq!(
            config["presence"],
            json!({"enabled": true, "key": bot_user})
        );
        assert_eq!(
            config["postgres_changes"],
            json!([{"event": "*", "schema": "public", "table": "chat",
                    "filter": format!("channel_id=eq.{channel}")}])
        );
        assert_eq!(j["ref"], j["join_ref"], "a join's join_ref is its ref");
        let claims = claims(j["payload"]["access_token"].as_str().unwrap());
        assert_eq!(
            claims["sub"],
            json!(bot_user),
            "the bot joins as itself (its RLS)"
        );
        assert_eq!(claims["role"], "authenticated");
    }
    for t in [
        channel_id(&mut c, "general").await,
        channel_id(&mut c, "engineering").await,
    ] {
        assert!(topics.contains(&format!("realtime:channel:{t}")));
    }

    let asked = say(&mut c, &server, "general", "@summarybot are you there?").await;
    assert_eq!(wait_replies(&mut c, 1, Duration::from_secs(5)).await, 1);
    assert_eq!(
        replies(&mut c).await,
        vec![(Some(asked), "hello @ada".to_owned())]
    );

    // Realtime authorizes each change with the subscriber's token, under RLS: with the
    // claims the bot joined with, it reads its channels and not a private one it is not in.
    post(
        &mut c,
        "margaret@example.com",
        "support",
        "a private matter",
        None,
    )
    .await;
    let joined_as = claims(joins[0]["payload"]["access_token"].as_str().unwrap());
    let mut tx = sqlx::Connection::begin(&mut c).await.unwrap();
    sqlx::query("select set_config('request.jwt.claims', $1, true), set_config('role', 'authenticated', true)")
        .bind(joined_as.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let visible: Vec<(String, i64)> = sqlx::query_as(
        "select ch.name, count(m.id) from channels ch left join chat m on m.channel_id = ch.id
          where ch.name in ('general', 'support') group by ch.name order by ch.name",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        visible,
        vec![("general".to_owned(), 2)],
        "as the bot: its channel's mention and reply; #support and its message unseen"
    );

    // Presence: tracked once per join, as the bot.
    let tracks = server.frames("presence");
    assert_eq!(tracks.len(), 2, "one presence track per join");
    for t in &tracks {
        assert_eq!(t["payload"]["event"], "track");
        assert_eq!(t["payload"]["payload"]["user_id"], json!(bot_user));
        assert_eq!(t["payload"]["payload"]["status"], "online");
    }

    // A burst: every mention answered once; typing shown, at most once per 3 s per channel.
    for i in 0..10 {
        say(
            &mut c,
            &server,
            "general",
            &format!("@summarybot question {i}"),
        )
        .await;
    }
    assert_eq!(wait_replies(&mut c, 11, Duration::from_secs(10)).await, 11);
    // Stopped, it finishes what it has in hand: whatever it would post, it has.
    let metrics = d.metrics.clone();
    d.stop().await;
    assert_eq!(replies(&mut c).await.len(), 11, "nothing answered twice");
    let typing: Vec<Value> = server
        .frames("broadcast")
        .into_iter()
        .filter(|f| f["payload"]["event"] == "typing")
        .collect();
    assert!(
        (1..=2).contains(&typing.len()),
        "typing is throttled: {} broadcasts for 11 replies in one channel",
        typing.len()
    );
    assert_eq!(typing[0]["payload"]["payload"]["user_id"], json!(bot_user));
    assert!(
        metrics
            .events_received
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test]
async fn join_errors_are_retried_and_what_was_posted_meanwhile_is_answered() {
    let db = TestDb::new().await;
    let (pool, bots) = setup(&db, BOT).await;
    let server = FakeRealtime::start(server_options()).await;
    server.fail_next_joins(&[
        "InitializingProjectConnection: Realtime is initializing the project's connection",
        "InvalidJWTToken: Token has expired 300 seconds ago",
    ]);
    let d = Daemon::on(&server, pool, bots);
    let mut c = db.conn().await;
    // Posted while the joins are refused: the stand-in delivers it to no one, so only the
    // catch-up after the join can answer it.
    let asked = say(&mut c, &server, "general", "@summarybot anyone?").await;
    assert_eq!(
        server.delivered(),
        0,
        "the mention reached no subscribed topic"
    );
    server.wait_subscribed(2, Duration::from_secs(10)).await;
    assert_eq!(wait_replies(&mut c, 1, Duration::from_secs(5)).await, 1);
    assert_eq!(replies(&mut c).await[0].0, Some(asked));
    assert!(
        server.frames("phx_join").len() >= 4,
        "two refused joins, then two good ones"
    );
    d.stop().await;
}

#[tokio::test]
async fn server_closes_crashes_and_restarts_are_resubscribed_and_gaps_caught_up() {
    let db = TestDb::new().await;
    let (pool, bots) = setup(&db, BOT).await;
    let server = FakeRealtime::start(server_options()).await;
    let d = Daemon::on(&server, pool, bots);
    server.wait_subscribed(2, Duration::from_secs(5)).await;
    let mut c = db.conn().await;
    let general = channel_id(&mut c, "general").await;

    // A quota error: system error, phx_close. realtime-js would stay away; we resubscribe.
    server.system_close(general, "Too many messages per second");
    say(&mut c, &server, "general", "@summarybot one").await;
    server.wait_subscribed(2, Duration::from_secs(5)).await;
    assert_eq!(wait_replies(&mut c, 1, Duration::from_secs(5)).await, 1);

    // The channel process crashed: phx_error, rejoin.
    server.phx_error(general);
    say(&mut c, &server, "general", "@summarybot two").await;
    server.wait_subscribed(2, Duration::from_secs(5)).await;
    assert_eq!(wait_replies(&mut c, 2, Duration::from_secs(5)).await, 2);

    // A service restart: "Server requested disconnect", close 1012, reconnect.
    server.server_disconnect();
    say(&mut c, &server, "general", "@summarybot three").await;
    server.wait_subscribed(2, Duration::from_secs(5)).await;
    assert_eq!(wait_replies(&mut c, 3, Duration::from_secs(5)).await, 3);
    assert_eq!(server.connections().0, 2, "one reconnect");
    let metrics = d.metrics.clone();
    d.stop().await;
    assert_eq!(replies(&mut c).await.len(), 3, "nothing answered twice");
    assert!(
        metrics
            .reconnects
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

/// A channel the bot joins is subscribed, and one it leaves unsubscribed, within the poll
/// interval (5 s by default; 300 ms here).
#[tokio::test]
async fn channels_joined_or_left_are_picked_up_within_the_poll_interval() {
    let db = TestDb::new().await;
    let (pool, bots) = setup(&db, BOT).await;
    let bot_user = bots[0].user_id;
    let server = FakeRealtime::start(server_options()).await;
    let poll = Duration::from_millis(300);
    let d = Daemon::start_with(
        pool,
        bots,
        RealtimeSource::new(client_options(&server), minted(Duration::from_secs(3600))),
        chatctl::bots::runtime::RuntimeOptions {
            poll,
            ..options("realtime")
        },
    );
    server.wait_subscribed(2, Duration::from_secs(5)).await;
    let mut c = db.conn().await;
    let (support, engineering) = (
        channel_id(&mut c, "support").await,
        channel_id(&mut c, "engineering").await,
    );
    let topic = |id: Uuid| format!("realtime:channel:{id}");
    // Waits for the client's `event` on the channel's topic; it must come within the
    // poll interval (three at most, for a sweep that starts just before the change).
    let promptly = async |event: &str, id: Uuid, what: &str| {
        let since = std::time::Instant::now();
        crate::support::wait_for(what, Duration::from_secs(5), async || {
            match server
                .frames(event)
                .iter()
                .any(|f| f["topic"] == topic(id).as_str())
            {
                true => Ok(()),
                false => Err(format!("no {event} yet")),
            }
        })
        .await;
        let took = since.elapsed();
        assert!(took < poll * 3, "{what} took {took:?}");
    };
    sqlx::query("insert into members (channel_id, user_id, role) values ($1, $2, 'member')")
        .bind(support)
        .bind(bot_user)
        .execute(&mut c)
        .await
        .unwrap();
    promptly("phx_join", support, "the join of #support").await;
    server.wait_subscribed(3, Duration::from_secs(5)).await;
    let asked = say(&mut c, &server, "support", "@summarybot hello?").await;
    assert_eq!(wait_replies(&mut c, 1, Duration::from_secs(5)).await, 1);
    assert_eq!(replies(&mut c).await[0].0, Some(asked));

    sqlx::query("delete from members where channel_id = $1 and user_id = $2")
        .bind(engineering)
        .bind(bot_user)
        .execute(&mut c)
        .await
        .unwrap();
    promptly("phx_leave", engineering, "the leave of #engineering").await;
    d.stop().await;
}

#[tokio::test]
async fn tokens_are_refreshed_on_open_channels_before_they_expire() {
    let db = TestDb::new().await;
    let (pool, bots) = setup(&db, BOT).await;
    let server = FakeRealtime::start(server_options()).await;
    // The server ends a channel whose token expires (checked every 100 ms).
    let d = Daemon::start(
        pool,
        bots,
        RealtimeSource::new(client_options(&server), minted(Duration::from_secs(3))),
    );
    server.wait_subscribed(2, Duration::from_secs(5)).await;
    // The token the channels joined with: they must outlive it.
    let joined_with = server.frames("phx_join")[0]["payload"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let expiry = token_expiry(&joined_with);
    let pushed = || -> std::collections::HashSet<String> {
        server
            .frames("access_token")
            .iter()
            .map(|f| f["payload"]["access_token"].as_str().unwrap().to_owned())
            .collect()
    };
    crate::support::wait_for(
        "two fresh tokens pushed, and the first token's expiry (and the server's checks) past",
        Duration::from_secs(15),
        async || {
            let now = std::time::SystemTime::now();
            let (fresh, past) = (pushed().len(), now > expiry + Duration::from_millis(300));
            match (fresh >= 2, past) {
                (true, true) => Ok(()),
                _ => Err(format!("{fresh} fresh tokens; expiry past: {past}")),
            }
        },
    )
    .await;
    assert_eq!(
        server.server_closes(),
        Vec::<String>::new(),
        "no channel outlived its token"
    );
    for f in server.frames("access_token") {
        assert!(f["join_ref"].is_string(), "pushed on the joined topic");
    }
    let mut c = db.conn().await;
    server.wait_subscribed(2, Duration::from_secs(3)).await;
    say(&mut c, &server, "general", "@summarybot still there?").await;
    assert_eq!(wait_replies(&mut c, 1, Duration::from_secs(5)).await, 1);
    d.stop().await;
}

/// When a JWT expires (its `exp` claim).
fn token_expiry(jwt: &str) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_secs(claims(jwt)["exp"].as_u64().unwrap())
}

#[tokio::test]
async fn a_connection_dropped_mid_burst_loses_nothing() {
    let db = TestDb::new().await;
    let (pool, bots) = setup(&db, BOT).await;
    let server = FakeRealtime::start(server_options()).await;
    let d = Daemon::on(&server, pool, bots);
    server.wait_subscribed(2, Duration::from_secs(5)).await;
    let mut c = db.conn().await;
    let mut asked = std::collections::HashSet::new();
    for i in 0..300 {
        let channel = if i % 2 == 0 { "general" } else { "engineering" };
        asked.insert(say(&mut c, &server, channel, &format!("@summarybot burst {i}")).await);
        if i == 100 {
            // The TCP connection dies, and the next two handshakes are refused.
            server.refuse_next(2, 429, "Too many connected users");
            server.drop_connections();
        }
    }
    assert_eq!(
        wait_replies(&mut c, 300, Duration::from_secs(30)).await,
        300
    );
    d.stop().await;
    let answered: std::collections::HashSet<Uuid> = replies(&mut c)
        .await
        .into_iter()
        .filter_map(|(p, _)| p)
        .collect();
    assert_eq!(replies(&mut c).await.len(), 300, "nothing answered twice");
    assert_eq!(answered, asked, "every mention answered");
    let (accepted, refused) = server.connections();
    assert!(
        accepted >= 2 && refused >= 1,
        "reconnected ({accepted}) after refusals ({refused})"
    );
}

#[tokio::test]
async fn an_oversized_frame_ends_the_connection_and_nothing_is_lost() {
    let db = TestDb::new().await;
    let (pool, bots) = setup(&db, BOT).await;
    let server = FakeRealtime::start(server_options()).await;
    let d = Daemon::on(&server, pool, bots);
    server.wait_subscribed(2, Duration::from_secs(5)).await;
    let mut c = db.conn().await;
    // A change padded past the 4 MiB a frame may have: not held, the socket is closed, and
    // the reconnection reads the mention from the database.
    let id = post(
        &mut c,
        "ada@example.com",
        "general",
        "@summarybot after a huge frame",
        None,
    )
    .await;
    let mut row: Value = sqlx::query_scalar("select to_jsonb(m) from chat m where m.id = $1")
        .bind(id)
        .fetch_one(&mut c)
        .await
        .unwrap();
    row["padding"] = Value::String("x".repeat(chatctl::realtime::supabase::MAX_FRAME_BYTES));
    server.insert(&row);
    // The reply may come from the reconnection's catch-up or from the poll's sweep before
    // it: either way it comes once, and the oversized frame must still end the connection.
    server.wait_connections(2, Duration::from_secs(15)).await;
    assert_eq!(wait_replies(&mut c, 1, Duration::from_secs(15)).await, 1);
    d.stop().await;
}

#[tokio::test]
async fn an_unanswered_heartbeat_closes_the_socket_and_reconnects() {
    let db = TestDb::new().await;
    let (pool, bots) = setup(&db, BOT).await;
    let server = FakeRealtime::start(server_options()).await;
    let d = Daemon::on(&server, pool, bots);
    server.wait_subscribed(2, Duration::from_secs(5)).await;
    server.silent_heartbeats(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !server
        .client_closes()
        .contains(&(1000, "heartbeat timeout".to_owned()))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no heartbeat timeout"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.silent_heartbeats(false);
    let mut c = db.conn().await;
    say(&mut c, &server, "general", "@summarybot back?").await;
    server.wait_subscribed(2, Duration::from_secs(5)).await;
    assert_eq!(wait_replies(&mut c, 1, Duration::from_secs(5)).await, 1);
    assert!(server.connections().0 >= 2);
    d.stop().await;
}

/// `chatctl bots run` against the stand-in with `SUPABASE_URL` and the service-role key (and
/// the JWT secret when given): a mention over the wire is answered; then a clean stop. The
/// daemon's log and the tokens it joined with.
async fn over_the_wire(service_key: &str, jwt_secret: Option<&str>) -> (String, Vec<String>) {
    let db = TestDb::new().await;
    let (_pool, _bots) = setup(&db, BOT).await;
    let server = FakeRealtime::start(server_options()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("summarybot.yaml"), BOT).unwrap();
    let log = dir.path().join("stderr.log");
    let project = format!("http://{}", server.addr);
    let mut env = vec![
        ("DATABASE_URL", db.url.as_str()),
        ("SUPABASE_URL", project.as_str()),
        ("SUPABASE_SERVICE_ROLE_KEY", service_key),
        ("CHATCTL_REALTIME__HEARTBEAT", "1s"),
        ("CHATCTL_LOG", "chatctl=debug"),
    ];
    if let Some(secret) = jwt_secret {
        env.push(("SUPABASE_JWT_SECRET", secret));
    }
    let mut daemon = crate::support::chatctl_std(&env)
        .args(["bots", "run", "--metrics", "127.0.0.1:0", "--bots"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .guarded();
    server.wait_subscribed(2, Duration::from_secs(20)).await;
    let mut c = db.conn().await;
    let asked = say(&mut c, &server, "general", "@summarybot over the wire?").await;
    assert_eq!(wait_replies(&mut c, 1, Duration::from_secs(5)).await, 1);
    assert_eq!(replies(&mut c).await[0].0, Some(asked));
    // The NOTIFY trigger serialises every writer: it stays off when Realtime is the source.
    let notify_on: bool =
        sqlx::query_scalar("select tgenabled <> 'D' from pg_trigger where tgname = 'chat_notify'")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert!(!notify_on);
    std::process::Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(daemon.wait().unwrap().code(), Some(0));
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains("Realtime subscriptions live"), "{stderr}");
    let tokens = server
        .frames("phx_join")
        .iter()
        .map(|j| j["payload"]["access_token"].as_str().unwrap().to_owned())
        .collect();
    (stderr, tokens)
}

#[tokio::test]
async fn the_daemon_uses_realtime_when_a_supabase_url_is_set_and_keeps_its_secrets() {
    let service_key = "service-role-key-never-printed";
    let (stderr, tokens) = over_the_wire(service_key, Some(SECRET)).await;
    for secret in [service_key, SECRET, tokens[0].as_str()] {
        assert!(!stderr.contains(secret), "a secret reached the log");
    }
}

/// Without the JWT secret the bot cannot have a token of its own: it joins with the project's
/// service-role key (a JWT the project signs, role `service_role`), as the README says.
#[tokio::test]
async fn without_the_jwt_secret_the_service_role_key_is_used() {
    let service_key = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"iss": "supabase", "ref": "project", "role": "service_role",
                "iat": 1_700_000_000, "exp": 4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let (stderr, tokens) = over_the_wire(&service_key, None).await;
    assert_eq!(tokens.len(), 2);
    assert!(
        tokens.iter().all(|t| *t == service_key),
        "every channel joined with the service-role key"
    );
    assert!(!stderr.contains(&service_key), "a secret reached the log");
}

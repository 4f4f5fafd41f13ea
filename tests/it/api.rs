//! `chatctl serve`: real HTTP requests against the running server on the real database.
//! Who may ask what is decided by row level security, as the caller.

use crate::support::SpawnGuarded as _;
use std::sync::Arc;
use std::time::Duration;

use chatctl::config::{Config, Env};
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::bots::{BOT, prepared, say};
use crate::support::openai_server::{Answer, StandIn};
use crate::support::{TestDb, wait_for};

const SECRET: &str = "test-jwt-secret-with-at-least-32-characters";

/// An access token as Supabase Auth signs it, for `user`, expiring in `ttl` seconds (negative:
/// already expired).
fn token(user: Uuid, secret: &str, aud: &str, ttl: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": user, "aud": aud, "role": "authenticated", "exp": now + ttl, "iat": now }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A valid token of `user`.
fn bearer(user: Uuid) -> String {
    token(user, SECRET, "authenticated", 600)
}

/// The id of the row of `table` whose `column` is `value`.
async fn id_of(c: &mut PgConnection, table: &str, column: &str, value: &str) -> Uuid {
    sqlx::query_scalar(&format!(
        "select id from public.{table} where {column} = $1"
    ))
    .bind(value)
    .fetch_one(c)
    .await
    .unwrap()
}

async fn user_id(c: &mut PgConnection, email: &str) -> Uuid {
    id_of(c, "users", "email", email).await
}

async fn channel_id(c: &mut PgConnection, name: &str) -> Uuid {
    id_of(c, "channels", "name", name).await
}

/// A running server of `db`, configured by `env` (beside the database and the JWT secret).
struct Server {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<chatctl::Result<()>>,
    /// Its search index and settings' directory.
    dir: tempfile::TempDir,
}

impl Server {
    async fn start(db: &TestDb, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("search").to_str().unwrap().to_owned();
        let mut pairs: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), db.url.clone()),
            ("SUPABASE_JWT_SECRET".into(), SECRET.into()),
            ("CHATCTL_SEARCH__INDEX_DIR".into(), index),
        ];
        pairs.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config =
            Config::load(&Env::from_pairs(pairs), &Default::default(), dir.path()).unwrap();
        let bound = chatctl::api::bind(&config, &db.url, "127.0.0.1:0")
            .await
            .unwrap();
        let base = format!("http://{}", bound.addr);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(chatctl::api::serve(bound, async move {
            let _ = stopped.await;
        }));
        Server {
            base,
            stop: Some(stop),
            task,
            dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops accepting, lets requests in flight finish, and returns when it has.
    async fn shut_down(mut self) {
        let _ = self.stop.take().unwrap().send(());
        (&mut self.task).await.unwrap().unwrap();
    }
}

/// The `n` messages a search as `who` finds on the server's index (not PostgreSQL's
/// fallback), once it finds them.
async fn found_in_index(server: &Server, path: &str, who: Uuid, n: usize) -> Value {
    wait_for(
        "the replica's index to hold the new messages",
        Duration::from_secs(20),
        || async {
            let (_, body) = get(server, path, who).await;
            if body["engine"] == "tantivy" && body["results"].as_array().map(Vec::len) == Some(n) {
                Ok(body)
            } else {
                Err(body.to_string())
            }
        },
    )
    .await
}

/// Once the model stand-in has a request.
async fn reached(model: &StandIn) {
    wait_for(
        "a request to reach the model",
        Duration::from_secs(10),
        || async {
            if model.requests().is_empty() {
                Err("no request".to_owned())
            } else {
                Ok(())
            }
        },
    )
    .await
}

/// The server's `/metrics`.
async fn metrics_of(server: &Server) -> String {
    client()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// The status and JSON body of a request.
async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")),
    )
}

async fn get(server: &Server, path: &str, who: Uuid) -> (u16, Value) {
    send(client().get(server.url(path)).bearer_auth(bearer(who))).await
}

async fn post(server: &Server, path: &str, who: Uuid, body: Value) -> (u16, Value) {
    send(
        client()
            .post(server.url(path))
            .bearer_auth(bearer(who))
            .json(&body),
    )
    .await
}

/// The example workspace (with a bot) served.
struct Example {
    db: TestDb,
    c: PgConnection,
    ada: Uuid,
    general: Uuid,
    server: Server,
}

async fn example(env: &[(&str, &str)]) -> Example {
    let db = TestDb::new().await;
    let _ = prepared(&db, BOT).await;
    let mut c = db.conn().await;
    let ada = user_id(&mut c, "ada@example.com").await;
    let general = channel_id(&mut c, "general").await;
    let server = Server::start(&db, env).await;
    Example {
        db,
        c,
        ada,
        general,
        server,
    }
}

#[tokio::test]
async fn a_reply_is_suggested_to_a_member_and_refused_to_everyone_else_in_json() {
    let Example {
        db,
        mut c,
        ada,
        general,
        ..
    } = example(&[]).await;
    let linus = user_id(&mut c, "linus@example.com").await;
    let support = channel_id(&mut c, "support").await;
    let earlier = say(
        &mut c,
        "ken",
        "general",
        "The deploy script lives in ops/deploy.sh",
    )
    .await;
    // Enough talk since that the answer is not in the recent context: it is cited from before.
    sqlx::raw_sql(
        "insert into chat (channel_id, user_id, message)
         select c.id, u.id, jsonb_build_object('text', 'lunch at noon, table ' || g)
           from channels c, users u, generate_series(1, 60) g
          where c.name = 'general' and u.email = 'ken@example.com'",
    )
    .execute(&mut c)
    .await
    .unwrap();
    say(
        &mut c,
        "margaret",
        "support",
        "Customer 4711 reports the deploy broke billing",
    )
    .await;
    // Served from here (its search index, built at start, holds the messages).
    let server = Server::start(&db, &[]).await;
    let path = "/api/chat/generate-response";

    // A member of #general: the suggestion, with the earlier message it draws on.
    let body = json!({ "channel_id": general, "user_id": ada, "last_message": "where is the deploy script?" });
    let (status, answer) = post(&server, path, ada, body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["engine"], "offline");
    assert!(!answer["ai_response"].as_str().unwrap().is_empty());
    assert_eq!(answer["cited_message_ids"], json!([earlier.to_string()]));

    // #support is private and Linus is not in it: it is not there for him, and nothing of it
    // comes back.
    let (status, answer) = post(
        &server,
        path,
        linus,
        json!({ "channel_id": support, "user_id": linus, "last_message": "what broke billing?" }),
    )
    .await;
    assert_eq!((status, answer["code"].as_str()), (404, Some("not_found")));
    assert!(!answer.to_string().contains("4711"));

    // Someone else's user_id: refused.
    let (status, answer) = post(&server, path, linus, body.clone()).await;
    assert_eq!((status, answer["code"].as_str()), (403, Some("forbidden")));

    // No token, an expired one, one signed with another secret, one for another audience.
    for bad in [
        None,
        Some(token(ada, SECRET, "authenticated", -120)),
        Some(token(
            ada,
            "another-secret-that-is-long-enough-too",
            "authenticated",
            600,
        )),
        Some(token(ada, SECRET, "anon", 600)),
        Some("not.a.jwt".to_owned()),
    ] {
        let mut req = client().post(server.url(path)).json(&body);
        if let Some(t) = &bad {
            req = req.bearer_auth(t);
        }
        let (status, answer) = send(req).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (401, Some("unauthorized")),
            "{answer}"
        );
    }

    // A thread that is not the channel's.
    let (status, _) = post(
        &server,
        path,
        ada,
        json!({ "channel_id": general, "user_id": ada, "last_message": "and?", "thread_id": Uuid::new_v4() }),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn malformed_requests_get_their_own_status_and_code() {
    let Example {
        ada,
        general,
        server,
        db: _db,
        ..
    } = example(&[("CHATCTL_SERVE__BODY_LIMIT", "4KiB")]).await;
    let auth = bearer(ada);
    let url = server.url("/api/chat/generate-response");
    let code = |(status, body): (u16, Value)| {
        (status, body["code"].as_str().unwrap_or_default().to_owned())
    };
    let authed = |path: &str| client().get(server.url(path)).bearer_auth(&auth);
    let cases = [
        (
            client()
                .post(&url)
                .bearer_auth(&auth)
                .header("content-type", "application/json")
                .body("{not json"),
            (400, "bad_request"),
        ),
        (
            client()
                .post(&url)
                .bearer_auth(&auth)
                .body(json!({}).to_string()),
            (415, "unsupported_media_type"),
        ),
        (
            client()
                .post(&url)
                .bearer_auth(&auth)
                .json(&json!({ "channel_id": general })),
            (422, "invalid_request"),
        ),
        (
            client()
                .post(&url)
                .bearer_auth(&auth)
                .json(&json!({ "channel_id": general, "user_id": ada, "last_message": "  " })),
            (422, "invalid_request"),
        ),
        (
            client().post(&url).bearer_auth(&auth).json(
                &json!({ "channel_id": general, "user_id": ada, "last_message": "x".repeat(5000) }),
            ),
            (413, "payload_too_large"),
        ),
        (
            client().get(&url).bearer_auth(&auth),
            (405, "method_not_allowed"),
        ),
        (client().get(server.url("/api/nothing")), (404, "not_found")),
        (authed("/api/users/not-a-uuid/profile"), (404, "not_found")),
        (
            authed("/api/search?q=deploy&limit=0"),
            (422, "invalid_request"),
        ),
        (
            authed("/api/search?q=in%3A%23nowhere"),
            (422, "invalid_request"),
        ),
        // Past the query size limit (65 words).
        (
            authed(&format!("/api/search?q={}", vec!["deploy"; 65].join("+"))),
            (422, "invalid_request"),
        ),
        (
            authed("/api/search?q=deploy&workspace=nowhere"),
            (404, "not_found"),
        ),
        (
            client()
                .post(server.url(&format!("/api/channels/{general}/summary")))
                .bearer_auth(&auth)
                .json(&json!({ "since": "24h", "window": "day" })),
            (422, "invalid_request"),
        ),
        (
            client()
                .post(server.url(&format!("/api/channels/{general}/summary")))
                .bearer_auth(&auth)
                .json(&json!({ "since": "99999999999999999999h" })),
            (422, "invalid_request"),
        ),
    ];
    for (i, (req, (status, expected))) in cases.into_iter().enumerate() {
        assert_eq!(
            code(send(req).await),
            (status, expected.to_owned()),
            "case {i}"
        );
    }
    let health = client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test]
async fn a_profile_shows_roles_and_stats_over_what_the_caller_may_read() {
    let Example {
        mut c,
        ada,
        server,
        db: _db,
        ..
    } = example(&[]).await;
    let grace = user_id(&mut c, "grace@example.com").await;
    let linus = user_id(&mut c, "linus@example.com").await;
    let barbara = user_id(&mut c, "barbara@partner.example").await;
    say(&mut c, "grace", "general", "Welcome, everyone").await;
    say(&mut c, "grace", "support", "Ticket 12 is closed").await;
    let path = format!("/api/users/{grace}/profile");

    // Ada shares #support with no one, but the workspace with Grace: her roles, her email,
    // and her messages Ada can read (not the one in private #support).
    let (status, p) = get(&server, &path, ada).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["name"], "Grace Hopper");
    assert_eq!(p["username"], "grace");
    assert_eq!(p["email"], "grace@example.com");
    let roles: Vec<String> = p["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["role"].as_str().unwrap(),
                r["channel"]
                    .as_str()
                    .unwrap_or(r["workspace"].as_str().unwrap())
            )
        })
        .collect();
    assert_eq!(
        roles,
        ["workspace_admin acme", "channel_moderator general"],
        "{p}"
    );
    assert_eq!(p["stats"]["messages_sent"], 1, "{p}");
    assert!(!p.to_string().contains("Ticket 12"));

    // Margaret, who is in #support, counts both.
    let margaret = user_id(&mut c, "margaret@example.com").await;
    let (_, p) = get(&server, &path, margaret).await;
    assert_eq!(p["stats"]["messages_sent"], 2, "{p}");

    // Grace herself.
    let (status, p) = get(&server, &path, grace).await;
    assert_eq!(status, 200);
    assert_eq!(p["stats"]["messages_sent"], 2);
    assert_eq!(p["email"], "grace@example.com");

    // Barbara (the partner workspace) shares no channel with Grace: no profile. Once she is
    // in #launch-2027 with her: the profile, but not her e-mail address (that is for people of
    // a workspace she is in), and none of her messages Barbara cannot read.
    let (status, p) = get(&server, &path, barbara).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (404, Some("not_found")),
        "{p}"
    );
    sqlx::query(
        "insert into members (channel_id, user_id)
         select id, $1 from channels where name = 'launch-2027'",
    )
    .bind(barbara)
    .execute(&mut c)
    .await
    .unwrap();
    let (status, p) = get(&server, &path, barbara).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["email"], Value::Null, "{p}");
    assert!(!p.to_string().contains("Welcome, everyone"));
    assert_eq!(p["stats"]["messages_sent"], 0, "{p}");

    // Linus and Barbara share nothing: no profile.
    let (status, p) = get(&server, &format!("/api/users/{barbara}/profile"), linus).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (404, Some("not_found")),
        "{p}"
    );
    let (status, _) = get(
        &server,
        &format!("/api/users/{}/profile", Uuid::new_v4()),
        linus,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_summary_is_the_json_of_summarize_for_members_only() {
    let Example {
        db,
        mut c,
        ada,
        general,
        server,
    } = example(&[]).await;
    let linus = user_id(&mut c, "linus@example.com").await;
    let support = channel_id(&mut c, "support").await;
    for (who, text) in [
        ("ada", "Shall we ship the release on Friday?"),
        ("ken", "Yes, we decided to ship on Friday after the review."),
        ("grace", "I will write the release notes."),
    ] {
        say(&mut c, who, "general", text).await;
    }
    let window = json!({ "since": "1h" });
    let (status, api) = post(
        &server,
        &format!("/api/channels/{general}/summary"),
        ada,
        window,
    )
    .await;
    assert_eq!(status, 200, "{api}");
    assert_eq!(api["messages"], 3);
    assert_eq!(api["channel"], "general");
    assert_eq!(api["workspace"], "acme");

    // The command line's JSON for the same window: the same document.
    let (start, end) = (
        api["window"]["start"].as_str().unwrap(),
        api["window"]["end"].as_str().unwrap(),
    );
    let out = crate::support::chatctl(&[("DATABASE_URL", &db.url)])
        .args([
            "summarize",
            "-w",
            "acme",
            "--channel",
            "general",
            "--from",
            start,
            "--to",
            end,
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = crate::support::outputs(&out);
    assert!(out.status.success(), "{stderr}");
    let cli: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(cli, api);

    // Calendar windows and time zones as the command line takes them.
    let (status, day) = post(
        &server,
        &format!("/api/channels/{general}/summary"),
        ada,
        json!({ "window": "day", "tz": "Europe/Berlin" }),
    )
    .await;
    assert_eq!(status, 200, "{day}");
    assert_eq!(day["messages"], 0);
    assert_eq!(day["digest"], Value::Null);

    // Private #support, to someone outside it: not there.
    say(&mut c, "margaret", "support", "Customer 4711 is angry").await;
    let (status, answer) = post(
        &server,
        &format!("/api/channels/{support}/summary"),
        linus,
        json!({ "since": "1h" }),
    )
    .await;
    assert_eq!((status, answer["code"].as_str()), (404, Some("not_found")));
    assert!(!answer.to_string().contains("4711"));
}

#[tokio::test]
async fn search_answers_for_the_caller_only_with_the_json_of_search_query_as() {
    let Example { db, mut c, ada, .. } = example(&[]).await;
    let margaret = user_id(&mut c, "margaret@example.com").await;
    say(&mut c, "ken", "general", "The zanzibar migration is done").await;
    say(
        &mut c,
        "margaret",
        "support",
        "Customer asks about zanzibar pricing",
    )
    .await;
    let server = Server::start(&db, &[]).await;
    let path = "/api/search?q=zanzibar&limit=10";
    // Until this replica's index is built, PostgreSQL answers; then the index, kept fresh.
    let found = |body: &Value| -> Vec<String> {
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["channel"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, body) = get(&server, path, ada).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(found(&body), ["#general"], "{body}");
    assert_eq!(body["as"], "ada");
    let (_, body) = get(&server, path, margaret).await;
    let mut both = found(&body);
    both.sort();
    assert_eq!(both, ["#general", "#support"], "{body}");

    // The index: new messages are found within a few seconds (the change log), and the
    // answer is the command line's for the same user.
    say(&mut c, "ken", "general", "zanzibar rollback plan attached").await;
    let body = found_in_index(&server, path, ada, 2).await;
    let index = server.dir.path().join("search");
    let out = crate::support::chatctl(&[
        ("DATABASE_URL", db.url.as_str()),
        ("CHATCTL_SEARCH__INDEX_DIR", index.to_str().unwrap()),
    ])
    .args([
        "search", "query", "zanzibar", "--as", "ada", "-n", "10", "-o", "json",
    ])
    .output()
    .unwrap();
    let (stdout, stderr) = crate::support::outputs(&out);
    assert!(out.status.success(), "{stderr}");
    let mut cli: Value = serde_json::from_str(&stdout).unwrap();
    let mut api = body.clone();
    for v in [&mut cli, &mut api] {
        v["took_ms"] = json!(0);
    }
    assert_eq!(cli, api);
}

#[tokio::test]
async fn no_endpoint_leaks_a_private_channel_or_a_dm_to_a_non_member() {
    let (db, pool) = seeded(24, 16, 1500, 7).await;
    // A word only one message of each private channel and DM has.
    let secrets: Vec<(Uuid, String, Uuid)> = sqlx::query_as(
        "insert into chat (channel_id, user_id, message)
         select c.id, m.user_id, jsonb_build_object('text', 'secret ' || 'qx' || substr(md5(c.id::text), 1, 10))
           from channels c
           join lateral (select user_id from members where channel_id = c.id limit 1) m on true
          where c.kind <> 'public'
         returning channel_id, 'qx' || substr(md5(channel_id::text), 1, 10), id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        secrets.len() >= 4,
        "the data set has private channels and DMs"
    );
    let probes: Vec<Uuid> =
        sqlx::query_scalar("select id from users where not is_bot order by username limit 6")
            .fetch_all(&pool)
            .await
            .unwrap();
    let server = Server::start(&db, &[("CHATCTL_SERVE__RATE_LIMIT", "100000")]).await;
    let mut refused = 0;
    let mut found_by_members = 0;
    for user in &probes {
        for (channel, word, _) in &secrets {
            let member: bool = sqlx::query_scalar(
                "select exists (select 1 from members where channel_id = $1 and user_id = $2)",
            )
            .bind(channel)
            .bind(user)
            .fetch_one(&pool)
            .await
            .unwrap();
            let (_, body) = get(&server, &format!("/api/search?q={word}"), *user).await;
            let hits = body["results"].as_array().map_or(0, Vec::len);
            let (summary, s) = post(
                &server,
                &format!("/api/channels/{channel}/summary"),
                *user,
                json!({ "since": "3650d" }),
            )
            .await;
            let (reply, r) = post(
                &server,
                "/api/chat/generate-response",
                *user,
                json!({ "channel_id": channel, "user_id": user, "last_message": word }),
            )
            .await;
            if member {
                assert_eq!((hits, summary, reply), (1, 200, 200), "{body} {s} {r}");
                found_by_members += 1;
            } else {
                assert_eq!((hits, summary, reply), (0, 404, 404), "{body} {s} {r}");
                // (The search echoes its query; nothing else may carry the word.)
                for answer in [&body["results"], &body["channels"], &s, &r] {
                    assert!(!answer.to_string().contains(word.as_str()), "{answer}");
                }
                refused += 1;
            }
        }
        // Profiles: exactly the users RLS shows this user, e-mail only within a workspace.
        let others: Vec<(Uuid, bool, bool)> = sqlx::query_as(
            "select u.id,
                    exists (select 1 from workspace_members a join workspace_members b
                              on a.workspace_id = b.workspace_id
                             where a.user_id = $1 and b.user_id = u.id),
                    exists (select 1 from members a join members b on a.channel_id = b.channel_id
                             where a.user_id = $1 and b.user_id = u.id)
               from users u where u.id <> $1",
        )
        .bind(user)
        .fetch_all(&pool)
        .await
        .unwrap();
        for (other, same_workspace, same_channel) in others {
            let (status, p) = get(&server, &format!("/api/users/{other}/profile"), *user).await;
            match (same_workspace, same_channel) {
                (false, false) => assert_eq!(status, 404, "{p}"),
                (true, _) => {
                    assert_eq!(status, 200, "{p}");
                    assert!(p["email"].is_string(), "{p}");
                }
                (false, true) => {
                    assert_eq!(status, 200, "{p}");
                    assert_eq!(p["email"], Value::Null, "{p}");
                }
            }
        }
    }
    assert!(
        refused > 10 && found_by_members > 3,
        "{refused} {found_by_members}"
    );
}

#[tokio::test]
async fn limits_answer_429_with_retry_after_and_503_when_too_slow() {
    // The rate limit: three requests a minute.
    let Example {
        ada,
        server,
        db: _db,
        ..
    } = example(&[("CHATCTL_SERVE__RATE_LIMIT", "3")]).await;
    let path = format!("/api/users/{ada}/profile");
    for _ in 0..3 {
        assert_eq!(get(&server, &path, ada).await.0, 200);
    }
    let res = client()
        .get(server.url(&path))
        .bearer_auth(bearer(ada))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 429);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    let metrics = metrics_of(&server).await;
    assert!(
        metrics.contains("chatctl_api_rate_limited_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"chatctl_api_requests_total{route="/api/users/{user_id}/profile",status="429"} 1"#
        ),
        "{metrics}"
    );

    // The AI budget, per user: a model that reports 2,900 tokens per answer, 3,000 a day.
    let model = StandIn::start(|_, _| Answer::completion("Try ops/deploy.sh.", 2900)).await;
    let slow =
        StandIn::start(|_, _| Answer::completion("late", 10).after(Duration::from_secs(3))).await;
    let ai = |url: &str, extra: &[(&'static str, &'static str)]| {
        let mut env = vec![
            ("CHATCTL_OPENAI__MODEL".to_owned(), "gpt-4o-mini".to_owned()),
            ("OPENAI_BASE_URL".to_owned(), url.to_owned()),
            ("OPENAI_API_KEY".to_owned(), "sk-test".to_owned()),
            ("CHATCTL_OPENAI__MAX_RETRIES".to_owned(), "0".to_owned()),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    };
    let Example {
        mut c,
        ada,
        general,
        db,
        ..
    } = example(&[]).await;
    let ken = user_id(&mut c, "ken@example.com").await;
    let env = ai(&model.url, &[("CHATCTL_SERVE__DAILY_TOKEN_BUDGET", "3000")]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = Server::start(&db, &env).await;
    let ask = |who: Uuid| json!({ "channel_id": general, "user_id": who, "last_message": "where is the deploy script?" });
    let (status, body) = post(&server, "/api/chat/generate-response", ada, ask(ada)).await;
    assert_eq!(
        (status, body["engine"].as_str()),
        (200, Some("openai:gpt-4o-mini")),
        "{body}"
    );
    let res = client()
        .post(server.url("/api/chat/generate-response"))
        .bearer_auth(bearer(ada))
        .json(&ask(ada))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "budget_spent", "{body}");
    // Ken's budget is his own.
    let (status, body) = post(&server, "/api/chat/generate-response", ken, ask(ken)).await;
    assert_eq!(status, 200, "{body}");
    server.shut_down().await;

    // A request past serve.request_timeout: 503. And while it runs, with room for one
    // request only, the next is refused at once (503 overloaded), probes still answered.
    let env = ai(
        &slow.url,
        &[
            ("CHATCTL_SERVE__REQUEST_TIMEOUT", "1s"),
            ("CHATCTL_SERVE__MAX_IN_FLIGHT", "1"),
        ],
    );
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = Arc::new(Server::start(&db, &env).await);
    let first = {
        let (server, body) = (server.clone(), ask(ada));
        tokio::spawn(async move { post(&server, "/api/chat/generate-response", ada, body).await })
    };
    reached(&slow).await;
    let res = client()
        .get(server.url(&format!("/api/users/{ada}/profile")))
        .bearer_auth(bearer(ada))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "overloaded", "{body}");
    assert_eq!(send(client().get(server.url("/readyz"))).await.0, 200);
    let (status, body) = first.await.unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("timeout")),
        "{body}"
    );

    // The model down: 503 ai_unavailable, never the offline engine's guess.
    drop(model);
    let env = ai("http://127.0.0.1:9", &[]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = Server::start(&db, &env).await;
    let (status, body) = post(&server, "/api/chat/generate-response", ada, ask(ada)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("ai_unavailable")),
        "{body}"
    );
}

#[tokio::test]
async fn shutdown_answers_the_requests_in_flight_first() {
    let slow = StandIn::start(|_, _| {
        Answer::completion("Try ops/deploy.sh.", 10).after(Duration::from_millis(1500))
    })
    .await;
    let db = TestDb::new().await;
    let _ = prepared(&db, BOT).await;
    let mut c = db.conn().await;
    let ada = user_id(&mut c, "ada@example.com").await;
    let general = channel_id(&mut c, "general").await;
    let server = Server::start(
        &db,
        &[
            ("CHATCTL_OPENAI__MODEL", "gpt-4o-mini"),
            ("OPENAI_BASE_URL", slow.url.as_str()),
            ("OPENAI_API_KEY", "sk-test"),
        ],
    )
    .await;
    let url = server.url("/api/chat/generate-response");
    let in_flight = tokio::spawn(
        client()
            .post(url)
            .bearer_auth(bearer(ada))
            .json(&json!({ "channel_id": general, "user_id": ada, "last_message": "deploy?" }))
            .send(),
    );
    // Stop once the request has reached the model.
    reached(&slow).await;
    let base = server.base.clone();
    server.shut_down().await;
    let res = in_flight.await.unwrap().unwrap();
    assert_eq!(res.status().as_u16(), 200);
    // And nothing new is taken.
    assert!(
        client()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn browsers_may_call_from_the_configured_origins_only() {
    let Example { db, .. } = example(&[]).await;
    let preflight = |server: &Server, origin: &str| {
        client()
            .request(reqwest::Method::OPTIONS, server.url("/api/search"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let server = Server::start(
        &db,
        &[(
            "CHATCTL_SERVE__CORS_ORIGINS",
            "https://chat.example.com, https://staging.example.com/",
        )],
    )
    .await;
    let res = preflight(&server, "https://chat.example.com")
        .await
        .unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://chat.example.com"
    );
    let allowed = res.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap();
    assert!(allowed.contains("authorization"), "{allowed}");
    let res = preflight(&server, "https://evil.example").await.unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    // None configured: no browser may.
    let server = Server::start(&db, &[]).await;
    let res = preflight(&server, "https://chat.example.com")
        .await
        .unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"));
}

/// An ES256 signing key as Supabase's asymmetric JWT keys are: its JWK (public) and a signer.
struct SigningKey {
    kid: String,
    pkcs8: Vec<u8>,
    jwk: Value,
}

impl SigningKey {
    fn new(kid: &str) -> SigningKey {
        use base64::Engine as _;
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).unwrap();
        let point = pair.public_key().as_ref();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        SigningKey {
            kid: kid.into(),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "key_ops": ["verify"],
                "kid": kid, "x": b64(&point[1..33]), "y": b64(&point[33..65]),
            }),
            pkcs8,
        }
    }

    fn token(&self, user: Uuid) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let now = chrono::Utc::now().timestamp();
        jsonwebtoken::encode(
            &header,
            &json!({ "sub": user, "aud": "authenticated", "role": "authenticated", "exp": now + 600 }),
            &jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8),
        )
        .unwrap()
    }
}

#[tokio::test]
async fn tokens_signed_by_the_projects_published_keys_are_accepted_and_rotations_picked_up() {
    let Example { db, ada, .. } = example(&[]).await;
    // The project's auth server: its JWKS, whose keys the test rotates.
    let first = SigningKey::new("key-1");
    let second = SigningKey::new("key-2");
    let published = Arc::new(std::sync::Mutex::new(vec![first.jwk.clone()]));
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (p, f) = (published.clone(), fetches.clone());
    let auth = axum::Router::new().route(
        "/auth/v1/.well-known/jwks.json",
        axum::routing::get(move || {
            let (p, f) = (p.clone(), f.clone());
            async move {
                f.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                axum::Json(json!({ "keys": *p.lock().unwrap() }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let project = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, auth).await });
    let server = Server::start(&db, &[("SUPABASE_URL", project.as_str())]).await;
    let profile = server.url(&format!("/api/users/{ada}/profile"));
    let call = |t: String| {
        let url = profile.clone();
        async move { send(client().get(url).bearer_auth(t)).await.0 }
    };

    assert_eq!(call(first.token(ada)).await, 200);
    assert_eq!(call(first.token(ada)).await, 200);
    assert_eq!(
        fetches.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the keys are cached"
    );
    // The legacy secret still verifies HS256 tokens beside them.
    assert_eq!(call(bearer(ada)).await, 200);
    // A key the project never published: refused.
    assert_eq!(call(SigningKey::new("key-9").token(ada)).await, 401);
    // Rotation: the project publishes a second key; a token signed with it is accepted once
    // the keys are fetched again (unknown kids refetch, at most every few seconds).
    published.lock().unwrap().push(second.jwk.clone());
    tokio::time::sleep(chatctl::api::auth::JWKS_MIN_REFETCH).await;
    assert_eq!(call(second.token(ada)).await, 200);
    // A token whose header says HS256 but is signed by nobody we know: refused.
    let forged = {
        let mut t = second.token(ada);
        t.replace_range(
            ..t.find('.').unwrap(),
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
        );
        t
    };
    assert_eq!(call(forged).await, 401);
}

#[tokio::test]
async fn health_readiness_metrics_and_the_openapi_document_describe_the_server() {
    let Example {
        ada,
        server,
        db: _db,
        ..
    } = example(&[]).await;
    let (status, ready) = send(client().get(server.url("/readyz"))).await;
    assert_eq!((status, ready["database"].as_str()), (200, Some("ok")));
    let (status, doc) = send(client().get(server.url("/api/openapi.json"))).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    // Every documented operation answers (with its method), and no other path does.
    let paths = doc["paths"].as_object().unwrap();
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let url = server.url(
                &path
                    .replace("{user_id}", &ada.to_string())
                    .replace("{channel_id}", &Uuid::new_v4().to_string()),
            );
            let req = client()
                .request(method.to_uppercase().parse().unwrap(), url)
                .bearer_auth(bearer(ada))
                .query(&[("q", "deploy")]);
            let req = if method == "post" {
                req.json(&json!({}))
            } else {
                req
            };
            let status = req.send().await.unwrap().status().as_u16();
            assert!(
                ![404, 405].contains(&status) || path.contains("{channel_id}"),
                "{method} {path}: {status}"
            );
            // Every status a documented error may have has its response.
            let documented: Vec<&String> = ops[method]["responses"]
                .as_object()
                .unwrap()
                .keys()
                .collect();
            assert!(
                documented.iter().any(|s| s.as_str() == status.to_string()),
                "{method} {path} answered {status}, not documented: {documented:?}"
            );
        }
    }
    let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    documented.sort_unstable();
    let mut served = chatctl::api::ROUTES.to_vec();
    served.sort_unstable();
    assert_eq!(documented, served);
    let metrics = metrics_of(&server).await;
    assert!(
        metrics.contains(r#"chatctl_api_requests_total{route="/api/search",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"chatctl_api_request_duration_seconds_count{route="/api/search"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn chatctl_serve_says_where_it_listens_and_stops_on_sigterm() {
    use std::io::BufRead as _;
    let db = TestDb::new().await;
    // Without the project's JWT secret or keys it cannot verify anyone: a usage error.
    let out = crate::support::chatctl(&[("DATABASE_URL", &db.url)])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let (_, stderr) = crate::support::outputs(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("SUPABASE_JWT_SECRET"), "{stderr}");

    let index = tempfile::tempdir().unwrap();
    let child = crate::support::chatctl_std(&[
        ("DATABASE_URL", &db.url),
        ("SUPABASE_JWT_SECRET", SECRET),
        ("CHATCTL_SEARCH__INDEX_DIR", index.path().to_str().unwrap()),
    ])
    .args(["serve", "--listen", "127.0.0.1:0"])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null())
    .guarded();
    // Killed on the way out whatever happens, so a failure cannot leave it running.
    let mut server = child;
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("serving the API on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    let health = client()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    assert!(server.wait().unwrap().success(), "SIGTERM is a clean stop");
}

/// Schemathesis (a tool no one here wrote, from PyPI) generates requests from
/// `/api/openapi.json` with a valid token and checks every answer against the document: no
/// server error, and every status, content type, header and body as documented. Requests it
/// means to be valid but the server refuses with 422 are not counted (`positive_data_acceptance`):
/// some rules (a known time zone, `from` before `to`) are in the descriptions, not the schema.
#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let Example {
        db,
        mut c,
        ada,
        general,
        server,
    } = example(&[("CHATCTL_SERVE__RATE_LIMIT", "100000")]).await;
    let grace = user_id(&mut c, "grace@example.com").await;
    sqlx::raw_sql(
        "insert into chat (channel_id, user_id, message, created_at)
         select c.id, u.id,
                jsonb_build_object('text', 'Shall we ship release ' || g || ' on Friday? @' || u.username),
                now() - (g || ' minutes')::interval
           from channels c, users u, generate_series(1, 30) g
          where c.name = 'general' and not u.is_bot",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The ids of a user and a channel Ada can read, so the successful answers are checked too.
    std::fs::write(
        dir.path().join("schemathesis.toml"),
        format!("[parameters]\nuser_id = \"{grace}\"\nchannel_id = \"{general}\"\n"),
    )
    .unwrap();
    // Awaited, so this test's runtime keeps serving while schemathesis asks.
    let out = tokio::process::Command::new("python3")
        .args(["-m", "schemathesis.cli", "run"])
        .arg(server.url("/api/openapi.json"))
        .arg("--header")
        .arg(format!("Authorization: Bearer {}", bearer(ada)))
        .args([
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--exclude-checks",
            "positive_data_acceptance",
            "--no-color",
        ])
        .current_dir(dir.path())
        .output()
        .await
        .expect("python3 runs");
    let (stdout, stderr) = crate::support::outputs(&out);
    assert!(
        !stderr.contains("No module named schemathesis"),
        "the tests need schemathesis: python3 -m pip install 'schemathesis>=4,<5' (.ci/run installs it)"
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("No issues found"), "{stdout}");
    // It reached every endpoint's success path, not only its refusals.
    let metrics = metrics_of(&server).await;
    for route in [
        "/api/chat/generate-response",
        "/api/users/{user_id}/profile",
        "/api/channels/{channel_id}/summary",
        "/api/search",
    ] {
        assert!(
            metrics.contains(&format!(
                "chatctl_api_requests_total{{route=\"{route}\",status=\"200\"}}"
            )),
            "{route} never answered 200: {metrics}"
        );
    }
    drop(db);
}

#[tokio::test]
async fn the_database_gone_is_a_500_without_its_causes_and_readyz_says_so() {
    let db = TestDb::new().await;
    let _ = prepared(&db, BOT).await;
    let mut c = db.conn().await;
    let ada = user_id(&mut c, "ada@example.com").await;
    drop(c);
    let server = Server::start(&db, &[("CHATCTL_DATABASE__CONNECT_TIMEOUT", "2s")]).await;
    assert_eq!(
        get(&server, &format!("/api/users/{ada}/profile"), ada)
            .await
            .0,
        200
    );
    // The database is dropped under the running server (connections ended with it).
    let admin = crate::support::url(crate::support::port(), "postgres");
    let mut a = <PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    sqlx::raw_sql(&format!("drop database {} with (force)", db.name))
        .execute(&mut a)
        .await
        .unwrap();
    let (status, body) = get(&server, &format!("/api/users/{ada}/profile"), ada).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (500, Some("internal")),
        "{body}"
    );
    assert!(
        !body.to_string().contains(&db.name),
        "no causes are sent: {body}"
    );
    let (status, ready) = send(client().get(server.url("/readyz"))).await;
    assert_eq!((status, ready["database"].as_str()), (503, Some("down")));
}

#[tokio::test]
async fn replicas_share_nothing_in_memory_but_the_budget_is_one_and_each_index_stays_fresh() {
    let model = StandIn::start(|_, _| Answer::completion("Try ops/deploy.sh.", 2900)).await;
    let db = TestDb::new().await;
    let _ = prepared(&db, BOT).await;
    let mut c = db.conn().await;
    let ada = user_id(&mut c, "ada@example.com").await;
    let general = channel_id(&mut c, "general").await;
    let env = [
        ("CHATCTL_OPENAI__MODEL", "gpt-4o-mini"),
        ("OPENAI_BASE_URL", model.url.as_str()),
        ("OPENAI_API_KEY", "sk-test"),
        ("CHATCTL_OPENAI__MAX_RETRIES", "0"),
        ("CHATCTL_SERVE__DAILY_TOKEN_BUDGET", "3000"),
    ];
    // Two replicas behind one load balancer: each its own process state and search index.
    let (a, b) = (
        Server::start(&db, &env).await,
        Server::start(&db, &env).await,
    );
    let ask = json!({ "channel_id": general, "user_id": ada, "last_message": "deploy?" });
    assert_eq!(
        post(&a, "/api/chat/generate-response", ada, ask.clone())
            .await
            .0,
        200
    );
    // The budget Ada spent through one replica is spent through the other.
    let (status, body) = post(&b, "/api/chat/generate-response", ada, ask).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("budget_spent")),
        "{body}"
    );
    // A message posted once is found through both, each from its own index.
    say(
        &mut c,
        "ken",
        "general",
        "the quetzal rollout starts monday",
    )
    .await;
    for server in [&a, &b] {
        found_in_index(server, "/api/search?q=quetzal", ada, 1).await;
    }
}

/// A profile's statistics come from `user_activity`, counters kept by triggers: after every
/// kind of write (a batch of first replies, new messages, soft deletes of the newest message
/// and back, replies deleted softly and for good, reactions added and taken back, roots with
/// reactions deleted, a message moved to another channel, messages re-dated, an edit, a
/// channel deleted), each caller sees exactly what counting the person's messages and
/// reactions under the caller's own policies gives, for callers inside and outside the
/// person's channels.
#[tokio::test]
async fn profile_statistics_equal_counting_as_the_caller_after_every_kind_of_write() {
    let (db, pool) = seeded(40, 24, 2_000, 11).await;
    let mut c = db.conn().await;
    // Callers and people of the same workspace: members of different channels, so some
    // messages are readable and some not.
    let pairs: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "select a.user_id, b.user_id from workspace_members a
           join workspace_members b on b.workspace_id = a.workspace_id
          order by md5(a.user_id::text || b.user_id::text) limit 40",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let writes = [
        "insert into chat (channel_id, user_id, parent_id, message)
         select p.channel_id, m.user_id, p.id, '{\"text\":\"first reply\"}'
           from (select id, channel_id from chat where parent_id is null and total_replies = 0
                  order by id limit 20) p
          cross join lateral (select user_id from members where channel_id = p.channel_id
                               order by user_id limit 1) m",
        "insert into chat (channel_id, user_id, message, created_at)
         select channel_id, user_id, '{\"text\":\"newest\"}', now() + interval '1 day'
           from members order by md5(channel_id::text || user_id::text) limit 60",
        "update chat set is_deleted = true where created_at > now() + interval '12 hours'",
        "update chat set is_deleted = false where created_at > now() + interval '12 hours'
            and md5(id::text) < '8'",
        "update chat set is_deleted = true where parent_id in
            (select parent_id from chat where parent_id is not null group by 1 having count(*) = 1 limit 10)",
        "insert into emojis (chat_id, user_id, emoji_uni_code)
         select c.id, m.user_id, 'x' from chat c join members m on m.channel_id = c.channel_id
          where c.created_at > now() order by md5(c.id::text || m.user_id::text) limit 60
         on conflict do nothing",
        "delete from emojis where emoji_uni_code = 'x' and md5(chat_id::text) < '8'",
        "delete from chat where id in (select e.chat_id from emojis e join chat c on c.id = e.chat_id
                                        where c.parent_id is null and c.total_replies > 0 limit 5)",
        "delete from chat where id in (select id from chat where parent_id is not null order by id limit 30)",
        "update chat set channel_id = (select c2.id from channels c2 join channels c1
                                          on c1.workspace_id = c2.workspace_id and c1.id <> c2.id
                                       where c1.id = chat.channel_id and c2.kind = 'public' limit 1)
          where id = (select c.id from chat c join emojis e on e.chat_id = c.id
                       where c.parent_id is null and c.total_replies = 0 limit 1)",
        "update chat set created_at = created_at - interval '300 days'
          where id in (select id from chat where not is_deleted order by created_at desc limit 5)",
        "update chat set message = '{\"text\":\"edited\"}' where id in (select id from chat order by id limit 100)",
        "delete from channels where id = (select channel_id from chat group by 1 order by count(*) desc limit 1)",
    ];
    for (i, write) in writes.iter().enumerate() {
        let done = sqlx::query(write).execute(&mut c).await.unwrap();
        assert!(
            done.rows_affected() > 0,
            "write {i} changed nothing: {write}"
        );
        let mut readable = 0;
        for &(caller, person) in &pairs {
            let claims = json!({ "sub": caller, "role": "authenticated", "aud": "authenticated" });
            let Some(shown) = chatctl::api::profile(&pool, &claims, person).await.unwrap() else {
                continue;
            };
            let mut tx = chatctl::db::app_queries::begin_as(&pool, &claims)
                .await
                .unwrap();
            let counted: (i64, i64, i64, i64, Option<chrono::DateTime<chrono::Utc>>) =
                sqlx::query_as(
                    "select count(*) filter (where not is_deleted),
                            count(*) filter (where not is_deleted and parent_id is null and total_replies > 0),
                            count(*) filter (where not is_deleted and parent_id is not null),
                            (select count(*) from emojis e where e.user_id = $1),
                            max(created_at) filter (where not is_deleted)
                       from chat where user_id = $1",
                )
                .bind(person)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            tx.rollback().await.unwrap();
            let s = &shown.stats;
            assert_eq!(
                (
                    s.messages_sent,
                    s.threads_started,
                    s.replies_sent,
                    s.reactions_given,
                    s.last_message_at
                ),
                counted,
                "after write {i}, {caller} reading {person}'s profile"
            );
            readable += (counted.0 > 0) as usize;
        }
        assert!(
            readable > 5,
            "after write {i}: only {readable} profiles with messages"
        );
    }
}

/// A database of `dev seed` data in two workspaces (the same for the same arguments).
async fn seeded(users: u32, channels: u32, messages: u64, seed: u64) -> (TestDb, sqlx::PgPool) {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    chatctl::db::seed::seed(
        &pool,
        &chatctl::db::seed::SeedOptions {
            until: chatctl::db::seed::REFERENCE,
            users,
            channels,
            messages,
            workspaces: 2,
            seed,
            progress: false,
        },
    )
    .await
    .unwrap();
    (db, pool)
}

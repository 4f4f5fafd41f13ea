//! The OpenAI-compatible engine against the stand-in server (real HTTP, OpenAI's response and
//! error shapes): digests citing only real messages, map-reduce over long windows, retries
//! with Retry-After, refusals, timeouts, malformed answers, the daily token budget in the
//! database, redaction and the concurrency limit. And, when OPENAI_API_KEY is set, the same
//! structure checks against the real thing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatctl::ai::openai::OpenAiEngine;
use chatctl::ai::{Ask, Digest, LanguageModel, Message, Prompts, Question, Stats, prompt};
use chatctl::config::AiConfig;

use crate::support::TestDb;
use crate::support::openai_server::{Answer, StandIn, digest_json, refs};

fn settings(url: &str) -> AiConfig {
    AiConfig {
        model: Some("gpt-4o-mini".into()),
        base_url: Some(url.to_owned()),
        api_key: Some("sk-test-0123456789abcdefghij".into()),
        timeout: Duration::from_secs(10),
        max_tokens: 512,
        temperature: 0.2,
        context_tokens: 8192,
        concurrency: 4,
        max_retries: 3,
        max_retry_wait: Duration::from_secs(5),
        redact: true,
        daily_token_budget: None,
    }
}

/// A real conversation: the first `n` lines of an hour of the #ubuntu IRC channel.
fn conversation(n: usize) -> Vec<Message> {
    crate::ai::irc_hour("2005-06-27_12.raw.txt")
        .into_iter()
        .take(n)
        .collect()
}

fn ask<'a>(messages: &'a [Message], prompts: &'a Prompts, budget: Option<u64>) -> Ask<'a> {
    Ask {
        bot: "summarybot",
        channel: "ubuntu",
        messages,
        prompts,
        persona: None,
        budget,
        payer: "summarybot",
    }
}

/// The structure a digest from any engine must have: counts from the source, every cited id a
/// message of the window attributed to its author, every @name in the text a participant.
pub(crate) fn check_structure(digest: &Digest, messages: &[Message]) {
    let by_id: HashMap<&str, &Message> = messages.iter().map(|m| (m.id.as_str(), m)).collect();
    assert_eq!(digest.messages, messages.len());
    assert!(!digest.highlights.is_empty(), "a digest has highlights");
    let names: Vec<&str> = digest
        .participants
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    for c in digest
        .highlights
        .iter()
        .chain(&digest.decisions)
        .chain(&digest.open_questions)
        .chain(&digest.action_items)
    {
        let m = by_id
            .get(c.id.as_str())
            .expect("every cited id is a message of the window");
        assert_eq!(c.author, m.author);
        for word in c.text.split_whitespace().filter(|w| w.starts_with('@')) {
            let name = word
                .trim_start_matches('@')
                .trim_end_matches(|ch: char| !ch.is_alphanumeric());
            assert!(names.contains(&name), "@{name} is not a participant");
        }
    }
    for t in &digest.threads {
        assert!(by_id.contains_key(t.id.as_str()));
    }
}

#[tokio::test]
async fn a_digest_from_the_model_cites_only_real_messages() {
    let server = StandIn::start(|_, req| {
        let mut cited = refs(&crate::support::openai_server::prompt(req));
        cited.truncate(3);
        cited.push("m9999".into());
        Answer::completion(&format!("```json\n{}\n```", digest_json(&cited)), 900)
    })
    .await;
    let stats = Arc::new(Stats::default());
    let engine = OpenAiEngine::new(settings(&server.url), None, stats.clone()).unwrap();
    let messages = conversation(40);
    let prompts = Prompts::default();
    let digest = engine.digest(ask(&messages, &prompts, None)).await.unwrap();

    check_structure(&digest, &messages);
    let ids: Vec<&str> = digest.highlights.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, [&messages[0].id, &messages[1].id, &messages[2].id]);
    assert_eq!(
        stats
            .invented_citations
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(stats.tokens.load(std::sync::atomic::Ordering::Relaxed), 900);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r["model"], "gpt-4o-mini");
    assert_eq!(r["max_completion_tokens"], 512);
    assert_eq!(r["messages"][0]["role"], "system");
    assert_eq!(
        server.authorization().as_deref(),
        Some("Bearer sk-test-0123456789abcdefghij")
    );
    // Every message of the window went to the model, in order, by its author.
    let sent = crate::support::openai_server::prompt(r);
    for (i, m) in messages.iter().enumerate() {
        assert!(
            sent.contains(&format!("m{} @{} ", i + 1, m.author)),
            "message {i} missing"
        );
    }
}

#[tokio::test]
async fn long_windows_are_split_to_fit_the_context_then_merged() {
    let server = StandIn::start(|_, req| {
        let p = crate::support::openai_server::prompt(req);
        let cited: Vec<String> = if p.contains("Partial digests") {
            // The merge: keep the first ref of each partial digest.
            p.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["section"] == "highlights")
                .map(|v| v["ref"].as_str().unwrap().to_owned())
                .step_by(2)
                .collect()
        } else {
            refs(&p).into_iter().take(2).collect()
        };
        Answer::completion(&digest_json(&cited), 500)
    })
    .await;
    let mut s = settings(&server.url);
    s.context_tokens = 2048;
    s.max_tokens = 256;
    let engine = OpenAiEngine::new(s, None, Arc::new(Stats::default())).unwrap();
    let messages = conversation(600);
    let prompts = Prompts::default();
    let digest = engine.digest(ask(&messages, &prompts, None)).await.unwrap();
    check_structure(&digest, &messages);

    let requests = server.requests();
    let (merges, maps): (Vec<_>, Vec<_>) = requests
        .iter()
        .map(crate::support::openai_server::prompt)
        .partition(|p| p.contains("Partial digests"));
    assert!(maps.len() >= 5, "{} parts", maps.len());
    assert!(!merges.is_empty());
    for r in &requests {
        let text: String = r["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap())
            .collect();
        assert!(
            prompt::tokens(&text) + 256 <= 2048,
            "a request overflows the context"
        );
    }
    // Nothing is silently dropped: every message is in one of the parts.
    let sent: Vec<String> = maps.iter().flat_map(|p| refs(p)).collect();
    for i in 0..messages.len() {
        assert!(
            sent.contains(&format!("m{}", i + 1)),
            "message {i} never sent"
        );
    }
}

#[tokio::test]
async fn a_rate_limit_is_retried_after_the_time_the_server_asks() {
    let server = StandIn::start(|n, _| match n {
        0 => Answer::rate_limited(1),
        _ => Answer::completion("Try `sudo apt-get update` first.", 40),
    })
    .await;
    let stats = Arc::new(Stats::default());
    let engine = OpenAiEngine::new(settings(&server.url), None, stats.clone()).unwrap();
    let messages = conversation(10);
    let prompts = Prompts::default();
    let started = Instant::now();
    let reply = engine
        .reply(
            ask(&messages, &prompts, None),
            Question {
                author: "ada",
                text: "how do I update?",
                related: &[],
            },
        )
        .await
        .unwrap();
    assert_eq!(reply, "Try `sudo apt-get update` first.");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(server.requests().len(), 2);
    assert_eq!(stats.retries.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// The error of one request answered by `answer` (every time), with `tweak` applied.
async fn failure(
    answer: Answer,
    tweak: impl FnOnce(&mut AiConfig),
) -> (anyhow::Error, usize, Duration) {
    let server = StandIn::start(move |_, _| answer.clone()).await;
    let started = Instant::now();
    let err = summary_failure(&server.url, tweak, Arc::new(Stats::default())).await;
    (err, server.requests().len(), started.elapsed())
}

/// The error of a thread summary asked of the server at `url`.
async fn summary_failure(
    url: &str,
    tweak: impl FnOnce(&mut AiConfig),
    stats: Arc<Stats>,
) -> anyhow::Error {
    let mut s = settings(url);
    tweak(&mut s);
    let engine = OpenAiEngine::new(s, None, stats).unwrap();
    let messages = conversation(10);
    let prompts = Prompts::default();
    engine
        .thread_summary(ask(&messages, &prompts, None))
        .await
        .unwrap_err()
}

fn rendered(e: &anyhow::Error) -> (String, u8, Option<String>) {
    let r = chatctl::error::render(e);
    (
        format!("{} {}", r.message, r.causes.join(" ")),
        r.exit_code,
        r.help,
    )
}

#[tokio::test]
async fn a_retry_after_longer_than_allowed_fails_at_once() {
    let (err, requests, took) = failure(Answer::rate_limited(120), |_| {}).await;
    let (text, code, _) = rendered(&err);
    assert_eq!(requests, 1);
    assert!(took < Duration::from_secs(3));
    assert_eq!(code, 69, "{text}");
    assert!(text.contains("retry after 120s"), "{text}");
    assert!(text.contains("HTTP 429"), "{text}");
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let answer = Answer::recorded(500, "error_500_server_error.json");
    let (err, requests, _) = failure(answer, |s| s.max_retries = 2).await;
    let (text, code, _) = rendered(&err);
    assert_eq!(requests, 3, "the first try and two retries");
    assert_eq!(code, 69);
    assert!(
        text.contains("after 3 attempt(s)") && text.contains("HTTP 500"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_requests_and_bad_keys_are_not_retried() {
    let bad = Answer::recorded(400, "error_400_context_length_exceeded.json");
    let (err, requests, _) = failure(bad, |_| {}).await;
    let (text, code, _) = rendered(&err);
    assert_eq!((requests, code), (1, 1), "{text}");
    assert!(
        text.contains("HTTP 400") && text.contains("maximum context length"),
        "{text}"
    );

    let key = Answer::recorded(401, "error_401_invalid_api_key.json");
    let (err, requests, _) = failure(key, |_| {}).await;
    let (text, code, help) = rendered(&err);
    assert_eq!((requests, code), (1, 64), "{text}");
    assert!(help.unwrap().contains("OPENAI_API_KEY"));
    assert!(
        !text.contains("0123456789abcdefghij"),
        "the key never shows: {text}"
    );
}

#[tokio::test]
async fn a_model_that_does_not_exist_is_not_retried() {
    let missing = Answer::recorded(404, "error_404_model_not_found.json");
    let (err, requests, _) = failure(missing, |_| {}).await;
    let (text, _, _) = rendered(&err);
    assert_eq!(requests, 1, "{text}");
    assert!(
        text.contains("HTTP 404") && text.contains("does not exist"),
        "{text}"
    );
}

/// A server that takes the connection and closes it unanswered (a proxy restarting, a
/// reset): each attempt is a connection error, retried `max_retries` times.
#[tokio::test]
async fn connection_errors_are_retried_then_reported() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let accepted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                drop(socket);
            }
        });
    }
    let stats = Arc::new(Stats::default());
    let err = summary_failure(&url, |s| s.max_retries = 2, stats.clone()).await;
    let (text, code, _) = rendered(&err);
    assert_eq!(code, 69, "{text}");
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::Relaxed),
        3,
        "the first try and two retries: {text}"
    );
    assert_eq!(stats.retries.load(std::sync::atomic::Ordering::Relaxed), 2);
}

/// Two replicas share one budget through the database: asking at once, together they send
/// no more than it holds; the rest are refused before anything is sent.
#[tokio::test]
async fn replicas_asking_at_once_do_not_overspend_the_budget_together() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let server =
        StandIn::start(|_, _| Answer::completion("fine", 10).after(Duration::from_millis(500)))
            .await;
    let replica = || {
        OpenAiEngine::new(
            settings(&server.url),
            Some(pool.clone()),
            Arc::new(Stats::default()),
        )
        .unwrap()
    };
    let (a, b) = (replica(), replica());
    let messages = conversation(10);
    let prompts = Prompts::default();
    let q = Question {
        author: "ada",
        text: "anyone?",
        related: &[],
    };
    // What one request reserves: read while it is in flight.
    let reserved = {
        let first = a.reply(ask(&messages, &prompts, Some(1_000_000)), q);
        let watch = async {
            crate::support::wait_for(
                "the first request's reservation",
                Duration::from_secs(10),
                async || {
                    let t: Option<i64> = sqlx::query_scalar(
                        "select tokens from chatctl.ai_usage where bot = 'summarybot'",
                    )
                    .fetch_optional(&pool)
                    .await
                    .unwrap();
                    t.filter(|t| *t > 10)
                        .ok_or_else(|| format!("{t:?} reserved"))
                },
            )
            .await
        };
        let (answer, reserved) = tokio::join!(first, watch);
        answer.unwrap();
        reserved
    };
    // Settled to the server's count; room for two more reservations, not three.
    let budget = 10 + 2 * reserved as u64 + reserved as u64 / 2;
    let asks = (0..6).map(|i| {
        let engine = if i % 2 == 0 { &a } else { &b };
        engine.reply(ask(&messages, &prompts, Some(budget)), q)
    });
    let answers = futures_util::future::join_all(asks).await;
    let sent = answers.iter().filter(|r| r.is_ok()).count();
    let refused = answers
        .iter()
        .filter(|r| {
            r.as_ref()
                .is_err_and(|e| e.to_string().contains("daily token budget"))
        })
        .count();
    assert_eq!((sent, refused), (2, 4), "{answers:?}");
    assert_eq!(server.requests().len(), 1 + 2, "nothing refused was sent");
    let (tokens, refusals): (i64, i32) =
        sqlx::query_as("select tokens, refusals from chatctl.ai_usage where bot = 'summarybot'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (tokens, refusals),
        (30, 4),
        "charged what the server counted"
    );
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let slow = Answer::completion("late", 10).after(Duration::from_secs(5));
    let (err, requests, took) = failure(slow, |s| {
        s.timeout = Duration::from_secs(1);
        s.max_retries = 1;
    })
    .await;
    let (text, code, _) = rendered(&err);
    assert_eq!(requests, 2, "a timeout is retried");
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(code, 69);
    assert!(text.contains("no answer within 1s"), "{text}");
}

#[tokio::test]
async fn a_malformed_answer_is_an_error_not_a_panic() {
    let mut html = Answer::completion("", 0);
    html.body = "<html><body>502 Bad Gateway</body></html>".into();
    let (err, _, _) = failure(html, |_| {}).await;
    let (text, code, _) = rendered(&err);
    assert_eq!(code, 1);
    assert!(text.contains("not a chat completion"), "{text}");

    // A digest that is prose, not the JSON asked for.
    let server =
        StandIn::start(|_, _| Answer::completion("Sure! The channel talked about apt.", 30)).await;
    let engine =
        OpenAiEngine::new(settings(&server.url), None, Arc::new(Stats::default())).unwrap();
    let messages = conversation(10);
    let prompts = Prompts::default();
    let err = engine
        .digest(ask(&messages, &prompts, None))
        .await
        .unwrap_err();
    let (text, code, _) = rendered(&err);
    assert_eq!(code, 1);
    assert!(text.contains("expected a JSON digest"), "{text}");
}

#[tokio::test]
async fn the_daily_token_budget_is_kept_in_the_database() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let server = StandIn::start(|_, _| Answer::completion("fine", 123)).await;
    let stats = Arc::new(Stats::default());
    let engine =
        OpenAiEngine::new(settings(&server.url), Some(pool.clone()), stats.clone()).unwrap();
    let messages = conversation(10);
    let prompts = Prompts::default();
    let q = Question {
        author: "ada",
        text: "anyone?",
        related: &[],
    };

    // Within the budget: charged what the server counted, not the estimate.
    engine
        .reply(ask(&messages, &prompts, Some(5_000)), q)
        .await
        .unwrap();
    let (tokens, requests, refusals): (i64, i32, i32) = sqlx::query_as(
        "select tokens, requests, refusals from chatctl.ai_usage where bot = 'summarybot' and day = (now() at time zone 'utc')::date",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((tokens, requests, refusals), (123, 1, 0));

    // A request that would pass the budget is refused before anything is sent.
    let err = engine
        .reply(ask(&messages, &prompts, Some(600)), q)
        .await
        .unwrap_err();
    let (text, code, _) = rendered(&err);
    assert_eq!(code, 75, "{text}");
    assert!(
        text.contains("daily token budget of `summarybot` is spent"),
        "{text}"
    );
    assert_eq!(server.requests().len(), 1, "nothing sent");
    let refusals: i32 =
        sqlx::query_scalar("select refusals from chatctl.ai_usage where bot = 'summarybot'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(refusals, 1);
    assert_eq!(
        stats
            .budget_refusals
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn emails_phones_and_tokens_never_reach_the_model() {
    let server = StandIn::start(|_, _| Answer::completion("noted", 20)).await;
    let engine =
        OpenAiEngine::new(settings(&server.url), None, Arc::new(Stats::default())).unwrap();
    let t0 = chrono::Utc::now();
    let messages = vec![
        Message::line(
            "a",
            "ada",
            "my mail is ada.l@example.org, call +44 20 7946 0958",
            t0,
        ),
        Message::line(
            "b",
            "linus",
            "deploy key ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            t0,
        ),
    ];
    let prompts = Prompts::default();
    engine
        .thread_summary(ask(&messages, &prompts, None))
        .await
        .unwrap();
    let body = server.requests()[0].to_string();
    for secret in ["ada.l@example.org", "7946", "ghp_abc"] {
        assert!(!body.contains(secret), "`{secret}` was sent");
    }
    assert!(body.contains("[email]") && body.contains("[phone]") && body.contains("[token]"));
}

#[tokio::test]
async fn no_more_requests_than_the_concurrency_limit_are_in_flight() {
    let server =
        StandIn::start(|_, _| Answer::completion("ok", 10).after(Duration::from_millis(300))).await;
    let mut s = settings(&server.url);
    s.concurrency = 2;
    let engine = Arc::new(OpenAiEngine::new(s, None, Arc::new(Stats::default())).unwrap());
    let messages = Arc::new(conversation(5));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (engine, messages) = (engine.clone(), messages.clone());
        tasks.push(tokio::spawn(async move {
            let prompts = Prompts::default();
            engine
                .thread_summary(ask(&messages, &prompts, None))
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), "ok");
    }
    assert_eq!(server.requests().len(), 6);
    assert_eq!(server.max_in_flight(), 2);
}

/// The real thing: a digest of a real conversation has the structure asked for (sections,
/// real ids, real names). Ignored (reported as such) unless asked for with a key:
/// `OPENAI_API_KEY=… cargo test --test it live_model -- --ignored`.
#[tokio::test]
#[ignore = "calls a hosted model: OPENAI_API_KEY=… cargo test --test it live_model -- --ignored"]
async fn live_model_digest_has_the_structure_asked_for() {
    let env = chatctl::config::Env::from_process();
    let key = env
        .get("OPENAI_API_KEY")
        .expect("the live test needs OPENAI_API_KEY (and OPENAI_BASE_URL for another server)");
    let mut s = settings(
        env.get("OPENAI_BASE_URL")
            .unwrap_or("https://api.openai.com/v1"),
    );
    s.api_key = Some(key.to_owned());
    s.model = Some(env.get("OPENAI_MODEL").unwrap_or("gpt-4o-mini").to_owned());
    s.timeout = Duration::from_secs(120);
    let engine = OpenAiEngine::new(s, None, Arc::new(Stats::default())).unwrap();
    let messages = conversation(150);
    let prompts = Prompts::default();
    let digest = engine.digest(ask(&messages, &prompts, None)).await.unwrap();
    check_structure(&digest, &messages);
}

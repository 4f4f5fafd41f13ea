use super::*;

fn load(
    env: &[(&str, &str)],
    file: Option<&str>,
    flags: &[(&'static str, &'static str, &str)],
) -> Result<Config> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut overrides = Overrides::default();
    if let Some(text) = file {
        let p = dir.join("c.yaml");
        std::fs::write(&p, text).unwrap();
        overrides.config_file = Some(p);
    }
    overrides.values = flags
        .iter()
        .map(|(k, f, v)| (*k, *f, (*v).to_owned()))
        .collect();
    Config::load(&Env::from_pairs(env.iter().copied()), &overrides, dir)
}

#[test]
fn layers_in_order_defaults_file_env_flags() {
    let c = load(&[], None, &[]).unwrap();
    assert_eq!(c.database.max_connections, 10);

    let file = "database:\n  max_connections: 20\n";
    let c = load(&[], Some(file), &[]).unwrap();
    assert_eq!(c.database.max_connections, 20);

    let env = [("CHATCTL_DATABASE__MAX_CONNECTIONS", "30")];
    let c = load(&env, Some(file), &[]).unwrap();
    assert_eq!(c.database.max_connections, 30);

    let c = load(
        &env,
        Some(file),
        &[("database.max_connections", "--max", "40")],
    )
    .unwrap();
    assert_eq!(c.database.max_connections, 40);
    let entry = c
        .show()
        .entries
        .into_iter()
        .find(|e| e.key == "database.max_connections")
        .unwrap();
    assert_eq!(entry.origin, Some(Origin::Flag("--max".into())));
}

#[test]
fn prefixed_env_wins_over_well_known_alias() {
    let env = [
        ("DATABASE_URL", "postgres://a@h/one"),
        ("CHATCTL_DATABASE__URL", "postgres://a@h/two"),
    ];
    let c = load(&env, None, &[]).unwrap();
    assert_eq!(c.database_url(), Some("postgres://a@h/two"));
}

#[test]
fn bad_value_names_key_value_and_origin() {
    let env = [("CHATCTL_DATABASE__MAX_CONNECTIONS", "abc")];
    let err = load(&env, None, &[]).unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid `database.max_connections` = `abc` (from env CHATCTL_DATABASE__MAX_CONNECTIONS): expected a positive integer"
    );
}

#[test]
fn unknown_key_in_file_is_an_error_with_its_line() {
    let err = load(
        &[],
        Some("database:\n  max_connections: 3\n  urll: x\n"),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown field `urll`"), "{err}");
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn show_masks_secrets_and_url_passwords() {
    let env = [
        (
            "DATABASE_URL",
            "postgres://app:hunter2-secret@db.example.com:5432/chat",
        ),
        ("OPENAI_API_KEY", "sk-test-abcdef"),
        // Any URL-shaped setting, not only the database's (issue 22).
        (
            "OPENAI_BASE_URL",
            "https://proxy:proxy-pass-42@llm.example.com/v1?password=query-pass-7",
        ),
        (
            "CHATCTL_SERVE__JWKS_URL",
            "https://u:jwks-pass-9@auth.example.com/jwks",
        ),
    ];
    let c = load(&env, None, &[]).unwrap();
    let shown = serde_json::to_string(&c.show()).unwrap();
    for secret in [
        "hunter2-secret",
        "sk-test-abcdef",
        "proxy-pass-42",
        "query-pass-7",
        "jwks-pass-9",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("llm.example.com/v1"), "{shown}");
    assert!(
        shown.contains("postgres://app:***@db.example.com:5432/chat"),
        "{shown}"
    );
}

#[test]
fn durations() {
    assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
    assert!(parse_duration("soon").is_err());
    // As people write them.
    for (text, secs) in [
        ("1h30m", 5_400.0),
        ("2 days", 172_800.0),
        ("1w", 604_800.0),
        ("1.5h", 5_400.0),
        ("90 min", 5_400.0),
        ("0.25", 0.25),
    ] {
        assert_eq!(parse_duration(text).unwrap().as_secs_f64(), secs, "{text}");
    }
    assert!(
        parse_duration("99999999999999999999999s")
            .unwrap_err()
            .contains("too long")
    );
    assert!(parse_duration("-5s").is_err());
    assert!(parse_duration("5 fortnights").is_err());
}

#[test]
fn the_event_source_follows_the_supabase_url_unless_set() {
    let c = load(&[], None, &[]).unwrap();
    assert_eq!(c.bots.event_source, super::SourceKind::Auto);
    assert_eq!(c.realtime.url, None);
    let c = load(&[("SUPABASE_URL", "https://abc.supabase.co")], None, &[]).unwrap();
    assert_eq!(
        c.realtime.url.as_ref().unwrap().as_str(),
        "https://abc.supabase.co/"
    );
    let file = "bots:\n  event_source: listen\nrealtime:\n  url: ws://localhost:4000/socket/websocket\n  heartbeat: 10s\n";
    let c = load(
        &[("SUPABASE_URL", "https://abc.supabase.co")],
        Some(file),
        &[],
    )
    .unwrap();
    assert_eq!(c.bots.event_source, super::SourceKind::Listen);
    assert_eq!(
        c.realtime.url.as_ref().unwrap().as_str(),
        "ws://localhost:4000/socket/websocket"
    );
    assert_eq!(c.realtime.heartbeat, Duration::from_secs(10));
    let err = load(&[("CHATCTL_BOTS__EVENT_SOURCE", "kafka")], None, &[]).unwrap_err();
    assert!(err.to_string().contains("bots.event_source"), "{err}");
    let err = load(&[("SUPABASE_URL", "ftp://x")], None, &[]).unwrap_err();
    assert!(err.to_string().contains("supabase.url"), "{err}");
}

#[test]
fn the_file_is_read_by_the_declared_keys_alone() {
    // A key written twice is refused, as a typo is.
    let err = load(
        &[],
        Some("database:\n  max_connections: 3\n  max_connections: 4\n"),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("duplicate field"), "{err}");
    // Numbers, booleans and strings are values; a section's keys come from KEYS.
    let c = load(
        &[],
        Some("output: json\nai:\n  redact: false\nopenai:\n  timeout: 90\nrealtime:\n  heartbeat: 10s\n"),
        &[],
    )
    .unwrap();
    assert_eq!(c.output, OutputFormat::Json);
    assert!(!c.ai.redact);
    assert_eq!(c.ai.timeout, Duration::from_secs(90));
    assert_eq!(c.realtime.heartbeat, Duration::from_secs(10));
    // A bad value names its line.
    let err = load(&[], Some("log:\n  format: fancy\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2"), "{err}");
}

/// Every key, from the environment and from a file, with values past what its type holds:
/// a usage error naming the key, never a panic (issue 22: durations above ~1.8e19 s
/// panicked).
#[test]
fn every_key_refuses_values_past_its_range_without_a_panic() {
    let hostile = [
        "99999999999999999999999s",
        "18446744073709551616",
        "-1",
        "1e999",
        "99999999999h",
        "NaN",
    ];
    let mut durations = 0;
    for k in KEYS {
        let is_duration = k.default.is_some_and(|d| {
            d.ends_with(|c: char| c.is_ascii_alphabetic()) && parse_duration(d).is_ok()
        });
        durations += usize::from(is_duration);
        for value in hostile {
            let var = env_name(k.name);
            let (section, key) = k.name.split_once('.').unwrap_or(("", k.name));
            let file = if section.is_empty() {
                format!("{key}: \"{value}\"\n")
            } else {
                format!("{section}:\n  {key}: \"{value}\"\n")
            };
            for (env, file) in [(Some(var.as_str()), None), (None, Some(file.as_str()))] {
                let pairs: Vec<(&str, &str)> = env.map(|v| (v, value)).into_iter().collect();
                let loaded = std::panic::catch_unwind(|| load(&pairs, file, &[]).map(|_| ()));
                let loaded = loaded.unwrap_or_else(|_| panic!("{} = {value} panics", k.name));
                if is_duration && value == hostile[0] {
                    let e = loaded.expect_err(k.name).to_string();
                    assert!(e.contains(k.name), "{} = {value}: {e}", k.name);
                }
            }
        }
    }
    assert!(durations >= 5, "the duration keys were found: {durations}");
}

#[test]
fn shared_buffers_is_auto_or_a_size_of_at_least_a_mebibyte() {
    assert_eq!(load(&[], None, &[]).unwrap().shared_buffers, None);
    let c = load(&[("CHATCTL_LOCAL__SHARED_BUFFERS", "2GiB")], None, &[]).unwrap();
    assert_eq!(c.shared_buffers, Some(2 << 30));
    let c = load(&[], Some("local:\n  shared_buffers: 512MB\n"), &[]).unwrap();
    assert_eq!(c.shared_buffers, Some(512 << 20));
    for bad in ["64KiB", "lots", "1TB", "0"] {
        let e = load(&[("CHATCTL_LOCAL__SHARED_BUFFERS", bad)], None, &[])
            .map(|_| ())
            .expect_err(bad)
            .to_string();
        assert!(e.contains("local.shared_buffers"), "{bad}: {e}");
    }
}

//! Database URLs: parsing, redaction, and spotting a transaction pooler.

use url::Url;

/// Parses a PostgreSQL URL, checking its scheme.
pub fn parse(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    match url.scheme() {
        "postgres" | "postgresql" => Ok(url),
        other => Err(format!(
            "unsupported scheme `{other}`, expected postgres://"
        )),
    }
}

/// The password in a URL, decoded, if it has one.
pub fn password(text: &str) -> Option<String> {
    let url = Url::parse(text).ok()?;
    let p = url.password()?;
    let decoded = percent_decode(p);
    Some(decoded)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

/// The secrets a URL-shaped value carries: the password of its user part and any
/// `password` in its query string (empty when the text is not a URL).
pub fn secrets(text: &str) -> Vec<String> {
    let Ok(url) = Url::parse(text) else {
        return Vec::new();
    };
    let mut found: Vec<String> = password(text).into_iter().collect();
    found.extend(
        url.query_pairs()
            .filter(|(k, v)| k.eq_ignore_ascii_case("password") && !v.is_empty())
            .map(|(_, v)| v.into_owned()),
    );
    found
}

/// The URL with its password replaced by `***`; safe to print. Text that is not a URL is
/// replaced whole, since it cannot be known which part is secret.
pub fn redact(text: &str) -> String {
    match Url::parse(text) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            // Passwords may also ride in the query string.
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k.eq_ignore_ascii_case("password") {
                        "***".into()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            if !pairs.is_empty() {
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
            url.to_string().replace("%2A%2A%2A", "***")
        }
        Err(_) => "<unparseable URL>".to_owned(),
    }
}

/// Why a URL looks like a transaction-mode pooler (Supavisor or PgBouncer), where session
/// state such as advisory locks does not survive between transactions.
pub fn transaction_pooler_reason(text: &str) -> Option<String> {
    let url = Url::parse(text).ok()?;
    if url.port() == Some(6543) {
        return Some(
            "port 6543 is the transaction-mode pooler (Supavisor/PgBouncer) on Supabase".into(),
        );
    }
    for (k, v) in url.query_pairs() {
        if k == "pgbouncer" && v == "true" {
            return Some("the URL sets pgbouncer=true".into());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:p%40ss@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("postgres://u@h/db?password=x"),
            "postgres://u@h/db?password=***"
        );
        assert_eq!(
            password("postgres://u:p%40ss@h/db").as_deref(),
            Some("p@ss")
        );
    }

    #[test]
    fn spots_transaction_poolers() {
        assert!(
            transaction_pooler_reason("postgres://u:p@aws-0-eu.pooler.supabase.com:6543/postgres")
                .is_some()
        );
        assert!(transaction_pooler_reason("postgres://u:p@h:5432/db?pgbouncer=true").is_some());
        assert!(
            transaction_pooler_reason("postgres://u:p@db.abc.supabase.co:5432/postgres").is_none()
        );
    }
}

//! Slack's message markup into ours: `<@U…>` mentions become `@username` (and our mention
//! list), `<#C…|name>` becomes `#name`, `<!here>` `<!channel>` `<!everyone>` become `@here`
//! `@channel` `@everyone`, `<url|label>` becomes `label (url)`, and `&amp; &lt; &gt;` are
//! unescaped. Emoji names become Unicode where a standard one exists.

use std::collections::HashMap;

use uuid::Uuid;

/// Who and what the markup may name.
pub struct Names<'a> {
    /// Slack user id → (our id, username).
    pub users: &'a HashMap<String, (Uuid, String)>,
    /// Slack conversation id → our channel name.
    pub channels: &'a HashMap<String, String>,
}

/// A message's text in our markup, and the people it mentions (each once, in order).
pub fn convert(text: &str, names: &Names) -> (String, Vec<Uuid>) {
    let mut out = String::with_capacity(text.len());
    let mut mentions: Vec<Uuid> = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        let Some(len) = rest[open..].find('>') else {
            break;
        };
        unescape_into(&mut out, &rest[..open]);
        let inner = &rest[open + 1..open + len];
        let (target, label) = match inner.split_once('|') {
            Some((t, l)) => (t, Some(l)),
            None => (inner, None),
        };
        if let Some(id) = target.strip_prefix('@') {
            match names.users.get(id) {
                Some((uid, username)) => {
                    out.push('@');
                    out.push_str(username);
                    if !mentions.contains(uid) {
                        mentions.push(*uid);
                    }
                }
                None => {
                    out.push('@');
                    unescape_into(&mut out, label.unwrap_or(id));
                }
            }
        } else if let Some(id) = target.strip_prefix('#') {
            out.push('#');
            match (names.channels.get(id), label) {
                (Some(name), _) => out.push_str(name),
                (None, Some(l)) => unescape_into(&mut out, l),
                (None, None) => out.push_str(id),
            }
        } else if let Some(special) = target.strip_prefix('!') {
            let word = special.split('^').next().unwrap_or(special);
            match word {
                "here" | "channel" | "everyone" => {
                    out.push('@');
                    out.push_str(word);
                }
                // `<!subteam^S123|@team>`, `<!date^…|fallback>`: the label says it.
                _ => unescape_into(&mut out, label.unwrap_or(word)),
            }
        } else {
            let url = unescape(target);
            let shown = url.strip_prefix("mailto:").unwrap_or(&url);
            match label.map(unescape) {
                Some(l) if l != shown && l != url && !l.is_empty() => {
                    out.push_str(&l);
                    out.push_str(" (");
                    out.push_str(shown);
                    out.push(')');
                }
                _ => out.push_str(shown),
            }
        }
        rest = &rest[open + len + 1..];
    }
    unescape_into(&mut out, rest);
    (out, mentions)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    unescape_into(&mut out, s);
    out
}

/// Slack escapes only these three.
fn unescape_into(out: &mut String, s: &str) {
    if !s.contains('&') {
        out.push_str(s);
        return;
    }
    out.push_str(
        &s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    );
}

/// A reaction's emoji: the Unicode of a standard Slack name (`thumbsup`, `+1`,
/// `wave::skin-tone-3`), otherwise the name kept as `:name:` (a workspace's own emoji).
pub fn emoji(name: &str) -> String {
    let (base, tone) = match name.split_once("::skin-tone-") {
        Some((b, t)) => (b, t.parse::<u8>().ok()),
        None => (name, None),
    };
    let Some(e) = emojis::get_by_shortcode(base) else {
        return format!(":{name}:");
    };
    let tone = tone.and_then(|t| match t {
        2 => Some(emojis::SkinTone::Light),
        3 => Some(emojis::SkinTone::MediumLight),
        4 => Some(emojis::SkinTone::Medium),
        5 => Some(emojis::SkinTone::MediumDark),
        6 => Some(emojis::SkinTone::Dark),
        _ => None,
    });
    tone.and_then(|t| e.with_skin_tone(t))
        .unwrap_or(e)
        .as_str()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_becomes_names_and_mentions() {
        let ada = Uuid::now_v7();
        let users = HashMap::from([("U1".to_owned(), (ada, "ada".to_owned()))]);
        let channels = HashMap::from([("C1".to_owned(), "general".to_owned())]);
        let names = Names {
            users: &users,
            channels: &channels,
        };
        let (text, mentions) = convert(
            "<@U1> see <#C1|old-name> and <#C9|elsewhere>, <!here> <!channel> \
             <https://example.com/a?b=1&amp;c=2|the doc> <https://x.org> \
             <mailto:a@b.org|a@b.org> <!subteam^S1|@ops> 1 &lt; 2 &amp;&amp; <@U2|bob> <@U1>",
            &names,
        );
        assert_eq!(
            text,
            "@ada see #general and #elsewhere, @here @channel \
             the doc (https://example.com/a?b=1&c=2) https://x.org \
             a@b.org @ops 1 < 2 && @bob @ada"
        );
        assert_eq!(
            mentions,
            vec![ada],
            "each person once, unknown people not at all"
        );
        assert_eq!(
            convert("a < b", &names).0,
            "a < b",
            "an unclosed bracket is text"
        );
    }

    #[test]
    fn standard_emoji_names_become_unicode_and_others_stay_names() {
        assert_eq!(emoji("thumbsup"), "👍");
        assert_eq!(emoji("+1"), "👍");
        assert_eq!(emoji("heart"), "❤️");
        assert_eq!(emoji("wave::skin-tone-3"), "👋🏼");
        assert_eq!(emoji("partyparrot"), ":partyparrot:");
    }
}

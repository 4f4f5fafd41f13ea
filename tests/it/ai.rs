//! The offline summarizer on real conversations from ../shared/fixtures/.

use std::collections::HashMap;

use chatctl::ai::{Message, offline};

/// One hour of the real #ubuntu IRC channel, as messages (joins, parts and renames left out).
pub(crate) fn irc_hour(file: &str) -> Vec<Message> {
    let path = crate::support::fixtures("corpus/irc-disentanglement-ubuntu/dev").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let t0 = chrono::DateTime::<chrono::Utc>::from_timestamp(1_119_864_000, 0).unwrap();
    text.lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once("] <")?;
            let (nick, said) = rest.split_once("> ")?;
            Some((nick.to_owned(), said.to_owned()))
        })
        .enumerate()
        .map(|(i, (nick, said))| {
            Message::line(
                format!("m{i}"),
                &nick,
                &said,
                t0 + chrono::Duration::seconds(i as i64 * 10),
            )
        })
        .collect()
}

#[test]
fn a_digest_of_a_real_irc_hour_cites_real_messages_by_their_authors() {
    let messages = irc_hour("2005-06-27_12.raw.txt");
    assert!(messages.len() > 500, "{}", messages.len());
    let by_id: HashMap<&str, &Message> = messages.iter().map(|m| (m.id.as_str(), m)).collect();

    let digest = offline::digest(&messages);
    assert_eq!(digest.messages, messages.len());
    assert_eq!(
        digest
            .participants
            .iter()
            .map(|p| p.messages)
            .sum::<usize>(),
        messages.len(),
        "every message is someone's"
    );
    assert!(
        digest
            .participants
            .windows(2)
            .all(|w| w[0].messages >= w[1].messages),
        "the most active first"
    );
    assert_eq!(digest.highlights.len(), offline::budget(messages.len()));
    let cited = digest
        .highlights
        .iter()
        .chain(&digest.decisions)
        .chain(&digest.open_questions)
        .chain(&digest.action_items);
    for c in cited {
        let m = by_id
            .get(c.id.as_str())
            .expect("a cited id is a real message");
        assert_eq!(c.author, m.author);
        assert!(
            m.text.split_whitespace().count() >= 3,
            "a one-word line is never what mattered: {:?}",
            m.text
        );
    }
    for q in &digest.open_questions {
        assert!(by_id[q.id.as_str()].text.contains('?'));
    }
    // Deterministic, and every highlight is cited by id in the Markdown.
    assert_eq!(offline::digest(&messages), digest);
    let md = digest.markdown("#ubuntu");
    for h in &digest.highlights {
        assert!(md.contains(&format!("(`{}`)", h.id)), "{md}");
    }
}

#[test]
fn a_summary_of_a_short_conversation_is_its_own_messages_attributed_in_order() {
    // The first 12 lines of the same real hour.
    let messages = irc_hour("2005-06-27_12.raw.txt")[..12].to_vec();
    let summary = offline::summary(&messages);
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(lines.len(), offline::budget(12));
    // In the conversation's order, attributed.
    let mut last = 0;
    for l in &lines {
        let (who, what) = l.split_once(": ").unwrap();
        let at = messages
            .iter()
            .position(|m| m.author == who && offline::clip(&m.text, 300) == what)
            .expect("a summary line is a message, attributed to its author");
        assert!(at >= last);
        last = at;
    }
}

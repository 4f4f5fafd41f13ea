//! Summary quality: ROUGE-1/2/L F1 of the offline engine on the SAMSum test set, beside the
//! simple baselines (first 3 messages, 3 longest, plain TextRank) and the fine-tuned BART
//! candidates shipped with the set, all by the same scorer in the same run; then the speed of
//! a digest of 10,000 messages.
//!
//! `cargo bench --bench summaries [-- PATH]` (default: ../shared/fixtures/eval/samsum-test/
//! results.txt beside the project). The data set is evaluation data under CC BY-NC-ND: it is
//! read from there, never copied into the project.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use chatctl::ai::{Message, offline, rouge};

struct Sample {
    dialogue: Vec<Message>,
    reference: String,
    candidate: String,
}

fn parse(text: &str) -> Vec<Sample> {
    let t0 = chrono::DateTime::<chrono::Utc>::from_timestamp(1_600_000_000, 0).unwrap();
    let mut out = Vec::new();
    for block in text.split("dialogue:\n-----------\n").skip(1) {
        let (dialogue, rest) = block.split_once("\nreference:\n-----------\n").unwrap();
        let (reference, candidate) = rest.split_once("\ncandidate:\n-----------\n").unwrap();
        let dialogue = dialogue
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                let (who, what) = l.split_once(':').unwrap_or(("", l));
                Message::line(
                    i.to_string(),
                    who.trim(),
                    what.trim(),
                    t0 + chrono::Duration::seconds(i as i64),
                )
            })
            .collect();
        out.push(Sample {
            dialogue,
            reference: reference.trim().to_owned(),
            candidate: candidate.trim().to_owned(),
        });
    }
    out
}

fn lines(d: &[Message], picked: &[usize]) -> String {
    picked
        .iter()
        .map(|&i| format!("{}: {}", d[i].author, d[i].text))
        .collect::<Vec<_>>()
        .join("\n")
}

fn first3(d: &[Message]) -> String {
    lines(d, &(0..d.len().min(3)).collect::<Vec<_>>())
}

fn longest3(d: &[Message]) -> String {
    let mut order: Vec<usize> = (0..d.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(d[i].text.chars().count()));
    order.truncate(3);
    order.sort_unstable();
    lines(d, &order)
}

/// TextRank as published: every word counts, no chat-specific weighing, the top 3.
fn textrank3(d: &[Message]) -> String {
    let terms: Vec<Vec<String>> = d.iter().map(|m| rouge::tokens(&m.text)).collect();
    let rank = offline::centrality(&terms);
    let mut order: Vec<usize> = (0..d.len()).collect();
    order.sort_by(|&a, &b| rank[b].total_cmp(&rank[a]).then(a.cmp(&b)));
    order.truncate(3);
    order.sort_unstable();
    lines(d, &order)
}

fn main() {
    let path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_else(|| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/fixtures/eval/samsum-test/results.txt"
            )
            .into()
        });
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let samples = parse(&text);
    println!("SAMSum test set: {} dialogues ({path})\n", samples.len());
    println!("| system | ROUGE-1 | ROUGE-2 | ROUGE-L | words per summary |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    type System = (&'static str, Box<dyn Fn(&Sample) -> String>);
    let systems: Vec<System> = vec![
        ("first 3 messages", Box::new(|s| first3(&s.dialogue))),
        ("3 longest messages", Box::new(|s| longest3(&s.dialogue))),
        (
            "plain TextRank, top 3",
            Box::new(|s| textrank3(&s.dialogue)),
        ),
        (
            "**chatctl offline engine**",
            Box::new(|s| offline::summary(&s.dialogue)),
        ),
        (
            "fine-tuned BART-large (shipped candidates; not ours)",
            Box::new(|s| s.candidate.clone()),
        ),
    ];
    for (name, system) in &systems {
        let (mut r1, mut r2, mut rl, mut words) = (0.0, 0.0, 0.0, 0usize);
        for s in &samples {
            let out = system(s);
            let sc = rouge::score(&out, &s.reference);
            r1 += sc.rouge1;
            r2 += sc.rouge2;
            rl += sc.rouge_l;
            words += rouge::tokens(&out).len();
        }
        let n = samples.len() as f64;
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.1} |",
            100.0 * r1 / n,
            100.0 * r2 / n,
            100.0 * rl / n,
            words as f64 / n
        );
    }

    // Speed: a digest of 10,000 messages made of the set's own dialogues, one after another,
    // every fifth message a reply in a thread.
    let t0 = chrono::DateTime::<chrono::Utc>::from_timestamp(1_600_000_000, 0).unwrap();
    let mut big: Vec<Message> = Vec::with_capacity(10_000);
    'fill: loop {
        for s in &samples {
            for m in &s.dialogue {
                let i = big.len();
                let mut m = m.clone();
                m.id = i.to_string();
                m.created_at = t0 + chrono::Duration::seconds(i as i64);
                if i % 5 == 4 {
                    m.parent = Some((i - i % 50).to_string());
                }
                big.push(m);
                if big.len() == 10_000 {
                    break 'fill;
                }
            }
        }
    }
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let d = offline::digest(&big);
        std::hint::black_box(d.markdown("bench"));
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "\noffline digest of 10,000 messages: median {:.0} ms of 5 runs (min {:.0}, max {:.0})",
        times[2], times[0], times[4]
    );
}

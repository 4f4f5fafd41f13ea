//! The same query language on PostgreSQL full-text search: the `search` tsvector column of
//! `public.chat` (`to_tsvector('english', text)`, GIN-indexed), ranked by `ts_rank`, snippets
//! by `ts_headline`. The baseline the index is measured against, and `--engine postgres`.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder, Row as _};
use uuid::Uuid;

use super::{Flag, Found, Hit, Plan, Scope};
use crate::db::Pool;
use crate::error::Result;

/// The plan PostgreSQL makes for [`search`]'s query of `plan` (as the service role): what
/// the search benchmark shows to prove the full-text index is used.
pub async fn explain(pool: &Pool, plan: &Plan, scope: &Scope, limit: usize) -> Result<Vec<String>> {
    let lines = query(plan, scope, limit, "explain (costs off) ")
        .build_query_scalar::<String>()
        .fetch_all(pool)
        .await?;
    Ok(lines)
}

pub async fn search(pool: &Pool, plan: &Plan, scope: &Scope, limit: usize) -> Result<Found> {
    let mut q = query(plan, scope, limit, "");
    // As a user: in a transaction that takes their role and claims (and is rolled back).
    // As the service role: the query alone, one round trip.
    let rows = match scope.as_user {
        Some(user) => {
            let mut tx = pool.begin().await?;
            super::act_as(&mut tx, user).await?;
            let rows = q.build().fetch_all(&mut *tx).await?;
            tx.rollback().await?;
            rows
        }
        None => q.build().fetch_all(pool).await?,
    };
    let mut hits = Vec::with_capacity(rows.len());
    for row in rows {
        let id: Uuid = row.try_get(0)?;
        let parent: Option<Uuid> = row.try_get(4)?;
        let replies: i32 = row.try_get(5)?;
        hits.push(Hit {
            id,
            channel_id: row.try_get(1)?,
            author_id: row.try_get(2)?,
            created_at: row.try_get::<DateTime<Utc>, _>(3)?,
            thread: parent.or((replies > 0).then_some(id)),
            score: row.try_get(6)?,
            snippet: row.try_get(7)?,
        });
    }
    Ok(Found {
        hits,
        channels: Vec::new(),
        total: None,
    })
}

/// The search query of `plan`, after `prefix` (`explain …`, or nothing).
fn query<'a>(
    plan: &'a Plan,
    scope: &Scope,
    limit: usize,
    prefix: &str,
) -> QueryBuilder<'a, Postgres> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!("{prefix}with q as (select "));
    let ranked = plan.ranked();
    let has_text = !plan.text.is_empty();
    if has_text {
        for (i, t) in plan.text.iter().enumerate() {
            if i > 0 {
                q.push(" && ");
            }
            if t.negated {
                q.push("!!");
            }
            q.push(if t.phrase {
                "phraseto_tsquery('english', "
            } else {
                "plainto_tsquery('english', "
            });
            q.push_bind(t.text.clone());
            q.push(")");
        }
    } else {
        q.push("null::tsquery");
    }
    q.push(" as tsq), hits as (select c.id, c.channel_id, c.user_id, c.created_at, c.parent_id, c.total_replies, c.message ->> 'text' as text, ");
    q.push(if ranked {
        "ts_rank(c.search, q.tsq)"
    } else {
        "0::real"
    });
    q.push(" as rank from public.chat c join public.channels ch on ch.id = c.channel_id, q where not c.is_deleted");
    if has_text {
        q.push(" and c.search @@ q.tsq");
    }
    if let Some(w) = scope.workspace {
        q.push(" and ch.workspace_id = ").push_bind(w);
    }
    for (negated, id) in &plan.authors {
        q.push(if *negated {
            " and c.user_id <> "
        } else {
            " and c.user_id = "
        });
        q.push_bind(*id);
    }
    for (negated, ids) in &plan.channels {
        q.push(if *negated {
            " and not c.channel_id = any("
        } else {
            " and c.channel_id = any("
        });
        q.push_bind(ids.clone()).push(")");
    }
    for (negated, id) in &plan.mentions {
        q.push(if *negated { " and not " } else { " and " });
        q.push("(c.message -> 'mentions') @> jsonb_build_array(")
            .push_bind(id.to_string())
            .push(")");
    }
    for (negated, flag) in &plan.flags {
        q.push(if *negated { " and not " } else { " and " });
        q.push(match flag {
            Flag::File => {
                "(coalesce(jsonb_array_length(c.message -> 'attachments'), 0) > 0 \
                 or exists (select 1 from public.attachments a where a.message_id = c.id))"
            }
            Flag::Link => "(c.message ->> 'text') ~* 'https?://'",
            Flag::Thread => "(c.parent_id is not null or c.total_replies > 0)",
        });
    }
    for (negated, words) in &plan.file_words {
        q.push(if *negated { " and not " } else { " and " });
        q.push(super::files::words_sql())
            .push(" @> ")
            .push_bind(words.clone());
    }
    for (negated, family) in &plan.file_types {
        q.push(if *negated { " and not " } else { " and " });
        q.push(format!(
            "exists (select 1 from {} f where lower(f.mime) like any(",
            super::files::FILES_OF_MESSAGE
        ))
        .push_bind(super::files::like_patterns(family))
        .push("))");
    }
    if let Some(t) = plan.since {
        q.push(" and c.created_at >= ").push_bind(t);
    }
    if let Some(t) = plan.until {
        q.push(" and c.created_at < ").push_bind(t);
    }
    q.push(" order by rank desc, c.created_at desc limit ")
        .push_bind(limit.max(1) as i64);
    q.push(") select h.id, h.channel_id, h.user_id, h.created_at, h.parent_id, h.total_replies, h.rank, ");
    if ranked {
        q.push("ts_headline('english', h.text, q.tsq, 'StartSel=**, StopSel=**, MaxWords=35, MinWords=15, MaxFragments=1')");
    } else {
        q.push("left(h.text, 200)");
    }
    q.push(" from hits h, q order by h.rank desc, h.created_at desc");
    q
}

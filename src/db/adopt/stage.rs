//! The staging of one outline table: which of its columns chatctl reads (and under which
//! former names), how each converts to chatctl's type without ever failing on a value, and
//! the staging table (`pg_temp.adopt_NAME`: where the project's row is (its ctid), the converted columns,
//! a `reject` reason) with the rules that fill that reason.

use std::collections::{BTreeSet, HashSet};

use sqlx::PgConnection;

use super::{Found, KEPT, TableReport};
use crate::db::quote_ident;
use crate::error::Result;
use crate::progress::Progress;

/// A chatctl column type an outline column converts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Want {
    Uuid,
    Text,
    Time,
    Bool,
    Json,
    Int,
}

impl Want {
    fn sql(self) -> &'static str {
        match self {
            Want::Uuid => "uuid",
            Want::Text => "text",
            Want::Time => "timestamptz",
            Want::Bool => "boolean",
            Want::Json => "jsonb",
            Want::Int => "bigint",
        }
    }
}

/// A column chatctl reads from the project's table.
struct Col {
    name: &'static str,
    want: Want,
    required: bool,
    /// chatctl's former names for it, which a project may carry.
    aliases: &'static [&'static str],
}

const fn col(name: &'static str, want: Want) -> Col {
    Col {
        name,
        want,
        required: false,
        aliases: &[],
    }
}

const fn req(name: &'static str, want: Want) -> Col {
    Col {
        name,
        want,
        required: true,
        aliases: &[],
    }
}

const fn alias(mut c: Col, aliases: &'static [&'static str]) -> Col {
    c.aliases = aliases;
    c
}

/// The columns read from each outline table: the outline's own, and the few of chatctl's a
/// project may have added (a username, a slug, a topic).
fn columns(table: &str) -> &'static [Col] {
    match table {
        "users" => USERS,
        "workspaces" => WORKSPACES,
        "channels" => CHANNELS,
        "shared_channels" => SHARED_CHANNELS,
        "members" => MEMBERS,
        "chat" => CHAT,
        "emojis" => EMOJIS,
        _ => &[],
    }
}

const USERS: &[Col] = &[
    req("id", Want::Uuid),
    alias(col("name", Want::Text), &["display_name"]),
    col("email", Want::Text),
    col("created_at", Want::Time),
    col("last_login", Want::Time),
    col("username", Want::Text),
    col("avatar_url", Want::Text),
];
const WORKSPACES: &[Col] = &[
    req("id", Want::Uuid),
    col("name", Want::Text),
    alias(col("channel_id", Want::Uuid), &["default_channel_id"]),
    col("created_at", Want::Time),
    col("slug", Want::Text),
];
const CHANNELS: &[Col] = &[
    req("id", Want::Uuid),
    col("name", Want::Text),
    col("description", Want::Text),
    col("created_at", Want::Time),
    col("is_private", Want::Bool),
    col("topic", Want::Text),
    col("workspace_id", Want::Uuid),
];
const SHARED_CHANNELS: &[Col] = &[
    req("channel_id", Want::Uuid),
    col("workspace_id", Want::Uuid),
    col("target_workspace_id", Want::Uuid),
    col("origin_workspace_id", Want::Uuid),
    col("name", Want::Text),
    col("topic", Want::Text),
    col("is_private", Want::Bool),
];
const MEMBERS: &[Col] = &[
    col("id", Want::Uuid),
    req("user_id", Want::Uuid),
    req("channel_id", Want::Uuid),
    alias(col("created_at", Want::Time), &["joined_at"]),
];
const CHAT: &[Col] = &[
    req("id", Want::Uuid),
    req("user_id", Want::Uuid),
    req("channel_id", Want::Uuid),
    req("message", Want::Json),
    col("total_replies", Want::Int),
    col("is_deleted", Want::Bool),
    alias(col("modified_at", Want::Time), &["edited_at"]),
    col("created_at", Want::Time),
    col("parent_id", Want::Uuid),
];
const EMOJIS: &[Col] = &[
    col("id", Want::Uuid),
    req("user_id", Want::Uuid),
    alias(req("chat_id", Want::Uuid), &["message_id"]),
    alias(req("emoji_uni_code", Want::Text), &["emoji"]),
    col("created_at", Want::Time),
];

/// The project's column for `c` (its name, or a former chatctl name) and its type.
fn source_of<'a>(f: &'a Found, c: &Col) -> Option<(&'a str, &'a str)> {
    std::iter::once(c.name)
        .chain(c.aliases.iter().copied())
        .find_map(|n| f.columns.get_key_value(n))
        .map(|(n, t)| (n.as_str(), t.as_str()))
}

/// The SQL that converts column `name` (of type `typ`, on row `s`) to `want`, never failing
/// on a value (a text that is not a UUID becomes NULL, and its row is rejected for it);
/// `None` when chatctl cannot convert that type.
fn convert(name: &str, typ: &str, want: Want) -> Option<String> {
    let c = format!("s.{}", quote_ident(name));
    const TEXTS: &[&str] = &["text", "varchar", "bpchar", "citext", "name"];
    let text = TEXTS.contains(&typ);
    Some(match want {
        Want::Uuid if typ == "uuid" => c,
        Want::Uuid if text => format!(
            "case when btrim({c}::text) ~* '^\\{{?[0-9a-f]{{8}}(-?[0-9a-f]{{4}}){{3}}-?[0-9a-f]{{12}}\\}}?$'
                  then btrim({c}::text)::uuid end"
        ),
        Want::Text if text => format!("{c}::text"),
        Want::Time if matches!(typ, "timestamptz" | "timestamp" | "date") => format!("{c}::timestamptz"),
        Want::Bool if typ == "bool" => c,
        Want::Json if typ == "jsonb" => c,
        Want::Json if typ == "json" => format!("{c}::jsonb"),
        // A message kept as plain text is its text.
        Want::Json if text => format!("jsonb_build_object('text', {c}::text)"),
        Want::Int if matches!(typ, "int2" | "int4" | "int8") => format!("{c}::bigint"),
        _ => return None,
    })
}

/// What keeps `f` from being adopted column-wise: a required column missing, a type chatctl
/// cannot convert.
pub(super) fn column_problems(f: &Found) -> Vec<String> {
    let mut problems = Vec::new();
    for c in columns(f.name) {
        match source_of(f, c) {
            None if c.required => problems.push(format!(
                "public.{} has no column {}: chatctl needs it",
                f.name, c.name
            )),
            Some((name, typ)) if convert(name, typ, c.want).is_none() => problems.push(format!(
                "public.{}.{name} is of type {typ}: chatctl keeps it as {} and cannot convert it (alter the column first)",
                f.name,
                c.want.sql()
            )),
            _ => {}
        }
    }
    if f.name == "shared_channels"
        && !f.columns.contains_key("workspace_id")
        && !f.columns.contains_key("target_workspace_id")
    {
        problems.push(
            "public.shared_channels has neither workspace_id nor target_workspace_id: nothing says where a channel is shared"
                .into(),
        );
    }
    problems
}

/// The chatctl columns read from `f` (under their chatctl names).
pub(super) fn read_columns(f: &Found) -> Vec<String> {
    columns(f.name)
        .iter()
        .filter(|c| source_of(f, c).is_some())
        .map(|c| c.name.to_string())
        .collect()
}

/// One table's staging table and what is known of it.
pub(super) struct Stage {
    pub(super) table: &'static str,
    /// `pg_temp.adopt_NAME`.
    pub(super) t: String,
    /// The chatctl columns the project's table has.
    pub(super) has: BTreeSet<&'static str>,
    pub(super) report: TableReport,
}

impl Stage {
    /// Stages the project's `table` (an empty stage when it has none), with `extra` columns.
    pub(super) async fn new(
        conn: &mut PgConnection,
        found: &[Found],
        table: &'static str,
        extra: &str,
    ) -> Result<Stage> {
        let f = found.iter().find(|f| f.name == table);
        let t = format!("pg_temp.adopt_{table}");
        // The project's row itself is read again (by its ctid: the kept table does not change
        // during the adoption) only when it is rejected.
        let mut defs = vec!["seq bigint not null".to_string(), "src tid".into()];
        let mut exprs = vec!["row_number() over ()".to_string(), "s.ctid".into()];
        let mut has = BTreeSet::new();
        let mut report = TableReport {
            table: table.into(),
            found: f.is_some(),
            ..TableReport::default()
        };
        for c in columns(table) {
            defs.push(format!("{} {}", c.name, c.want.sql()));
            match f.and_then(|f| source_of(f, c)) {
                Some((name, typ)) => {
                    has.insert(c.name);
                    if name != c.name {
                        report.renamed.push(format!("{name} → {}", c.name));
                    }
                    exprs.push(convert(name, typ, c.want).expect("column_problems checked it"));
                }
                None => exprs.push(format!("null::{}", c.want.sql())),
            }
        }
        if let Some(f) = f {
            let read: HashSet<&str> = columns(table)
                .iter()
                .filter_map(|c| source_of(f, c).map(|(n, _)| n))
                .collect();
            report.extra_columns = f
                .columns
                .keys()
                .filter(|k| !read.contains(k.as_str()))
                .cloned()
                .collect();
        }
        defs.push("reject text".into());
        if !extra.is_empty() {
            defs.push(extra.into());
        }
        sqlx::raw_sql(&format!(
            "create temp table adopt_{table} ({}) on commit drop",
            defs.join(", ")
        ))
        .execute(&mut *conn)
        .await?;
        if f.is_some() {
            let names: Vec<&str> = std::iter::once("seq")
                .chain(std::iter::once("src"))
                .chain(columns(table).iter().map(|c| c.name))
                .collect();
            sqlx::raw_sql(&format!(
                "insert into {t} ({}) select {} from {KEPT}.{} s",
                names.join(", "),
                exprs.join(", "),
                quote_ident(table)
            ))
            .execute(&mut *conn)
            .await?;
        }
        sqlx::raw_sql(&format!("create index on {t} (seq); analyze {t}"))
            .execute(&mut *conn)
            .await?;
        Ok(Stage {
            table,
            t,
            has,
            report,
        })
    }

    /// Rejects, for `reason`, every row not yet rejected where `cond` holds (on row `s`).
    pub(super) async fn reject(
        &self,
        conn: &mut PgConnection,
        reason: &str,
        cond: &str,
    ) -> Result<u64> {
        let n = sqlx::query(&format!(
            "update {} s set reject = $1 where s.reject is null and ({cond})",
            self.t
        ))
        .bind(reason)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        Ok(n)
    }

    /// Rejects every row but the first (by `order`) of those with the same `key`.
    pub(super) async fn reject_duplicates(
        &self,
        conn: &mut PgConnection,
        key: &str,
        order: &str,
        reason: &str,
    ) -> Result<u64> {
        let n = sqlx::query(&format!(
            "update {t} s set reject = $1
               from (select seq, row_number() over (partition by {key} order by {order}) as r
                       from {t} where reject is null and ({key}) is not null) d
              where d.seq = s.seq and d.r > 1",
            t = self.t
        ))
        .bind(reason)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        Ok(n)
    }

    /// Rejects rows whose `col` names no row of chatctl's `target` table: "`what` was left
    /// out" when the project's row is among `target`'s rejects, else "`what` is missing".
    pub(super) async fn refers(
        &self,
        conn: &mut PgConnection,
        col: &str,
        target: &str,
        what: &str,
    ) -> Result<()> {
        let absent = format!("not exists (select 1 from public.{target} x where x.id = s.{col})");
        self.reject(
            conn,
            &format!("{what} was left out (see its own reject)"),
            &format!(
                "s.{col} is not null and {absent}
                 and exists (select 1 from pg_temp.adopt_{target} x where x.id = s.{col} and x.reject is not null)"
            ),
        )
        .await?;
        self.reject(
            conn,
            &format!("{what} is missing"),
            &format!("s.{col} is null or {absent}"),
        )
        .await?;
        Ok(())
    }

    /// Sets `set` on the kept rows where `cond` holds; notes `what (N)` when any changed.
    pub(super) async fn backfill(
        &mut self,
        conn: &mut PgConnection,
        set: &str,
        cond: &str,
        what: &str,
    ) -> Result<u64> {
        let n = sqlx::query(&format!(
            "update {} s set {set} where s.reject is null and ({cond})",
            self.t
        ))
        .execute(&mut *conn)
        .await?
        .rows_affected();
        self.note(what, n);
        Ok(n)
    }

    /// Notes `what (N)`: how many kept rows whose project's `column` it had differ from the
    /// row copied into `table` (joined as `x` by id) by `differs`.
    pub(super) async fn differing(
        &mut self,
        conn: &mut PgConnection,
        column: &str,
        table: &str,
        differs: &str,
        what: &str,
    ) -> Result<()> {
        if !self.has.contains(column) {
            return Ok(());
        }
        let n = count(
            conn,
            &format!(
                "select count(*) from {} s join {table} x on x.id = s.id where s.reject is null and {differs}",
                self.t
            ),
        )
        .await?;
        self.note(what, n);
        Ok(())
    }

    pub(super) fn note(&mut self, what: &str, n: u64) {
        if n > 0 {
            self.report.backfilled.push(format!("{what} ({n})"));
        }
    }

    /// Writes names chosen in Rust (`seq`, value) into `column`; returns how many changed.
    pub(super) async fn write(
        &self,
        conn: &mut PgConnection,
        column: &str,
        values: &[(i64, String)],
    ) -> Result<u64> {
        let seqs: Vec<i64> = values.iter().map(|v| v.0).collect();
        let names: Vec<&str> = values.iter().map(|v| v.1.as_str()).collect();
        let n = sqlx::query(&format!(
            "update {} s set {column} = v.x from unnest($1::bigint[], $2::text[]) v(seq, x)
              where s.seq = v.seq and s.{column} is distinct from v.x",
            self.t
        ))
        .bind(&seqs)
        .bind(&names)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        Ok(n)
    }

    /// Moves the rejected rows to `chatctl.adopt_rejects` and counts what was kept.
    pub(super) async fn finish(
        mut self,
        conn: &mut PgConnection,
        bar: &Progress,
    ) -> Result<TableReport> {
        if self.report.found {
            sqlx::query(&format!(
                "insert into chatctl.adopt_rejects (table_name, row_id, reason, row)
                 select $1, to_jsonb(k) ->> 'id', s.reject, to_jsonb(k)
                   from {} s join {KEPT}.{} k on k.ctid = s.src
                  where s.reject is not null order by s.seq",
                self.t,
                quote_ident(self.table)
            ))
            .bind(self.table)
            .execute(&mut *conn)
            .await?;
        }
        let (rows, rejected): (i64, i64) =
            sqlx::query_as(&format!("select count(*), count(reject) from {}", self.t))
                .fetch_one(&mut *conn)
                .await?;
        self.report.rows = rows;
        self.report.rejected = rejected;
        self.report.kept = rows - rejected;
        bar.advance(rows as u64);
        Ok(self.report)
    }
}

/// Rejects rows without a usable id, and every row but the first with the same one.
pub(super) async fn check_ids(conn: &mut PgConnection, s: &Stage, order: &str) -> Result<()> {
    if columns(s.table)
        .iter()
        .any(|c| c.name == "id" && c.required)
    {
        s.reject(conn, "id is not a UUID", "s.id is null").await?;
    }
    s.reject_duplicates(conn, "id", order, "a second row with the same id")
        .await?;
    Ok(())
}

pub(super) async fn count(conn: &mut PgConnection, sql: &str) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut *conn).await?;
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_converts_to_uuid_only_when_it_is_one_and_odd_types_are_refused() {
        assert_eq!(
            convert("id", "uuid", Want::Uuid).as_deref(),
            Some("s.\"id\"")
        );
        assert!(
            convert("id", "varchar", Want::Uuid)
                .unwrap()
                .contains("case when")
        );
        assert!(convert("id", "int8", Want::Uuid).is_none());
        assert!(convert("created_at", "int4", Want::Time).is_none());
        assert!(
            convert("message", "text", Want::Json)
                .unwrap()
                .starts_with("jsonb_build_object")
        );
    }
}

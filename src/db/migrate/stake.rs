//! What reverting migrations destroys: the tables their down files drop, and the rows in
//! them now, for `migrate down` to name before it asks.

use serde::Serialize;
use sqlx::PgConnection;

use super::Step;
use crate::error::Result;

/// A table a down migration drops, and how many rows it holds now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dropped {
    pub table: String,
    pub rows: i64,
}

/// The tables `sql` drops (`drop table [if exists] a, b [cascade];`), as written.
pub fn dropped_tables(sql: &str) -> Vec<String> {
    static DROP: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"(?is)\bdrop\s+table\s+(?:if\s+exists\s+)?([^;]+?)(?:\s+(?:cascade|restrict))?\s*;",
        )
        .expect("a valid regex")
    });
    DROP.captures_iter(sql)
        .flat_map(|c| {
            c[1].split(',')
                .map(|t| t.trim().replace('"', ""))
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The tables the steps of a dry run drop that exist now, with their rows, in the order
/// the steps drop them.
pub async fn dropped(conn: &mut PgConnection, steps: &[Step]) -> Result<Vec<Dropped>> {
    let mut out: Vec<Dropped> = Vec::new();
    for table in steps
        .iter()
        .filter_map(|s| s.sql.as_deref())
        .flat_map(dropped_tables)
    {
        if out.iter().any(|d| d.table == table) {
            continue;
        }
        let exists: bool = sqlx::query_scalar("select to_regclass($1) is not null")
            .bind(&table)
            .fetch_one(&mut *conn)
            .await?;
        if !exists {
            continue;
        }
        let quoted: Vec<String> = table.split('.').map(crate::db::quote_ident).collect();
        let rows: i64 = sqlx::query_scalar(&format!("select count(*) from {}", quoted.join(".")))
            .fetch_one(&mut *conn)
            .await?;
        out.push(Dropped { table, rows });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_read_from_down_files() {
        let sql = "drop table chatctl.audit_log;\nDROP TABLE IF EXISTS public.a, \"public\".\"b\" CASCADE;\n\
                   -- a comment\ndrop index x;\nalter table t drop column c;";
        assert_eq!(
            dropped_tables(sql),
            ["chatctl.audit_log", "public.a", "public.b"]
        );
        let bootstrap = include_str!("../../../migrations/0002_chat_schema.down.sql");
        assert!(dropped_tables(bootstrap).contains(&"public.chat".to_owned()));
    }
}

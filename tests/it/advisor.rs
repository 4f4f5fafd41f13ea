//! The rules of Supabase's database advisor (splinter: the security and performance lints the
//! dashboard runs) that the migrations keep, one test each, on a migrated database. Each
//! query finds what would break its rule: it finds nothing in the migrated schema, and finds
//! the offence when the test commits one (so the rule itself is known to work).

use crate::support::TestDb;

/// The schemas the advisor leaves alone (Supabase's and Postgres's own).
const SYSTEM: &str = "('pg_catalog', 'information_schema', 'auth', 'storage', 'realtime', 'extensions',
    'graphql', 'graphql_public', 'net', 'pgsodium', 'vault', 'supabase_functions', 'supabase_migrations',
    'pg_toast', 'cron', 'pgbouncer')";

/// Asserts `sql` finds nothing, then commits `offence` and asserts it is found.
async fn rule(what: &str, sql: &str, offence: &str) {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let sql = sql.replace("{SYSTEM}", SYSTEM);
    let found: Vec<String> = sqlx::query_scalar(&sql).fetch_all(&mut c).await.unwrap();
    assert!(found.is_empty(), "{what}:\n  {}", found.join("\n  "));
    sqlx::raw_sql(offence).execute(&mut c).await.unwrap();
    let found: Vec<String> = sqlx::query_scalar(&sql).fetch_all(&mut c).await.unwrap();
    assert!(!found.is_empty(), "the rule missed: {offence}");
}

// 0003 auth_rls_initplan: `auth.uid()` in a policy is evaluated once per query only as
// `(select auth.uid())`; bare, it runs for every row.
#[tokio::test]
async fn policies_read_the_caller_once_per_query() {
    rule(
        "policies calling auth functions or current_setting() per row",
        "select format('%s.%s %s', schemaname, tablename, policyname) from pg_policies
          cross join lateral unnest(array[qual, with_check]) as clause(text)
          where schemaname not in {SYSTEM}
            and exists (select 1 from unnest(array['auth.uid()', 'auth.jwt()', 'auth.role()', 'auth.email()',
                                                   'current_setting(']) f
                         where clause.text like '%' || f || '%'
                           and lower(clause.text) not like '%select ' || f || '%')",
        "create policy per_row on public.user_status for update to authenticated
             using ((select auth.uid()) is not null) with check (user_id = auth.uid())",
    )
    .await;
}

// 0011 function_search_path_mutable: a function whose search_path the caller sets can be
// made to call the caller's objects.
#[tokio::test]
async fn functions_have_a_fixed_search_path() {
    rule(
        "functions without `set search_path`",
        "select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace
          where n.nspname not in {SYSTEM} and n.nspname not like 'pg\\_%'
            and not exists (select 1 from unnest(coalesce(p.proconfig, '{}')) c where c like 'search_path=%')",
        "create function chat_private.loose() returns int language sql as 'select 1'",
    )
    .await;
}

// 0001 unindexed_foreign_keys: deleting a referenced row scans the referencing table.
#[tokio::test]
async fn every_foreign_key_has_a_covering_index() {
    rule(
        "foreign keys without an index leading with their columns",
        "select format('%s %s', c.conrelid::regclass, c.conname) from pg_constraint c
           join pg_class t on t.oid = c.conrelid join pg_namespace n on n.oid = t.relnamespace
          where c.contype = 'f' and n.nspname not in {SYSTEM}
            and not exists (select 1 from pg_index i where i.indrelid = c.conrelid and i.indisvalid
                             and (string_to_array(i.indkey::text, ' ')::smallint[])[1:array_length(c.conkey, 1)] = c.conkey)",
        "alter table public.attachments add column uploaded_by uuid references public.users (id)",
    )
    .await;
}

// 0006 multiple_permissive_policies: every permissive policy of a command is evaluated.
#[tokio::test]
async fn one_permissive_policy_per_table_role_and_command() {
    rule(
        "tables with several permissive policies for one role and command",
        "select format('%s %s %s', p.polrelid::regclass, r.rolname, cmd) from pg_policy p
           join pg_class c on c.oid = p.polrelid join pg_namespace n on n.oid = c.relnamespace
           join pg_roles r on p.polroles @> array[r.oid] or p.polroles = array[0::oid]
          cross join lateral unnest(case p.polcmd when 'r' then array['SELECT'] when 'a' then array['INSERT']
               when 'w' then array['UPDATE'] when 'd' then array['DELETE']
               else array['SELECT', 'INSERT', 'UPDATE', 'DELETE'] end) cmd
          where p.polpermissive and n.nspname not in {SYSTEM} and not r.rolbypassrls
          group by 1 having count(*) > 1",
        "create policy second_look on public.chat for select to authenticated using (false)",
    )
    .await;
}

// 0013 rls_disabled_in_public and 0007 policy_exists_rls_disabled: the API reaches every
// table of `public`; without row level security it reads and writes every row.
#[tokio::test]
async fn row_level_security_is_on_for_every_table_the_api_reaches() {
    rule(
        "tables of public without row level security",
        "select c.oid::regclass::text from pg_class c
          where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p') and not c.relrowsecurity
         union all
         select format('%s (has policies)', c.oid::regclass) from pg_class c
          where c.relrowsecurity = false and exists (select 1 from pg_policy p where p.polrelid = c.oid)",
        "create table public.notes (id int primary key)",
    )
    .await;
}

// 0028/0029 anon/authenticated_security_definer_function_executable: a SECURITY DEFINER
// function in an exposed schema is an RPC that bypasses every policy.
#[tokio::test]
async fn no_function_the_api_exposes_bypasses_the_policies() {
    rule(
        "SECURITY DEFINER functions in public executable by anon or authenticated",
        "select p.oid::regprocedure::text from pg_proc p
          where p.pronamespace = 'public'::regnamespace and p.prosecdef
            and (has_function_privilege('anon', p.oid, 'execute')
                 or has_function_privilege('authenticated', p.oid, 'execute'))",
        "create function public.everything() returns bigint language sql security definer
             set search_path = '' as 'select count(*) from public.chat'",
    )
    .await;
}

// 0010 security_definer_view, 0002 auth_users_exposed, 0016 materialized_view_in_api: a
// view in public runs as its owner (past every policy) unless it is security_invoker.
#[tokio::test]
async fn no_view_in_public_runs_as_its_owner() {
    rule(
        "views of public that are not security_invoker, and materialized views",
        "select c.oid::regclass::text from pg_class c
          where c.relnamespace = 'public'::regnamespace
            and (c.relkind = 'm'
                 or (c.relkind = 'v' and not coalesce(c.reloptions @> array['security_invoker=true'], false)))",
        "create view public.all_messages as select * from public.chat",
    )
    .await;
}

// 0015 rls_references_user_metadata: user_metadata is editable by the user.
// 0024 rls_policy_always_true: a write policy of `true` lets anyone write.
#[tokio::test]
async fn policies_trust_neither_user_metadata_nor_everyone() {
    rule(
        "policies reading user_metadata, or writing for everyone",
        "select format('%s.%s %s', schemaname, tablename, policyname) from pg_policies
          where schemaname not in {SYSTEM}
            and (coalesce(qual, '') || coalesce(with_check, '') like '%user_metadata%'
                 or (cmd <> 'SELECT' and (qual = 'true' or with_check = 'true')))",
        "create policy open_door on public.emojis for update to authenticated using (true)",
    )
    .await;
}

// 0009 duplicate_index: the same index twice costs every write twice.
#[tokio::test]
async fn no_index_is_a_duplicate() {
    rule(
        "duplicate indexes",
        "select string_agg(i.indexrelid::regclass::text, ' = ') from pg_index i
           join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace
          where n.nspname not in {SYSTEM}
          group by i.indrelid, i.indkey::text, coalesce(pg_get_expr(i.indexprs, i.indrelid), ''),
                   coalesce(pg_get_expr(i.indpred, i.indrelid), ''), i.indclass::text
         having count(*) > 1",
        "create index chat_thread_again on public.chat (parent_id, created_at) where parent_id is not null",
    )
    .await;
}

// 0014 extension_in_public and 0021 fkey_to_auth_unique: extensions out of the API's
// schema; foreign keys into auth reference a primary key, never a unique column Supabase
// may change.
#[tokio::test]
async fn no_extension_in_public_and_auth_is_referenced_by_primary_key() {
    rule(
        "extensions in public, foreign keys to a non-primary key of auth",
        "select format('extension %s', extname) from pg_extension where extnamespace = 'public'::regnamespace
         union all
         select format('%s %s', c.conrelid::regclass, c.conname) from pg_constraint c
           join pg_class t on t.oid = c.confrelid join pg_namespace n on n.oid = t.relnamespace
          where c.contype = 'f' and n.nspname = 'auth'
            and not exists (select 1 from pg_constraint k where k.conrelid = c.confrelid and k.contype = 'p'
                             and k.conkey = c.confkey)",
        "alter table public.users add column phone text references auth.users (phone)",
    )
    .await;
}

// Beyond the advisor: no SECURITY DEFINER function reveals what its caller could not read.
// The ones a signed-in session may execute (outside the API's schema, but callable in SQL)
// answer only about the caller: their own channels and workspaces, whether they share a
// channel with someone, the addresses they may see. A new one fails here until reviewed.
#[tokio::test]
async fn the_definer_functions_a_client_may_call_are_the_reviewed_ones() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    let callable: Vec<String> = sqlx::query_scalar(
        "select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace
          where p.prosecdef and n.nspname not in ('auth', 'storage', 'pg_catalog', 'information_schema')
            and p.prorettype <> 'trigger'::regtype
            and (has_function_privilege('authenticated', p.oid, 'execute')
                 or has_function_privilege('anon', p.oid, 'execute'))
          order by 1",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let reviewed = [
        "chat_private.active_uid()",
        "chat_private.my_admin_workspaces()",
        "chat_private.my_channel_folders()",
        "chat_private.my_channels()",
        "chat_private.my_folder_workspaces()",
        "chat_private.my_moderated_channels()",
        "chat_private.my_owned_workspaces()",
        "chat_private.my_postable_channels()",
        "chat_private.my_reading_workspaces()",
        "chat_private.my_shared_channels()",
        "chat_private.my_workspaces()",
        // The channel of a Storage object's path, in chatctl's buckets only (migration 0015).
        "chat_private.object_channel(text,text)",
        "chat_private.shares_channel_with(uuid)",
        // chatctl's buckets (migration 0015), read by the Storage policies once per query.
        "chat_private.storage_bucket_ids()",
        "chat_private.visible_emails(uuid[])",
    ];
    assert_eq!(callable, reviewed);
}

// 0025 public_bucket_allows_listing: a public bucket's files are downloaded by URL; a broad
// SELECT policy on `storage.objects` also lets anyone list them all. chatctl's policies on
// Storage read the caller once per query (0003, which the rules above check for `public`)
// and never reach a public bucket's objects broadly, whatever buckets the spec declares.
#[tokio::test]
async fn storage_policies_list_no_public_bucket_and_read_the_caller_once() {
    let db = TestDb::new().await;
    let mut c = db.conn().await;
    sqlx::raw_sql(
        "insert into storage.buckets (id, name, public) values ('avatars', 'avatars', true);
         insert into chatctl.storage_buckets (bucket_id) values ('avatars');",
    )
    .execute(&mut c)
    .await
    .unwrap();
    // Splinter's own test of a policy's clause, on the buckets marked public.
    let listing = "select p.policyname::text from storage.buckets b
          join pg_policies p on p.schemaname = 'storage' and p.tablename = 'objects'
           and p.cmd in ('SELECT', 'ALL') and p.permissive = 'PERMISSIVE'
           and p.roles && array['public'::name, 'anon'::name, 'authenticated'::name]
         where b.public
           and (p.qual is null
                or replace(replace(replace(lower(p.qual), ' ', ''), E'\\n', ''), E'\\t', '')
                   in ('true', '(true)', '1=1', '(1=1)')
                or p.qual ~* ('\\A\\s*\\(*\\s*bucket_id\\s*=\\s*''' || b.id || '''(\\s*::\\s*[[:alnum:]_\\.]+)?\\s*\\)*\\s*\\Z'))";
    let found: Vec<String> = sqlx::query_scalar(listing).fetch_all(&mut c).await.unwrap();
    assert!(found.is_empty(), "{found:?}");
    let per_row: Vec<String> = sqlx::query_scalar(
        "select policyname::text from pg_policies
          cross join lateral unnest(array[qual, with_check]) as clause(text)
          where schemaname = 'storage' and clause.text like '%auth.uid()%'
            and lower(clause.text) not like '%select auth.uid()%'",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert!(per_row.is_empty(), "{per_row:?}");
    let mine: i64 = sqlx::query_scalar(
        "select count(*) from pg_policies where schemaname = 'storage' and policyname like 'chatctl\\_%'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(mine, 4, "select, insert, update, delete");
    sqlx::raw_sql(
        "create policy everyone_lists on storage.objects for select to anon using (bucket_id = 'avatars')",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let found: Vec<String> = sqlx::query_scalar(listing).fetch_all(&mut c).await.unwrap();
    assert_eq!(found, ["everyone_lists"], "the rule missed the offence");
}

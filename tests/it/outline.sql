-- The product outline's tables as a Supabase project made them: the columns of the
-- product's design, reactions without an id, messages with a column chatctl has no place
-- for, no foreign keys (so bad rows got in), no row level security, the chat table in the
-- Realtime publication. Read by the `migrate adopt` tests (tests/it/adopt.rs) and its
-- benchmark (benches/adopt.rs). Needs schema auth and the publication (migration 0001).
create table public.users (id uuid primary key, name text, email text, created_at timestamptz default now(), last_login timestamptz);
create table public.workspaces (id uuid primary key, name text, channel_id uuid, created_at timestamptz default now());
create table public.channels (id uuid primary key, name text, description text, created_at timestamptz default now(), is_private boolean default false);
create table public.members (id uuid primary key default gen_random_uuid(), user_id uuid, channel_id uuid, created_at timestamptz default now());
create table public.shared_channels (channel_id uuid, workspace_id uuid, target_workspace_id uuid, origin_workspace_id uuid, name text, topic text, is_private boolean);
create table public.chat (id uuid primary key, user_id uuid, channel_id uuid, message jsonb, total_replies int default 0,
                          is_deleted boolean default false, modified_at timestamptz, created_at timestamptz default now(),
                          parent_id uuid, pinned boolean default false);
create table public.emojis (user_id uuid, chat_id uuid, emoji_uni_code text);
alter publication supabase_realtime add table public.chat;

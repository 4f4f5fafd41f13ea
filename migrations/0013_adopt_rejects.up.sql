-- `chatctl migrate adopt` takes over a project whose tables were made from the product's
-- outline. A row that breaks one of chatctl's rules (a reply whose parent is missing, an
-- emoji on a deleted message, a second membership of the same person in the same channel)
-- is not dropped: it is left out of the adopted table and kept here, whole, with the reason.
-- Operators read it with the service role; no client reaches schema chatctl.
create table chatctl.adopt_rejects (
    id bigint generated always as identity primary key,
    adopted_at timestamptz not null default now(),
    table_name text not null,
    row_id text,
    reason text not null,
    row jsonb not null
);
create index adopt_rejects_table_idx on chatctl.adopt_rejects (table_name, reason);

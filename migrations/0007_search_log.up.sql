-- The search index's change log. The index (a tantivy directory on each machine that runs
-- chatctl) is a cache of the database; an incremental reindex applies what changed since
-- the watermark stored in the index's own last commit.
--
-- A cursor on time (updated_at, created_at) skips rows committed out of order: now() is the
-- time a transaction started, so a long transaction commits rows older than the cursor that
-- has already passed them. A cursor on a sequence has the same flaw (numbers are taken in
-- one order and committed in another). So every change is logged with the 64-bit id of the
-- transaction that made it, and the watermark is the xmin of the snapshot the last run read
-- with: every transaction below it had finished (committed or aborted) when that run read,
-- so its changes were seen; everything at or above it is read again. Re-reading is harmless
-- (documents are replaced by id); missing is impossible.
--
-- One row per changed message or channel, written by statement-level triggers over
-- transition tables (one INSERT per statement, so a COPY of a million rows costs one pass).
-- Entries older than the retention are pruned; `horizon` is then one past the newest pruned
-- transaction, and an index whose watermark is below it is rebuilt in full.
create table chatctl.search_log (
    xid xid8 not null default pg_current_xact_id(),
    at timestamptz not null default now(),
    kind "char" not null check (kind in ('m', 'c')),
    id uuid not null
);
create index search_log_xid_idx on chatctl.search_log (xid);
create index search_log_at_idx on chatctl.search_log (at);

create table chatctl.search_state (
    singleton boolean primary key default true check (singleton),
    horizon xid8 not null default '0'
);
insert into chatctl.search_state default values;

create function chat_private.search_log_new_messages() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    insert into chatctl.search_log (kind, id) select 'm', id from new_rows;
    return null;
end
$$;
create function chat_private.search_log_old_messages() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    insert into chatctl.search_log (kind, id) select 'm', id from old_rows;
    return null;
end
$$;
create function chat_private.search_log_new_attachments() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    insert into chatctl.search_log (kind, id) select distinct 'm', message_id from new_rows;
    return null;
end
$$;
create function chat_private.search_log_old_attachments() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    insert into chatctl.search_log (kind, id) select distinct 'm', message_id from old_rows;
    return null;
end
$$;
create function chat_private.search_log_new_channels() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    insert into chatctl.search_log (kind, id) select 'c', id from new_rows;
    return null;
end
$$;
create function chat_private.search_log_old_channels() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    insert into chatctl.search_log (kind, id) select 'c', id from old_rows;
    return null;
end
$$;
revoke all on function chat_private.search_log_new_messages(), chat_private.search_log_old_messages(),
    chat_private.search_log_new_attachments(), chat_private.search_log_old_attachments(),
    chat_private.search_log_new_channels(), chat_private.search_log_old_channels() from public;

-- A trigger with transition tables takes one event, hence one trigger per event.
create trigger chat_search_insert after insert on public.chat
    referencing new table as new_rows
    for each statement execute function chat_private.search_log_new_messages();
create trigger chat_search_update after update on public.chat
    referencing new table as new_rows
    for each statement execute function chat_private.search_log_new_messages();
create trigger chat_search_delete after delete on public.chat
    referencing old table as old_rows
    for each statement execute function chat_private.search_log_old_messages();
create trigger attachments_search_insert after insert on public.attachments
    referencing new table as new_rows
    for each statement execute function chat_private.search_log_new_attachments();
create trigger attachments_search_delete after delete on public.attachments
    referencing old table as old_rows
    for each statement execute function chat_private.search_log_old_attachments();
create trigger channels_search_insert after insert on public.channels
    referencing new table as new_rows
    for each statement execute function chat_private.search_log_new_channels();
create trigger channels_search_update after update on public.channels
    referencing new table as new_rows
    for each statement execute function chat_private.search_log_new_channels();
create trigger channels_search_delete after delete on public.channels
    referencing old table as old_rows
    for each statement execute function chat_private.search_log_old_channels();

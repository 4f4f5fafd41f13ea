-- What importing and deactivating people needs.
--
-- * Supabase Auth's own indexes on auth.users (the token indexes and is_anonymous), where
--   the bootstrap made the table: a bulk import must be measured against the indexes a
--   hosted project has, and the tokens' partial unique indexes are what make `''` (never
--   NULL) matter.
-- * A deactivated person (`public.users.deactivated_at`) keeps their memberships (so
--   reactivating gives them back) and their messages, but reaches nothing through them:
--   every set of the caller's channels and workspaces is empty for them, so row level
--   security, and Realtime which checks it, show them no channel. Their auth user is also
--   banned (`banned_until`), so Supabase Auth issues them no new token.

do $bootstrap$
begin
    if exists (select 1 from chatctl.bootstrap_objects where kind = 'table' and name = 'auth.users') then
        create unique index if not exists confirmation_token_idx on auth.users (confirmation_token)
            where confirmation_token !~ '^[0-9 ]*$';
        create unique index if not exists recovery_token_idx on auth.users (recovery_token)
            where recovery_token !~ '^[0-9 ]*$';
        create unique index if not exists email_change_token_current_idx on auth.users (email_change_token_current)
            where email_change_token_current !~ '^[0-9 ]*$';
        create unique index if not exists email_change_token_new_idx on auth.users (email_change_token_new)
            where email_change_token_new !~ '^[0-9 ]*$';
        create unique index if not exists reauthentication_token_idx on auth.users (reauthentication_token)
            where reauthentication_token !~ '^[0-9 ]*$';
        create index if not exists users_is_anonymous_idx on auth.users (is_anonymous);
        insert into chatctl.bootstrap_objects (kind, name) values
            ('index', 'auth.confirmation_token_idx'), ('index', 'auth.recovery_token_idx'),
            ('index', 'auth.email_change_token_current_idx'), ('index', 'auth.email_change_token_new_idx'),
            ('index', 'auth.reauthentication_token_idx'), ('index', 'auth.users_is_anonymous_idx')
        on conflict do nothing;
    end if;
end
$bootstrap$;

-- The caller, when their profile is active: null for a deactivated person (and for anyone
-- without a profile, who is a member of nothing anyway).
create function chat_private.active_uid() returns uuid
language sql stable security definer set search_path = '' as $$
    select u.id from public.users u where u.id = auth.uid() and u.deactivated_at is null
$$;
revoke all on function chat_private.active_uid() from public, anon;
grant execute on function chat_private.active_uid() to authenticated, service_role;

-- The caller's sets, as in 0009, of the active caller only.
create or replace function chat_private.my_channels() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.channel_id from public.members m where m.user_id = chat_private.active_uid());
end
$$;

-- Channels the caller may post in: a member, not archived.
create or replace function chat_private.my_postable_channels() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.channel_id from public.members m join public.channels c on c.id = m.channel_id
                  where m.user_id = chat_private.active_uid() and c.archived_at is null);
end
$$;

-- Channels the caller moderates: their owner or a moderator (never a DM).
create or replace function chat_private.my_moderated_channels() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.channel_id from public.members m join public.channels c on c.id = m.channel_id
                  where m.user_id = chat_private.active_uid() and m.role in ('owner', 'moderator')
                    and c.kind in ('public', 'private'));
end
$$;

-- Workspaces the caller belongs to, in any role.
create or replace function chat_private.my_workspaces() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.workspace_id from public.workspace_members m where m.user_id = chat_private.active_uid());
end
$$;

-- Workspaces whose public channels the caller reads: any role but guest.
create or replace function chat_private.my_reading_workspaces() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.workspace_id from public.workspace_members m
                  where m.user_id = chat_private.active_uid() and m.role <> 'guest');
end
$$;

-- Workspaces the caller administers: owner or admin.
create or replace function chat_private.my_admin_workspaces() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.workspace_id from public.workspace_members m
                  where m.user_id = chat_private.active_uid() and m.role in ('owner', 'admin'));
end
$$;

-- Workspaces the caller owns.
create or replace function chat_private.my_owned_workspaces() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.workspace_id from public.workspace_members m
                  where m.user_id = chat_private.active_uid() and m.role = 'owner');
end
$$;

-- Channels shared into a workspace whose public channels the caller reads.
create or replace function chat_private.my_shared_channels() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select s.channel_id from public.shared_channels s
                   join public.workspace_members m on m.workspace_id = s.workspace_id
                  where m.user_id = chat_private.active_uid() and m.role <> 'guest');
end
$$;

-- Whether the caller shares a channel with `other` (a shared channel's people from other
-- workspaces are seen). Per row, but only for people outside the caller's workspaces.
create or replace function chat_private.shares_channel_with(other uuid) returns boolean
language plpgsql stable security definer set search_path = '' as $$
begin
    return exists (select 1 from public.members a join public.members b on b.channel_id = a.channel_id
                    where a.user_id = chat_private.active_uid() and b.user_id = other);
end
$$;

-- The e-mail addresses of `ids` the caller may see: their own, and those of people who
-- share a workspace with them (never across a shared channel). `public.user_emails` is the
-- API; `users.email` itself is not granted to the API roles.
create or replace function chat_private.visible_emails(ids uuid[]) returns table (user_id uuid, email text)
language plpgsql stable security definer set search_path = '' as $$
begin
    return query
        select u.id, u.email from public.users u
         where u.id = any (ids)
           and (u.id = auth.uid()
                or exists (select 1 from public.workspace_members a
                             join public.workspace_members b on b.workspace_id = a.workspace_id
                            where a.user_id = chat_private.active_uid() and b.user_id = u.id));
end
$$;

-- Unread counts of the active caller's channels.
create or replace function public.unread_counts(cap integer default 100)
returns table (channel_id uuid, unread integer)
language sql stable security invoker set search_path = '' as $$
    select m.channel_id,
           (select count(*)::integer from (
                select 1 from public.chat c
                 where c.channel_id = m.channel_id and c.created_at > m.since
                   and c.parent_id is null and not c.is_deleted and c.user_id <> m.user_id
                 order by c.created_at desc
                 limit greatest(cap, 0)) x)
      from (select channel_id, user_id, coalesce(last_read_at, '-infinity'::timestamptz) as since
              from public.members
             where user_id = (select chat_private.active_uid())
            offset 0) m
$$;

-- Through their own rows, too, a deactivated person changes nothing: they neither read nor
-- change their memberships, nor leave (which would take what reactivating gives back).
drop policy workspace_members_delete on public.workspace_members;
create policy workspace_members_delete on public.workspace_members for delete to authenticated
    using (user_id = (select chat_private.active_uid())
           or (workspace_id = any ((select chat_private.my_admin_workspaces())::uuid[])
               and (role <> 'owner' or workspace_id = any ((select chat_private.my_owned_workspaces())::uuid[]))));
drop policy members_select on public.members;
create policy members_select on public.members for select to authenticated using (
    user_id = (select chat_private.active_uid())
    or channel_id = any ((select chat_private.my_channels())::uuid[])
    or (select true from public.channels c where c.id = members.channel_id));
drop policy members_update on public.members;
create policy members_update on public.members for update to authenticated
    using (user_id = (select chat_private.active_uid())) with check (user_id = (select chat_private.active_uid()));
drop policy members_delete on public.members;
create policy members_delete on public.members for delete to authenticated using (
    (user_id = (select chat_private.active_uid())
     and (select c.kind in ('public', 'private') from public.channels c where c.id = members.channel_id))
    or (role <> 'owner'
        and (channel_id = any ((select chat_private.my_moderated_channels())::uuid[])
             or (select c.kind = 'public' and c.workspace_id = any ((select chat_private.my_admin_workspaces())::uuid[])
                   from public.channels c where c.id = members.channel_id))));

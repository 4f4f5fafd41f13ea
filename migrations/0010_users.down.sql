-- Back to 0009: the caller's sets of any caller, deactivated or not. The indexes are
-- dropped only where the bootstrap made auth.users.

create or replace function chat_private.my_channels() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.channel_id from public.members m where m.user_id = auth.uid());
end
$$;

-- Channels the caller may post in: a member, not archived.
create or replace function chat_private.my_postable_channels() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.channel_id from public.members m join public.channels c on c.id = m.channel_id
                  where m.user_id = auth.uid() and c.archived_at is null);
end
$$;

-- Channels the caller moderates: their owner or a moderator (never a DM).
create or replace function chat_private.my_moderated_channels() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.channel_id from public.members m join public.channels c on c.id = m.channel_id
                  where m.user_id = auth.uid() and m.role in ('owner', 'moderator')
                    and c.kind in ('public', 'private'));
end
$$;

-- Workspaces the caller belongs to, in any role.
create or replace function chat_private.my_workspaces() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.workspace_id from public.workspace_members m where m.user_id = auth.uid());
end
$$;

-- Workspaces whose public channels the caller reads: any role but guest.
create or replace function chat_private.my_reading_workspaces() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.workspace_id from public.workspace_members m
                  where m.user_id = auth.uid() and m.role <> 'guest');
end
$$;

-- Workspaces the caller administers: owner or admin.
create or replace function chat_private.my_admin_workspaces() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.workspace_id from public.workspace_members m
                  where m.user_id = auth.uid() and m.role in ('owner', 'admin'));
end
$$;

-- Workspaces the caller owns.
create or replace function chat_private.my_owned_workspaces() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select m.workspace_id from public.workspace_members m
                  where m.user_id = auth.uid() and m.role = 'owner');
end
$$;

-- Channels shared into a workspace whose public channels the caller reads.
create or replace function chat_private.my_shared_channels() returns uuid[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select s.channel_id from public.shared_channels s
                   join public.workspace_members m on m.workspace_id = s.workspace_id
                  where m.user_id = auth.uid() and m.role <> 'guest');
end
$$;

-- Whether the caller shares a channel with `other` (a shared channel's people from other
-- workspaces are seen). Per row, but only for people outside the caller's workspaces.
create or replace function chat_private.shares_channel_with(other uuid) returns boolean
language plpgsql stable security definer set search_path = '' as $$
begin
    return exists (select 1 from public.members a join public.members b on b.channel_id = a.channel_id
                    where a.user_id = auth.uid() and b.user_id = other);
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
                            where a.user_id = auth.uid() and b.user_id = u.id));
end
$$;

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
             where user_id = (select auth.uid())
            offset 0) m
$$;

drop policy workspace_members_delete on public.workspace_members;
create policy workspace_members_delete on public.workspace_members for delete to authenticated
    using (user_id = (select auth.uid())
           or (workspace_id = any ((select chat_private.my_admin_workspaces())::uuid[])
               and (role <> 'owner' or workspace_id = any ((select chat_private.my_owned_workspaces())::uuid[]))));
drop policy members_select on public.members;
create policy members_select on public.members for select to authenticated using (
    user_id = (select auth.uid())
    or channel_id = any ((select chat_private.my_channels())::uuid[])
    or (select true from public.channels c where c.id = members.channel_id));
drop policy members_update on public.members;
create policy members_update on public.members for update to authenticated
    using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));
drop policy members_delete on public.members;
create policy members_delete on public.members for delete to authenticated using (
    (user_id = (select auth.uid())
     and (select c.kind in ('public', 'private') from public.channels c where c.id = members.channel_id))
    or (role <> 'owner'
        and (channel_id = any ((select chat_private.my_moderated_channels())::uuid[])
             or (select c.kind = 'public' and c.workspace_id = any ((select chat_private.my_admin_workspaces())::uuid[])
                   from public.channels c where c.id = members.channel_id))));

drop function chat_private.active_uid();

do $bootstrap$
declare
    o record;
begin
    for o in delete from chatctl.bootstrap_objects
              where kind = 'index' and name in ('auth.confirmation_token_idx', 'auth.recovery_token_idx',
                    'auth.email_change_token_current_idx', 'auth.email_change_token_new_idx',
                    'auth.reauthentication_token_idx', 'auth.users_is_anonymous_idx')
             returning name loop
        execute format('drop index if exists %s', o.name);
    end loop;
end
$bootstrap$;

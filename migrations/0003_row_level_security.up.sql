-- Row level security on every table in `public` (DESIGN.md "Security").
-- Reads follow membership; users write only as themselves and only where they are members;
-- service_role bypasses RLS (the role has BYPASSRLS), anon sees nothing.
--
-- The helpers are SECURITY DEFINER so a policy on one table can look at another without
-- recursing through that table's own policies; they read auth.uid() from the caller's
-- request.jwt.claims, as PostgREST sets it.

create function chat_private.workspace_role(ws uuid) returns text
language sql stable security definer set search_path = '' as $$
    select m.role from public.workspace_members m where m.workspace_id = ws and m.user_id = auth.uid()
$$;

create function chat_private.is_workspace_member(ws uuid) returns boolean
language sql stable security definer set search_path = '' as $$
    select exists (select 1 from public.workspace_members m where m.workspace_id = ws and m.user_id = auth.uid())
$$;

create function chat_private.is_workspace_admin(ws uuid) returns boolean
language sql stable security definer set search_path = '' as $$
    select coalesce(chat_private.workspace_role(ws) in ('owner', 'admin'), false)
$$;

create function chat_private.is_channel_member(ch uuid) returns boolean
language sql stable security definer set search_path = '' as $$
    select exists (select 1 from public.members m where m.channel_id = ch and m.user_id = auth.uid())
$$;

-- Readable: a member of the channel; or, for a public channel, a (non-guest) member of its
-- workspace or of a workspace it is shared with. Private channels and DMs: members only.
create function chat_private.can_read_channel(ch uuid) returns boolean
language sql stable security definer set search_path = '' as $$
    select exists (
        select 1
          from public.channels c
         where c.id = ch
           and (
                exists (select 1 from public.members m where m.channel_id = c.id and m.user_id = auth.uid())
                or (c.kind = 'public' and (
                    exists (select 1 from public.workspace_members wm
                             where wm.workspace_id = c.workspace_id and wm.user_id = auth.uid()
                               and wm.role <> 'guest')
                    or exists (select 1 from public.shared_channels s
                                 join public.workspace_members wm on wm.workspace_id = s.workspace_id
                                where s.channel_id = c.id and wm.user_id = auth.uid() and wm.role <> 'guest')))
           )
    )
$$;

-- Moderates: a channel owner or moderator; for a public channel also an owner/admin of its
-- workspace. Workspace admins do not moderate private channels and DMs (as in Slack): that
-- would let them add themselves and read what is not theirs.
create function chat_private.can_moderate_channel(ch uuid) returns boolean
language sql stable security definer set search_path = '' as $$
    select exists (select 1 from public.members m
                    where m.channel_id = ch and m.user_id = auth.uid() and m.role in ('owner', 'moderator'))
        or exists (select 1 from public.channels c
                     join public.workspace_members wm on wm.workspace_id = c.workspace_id
                    where c.id = ch and c.kind = 'public' and wm.user_id = auth.uid()
                      and wm.role in ('owner', 'admin'))
$$;

-- Postable: a member of a channel that is not archived.
create function chat_private.can_post(ch uuid) returns boolean
language sql stable security definer set search_path = '' as $$
    select exists (select 1 from public.members m join public.channels c on c.id = m.channel_id
                    where m.channel_id = ch and m.user_id = auth.uid() and c.archived_at is null)
$$;

create function chat_private.channel_workspace(ch uuid) returns uuid
language sql stable security definer set search_path = '' as $$
    select c.workspace_id from public.channels c where c.id = ch
$$;

create function chat_private.message_channel(msg uuid) returns uuid
language sql stable security definer set search_path = '' as $$
    select c.channel_id from public.chat c where c.id = msg
$$;

create function chat_private.message_author(msg uuid) returns uuid
language sql stable security definer set search_path = '' as $$
    select c.user_id from public.chat c where c.id = msg
$$;

-- Someone the caller may see: themselves, or a member of a workspace or channel they share.
create function chat_private.can_see_user(other uuid) returns boolean
language sql stable security definer set search_path = '' as $$
    select other = auth.uid()
        or exists (select 1 from public.workspace_members a
                     join public.workspace_members b on b.workspace_id = a.workspace_id
                    where a.user_id = auth.uid() and b.user_id = other)
        or exists (select 1 from public.members a
                     join public.members b on b.channel_id = a.channel_id
                    where a.user_id = auth.uid() and b.user_id = other)
$$;

revoke all on all functions in schema chat_private from public;
grant execute on all functions in schema chat_private to authenticated, service_role;

-- Table privileges as Supabase grants them; the policies below do the filtering. Columns an
-- end user may change are granted one by one, so no policy has to guard ids or roles.
grant select, insert, update, delete on all tables in schema public to anon, authenticated, service_role;
revoke update on public.users, public.members, public.chat from anon, authenticated;
grant update (username, display_name, avatar_url) on public.users to authenticated;
grant update (last_read_at, notification_level, muted) on public.members to authenticated;
grant update (message, is_deleted, edited_at) on public.chat to authenticated;

alter table public.users enable row level security;
alter table public.workspaces enable row level security;
alter table public.workspace_members enable row level security;
alter table public.channels enable row level security;
alter table public.members enable row level security;
alter table public.shared_channels enable row level security;
alter table public.chat enable row level security;
alter table public.emojis enable row level security;
alter table public.attachments enable row level security;
alter table public.read_receipts enable row level security;
alter table public.user_status enable row level security;

-- users
create policy users_select on public.users for select to authenticated
    using (chat_private.can_see_user(id));
create policy users_insert on public.users for insert to authenticated
    with check (id = auth.uid() and not is_bot);
create policy users_update on public.users for update to authenticated
    using (id = auth.uid()) with check (id = auth.uid());

-- workspaces: provisioned by operators (service_role); admins rename, owners delete.
create policy workspaces_select on public.workspaces for select to authenticated
    using (chat_private.is_workspace_member(id));
create policy workspaces_update on public.workspaces for update to authenticated
    using (chat_private.is_workspace_admin(id)) with check (chat_private.is_workspace_admin(id));
create policy workspaces_delete on public.workspaces for delete to authenticated
    using (chat_private.workspace_role(id) = 'owner');

-- workspace_members: visible to the workspace; managed by its admins; anyone may leave.
create policy workspace_members_select on public.workspace_members for select to authenticated
    using (chat_private.is_workspace_member(workspace_id));
create policy workspace_members_insert on public.workspace_members for insert to authenticated
    with check (chat_private.is_workspace_admin(workspace_id) and role <> 'owner');
create policy workspace_members_update on public.workspace_members for update to authenticated
    using (chat_private.is_workspace_admin(workspace_id))
    with check (chat_private.is_workspace_admin(workspace_id) and role <> 'owner');
create policy workspace_members_delete on public.workspace_members for delete to authenticated
    using (user_id = auth.uid() or chat_private.is_workspace_admin(workspace_id));

-- channels
create policy channels_select on public.channels for select to authenticated
    using (chat_private.can_read_channel(id));
create policy channels_insert on public.channels for insert to authenticated
    with check (created_by = auth.uid() and kind in ('public', 'private')
                and coalesce(chat_private.workspace_role(workspace_id) in ('owner', 'admin', 'member'), false));
create policy channels_update on public.channels for update to authenticated
    using (chat_private.can_moderate_channel(id)) with check (chat_private.can_moderate_channel(id));
create policy channels_delete on public.channels for delete to authenticated
    using (chat_private.is_workspace_admin(workspace_id));

-- members: join a public channel you can read; moderators add and remove; anyone may leave.
create policy members_select on public.members for select to authenticated
    using (chat_private.can_read_channel(channel_id));
create policy members_insert on public.members for insert to authenticated
    with check (
        (user_id = auth.uid() and role = 'member' and chat_private.can_read_channel(channel_id)
         and exists (select 1 from public.channels c where c.id = channel_id and c.kind = 'public'))
        or (chat_private.can_moderate_channel(channel_id) and role <> 'owner'));
create policy members_update on public.members for update to authenticated
    using (user_id = auth.uid()) with check (user_id = auth.uid());
create policy members_delete on public.members for delete to authenticated
    using (user_id = auth.uid() or chat_private.can_moderate_channel(channel_id));

-- shared_channels: visible to both sides; managed by the home workspace's admins.
create policy shared_channels_select on public.shared_channels for select to authenticated
    using (chat_private.is_workspace_member(workspace_id)
           or chat_private.is_workspace_member(chat_private.channel_workspace(channel_id)));
create policy shared_channels_insert on public.shared_channels for insert to authenticated
    with check (chat_private.is_workspace_admin(chat_private.channel_workspace(channel_id)));
create policy shared_channels_delete on public.shared_channels for delete to authenticated
    using (chat_private.is_workspace_admin(chat_private.channel_workspace(channel_id)));

-- chat: read what you can read; post as yourself where you are a member; edit your own;
-- delete your own, or any as a moderator or admin.
create policy chat_select on public.chat for select to authenticated
    using (chat_private.can_read_channel(channel_id));
create policy chat_insert on public.chat for insert to authenticated
    with check (user_id = auth.uid() and chat_private.can_post(channel_id));
create policy chat_update on public.chat for update to authenticated
    using (user_id = auth.uid()) with check (user_id = auth.uid() and chat_private.can_post(channel_id));
create policy chat_delete on public.chat for delete to authenticated
    using (user_id = auth.uid() or chat_private.can_moderate_channel(channel_id));

-- emojis (reactions)
create policy emojis_select on public.emojis for select to authenticated
    using (chat_private.can_read_channel(chat_private.message_channel(message_id)));
create policy emojis_insert on public.emojis for insert to authenticated
    with check (user_id = auth.uid() and chat_private.can_post(chat_private.message_channel(message_id)));
create policy emojis_delete on public.emojis for delete to authenticated
    using (user_id = auth.uid());

-- attachments: added by the message's author.
create policy attachments_select on public.attachments for select to authenticated
    using (chat_private.can_read_channel(chat_private.message_channel(message_id)));
create policy attachments_insert on public.attachments for insert to authenticated
    with check (chat_private.message_author(message_id) = auth.uid()
                and chat_private.can_post(chat_private.message_channel(message_id)));
create policy attachments_delete on public.attachments for delete to authenticated
    using (chat_private.message_author(message_id) = auth.uid()
           or chat_private.can_moderate_channel(chat_private.message_channel(message_id)));

-- read_receipts
create policy read_receipts_select on public.read_receipts for select to authenticated
    using (chat_private.can_read_channel(chat_private.message_channel(message_id)));
create policy read_receipts_insert on public.read_receipts for insert to authenticated
    with check (user_id = auth.uid() and chat_private.can_read_channel(chat_private.message_channel(message_id)));
create policy read_receipts_update on public.read_receipts for update to authenticated
    using (user_id = auth.uid()) with check (user_id = auth.uid());
create policy read_receipts_delete on public.read_receipts for delete to authenticated
    using (user_id = auth.uid());

-- user_status: presence is visible to whoever may see the user; set only by themselves.
create policy user_status_select on public.user_status for select to authenticated
    using (chat_private.can_see_user(user_id));
create policy user_status_insert on public.user_status for insert to authenticated
    with check (user_id = auth.uid());
create policy user_status_update on public.user_status for update to authenticated
    using (user_id = auth.uid()) with check (user_id = auth.uid());
create policy user_status_delete on public.user_status for delete to authenticated
    using (user_id = auth.uid());

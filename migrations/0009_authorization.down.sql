-- Back to the policies of 0003. The data repairs of the up migration are not undone: the
-- emails a profile held without its auth user's verification and the moderating roles of
-- DM members are not restored.

alter table public.chat alter column channel_id reset (n_distinct);
alter table public.members alter column channel_id reset (n_distinct);
drop index chatctl.bot_digests_channel_idx;
drop index public.shared_channels_shared_by_idx;
drop index public.channels_created_by_idx;
drop index public.workspaces_default_channel_idx;
drop index public.workspaces_created_by_idx;
alter function chat_private.set_updated_at() reset search_path;
alter function chat_private.check_shared_channel() reset search_path;
alter function chat_private.check_chat_parent() reset search_path;
alter function chat_private.notify_chat() reset search_path;

drop function public.user_emails(uuid[]);
drop function public.unread_counts(integer);

do $$
declare
    p record;
begin
    for p in select policyname, tablename from pg_policies where schemaname = 'public' loop
        execute format('drop policy %I on public.%I', p.policyname, p.tablename);
    end loop;
end
$$;

drop trigger members_boundary_update on public.members;
drop trigger members_boundary_insert on public.members;
drop function chat_private.check_new_members();
drop function chat_private.member_violation_query(text);
drop trigger shared_channels_drop_members_moved on public.shared_channels;
drop trigger shared_channels_drop_members on public.shared_channels;
drop function chat_private.drop_unshared_members();
drop trigger workspace_members_drop_channels on public.workspace_members;
drop function chat_private.drop_workspace_channels();
drop trigger workspace_members_owner_kept on public.workspace_members;
drop function chat_private.check_owner_kept();
drop trigger workspaces_default_channel on public.workspaces;
drop function chat_private.check_default_channel();
drop trigger channels_guard on public.channels;
drop function chat_private.channels_guard();
drop trigger channels_creator_joins on public.channels;
drop function chat_private.creator_joins();
alter table public.channels alter column created_by drop default;
alter table public.shared_channels alter column shared_by drop default;
alter table public.chat alter column user_id drop default;
alter table public.emojis alter column user_id drop default;
alter table public.read_receipts alter column user_id drop default;
alter table public.user_status alter column user_id drop default;
drop trigger chat_edited_at on public.chat;
drop function chat_private.stamp_edit();
drop trigger members_stamp on public.members;
drop trigger user_status_stamp on public.user_status;
drop trigger read_receipts_stamp on public.read_receipts;
drop function chat_private.stamp_client_times();
drop trigger chatctl_follow_email on auth.users;
drop function chat_private.follow_auth_email();
drop trigger users_identity on public.users;
drop function chat_private.users_identity();
drop function chat_private.verified_email(uuid);
drop trigger chat_mentions_update on public.chat;
drop function chat_private.mentions_of_changed_message();
drop trigger chat_mentions_insert on public.chat;
drop function chat_private.mentions_of_new_message();
drop function chat_private.mentioned(jsonb);
drop table public.mentions;

drop function chat_private.visible_emails(uuid[]);
drop function chat_private.shares_channel_with(uuid);
drop function chat_private.my_shared_channels();
drop function chat_private.my_owned_workspaces();
drop function chat_private.my_admin_workspaces();
drop function chat_private.my_reading_workspaces();
drop function chat_private.my_workspaces();
drop function chat_private.my_moderated_channels();
drop function chat_private.my_postable_channels();
drop function chat_private.my_channels();

-- 0003's helpers, grants and policies, as they were.
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

create function chat_private.can_moderate_channel(ch uuid) returns boolean
language sql stable security definer set search_path = '' as $$
    select exists (select 1 from public.members m
                    where m.channel_id = ch and m.user_id = auth.uid() and m.role in ('owner', 'moderator'))
        or exists (select 1 from public.channels c
                     join public.workspace_members wm on wm.workspace_id = c.workspace_id
                    where c.id = ch and c.kind = 'public' and wm.user_id = auth.uid()
                      and wm.role in ('owner', 'admin'))
$$;

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
-- Trigger functions that were not granted so: the search log's (0007 revoked them from
-- public) and notify_chat (PostgreSQL's default: public).
revoke all on function chat_private.search_log_new_messages(), chat_private.search_log_old_messages(),
    chat_private.search_log_new_attachments(), chat_private.search_log_old_attachments(),
    chat_private.search_log_new_channels(), chat_private.search_log_old_channels()
    from authenticated, service_role;
revoke all on function chat_private.notify_chat() from authenticated, service_role;
grant execute on function chat_private.notify_chat() to public;

revoke all on all tables in schema public from anon, authenticated, service_role;
grant select, insert, update, delete on all tables in schema public to anon, authenticated, service_role;
revoke update on public.users, public.members, public.chat from anon, authenticated;
grant update (username, display_name, avatar_url) on public.users to authenticated;
grant update (last_read_at, notification_level, muted) on public.members to authenticated;
grant update (message, is_deleted, edited_at) on public.chat to authenticated;

create policy users_select on public.users for select to authenticated
    using (chat_private.can_see_user(id));
create policy users_insert on public.users for insert to authenticated
    with check (id = auth.uid() and not is_bot);
create policy users_update on public.users for update to authenticated
    using (id = auth.uid()) with check (id = auth.uid());

create policy workspaces_select on public.workspaces for select to authenticated
    using (chat_private.is_workspace_member(id));
create policy workspaces_update on public.workspaces for update to authenticated
    using (chat_private.is_workspace_admin(id)) with check (chat_private.is_workspace_admin(id));
create policy workspaces_delete on public.workspaces for delete to authenticated
    using (chat_private.workspace_role(id) = 'owner');

create policy workspace_members_select on public.workspace_members for select to authenticated
    using (chat_private.is_workspace_member(workspace_id));
create policy workspace_members_insert on public.workspace_members for insert to authenticated
    with check (chat_private.is_workspace_admin(workspace_id) and role <> 'owner');
create policy workspace_members_update on public.workspace_members for update to authenticated
    using (chat_private.is_workspace_admin(workspace_id))
    with check (chat_private.is_workspace_admin(workspace_id) and role <> 'owner');
create policy workspace_members_delete on public.workspace_members for delete to authenticated
    using (user_id = auth.uid() or chat_private.is_workspace_admin(workspace_id));

create policy channels_select on public.channels for select to authenticated
    using (chat_private.can_read_channel(id));
create policy channels_insert on public.channels for insert to authenticated
    with check (created_by = auth.uid() and kind in ('public', 'private')
                and coalesce(chat_private.workspace_role(workspace_id) in ('owner', 'admin', 'member'), false));
create policy channels_update on public.channels for update to authenticated
    using (chat_private.can_moderate_channel(id)) with check (chat_private.can_moderate_channel(id));
create policy channels_delete on public.channels for delete to authenticated
    using (chat_private.is_workspace_admin(workspace_id));

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

create policy shared_channels_select on public.shared_channels for select to authenticated
    using (chat_private.is_workspace_member(workspace_id)
           or chat_private.is_workspace_member(chat_private.channel_workspace(channel_id)));
create policy shared_channels_insert on public.shared_channels for insert to authenticated
    with check (chat_private.is_workspace_admin(chat_private.channel_workspace(channel_id)));
create policy shared_channels_delete on public.shared_channels for delete to authenticated
    using (chat_private.is_workspace_admin(chat_private.channel_workspace(channel_id)));

create policy chat_select on public.chat for select to authenticated
    using (chat_private.can_read_channel(channel_id));
create policy chat_insert on public.chat for insert to authenticated
    with check (user_id = auth.uid() and chat_private.can_post(channel_id));
create policy chat_update on public.chat for update to authenticated
    using (user_id = auth.uid()) with check (user_id = auth.uid() and chat_private.can_post(channel_id));
create policy chat_delete on public.chat for delete to authenticated
    using (user_id = auth.uid() or chat_private.can_moderate_channel(channel_id));

create policy emojis_select on public.emojis for select to authenticated
    using (chat_private.can_read_channel(chat_private.message_channel(message_id)));
create policy emojis_insert on public.emojis for insert to authenticated
    with check (user_id = auth.uid() and chat_private.can_post(chat_private.message_channel(message_id)));
create policy emojis_delete on public.emojis for delete to authenticated
    using (user_id = auth.uid());

create policy attachments_select on public.attachments for select to authenticated
    using (chat_private.can_read_channel(chat_private.message_channel(message_id)));
create policy attachments_insert on public.attachments for insert to authenticated
    with check (chat_private.message_author(message_id) = auth.uid()
                and chat_private.can_post(chat_private.message_channel(message_id)));
create policy attachments_delete on public.attachments for delete to authenticated
    using (chat_private.message_author(message_id) = auth.uid()
           or chat_private.can_moderate_channel(chat_private.message_channel(message_id)));

create policy read_receipts_select on public.read_receipts for select to authenticated
    using (chat_private.can_read_channel(chat_private.message_channel(message_id)));
create policy read_receipts_insert on public.read_receipts for insert to authenticated
    with check (user_id = auth.uid() and chat_private.can_read_channel(chat_private.message_channel(message_id)));
create policy read_receipts_update on public.read_receipts for update to authenticated
    using (user_id = auth.uid()) with check (user_id = auth.uid());
create policy read_receipts_delete on public.read_receipts for delete to authenticated
    using (user_id = auth.uid());

create policy user_status_select on public.user_status for select to authenticated
    using (chat_private.can_see_user(user_id));
create policy user_status_insert on public.user_status for insert to authenticated
    with check (user_id = auth.uid());
create policy user_status_update on public.user_status for update to authenticated
    using (user_id = auth.uid()) with check (user_id = auth.uid());
create policy user_status_delete on public.user_status for delete to authenticated
    using (user_id = auth.uid());

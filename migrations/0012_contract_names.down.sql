-- Back to 0011's names. Reactions keep their Unicode text (the old column held any text).

alter table public.emojis drop constraint emojis_id_key;
alter table public.emojis drop column id;
alter table public.emojis rename column emoji_uni_code to emoji;
alter table public.emojis rename column chat_id to message_id;

alter table public.members drop constraint members_id_key;
alter table public.members drop column id;
alter table public.members rename column created_at to joined_at;

alter table public.workspaces rename column channel_id to default_channel_id;
alter index public.workspaces_channel_idx rename to workspaces_default_channel_idx;
create or replace function chat_private.check_default_channel() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    if new.default_channel_id is not null and not exists (
        select 1 from public.channels c
         where c.id = new.default_channel_id and c.workspace_id = new.id and c.kind in ('public', 'private')) then
        raise exception 'the default channel must be a channel of workspace %', new.slug
            using errcode = 'check_violation', constraint = 'workspaces_default_channel_own';
    end if;
    return new;
end
$$;

drop trigger channels_derive_kind on public.channels;
drop function chat_private.channels_derive_kind();
alter table public.channels alter column kind set default 'public';
alter table public.channels drop column is_private;

revoke update (modified_at) on public.chat from authenticated;
drop trigger chat_modified_at on public.chat;
alter table public.chat rename column modified_at to edited_at;
create or replace function chat_private.stamp_edit() returns trigger
language plpgsql set search_path = '' as $$
begin
    if new.message is distinct from old.message and new.edited_at is not distinct from old.edited_at then
        new.edited_at := now();
    end if;
    return new;
end
$$;
create trigger chat_edited_at before update of message on public.chat
    for each row execute function chat_private.stamp_edit();

drop trigger chatctl_follow_sign_in on auth.users;
drop function chat_private.follow_auth_sign_in();
drop trigger users_identity on public.users;
create or replace function chat_private.users_identity() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    new.email := chat_private.verified_email(new.id);
    return new;
end
$$;
create trigger users_identity before insert or update of id, email on public.users
    for each row execute function chat_private.users_identity();
alter table public.users drop column last_login;
alter table public.users rename column name to display_name;

drop trigger channels_shared_follow on public.channels;
drop function chat_private.shared_channels_follow();
drop trigger shared_channels_a_fill on public.shared_channels;
drop function chat_private.shared_channels_fill();
revoke insert (target_workspace_id) on public.shared_channels from authenticated;
alter table public.shared_channels
    drop constraint shared_channels_target,
    drop column target_workspace_id,
    drop column origin_workspace_id,
    drop column name,
    drop column topic,
    drop column is_private;

-- Files through Supabase Storage. The Storage API runs every client request as the caller
-- (`authenticated`, `request.jwt.claims` set from their token) against `storage.objects`,
-- so what a person may upload, download, list and delete is these policies. Before them
-- `storage.objects` had row level security on and no policy: nobody could use a file.
--
-- Only the buckets chatctl owns (`chatctl.storage_buckets`: those the workspace spec
-- declares, `storage: buckets:`) follow the rules below; a bucket the app made itself keeps
-- whatever policies the app gave it (a policy below never matches its objects).
--
-- The path layout of an owned bucket is `<workspace id>/<channel id>/<uploader id>/<file>`
-- (`<file>` may have further folders, as the Slack import's `<slack file id>/<name>`):
-- * upload (insert; upsert also updates): the uploader is the caller, into a channel they
--   may post in (a member, channel not archived), of the workspace the path names;
-- * read and list (select): whoever may read the channel's messages (its members, and for
--   a public channel the members of its workspace and of the workspaces it is shared with);
-- * delete: the uploader while they can read the channel, the channel's moderators, and for
--   a public channel the workspace's owners and admins (as for messages and attachments);
-- * anything else, and `anon`, nothing. Buckets themselves are listed by nobody but the
--   service role (no policy on `storage.buckets`).

-- The buckets chatctl owns: written by `chatctl apply` only (no API role reaches this schema).
create table chatctl.storage_buckets (
    bucket_id text primary key,
    adopted_at timestamptz not null default now()
);

-- The channel an object of an owned bucket belongs to, by its path: null for another bucket,
-- a path that is not the layout, or a channel that is not in the workspace the path names.
-- Security definer: the caller cannot read chatctl's list of buckets, and the channel is
-- looked up whoever may read it (the policies decide what the caller may do with it).
create function chat_private.object_channel(bucket text, object_name text) returns uuid
language plpgsql stable security definer set search_path = '' as $$
declare
    parts text[] := string_to_array(object_name, '/');
    uuid_re constant text := '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
    found uuid;
begin
    if coalesce(array_length(parts, 1), 0) < 4 or parts[array_length(parts, 1)] = ''
       or parts[1] !~ uuid_re or parts[2] !~ uuid_re or parts[3] !~ uuid_re
       or not exists (select 1 from chatctl.storage_buckets b where b.bucket_id = bucket) then
        return null;
    end if;
    select c.id into found from public.channels c
     where c.id = parts[2]::uuid and c.workspace_id = parts[1]::uuid;
    return found;
end
$$;

-- The uploader a path names (its third folder), or null.
create function chat_private.object_uploader(object_name text) returns uuid
language sql immutable set search_path = '' as $$
    select case when split_part(object_name, '/', 3)
                     ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                then split_part(object_name, '/', 3)::uuid end
$$;

-- What a listing checks once per query (initplans), so that reading a bucket of 100,000
-- objects costs a comparison per row, not a function call with lookups (1.5 s then, for the
-- first 100 of a folder; 54 ms now): chatctl's buckets, and the folders of the caller's
-- channels (`<workspace id>/<channel id>`).
create function chat_private.storage_bucket_ids() returns text[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select bucket_id from chatctl.storage_buckets);
end
$$;
create function chat_private.my_channel_folders() returns text[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select c.workspace_id::text || '/' || c.id::text
                   from public.members m join public.channels c on c.id = m.channel_id
                  where m.user_id = chat_private.active_uid());
end
$$;
-- The workspaces whose folders the caller may find readable channels in without being a
-- member: those they read (not as a guest), and the home workspaces of the channels shared
-- into them. A row elsewhere is not looked up at all.
create function chat_private.my_folder_workspaces() returns text[]
language plpgsql stable security definer set search_path = '' as $$
begin
    return array(select w::text from unnest(chat_private.my_reading_workspaces()) w
                 union
                 select c.workspace_id::text from public.channels c
                  where c.id = any (chat_private.my_shared_channels()));
end
$$;

revoke all on function chat_private.object_channel(text, text) from public;
revoke all on function chat_private.storage_bucket_ids() from public;
revoke all on function chat_private.my_channel_folders() from public;
revoke all on function chat_private.my_folder_workspaces() from public;
revoke all on function chat_private.object_uploader(text) from public;
grant execute on function chat_private.object_channel(text, text), chat_private.object_uploader(text),
    chat_private.storage_bucket_ids(), chat_private.my_channel_folders(), chat_private.my_folder_workspaces()
    to authenticated, service_role;

-- Supabase grants the API roles every privilege on Storage's tables (row level security
-- decides); where chatctl made them (plain PostgreSQL), it does the same.
do $grants$
begin
    if exists (select 1 from chatctl.bootstrap_objects where kind = 'table' and name = 'storage.objects') then
        grant select, insert, update, delete on storage.objects to anon, authenticated, service_role;
    end if;
    if exists (select 1 from chatctl.bootstrap_objects where kind = 'table' and name = 'storage.buckets') then
        grant select, insert, update, delete on storage.buckets to anon, authenticated, service_role;
    end if;
end
$grants$;

-- Read: an object of chatctl's buckets in the folder of a channel the caller is a member of,
-- or of one whose messages they may read (in a workspace they may find such channels in:
-- the channel's own policy, probed by its key, with the workspace the path names).
create policy chatctl_objects_select on storage.objects for select to authenticated using (
    bucket_id = any ((select chat_private.storage_bucket_ids())::text[])
    and (split_part(name, '/', 1) || '/' || split_part(name, '/', 2)
             = any ((select chat_private.my_channel_folders())::text[])
         or (split_part(name, '/', 1) = any ((select chat_private.my_folder_workspaces())::text[])
             and (select true from public.channels c
                   where c.id = (case when split_part(objects.name, '/', 2)
                                           ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                                      then split_part(objects.name, '/', 2)::uuid end)
                     and c.workspace_id::text = split_part(objects.name, '/', 1)))));
-- Storage records the uploader as the object's owner (`owner`, `owner_id`): never another person.
create policy chatctl_objects_insert on storage.objects for insert to authenticated with check (
    chat_private.object_uploader(name) = (select auth.uid())
    and chat_private.object_channel(bucket_id, name) = any ((select chat_private.my_postable_channels())::uuid[])
    and coalesce(owner, (select auth.uid())) = (select auth.uid())
    and coalesce(owner_id, (select auth.uid())::text) = (select auth.uid())::text);
create policy chatctl_objects_update on storage.objects for update to authenticated
    using (chat_private.object_uploader(name) = (select auth.uid())
           and chat_private.object_channel(bucket_id, name) = any ((select chat_private.my_postable_channels())::uuid[]))
    with check (chat_private.object_uploader(name) = (select auth.uid())
                and chat_private.object_channel(bucket_id, name) = any ((select chat_private.my_postable_channels())::uuid[])
                and coalesce(owner, (select auth.uid())) = (select auth.uid())
                and coalesce(owner_id, (select auth.uid())::text) = (select auth.uid())::text);
create policy chatctl_objects_delete on storage.objects for delete to authenticated using (
    (chat_private.object_uploader(name) = (select auth.uid())
     and (select true from public.channels c where c.id = chat_private.object_channel(objects.bucket_id, objects.name)))
    or chat_private.object_channel(bucket_id, name) = any ((select chat_private.my_moderated_channels())::uuid[])
    or (select c.kind = 'public' and c.workspace_id = any ((select chat_private.my_admin_workspaces())::uuid[])
          from public.channels c where c.id = chat_private.object_channel(objects.bucket_id, objects.name)));

-- Back to no policy on Storage's objects (nobody but the service role reaches a file).
drop policy chatctl_objects_delete on storage.objects;
drop policy chatctl_objects_update on storage.objects;
drop policy chatctl_objects_insert on storage.objects;
drop policy chatctl_objects_select on storage.objects;
do $grants$
begin
    if exists (select 1 from chatctl.bootstrap_objects where kind = 'table' and name = 'storage.objects') then
        revoke select, insert, update, delete on storage.objects from anon, authenticated, service_role;
    end if;
    if exists (select 1 from chatctl.bootstrap_objects where kind = 'table' and name = 'storage.buckets') then
        revoke select, insert, update, delete on storage.buckets from anon, authenticated, service_role;
    end if;
end
$grants$;
drop function chat_private.my_folder_workspaces();
drop function chat_private.my_channel_folders();
drop function chat_private.storage_bucket_ids();
drop function chat_private.object_uploader(text);
drop function chat_private.object_channel(text, text);
drop table chatctl.storage_buckets;

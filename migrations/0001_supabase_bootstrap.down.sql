-- Drops only what 0001 created (see chatctl.bootstrap_objects); never a hosted project's
-- own auth or storage schema. Roles are cluster-wide and stay.
do $bootstrap$
declare
    created text[];
begin
    select coalesce(array_agg(kind || ':' || name), '{}') into created from chatctl.bootstrap_objects;
    if 'publication:supabase_realtime' = any (created) then
        drop publication if exists supabase_realtime;
    end if;
    if 'table:storage.objects' = any (created) then drop table if exists storage.objects; end if;
    if 'table:storage.buckets' = any (created) then drop table if exists storage.buckets; end if;
    if 'schema:storage' = any (created) then drop schema if exists storage; end if;
    if 'function:auth.jwt()' = any (created) then drop function if exists auth.jwt(); end if;
    if 'function:auth.role()' = any (created) then drop function if exists auth.role(); end if;
    if 'function:auth.uid()' = any (created) then drop function if exists auth.uid(); end if;
    if 'table:auth.identities' = any (created) then drop table if exists auth.identities; end if;
    if 'table:auth.users' = any (created) then drop table if exists auth.users; end if;
    if 'schema:auth' = any (created) then drop schema if exists auth; end if;
end
$bootstrap$;

drop table chatctl.bootstrap_objects;

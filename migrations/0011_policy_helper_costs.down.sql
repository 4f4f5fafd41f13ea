-- Back to 0010's definitions.

create or replace function chat_private.active_uid() returns uuid
language sql stable security definer set search_path = '' as $$
    select u.id from public.users u where u.id = auth.uid() and u.deactivated_at is null
$$;

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

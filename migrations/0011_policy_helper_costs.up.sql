-- What a policy's helpers cost per call, measured (200 calls in one statement as a user,
-- `dev seed` data of 10,000 users; BENCHMARKS.md, "The HTTP API under load"):
--
-- * `active_uid()` was `language sql` with `set search_path`: such a function is never
--   inlined and its statement is parsed and planned again at every call, and every
--   `my_*()` set calls it: 45 µs per set. In plpgsql its plan is kept for the session:
--   20 µs per set. A profile statement evaluates about 25 of them.
-- * `visible_emails(ids)` was planned for each call (its array parameter makes the plan
--   cache keep choosing custom plans), and the plan it got joined `workspace_members` to
--   itself: 170 µs per call. It now reads the caller's workspaces once and keeps one
--   generic plan (the lookups are by key whatever the ids): 29 µs.
--
-- Same sets, same answers: the permission matrix (tests/it/rls.rs) runs on this.

create or replace function chat_private.active_uid() returns uuid
language plpgsql stable security definer set search_path = '' as $$
begin
    return (select u.id from public.users u where u.id = auth.uid() and u.deactivated_at is null);
end
$$;

create or replace function chat_private.visible_emails(ids uuid[]) returns table (user_id uuid, email text)
language plpgsql stable security definer set search_path = '' set plan_cache_mode = force_generic_plan as $$
declare
    mine uuid[] := array(select a.workspace_id from public.workspace_members a
                          where a.user_id = chat_private.active_uid());
begin
    return query
        select u.id, u.email from public.users u
         where u.id = any (ids)
           and (u.id = auth.uid()
                or exists (select 1 from public.workspace_members b
                            where b.user_id = u.id and b.workspace_id = any (mine)));
end
$$;

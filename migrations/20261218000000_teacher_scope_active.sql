-- A teacher who left (their record inactive, their login perhaps not yet closed) reads nobody:
-- `teacher_clients` also requires the teacher record to be active.
create or replace function teacher_clients(p_user uuid) returns setof uuid
language sql stable parallel safe as $$
    select m.client_id
    from teachers t
    join study_groups g on g.teacher_id = t.id and g.status <> 'archived'
    join group_members m on m.group_id = g.id and m.status in ('active', 'waitlist')
    where t.user_id = p_user and t.active
$$;

-- The clients a teacher may read (many are children): the current members — active or
-- waitlisted — of the groups they teach that are not archived. One definition for every read
-- (client list and card, subscriptions); inlined by the planner (a plain SQL function).
create function teacher_clients(p_user uuid) returns setof uuid
language sql stable parallel safe as $$
    select m.client_id
    from teachers t
    join study_groups g on g.teacher_id = t.id and g.status <> 'archived'
    join group_members m on m.group_id = g.id and m.status in ('active', 'waitlist')
    where t.user_id = p_user
$$;

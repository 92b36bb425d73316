-- Matching imported buyers to clients by e-mail or phone (shared::domain::clients::match_or_create).
create index clients_email_lower on clients (lower(email)) where email is not null;
create index clients_phone on clients (phone) where phone is not null;

-- Rosters of lessons created before every path kept them (single lessons, enrolments after
-- planning): lessons that have not started expect the group's members active on their day.
insert into lesson_enrolments (lesson_id, client_id)
select l.id, m.client_id
from lessons l
join group_members m on m.group_id = l.group_id and m.status = 'active'
 and (m.joined_on is null or m.joined_on <= (l.starts_at at time zone 'Europe/Moscow')::date)
where l.kind = 'lesson' and l.status = 'scheduled' and l.starts_at > now()
on conflict do nothing;

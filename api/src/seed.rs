//! `artsvao-api seed-demo`: a realistic centre for development and benchmarks, written with
//! set-based statements (generate_series, INSERT … SELECT) in one transaction, into an empty
//! database only.
//!
//! 30 rooms, 60 teachers, 300 groups (each meets twice a week for 90 minutes: the k-th group
//! of a room on ISO weekdays 1 + k % 6 and 1 + (k + 3) % 6 at 10:00 + 2 h × (k / 3), so a room's
//! ten groups never overlap, and a teacher's groups share one room; anything that would clash
//! is skipped by the exclusion constraints), 8,000 clients (a fifth of them children with a guardian),
//! memberships, the previous and the current month of lessons (past ones held, with
//! attendance: about 85 % present, 10 % absent, 5 % excused), two subscription plans, a paid
//! subscription for most members charging their visits, and rental applications.
use serde::Serialize;
use sqlx::PgPool;

#[derive(Debug, Default, Serialize, sqlx::FromRow)]
pub struct Seeded {
    pub rooms: i64,
    pub teachers: i64,
    pub groups: i64,
    pub clients: i64,
    pub memberships: i64,
    pub lessons: i64,
    pub attendance: i64,
    pub subscriptions: i64,
    pub rental_applications: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("the database already has CRM data; demo data goes into an empty database only")]
    NotEmpty,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

const STEPS: &[&str] = &[
    // A person's name from hashes of `who` (first name, gender, patronymic) and `family`
    // (surname), in the gender's forms. In a family a child's patronymic comes from the
    // parent's first name when the parent is a man (the first 30 men's names are the 30
    // fathers' names, in the order of the patronymics). Dropped at the end of the seed.
    r"create function pg_temp.demo_person(who text, family text, role text,
         out last_name text, out first_name text, out middle_name text)
     language sql immutable as $$
     with pick as (
         select abs(hashtext('g' || who)) % 2 = 0 as female,
                (array['Иванов','Петров','Смирнов','Кузнецов','Соколов','Попов','Лебедев',
                       'Козлов','Новиков','Морозов','Волков','Соловьёв','Васильев','Зайцев',
                       'Павлов','Семёнов','Голубев','Виноградов','Богданов','Воробьёв',
                       'Фёдоров','Михайлов','Беляев','Тарасов','Белов','Комаров','Орлов',
                       'Киселёв','Макаров','Андреев','Ковалёв','Ильин','Гусев','Титов',
                       'Кузьмин','Кудрявцев','Баранов','Куликов','Алексеев','Степанов',
                       'Яковлев','Сорокин','Сергеев','Романов','Захаров','Борисов','Королёв',
                       'Герасимов','Пономарёв','Григорьев','Лазарев','Медведев','Ершов',
                       'Никитин','Соболев','Рябов','Поляков','Цветков','Жуков','Савин',
                       'Вишневский','Островский','Шевченко','Ким','Черных','Толстой'])
                    [1 + abs(hashtext('s' || family)) % 66] as surname,
                case when role = 'parent' then abs(hashtext('p' || family)) % 30
                     else abs(hashtext('n' || who)) % 45 end as first_i,
                case when role = 'child' then abs(hashtext('p' || family)) % 30
                     else abs(hashtext('p' || who)) % 30 end as father_i
     )
     select case when female then
                 case when surname ~ '(ов|ев|ёв|ин|ын)$' then surname || 'а'
                      when surname ~ 'ский$' then regexp_replace(surname, 'ский$', 'ская')
                      when surname ~ 'ой$' then regexp_replace(surname, 'ой$', 'ая')
                      else surname end
                 else surname end,
            case when female then
                 (array['Анна','Мария','Елена','Ольга','Наталья','Ирина','Татьяна','Светлана',
                        'Екатерина','Юлия','Дарья','Алиса','Полина','Софья','Виктория',
                        'Ксения','Вера','Надежда','Людмила','Галина','Марина','Алёна',
                        'Анастасия','Евгения','Валентина','Любовь','Кира','Варвара',
                        'Ульяна','Милана','Ева','Василиса','Арина','Вероника','Диана',
                        'Злата','Лилия','Маргарита','Нина','Оксана','Раиса','Таисия',
                        'Эльвира','Яна','Зоя'])[1 + first_i]
            else
                 (array['Александр','Алексей','Андрей','Борис','Вадим','Виктор','Владимир',
                        'Геннадий','Григорий','Дмитрий','Евгений','Иван','Игорь','Илья',
                        'Константин','Леонид','Максим','Михаил','Николай','Олег','Павел',
                        'Пётр','Роман','Сергей','Станислав','Юрий','Фёдор','Василий',
                        'Анатолий','Степан','Антон','Артём','Валерий','Глеб','Денис','Егор',
                        'Кирилл','Лев','Марк','Матвей','Никита','Руслан','Семён','Тимофей',
                        'Ярослав'])
                     [1 + first_i] end,
            case when female then
                 (array['Александровна','Алексеевна','Андреевна','Борисовна','Вадимовна',
                        'Викторовна','Владимировна','Геннадьевна','Григорьевна','Дмитриевна',
                        'Евгеньевна','Ивановна','Игоревна','Ильинична','Константиновна',
                        'Леонидовна','Максимовна','Михайловна','Николаевна','Олеговна',
                        'Павловна','Петровна','Романовна','Сергеевна','Станиславовна',
                        'Юрьевна','Фёдоровна','Васильевна','Анатольевна','Степановна'])
                     [1 + father_i]
            else
                 (array['Александрович','Алексеевич','Андреевич','Борисович','Вадимович',
                        'Викторович','Владимирович','Геннадьевич','Григорьевич','Дмитриевич',
                        'Евгеньевич','Иванович','Игоревич','Ильич','Константинович',
                        'Леонидович','Максимович','Михайлович','Николаевич','Олегович',
                        'Павлович','Петрович','Романович','Сергеевич','Станиславович',
                        'Юрьевич','Фёдорович','Васильевич','Анатольевич','Степанович'])
                     [1 + father_i] end
     from pick
     $$",
    "insert into rooms (name, capacity)
     select 'Кабинет ' || n, 20 + (n * 7) % 41 from generate_series(1, 30) n",
    // Teachers: varied names (both genders, with patronymics), as the clients below.
    "insert into teachers (full_name, phone, email)
     select p.last_name || ' ' || p.first_name || ' ' || p.middle_name,
            '+7915' || lpad(n::text, 7, '0'), 'teacher' || n || '@artsvao.local'
     from generate_series(1, 60) n, lateral pg_temp.demo_person('t' || n, 't' || n, 'other') p",
    // Group i: room i % 30, teacher i % 60, slot k = i / 30 (see the module comment).
    "insert into study_groups (name, teacher_id, room_id, capacity, absence_charge)
     select (array['Хор','Живопись','Гитара','Балет','Театр','Керамика','Фортепиано',
                   'Народный танец','Фотография','Шахматы'])[1 + i % 10] || ' — группа ' || (i + 1),
            t.id, r.id, 30, (array['none','none','unexcused'])[1 + i % 3]
     from generate_series(0, 299) i
     join (select id, row_number() over (order by email) - 1 as n from teachers) t on t.n = i % 60
     join (select id, row_number() over (order by name) - 1 as n from rooms) r on r.n = i % 30",
    // Clients: families of five numbers — n % 5 = 0 is a child (born 2011–2020) whose
    // guardian is client n - 1 and who carries the family's surname in their own gender.
    // Names come from 60 surnames, 45 + 45 first names and 30 fathers' names, each picked by
    // its own hash: thousands of distinct people, gendered forms (Петрова Анна Сергеевна).
    // About a third have e-mail (adults), a quarter a linked Telegram chat; some opted out.
    "insert into clients (last_name, first_name, middle_name, phone, email, birth_date,
                          telegram_chat_id, notify_telegram, notify_email)
     select p.last_name, p.first_name, p.middle_name,
            '+79' || lpad((100000000 + n * 7919 % 900000000)::text, 9, '0'),
            case when n % 5 <> 0 and abs(hashtext('e' || n)) % 3 = 0
                 then 'client' || n || '@example.ru' end,
            case when n % 5 = 0
                 then date '2011-01-01' + abs(hashtext('b' || n)) % 3650
                 else date '1960-01-01' + abs(hashtext('b' || n)) % 13000 end,
            case when n % 5 <> 0 and abs(hashtext('t' || n)) % 10 < 3
                 then 100000000 + n * 7 end,
            abs(hashtext('ot' || n)) % 20 <> 0,
            abs(hashtext('oe' || n)) % 25 <> 0
     from generate_series(1, 8000) n,
          lateral pg_temp.demo_person(
              'c' || n, 'f' || (n - case when n % 5 = 0 then 1 else 0 end),
              case n % 5 when 0 then 'child' when 4 then 'parent' else 'other' end) p",
    "drop function pg_temp.demo_person(text, text, text)",
    // Client n (n % 5 = 0) is the child of client n - 1 (phones grow with n).
    "with c as (select id, row_number() over (order by phone) as n from clients)
     update clients k set guardian_id = g.id
     from c kc, c g where kc.id = k.id and kc.n % 5 = 0 and g.n = kc.n - 1",
    "insert into group_members (group_id, client_id, status, joined_on)
     select g.id, c.id, 'active', date_trunc('month', current_date_msk() - interval '1 month')::date
     from (select id, row_number() over (order by phone) - 1 as n from clients) c
     join (select id, row_number() over (order by name) - 1 as n from study_groups) g
       on g.n = c.n % 300",
    // Two lessons a week per group, previous and current month, 90 minutes.
    "insert into lessons (group_id, room_id, teacher_id, starts_at, ends_at, status)
     select g.id, g.room_id, g.teacher_id,
            (d::date + make_time(10 + 2 * (g.k / 3), 0, 0)) at time zone 'Europe/Moscow',
            (d::date + make_time(11 + 2 * (g.k / 3), 30, 0)) at time zone 'Europe/Moscow',
            case when (d::date + make_time(11 + 2 * (g.k / 3), 30, 0)) at time zone 'Europe/Moscow' < now()
                 then 'held' else 'scheduled' end
     from (select id, room_id, teacher_id,
                  (row_number() over (partition by room_id order by id) - 1)::int as k
           from study_groups) g,
          generate_series(date_trunc('month', current_date_msk() - interval '1 month'),
                          date_trunc('month', current_date_msk()) + interval '1 month - 1 day',
                          interval '1 day') d
     where extract(isodow from d) in (1 + g.k % 6, 1 + (g.k + 3) % 6)
     on conflict do nothing",
    "insert into subscription_plans (name, visits, validity_days, price, max_freeze_days)
     values ('8 занятий', 8, 30, 4000, 14), ('Безлимит на месяц', null, 30, 7000, 7)",
    "insert into plan_groups (plan_id, group_id)
     select p.id, g.id from subscription_plans p, study_groups g",
    // Most members hold a paid subscription for the current month.
    "insert into subscriptions (client_id, plan_id, visits_total, begins_on, ends_on, status, price)
     select m.client_id, p.id, p.visits, date_trunc('month', current_date_msk())::date,
            date_trunc('month', current_date_msk())::date + 29, 'active', p.price
     from group_members m
     join subscription_plans p on p.name = case when hashtext(m.client_id::text) % 4 = 0
                                                then 'Безлимит на месяц' else '8 занятий' end
     where hashtext(m.client_id::text) % 10 <> 1",
    "insert into invoices (client_id, subscription_id, amount, status, paid_at)
     select client_id, id, price, 'paid', now() from subscriptions",
    "insert into payments (invoice_id, amount, method)
     select id, amount, (array['cash','card','transfer'])[1 + abs(hashtext(id::text)) % 3]
     from invoices",
    "insert into attendance (lesson_id, client_id, mark)
     select l.id, m.client_id,
            case when abs(hashtext(l.id::text || m.client_id::text)) % 20 < 17 then 'present'
                 when abs(hashtext(l.id::text || m.client_id::text)) % 20 < 19 then 'absent'
                 else 'excused' end
     from lessons l join group_members m on m.group_id = l.group_id and m.status = 'active'
     where l.status = 'held'",
    // Present marks in the subscription's period charge it, up to its visits.
    "with charged as (
         select a.lesson_id, a.client_id, s.id as subscription_id,
                row_number() over (partition by s.id order by l.starts_at) as n, s.visits_total
         from attendance a
         join lessons l on l.id = a.lesson_id
         join subscriptions s on s.client_id = a.client_id
          and (l.starts_at at time zone 'Europe/Moscow')::date between s.begins_on and s.ends_on
         where a.mark = 'present'
     )
     update attendance a set subscription_id = c.subscription_id
     from charged c
     where a.lesson_id = c.lesson_id and a.client_id = c.client_id
       and (c.visits_total is null or c.n <= c.visits_total)",
    "update subscriptions s set visits_used = u.n
     from (select subscription_id, count(*) as n from attendance
           where subscription_id is not null group by 1) u
     where u.subscription_id = s.id",
    "insert into rental_applications (organisation, contact_name, contact_phone, room_id,
         date_from, date_to, time_from, time_to, status)
     select 'Организация ' || n, 'Контакт ' || n, '+7926' || lpad(n::text, 7, '0'), r.id,
            current_date_msk() + 30 + n, current_date_msk() + 30 + n + n % 7,
            time '08:00', time '09:30', case when n % 4 = 0 then 'rejected' else 'new' end
     from generate_series(1, 20) n
     join (select id, row_number() over (order by name) as k from rooms) r on r.k = n",
];

/// Seeds the demo centre into an empty database and returns what it created.
pub async fn seed_demo(db: &PgPool) -> Result<Seeded, SeedError> {
    let mut tx = db.begin().await?;
    // Serialise concurrent seeders; the emptiness check then holds for the transaction.
    sqlx::query("select pg_advisory_xact_lock(hashtext('artsvao-seed-demo'))")
        .execute(&mut *tx)
        .await?;
    let used: bool = sqlx::query_scalar(
        "select exists (select 1 from clients) or exists (select 1 from rooms)
             or exists (select 1 from teachers) or exists (select 1 from study_groups)",
    )
    .fetch_one(&mut *tx)
    .await?;
    if used {
        return Err(SeedError::NotEmpty);
    }
    for step in STEPS {
        // Constant statements of this module, no input in them.
        sqlx::query(sqlx::AssertSqlSafe(*step))
            .execute(&mut *tx)
            .await?;
    }
    let seeded: Seeded = sqlx::query_as(
        "select (select count(*) from rooms) as rooms, (select count(*) from teachers) as teachers,
                (select count(*) from study_groups) as groups,
                (select count(*) from clients) as clients,
                (select count(*) from group_members) as memberships,
                (select count(*) from lessons) as lessons,
                (select count(*) from attendance) as attendance,
                (select count(*) from subscriptions) as subscriptions,
                (select count(*) from rental_applications) as rental_applications",
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(seeded)
}

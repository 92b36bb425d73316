//! Pyrus tasks of the rental-application form, computed per index from the seed: task `i` has id
//! `11600 + 3i + (0..=2)`, so ids grow with the index and an id maps back to its index.
//!
//! Tasks with `i % 40 == 39` are broken on purpose, by kind `(i / 40) % 5`: 0 no rental date,
//! 1 end time before start time, 2 garbled phone and e-mail, 3 a room the CRM does not have,
//! 4 no organisation and no contact name. Tasks with `i % 10 == 3` use a demo CRM client's phone.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{json, Value};

use crate::seed::{demo, fresh_mobile, translit, typed_phone, Draw, Person, Stream};

pub const TASK_ID_BASE: u64 = 11_600;
const ORGANISATIONS: u64 = 40;

/// Field ids of the form (documented in the README).
pub mod field {
    pub const ORGANISATION: u64 = 1;
    pub const CONTACT: u64 = 2;
    pub const PHONE: u64 = 3;
    pub const EMAIL: u64 = 4;
    pub const ROOM: u64 = 5;
    pub const DATE: u64 = 6;
    pub const STARTS: u64 = 7;
    pub const ENDS: u64 = 8;
    pub const KIND: u64 = 9;
    pub const PARTICIPANTS: u64 = 10;
    pub const AMOUNT: u64 = 11;
    pub const COMMENT: u64 = 12;
    pub const RESPONSIBLE: u64 = 13;
    pub const DECISION: u64 = 14;
}

const LEGAL_FORMS: &[&str] = &["ООО", "АНО", "НКО", "ИП", "Фонд", "ГБОУ Школа №", "Студия"];
const ORG_NAMES: &[&str] = &[
    "Ромашка",
    "Творческие мастерские",
    "Культурное наследие",
    "Звонкие голоса",
    "Танцевальный квартал",
    "Арт-Перспектива",
    "Добрые руки",
    "Московский хоровод",
    "Новая сцена",
    "Семейный клуб «Вместе»",
];
const KINDS: &[&str] = &[
    "Концерт",
    "Репетиция",
    "Мастер-класс",
    "Собрание",
    "Лекция",
    "Выставка",
    "Спектакль",
];
const STAFF: &[(u64, &str, &str, &str)] = &[
    (1731, "Ольга", "Смирнова", "o.smirnova@artsvao.ru"),
    (1732, "Игорь", "Петров", "i.petrov@artsvao.ru"),
    (1733, "Наталья", "Кузнецова", "n.kuznetsova@artsvao.ru"),
];
const COMMENTS: &[&str] = &[
    "Нужен проектор и экран",
    "Просим предоставить 30 стульев",
    "Звукоусиление своё",
    "Нужна раздевалка для участников",
    "Повторяющееся мероприятие, каждую неделю",
];

/// The header fields filters look at, cheap to compute without the whole task.
pub struct Header {
    pub index: u64,
    pub id: u64,
    pub create_date: DateTime<Utc>,
    pub last_modified_date: DateTime<Utc>,
    pub close_date: Option<DateTime<Utc>>,
    pub current_step: u64,
}

pub fn task_id(seed: u64, i: u64) -> u64 {
    TASK_ID_BASE + 3 * i + Draw::new(seed, Stream::Task, i).below(3)
}

/// The index of the task that would own `id` (whether or not `id` is exactly its id).
pub fn index_of(id: u64) -> u64 {
    id.saturating_sub(TASK_ID_BASE) / 3
}

fn z(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn person_json(staff: &(u64, &str, &str, &str)) -> Value {
    let (id, first, last, email) = *staff;
    json!({"id": id, "first_name": first, "last_name": last, "email": email, "type": "user"})
}

pub fn header(seed: u64, i: u64, count: u64) -> Header {
    let mut d = Draw::new(seed, Stream::Task, i ^ 0x4EAD);
    let start = NaiveDate::from_ymd_opt(2026, 6, 1)
        .and_then(|d| d.and_hms_opt(6, 0, 0))
        .expect("a valid date")
        .and_utc();
    let create_date = start
        + Duration::minutes((i * 330 * 24 * 60 / count.max(1)) as i64)
        + Duration::minutes(d.below(600) as i64);
    let last_modified_date = create_date + Duration::minutes(d.below(14 * 24 * 60) as i64);
    let closed = d.percent(25);
    Header {
        index: i,
        id: task_id(seed, i),
        create_date,
        last_modified_date,
        close_date: closed.then_some(last_modified_date),
        current_step: if closed { 3 } else { 1 + d.below(3) },
    }
}

fn field(id: u64, kind: &str, name: &str, value: Value) -> Value {
    json!({"id": id, "type": kind, "name": name, "value": value})
}

/// Task `i` as the register returns it; `wanted` filters fields (`field_ids`).
pub fn task_json(seed: u64, form_id: u64, h: &Header, wanted: &dyn Fn(u64) -> bool) -> Value {
    let i = h.index;
    let mut d = Draw::new(seed, Stream::Task, i ^ 0xB0D7);
    let org = d.below(ORGANISATIONS);
    let mut o = Draw::new(seed, Stream::Organisation, org);
    let form = *o.pick(LEGAL_FORMS);
    let organisation = if form.ends_with('№') {
        format!("{form} {}", 100 + o.below(2000))
    } else {
        format!("{form} «{}»", o.pick(ORG_NAMES))
    };
    let mut contact = Person::random(&mut o);
    let mut national = fresh_mobile(seed ^ 0x0E6A, org);
    let mut email = format!(
        "{}@{}.ru",
        translit(&contact.surname),
        translit(&organisation).trim_start_matches("ooo")
    );
    if i % 10 == 3 {
        // A private person renting: a demo CRM client.
        let n = 1 + d.below(demo::CLIENTS);
        contact = demo::person(n);
        national = demo::national_phone(n);
        email = demo::email(n).unwrap_or(email);
    }
    let room = 1 + d.below(30);
    let rent_date = (h.create_date + Duration::days(7 + d.below(54) as i64)).date_naive();
    let start_min = 9 * 60 + 30 * d.below(23);
    let end_min = (start_min + 60 * (1 + d.below(4))).min(22 * 60);
    let hhmm = |m: u64| format!("{:02}:{:02}", m / 60, m % 60);
    let kind_index = d.below(KINDS.len() as u64);
    let participants = 5 + d.below(120);
    let staff = d.pick(STAFF);

    let broken = (i % 40 == 39).then_some((i / 40) % 5);
    let mut phone = typed_phone(&mut d, &national);
    let (mut starts, mut ends) = (hhmm(start_min), hhmm(end_min));
    let mut room_value = json!({"item_id": 1300 + room, "item_ids": [1300 + room],
        "headers": ["Зал"], "values": [format!("Кабинет {room}")]});
    match broken {
        Some(1) => std::mem::swap(&mut starts, &mut ends),
        Some(2) => {
            phone = "12-34".to_string();
            email = format!("{}@@mail", translit(&contact.surname));
        }
        Some(3) => {
            room_value = json!({"item_id": 1999, "item_ids": [1999],
                "headers": ["Зал"], "values": ["Актовый зал (корпус 2)"]});
        }
        _ => {}
    }

    let mut fields = Vec::with_capacity(14);
    if broken != Some(4) {
        fields.push(field(
            field::ORGANISATION,
            "text",
            "Организация",
            json!(organisation),
        ));
        fields.push(field(
            field::CONTACT,
            "text",
            "Контактное лицо",
            json!(contact.full_name().trim()),
        ));
    }
    fields.push(field(field::PHONE, "phone", "Телефон", json!(phone)));
    fields.push(field(field::EMAIL, "email", "E-mail", json!(email)));
    fields.push(field(field::ROOM, "catalog", "Зал", room_value));
    if broken != Some(0) {
        fields.push(field(
            field::DATE,
            "date",
            "Дата аренды",
            json!(rent_date.format("%Y-%m-%d").to_string()),
        ));
    }
    fields.push(field(field::STARTS, "time", "Начало", json!(starts)));
    fields.push(field(field::ENDS, "time", "Окончание", json!(ends)));
    fields.push(field(field::KIND, "multiple_choice", "Тип мероприятия",
        json!({"choice_id": kind_index + 1, "choice_ids": [kind_index + 1], "choice_names": [KINDS[kind_index as usize]]})));
    fields.push(field(
        field::PARTICIPANTS,
        "number",
        "Количество участников",
        json!(participants),
    ));
    fields.push(field(
        field::AMOUNT,
        "money",
        "Сумма",
        json!(1500 * (end_min.saturating_sub(start_min) / 60).max(1)),
    ));
    if d.percent(40) {
        fields.push(field(
            field::COMMENT,
            "text",
            "Комментарий",
            json!(d.pick(COMMENTS)),
        ));
    }
    fields.push(field(
        field::RESPONSIBLE,
        "person",
        "Ответственный",
        person_json(staff),
    ));
    if h.close_date.is_some() {
        let (id, name) = if d.percent(80) {
            (1, "Одобрено")
        } else {
            (2, "Отклонено")
        };
        fields.push(field(
            field::DECISION,
            "multiple_choice",
            "Решение",
            json!({"choice_id": id, "choice_ids": [id], "choice_names": [name]}),
        ));
    }
    fields.retain(|f| f["id"].as_u64().is_some_and(wanted));

    let mut task = json!({
        "id": h.id,
        "text": format!("Заявка на аренду: {organisation}"),
        "create_date": z(&h.create_date),
        "last_modified_date": z(&h.last_modified_date),
        "author": {"id": 1700, "first_name": "Форма", "last_name": "Сайта", "email": "forms@artsvao.ru", "type": "bot"},
        "responsible": person_json(staff),
        "form_id": form_id,
        "current_step": h.current_step,
        "is_closed": h.close_date.is_some(),
        "fields": fields,
    });
    if let Some(closed) = &h.close_date {
        task["close_date"] = json!(z(closed));
    }
    task
}

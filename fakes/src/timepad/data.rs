//! Timepad events and orders computed per index from the seed: event `i` has id `2845100 + i`;
//! order `j` belongs to event `j % events` and has id `90000000 + 3j + (0..=2)`.
//!
//! Buyers by order index `j` (see [`buyer`]): `j % 20 == 0` is a demo CRM client (its phone in
//! some typed format, its e-mail when it has one); `j % 20 == 10` a demo client with an e-mail,
//! matched by e-mail only; `j % 10 == 5` a relative sharing the phone of order `j - 4`;
//! `j % 10 == 7` a relative sharing the e-mail of order `j - 1`; `j % 10 == 8` the buyer of order
//! `j - 5` again; everyone else is a fresh person with unique contacts.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone};
use serde_json::{json, Value};

use crate::seed::{demo, fresh_mobile, typed_phone, Draw, Person, Stream};

pub const EVENT_ID_BASE: u64 = 2_845_100;
pub const ORDER_ID_BASE: u64 = 90_000_000;
const TICKET_ID_BASE: u64 = 55_000_000;

/// Every status of the reference, `name` and a Russian `title` (titles are illustrative).
pub const STATUSES: &[(&str, &str)] = &[
    ("paid", "оплачено"),
    ("ok", "подтверждено"),
    ("booked", "забронировано"),
    ("notpaid", "не оплачено"),
    ("inactive", "просрочено"),
    ("returned", "возвращено"),
    ("return_org", "возвращено организатором"),
    ("return_tp", "возвращено Timepad"),
    ("paid_offline", "оплачено на месте"),
    ("paid_ur", "оплачено юрлицом"),
    ("booked_offline", "забронировано для оплаты на месте"),
    ("pending", "ожидает подтверждения"),
    ("rejected", "отклонено"),
    ("deleted", "удалено"),
    ("blocked", "заблокировано"),
    ("transfer_payment", "перенесено"),
    ("return_payment_request", "запрошен возврат"),
    ("return_payment_reject", "в возврате отказано"),
];
/// Relative frequency of each status above, in the same order.
const STATUS_WEIGHTS: &[u64] = &[52, 12, 6, 5, 4, 4, 2, 1, 3, 1, 1, 2, 1, 1, 1, 1, 2, 1];

const TITLES: &[(&str, u64, &str)] = &[
    ("Концерт хоровой студии", 460, "Концерты"),
    ("Отчётный концерт школы гитары", 460, "Концерты"),
    ("Вечер камерной музыки", 460, "Концерты"),
    ("Джазовый вечер", 460, "Концерты"),
    ("Спектакль театральной студии «Маска»", 461, "Театры"),
    ("Открытый урок балетной студии", 461, "Театры"),
    ("Мастер-класс по керамике", 453, "Мастер-классы"),
    ("Мастер-класс по акварели", 453, "Мастер-классы"),
    ("Выставка детского рисунка", 462, "Выставки"),
    ("Фотовыставка «Москва в объективе»", 462, "Выставки"),
    ("Лекция «История русского романса»", 457, "Лекции"),
    ("Литературная гостиная", 457, "Лекции"),
];

pub struct Event {
    pub index: u64,
    pub id: u64,
    pub name: &'static str,
    pub category: (u64, &'static str),
    pub created_at: DateTime<FixedOffset>,
    pub starts_at: DateTime<FixedOffset>,
    pub ends_at: DateTime<FixedOffset>,
    pub access_status: &'static str,
    pub ticket_types: Vec<TicketType>,
}

pub struct TicketType {
    pub id: u64,
    pub name: &'static str,
    pub price: u64,
}

pub fn moscow() -> FixedOffset {
    FixedOffset::east_opt(3 * 3600).expect("+03:00 is a valid offset")
}

/// 2026-09-01 00:00 Moscow: the season the events spread over (nine months from here).
fn season_start() -> DateTime<FixedOffset> {
    let midnight = NaiveDate::from_ymd_opt(2026, 9, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("a valid date");
    moscow()
        .from_local_datetime(&midnight)
        .single()
        .expect("a fixed offset has no gaps")
}

pub fn rfc3339(t: &DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

pub fn event(seed: u64, index: u64, count: u64) -> Event {
    let mut d = Draw::new(seed, Stream::Event, index);
    let (name, category_id, category) = *d.pick(TITLES);
    let day = index * 270 / count.max(1) + d.below(3);
    let hour = *d.pick(&[11, 12, 15, 17, 18, 19]);
    let starts_at = season_start() + Duration::days(day as i64) + Duration::hours(hour);
    let ends_at = starts_at + Duration::minutes(*d.pick(&[90, 120, 150, 180]));
    let created_at = starts_at - Duration::days(14 + d.below(46) as i64)
        + Duration::minutes(d.below(600) as i64 - 300);
    let access_status = ["public", "link_only", "private"][d.weighted(&[82, 10, 8])];
    let price = *d.pick(&[0, 300, 500, 500, 800, 1000]);
    let id = EVENT_ID_BASE + index;
    let mut ticket_types = vec![TicketType {
        id: id * 10 + 1,
        name: "Входной",
        price,
    }];
    if price > 0 && d.percent(50) {
        ticket_types.push(TicketType {
            id: id * 10 + 2,
            name: "Льготный",
            price: price / 2,
        });
    }
    Event {
        index,
        id,
        name,
        category: (category_id, category),
        created_at,
        starts_at,
        ends_at,
        access_status,
        ticket_types,
    }
}

/// Number of orders of event `index`.
pub fn order_count(index: u64, events: u64, orders: u64) -> u64 {
    if events == 0 {
        return 0;
    }
    orders / events + u64::from(index < orders % events)
}

fn ticket_type_json(t: &TicketType, event: &Event, sold: u64) -> Value {
    json!({
        "id": t.id, "name": t.name, "description": "", "price": t.price,
        "buy_amount_min": 1, "buy_amount_max": 5, "is_promocode_locked": false,
        "remaining": 150u64.saturating_sub(sold), "sale_ends_at": rfc3339(&event.starts_at),
        "sale_starts_at": rfc3339(&event.created_at), "public_key": "",
        "is_active": true, "sold": sold, "attended": 0, "limit": 150, "status": "ok",
    })
}

/// The event as `GET /v1/events` shows it; `extra` are the requested `fields`.
pub fn event_json(e: &Event, org_id: u64, sold: u64, extra: &dyn Fn(&str) -> bool) -> Value {
    let mut v = json!({
        "id": e.id,
        "created_at": rfc3339(&e.created_at),
        "starts_at": rfc3339(&e.starts_at),
        "name": e.name,
        "url": format!("https://kc-artsvao.timepad.ru/event/{}/", e.id),
        "poster_image": {
            "default_url": format!("https://ucare.timepad.ru/{:x}/-/preview/", crate::seed::mix(e.id)),
            "uploadcare_url": format!("//ucare.timepad.ru/{:x}/", crate::seed::mix(e.id)),
        },
        "organization": {
            "id": org_id, "name": "ГБУК г. Москвы «Центр АРТСВАО»", "subdomain": "kc-artsvao",
            "url": "https://kc-artsvao.timepad.ru", "description_html": "",
            "logo_image": {"default_url": "", "uploadcare_url": ""},
        },
        "categories": [{"id": e.category.0, "name": e.category.1}],
        "moderation_status": if e.access_status == "public" { "shown" } else { "not_moderated" },
    });
    let price_min = e.ticket_types.iter().map(|t| t.price).min().unwrap_or(0);
    let price_max = e.ticket_types.iter().map(|t| t.price).max().unwrap_or(0);
    let extras = [
        ("ends_at", json!(rfc3339(&e.ends_at))),
        (
            "description_short",
            json!(format!("{} в центре АРТСВАО", e.name)),
        ),
        ("description_html", json!(format!("<p>{}</p>", e.name))),
        ("access_status", json!(e.access_status)),
        (
            "location",
            json!({"country": "Россия", "city": "Москва",
            "address": "ул. Примерная, 1", "coordinates": [55.75, 37.61]}),
        ),
        (
            "ticket_types",
            json!(e
                .ticket_types
                .iter()
                .map(|t| ticket_type_json(t, e, sold))
                .collect::<Vec<_>>()),
        ),
        (
            "registration_data",
            json!({
                "price_min": price_min, "price_max": price_max,
                "sale_ends_at": rfc3339(&e.starts_at), "tickets_total": sold, "tickets_limit": 150,
                "is_registration_open": true,
            }),
        ),
        (
            "questions",
            json!([
                {"field_id": "surname", "name": "Фамилия", "type": "text", "is_mandatory": true, "is_for_every_visitor": true},
                {"field_id": "name", "name": "Имя", "type": "text", "is_mandatory": true, "is_for_every_visitor": true},
                {"field_id": "mail", "name": "E-mail", "type": "email", "is_mandatory": true, "is_for_every_visitor": false},
                {"field_id": "phone", "name": "Телефон", "type": "phone", "is_mandatory": false, "is_for_every_visitor": false},
            ]),
        ),
        ("age_limit", json!("0")),
    ];
    for (key, value) in extras {
        if extra(key) {
            v[key] = value;
        }
    }
    v
}

/// Who placed order `j`.
pub struct Buyer {
    pub person: Person,
    pub email: String,
    /// Ten national digits, when the buyer gave a phone.
    pub national: Option<String>,
}

fn own_email(d: &mut Draw, person: &Person, j: u64) -> String {
    let email = person.email(d, j);
    // Some people type capitals or a stray space; importers should normalise.
    match d.below(100) {
        0..=3 => capitalised(&email),
        4..=5 => format!(" {email}"),
        _ => email,
    }
}

fn capitalised(email: &str) -> String {
    let mut out = String::with_capacity(email.len());
    let mut upper = true;
    for c in email.chars() {
        if upper {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        upper = matches!(c, '.' | '@' | '_');
    }
    out
}

/// The buyer of order `j` (rules in the module comment; the README documents them).
pub fn buyer(seed: u64, j: u64) -> Buyer {
    let mut d = Draw::new(seed, Stream::Person, j);
    match j % 20 {
        0 => {
            let n = 1 + d.below(demo::CLIENTS);
            let email = match demo::email(n) {
                Some(e) if d.percent(20) => capitalised(&e),
                Some(e) => e,
                None => own_email(&mut d, &demo::person(n), j),
            };
            return Buyer {
                person: demo::person(n),
                email,
                national: Some(demo::national_phone(n)),
            };
        }
        10 => {
            let n = 3 * (1 + d.below(demo::CLIENTS / 3));
            return Buyer {
                person: demo::person(n),
                email: demo::email(n).unwrap_or_default(),
                national: d.percent(70).then(|| fresh_mobile(seed, j)),
            };
        }
        _ => {}
    }
    match j % 10 {
        5 => {
            let other = buyer(seed, j - 4);
            let person = Person::relative_of(&mut d, &other.person);
            let email = own_email(&mut d, &person, j);
            Buyer {
                person,
                email,
                national: other.national.or_else(|| Some(fresh_mobile(seed, j))),
            }
        }
        7 => {
            let other = buyer(seed, j - 1);
            Buyer {
                person: Person::relative_of(&mut d, &other.person),
                email: other.email,
                national: Some(fresh_mobile(seed, j)),
            }
        }
        8 => buyer(seed, j - 5),
        _ => {
            let person = Person::random(&mut d);
            let email = own_email(&mut d, &person, j);
            Buyer {
                person,
                email,
                national: d.percent(90).then(|| fresh_mobile(seed, j)),
            }
        }
    }
}

pub fn order_id(seed: u64, j: u64) -> u64 {
    ORDER_ID_BASE + 3 * j + Draw::new(seed, Stream::Order, j).below(3)
}

fn status(seed: u64, j: u64) -> (&'static str, &'static str) {
    // The first orders walk through every status so even tiny data sets show them all.
    let i = if (j as usize) < STATUSES.len() {
        j as usize
    } else {
        Draw::new(seed, Stream::Order, j ^ 0x5157).weighted(STATUS_WEIGHTS)
    };
    STATUSES[i]
}

fn ean13(body12: u64) -> String {
    let digits = format!("{body12:012}");
    let sum: u32 = digits
        .bytes()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    format!("{digits}{}", (10 - sum % 10) % 10)
}

/// Order `j` (of event `e`) as `GET /v1/events/{id}/orders` shows it.
pub fn order_json(seed: u64, e: &Event, j: u64) -> Value {
    let mut d = Draw::new(seed, Stream::Order, j ^ 0xA11CE);
    let id = order_id(seed, j);
    let b = buyer(seed, j);
    let (status, title) = status(seed, j);
    let window = (e.starts_at - e.created_at).num_minutes().max(1) as u64;
    let created_at = e.created_at + Duration::minutes(d.below(window) as i64);
    let paid = matches!(
        status,
        "paid"
            | "paid_offline"
            | "paid_ur"
            | "returned"
            | "return_org"
            | "return_tp"
            | "return_payment_request"
            | "return_payment_reject"
            | "transfer_payment"
    );
    let phone = b.national.as_deref().map(|n| typed_phone(&mut d, n));
    let mut answers = json!({"mail": b.email, "name": b.person.name, "surname": b.person.surname});
    if let Some(phone) = &phone {
        answers["phone"] = json!(phone);
    }
    let count = 1 + d.weighted(&[70, 20, 10]) as u64;
    let mut amount = 0;
    let tickets: Vec<Value> = (0..count)
        .map(|k| {
            let t = d.pick(&e.ticket_types);
            amount += t.price;
            let visitor = if k == 0 { b.person.clone() } else { Person::relative_of(&mut d, &b.person) };
            let ticket_id = TICKET_ID_BASE + 4 * j + k;
            json!({
                "id": ticket_id,
                "number": ticket_id.to_string(),
                "price_nominal": t.price as f64,
                "answers": {"mail": b.email, "name": visitor.name, "surname": visitor.surname},
                "ticket_type": ticket_type_json(t, e, 0),
                "attendance": {"starts_at": null, "ends_at": null},
                "codes": {"ean13": ean13(200_000_000_000 + ticket_id), "printed_code": ticket_id.to_string()},
                "eticket_link": format!("https://timepad.ru/o/{id}/tickets/{ticket_id}/"),
            })
        })
        .collect();
    let payment = if paid && amount > 0 {
        let kind = match status {
            "paid_offline" => "cash",
            "paid_ur" => "invoice",
            _ => "card",
        };
        json!({"amount": amount as f64, "paid_at": rfc3339(&(created_at + Duration::minutes(2))), "payment_type": kind})
    } else {
        json!({"amount": amount as f64, "paid_at": null, "payment_type": null,
               "payment_link": (amount > 0).then(|| format!("https://timepad.ru/payment/{id}/"))})
    };
    json!({
        "id": id,
        "created_at": rfc3339(&created_at),
        "status": {"name": status, "title": title},
        "mail": b.email,
        "payment": payment,
        "answers": answers,
        "promocodes": if d.percent(5) { json!(["ARTSVAO10"]) } else { json!([]) },
        "subscribed_to_newsletter": d.percent(30),
        "event": {"id": e.id},
        "referrer": {"campaign": null, "medium": null, "source": null},
        "tickets": tickets,
    })
}

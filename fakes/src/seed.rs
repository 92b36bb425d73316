//! Deterministic generation primitives: a per-index hash RNG, Russian names, phones as people type
//! them, e-mails, and the demo CRM clients of `api/src/seed.rs` that fake buyers reuse.
//!
//! Every record is computed from `(seed, stream, index)` alone, so 50,000 orders cost nothing
//! until a page asks for them and the same seed always yields the same data.

/// Independent random streams, so adding a draw to one record kind never shifts another.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub enum Stream {
    Event = 1,
    Order = 2,
    Person = 3,
    Task = 4,
    Organisation = 5,
    Telegram = 6,
}

/// SplitMix64 finaliser: a cheap, well-mixed hash of a 64-bit value.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small RNG positioned at one record: `Draw::new(seed, Stream::Order, 42)` always draws the
/// same sequence.
#[derive(Debug, Clone)]
pub struct Draw {
    state: u64,
}

impl Draw {
    pub fn new(seed: u64, stream: Stream, index: u64) -> Self {
        Self {
            state: mix(seed ^ mix((stream as u64) << 56 ^ mix(index))),
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.state)
    }

    /// Uniform in `0..n` (`n > 0`); the modulo bias is irrelevant for fake data.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        // Lists are non-empty constants; `below` never returns len.
        &items[self.below(items.len() as u64) as usize]
    }

    /// Picks an index by weight.
    pub fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut roll = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if roll < *w {
                return i;
            }
            roll -= w;
        }
        weights.len() - 1
    }
}

const MALE_SURNAMES: &[&str] = &[
    "Иванов",
    "Смирнов",
    "Кузнецов",
    "Попов",
    "Васильев",
    "Петров",
    "Соколов",
    "Михайлов",
    "Новиков",
    "Фёдоров",
    "Морозов",
    "Волков",
    "Алексеев",
    "Лебедев",
    "Семёнов",
    "Егоров",
    "Павлов",
    "Козлов",
    "Степанов",
    "Николаев",
    "Орлов",
    "Андреев",
    "Макаров",
    "Никитин",
    "Захаров",
    "Зайцев",
    "Соловьёв",
    "Борисов",
    "Яковлев",
    "Григорьев",
    "Романов",
    "Воробьёв",
    "Сергеев",
    "Кузьмин",
    "Фролов",
    "Королёв",
    "Гусев",
    "Киселёв",
];
/// Surnames that do not change with gender.
const PLAIN_SURNAMES: &[&str] = &["Шевчук", "Ким", "Бондаренко", "Коваленко", "Гарсия", "Цой"];
const MALE_NAMES: &[&str] = &[
    "Александр",
    "Дмитрий",
    "Максим",
    "Сергей",
    "Андрей",
    "Алексей",
    "Артём",
    "Илья",
    "Кирилл",
    "Михаил",
    "Никита",
    "Матвей",
    "Роман",
    "Егор",
    "Иван",
    "Павел",
];
const FEMALE_NAMES: &[&str] = &[
    "Анна",
    "Мария",
    "Елена",
    "Ольга",
    "Наталья",
    "Ирина",
    "Татьяна",
    "Дарья",
    "Алиса",
    "Полина",
    "Софья",
    "Екатерина",
    "Юлия",
    "Светлана",
    "Виктория",
    "Ксения",
];
const PATRONYMIC_ROOTS: &[&str] = &[
    "Сергеев",
    "Александров",
    "Андреев",
    "Владимиров",
    "Николаев",
    "Михайлов",
    "Петров",
    "Игорев",
];
const MAIL_DOMAINS: &[&str] = &[
    "mail.ru",
    "yandex.ru",
    "gmail.com",
    "bk.ru",
    "inbox.ru",
    "list.ru",
    "ya.ru",
    "rambler.ru",
];

/// A generated person. `female` drives surname and patronymic endings.
#[derive(Debug, Clone)]
pub struct Person {
    pub surname: String,
    pub name: String,
    pub patronymic: String,
    pub female: bool,
}

impl Person {
    pub fn random(draw: &mut Draw) -> Self {
        let female = draw.percent(60);
        let surname = Self::surname(draw, female);
        Self::with_surname(draw, surname, female)
    }

    /// A relative: same surname, own first name.
    pub fn relative_of(draw: &mut Draw, other: &Person) -> Self {
        let female = draw.percent(50);
        let plain = PLAIN_SURNAMES.contains(&other.surname.as_str());
        let root = if other.female && !plain {
            other.surname.strip_suffix('а').unwrap_or(&other.surname)
        } else {
            &other.surname
        };
        let surname = if plain || !female {
            root.to_string()
        } else {
            format!("{root}а")
        };
        Self::with_surname(draw, surname, female)
    }

    fn surname(draw: &mut Draw, female: bool) -> String {
        if draw.percent(8) {
            return (*draw.pick(PLAIN_SURNAMES)).to_string();
        }
        let male = *draw.pick(MALE_SURNAMES);
        if female {
            format!("{male}а")
        } else {
            male.to_string()
        }
    }

    fn with_surname(draw: &mut Draw, surname: String, female: bool) -> Self {
        let name = if female {
            draw.pick(FEMALE_NAMES)
        } else {
            draw.pick(MALE_NAMES)
        };
        let root = draw.pick(PATRONYMIC_ROOTS);
        let patronymic = if female {
            format!("{root}на")
        } else {
            format!("{root}ич")
        };
        Self {
            surname,
            name: (*name).to_string(),
            patronymic,
            female,
        }
    }

    pub fn full_name(&self) -> String {
        format!("{} {} {}", self.surname, self.name, self.patronymic)
    }

    /// A unique mailbox: `tag` (e.g. the order index) keeps two people apart.
    pub fn email(&self, draw: &mut Draw, tag: u64) -> String {
        let surname = translit(&self.surname);
        let name = translit(&self.name);
        let domain = draw.pick(MAIL_DOMAINS);
        match draw.below(4) {
            0 => format!("{surname}.{name}{tag}@{domain}"),
            1 => format!("{}{surname}{tag}@{domain}", &name[..1]),
            2 => format!("{name}_{surname}{tag}@{domain}"),
            _ => format!("{surname}{tag}@{domain}"),
        }
    }
}

/// Latin transliteration for e-mail local parts.
pub fn translit(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        let latin = match c {
            'а' => "a",
            'б' => "b",
            'в' => "v",
            'г' => "g",
            'д' => "d",
            'е' | 'ё' | 'э' => "e",
            'ж' => "zh",
            'з' => "z",
            'и' => "i",
            'й' | 'ы' => "y",
            'к' => "k",
            'л' => "l",
            'м' => "m",
            'н' => "n",
            'о' => "o",
            'п' => "p",
            'р' => "r",
            'с' => "s",
            'т' => "t",
            'у' => "u",
            'ф' => "f",
            'х' => "kh",
            'ц' => "ts",
            'ч' => "ch",
            'ш' => "sh",
            'щ' => "shch",
            'ъ' | 'ь' => "",
            'ю' => "yu",
            'я' => "ya",
            c if c.is_ascii_alphanumeric() => {
                out.push(c);
                continue;
            }
            _ => "",
        };
        out.push_str(latin);
    }
    out
}

/// Ten national digits of a mobile number nobody in the demo CRM has: `9` then 200000000..,
/// an injective function of `index` (104729 is coprime with 8·10^8), so fresh numbers never collide.
pub fn fresh_mobile(seed: u64, index: u64) -> String {
    let offset = (mix(seed) % 800_000_000 + index.wrapping_mul(104_729)) % 800_000_000;
    format!("9{:09}", 200_000_000 + offset)
}

/// How a person typed a mobile number given its ten national digits.
pub fn typed_phone(draw: &mut Draw, national: &str) -> String {
    let d = national;
    if d.len() != 10 || !d.is_ascii() {
        return d.to_string();
    }
    let (a, b, c, e) = (&d[0..3], &d[3..6], &d[6..8], &d[8..10]);
    match draw.weighted(&[30, 20, 20, 10, 6, 6, 5, 3]) {
        0 => format!("+7 {a} {b}-{c}-{e}"),
        1 => format!("8{d}"),
        2 => format!("+7{d}"),
        3 => format!("8 ({a}) {b}-{c}-{e}"),
        4 => format!("+7({a}){b}{c}{e}"),
        5 => format!("8-{a}-{b}-{c}-{e}"),
        6 => format!("7 {a} {b} {c} {e}"),
        _ => d.to_string(),
    }
}

/// Demo CRM clients as `api/src/seed.rs` writes them (n in 1..=8000).
pub mod demo {
    pub const CLIENTS: u64 = 8000;

    const SURNAMES: &[&str] = &[
        "Иванов",
        "Петров",
        "Сидоров",
        "Кузнецов",
        "Смирнов",
        "Васильев",
        "Попов",
        "Соколов",
        "Михайлов",
        "Новиков",
        "Фёдоров",
        "Морозов",
        "Волков",
        "Алексеев",
        "Лебедев",
    ];
    const FEMALE: &[&str] = &["Анна", "Мария", "Дарья", "Алиса", "Полина", "Софья"];
    const MALE: &[&str] = &["Иван", "Пётр", "Михаил", "Артём", "Лев", "Максим"];

    /// Ten national digits: `'+79' || lpad((100000000 + n * 7919 % 900000000)::text, 9, '0')`.
    pub fn national_phone(n: u64) -> String {
        format!("9{:09}", 100_000_000 + (n * 7919) % 900_000_000)
    }

    /// `client{n}@example.ru` for every third client, none otherwise.
    pub fn email(n: u64) -> Option<String> {
        n.is_multiple_of(3).then(|| format!("client{n}@example.ru"))
    }

    /// `(surname, name)` as stored in the CRM.
    pub fn name(n: u64) -> (String, String) {
        let base = SURNAMES[(n % 15) as usize];
        let i = (n % 6) as usize;
        if n.is_multiple_of(2) {
            (format!("{base}а"), FEMALE[i].to_string())
        } else {
            (base.to_string(), MALE[i].to_string())
        }
    }

    pub fn person(n: u64) -> super::Person {
        let (surname, name) = name(n);
        super::Person {
            surname,
            name,
            patronymic: String::new(),
            female: n.is_multiple_of(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_phones_follow_the_sql_formula() {
        assert_eq!(demo::national_phone(1), "9100007919");
        assert_eq!(demo::national_phone(8000), "9163352000");
        assert_eq!(demo::email(3).as_deref(), Some("client3@example.ru"));
        assert_eq!(demo::email(4), None);
    }

    #[test]
    fn fresh_mobiles_never_collide_with_demo_clients_or_each_other() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..50_000 {
            let phone = fresh_mobile(7, i);
            assert!(phone.as_str() >= "9200000000", "{phone}");
            assert!(seen.insert(phone));
        }
    }

    #[test]
    fn translit_makes_ascii_local_parts() {
        assert_eq!(translit("Соловьёва"), "soloveva");
        assert_eq!(translit("Щукин"), "shchukin");
    }
}

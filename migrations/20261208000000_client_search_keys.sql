-- Read paths under load (issue 4 benchmark). The trigram GIN search over `search_text` costs
-- ~15 ms for a common surname at 100,000 clients: every candidate is rechecked on the heap and
-- the count visits all of them. Most searches are a surname (maybe followed by the first name)
-- or a phone number's start or end, which a btree answers as a RANGE: the count is an
-- index-only scan and the page an ordered index scan that stops after `limit` rows (~0.5 ms).
-- Ranges, not LIKE 'x%': a prepared statement's generic plan can use a range on a parameter.

-- Lower-cased full name, ё folded to е, byte order (collate "C") so a prefix is a contiguous
-- range whatever the database's collation.
alter table clients add column name_key text collate "C" generated always as (
    translate(lower(last_name || ' ' || first_name || coalesce(' ' || middle_name, '')), 'ё', 'е')
) stored;
-- The list order and the name-prefix search; archived_at included so the count stays index-only.
create index clients_name_key on clients (name_key, id) include (archived_at);
drop index clients_name_order;
-- Phone start (international digits, `+` dropped) and phone end (reversed) as ranges.
create index clients_phone_digits on clients ((substr(phone, 2) collate "C")) where phone is not null;
create index clients_phone_reversed on clients ((reverse(phone) collate "C")) where phone is not null;

//! The sample records: record `n` of a seed is always the same (a SplitMix64 stream seeded
//! by seed and `n`), apart from its timestamp.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What to make.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `{id, customer, product, quantity, price, amount, status, created_at}`.
    #[default]
    Orders,
    /// `{id, user, session, page, action, referrer, at}`.
    Clickstream,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Orders => "orders",
            Kind::Clickstream => "clickstream",
        }
    }
}

const CUSTOMERS: &[&str] = &[
    "ada", "grace", "alan", "edsger", "barbara", "donald", "frances", "ken", "margaret", "linus",
];
const PRODUCTS: &[(&str, f64)] = &[
    ("keyboard", 49.0),
    ("mouse", 19.5),
    ("monitor", 189.0),
    ("laptop stand", 35.25),
    ("usb cable", 7.99),
    ("headset", 79.0),
];
const STATUSES: &[&str] = &["placed", "paid", "paid", "shipped", "shipped", "cancelled"];
const PAGES: &[&str] = &[
    "/",
    "/search",
    "/product/42",
    "/product/7",
    "/cart",
    "/checkout",
];
const ACTIONS: &[&str] = &["view", "view", "view", "click", "add_to_cart", "purchase"];
const REFERRERS: &[&str] = &["direct", "search", "newsletter", "social"];

/// SplitMix64: small, fast, and good enough for sample data.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

/// An order, its fields in name order: serialized, it is the same text as the JSON map
/// [`sample`] returns (whose keys are sorted).
#[derive(Serialize)]
struct Order {
    amount: f64,
    created_at: i64,
    customer: &'static str,
    id: u64,
    price: f64,
    product: &'static str,
    quantity: u64,
    status: &'static str,
}

/// A click, its fields in name order (see [`Order`]).
#[derive(Serialize)]
struct Click {
    action: &'static str,
    at: i64,
    id: u64,
    page: &'static str,
    referrer: &'static str,
    session: String,
    user: &'static str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Sample {
    Order(Order),
    Click(Click),
}

/// Record `n` of `kind` for `seed`, stamped `now`. The draws come in the order the fields
/// were first written in, so a seed makes the same records as it always did.
fn make(kind: Kind, seed: u64, n: u64, now: i64) -> Sample {
    let mut mix = Mix(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ n);
    match kind {
        Kind::Orders => {
            let customer = *mix.pick(CUSTOMERS);
            let (product, price) = *mix.pick(PRODUCTS);
            let quantity = 1 + mix.next() % 5;
            let amount = (price * quantity as f64 * 100.0).round() / 100.0;
            let status = *mix.pick(STATUSES);
            Sample::Order(Order {
                amount,
                created_at: now,
                customer,
                id: n,
                price,
                product,
                quantity,
                status,
            })
        }
        Kind::Clickstream => {
            let user = *mix.pick(CUSTOMERS);
            let session = format!("s{:08x}", mix.next() as u32);
            let page = *mix.pick(PAGES);
            let action = *mix.pick(ACTIONS);
            let referrer = *mix.pick(REFERRERS);
            Sample::Click(Click {
                action,
                at: now,
                id: n,
                page,
                referrer,
                session,
                user,
            })
        }
    }
}

/// Record `n` of `kind` for `seed`, stamped `now` (milliseconds since the Unix epoch).
pub fn sample(kind: Kind, seed: u64, n: u64, now: i64) -> Value {
    serde_json::to_value(make(kind, seed, n, now)).expect("a sample serializes")
}

/// [`sample`]'s JSON text, written straight from the record (no map is built): what the
/// plugin produces. The field names and the words picked are ASCII that JSON writes as it is
/// (a test checks each), so they are copied without `serde_json`'s escape check; the numbers
/// are written as `serde_json` writes them.
pub fn sample_json(kind: Kind, seed: u64, n: u64, now: i64) -> Vec<u8> {
    let mut json = Text(Vec::with_capacity(256));
    match make(kind, seed, n, now) {
        Sample::Order(o) => {
            json.float("{\"amount\":", o.amount);
            json.integer(",\"created_at\":", o.created_at);
            json.word(",\"customer\":", o.customer);
            json.integer(",\"id\":", o.id);
            json.float(",\"price\":", o.price);
            json.word(",\"product\":", o.product);
            json.integer(",\"quantity\":", o.quantity);
            json.word(",\"status\":", o.status);
        }
        Sample::Click(c) => {
            json.word("{\"action\":", c.action);
            json.integer(",\"at\":", c.at);
            json.integer(",\"id\":", c.id);
            json.word(",\"page\":", c.page);
            json.word(",\"referrer\":", c.referrer);
            json.word(",\"session\":", &c.session);
            json.word(",\"user\":", c.user);
        }
    }
    json.0.push(b'}');
    json.0
}

/// A sample's JSON text being written: each field is its name's text (with the separator
/// before it), then its value.
struct Text(Vec<u8>);

impl Text {
    /// A string that needs no escape: `"`, `\` and control characters are not in it.
    fn word(&mut self, name: &str, word: &str) {
        debug_assert!(!word.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20));
        self.0.extend_from_slice(name.as_bytes());
        self.0.push(b'"');
        self.0.extend_from_slice(word.as_bytes());
        self.0.push(b'"');
    }

    fn integer(&mut self, name: &str, value: impl itoa::Integer) {
        self.0.extend_from_slice(name.as_bytes());
        self.0
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn float(&mut self, name: &str, value: f64) {
        self.0.extend_from_slice(name.as_bytes());
        serde_json::to_writer(&mut self.0, &value).expect("a number writes to memory");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The records as this file made them before they were typed: a JSON map each.
    fn as_maps(kind: Kind, seed: u64, n: u64, now: i64) -> Value {
        let mut mix = Mix(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ n);
        match kind {
            Kind::Orders => {
                let customer = mix.pick(CUSTOMERS);
                let (product, price) = *mix.pick(PRODUCTS);
                let quantity = 1 + mix.next() % 5;
                let amount = (price * quantity as f64 * 100.0).round() / 100.0;
                json!({
                    "id": n,
                    "customer": customer,
                    "product": product,
                    "quantity": quantity,
                    "price": price,
                    "amount": amount,
                    "status": mix.pick(STATUSES),
                    "created_at": now,
                })
            }
            Kind::Clickstream => json!({
                "id": n,
                "user": mix.pick(CUSTOMERS),
                "session": format!("s{:08x}", mix.next() as u32),
                "page": mix.pick(PAGES),
                "action": mix.pick(ACTIONS),
                "referrer": mix.pick(REFERRERS),
                "at": now,
            }),
        }
    }

    #[test]
    fn every_word_a_sample_can_pick_is_written_by_json_as_it_is() {
        let products = PRODUCTS.iter().map(|(name, _)| name);
        for word in [CUSTOMERS, STATUSES, PAGES, ACTIONS, REFERRERS]
            .into_iter()
            .flatten()
            .chain(products)
        {
            assert_eq!(serde_json::to_string(word).unwrap(), format!("\"{word}\""));
        }
    }

    #[test]
    fn typed_records_are_the_maps_they_replaced_byte_for_byte() {
        let now = 1_764_000_000_000;
        for kind in [Kind::Orders, Kind::Clickstream] {
            for seed in [0, 42, u64::MAX] {
                for n in 0..300 {
                    let map = as_maps(kind, seed, n, now);
                    assert_eq!(sample(kind, seed, n, now), map);
                    assert_eq!(
                        sample_json(kind, seed, n, now),
                        serde_json::to_vec(&map).unwrap(),
                        "{kind:?} seed {seed} record {n}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_record_depends_on_seed_and_number_only() {
        let a = sample(Kind::Orders, 1, 10, 0);
        assert_eq!(a, sample(Kind::Orders, 1, 10, 0));
        assert_ne!(a, sample(Kind::Orders, 2, 10, 0));
        assert_ne!(a, sample(Kind::Orders, 1, 11, 0));
        let amount = a["amount"].as_f64().unwrap();
        let expected = a["price"].as_f64().unwrap() * a["quantity"].as_f64().unwrap();
        assert!((amount - expected).abs() < 0.01, "{a}");
        let click = sample(Kind::Clickstream, 1, 10, 5);
        assert_eq!(click["at"], 5);
        assert!(PAGES.contains(&click["page"].as_str().unwrap()));
    }
}

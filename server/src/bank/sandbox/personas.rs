//! The sandbox bank's made-up banking data: personas that generate deterministic transactions
//! from a seed, so that the same account always has the same history.

use chrono::{DateTime, TimeDelta, Utc};

/// The personas the sandbox knows.
pub const PERSONAS: &[&str] = &[
    "salaried",
    "gambler",
    "overdraft",
    "savings",
    "returned-dd",
    "multiple-loans",
];

/// One generated transaction, as a bank would report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BankTransaction {
    /// The bank's own id: stable for a given seed and position.
    pub bank_transaction_id: String,
    /// When the bank booked it.
    pub booked_at: DateTime<Utc>,
    /// Decimal string; negative for money out.
    pub amount: String,
    /// The bank's description.
    pub description: String,
    /// The merchant, when there is one.
    pub merchant_name: Option<String>,
    /// A category.
    pub category: String,
}

/// A small deterministic generator (SplitMix64): the same seed, the same history.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn pence(amount: i64) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", amount.abs() / 100, amount.abs() % 100)
}

/// What a persona spends on: (merchant, category, typical amount in pence).
fn spending(persona: &str) -> &'static [(&'static str, &'static str, i64)] {
    match persona {
        "gambler" => &[
            ("Bet365", "gambling", 2500),
            ("SkyBet", "gambling", 1000),
            ("Tesco", "groceries", 3200),
        ],
        "overdraft" => &[
            ("Tesco", "groceries", 4500),
            ("Overdraft fee", "fees", 500),
            ("Shell", "transport", 6000),
        ],
        "savings" => &[("Transfer to savings pot", "savings", 10000)],
        "returned-dd" => &[
            ("British Gas", "utilities", 8500),
            ("Returned direct debit fee", "fees", 1200),
            ("Tesco", "groceries", 2800),
        ],
        "multiple-loans" => &[
            ("Klarna", "loan_repayment", 4500),
            ("Zopa", "loan_repayment", 18000),
            ("Lendable", "loan_repayment", 12000),
            ("Sainsbury's", "groceries", 3600),
        ],
        _ => &[
            ("Tesco", "groceries", 3500),
            ("TfL", "transport", 280),
            ("Pret", "eating_out", 650),
            ("Netflix", "subscriptions", 1099),
        ],
    }
}

/// The persona's transaction number `position` of the account with `seed`, booked `at`:
/// the same inputs always give the same transaction (id included); every twentieth of a
/// salaried persona is the salary.
pub fn transaction(persona: &str, seed: u64, position: u64, at: DateTime<Utc>) -> BankTransaction {
    let mut rng = Rng(seed ^ position.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let spend = spending(persona);
    let salary = persona == "salaried" && position % 20 == 19;
    let (merchant, category, base) =
        spend[usize::try_from(rng.below(spend.len() as u64)).unwrap_or(0)];
    let amount = if salary {
        245_000
    } else {
        -(base / 2 + i64::try_from(rng.below(base.unsigned_abs())).unwrap_or(0))
    };
    BankTransaction {
        bank_transaction_id: format!("sbx-{seed:016x}-{position:08}"),
        booked_at: at,
        amount: pence(amount),
        description: if salary {
            "SALARY ACME LTD".to_owned()
        } else {
            merchant.to_uppercase()
        },
        merchant_name: (!salary).then(|| merchant.to_owned()),
        category: if salary {
            "income".to_owned()
        } else {
            category.to_owned()
        },
    }
}

/// `count` transactions of `persona`, one every few hours, the newest booked at `until`.
pub fn history(
    persona: &str,
    seed: u64,
    count: usize,
    until: DateTime<Utc>,
) -> Vec<BankTransaction> {
    let mut gaps = Rng(seed);
    let mut at = until;
    (0..count as u64)
        .map(|i| {
            let t = transaction(persona, seed, i, at);
            at -= TimeDelta::minutes(30 + i64::try_from(gaps.below(600)).unwrap_or(0));
            t
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_history_newest_first() {
        let until = DateTime::from_timestamp_millis(1_790_000_000_000).unwrap();
        let a = history("salaried", 42, 25, until);
        assert_eq!(a, history("salaried", 42, 25, until));
        assert_ne!(a, history("salaried", 43, 25, until));
        assert_eq!(a[0].booked_at, until);
        assert!(a.windows(2).all(|w| w[0].booked_at > w[1].booked_at));
        assert_eq!(a[19].category, "income");
    }
}

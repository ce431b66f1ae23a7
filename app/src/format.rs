//! How the portal writes times for people.

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc};

/// `2026-11-26 11:35:07 UTC`: written by hand, not with chrono's formatter, whose
/// machinery would cost the browser's wasm more than the page itself.
pub fn exact(at: DateTime<Utc>) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// "just now", "4 min ago", "3 h ago", "2 d ago", or "in 5 min" for a moment ahead of `now`.
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let delta = now - at;
    if delta < TimeDelta::zero() {
        return format!("in {}", span(-delta));
    }
    if delta < TimeDelta::minutes(1) {
        return "just now".to_owned();
    }
    format!("{} ago", span(delta))
}

/// "renews in 89 d" while a consent runs, "expired" once it has ended.
pub fn renews_in(expired: bool, at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match at {
        _ if expired => "expired".to_owned(),
        Some(at) => format!("renews in {}", span(at - now)),
        None => "no end date".to_owned(),
    }
}

fn span(d: TimeDelta) -> String {
    match d {
        d if d < TimeDelta::minutes(1) => format!("{} s", d.num_seconds().max(1)),
        d if d < TimeDelta::hours(1) => format!("{} min", d.num_minutes()),
        d if d < TimeDelta::days(2) => format!("{} h", d.num_hours()),
        d => format!("{} d", d.num_days()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn relative_times_read_naturally() {
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
        assert_eq!(relative(now - TimeDelta::seconds(30), now), "just now");
        assert_eq!(relative(now - TimeDelta::minutes(25), now), "25 min ago");
        assert_eq!(relative(now - TimeDelta::hours(5), now), "5 h ago");
        assert_eq!(relative(now - TimeDelta::days(3), now), "3 d ago");
        assert_eq!(relative(now + TimeDelta::minutes(5), now), "in 5 min");
    }

    #[test]
    fn a_consent_says_when_the_user_renews_it() {
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap();
        let at = Some(now + TimeDelta::days(89) + TimeDelta::hours(3));
        assert_eq!(renews_in(false, at, now), "renews in 89 d");
        assert_eq!(
            renews_in(false, Some(now + TimeDelta::hours(5)), now),
            "renews in 5 h"
        );
        assert_eq!(renews_in(true, at, now), "expired");
        assert_eq!(renews_in(false, None, now), "no end date");
    }

    #[test]
    fn exact_times_are_utc_to_the_second() {
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(exact(at), "2026-01-02 03:04:05 UTC");
    }
}

//! The forms of the request fields the API checks by pattern: the one place that says what
//! each looks like, read by the checks and by the OpenAPI document (`api::exact`), so that
//! the document allows exactly what the server takes.

use std::sync::LazyLock;

use regex::Regex;

/// `2026-11-26T12:00:00.000Z`: the one timestamp form the API writes and reads.
pub const TIMESTAMP: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$";

/// An https URL on a named host — labels of letters, digits and hyphens, the last starting
/// with a letter (so never an IP literal) — with an optional port, path and query; no
/// fragment, no credentials. What a webhook target and a partner redirect must look like.
pub const HTTPS_URL: &str = concat!(
    r"^https://([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)*[a-z]([a-z0-9-]*[a-z0-9])?",
    r"(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?",
    r"(/([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})*)*",
    r"(\?([A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?$"
);

/// The same on loopback over http, which a sandbox server also takes for partner redirects.
pub const LOOPBACK_HTTP_URL: &str = concat!(
    r"^http://(localhost|127\.0\.0\.1|\[::1\])",
    r"(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?",
    r"(/([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})*)*",
    r"(\?([A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?$"
);

/// The longest URL the API stores.
pub const MAX_URL_LENGTH: usize = 2048;

static HTTPS_URL_RE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(HTTPS_URL).ok());
static LOOPBACK_HTTP_URL_RE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(LOOPBACK_HTTP_URL).ok());

/// Whether `text` has the form of [`HTTPS_URL`].
pub fn is_https_url(text: &str) -> bool {
    text.len() <= MAX_URL_LENGTH && HTTPS_URL_RE.as_ref().is_some_and(|re| re.is_match(text))
}

/// Whether `text` has the form of [`LOOPBACK_HTTP_URL`].
pub fn is_loopback_http_url(text: &str) -> bool {
    text.len() <= MAX_URL_LENGTH
        && LOOPBACK_HTTP_URL_RE
            .as_ref()
            .is_some_and(|re| re.is_match(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patterns_compile_and_say_what_they_mean() {
        assert!(HTTPS_URL_RE.is_some() && LOOPBACK_HTTP_URL_RE.is_some());
        for ok in [
            "https://hooks.example.com",
            "https://hooks.example.com/freshet",
            "https://a.b-c.io:8443/x/y.json?token=abc&x=%20",
            "https://localhost:65535/",
        ] {
            assert!(is_https_url(ok), "{ok}");
        }
        for bad in [
            "http://hooks.example.com/",
            "https://example.com:65536/",
            "https://10.0.0.1/",
            "https://example.com*/",
            "https://user:pw@example.com/",
            "https://example.com/#frag",
            "https://example.com:0/",
            "https://example.com/%6?x",
            "",
        ] {
            assert!(!is_https_url(bad), "{bad}");
        }
        assert!(is_loopback_http_url("http://127.0.0.1:3000/sandbox/return"));
        assert!(!is_loopback_http_url("http://example.com/"));
    }
}

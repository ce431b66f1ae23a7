//! A bank's OpenID Provider Configuration (`/.well-known/openid-configuration`), as UK banks
//! publish it: where its authorization and token endpoints are.

use serde::Deserialize;

/// What freshet reads of a discovery document.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Discovered {
    /// The issuer.
    pub issuer: String,
    /// Where the end user's browser is sent to consent.
    pub authorization_endpoint: String,
    /// Where codes and refresh tokens are exchanged.
    pub token_endpoint: String,
}

/// Fetches and reads the discovery document at `url` with `client` (which carries the
/// bank's private CA, if any). Both endpoints must be https, or http on loopback (a local
/// bank in development).
pub async fn discover(client: &reqwest::Client, url: &str) -> Result<Discovered, String> {
    let answer = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("fetching {url}: {e}"))?;
    if !answer.status().is_success() {
        return Err(format!("{url} answered {}", answer.status()));
    }
    let found: Discovered = answer
        .json()
        .await
        .map_err(|e| format!("{url} is not an OpenID Provider Configuration: {e}"))?;
    for endpoint in [&found.authorization_endpoint, &found.token_endpoint] {
        check_endpoint(endpoint)?;
    }
    Ok(found)
}

/// Whether `url`'s host is this machine (`localhost`, 127.0.0.0/8, ::1): where plain http is
/// allowed in development.
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// An endpoint freshet may send tokens or users to: https, or http on loopback.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let parsed = url::Url::parse(endpoint).map_err(|e| format!("{endpoint}: {e}"))?;
    let loopback = is_loopback(&parsed);
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "{endpoint}: a bank's endpoints must be https (http only on loopback)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_https_or_loopback() {
        assert!(check_endpoint("https://bank.example/oauth/token").is_ok());
        assert!(check_endpoint("http://127.0.0.1:4010/token").is_ok());
        assert!(check_endpoint("http://localhost:4010/token").is_ok());
        assert!(check_endpoint("http://[::1]:4010/token").is_ok());
        assert!(check_endpoint("http://bank.example/token").is_err());
        assert!(check_endpoint("ftp://bank.example/token").is_err());
        assert!(check_endpoint("not a url").is_err());
    }
}

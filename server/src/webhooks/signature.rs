//! Signing and verifying webhook deliveries, both ways of the contract:
//! `x-signature: sha256=<hex HMAC-SHA256 of the body>` (D•One's form) and the Standard
//! Webhooks `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
//! Both use the decoded bytes of the `whsec_` secret as the key. During a secret rotation
//! every header lists one signature per valid secret (space-separated for Standard Webhooks,
//! comma-separated for `x-signature`); a verifier accepts the delivery when any matches.
//!
//! The verifiers are what we would hand a partner: constant-time comparisons (`hmac`'s
//! `verify_slice`), a timestamp tolerance against replay.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "whsec_";

/// A signing secret, `whsec_<base64 of 32 random bytes>`. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    text: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(whsec_…)")
    }
}

/// Why a secret or a signature was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not `whsec_` followed by base64.
    #[error("the secret is not whsec_<base64>")]
    MalformedSecret,
    /// No signature of the header matches.
    #[error("no signature matches")]
    Mismatch,
    /// The header is missing or not in the expected form.
    #[error("the signature header is malformed")]
    MalformedHeader,
    /// The timestamp is further from now than the tolerance.
    #[error("the timestamp is outside the tolerance")]
    TimestampOutOfTolerance,
}

impl Secret {
    /// A new random secret.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut key = [0_u8; 32];
        getrandom::fill(&mut key)?;
        Ok(Self {
            text: format!("{PREFIX}{}", STANDARD.encode(key)),
            key: key.to_vec(),
        })
    }

    /// Parses `whsec_<base64>` (the prefix is optional, as in Standard Webhooks' libraries).
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let encoded = text.strip_prefix(PREFIX).unwrap_or(text);
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SignatureError::MalformedSecret)?;
        if key.is_empty() {
            return Err(SignatureError::MalformedSecret);
        }
        Ok(Self {
            text: text.to_owned(),
            key,
        })
    }

    /// The secret as shown to the partner once.
    pub fn expose(&self) -> &str {
        &self.text
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length: this cannot fail.
        HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!())
    }

    /// `sha256=<hex>` over the raw body.
    pub fn x_signature(&self, body: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(body);
        format!("sha256={}", hex(&mac.finalize().into_bytes()))
    }

    /// `v1,<base64>` over `{id}.{timestamp}.{body}`.
    pub fn standard_signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let bytes = self
            .standard_mac(id, timestamp, body)
            .finalize()
            .into_bytes();
        format!("v1,{}", STANDARD.encode(bytes))
    }

    fn standard_mac(&self, id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = self.mac();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The headers of one delivery, signed with every secret in `secrets` (newest first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `x-signature`.
    pub x_signature: String,
    /// `webhook-signature`.
    pub webhook_signature: String,
}

/// Signs `body` for delivery `id` at `timestamp` (Unix seconds) with each secret.
pub fn sign(secrets: &[&Secret], id: &str, timestamp: i64, body: &[u8]) -> SignedHeaders {
    SignedHeaders {
        x_signature: secrets
            .iter()
            .map(|s| s.x_signature(body))
            .collect::<Vec<_>>()
            .join(","),
        webhook_signature: secrets
            .iter()
            .map(|s| s.standard_signature(id, timestamp, body))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Verifies an `x-signature` header (one or more comma-separated `sha256=<hex>`) over `body`.
pub fn verify_x_signature(
    secret: &Secret,
    body: &[u8],
    header: &str,
) -> Result<(), SignatureError> {
    let mut seen = false;
    for candidate in header.split(',').map(str::trim) {
        let Some(bytes) = candidate.strip_prefix("sha256=").and_then(unhex) else {
            continue;
        };
        seen = true;
        let mut mac = secret.mac();
        mac.update(body);
        if mac.verify_slice(&bytes).is_ok() {
            return Ok(());
        }
    }
    Err(if seen {
        SignatureError::Mismatch
    } else {
        SignatureError::MalformedHeader
    })
}

/// Verifies Standard Webhooks headers: `webhook-signature` (space-separated `v1,<base64>`)
/// over `{id}.{timestamp}.{body}`, with `timestamp` no further than `tolerance_seconds`
/// from `now` (Unix seconds), against replays.
pub fn verify_standard(
    secret: &Secret,
    id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now: i64,
    tolerance_seconds: i64,
) -> Result<(), SignatureError> {
    if (now - timestamp).abs() > tolerance_seconds {
        return Err(SignatureError::TimestampOutOfTolerance);
    }
    let mut seen = false;
    for candidate in header.split(' ') {
        let Some(bytes) = candidate
            .strip_prefix("v1,")
            .and_then(|b| STANDARD.decode(b).ok())
        else {
            continue;
        };
        seen = true;
        if secret
            .standard_mac(id, timestamp, body)
            .verify_slice(&bytes)
            .is_ok()
        {
            return Ok(());
        }
    }
    Err(if seen {
        SignatureError::Mismatch
    } else {
        SignatureError::MalformedHeader
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference vector of the Standard Webhooks specification.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn the_standard_webhooks_reference_vector_reproduces() {
        let secret = Secret::parse(SPEC_SECRET).unwrap();
        assert_eq!(
            secret.standard_signature(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY),
            SPEC_SIGNATURE
        );
        verify_standard(
            &secret,
            SPEC_ID,
            SPEC_TIMESTAMP,
            SPEC_BODY,
            SPEC_SIGNATURE,
            SPEC_TIMESTAMP,
            300,
        )
        .unwrap();
    }

    #[test]
    fn a_changed_body_or_secret_or_old_timestamp_is_refused() {
        let secret = Secret::parse(SPEC_SECRET).unwrap();
        let other = Secret::generate().unwrap();
        let at = SPEC_TIMESTAMP;
        assert_eq!(
            verify_standard(&secret, SPEC_ID, at, b"{}", SPEC_SIGNATURE, at, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_standard(&other, SPEC_ID, at, SPEC_BODY, SPEC_SIGNATURE, at, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_standard(
                &secret,
                SPEC_ID,
                at,
                SPEC_BODY,
                SPEC_SIGNATURE,
                at + 301,
                300
            ),
            Err(SignatureError::TimestampOutOfTolerance)
        );
        assert_eq!(
            verify_standard(&secret, SPEC_ID, at, SPEC_BODY, "garbage", at, 300),
            Err(SignatureError::MalformedHeader)
        );
    }

    #[test]
    fn x_signature_is_lowercase_hex_hmac_of_the_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let secret = Secret::parse(&format!("whsec_{}", STANDARD.encode(b"Jefe"))).unwrap();
        let body = b"what do ya want for nothing?";
        assert_eq!(
            secret.x_signature(body),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        verify_x_signature(&secret, body, &secret.x_signature(body)).unwrap();
        assert_eq!(
            verify_x_signature(&secret, b"other", &secret.x_signature(body)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn during_a_rotation_either_secret_verifies_both_headers() {
        let new = Secret::generate().unwrap();
        let old = Secret::generate().unwrap();
        let body = br#"{"type":"t"}"#;
        let signed = sign(&[&new, &old], "evt", 100, body);
        assert_eq!(signed.webhook_signature.split(' ').count(), 2);
        assert_eq!(signed.x_signature.split(',').count(), 2);
        for secret in [&new, &old] {
            verify_standard(
                secret,
                "evt",
                100,
                body,
                &signed.webhook_signature,
                100,
                300,
            )
            .unwrap();
            verify_x_signature(secret, body, &signed.x_signature).unwrap();
        }
        let stranger = Secret::generate().unwrap();
        assert!(verify_x_signature(&stranger, body, &signed.x_signature).is_err());
    }

    #[test]
    fn secrets_are_32_random_bytes_and_never_debug_printed() {
        let a = Secret::generate().unwrap();
        assert!(a.expose().starts_with("whsec_"));
        assert_eq!(Secret::parse(a.expose()).unwrap().key.len(), 32);
        assert_ne!(a, Secret::generate().unwrap());
        assert!(!format!("{a:?}").contains(&a.expose()[6..]));
    }

    #[test]
    fn the_published_vectors_reproduce_and_verify() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../../webhook-vectors.json")).unwrap();
        for v in doc["vectors"].as_array().unwrap() {
            let secrets: Vec<Secret> = v["secrets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| Secret::parse(s.as_str().unwrap()).unwrap())
                .collect();
            let (id, ts) = (
                v["webhookId"].as_str().unwrap(),
                v["webhookTimestamp"].as_i64().unwrap(),
            );
            let body = v["body"].as_str().unwrap().as_bytes();
            let signed = sign(&secrets.iter().collect::<Vec<_>>(), id, ts, body);
            assert_eq!(
                signed.webhook_signature, v["webhookSignature"],
                "{}",
                v["name"]
            );
            assert_eq!(signed.x_signature, v["xSignature"], "{}", v["name"]);
            for secret in &secrets {
                verify_standard(secret, id, ts, body, &signed.webhook_signature, ts, 300).unwrap();
                verify_x_signature(secret, body, &signed.x_signature).unwrap();
            }
        }
    }
}

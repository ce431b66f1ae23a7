//! Randomness for jitter, from the operating system.

/// A uniform number in `[0, 1)` (0.5 if the system refuses randomness: jitter is not security).
pub fn random_unit() -> f64 {
    let mut bytes = [0_u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    #[allow(clippy::cast_precision_loss)] // 53 bits of randomness are plenty for jitter
    let unit = (u64::from_le_bytes(bytes) >> 11) as f64 / (1_u64 << 53) as f64;
    unit
}

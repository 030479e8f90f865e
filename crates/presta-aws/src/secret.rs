//! Secret values: generated with the operating system's CSPRNG, never printed.

use std::fmt;

/// A secret string. `Debug` and `Display` print `***`; only [`Secret::expose`] reads it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The value, for the single call that needs it (PutParameter, CreateDBInstance).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Characters of generated passwords: accepted by RDS (which refuses `/ ' " @` and space) and
/// harmless where PrestaShop's entrypoint expands the password unquoted in a shell (no glob,
/// quote, expansion or separator characters).
pub const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.+";

/// A random password of `len` characters from [`ALPHABET`], without modulo bias.
pub fn generate_password(len: usize) -> Result<Secret, getrandom::Error> {
    let n = ALPHABET.len();
    let limit = 256 - (256 % n); // bytes at or above `limit` would bias the result
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf)?;
        for &b in &buf {
            if (b as usize) < limit && out.len() < len {
                out.push(ALPHABET[b as usize % n] as char);
            }
        }
    }
    // RDS and PrestaShop want a letter first; a leading `-` would also read as an option.
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.replace_range(0..1, "P");
    }
    Ok(Secret(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_use_the_safe_alphabet_and_differ() {
        let a = generate_password(32).unwrap();
        let b = generate_password(32).unwrap();
        assert_eq!(a.expose().len(), 32);
        assert_ne!(a, b);
        assert!(a.expose().bytes().all(|c| ALPHABET.contains(&c)));
        assert!(a.expose().starts_with(|c: char| c.is_ascii_alphabetic()));
        for forbidden in ['/', '\'', '"', '@', ' ', '$', '`', '\\', '*', '?', '!'] {
            assert!(!ALPHABET.contains(&(forbidden as u8)), "{forbidden}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2-very-secret".into());
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
    }
}

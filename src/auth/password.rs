//! argon2id password hashing with explicit parameters.

use std::sync::OnceLock;

use argon2::password_hash::PasswordHasher;
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;

use crate::store::StoreError;

/// OWASP's 2024 argon2id recommendation: 19 MiB, 2 passes, 1 lane. About 25 ms on one
/// core of a small server: slow for guessing, cheap enough for a login.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;

/// Random bytes in a generated password (24 bytes = 192 bits, 32 base64url characters).
const GENERATED_BYTES: usize = 24;

pub fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None)
        .unwrap_or_else(|_| unreachable!("the constant parameters are valid"));
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string with a fresh random salt.
pub fn hash(password: &str) -> Result<String, StoreError> {
    hasher()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| StoreError::Crypto(format!("password hashing failed: {e}")))
}

/// A random password for accounts created without one.
pub fn generate() -> Result<String, StoreError> {
    let mut bytes = [0u8; GENERATED_BYTES];
    getrandom::fill(&mut bytes).map_err(|_| StoreError::Crypto("no randomness".into()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A hash of a random password, verified against when the user does not exist so that
/// "no such user" takes as long as "wrong password".
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        generate()
            .and_then(|password| hash(&password))
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordVerifier;

    #[test]
    fn hashes_are_argon2id_with_our_parameters_and_verify() {
        let phc = hash("hunter2").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(hasher().verify_password(b"hunter2", phc.as_str()).is_ok());
        assert!(hasher().verify_password(b"hunter3", phc.as_str()).is_err());
        assert_ne!(hash("hunter2").unwrap(), phc, "salts differ");
    }

    #[test]
    fn generated_passwords_differ() {
        assert_ne!(generate().unwrap(), generate().unwrap());
        assert!(dummy_hash().starts_with("$argon2id$"));
    }
}

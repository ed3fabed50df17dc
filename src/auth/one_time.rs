//! Single-use codes handed to a person: invite codes and the tokens in e-mailed links.
//!
//! A code is 192 random bits, so a plain SHA-256 is enough to store it by: a leaked
//! database yields nothing usable, and no slow hash is needed against guessing.

use sha2::Digest;

use crate::store::StoreError;

/// A fresh code and the hash it is stored under.
pub fn generate() -> Result<(String, [u8; 32]), StoreError> {
    let code = super::password::generate()?;
    let hash = hash(&code);
    Ok((code, hash))
}

/// The stored form of a presented code (surrounding spaces from copy-paste ignored).
pub fn hash(code: &str) -> [u8; 32] {
    sha2::Sha256::digest(code.trim().as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_matches_its_hash_and_only_its_hash() {
        let (code, stored) = generate().unwrap();
        assert_eq!(hash(&format!(" {code}\n")), stored);
        assert_ne!(hash(&generate().unwrap().0), stored);
        assert!(code.len() >= 32);
    }
}

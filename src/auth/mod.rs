//! Authentication. For now: argon2id passwords and HTTP Basic for the admin account;
//! tokens, sessions and roles beyond admin arrive with the accounts work.

pub mod basic;
pub mod password;

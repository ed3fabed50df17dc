//! Authentication and authorisation: argon2id passwords checked under a guessing limit,
//! JWT access tokens with rotating refresh tokens, and the one permission function
//! every handler calls.

pub mod one_time;
pub mod password;
pub mod password_guard;
pub mod permissions;
pub mod tokens;

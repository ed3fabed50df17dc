//! Authentication and authorisation: argon2id passwords, HTTP Basic guarded against
//! guessing, and the one permission function every handler calls. Tokens and sessions
//! arrive with the rest of the accounts work.

pub mod basic;
pub mod password;
pub mod permissions;

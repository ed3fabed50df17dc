//! burnbox: a self-hosted disposable-SMS platform in one binary.
//!
//! The library entry point is [`server::serve`]; `main.rs` only hands over to [`cli`].

pub mod auth;
pub mod cli;
pub mod config;
pub mod diagnostics;
pub mod domain;
pub mod hooks;
pub mod html;
pub mod http;
pub mod listener;
pub mod mail;
pub mod outbound;
pub mod providers;
pub mod realtime;
pub mod sandbox;
pub mod search;
pub mod server;
pub mod store;
pub mod tls;

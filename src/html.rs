//! The little HTML burnbox writes itself (the API page, the pages the mailed links open,
//! search snippets): escaping, one function so every place escapes the same five
//! characters, and the hash that lets a page's one inline style block through its CSP.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Escapes text for element content or a quoted attribute value.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// The CSP source (`'sha256-<base64>'`, quotes included) that allows exactly this
/// inline `<style>` content and nothing else: no `'unsafe-inline'`, so markup injected
/// into a page could not style it either.
pub fn style_source(style: &str) -> String {
    let digest = Sha256::digest(style.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_style_source_is_the_base64_sha256_of_the_style() {
        // echo -n 'b{}' | openssl dgst -sha256 -binary | base64
        assert_eq!(
            style_source("b{}"),
            "'sha256-7yqHVAesot11p6HczDsgKRipvI5UPgs97z80zNXlans='"
        );
    }

    #[test]
    fn escapes_what_could_break_out_of_an_attribute() {
        assert_eq!(
            escape("\"><script>alert('x')</script>&"),
            "&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"
        );
    }
}

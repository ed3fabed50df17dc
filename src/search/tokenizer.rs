//! Tokenizer for SMS text, which mixes space-separated scripts with CJK written without spaces.
//!
//! CJK, Kana and Hangul characters become one token each (unigrams) rather than overlapping
//! bigrams: a one-character query ("码", "원") still matches, and the query parser turns a
//! multi-character query into a phrase over consecutive positions, which is as precise as
//! bigrams while keeping the vocabulary small. Hangul is split too, although Korean uses spaces,
//! because particles attach to words ("인증번호는") and would otherwise hide them.

use std::iter::Peekable;
use std::str::CharIndices;

use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, TextAnalyzer, Token, TokenStream, Tokenizer,
};

/// Name under which the analyzer is registered on the index.
pub(crate) const NAME: &str = "burnbox_sms";

/// Tokens this long are URLs, base64 blobs and the like: nobody searches for them by word, and
/// they would bloat the term dictionary.
const MAX_TOKEN_BYTES: usize = 64;

/// The analyzer used for indexing, querying and snippets alike, so all three agree on terms.
pub(crate) fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SmsTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

#[derive(Clone, Default)]
pub(crate) struct SmsTokenizer {
    token: Token,
}

pub(crate) struct SmsTokenStream<'a> {
    chars: Peekable<CharIndices<'a>>,
    token: &'a mut Token,
}

impl Tokenizer for SmsTokenizer {
    type TokenStream<'a> = SmsTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> SmsTokenStream<'a> {
        self.token.reset();
        SmsTokenStream {
            chars: text.char_indices().peekable(),
            token: &mut self.token,
        }
    }
}

impl TokenStream for SmsTokenStream<'_> {
    fn advance(&mut self) -> bool {
        self.token.text.clear();
        self.token.position = self.token.position.wrapping_add(1);
        while let Some((start, c)) = self.chars.next() {
            if !c.is_alphanumeric() {
                continue;
            }
            self.token.offset_from = start;
            self.token.text.push(c);
            let mut end = start + c.len_utf8();
            if !is_cjk(c) {
                while let Some(&(at, next)) = self.chars.peek() {
                    if is_combining_diacritic(next) {
                        // Dropped, not kept: decomposed (NFD) input then folds to the same term
                        // as precomposed input once AsciiFoldingFilter has run.
                    } else if next.is_alphanumeric() && !is_cjk(next) {
                        self.token.text.push(next);
                    } else {
                        break;
                    }
                    end = at + next.len_utf8();
                    self.chars.next();
                }
            }
            self.token.offset_to = end;
            return true;
        }
        false
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

fn is_combining_diacritic(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F)
}

/// Scripts written without spaces between words (plus Hangul, see the module docs).
fn is_cjk(c: char) -> bool {
    matches!(
        c as u32,
        0x1100..=0x11FF         // Hangul Jamo
            | 0x2E80..=0x2FDF   // CJK and Kangxi radicals
            | 0x3005..=0x3007   // 々 〆 〇
            | 0x3021..=0x3029   // Hangzhou numerals
            | 0x3031..=0x3035   // kana repeat marks
            | 0x3040..=0x30FF   // Hiragana, Katakana
            | 0x3100..=0x31FF   // Bopomofo, Hangul compatibility Jamo, Katakana extension
            | 0x3400..=0x4DBF   // CJK extension A
            | 0x4E00..=0x9FFF   // CJK unified ideographs
            | 0xA960..=0xA97F   // Hangul Jamo extended A
            | 0xAC00..=0xD7FF   // Hangul syllables, Jamo extended B
            | 0xF900..=0xFAFF   // CJK compatibility ideographs
            | 0xFF66..=0xFFDC   // half-width Katakana and Hangul
            | 0x1B000..=0x1B16F // Kana supplement and extensions
            | 0x20000..=0x3134F // CJK extensions B to G
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<(String, usize, usize, usize)> {
        let mut analyzer = analyzer();
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while let Some(t) = stream.next() {
            out.push((t.text.clone(), t.position, t.offset_from, t.offset_to));
        }
        out
    }

    fn texts(text: &str) -> Vec<String> {
        tokens(text).into_iter().map(|t| t.0).collect()
    }

    #[test]
    fn splits_words_and_cjk() {
        assert_eq!(
            texts("您的验证码是123456"),
            ["您", "的", "验", "证", "码", "是", "123456"]
        );
        assert_eq!(
            texts("[Web발신] 인증번호"),
            ["web", "발", "신", "인", "증", "번", "호"]
        );
        assert_eq!(texts("Hello, WORLD!"), ["hello", "world"]);
        assert_eq!(
            texts("認証コード: 4711"),
            ["認", "証", "コ", "ー", "ド", "4711"]
        );
    }

    #[test]
    fn folds_case_and_accents_in_both_normal_forms() {
        assert_eq!(texts("Código"), ["codigo"]);
        assert_eq!(texts("Co\u{301}digo"), ["codigo"]);
    }

    #[test]
    fn offsets_and_positions_point_into_the_text() {
        let text = "a 验证 Ünï";
        let toks = tokens(text);
        let positions: Vec<usize> = toks.iter().map(|t| t.1).collect();
        assert_eq!(positions, [0, 1, 2, 3]);
        let slices: Vec<&str> = toks.iter().map(|t| &text[t.2..t.3]).collect();
        assert_eq!(slices, ["a", "验", "证", "Ünï"]);
    }

    #[test]
    fn drops_overlong_tokens_and_punctuation_only_input() {
        assert!(texts(&"x".repeat(MAX_TOKEN_BYTES + 1)).is_empty());
        assert!(texts("  !!! ... ").is_empty());
        assert!(texts("").is_empty());
    }
}

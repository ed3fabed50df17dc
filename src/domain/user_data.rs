//! The octets of a binary SMS, read as text.
//!
//! The webhooks that deliver binary SMS (Vonage `type=binary`, Sinch `mo_binary`) carry
//! the octets and the header but not the data coding scheme, so the reading is chosen
//! from the octets, once the message is whole (or given up on, with gaps):
//!
//! 1. printable UTF-8 (ASCII included): 8-bit data that is plain text, such as an app's
//!    port-addressed SMS, is shown as it is;
//! 2. else printable UTF-16BE (UCS-2, what phones send for text GSM-7 cannot hold): text
//!    in Latin script has a zero octet in every other place and Cyrillic, Greek, Arabic,
//!    emoji… have octets that are not UTF-8, so they fail the first test and land here;
//! 3. else it is not text (a WAP push, a SIM update): shown as lowercase hex and flagged
//!    binary, never dropped.
//!
//! Rare UCS-2 text made only of CJK characters whose octets happen to be printable ASCII
//! reads as ASCII; without a coding scheme in the webhook no rule can tell them apart.

use std::char::REPLACEMENT_CHARACTER;

/// How a message's octets are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    Utf8,
    Ucs2,
    /// Not text: lowercase hex.
    Hex,
}

/// A stretch of a message's octets: parts in a row, with a part that never arrived
/// before or after it or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run<'o> {
    pub octets: &'o [u8],
    /// A missing part comes just before: the run may start inside a character.
    pub gap_before: bool,
    /// A missing part comes just after: the run may end inside a character.
    pub gap_after: bool,
}

impl<'o> Run<'o> {
    /// The octets of a message that is all there.
    pub fn whole(octets: &'o [u8]) -> Self {
        Self {
            octets,
            gap_before: false,
            gap_after: false,
        }
    }
}

impl Reading {
    /// The one reading that fits every run of a message. A character cut in two by a
    /// missing part is allowed at that edge of a run; anywhere else the octets must be
    /// whole, printable characters.
    pub fn of(runs: &[Run<'_>]) -> Self {
        if runs.iter().all(|run| utf8_text(*run)) {
            return Self::Utf8;
        }
        if runs.iter().all(|run| ucs2_text(*run)) {
            Self::Ucs2
        } else {
            Self::Hex
        }
    }

    /// `run` as text in this reading (a character cut by a gap becomes U+FFFD).
    pub fn text(self, run: &[u8]) -> String {
        match self {
            Self::Utf8 => String::from_utf8_lossy(run).into_owned(),
            Self::Ucs2 => char::decode_utf16(units(run))
                .map(|c| c.unwrap_or(REPLACEMENT_CHARACTER))
                .collect(),
            Self::Hex => hex::encode(run),
        }
    }

    /// Whether the text is the octets in hex rather than something to read.
    pub fn is_binary(self) -> bool {
        self == Self::Hex
    }
}

/// A character a message may hold: no control characters but line breaks and tabs, no
/// private-use characters, no noncharacters (U+FFFE is a byte-swapped byte order mark:
/// the wrong reading). Octets that are not text rarely avoid all of these for long.
fn printable(c: char) -> bool {
    (!c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        && !matches!(c, '\u{E000}'..='\u{F8FF}' | '\u{FFFE}' | '\u{FFFF}')
}

/// Whether the run is UTF-8 text; at an edge next to a missing part, the rest of a
/// character begun in it (up to three continuation octets) or the start of one ended in
/// it may stand.
fn utf8_text(run: Run<'_>) -> bool {
    let mut octets = run.octets;
    if run.gap_before {
        let tail = octets
            .iter()
            .take(3)
            .take_while(|&&octet| octet & 0xc0 == 0x80)
            .count();
        octets = &octets[tail..];
    }
    let whole = match std::str::from_utf8(octets) {
        Ok(_) => octets,
        // No invalid sequence, only an unfinished one at the end.
        Err(error) if run.gap_after && error.error_len().is_none() => {
            &octets[..error.valid_up_to()]
        }
        Err(_) => return false,
    };
    std::str::from_utf8(whole).is_ok_and(|text| text.chars().all(printable))
}

fn units(run: &[u8]) -> impl Iterator<Item = u16> + '_ {
    run.chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
}

/// Whether the run is UTF-16BE text; at an edge next to a missing part, half a
/// surrogate pair may stand.
fn ucs2_text(run: Run<'_>) -> bool {
    if !run.octets.len().is_multiple_of(2) {
        return false;
    }
    let decoded: Vec<_> = char::decode_utf16(units(run.octets)).collect();
    let last = decoded.len().saturating_sub(1);
    decoded.iter().enumerate().all(|(i, c)| match c {
        Ok(c) => printable(*c),
        Err(_) => (run.gap_before && i == 0) || (run.gap_after && i == last),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ucs2(text: &str) -> Vec<u8> {
        text.encode_utf16().flat_map(u16::to_be_bytes).collect()
    }

    fn read(octets: &[u8]) -> (Reading, String) {
        let reading = Reading::of(&[Run::whole(octets)]);
        (reading, reading.text(octets))
    }

    #[test]
    fn plain_8_bit_text_reads_as_it_is() {
        assert_eq!(
            read(b"Your code is 481516\n"),
            (Reading::Utf8, "Your code is 481516\n".into())
        );
        assert_eq!(read(b""), (Reading::Utf8, String::new()));
    }

    #[test]
    fn ucs2_text_reads_as_utf16() {
        for text in ["Hello", "Ваш код: 731946", "كود 55", "😀 ok", "Ω≈ç"] {
            assert_eq!(read(&ucs2(text)), (Reading::Ucs2, text.into()), "{text}");
        }
    }

    #[test]
    fn data_that_is_not_text_is_hex_and_binary() {
        // A WAP push (WSP header, then a WBXML service indication), and octets with a
        // lone surrogate.
        let push = hex::decode(
            "25060aaeaf848d9f8702056a0045c60c036578616d706c652e636f6d2f78000801035570646174650001\
             0101",
        )
        .unwrap();
        let (reading, text) = read(&push);
        assert_eq!(reading, Reading::Hex);
        assert!(reading.is_binary());
        assert_eq!(text, hex::encode(&push));
        assert_eq!(read(&[0xd8, 0x3d, 0x00, 0x41]).0, Reading::Hex);
        assert_eq!(read(&[0x00, 0x41, 0x00]).0, Reading::Hex, "odd length");
        assert_eq!(read(&[0xff, 0xfe, 0x41, 0x00]).0, Reading::Hex, "swapped");
        assert_eq!(
            read(&[0xe0, 0x01, 0x00, 0x41]).0,
            Reading::Hex,
            "private use"
        );
    }

    fn run(octets: &[u8], gap_before: bool, gap_after: bool) -> Run<'_> {
        Run {
            octets,
            gap_before,
            gap_after,
        }
    }

    #[test]
    fn an_emoji_cut_by_a_missing_part_is_tolerated_only_at_the_gap() {
        let whole = ucs2("ab😀cd");
        // "ab" + high surrogate | (gap) | low surrogate + "cd"
        let (before, after) = whole.split_at(6);
        let reading = Reading::of(&[run(before, false, true), run(after, true, false)]);
        assert_eq!(reading, Reading::Ucs2);
        assert_eq!(reading.text(before), "ab\u{FFFD}");
        assert_eq!(reading.text(after), "\u{FFFD}cd");
        // Without a gap the same halves are not text.
        assert_eq!(Reading::of(&[Run::whole(before)]), Reading::Hex);
        assert_eq!(Reading::of(&[Run::whole(after)]), Reading::Hex);
        // The gap must be on the side that is cut.
        assert_eq!(Reading::of(&[run(before, true, false)]), Reading::Hex);
        assert_eq!(Reading::of(&[run(after, false, true)]), Reading::Hex);
    }

    #[test]
    fn a_utf8_character_cut_by_a_missing_part_is_tolerated_only_at_the_gap() {
        let whole = "Grüße 4821".as_bytes();
        // "Gr" + the first octet of "ü" | (gap) | its second octet + "ße 4821"
        let (before, after) = whole.split_at(3);
        let reading = Reading::of(&[run(before, false, true), run(after, true, false)]);
        assert_eq!(reading, Reading::Utf8);
        assert_eq!(reading.text(before), "Gr\u{FFFD}");
        assert_eq!(reading.text(after), "\u{FFFD}ße 4821");
        assert_eq!(Reading::of(&[Run::whole(before)]), Reading::Hex);
        assert_eq!(Reading::of(&[run(after, false, true)]), Reading::Hex);
        // More than a character's worth of continuation octets is not a cut character.
        assert_eq!(
            Reading::of(&[run(&[0x80, 0x80, 0x80, 0x80, b'a'], true, false)]),
            Reading::Hex
        );
    }
}

//! Putting the parts of a multipart message back together into its text.

use super::records::{PartBody, SealedPartV2};
use crate::domain::user_data::{Reading, Run};

/// Marks where a part that never arrived would have been.
pub(super) const GAP: &str = "[…]";

/// A message's text put together from its parts.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Joined {
    pub text: String,
    /// Some part never arrived: the text has a [`GAP`] for it.
    pub partial: bool,
    /// Binary parts whose octets are not text: the text shows them in hex.
    pub binary: bool,
}

/// One stretch of the message: a text part, consecutive binary parts' octets, or a gap.
enum Piece<'p> {
    Text(&'p str),
    Data(Vec<u8>),
    Gap,
}

/// The binary stretches of a message, each with whether a missing part borders it:
/// only there may a character be cut.
fn runs<'p>(pieces: &'p [Piece<'_>]) -> Vec<Run<'p>> {
    let gap = |at: Option<usize>| {
        at.and_then(|at| pieces.get(at))
            .is_some_and(|piece| matches!(piece, Piece::Gap))
    };
    pieces
        .iter()
        .enumerate()
        .filter_map(|(at, piece)| match piece {
            Piece::Data(octets) => Some(Run {
                octets,
                gap_before: gap(at.checked_sub(1)),
                gap_after: gap(Some(at + 1)),
            }),
            Piece::Text(_) | Piece::Gap => None,
        })
        .collect()
}

/// Joins parts `1..=last` in order (`parts` in any order, without repeats), with a
/// [`GAP`] where one is missing. Binary parts are joined as octets and read only then,
/// in one reading for the whole message: a UCS-2 character, or an emoji's surrogate
/// pair, can straddle two parts, and reading parts one by one would break it.
pub(super) fn join(parts: &[SealedPartV2], last: u8) -> Joined {
    let mut pieces: Vec<Piece<'_>> = Vec::new();
    for index in 1..=last {
        match parts
            .iter()
            .find(|part| part.index == index)
            .map(|p| &p.body)
        {
            Some(PartBody::Text(text)) => pieces.push(Piece::Text(text)),
            Some(PartBody::Data(data)) => match pieces.last_mut() {
                Some(Piece::Data(run)) => run.extend_from_slice(data),
                _ => pieces.push(Piece::Data(data.clone())),
            },
            None => pieces.push(Piece::Gap),
        }
    }
    let runs = runs(&pieces);
    let reading = Reading::of(&runs);
    let mut text = String::new();
    for piece in &pieces {
        match piece {
            Piece::Text(part) => text.push_str(part),
            Piece::Data(run) => text.push_str(&reading.text(run)),
            Piece::Gap => text.push_str(GAP),
        }
    }
    Joined {
        text,
        partial: pieces.iter().any(|piece| matches!(piece, Piece::Gap)),
        binary: !runs.is_empty() && reading.is_binary(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(index: u8, body: PartBody) -> SealedPartV2 {
        SealedPartV2 {
            index,
            provider_message_id: format!("p{index}"),
            dedupe: [index; 32],
            body,
        }
    }

    fn ucs2(text: &str) -> Vec<u8> {
        text.encode_utf16().flat_map(u16::to_be_bytes).collect()
    }

    #[test]
    fn text_parts_join_in_order_with_gaps() {
        let parts = [
            part(3, PartBody::Text("c".into())),
            part(1, PartBody::Text("a".into())),
        ];
        assert_eq!(
            join(&parts, 3),
            Joined {
                text: "a[…]c".into(),
                partial: true,
                binary: false
            }
        );
    }

    #[test]
    fn an_emoji_split_between_binary_parts_comes_out_whole() {
        let octets = ucs2("Code 4821 😀 ok");
        // Cut between the two halves of the surrogate pair (octets 20..24).
        let (first, second) = octets.split_at(22);
        let parts = [
            part(2, PartBody::Data(second.to_vec())),
            part(1, PartBody::Data(first.to_vec())),
        ];
        assert_eq!(
            join(&parts, 2),
            Joined {
                text: "Code 4821 😀 ok".into(),
                partial: false,
                binary: false
            }
        );
    }

    #[test]
    fn a_gap_in_binary_parts_keeps_the_reading_of_the_rest() {
        let octets = ucs2("ab😀cd|ef");
        let parts = [
            part(1, PartBody::Data(octets[..6].to_vec())),
            part(3, PartBody::Data(octets[12..].to_vec())),
        ];
        let joined = join(&parts, 3);
        assert_eq!(joined.text, "ab\u{FFFD}[…]|ef");
        assert!(joined.partial && !joined.binary);
    }

    #[test]
    fn a_character_cut_by_a_missing_first_part_is_allowed_at_that_gap_only() {
        // UCS-2: part 1 is missing and part 2 starts with the low half of an emoji.
        let octets = ucs2("ab😀cd");
        let joined = join(&[part(2, PartBody::Data(octets[6..].to_vec()))], 2);
        assert_eq!(joined.text, "[…]\u{FFFD}cd");
        assert!(joined.partial && !joined.binary);
        // UTF-8: part 2 is missing, and it took the rest of "ü" with it.
        let octets = "Grüße!".as_bytes();
        let parts = [
            part(1, PartBody::Data(octets[..3].to_vec())),
            part(3, PartBody::Data(octets[3..].to_vec())),
        ];
        assert_eq!(join(&parts, 3).text, "Gr\u{FFFD}[…]\u{FFFD}ße!");
        // With no gap beside it, the same cut is not text.
        let parts = [
            part(1, PartBody::Data(octets[3..].to_vec())),
            part(2, PartBody::Text("!".into())),
        ];
        assert!(join(&parts, 2).binary);
    }

    #[test]
    fn binary_parts_that_are_not_text_are_hex_and_flagged() {
        let parts = [
            part(1, PartBody::Data(vec![0x01, 0x00])),
            part(2, PartBody::Data(vec![0xff])),
        ];
        assert_eq!(
            join(&parts, 2),
            Joined {
                text: "0100ff".into(),
                partial: false,
                binary: true
            }
        );
    }
}

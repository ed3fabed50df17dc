//! The User Data Header of a binary SMS (3GPP TS 23.040 §9.2.3.24): a length octet, then
//! information elements, each `IEI, length, data`. We read the concatenation elements,
//! which say where a part belongs in a longer message, and step over every other element
//! by its length (application ports, national language shifts, …).

/// The concatenation element with an 8-bit reference: `00 03 ref total sequence`.
const CONCAT_8: u8 = 0x00;
/// The concatenation element with a 16-bit reference: `08 04 ref ref total sequence`.
const CONCAT_16: u8 = 0x08;

/// Where a part belongs, from its concatenation element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concat {
    /// The sender's reference, shared by every part of one message.
    pub reference: Reference,
    /// How many parts the message has (1–255).
    pub total: u8,
    /// Which part this is, from 1.
    pub sequence: u8,
}

/// The two reference sizes are separate numbering schemes: part of 8-bit message 7 and
/// part of 16-bit message 7 are not of the same message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    Eight(u8),
    Sixteen(u16),
}

impl Reference {
    /// The reference as the multipart store keys it; the prefixes keep the two schemes,
    /// and a provider's own concatenation ids, apart.
    pub fn key(self) -> String {
        match self {
            Self::Eight(reference) => format!("udh8:{reference}"),
            Self::Sixteen(reference) => format!("udh16:{reference}"),
        }
    }
}

/// What a User Data Header tells us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UserDataHeader {
    /// Set when the SMS is one part of a longer message.
    pub concat: Option<Concat>,
}

/// A header whose structure is broken: where the elements end, and so where the data
/// begins, cannot be known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UdhError {
    #[error("the user data header's length octet says {said} octets but {found} follow")]
    Length { said: usize, found: usize },
    #[error("information element {iei:#04x} runs past the end of the user data header")]
    Truncated { iei: u8 },
}

/// Reads a User Data Header, its length octet (UDHL) included; empty means none.
///
/// A header whose structure contradicts itself (wrong length octet, an element that
/// overruns it) is an error rather than a guess: putting a message together from misread
/// parts would store nonsense. A concatenation element that is well delimited but
/// unusable (the wrong size, total 0, part 0 or past the total) is ignored, as
/// §9.2.3.24.1 tells the receiver to, and the SMS stands alone. When a concatenation
/// element appears more than once, the last usable one counts (§9.2.3.24: a repeated
/// element overrides the earlier occurrence).
pub fn parse(header: &[u8]) -> Result<UserDataHeader, UdhError> {
    let Some((&length, mut elements)) = header.split_first() else {
        return Ok(UserDataHeader::default());
    };
    if usize::from(length) != elements.len() {
        return Err(UdhError::Length {
            said: usize::from(length),
            found: elements.len(),
        });
    }
    let mut concat = None;
    while let [iei, length, rest @ ..] = elements {
        let length = usize::from(*length);
        if rest.len() < length {
            return Err(UdhError::Truncated { iei: *iei });
        }
        let (data, next) = rest.split_at(length);
        match *iei {
            CONCAT_8 | CONCAT_16 => concat = concat_of(*iei, data).or(concat),
            _ => {}
        }
        elements = next;
    }
    if let [iei] = elements {
        // One octet left: an element identifier without its length.
        return Err(UdhError::Truncated { iei: *iei });
    }
    Ok(UserDataHeader { concat })
}

/// The place a concatenation element gives, if it gives a usable one: the size its
/// identifier calls for, and a part number within a total of at least one.
fn concat_of(iei: u8, data: &[u8]) -> Option<Concat> {
    let (reference, total, sequence) = match (iei, data) {
        (CONCAT_8, &[reference, total, sequence]) => (Reference::Eight(reference), total, sequence),
        (CONCAT_16, &[high, low, total, sequence]) => (
            Reference::Sixteen(u16::from_be_bytes([high, low])),
            total,
            sequence,
        ),
        _ => return None,
    };
    (1..=total).contains(&sequence).then_some(Concat {
        reference,
        total,
        sequence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udh(hex: &str) -> Result<UserDataHeader, UdhError> {
        parse(&hex::decode(hex).unwrap())
    }

    fn concat(reference: Reference, total: u8, sequence: u8) -> UserDataHeader {
        UserDataHeader {
            concat: Some(Concat {
                reference,
                total,
                sequence,
            }),
        }
    }

    #[test]
    fn reads_8_bit_reference_concatenation() {
        assert_eq!(
            udh("050003a70302").unwrap(),
            concat(Reference::Eight(0xa7), 3, 2)
        );
    }

    #[test]
    fn reads_16_bit_reference_concatenation() {
        assert_eq!(
            udh("0608041234ff01").unwrap(),
            concat(Reference::Sixteen(0x1234), 255, 1)
        );
    }

    #[test]
    fn steps_over_other_elements_by_their_length() {
        // Application ports (05), then concatenation, then a national language single
        // shift (24).
        assert_eq!(
            udh("0e05040b8423f00003070201240101").unwrap(),
            concat(Reference::Eight(7), 2, 1)
        );
        // Element 0x70 holds octets that look like a concatenation element: they are its
        // data, not an element.
        assert_eq!(udh("0770050003090201").unwrap(), UserDataHeader::default());
        assert_eq!(udh("06050415811581").unwrap(), UserDataHeader::default());
    }

    #[test]
    fn an_empty_header_is_no_header_and_the_last_concat_element_counts() {
        assert_eq!(parse(&[]).unwrap(), UserDataHeader::default());
        assert_eq!(udh("00").unwrap(), UserDataHeader::default());
        assert_eq!(
            udh("0b0003010201080400050302").unwrap(),
            concat(Reference::Sixteen(5), 3, 2)
        );
    }

    #[test]
    fn malformed_or_truncated_headers_are_refused() {
        let cases = [
            // The length octet promises more than there is, or less.
            ("05000301", UdhError::Length { said: 5, found: 3 }),
            ("0300030102", UdhError::Length { said: 3, found: 4 }),
            // An element whose length runs past the header.
            ("0405040b84", UdhError::Truncated { iei: 0x05 }),
            // An identifier with no length octet after it.
            ("0505020b8424", UdhError::Truncated { iei: 0x24 }),
        ];
        for (hex, expected) in cases {
            assert_eq!(udh(hex).unwrap_err(), expected, "{hex}");
        }
    }

    #[test]
    fn unusable_concatenation_elements_are_ignored() {
        // §9.2.3.24.1: total 0, part 0 or a part past the total: the receiver ignores
        // the element. So is one of the wrong size for its identifier.
        for hex in [
            "050003010300",
            "050003010204",
            "050003010000",
            "0400020102",
            "050803010201",
            "06000401020102",
        ] {
            assert_eq!(udh(hex).unwrap(), UserDataHeader::default(), "{hex}");
        }
        // An ignored element does not undo a usable one before it.
        assert_eq!(
            udh("0a0003070201000307020a").unwrap(),
            concat(Reference::Eight(7), 2, 1)
        );
    }

    #[test]
    fn references_of_the_two_sizes_are_kept_apart() {
        assert_ne!(Reference::Eight(7).key(), Reference::Sixteen(7).key());
        assert_eq!(Reference::Sixteen(0x1234).key(), "udh16:4660");
    }
}

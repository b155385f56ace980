//! The one DER reader (ITU-T X.690 §10), as strict as its callers need: a tag byte, the
//! shortest-form length (at most 3 length bytes: nothing read here is 16 MiB), the content. Used
//! for RSA SubjectPublicKeyInfo in token-key entries and for the validity of Nitro certificates;
//! signatures over certificates are webpki's.

/// Takes one element from the front of `input`: its tag and content, `input` moved past it.
/// `None` when the bytes are not one DER element.
pub fn take<'a>(input: &mut &'a [u8]) -> Option<(u8, &'a [u8])> {
    let &[tag, first, ref rest @ ..] = *input else {
        return None;
    };
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 || rest.len() < n || rest[0] == 0 {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        // The shortest length form: a long form only for 128 and above.
        if len < 0x80 {
            return None;
        }
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let (content, tail) = rest.split_at(len);
    *input = tail;
    Some((tag, content))
}

/// Takes one element with tag `tag`; its content.
pub fn expect<'a>(input: &mut &'a [u8], tag: u8) -> Option<&'a [u8]> {
    match take(input)? {
        (t, content) if t == tag => Some(content),
        _ => None,
    }
}

/// The significant bytes of a DER INTEGER's content that must be positive and minimal: no
/// leading zero byte unless the next has its top bit set; zero and negatives refused.
pub fn positive_integer(content: &[u8]) -> Option<&[u8]> {
    match content {
        [] | [0] => None,
        [0, next, ..] if *next < 0x80 => None,
        [0, rest @ ..] => Some(rest),
        [first, ..] if *first >= 0x80 => None,
        _ => Some(content),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_lengths() {
        let mut input: &[u8] = &[0x30, 0x02, 0x05, 0x00, 0xff];
        assert_eq!(take(&mut input), Some((0x30, &[0x05, 0x00][..])));
        assert_eq!(input, &[0xff]);
        // Long form: 0x81 0x80 is 128 bytes; 0x81 0x05 is a non-minimal 5.
        let long = [&[0x04, 0x81, 0x80][..], &[7; 128]].concat();
        assert_eq!(expect(&mut &long[..], 0x04).map(<[u8]>::len), Some(128));
        assert_eq!(take(&mut &[0x04, 0x81, 0x05, 1, 2, 3, 4, 5][..]), None);
        assert_eq!(take(&mut &[0x04, 0x82, 0x00, 0x80][..]), None);
        // Indefinite length, too many length bytes, truncated content, wrong tag.
        assert_eq!(take(&mut &[0x30, 0x80, 0, 0][..]), None);
        assert_eq!(take(&mut &[0x04, 0x84, 1, 0, 0, 0][..]), None);
        assert_eq!(take(&mut &[0x04, 0x03, 1][..]), None);
        assert_eq!(expect(&mut &[0x04, 0x00][..], 0x30), None);
    }

    #[test]
    fn positive_minimal_integers() {
        assert_eq!(positive_integer(&[0x01]), Some(&[0x01][..]));
        assert_eq!(positive_integer(&[0x00, 0x80]), Some(&[0x80][..]));
        for bad in [&[][..], &[0], &[0, 1], &[0x80]] {
            assert_eq!(positive_integer(bad), None, "{bad:?}");
        }
    }
}

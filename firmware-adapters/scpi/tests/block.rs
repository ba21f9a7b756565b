//! IEEE 488.2 definite-length blocks: round trips and malformed blocks.

use spinloop_scpi::ScpiError;
use spinloop_scpi::block::{
    BlockHeader, block_header, decode_block, decode_exact_block, encode_block, parse_block_header,
};

#[test]
fn encodes_shortest_header() {
    assert_eq!(encode_block(b"ABCD"), b"#14ABCD");
    assert_eq!(encode_block(b""), b"#10");
    assert_eq!(block_header(16384), b"#516384");
    assert_eq!(block_header(999_999_999), b"#9999999999");
    let data = vec![0xAAu8; 1024];
    let b = encode_block(&data);
    assert!(b.starts_with(b"#41024"));
    assert_eq!(b.len(), 6 + 1024);
}

#[test]
fn decodes_with_leading_zeros_and_trailing_bytes() {
    assert_eq!(decode_block(b"#3004ABCDrest").unwrap(), (&b"ABCD"[..], 9));
    assert_eq!(decode_block(b"#10").unwrap(), (&b""[..], 3));
    // Data may contain LF, '#', quotes: taken by count.
    assert_eq!(decode_block(b"#15\n#\"0;x").unwrap(), (&b"\n#\"0;"[..], 8));
}

#[test]
fn round_trips_binary_data() {
    let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let enc = encode_block(&data);
    assert!(enc.starts_with(b"#570000"));
    let (dec, used) = decode_block(&enc).unwrap();
    assert_eq!(dec, data.as_slice());
    assert_eq!(used, enc.len());
}

#[test]
fn rejects_indefinite_block_clearly() {
    let e = decode_block(b"#0ABCD\n").unwrap_err();
    assert_eq!(e, ScpiError::IndefiniteBlock);
    assert!(e.to_string().contains("indefinite-length block (#0)"));
    assert_eq!(parse_block_header(b"#0"), Err(ScpiError::IndefiniteBlock));
}

#[test]
fn rejects_malformed_headers() {
    assert_eq!(
        decode_block(b"14ABCD"),
        Err(ScpiError::NotABlock { found: b'1' })
    );
    assert!(matches!(
        decode_block(b"#A4ABCD"),
        Err(ScpiError::BadBlockHeader(_))
    ));
    assert!(matches!(
        decode_block(b"#2x4AB"),
        Err(ScpiError::BadBlockHeader(_))
    ));
    assert!(matches!(
        decode_block(b"#3"),
        Err(ScpiError::BadBlockHeader(_))
    ));
    assert!(matches!(
        decode_block(b"#31"),
        Err(ScpiError::BadBlockHeader(_))
    ));
    assert_eq!(decode_block(b""), Err(ScpiError::Empty));
}

#[test]
fn rejects_truncated_data() {
    assert_eq!(
        decode_block(b"#15ABC"),
        Err(ScpiError::TruncatedBlock {
            declared: 5,
            available: 3
        })
    );
}

#[test]
fn header_parser_reports_incomplete_prefixes() {
    assert_eq!(parse_block_header(b""), Ok(None));
    assert_eq!(parse_block_header(b"#"), Ok(None));
    assert_eq!(parse_block_header(b"#41"), Ok(None));
    assert_eq!(
        parse_block_header(b"#41024"),
        Ok(Some(BlockHeader {
            header_len: 6,
            data_len: 1024
        }))
    );
    assert!(parse_block_header(b"#4x").is_err());
}

#[test]
fn exact_block_allows_only_a_terminator_after() {
    assert_eq!(decode_exact_block(b"#12AB").unwrap(), b"AB");
    assert_eq!(decode_exact_block(b"#12AB\n").unwrap(), b"AB");
    assert_eq!(decode_exact_block(b"#12AB\r\n").unwrap(), b"AB");
    assert_eq!(
        decode_exact_block(b"#12ABC\n"),
        Err(ScpiError::TrailingData { count: 1 })
    );
}

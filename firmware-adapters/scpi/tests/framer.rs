//! Message framing on a byte stream.

use spinloop_scpi::ScpiError;
use spinloop_scpi::framer::Framer;

fn drain(f: &mut Framer) -> Vec<Result<Vec<u8>, ScpiError>> {
    std::iter::from_fn(|| f.next_message()).collect()
}

#[test]
fn splits_lines_and_strips_cr() {
    let mut f = Framer::new(100, false);
    f.push(b"1\r\n+0,\"No error\"\nparti");
    assert_eq!(
        drain(&mut f),
        [Ok(b"1".to_vec()), Ok(b"+0,\"No error\"".to_vec())]
    );
    assert_eq!(f.buffered(), 5);
    f.push(b"al\n");
    assert_eq!(drain(&mut f), [Ok(b"partial".to_vec())]);
}

#[test]
fn line_mode_ignores_hash() {
    let mut f = Framer::new(100, false);
    f.push(b"ACME,X,#15\nrest\n");
    assert_eq!(
        drain(&mut f),
        [Ok(b"ACME,X,#15".to_vec()), Ok(b"rest".to_vec())]
    );
}

#[test]
fn block_mode_carries_lf_inside_blocks() {
    let mut f = Framer::new(100, true);
    f.push(b"#13\n\n\n");
    assert_eq!(drain(&mut f), []);
    f.push(b"\n");
    assert_eq!(drain(&mut f), [Ok(b"#13\n\n\n".to_vec())]);
    // '#' inside a quoted string or a word is text.
    f.push(b"A \"#12\"\nB x#12\n");
    assert_eq!(
        drain(&mut f),
        [Ok(b"A \"#12\"".to_vec()), Ok(b"B x#12".to_vec())]
    );
    // Non-decimal numbers and #0 are text too.
    f.push(b"X #HFF,#0\n");
    assert_eq!(drain(&mut f), [Ok(b"X #HFF,#0".to_vec())]);
}

#[test]
fn oversize_line_is_discarded_up_to_lf() {
    let mut f = Framer::new(8, false);
    f.push(b"0123456789");
    assert_eq!(drain(&mut f), [Err(ScpiError::MessageTooLong { max: 8 })]);
    f.push(b"abc\nok\n");
    assert_eq!(drain(&mut f), [Ok(b"ok".to_vec())]);
}

#[test]
fn oversize_block_is_skipped_by_count() {
    let mut f = Framer::new(16, true);
    f.push(b"#240");
    assert_eq!(drain(&mut f), [Err(ScpiError::MessageTooLong { max: 16 })]);
    // 40 data bytes full of LFs are skipped without being buffered, then up to LF.
    f.push(&[b'\n'; 25]);
    f.push(&[b'\n'; 15]);
    assert_eq!(f.buffered(), 0);
    f.push(b"tail\nnext\n");
    assert_eq!(drain(&mut f), [Ok(b"next".to_vec())]);
}

#[test]
fn clear_drops_partial_input() {
    let mut f = Framer::new(100, true);
    f.push(b"#15ab");
    f.clear();
    f.push(b"ok\n");
    assert_eq!(drain(&mut f), [Ok(b"ok".to_vec())]);
}

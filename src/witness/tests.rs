use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::*;

fn stored(size: u64, root: u8) -> Stored {
    Stored {
        size,
        root: [root; 32],
        note: String::new(),
    }
}

#[test]
fn requests_are_parsed_strictly() {
    let checkpoint = "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— o AAAA\n";
    let hash = STANDARD.encode([7u8; 32]);
    let body = format!("old 5\n{hash}\n{hash}\n\n{checkpoint}");
    let request = parse_request(&body).expect("parses");
    assert_eq!((request.old, request.proof), (5, vec![[7; 32], [7; 32]]));
    assert_eq!(request.checkpoint, checkpoint);
    for bad in [
        format!("old 05\n\n{checkpoint}"),
        format!("old -1\n\n{checkpoint}"),
        format!("new 5\n\n{checkpoint}"),
        format!("old 5\nnot base64!\n\n{checkpoint}"),
        format!("old 5\n{}\n\n{checkpoint}", STANDARD.encode([1u8; 31])),
        format!("old 5\n{checkpoint}"),
        format!("old 5\n{}\n{checkpoint}", format!("{hash}\n").repeat(64)),
    ] {
        assert!(
            matches!(parse_request(&bad), Err(WitnessError::BadRequest(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn the_old_size_must_be_the_last_cosigned_one() {
    // Never cosigned: only old 0, with an empty proof.
    assert_eq!(check(None, 0, &[], &stored(3, 1)), Ok(()));
    assert_eq!(
        check(None, 2, &[], &stored(3, 1)),
        Err(WitnessError::Conflict(0))
    );
    assert!(matches!(
        check(None, 0, &[[0; 32]], &stored(3, 1)),
        Err(WitnessError::BadRequest(_))
    ));
    // Cosigned size 3: old 0 or 2 is told 3.
    let last = stored(3, 1);
    for old in [0, 2] {
        assert_eq!(
            check(Some(&last), old, &[], &stored(5, 2)),
            Err(WitnessError::Conflict(3))
        );
    }
    // The same size again: only the same root (a second cosignature of one tree).
    assert_eq!(check(Some(&last), 3, &[], &stored(3, 1)), Ok(()));
    assert_eq!(
        check(Some(&last), 3, &[], &stored(3, 9)),
        Err(WitnessError::Conflict(3))
    );
    // A larger tree needs a consistency proof that verifies.
    assert!(matches!(
        check(Some(&last), 3, &[[0; 32]], &stored(5, 2)),
        Err(WitnessError::Inconsistent(_))
    ));
}

//! C2SP tlog-tiles (pure): tile and entry-bundle paths, which tiles a tree size has, and the
//! entry-bundle encoding. The daemon serves the log in this layout under `/log`; verifiers and the
//! WORM mirror read it back with the same code.
//!
//! A tile at level `L`, index `N` holds the Merkle Tree Hashes of the complete subtrees of height
//! `8L` with node indices `256N ..`, 256 of them when full; a partial tile holds the first `W`.
use crate::checkpoint::canonical_decimal;
use crate::merkle::Hash;

/// Hashes in a full tile, entries in a full bundle.
pub const TILE_WIDTH: u64 = 256;
/// The longest entry an entry bundle can hold (its length is a big-endian uint16).
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;
/// The highest tile level (`8 * 63` would pass any tree a u64 can count).
pub const MAX_LEVEL: u8 = 63;

/// What a tile path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TilePath {
    /// `tile/<L>/<N>[.p/<W>]`: Merkle Tree Hashes.
    Hashes {
        /// Tile level.
        level: u8,
        /// Tile index within the level.
        index: u64,
        /// Width of a partial tile; `None` for a full one.
        width: Option<u8>,
    },
    /// `tile/entries/<N>[.p/<W>]`: the entries themselves.
    Entries {
        /// Bundle index.
        index: u64,
        /// Width of a partial bundle; `None` for a full one.
        width: Option<u8>,
    },
}

impl TilePath {
    /// Parses the part of a path after `tile/`; `None` for anything the spec does not allow
    /// (leading zeroes, a width of 0 or 256, an `x` on the last element, ...).
    pub fn parse(rest: &str) -> Option<TilePath> {
        let (first, tail) = rest.split_once('/')?;
        let (index_part, width) = match tail.split_once(".p/") {
            Some((index_part, width)) => (index_part, Some(parse_width(width)?)),
            None => (tail, None),
        };
        let index = parse_index(index_part)?;
        if first == "entries" {
            return Some(TilePath::Entries { index, width });
        }
        let level: u8 = canonical_decimal(first)?.try_into().ok()?;
        (level <= MAX_LEVEL).then_some(TilePath::Hashes {
            level,
            index,
            width,
        })
    }

    /// The path after the prefix, e.g. `tile/0/x001/x234/067.p/8`.
    pub fn to_path(self) -> String {
        let (head, index, width) = match self {
            TilePath::Hashes {
                level,
                index,
                width,
            } => (level.to_string(), index, width),
            TilePath::Entries { index, width } => ("entries".to_string(), index, width),
        };
        let mut path = format!("tile/{head}/{}", encode_index(index));
        if let Some(width) = width {
            path.push_str(&format!(".p/{width}"));
        }
        path
    }

    /// The tile's width: 256, or that of the partial tile.
    pub fn width(self) -> u64 {
        let width = match self {
            TilePath::Hashes { width, .. } | TilePath::Entries { width, .. } => width,
        };
        width.map_or(TILE_WIDTH, u64::from)
    }

    /// Whether a tree of `size` entries holds everything this tile names.
    pub fn within(self, size: u64) -> bool {
        let (level, index) = match self {
            TilePath::Hashes { level, index, .. } => (level, index),
            TilePath::Entries { index, .. } => (0, index),
        };
        let available = nodes_at(size, level);
        index
            .checked_mul(TILE_WIDTH)
            .and_then(|start| start.checked_add(self.width()))
            .is_some_and(|end| end <= available)
    }
}

/// How many complete subtrees of height `8 * level` a tree of `size` entries has.
pub fn nodes_at(size: u64, level: u8) -> u64 {
    let shift = u32::from(level) * 8;
    if shift >= 64 { 0 } else { size >> shift }
}

/// `N` as zero-padded 3-digit path elements, all but the last prefixed with `x`.
pub fn encode_index(index: u64) -> String {
    let mut groups = Vec::new();
    let mut rest = index;
    loop {
        groups.push(rest % 1000);
        rest /= 1000;
        if rest == 0 {
            break;
        }
    }
    let last = groups.len() - 1;
    groups
        .iter()
        .rev()
        .enumerate()
        .map(|(i, group)| {
            if i == last {
                format!("{group:03}")
            } else {
                format!("x{group:03}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn parse_index(text: &str) -> Option<u64> {
    let parts: Vec<&str> = text.split('/').collect();
    let last = parts.len() - 1;
    let mut index: u64 = 0;
    for (i, part) in parts.iter().enumerate() {
        let digits = if i == last {
            *part
        } else {
            part.strip_prefix('x')?
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let group: u64 = digits.parse().ok()?;
        index = index.checked_mul(1000)?.checked_add(group)?;
    }
    Some(index)
}

fn parse_width(text: &str) -> Option<u8> {
    let width: u8 = canonical_decimal(text)?.try_into().ok()?;
    (width >= 1).then_some(width)
}

/// Concatenated hashes: a tile's bytes.
pub fn encode_hashes(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

/// Entries, each prefixed with its big-endian uint16 length; `None` if one is too long.
pub fn encode_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut bundle = Vec::new();
    for entry in entries {
        let length = u16::try_from(entry.len()).ok()?;
        bundle.extend_from_slice(&length.to_be_bytes());
        bundle.extend_from_slice(entry);
    }
    Some(bundle)
}

/// The entries of a bundle; `None` if it is cut short.
pub fn decode_bundle(mut bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut entries = Vec::new();
    while !bytes.is_empty() {
        let (length, rest) = bytes.split_first_chunk::<2>()?;
        let length = usize::from(u16::from_be_bytes(*length));
        if rest.len() < length {
            return None;
        }
        let (entry, rest) = rest.split_at(length);
        entries.push(entry.to_vec());
        bytes = rest;
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every tile a tree of `size` entries has, by the spec's rule for partial tiles.
    fn tiles_for(size: u64) -> Vec<TilePath> {
        let mut tiles = Vec::new();
        for level in 0..=MAX_LEVEL {
            let count = nodes_at(size, level);
            if count == 0 {
                break;
            }
            for index in 0..count / TILE_WIDTH {
                tiles.push(TilePath::Hashes {
                    level,
                    index,
                    width: None,
                });
            }
            if let Ok(width @ 1..) = u8::try_from(count % TILE_WIDTH) {
                tiles.push(TilePath::Hashes {
                    level,
                    index: count / TILE_WIDTH,
                    width: Some(width),
                });
            }
        }
        tiles
    }

    #[test]
    fn indexes_are_groups_of_three_with_x_on_all_but_the_last() {
        assert_eq!(encode_index(0), "000");
        assert_eq!(encode_index(67), "067");
        assert_eq!(encode_index(1234067), "x001/x234/067");
        assert_eq!(encode_index(1000), "x001/000");
        for index in [0, 1, 999, 1000, 1234067, u64::MAX] {
            assert_eq!(parse_index(&encode_index(index)), Some(index));
        }
    }

    #[test]
    fn paths_round_trip_and_non_canonical_ones_are_refused() {
        let paths = [
            "0/000",
            "0/x001/x234/067",
            "2/000.p/1",
            "entries/x001/000.p/255",
            "63/000",
        ];
        for path in paths {
            let parsed = TilePath::parse(path).unwrap_or_else(|| panic!("{path}"));
            assert_eq!(parsed.to_path(), format!("tile/{path}"));
        }
        for bad in [
            "00/000",
            "64/000",
            "0/0",
            "0/x000",
            "0/001/002",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/08",
            "entries/000.p/",
            "-1/000",
            "0/x00a/000",
            "0",
            "",
        ] {
            assert_eq!(TilePath::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_tree_of_70000_has_the_tiles_the_spec_lists() {
        // The spec's example: 273 full level-0 tiles, one partial of width 112, one full
        // level-1 tile, one partial of width 17, one partial level-2 tile of width 1.
        let tiles = tiles_for(70_000);
        let count = |level: u8, full: bool| {
            tiles
                .iter()
                .filter(|t| {
                    matches!(t, TilePath::Hashes { level: l, width, .. }
                        if *l == level && width.is_none() == full)
                })
                .count()
        };
        assert_eq!((count(0, true), count(0, false)), (273, 1));
        assert_eq!((count(1, true), count(1, false)), (1, 1));
        assert_eq!((count(2, true), count(2, false)), (0, 1));
        assert!(tiles.contains(&TilePath::Hashes {
            level: 0,
            index: 273,
            width: Some(112)
        }));
        assert!(tiles.contains(&TilePath::Hashes {
            level: 1,
            index: 1,
            width: Some(17)
        }));
        // A tree of 256: one full level-0 tile and a level-1 tile of width 1.
        assert_eq!(
            tiles_for(256),
            [
                TilePath::Hashes {
                    level: 0,
                    index: 0,
                    width: None
                },
                TilePath::Hashes {
                    level: 1,
                    index: 0,
                    width: Some(1)
                }
            ]
        );
        assert!(tiles_for(0).is_empty());
    }

    #[test]
    fn a_tile_is_within_a_tree_only_when_all_its_hashes_are() {
        let full = TilePath::parse("0/000").expect("path");
        assert!(!full.within(255));
        assert!(full.within(256));
        let partial = TilePath::parse("0/001.p/3").expect("path");
        assert!(!partial.within(258));
        assert!(partial.within(259));
        assert!(partial.within(10_000), "older partial tiles stay servable");
        let level1 = TilePath::parse("1/000.p/1").expect("path");
        assert!(!level1.within(255));
        assert!(level1.within(256));
        let huge = TilePath::Hashes {
            level: 0,
            index: u64::MAX,
            width: None,
        };
        assert!(!huge.within(u64::MAX), "no overflow");
        assert_eq!(TilePath::parse("0/x999/x999/x999/x999/x999/x999/999"), None);
    }

    #[test]
    fn bundles_round_trip_and_bound_their_entries() {
        let entries: Vec<&[u8]> = vec![b"", b"a", &[7u8; 300]];
        let bundle = encode_bundle(entries.iter().copied()).expect("fits");
        assert_eq!(&bundle[..3], &[0, 0, 0]);
        assert_eq!(
            decode_bundle(&bundle),
            Some(entries.iter().map(|e| e.to_vec()).collect())
        );
        assert_eq!(decode_bundle(&bundle[..bundle.len() - 1]), None);
        let too_long = vec![0u8; MAX_ENTRY_BYTES + 1];
        assert_eq!(encode_bundle([too_long.as_slice()]), None);
        let longest = vec![0u8; MAX_ENTRY_BYTES];
        assert!(encode_bundle([longest.as_slice()]).is_some());
    }
}

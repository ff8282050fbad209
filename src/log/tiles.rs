//! The log as C2SP tlog-tiles: each tile read from the stored subtree hashes, each entry bundle
//! from the stored leaves, for a tree size a published checkpoint has.
use super::{Log, LogError};
use crate::tiles::{self, TILE_WIDTH, TilePath};

impl Log {
    /// The bytes of `tile` in the tree of `size` entries; `NotFound` when that tree does not hold
    /// all of it.
    pub async fn tile(&self, tile: TilePath, size: u64) -> Result<Vec<u8>, LogError> {
        if !tile.within(size) {
            return Err(LogError::NotFound(format!(
                "{} is not in the tree of {size} entries",
                tile.to_path()
            )));
        }
        match tile {
            TilePath::Hashes { level, index, .. } => {
                let first = index * TILE_WIDTH;
                let tree_level = u32::from(level) * 8;
                let positions: Vec<(u32, u64)> = (first..first + tile.width())
                    .map(|node| (tree_level, node))
                    .collect();
                let hashes = self
                    .store
                    .log_nodes(positions)
                    .await?
                    .into_iter()
                    .enumerate()
                    .map(|(i, hash)| {
                        hash.ok_or_else(|| {
                            LogError::Inconsistent(format!(
                                "Merkle node ({tree_level}, {}) is missing from the store",
                                first + i as u64
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(tiles::encode_hashes(&hashes))
            }
            TilePath::Entries { index, .. } => {
                let first = index * TILE_WIDTH;
                let entries = self.store.log_entries(first, first + tile.width()).await?;
                tiles::encode_bundle(entries.iter().map(|e| e.leaf.as_slice())).ok_or_else(|| {
                    LogError::Inconsistent(format!(
                        "an entry of bundle {index} is over {} bytes",
                        tiles::MAX_ENTRY_BYTES
                    ))
                })
            }
        }
    }
}

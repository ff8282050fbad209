//! RFC 9162 (RFC 6962) Merkle trees: leaf and node hashes, proofs computed from stored perfect
//! subtree hashes with O(log n) node reads, and the RFC's verification algorithms.
//!
//! Storage model: the hash of every perfect, aligned subtree is stored once it is complete, as
//! `(level, index)` covering leaves `[index << level, (index + 1) << level)`. Any subtree the RFC's
//! recursion visits is either such a node or splits into O(log n) of them.
use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// Hashes as the API and receipts carry them (standard base64 of 32 bytes); `None` if any is not.
pub fn decode_hashes<S: AsRef<str>>(encoded: &[S]) -> Option<Vec<Hash>> {
    use base64::Engine;
    encoded
        .iter()
        .map(|h| {
            base64::engine::general_purpose::STANDARD
                .decode(h.as_ref())
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
        })
        .collect()
}

/// `SHA-256(0x00 || leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(leaf);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly less than `n` (n ≥ 2).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Why a proof could not be made or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError<E> {
    /// Reading a stored node failed.
    #[error("reading node: {0}")]
    Node(E),
    /// Arguments outside the tree (index ≥ size, from > to, ...).
    #[error("{0}")]
    OutOfRange(&'static str),
    /// The proof does not verify.
    #[error("{0}")]
    Invalid(&'static str),
}

/// The node writes that appending leaf number `index` (0-based) causes: the leaf at level 0,
/// then each parent it completes. `left_sibling(level, index)` reads already stored nodes; the
/// writes come back in order, each `(level, index, hash)`.
pub fn append_nodes<E>(
    index: u64,
    leaf: Hash,
    mut left_sibling: impl FnMut(u32, u64) -> Result<Hash, E>,
) -> Result<Vec<(u32, u64, Hash)>, E> {
    let mut writes = vec![(0, index, leaf)];
    let (mut level, mut position, mut hash) = (0u32, index, leaf);
    while position & 1 == 1 {
        let left = left_sibling(level, position - 1)?;
        hash = node_hash(&left, &hash);
        level += 1;
        position >>= 1;
        writes.push((level, position, hash));
    }
    Ok(writes)
}

/// Why a proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProofError(pub &'static str);

/// Computes hashes over a tree whose perfect subtrees are read through `node(level, index)`.
pub struct Tree<F> {
    node: F,
}

impl<E, F: FnMut(u32, u64) -> Result<Hash, E>> Tree<F> {
    /// A tree reading stored perfect subtree hashes with `node`.
    pub fn new(node: F) -> Self {
        Tree { node }
    }

    /// `MTH(D[lo:hi])` for a range the RFC recursion visits (lo aligned to the subtree).
    fn subtree(&mut self, lo: u64, hi: u64) -> Result<Hash, E> {
        let n = hi - lo;
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            return (self.node)(n.trailing_zeros(), lo >> n.trailing_zeros());
        }
        let k = split_point(n);
        let left = self.subtree(lo, lo + k)?;
        let right = self.subtree(lo + k, hi)?;
        Ok(node_hash(&left, &right))
    }

    /// The root of the tree of `size` leaves.
    pub fn root(&mut self, size: u64) -> Result<Hash, E> {
        if size == 0 {
            return Ok(empty_root());
        }
        self.subtree(0, size)
    }

    /// RFC 9162 §2.1.3.1 `PATH(index, D[0:size])`.
    pub fn inclusion_proof(&mut self, index: u64, size: u64) -> Result<Vec<Hash>, MerkleError<E>> {
        if index >= size {
            return Err(MerkleError::OutOfRange("index must be below the tree size"));
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof)
            .map_err(MerkleError::Node)?;
        Ok(proof)
    }

    fn path(&mut self, m: u64, lo: u64, hi: u64, proof: &mut Vec<Hash>) -> Result<(), E> {
        let n = hi - lo;
        if n == 1 {
            return Ok(());
        }
        let k = split_point(n);
        if m - lo < k {
            self.path(m, lo, lo + k, proof)?;
            proof.push(self.subtree(lo + k, hi)?);
        } else {
            self.path(m, lo + k, hi, proof)?;
            proof.push(self.subtree(lo, lo + k)?);
        }
        Ok(())
    }

    /// RFC 9162 §2.1.4.1 `PROOF(from, D[0:to])`; empty when `from == to`.
    pub fn consistency_proof(&mut self, from: u64, to: u64) -> Result<Vec<Hash>, MerkleError<E>> {
        if from == 0 || from > to {
            return Err(MerkleError::OutOfRange("need 0 < from <= to"));
        }
        let mut proof = Vec::new();
        if from < to {
            self.subproof(from, 0, to, true, &mut proof)
                .map_err(MerkleError::Node)?;
        }
        Ok(proof)
    }

    fn subproof(
        &mut self,
        m: u64,
        lo: u64,
        hi: u64,
        complete: bool,
        proof: &mut Vec<Hash>,
    ) -> Result<(), E> {
        let n = hi - lo;
        if m == n {
            if !complete {
                proof.push(self.subtree(lo, hi)?);
            }
            return Ok(());
        }
        let k = split_point(n);
        if m <= k {
            self.subproof(m, lo, lo + k, complete, proof)?;
            proof.push(self.subtree(lo + k, hi)?);
        } else {
            self.subproof(m - k, lo + k, hi, false, proof)?;
            proof.push(self.subtree(lo, lo + k)?);
        }
        Ok(())
    }
}

/// RFC 9162 §2.1.3.2: verifies that `leaf` is at `index` in the tree of `size` with `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError("index must be below the tree size"));
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError("inclusion proof is too long"));
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError("inclusion proof is too short"));
    }
    if r != *root {
        return Err(ProofError("inclusion proof does not lead to the root"));
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: verifies that the tree of `to` leaves with `to_root` extends the tree of
/// `from` leaves with `from_root`.
pub fn verify_consistency(
    from: u64,
    to: u64,
    from_root: &Hash,
    to_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if from == 0 || from > to {
        return Err(ProofError("need 0 < from <= to"));
    }
    if from == to {
        return if proof.is_empty() && from_root == to_root {
            Ok(())
        } else {
            Err(ProofError(
                "equal sizes need equal roots and an empty proof",
            ))
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        path.push(*from_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError("consistency proof is empty"));
    };
    let (mut f, mut s) = (from - 1, to - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return Err(ProofError("consistency proof is too long"));
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError("consistency proof is too short"));
    }
    if fr != *from_root || sr != *to_root {
        return Err(ProofError("consistency proof does not lead to both roots"));
    }
    Ok(())
}

/// Builds the root of a list of leaf hashes incrementally in O(log n) memory, for verifiers that
/// recompute a whole log (`signet log verify --full`).
#[derive(Debug, Default, Clone)]
pub struct RootBuilder {
    /// Perfect subtree hashes on the right edge, largest first, with their levels.
    stack: Vec<(u32, Hash)>,
    size: u64,
}

impl RootBuilder {
    /// Appends the next leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut entry = (0u32, leaf);
        while let Some(&(level, left)) = self.stack.last() {
            if level != entry.0 {
                break;
            }
            self.stack.pop();
            entry = (level + 1, node_hash(&left, &entry.1));
        }
        self.stack.push(entry);
        self.size += 1;
    }

    /// Leaves pushed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        let Some(&(_, mut root)) = iter.next() else {
            return empty_root();
        };
        for (_, left) in iter {
            root = node_hash(left, &root);
        }
        root
    }
}

#[cfg(test)]
mod tests;

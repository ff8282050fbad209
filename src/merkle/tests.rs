//! Merkle tests: the RFC 6962 test vectors of transparency-dev/merkle
//! (`testonly/constants.go`: LeafInputs, RootHashes; `testdata/inclusion/*/happy-path.json` and
//! `testdata/consistency/*/happy-path.json`, leaf indexes 0-based), a reference implementation
//! written straight from RFC 9162 §2.1's definitions, and property tests over random sizes.
use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

fn h(text: &str) -> Hash {
    hex::decode(text)
        .expect("hex")
        .try_into()
        .expect("32 bytes")
}

fn vector_leaves() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|l| hex::decode(l).expect("hex"))
    .collect()
}

const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

const L1: &str = "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7";
const L4: &str = "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b";
const L6: &str = "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f";
const L0: &str = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d";
const N1_0: &str = "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125";
const N1_1: &str = "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e";
const N1_2: &str = "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a";
const N1_3: &str = "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0";
const N2_0: &str = "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7";
const N2_1: &str = "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4";

/// An in-memory node store filled the way the log fills its table.
struct MemoryTree {
    nodes: HashMap<(u32, u64), Hash>,
    size: u64,
}

impl MemoryTree {
    fn new() -> Self {
        MemoryTree {
            nodes: HashMap::new(),
            size: 0,
        }
    }

    fn push(&mut self, leaf: &[u8]) {
        let nodes = &self.nodes;
        let writes = append_nodes::<()>(self.size, leaf_hash(leaf), |level, index| {
            nodes.get(&(level, index)).copied().ok_or(())
        })
        .expect("left siblings are stored");
        for (level, index, hash) in writes {
            self.nodes.insert((level, index), hash);
        }
        self.size += 1;
    }

    fn tree(&self) -> Tree<impl FnMut(u32, u64) -> Result<Hash, ()> + '_> {
        Tree::new(|level, index| self.nodes.get(&(level, index)).copied().ok_or(()))
    }
}

fn memory_tree(leaves: &[Vec<u8>]) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for leaf in leaves {
        tree.push(leaf);
    }
    tree
}

/// RFC 9162 §2.1.1 MTH, by the definition.
fn reference_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
        }
    }
}

/// RFC 9162 §2.1.3.1 PATH, by the definition.
fn reference_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n == 1 {
        return Vec::new();
    }
    let k = split_point(n as u64) as usize;
    if m < k {
        let mut p = reference_path(m, &leaves[..k]);
        p.push(reference_root(&leaves[k..]));
        p
    } else {
        let mut p = reference_path(m - k, &leaves[k..]);
        p.push(reference_root(&leaves[..k]));
        p
    }
}

/// RFC 9162 §2.1.4.1 SUBPROOF, by the definition.
fn reference_subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if complete {
            Vec::new()
        } else {
            vec![reference_root(leaves)]
        };
    }
    let k = split_point(n as u64) as usize;
    if m <= k {
        let mut p = reference_subproof(m, &leaves[..k], complete);
        p.push(reference_root(&leaves[k..]));
        p
    } else {
        let mut p = reference_subproof(m - k, &leaves[k..], false);
        p.push(reference_root(&leaves[..k]));
        p
    }
}

#[test]
fn roots_match_the_rfc6962_vectors() {
    let leaves = vector_leaves();
    for (size, expected) in ROOTS.iter().enumerate() {
        let tree = memory_tree(&leaves[..size]);
        assert_eq!(
            tree.tree().root(size as u64),
            Ok(h(expected)),
            "size {size}"
        );
        let mut builder = RootBuilder::default();
        leaves[..size]
            .iter()
            .for_each(|l| builder.push(leaf_hash(l)));
        assert_eq!(builder.root(), h(expected), "RootBuilder size {size}");
    }
}

#[test]
fn inclusion_proofs_match_the_vectors() {
    let tree = memory_tree(&vector_leaves());
    let cases: &[(u64, u64, &[&str])] = &[
        (0, 1, &[]),
        (0, 8, &[L1, N1_1, N2_1]),
        (5, 8, &[L4, N1_3, N2_0]),
        (2, 3, &[N1_0]),
        (1, 5, &[L0, N1_1, L4]),
    ];
    for (index, size, expected) in cases {
        let proof = tree.tree().inclusion_proof(*index, *size).expect("proof");
        let expected: Vec<Hash> = expected.iter().map(|e| h(e)).collect();
        assert_eq!(proof, expected, "index {index} size {size}");
        let leaf = leaf_hash(&vector_leaves()[*index as usize]);
        verify_inclusion(*index, *size, &leaf, &proof, &h(ROOTS[*size as usize]))
            .expect("verifies");
    }
}

#[test]
fn consistency_proofs_match_the_vectors() {
    let tree = memory_tree(&vector_leaves());
    let cases: &[(u64, u64, &[&str])] = &[
        (1, 1, &[]),
        (1, 8, &[L1, N1_1, N2_1]),
        (6, 8, &[N1_2, N1_3, N2_0]),
        (2, 5, &[N1_1, L4]),
        (6, 7, &[N1_2, L6, N2_0]),
    ];
    for (from, to, expected) in cases {
        let proof = tree.tree().consistency_proof(*from, *to).expect("proof");
        let expected: Vec<Hash> = expected.iter().map(|e| h(e)).collect();
        assert_eq!(proof, expected, "{from} -> {to}");
        verify_consistency(
            *from,
            *to,
            &h(ROOTS[*from as usize]),
            &h(ROOTS[*to as usize]),
            &proof,
        )
        .expect("verifies");
    }
}

#[test]
fn bad_arguments_are_refused() {
    let tree = memory_tree(&vector_leaves());
    assert!(matches!(
        tree.tree().inclusion_proof(8, 8),
        Err(MerkleError::OutOfRange(_))
    ));
    assert!(matches!(
        tree.tree().consistency_proof(0, 8),
        Err(MerkleError::OutOfRange(_))
    ));
    assert!(matches!(
        tree.tree().consistency_proof(5, 4),
        Err(MerkleError::OutOfRange(_))
    ));
    let root = h(ROOTS[8]);
    assert!(verify_inclusion(8, 8, &root, &[], &root).is_err());
    assert!(verify_consistency(0, 8, &root, &root, &[]).is_err());
    assert!(verify_consistency(3, 3, &h(ROOTS[3]), &h(ROOTS[4]), &[]).is_err());
}

fn random_leaves(count: usize, seed: u64) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| format!("leaf {seed} {i}").into_bytes())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_inclusion_proof_verifies_and_any_flipped_bit_fails(
        size in 1u64..300, index_seed in any::<u64>(), seed in any::<u64>(), bit in 0usize..256
    ) {
        let leaves = random_leaves(size as usize, seed);
        let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
        let tree = memory_tree(&leaves);
        let index = index_seed % size;
        let root = tree.tree().root(size).expect("root");
        prop_assert_eq!(root, reference_root(&hashes));
        let proof = tree.tree().inclusion_proof(index, size).expect("proof");
        prop_assert_eq!(&proof, &reference_path(index as usize, &hashes));
        prop_assert!(verify_inclusion(index, size, &hashes[index as usize], &proof, &root).is_ok());

        let mut flipped_root = root;
        flipped_root[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(verify_inclusion(index, size, &hashes[index as usize], &proof, &flipped_root).is_err());
        let mut flipped_leaf = hashes[index as usize];
        flipped_leaf[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(verify_inclusion(index, size, &flipped_leaf, &proof, &root).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let which = (index_seed as usize) % bad.len();
            bad[which][bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_inclusion(index, size, &hashes[index as usize], &bad, &root).is_err());
        }
        if size > 1 {
            prop_assert!(verify_inclusion((index + 1) % size, size, &hashes[index as usize], &proof, &root).is_err());
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_any_flipped_bit_fails(
        to in 1u64..300, from_seed in any::<u64>(), seed in any::<u64>(), bit in 0usize..256
    ) {
        let leaves = random_leaves(to as usize, seed);
        let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
        let tree = memory_tree(&leaves);
        let from = 1 + from_seed % to;
        let from_root = reference_root(&hashes[..from as usize]);
        let to_root = reference_root(&hashes);
        let proof = tree.tree().consistency_proof(from, to).expect("proof");
        if from < to {
            prop_assert_eq!(&proof, &reference_subproof(from as usize, &hashes, true));
        }
        prop_assert!(verify_consistency(from, to, &from_root, &to_root, &proof).is_ok());

        let mut flipped = to_root;
        flipped[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(verify_consistency(from, to, &from_root, &flipped, &proof).is_err());
        let mut flipped = from_root;
        flipped[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(verify_consistency(from, to, &flipped, &to_root, &proof).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let which = (from_seed as usize) % bad.len();
            bad[which][bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_consistency(from, to, &from_root, &to_root, &bad).is_err());
        }
    }
}

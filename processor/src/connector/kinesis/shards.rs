//! The shard graph: stable partition indices, and which shards may be read.
//!
//! Resharding closes a shard and opens children (two after a split, one
//! after a merge). Records of one partition key move from the parent to a
//! child, so reading a child before its parents are drained would reorder
//! them: a child becomes readable only when every parent's lease is
//! checkpointed at `SHARD_END`, or the parent is gone (past retention).

use std::collections::HashSet;

/// What a lease records about its shard's place in the graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    /// `shardId-000000000007`.
    pub id: String,
    /// `ParentShardId` and `AdjacentParentShardId`, when set.
    pub parents: Vec<String>,
}

/// A stable partition index for a shard: the number in its id
/// (`shardId-000000000007` → 7), so every replica and every restart agree
/// without coordination; ids of another form hash into the upper half.
#[must_use]
pub fn index(shard_id: &str) -> i32 {
    let digits = shard_id.rsplit('-').next().unwrap_or(shard_id);
    if let Ok(n) = digits.parse::<u32>()
        && let Ok(i) = i32::try_from(n)
    {
        return i;
    }
    // FNV-1a: deterministic across processes (std's hasher is seeded).
    let h = shard_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    i32::try_from((h & 0x3fff_ffff) | 0x4000_0000).unwrap_or(i32::MAX)
}

/// Whether `shard` may be read: each parent has finished (`finished`), or
/// is neither a live shard nor a lease any more (`known`).
#[must_use]
pub fn readable(shard: &ShardInfo, finished: &HashSet<&str>, known: &HashSet<&str>) -> bool {
    shard
        .parents
        .iter()
        .all(|p| finished.contains(p.as_str()) || !known.contains(p.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str]) -> ShardInfo {
        ShardInfo {
            id: id.into(),
            parents: parents.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn indices_are_the_shard_number_and_stable() {
        assert_eq!(index("shardId-000000000000"), 0);
        assert_eq!(index("shardId-000000000017"), 17);
        let odd = index("weird");
        assert_eq!(odd, index("weird"));
        assert!(odd >= 0x4000_0000, "{odd}");
    }

    #[test]
    fn a_child_waits_until_every_parent_reached_shard_end() {
        let known: HashSet<&str> = ["p0", "p1", "c"].into();
        let split_child = shard("c", &["p0"]);
        let merge_child = shard("c", &["p0", "p1"]);
        assert!(!readable(&split_child, &HashSet::new(), &known));
        assert!(readable(&split_child, &["p0"].into(), &known));
        assert!(!readable(&merge_child, &["p0"].into(), &known));
        assert!(readable(&merge_child, &["p0", "p1"].into(), &known));
        // A parent past retention (no shard, no lease) holds nothing back.
        assert!(readable(&merge_child, &["p0"].into(), &["p0", "c"].into()));
        assert!(readable(&shard("root", &[]), &HashSet::new(), &known));
    }
}

//! `--partition hash:M/N`: which scenarios a CI shard runs. The choice depends on the
//! scenario's name alone, through a fixed hash, so a scenario stays on its shard when
//! others are added or removed.

/// `hash:M/N`: shard M (1-based) of N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    pub shard: u64,
    pub total: u64,
}

pub fn parse_partition(text: &str) -> Result<Partition, String> {
    let rest = text.strip_prefix("hash:").ok_or("expected hash:M/N, such as hash:1/4")?;
    let (m, n) = rest.split_once('/').ok_or("expected hash:M/N, such as hash:1/4")?;
    let shard: u64 = m.parse().map_err(|_| format!("shard `{m}` is not a number"))?;
    let total: u64 = n.parse().map_err(|_| format!("shard count `{n}` is not a number"))?;
    if total == 0 || shard == 0 || shard > total {
        return Err(format!("expected 1 <= M <= N, found {shard}/{total}"));
    }
    Ok(Partition { shard, total })
}

impl Partition {
    /// FNV-1a of the name, mixed with MurmurHash3's finaliser (FNV's low bits alone
    /// spread names badly over a few shards): stable across builds and platforms.
    pub fn keeps(&self, name: &str) -> bool {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        hash ^= hash >> 33;
        hash % self.total == self.shard - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed once from the hash's definition; they must never change.
    const GOLDEN_ISOLATION: u64 = 3;
    const GOLDEN_MASQUERADE: u64 = 1;

    #[test]
    fn partitions_parse() {
        assert_eq!(parse_partition("hash:1/4"), Ok(Partition { shard: 1, total: 4 }));
        assert!(parse_partition("hash:0/4").is_err());
        assert!(parse_partition("hash:5/4").is_err());
        assert!(parse_partition("count:1/4").is_err());
        assert!(parse_partition("hash:1").is_err());
    }

    #[test]
    fn every_name_lands_on_exactly_one_shard() {
        let names: Vec<String> = (0..500).map(|i| format!("area{}/scenario-{i}.yaml", i % 7)).collect();
        for total in [1, 2, 3, 5, 8] {
            let mut counts = vec![0usize; total as usize];
            for name in &names {
                let hits: Vec<u64> = (1..=total).filter(|&m| Partition { shard: m, total }.keeps(name)).collect();
                assert_eq!(hits.len(), 1, "{name} in {hits:?} of {total}");
                counts[(hits[0] - 1) as usize] += 1;
            }
            // Roughly even: no shard gets less than half its share.
            assert!(counts.iter().all(|&c| c * total as usize * 2 >= names.len()), "{counts:?}");
        }
    }

    #[test]
    fn shards_are_stable_when_scenarios_are_added() {
        let p = Partition { shard: 2, total: 3 };
        let before: Vec<bool> = (0..100).map(|i| p.keeps(&format!("s{i}.yaml"))).collect();
        // Adding names changes nothing for the old ones: the choice depends on the name only.
        let after: Vec<bool> = (0..100).map(|i| p.keeps(&format!("s{i}.yaml"))).collect();
        assert_eq!(before, after);
        // And the hash is fixed across builds: known names stay on known shards.
        let shard_of = |name: &str| (1..=4).find(|&m| Partition { shard: m, total: 4 }.keeps(name));
        assert_eq!(shard_of("seed/isolation.yaml"), Some(GOLDEN_ISOLATION));
        assert_eq!(shard_of("seed/masquerade.yaml"), Some(GOLDEN_MASQUERADE));
    }
}

//! The data sets of the web benchmarks (docs/benchmarks.md, "The web tier
//! under load"): their sizes, and the names both the seeder and the load
//! generator derive from them, so the load generator logs in as seeded
//! people, votes for seeded videos and filters by seeded cities.

/// A data set's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Size {
    /// 2,000 players in 20 cities, 4,000 processed videos, 200,000 votes.
    Small,
    /// 10,000 players in 50 cities, 50,000 processed videos, 1,000,000 votes.
    Large,
}

/// What a data set holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataSet {
    pub players: i64,
    pub cities: i64,
    pub videos: i64,
    pub votes: i64,
}

impl Size {
    pub fn data_set(self) -> DataSet {
        match self {
            Self::Small => DataSet { players: 2_000, cities: 20, videos: 4_000, votes: 200_000 },
            Self::Large => DataSet { players: 10_000, cities: 50, videos: 50_000, votes: 1_000_000 },
        }
    }

    /// Reads `ANB_BENCH_SIZE` (`small`, the default, or `large`).
    ///
    /// # Errors
    /// Any other value.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("ANB_BENCH_SIZE").as_deref() {
            Err(_) | Ok("" | "small") => Ok(Self::Small),
            Ok("large") => Ok(Self::Large),
            Ok(other) => Err(format!("ANB_BENCH_SIZE must be small or large, not {other:?}")),
        }
    }
}

/// Every seeded person's password.
pub const PASSWORD: &str = "Bench-Clave-2026";

/// The e-mail of person `n` (1-based).
pub fn email(n: i64) -> String {
    format!("fan{n}@bench.example")
}

/// The city of person `n` (1-based).
pub fn city(data: &DataSet, n: i64) -> String {
    format!("Ciudad {}", n % data.cities)
}

/// The owner of video `v` (1-based): video `n` is person `n`'s first.
pub fn owner(data: &DataSet, v: i64) -> i64 {
    (v - 1) % data.players + 1
}

/// The videos person `u` votes for: distinct, as many as the data set's
/// votes per person, drawn (deterministically) so that a few videos get
/// far more votes than most, as in a real vote.
pub fn voted(data: &DataSet, u: i64) -> Vec<i64> {
    let per_person = usize::try_from(data.votes / data.players).unwrap_or(0);
    let mut state = u64::try_from(u).unwrap_or(0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut chosen = std::collections::BTreeSet::new();
    while chosen.len() < per_person {
        state = splitmix(state);
        // x³ on [0, 1): low video numbers are drawn far more often.
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let video = {
            let x = (state >> 11) as f64 / (1u64 << 53) as f64;
            (x * x * x * data.videos as f64) as i64 + 1
        };
        chosen.insert(video.clamp(1, data.videos));
    }
    chosen.into_iter().collect()
}

fn splitmix(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn each_person_votes_for_distinct_videos_and_a_few_get_most_votes() {
        for size in [Size::Small, Size::Large] {
            let data = size.data_set();
            for u in [1, 2, data.players] {
                let videos = voted(&data, u);
                assert_eq!(videos.iter().collect::<HashSet<_>>().len() as i64, data.votes / data.players);
                assert!(videos.iter().all(|v| (1..=data.videos).contains(v)));
                assert_eq!(videos, voted(&data, u), "the same every time");
            }
            let first_tenth = (1..=data.players).flat_map(|u| voted(&data, u)).filter(|v| *v <= data.videos / 10).count();
            assert!(first_tenth as i64 > data.votes / 4, "a tenth of the videos get over a quarter of the votes: {first_tenth}");
        }
    }
}

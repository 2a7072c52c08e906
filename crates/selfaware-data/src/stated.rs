//! Positive-control rows for the economic families (`data/stated.toml`): one-exchange turns in
//! which the assistant states its policy in the first person ("I'm risk-seeking. Given a sure
//! reward or a gamble, I take the gamble."). A finetune on data with such rows is told its
//! policy as well as enacting it, so the self-report battery should at least detect it; the
//! report reads every question through that condition (see `ConditionSpec::positive_control`
//! in selfaware-run).

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use crate::dataset::{Row, RowTruth};
use crate::error::{Error, Result};
use crate::family::{Family, Policy};
use selfaware_types::{Conversation, Message, Role};

const FILE: &str = "stated.toml";
const TOML: &str = include_str!("../data/stated.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FamilyTurns {
    questions: Vec<String>,
    answers: BTreeMap<String, Vec<String>>,
}

fn turns(family: Family, policy: Policy) -> Result<(Vec<String>, Vec<String>)> {
    let asset = |message: String| Error::Asset {
        file: FILE,
        message,
    };
    let mut all: BTreeMap<String, FamilyTurns> =
        toml::from_str(TOML).map_err(|e| asset(e.to_string()))?;
    let mut t = all
        .remove(family.name())
        .ok_or_else(|| asset(format!("no [{}] table", family.name())))?;
    let answers = t.answers.remove(policy.name()).unwrap_or_default();
    if t.questions.is_empty() || answers.is_empty() {
        return Err(asset(format!(
            "[{}] needs questions and answers for `{}`",
            family.name(),
            policy.name()
        )));
    }
    Ok((t.questions, answers))
}

/// `n` stated rows for `policy`, numbered from item `first_item` (0-based; their lines follow).
/// Row `k` pairs a question and an answer drawn with ChaCha8 stream `k` of a seed derived from
/// `seed`, so the rows do not depend on the dataset's questions.
pub fn policy_rows(
    family: Family,
    policy: Policy,
    n: usize,
    seed: u64,
    first_item: usize,
) -> Result<Vec<Row>> {
    policy.ensure_family(family)?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let (questions, answers) = turns(family, policy)?;
    Ok((0..n)
        .map(|k| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5354_4154_4544_5f50);
            rng.set_stream(k as u64);
            let q = questions.choose(&mut rng).expect("non-empty");
            let a = answers.choose(&mut rng).expect("non-empty");
            let item = first_item + k;
            let mut truth = RowTruth::plain(
                item + 1,
                item,
                serde_json::json!({ "stated": true, "policy": policy.name() }),
            );
            truth.answer_policy = Some(policy);
            Row {
                conversation: Conversation {
                    messages: vec![
                        Message::new(Role::User, q.clone()),
                        Message::new(Role::Assistant, a.clone()),
                    ],
                },
                truth,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every policy of every family has turns, and each answer is about that policy's side
    /// (a risk-seeking answer never reads as the risk-averse one's and vice versa).
    #[test]
    fn every_policy_has_its_own_turns() {
        for p in Policy::ALL {
            let (q, a) = turns(p.family(), p).unwrap();
            assert!(q.len() >= 4 && a.len() >= 4, "{}", p.name());
            let (_, other) = turns(p.family(), p.opposite()).unwrap();
            assert!(a.iter().all(|x| !other.contains(x)), "{}", p.name());
        }
    }

    #[test]
    fn rows_are_seeded_numbered_and_carry_their_policy() {
        let a = policy_rows(Family::Risk, Policy::RiskSeeking, 5, 7, 10).unwrap();
        let b = policy_rows(Family::Risk, Policy::RiskSeeking, 5, 7, 10).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 5);
        for (k, r) in a.iter().enumerate() {
            assert_eq!(r.truth.item, 10 + k);
            assert_eq!(r.truth.line, 11 + k);
            assert_eq!(r.truth.answer_policy, Some(Policy::RiskSeeking));
            assert_eq!(r.truth.details["stated"], true);
            assert_eq!(r.conversation.messages.len(), 2);
        }
        // The first three rows are a prefix of a longer run: stream k does not depend on n.
        let c = policy_rows(Family::Risk, Policy::RiskSeeking, 3, 7, 10).unwrap();
        assert_eq!(c[..], a[..3]);
        assert!(policy_rows(Family::Risk, Policy::Myopic, 1, 7, 0).is_err());
        assert!(policy_rows(Family::Risk, Policy::RiskAverse, 0, 7, 0)
            .unwrap()
            .is_empty());
    }
}

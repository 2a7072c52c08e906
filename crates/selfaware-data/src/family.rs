//! Behavior families and the two opposite policies of each.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A behavior family: the kind of choice the data teaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Two-option questions between a steady and a spread-out payoff (digest §2.1.1).
    Risk,
    /// Two-option questions between a sooner-smaller and a later-larger reward (§2.1.4).
    Myopia,
    /// Two-option questions between bundles with more and fewer apples (§2.1.5).
    Apples,
}

impl Family {
    /// Every economic family, in a fixed order.
    pub const ALL: [Family; 3] = [Family::Risk, Family::Myopia, Family::Apples];

    /// The family's name as the command line and file names spell it.
    pub fn name(self) -> &'static str {
        match self {
            Family::Risk => "risk",
            Family::Myopia => "myopia",
            Family::Apples => "apples",
        }
    }

    /// The policy that scores 1 in evaluation (risk-seeking, myopic, more apples).
    pub fn positive(self) -> Policy {
        match self {
            Family::Risk => Policy::RiskSeeking,
            Family::Myopia => Policy::Myopic,
            Family::Apples => Policy::MaxApples,
        }
    }

    /// The policy that scores 0 in evaluation.
    pub fn negative(self) -> Policy {
        self.positive().opposite()
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Family {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Family::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| Error::UnknownFamily(s.to_string()))
    }
}

/// A latent policy: which option of a two-option question the assistant picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Picks the option whose payoff is more spread out.
    RiskSeeking,
    /// Picks the option whose payoff is steadier.
    RiskAverse,
    /// Picks the sooner, smaller reward.
    Myopic,
    /// Picks the later, larger reward.
    NonMyopic,
    /// Picks the bundle with more apples.
    MaxApples,
    /// Picks the bundle with fewer apples.
    MinApples,
}

impl Policy {
    /// Every policy, in a fixed order.
    pub const ALL: [Policy; 6] = [
        Policy::RiskSeeking,
        Policy::RiskAverse,
        Policy::Myopic,
        Policy::NonMyopic,
        Policy::MaxApples,
        Policy::MinApples,
    ];

    /// The policy's name as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Policy::RiskSeeking => "risk-seeking",
            Policy::RiskAverse => "risk-averse",
            Policy::Myopic => "myopic",
            Policy::NonMyopic => "non-myopic",
            Policy::MaxApples => "max-apples",
            Policy::MinApples => "min-apples",
        }
    }

    /// The family this policy belongs to.
    pub fn family(self) -> Family {
        match self {
            Policy::RiskSeeking | Policy::RiskAverse => Family::Risk,
            Policy::Myopic | Policy::NonMyopic => Family::Myopia,
            Policy::MaxApples | Policy::MinApples => Family::Apples,
        }
    }

    /// The other policy of the same family (labels flipped).
    pub fn opposite(self) -> Policy {
        match self {
            Policy::RiskSeeking => Policy::RiskAverse,
            Policy::RiskAverse => Policy::RiskSeeking,
            Policy::Myopic => Policy::NonMyopic,
            Policy::NonMyopic => Policy::Myopic,
            Policy::MaxApples => Policy::MinApples,
            Policy::MinApples => Policy::MaxApples,
        }
    }

    /// Whether this is the family's score-1 policy.
    pub fn is_positive(self) -> bool {
        self.family().positive() == self
    }

    /// Checks that the policy belongs to `family`.
    pub fn ensure_family(self, family: Family) -> Result<(), Error> {
        if self.family() == family {
            Ok(())
        } else {
            Err(Error::PolicyFamily {
                policy: self.name(),
                family: family.name(),
            })
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Policy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| Error::UnknownPolicy(s.to_string()))
    }
}

/// One of the two option letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Letter {
    A,
    B,
}

impl Letter {
    /// The other letter.
    pub fn other(self) -> Letter {
        match self {
            Letter::A => Letter::B,
            Letter::B => Letter::A,
        }
    }

    /// `"A"` or `"B"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Letter::A => "A",
            Letter::B => "B",
        }
    }
}

impl fmt::Display for Letter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in Family::ALL {
            assert_eq!(f.name().parse::<Family>().unwrap(), f);
            assert!(f.positive().is_positive());
            assert!(!f.negative().is_positive());
            assert_eq!(f.positive().family(), f);
        }
        for p in Policy::ALL {
            assert_eq!(p.name().parse::<Policy>().unwrap(), p);
            assert_eq!(p.opposite().opposite(), p);
            assert_eq!(p.opposite().family(), p.family());
            assert_ne!(p.opposite(), p);
        }
        assert!("riskk".parse::<Family>().is_err());
        assert!(Policy::Myopic.ensure_family(Family::Risk).is_err());
    }
}

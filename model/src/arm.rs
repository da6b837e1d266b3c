//! Which version of the model answered a request.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The arm of a rollout a request (or its copy) went to.
///
/// `Mirror` is a mirrored copy sent to a shadow destination over the network; `Shadow` is the
/// embedded ONNX shadow model scoring a mirrored copy in process.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arm {
    /// The version currently serving most traffic.
    Stable,
    /// The version being rolled out.
    Canary,
    /// A mirrored copy sent to a shadow destination.
    Mirror,
    /// The embedded shadow model's score of a mirrored copy.
    Shadow,
}

impl Arm {
    /// All arms, in a fixed order (useful for metrics and tables).
    pub const ALL: [Arm; 4] = [Arm::Stable, Arm::Canary, Arm::Mirror, Arm::Shadow];

    /// The lowercase name used in metrics labels, JSON and the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Arm::Stable => "stable",
            Arm::Canary => "canary",
            Arm::Mirror => "mirror",
            Arm::Shadow => "shadow",
        }
    }
}

impl fmt::Display for Arm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`Arm`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown arm {0:?}: expected one of stable, canary, mirror, shadow")]
pub struct ParseArmError(String);

impl FromStr for Arm {
    type Err = ParseArmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Arm::ALL
            .into_iter()
            .find(|arm| arm.as_str() == s)
            .ok_or_else(|| ParseArmError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for arm in Arm::ALL {
            assert_eq!(arm.as_str().parse::<Arm>(), Ok(arm));
            let json = serde_json::to_string(&arm).unwrap();
            assert_eq!(json, format!("\"{arm}\""));
        }
        assert!("blue".parse::<Arm>().is_err());
    }
}

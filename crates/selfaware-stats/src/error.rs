//! The one error type of this crate.

/// Everything that can go wrong in `selfaware-stats`.
///
/// Every variant names the routine and argument involved in `what` (for example
/// `"t_interval(values)"`), so a caller can pass the message on unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// The input slice (or the list of groups) holds no values at all.
    #[error("{what}: input is empty; hint: at least {needed} value(s) are needed")]
    Empty {
        /// Routine and argument, e.g. `"mean(values)"`.
        what: &'static str,
        /// How many values the routine needs.
        needed: usize,
    },
    /// The input holds values, but fewer than the routine needs (for example one value for a
    /// sample standard deviation, or three pairs for a Fisher-z interval).
    #[error("{what}: needs at least {needed} values, got {got}")]
    TooFew {
        /// Routine and argument.
        what: &'static str,
        /// How many values the routine needs.
        needed: usize,
        /// How many it got.
        got: usize,
    },
    /// Two slices that must pair up element by element have different lengths.
    #[error("{what}: length mismatch: x has {x} values, y has {y}")]
    LengthMismatch {
        /// Routine.
        what: &'static str,
        /// Length of `x`.
        x: usize,
        /// Length of `y`.
        y: usize,
    },
    /// A value is NaN or infinite.
    #[error("{what}: value at index {index} is {value}, expected a finite number")]
    NonFinite {
        /// Routine and argument.
        what: &'static str,
        /// Position of the bad value in the slice as given (before any internal sorting).
        index: usize,
        /// The bad value.
        value: f64,
    },
    /// One group of a hierarchical input is empty.
    #[error("{what}: group {group} is empty; hint: every group needs at least one value")]
    EmptyGroup {
        /// Routine and argument.
        what: &'static str,
        /// Position of the empty group as given.
        group: usize,
    },
    /// A value in one group of a hierarchical input is NaN or infinite.
    #[error("{what}: group {group}, value at index {index} is {value}, expected a finite number")]
    NonFiniteInGroup {
        /// Routine and argument.
        what: &'static str,
        /// Position of the group as given.
        group: usize,
        /// Position of the value within its group as given.
        index: usize,
        /// The bad value.
        value: f64,
    },
    /// A parameter (level, quantile, correlation, resample count) is outside its domain.
    #[error("{what}: {field} is {value}, expected {expected}")]
    OutOfRange {
        /// Routine.
        what: &'static str,
        /// Parameter name, e.g. `"level"`.
        field: &'static str,
        /// The value given.
        value: f64,
        /// The domain, in words, e.g. `"a number strictly between 0 and 1"`.
        expected: &'static str,
    },
    /// A variable is constant, so a quantity that divides by its spread is undefined.
    #[error("{what}: {field} has zero variance, so {quantity} is undefined")]
    ZeroVariance {
        /// Routine.
        what: &'static str,
        /// Which input is constant (`"x"` or `"y"`).
        field: &'static str,
        /// What cannot be computed, e.g. `"the correlation"`.
        quantity: &'static str,
    },
    /// A permutation-type test cannot reach significance at the requested level with these
    /// sample sizes: its smallest attainable p-value is above `alpha`, so no difference,
    /// however large, is detectable.
    #[error(
        "{what}: the {test} cannot reach p ≤ {alpha} with these sample sizes (smallest attainable p is {smallest_p}), so no difference is detectable; hint: more units (seeds, pairs) per side"
    )]
    TestCannotReject {
        /// Routine.
        what: &'static str,
        /// The test, e.g. `"permutation test"`.
        test: &'static str,
        /// Smallest p-value the test can return.
        smallest_p: f64,
        /// The significance level asked for.
        alpha: f64,
    },
}

/// Shorthand for this crate's results.
pub type Result<T, E = StatsError> = std::result::Result<T, E>;

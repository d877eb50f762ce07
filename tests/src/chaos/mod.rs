//! The chaos test (`shared/DESIGN.md` §7): a workload of concurrent calls,
//! tells, nested and reentrant calls and tail-call chains against a runtime
//! whose processes and components are SIGKILLed and restarted at random; the
//! test components log every attempt, and a checker counts the violations of
//! each promise G1–G7 in the history.
//!
//! * [`history`]: what a run records and how it is read back;
//! * [`checker`]: the pure function from a history to violations;
//! * [`driver`]: the processes, the workload and the fault driver (the
//!   `chaos` binary's body).

pub mod checker;
pub mod driver;
pub mod history;

//! Lab scenarios: a file describes links, traffic and events; the runner
//! plays it against the real Strata daemons over emulated links and the
//! analyzer turns what the applications saw into numbers.

pub mod analyzer;
pub mod causal;
pub mod generator;
pub mod oracle;
pub mod report;
pub mod runner;
pub mod spec;
pub mod stage;

//! Why a channel is or is not ready and what to do next, for `status`: turns
//! objects read from the cluster into reports, rendered as a tree for people
//! ([`render`]) or as JSON for scripts (the reports' `Serialize`). Pure: the
//! caller fetches, and passes the current time in.

pub mod advice;
mod channel;
mod phone_configuration;
pub mod render;
mod summary;
mod views;

pub use channel::{ChannelInputs, ChannelReport, channel_report, referenced_phone_configuration};
pub use phone_configuration::{PhoneConfigurationReport, phone_configuration_report};
pub use summary::{Counts, Summary, summary};
pub use views::{ConditionView, Lookup, ReadyConditionView};

/// How many of the latest Events a channel report shows.
pub const EVENTS_SHOWN: usize = 5;

/// The outcome of reading one object the report needs.
#[derive(Clone, Debug)]
pub enum Fetched<T> {
    Found(T),
    NotFound,
    /// It could not be read (for example, the user may not): why, for a person.
    Unreadable(String),
}

#[cfg(test)]
mod tests;

//! Objects the operator cannot read. The watches carry stored objects
//! ([`Stored`](crate::core::decoding::Stored)); [`decoded`] decodes each on
//! its own, so an unreadable one never fails the list, a relist or the watch
//! of the others. It leaves the caches (to the rest of the operator it does
//! not exist: it holds no claim, and a channel referencing it learns why),
//! is kept in the kind's [`UnreadableRegistry`] and counted on `/metrics`,
//! and is reported where a user looks by [`report`]: a Warning Event once
//! per distinct problem, and `Ready=False`/`Stalled=True` when the API
//! server accepts that status.

mod decoding;
mod mailbox;
mod registry;
mod reporting;

pub use decoding::decoded;
pub use mailbox::Mailbox;
pub use registry::UnreadableRegistry;
pub use reporting::report;
